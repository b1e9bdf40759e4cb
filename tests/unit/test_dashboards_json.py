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
from dashboards.alerts import FOLDER_UID, all_rules
from dashboards.boards import all_boards
from dashboards.macros import TimeRange, expand
from dashboards.provisioning import DatabaseTarget, bundle, render_files, rule_group_model
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
    model = Dashboard.from_json(data)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == data
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
    assert len(set(uids)) == len(uids) == 6
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
    assert group["interval"] == "60s" and len(group["rules"]) == 6
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


def test_alert_rules_cover_the_issue() -> None:
    titles = {r.title for r in all_rules()}
    assert titles == {"Water above alert level", "Water above danger level", "PM2.5 above the limit",
                      "Device silent", "Gateway offline", "Dead letters rising"}
