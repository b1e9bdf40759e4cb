"""The committed Grafana files: up to date with the Python, valid against the foundation SDK's models, coherent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.alerting import RuleGroup
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import sql
from dashboards.alerts import FOLDER_UID, RETIRED_RULES, all_rules
from dashboards.boards import all_boards
from dashboards.macros import TimeRange, expand
from dashboards.provisioning import DatabaseTarget, bundle, dashboard_models, render_files, rule_group_model
from dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "grafana"


def _dashboards() -> list[Path]:
    return sorted((DEPLOY / "dashboards").glob("*.json"))


def test_committed_files_are_what_the_code_builds() -> None:
    expected = render_files(timescaledb=False)
    stale = [rel for rel, text in expected.items()
             if not (DEPLOY / rel).exists() or (DEPLOY / rel).read_text(encoding="utf-8") != text]
    extra = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()} - set(expected)
    assert not stale, f"run `ioc dashboards build`: stale {stale}"
    assert not extra, f"files no build writes: {sorted(extra)}"


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.stem)
def test_dashboard_json_round_trips_through_the_sdk_models(path: Path) -> None:
    # Panel options and field configs parse into the SDK's typed models of each panel plugin; anything the
    # models do not know would be dropped and the round trip would differ.
    plugins.register_default_plugins()
    sql.register()
    data = json.loads(path.read_text(encoding="utf-8"))
    # The SDK types an annotation's target after Grafana's built-in datasource, so a SQL annotation's query does
    # not survive its models: compare the rest, and check the annotations' SQL shape on their own.
    annotations = data.get("annotations", {}).get("list", [])
    bare = {**data, "annotations": {"list": [{k: v for k, v in a.items() if k != "target"} for a in annotations]}}
    model = Dashboard.from_json(bare)
    round_trip = json.loads(json.dumps(model, cls=JSONEncoder))
    for a in round_trip.get("annotations", {}).get("list", []):
        a.pop("target", None)  # the SDK's empty default target
    assert round_trip == bare
    for a in annotations:
        assert a["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
        assert a["target"]["rawSql"] and a["target"]["format"] == "table" and a["target"]["refId"] == "Anno"
    targets = [t for p in _all_panels(data["panels"]) for t in p.get("targets", [])]
    assert targets and all(t["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID} for t in targets)
    assert all(t["rawSql"] and t["editorMode"] == "code" and t["format"] in ("table", "time_series")
               for t in targets)


def _all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_all_panels(p.get("panels", [])))
    return out


def test_rule_group_round_trips_and_every_rule_is_complete() -> None:
    group = rule_group_model()
    assert json.loads(json.dumps(RuleGroup.from_json(group), cls=JSONEncoder)) == group
    uids = [r["uid"] for r in group["rules"]]
    assert len(set(uids)) == len(uids) == 2
    for rule in group["rules"]:
        refs = {q["refId"] for q in rule["data"]}
        assert rule["condition"] in refs and rule["folderUID"] == FOLDER_UID
        sources = {q["datasourceUid"] for q in rule["data"]}
        assert sources == {DATASOURCE_UID, "__expr__"}
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]


def test_vietnamese_text_is_written_as_is() -> None:
    city = (DEPLOY / "dashboards" / "ioc-city.json").read_text(encoding="utf-8")
    assert "IOC Đà Nẵng · City overview" in city and "\\u0110" not in city
    rules = yaml.safe_load((DEPLOY / "provisioning" / "alerting" / "ioc-rules.yaml").read_text(encoding="utf-8"))
    assert rules["groups"][0]["folder"] == "IOC Đà Nẵng"


def test_provisioning_files_have_grafanas_shapes() -> None:
    ds = yaml.safe_load((DEPLOY / "provisioning" / "datasources" / "ioc.yaml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert ds["apiVersion"] == 1 and source["type"] == "grafana-postgresql-datasource"
    assert source["uid"] == DATASOURCE_UID and source["jsonData"]["timescaledb"] is False
    assert source["secureJsonData"]["password"] == "$IOC_GRAFANA_DB_PASSWORD"
    providers = yaml.safe_load((DEPLOY / "provisioning" / "dashboards" / "ioc.yaml").read_text(encoding="utf-8"))
    assert providers["providers"][0]["type"] == "file" and providers["providers"][0]["folderUid"] == FOLDER_UID
    rules = yaml.safe_load((DEPLOY / "provisioning" / "alerting" / "ioc-rules.yaml").read_text(encoding="utf-8"))
    (group,) = rules["groups"]
    assert group["interval"] == "60s" and len(group["rules"]) == 2
    assert all({"uid", "title", "condition", "data", "for"} <= set(r) for r in group["rules"])
    # The file's rules carry exactly the queries the HTTP API gets (SQL written as literal blocks).
    api = {r["uid"]: r["data"] for r in rule_group_model()["rules"]}
    assert {r["uid"]: r["data"] for r in group["rules"]} == api


def test_timescaledb_option_switches_the_datasource_and_time_groups() -> None:
    on = yaml.safe_load(render_files(timescaledb=True)["provisioning/datasources/ioc.yaml"])
    assert on["datasources"][0]["jsonData"]["timescaledb"] is True
    pushed = bundle(DatabaseTarget.from_url("postgresql://grafana:s%40cret@db.internal:6432/ioc"), timescaledb=True)
    assert pushed.datasource["url"] == "db.internal:6432" and pushed.datasource["user"] == "grafana"
    assert pushed.datasource["secureJsonData"] == {"password": "s@cret"}
    assert pushed.datasource["jsonData"]["timescaledb"] is True and pushed.datasource["jsonData"]["database"] == "ioc"
    # With the option on, Grafana groups with time_bucket(); our queries must not depend on the plain form.
    end = datetime(2026, 11, 22, tzinfo=UTC)
    grouped = [t.raw_sql for b in all_boards() for p in b.model.panels or [] for t in getattr(p, "targets", None) or []
               if "$__timeGroup" in getattr(t, "raw_sql", "")]
    assert grouped
    for text in grouped:
        out = expand(text, TimeRange(end - timedelta(hours=6), end), variables=(), timescaledb=True)
        assert "time_bucket('" in out and "floor(extract(epoch" not in out


def test_only_watchdogs_remain_and_the_retired_rules_are_deleted_by_file_too() -> None:
    # The platform raises hazard, device, gateway and dead-letter alarms itself (issue 13): Grafana keeps only
    # what watches the platform from outside, so nobody is paged twice.
    rules = all_rules()
    assert {r.title for r in rules} == {"Operations evaluator stalled", "Notifications not delivered"}
    assert set(RETIRED_RULES) == {"ioc-water-alert", "ioc-water-danger", "ioc-pm25-sustained", "ioc-device-silent",
                                  "ioc-gateway-offline", "ioc-dead-letters-rising"}
    assert not {r.uid for r in rules} & set(RETIRED_RULES)
    provisioned = yaml.safe_load(render_files(timescaledb=False)["provisioning/alerting/ioc-rules.yaml"])
    assert provisioned["deleteRules"] == [{"orgId": 1, "uid": uid} for uid in RETIRED_RULES]
    pushed = bundle(DatabaseTarget.from_url("postgresql://grafana@db/ioc"), timescaledb=False)
    assert pushed.retired_rules == list(RETIRED_RULES)


def test_incident_annotations_and_the_incidents_board_are_built() -> None:
    models = {m["uid"]: m for m in dashboard_models()}
    assert list(models)[:2] == ["ioc-city", "ioc-incidents"]
    for uid in ("ioc-zone", "ioc-device"):
        (annotation,) = models[uid]["annotations"]["list"]
        sql_text = annotation["target"]["rawSql"]
        assert "FROM incidents i" in sql_text and "$__timeFilter(x.time)" in sql_text
        for moment in ("opened_at", "acknowledged_at", "escalated_at", "resolved_at"):
            assert moment in sql_text
    assert "${zone:sqlstring}" in models["ioc-zone"]["annotations"]["list"][0]["target"]["rawSql"]
    assert "a.device_eui = ${device:sqlstring}" in models["ioc-device"]["annotations"]["list"][0]["target"]["rawSql"]
    assert models["ioc-incidents"]["title"] == "IOC Đà Nẵng · Sự cố · Incidents"


def test_unknown_is_grey_and_every_status_has_text() -> None:
    city = json.loads((DEPLOY / "dashboards" / "ioc-city.json").read_text(encoding="utf-8"))
    status_table = next(p for p in city["panels"] if p.get("title") == "Tình trạng khu vực · Zone status")
    options = status_table["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert options["unknown"] == {"text": "không rõ · unknown", "color": "#8e8e8e", "index": 4}
    assert {code: o["color"] for code, o in options.items()} == {
        "normal": "green", "watch": "yellow", "alert": "orange", "danger": "red", "unknown": "#8e8e8e"}
    geomap = next(p for p in city["panels"] if p.get("type") == "geomap")
    zone_layer = geomap["options"]["layers"][0]
    assert zone_layer["config"]["style"]["text"] == {"field": "label", "fixed": "", "mode": "field"}
    assert zone_layer["filterData"] == {"id": "byRefId", "options": "C"}
