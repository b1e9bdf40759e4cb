"""Dashboard push through the Grafana adapter, against the stand-in Grafana over real HTTP on loopback."""

from __future__ import annotations

import copy
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dashboards.bundle import Bundle
from dashboards.push import PushReport, format_report, push
from gateways.grafana import GrafanaClient, GrafanaError, GrafanaRefused, GrafanaUnavailable
from ioc_core.errors import RetriableError
from tests.standins.grafana import GrafanaStandIn

pytestmark = pytest.mark.integration

FOLDER = "ioc-city"
DS = "ioc-timescale"
GROUP = "floods"
ROOT = Path(__file__).resolve().parents[2]


def _dashboard(uid: str, title: str, panel_title: str, sql: str) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "tags": ["ioc"], "timezone": "Asia/Ho_Chi_Minh", "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"},
        "panels": [{
            "id": 1, "type": "timeseries", "title": panel_title, "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
            "datasource": {"type": "grafana-postgresql-datasource", "uid": DS},
            "targets": [{"refId": "A", "rawQuery": True, "format": "time_series", "rawSql": sql}],
            "fieldConfig": {"defaults": {"custom": {"lineWidth": 1.0}}, "overrides": []},
        }],
    }


def make_bundle() -> Bundle:
    rule = {
        "uid": "ioc-flood-high", "title": "Water level above alarm", "folderUID": FOLDER, "ruleGroup": GROUP,
        "condition": "C", "noDataState": "NoData", "execErrState": "Error",
        "for": "300s",  # Grafana answers "5m"
        "labels": {"severity": "critical"}, "annotations": {"summary": "Flood sensor {{ $labels.device }}"},
        "data": [  # no intervalMs/maxDataPoints: Grafana adds its defaults
            {"refId": "A", "datasourceUid": DS, "relativeTimeRange": {"from": 600, "to": 0},
             "model": {"refId": "A", "format": "table", "rawSql": "SELECT time, device, value FROM readings"}},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"}},
            {"refId": "C", "datasourceUid": "__expr__",
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": "gt", "params": [2.5]}}]}},
        ],
    }
    return Bundle(
        folder_uid=FOLDER, folder_title="Da Nang IOC",
        datasource={
            "uid": DS, "name": "IOC TimescaleDB", "type": "grafana-postgresql-datasource", "access": "proxy",
            "url": "127.0.0.1:5432", "user": "grafana_reader", "isDefault": True,
            "jsonData": {"database": "ioc", "sslmode": "disable", "postgresVersion": 1500, "timescaledb": False},
            "secureJsonData": {"password": "reader-secret"},
        },
        dashboards=[
            _dashboard("ioc-overview", "City overview", "Uplinks per hour", "SELECT 1"),
            _dashboard("ioc-floods", "Floods", "Water level", "SELECT 2"),
        ],
        rule_groups=[{"title": GROUP, "interval": 60, "rules": [rule]}],
    )


def changed(bundle: Bundle, edit: Callable[[Bundle], object]) -> Bundle:
    copied = copy.deepcopy(bundle)
    edit(copied)
    return copied


def actions(report: PushReport) -> dict[str, str]:
    return {f"{item.kind}:{item.uid}": item.action for item in report.items}


@pytest.fixture
def pushed(grafana: GrafanaStandIn, grafana_client: GrafanaClient) -> Bundle:
    """A stand-in that already holds the bundle; the request counters start from zero."""
    bundle = make_bundle()
    push(bundle, grafana_client)
    grafana.calls.clear()
    return bundle


# -- first and second push ---------------------------------------------------------------------------------


def test_first_push_creates_everything(grafana: GrafanaStandIn, grafana_client: GrafanaClient) -> None:
    report = push(make_bundle(), grafana_client)

    assert actions(report) == {
        f"datasource:{DS}": "created", f"folder:{FOLDER}": "created", "dashboard:ioc-overview": "created",
        "dashboard:ioc-floods": "created", f"rule_group:{FOLDER}/{GROUP}": "created",
    }
    datasource = grafana.datasources[DS]
    assert (datasource["type"], datasource["jsonData"]["database"]) == ("grafana-postgresql-datasource", "ioc")
    assert datasource["secureJsonFields"] == {"password": True}
    assert grafana.secrets[DS] == {"password": "reader-secret"}
    assert grafana.folders[FOLDER]["title"] == "Da Nang IOC"
    model, folder_uid = grafana.dashboards["ioc-floods"]
    assert (model["title"], model["version"], folder_uid) == ("Floods", 1, FOLDER)
    rule = grafana.rule_groups[(FOLDER, GROUP)]["rules"][0]
    assert (rule["uid"], rule["for"], rule["data"][0]["model"]["maxDataPoints"]) == ("ioc-flood-high", "5m", 43200)
    assert "provenance" not in rule  # X-Disable-Provenance: operators may still edit the rule in the UI
    assert format_report(report).splitlines()[-1] == "5 created, 0 updated, 0 unchanged"


def test_second_push_reports_unchanged_and_writes_nothing(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient, pushed: Bundle
) -> None:
    report = push(make_bundle(), grafana_client)

    assert set(actions(report).values()) == {"unchanged"}
    assert grafana.writes() == 0
    assert format_report(report).splitlines()[-1] == "0 created, 0 updated, 5 unchanged"


def test_key_order_and_number_spelling_do_not_count(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient, pushed: Bundle
) -> None:
    def reordered(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: reordered(value[key]) for key in reversed(list(value))}
        if isinstance(value, list):
            return [reordered(item) for item in value]
        return float(value) if type(value) is int else value

    bundle = Bundle(FOLDER, pushed.folder_title, reordered(pushed.datasource), reordered(pushed.dashboards),
                    reordered(pushed.rule_groups))
    report = push(bundle, grafana_client)

    assert set(actions(report).values()) == {"unchanged"}
    assert grafana.writes() == 0


# -- changes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", [
    pytest.param(lambda b: b.dashboards[1].update(title="Floods and rain"), id="title"),
    pytest.param(lambda b: b.dashboards[1]["panels"][0]["targets"][0].update(rawSql="SELECT 3"), id="panel"),
])
def test_a_changed_dashboard_is_the_only_write(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient, pushed: Bundle, edit: Callable[[Bundle], object]
) -> None:
    report = push(changed(pushed, edit), grafana_client)

    assert [(item.uid, item.action) for item in report.items if item.action != "unchanged"] == [
        ("ioc-floods", "updated")
    ]
    assert grafana.writes() == 1 and grafana.calls["POST /api/dashboards/db"] == 1
    assert grafana.dashboards["ioc-floods"][0]["version"] == 2
    assert grafana.dashboards["ioc-overview"][0]["version"] == 1


def test_a_changed_rule_group_is_put_again(grafana: GrafanaStandIn, grafana_client: GrafanaClient,
                                           pushed: Bundle) -> None:
    def raise_threshold(bundle: Bundle) -> None:
        bundle.rule_groups[0]["rules"][0]["data"][2]["model"]["conditions"][0]["evaluator"]["params"] = [3.0]

    report = push(changed(pushed, raise_threshold), grafana_client)

    assert actions(report)[f"rule_group:{FOLDER}/{GROUP}"] == "updated"
    assert grafana.writes() == 1
    stored = grafana.rule_groups[(FOLDER, GROUP)]["rules"][0]["data"][2]["model"]
    assert stored["conditions"][0]["evaluator"]["params"] == [3.0]
    assert set(actions(push(changed(pushed, raise_threshold), grafana_client)).values()) == {"unchanged"}


def test_edits_made_in_grafana_are_reverted(grafana: GrafanaStandIn, grafana_client: GrafanaClient,
                                            pushed: Bundle) -> None:
    grafana.dashboards["ioc-overview"][0]["panels"][0]["title"] = "edited by an operator"
    grafana.rule_groups[(FOLDER, GROUP)]["rules"][0]["isPaused"] = True

    report = push(pushed, grafana_client)

    assert actions(report)["dashboard:ioc-overview"] == "updated"
    assert actions(report)[f"rule_group:{FOLDER}/{GROUP}"] == "updated"
    assert grafana.dashboards["ioc-overview"][0]["panels"][0]["title"] == "Uplinks per hour"
    assert grafana.rule_groups[(FOLDER, GROUP)]["rules"][0]["isPaused"] is False


def test_folder_rename_and_datasource_change(grafana: GrafanaStandIn, grafana_client: GrafanaClient,
                                             pushed: Bundle) -> None:
    bundle = changed(pushed, lambda b: b.datasource.update(url="10.0.0.5:5432"))
    bundle = Bundle(FOLDER, "Da Nang IOC (city)", bundle.datasource, bundle.dashboards, bundle.rule_groups)

    report = push(bundle, grafana_client)

    assert actions(report)[f"folder:{FOLDER}"] == "updated" and actions(report)[f"datasource:{DS}"] == "updated"
    assert (grafana.folders[FOLDER]["title"], grafana.folders[FOLDER]["version"]) == ("Da Nang IOC (city)", 2)
    assert grafana.datasources[DS]["url"] == "10.0.0.5:5432"
    assert grafana.secrets[DS] == {"password": "reader-secret"}  # sent again with the update
    assert grafana.writes() == 2


def test_a_rotated_password_needs_resend_secrets(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient, pushed: Bundle
) -> None:
    rotated = changed(pushed, lambda b: b.datasource.update(secureJsonData={"password": "rotated"}))

    assert actions(push(rotated, grafana_client))[f"datasource:{DS}"] == "unchanged"  # Grafana never shows it
    assert actions(push(rotated, grafana_client, resend_secrets=True))[f"datasource:{DS}"] == "updated"
    assert grafana.secrets[DS] == {"password": "rotated"}


def test_a_datasource_provisioned_from_files_is_not_overwritten(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient, pushed: Bundle
) -> None:
    grafana.datasources[DS]["readOnly"] = True

    assert actions(push(pushed, grafana_client))[f"datasource:{DS}"] == "unchanged"
    with pytest.raises(GrafanaRefused, match="provisioned from files"):
        push(changed(pushed, lambda b: b.datasource.update(url="10.0.0.5:5432")), grafana_client)
    assert grafana.writes() == 0


def test_a_refused_object_fails_alone(grafana: GrafanaStandIn, grafana_client: GrafanaClient) -> None:
    bundle = changed(make_bundle(), lambda b: b.rule_groups[0].update(interval=15))  # not a multiple of 10 s

    report = push(bundle, grafana_client)

    failed = [item for item in report.items if item.action == "failed"]
    assert [item.kind for item in failed] == ["rule_group"] and "interval (15)" in failed[0].error
    assert report.count("created") == 4 and not report.ok
    assert format_report(report).splitlines()[-1] == "4 created, 0 updated, 0 unchanged, 1 failed"


def test_a_bundle_that_cannot_converge_is_refused_before_any_request(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient
) -> None:
    bundle = changed(make_bundle(), lambda b: b.rule_groups[0]["rules"][0].pop("uid"))

    with pytest.raises(ValueError, match="has no uid"):
        push(bundle, grafana_client)
    assert not grafana.calls


# -- what Grafana refuses ----------------------------------------------------------------------------------


def test_saving_into_a_missing_folder_is_refused(grafana: GrafanaStandIn, grafana_client: GrafanaClient) -> None:
    with pytest.raises(GrafanaRefused, match="folder not found") as dashboard_err:
        grafana_client.save_dashboard({"uid": "x", "title": "X"}, folder_uid="no-such-folder")
    with pytest.raises(GrafanaRefused, match="folder does not exist") as group_err:
        grafana_client.put_rule_group("no-such-folder", GROUP, make_bundle().rule_groups[0])
    assert dashboard_err.value.status == group_err.value.status == 400


def test_a_wrong_token_is_refused_with_a_clear_message(grafana: GrafanaStandIn) -> None:
    with GrafanaClient(grafana.url, "not-the-token") as client, pytest.raises(GrafanaRefused) as err:
        push(make_bundle(), client)

    assert err.value.status == 401
    assert "token is wrong" in str(err.value) and "Invalid API key" in str(err.value)
    assert grafana.writes() == 0


def test_a_token_without_rights_is_refused_with_a_clear_message(grafana: GrafanaStandIn) -> None:
    with GrafanaClient(grafana.url, grafana.viewer_token) as client, pytest.raises(GrafanaRefused) as err:
        push(make_bundle(), client)

    assert err.value.status == 403 and "lacks the rights" in str(err.value)


# -- when Grafana cannot answer ----------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    return f"http://127.0.0.1:{port}"


def test_a_closed_port_is_unavailable() -> None:
    with GrafanaClient(closed_port_url(), "token", timeout_s=2.0) as client, \
            pytest.raises(GrafanaUnavailable, match="cannot connect") as err:
        push(make_bundle(), client)
    assert isinstance(err.value, RetriableError)


def test_a_stopped_grafana_a_5xx_and_a_timeout_are_unavailable(grafana: GrafanaStandIn) -> None:
    with GrafanaClient(grafana.url, grafana.token, timeout_s=0.3) as client:
        grafana.fail_next(503, "database is locked")
        with pytest.raises(GrafanaUnavailable, match="database is locked") as err:
            client.get_folder(FOLDER)
        assert err.value.status == 503

        grafana.delay_s = 1.0
        with pytest.raises(GrafanaUnavailable):
            client.get_folder(FOLDER)
        grafana.delay_s = 0.0

        grafana.stop()
        with pytest.raises(GrafanaUnavailable):
            client.get_folder(FOLDER)


def test_health(grafana: GrafanaStandIn, grafana_client: GrafanaClient) -> None:
    assert grafana_client.health()["database"] == "ok"
    assert grafana_client.get_folder("missing") is None and grafana_client.get_dashboard("missing") is None
    assert grafana_client.get_datasource("missing") is None and grafana_client.get_rule_group(FOLDER, "missing") is None


# -- the adapter boundary ----------------------------------------------------------------------------------


def test_grafana_client_exceptions_never_leak(grafana: GrafanaStandIn) -> None:
    """Every failure reaches callers as one of ours; grafana-client's and niquests' stay as ``__cause__``."""
    def nothing() -> None:
        pass

    scenarios: list[tuple[str, str, Callable[[], None]]] = [
        (grafana.url, "wrong", nothing),
        (grafana.url, grafana.viewer_token, nothing),
        (grafana.url, grafana.token, lambda: grafana.fail_next(500)),
        (grafana.url, grafana.token, lambda: grafana.fail_next(409, "conflict")),
        (closed_port_url(), grafana.token, nothing),
    ]
    failures: list[Exception] = []
    for url, token, prepare in scenarios:
        prepare()
        with GrafanaClient(url, token, timeout_s=2.0) as client:
            try:
                client.create_folder(FOLDER, "Da Nang IOC")
            except Exception as err:  # whatever comes out, not only what we expect
                failures.append(err)
    assert len(failures) == len(scenarios)
    for failure in failures:
        assert isinstance(failure, GrafanaError), repr(failure)
        assert all(not cls.__module__.startswith(("grafana_client", "niquests", "urllib3"))
                   for cls in type(failure).__mro__)
        assert failure.__cause__ is not None


def test_only_the_gateway_imports_grafana_client() -> None:
    importing = re.compile(r"^\s*(?:import|from)\s+grafana_client\b", re.MULTILINE)
    offenders = [
        path.relative_to(ROOT).as_posix()
        for package in ("ioc_core", "ioc_cli", "gateways", "ingest", "ioc_api", "dashboards", "device_simulators",
                        "tests")
        for path in sorted((ROOT / package).rglob("*.py"))
        if importing.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == ["gateways/grafana.py"]


# -- retired rules -----------------------------------------------------------------------------------------


def test_retired_rules_are_deleted_wherever_grafana_keeps_them(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient
) -> None:
    # An earlier release: its group held a rule now retired, and an operator moved another into a group of its own.
    old = make_bundle()
    rule = old.rule_groups[0]["rules"][0]
    old.rule_groups[0]["rules"].append({**copy.deepcopy(rule), "uid": "ioc-device-silent", "title": "Device silent"})
    push(old, grafana_client)
    moved = {**copy.deepcopy(rule), "uid": "ioc-gateway-offline", "title": "Gateway offline", "ruleGroup": "moved"}
    grafana_client.put_rule_group(FOLDER, "moved", {"title": "moved", "interval": 60, "rules": [moved]})
    new = changed(make_bundle(), lambda b: b.retired_rules.extend(
        ["ioc-device-silent", "ioc-gateway-offline", "ioc-never-pushed"]))

    report = push(new, grafana_client)

    # The group's put drops the rule it no longer lists; the moved one is deleted by uid; one never pushed is
    # not reported at all.
    assert actions(report) == {
        f"datasource:{DS}": "unchanged", f"folder:{FOLDER}": "unchanged", "dashboard:ioc-overview": "unchanged",
        "dashboard:ioc-floods": "unchanged", f"rule_group:{FOLDER}/{GROUP}": "updated",
        "alert_rule:ioc-gateway-offline": "deleted",
    }
    assert format_report(report).splitlines()[-1] == "0 created, 1 updated, 4 unchanged, 1 deleted"
    assert [r["uid"] for r in grafana.rule_groups[(FOLDER, GROUP)]["rules"]] == ["ioc-flood-high"]
    assert (FOLDER, "moved") not in grafana.rule_groups  # its only rule went, and the group with it
    assert grafana_client.get_alert_rule("ioc-gateway-offline") is None
    assert grafana_client.get_alert_rule("ioc-flood-high") is not None
    grafana.calls.clear()

    again = push(new, grafana_client)

    assert set(actions(again).values()) == {"unchanged"} and grafana.writes() == 0
    assert format_report(again).splitlines()[-1] == "0 created, 0 updated, 5 unchanged"


def test_a_rule_both_kept_and_retired_is_refused(grafana_client: GrafanaClient) -> None:
    bundle = changed(make_bundle(), lambda b: b.retired_rules.append("ioc-flood-high"))
    with pytest.raises(ValueError, match=r"\['ioc-flood-high'\] are both retired and in a rule group"):
        push(bundle, grafana_client)


def test_a_file_provisioned_retired_rule_fails_that_rule_only(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient
) -> None:
    old = make_bundle()
    rule = copy.deepcopy(old.rule_groups[0]["rules"][0])
    push(old, grafana_client)
    grafana_client.put_rule_group(FOLDER, "files", {"title": "files", "interval": 60,
                                                    "rules": [{**rule, "uid": "ioc-old", "ruleGroup": "files"}]})
    grafana.rule_groups[(FOLDER, "files")]["rules"][0]["provenance"] = "file"  # provisioned from a file
    grafana.calls.clear()

    report = push(changed(make_bundle(), lambda b: b.retired_rules.append("ioc-old")), grafana_client)

    (failed,) = [item for item in report.items if item.action == "failed"]
    assert (failed.kind, failed.uid) == ("alert_rule", "ioc-old") and "deleteRules" in failed.error
    assert not report.ok and grafana_client.get_alert_rule("ioc-old") is not None
    assert grafana.writes() == 0  # not even tried: Grafana would answer 409


def test_the_standin_refuses_deleting_a_file_provisioned_rule_as_grafana_does(
    grafana: GrafanaStandIn, grafana_client: GrafanaClient
) -> None:
    push(make_bundle(), grafana_client)
    grafana.rule_groups[(FOLDER, GROUP)]["rules"][0]["provenance"] = "file"
    with pytest.raises(GrafanaRefused, match="409: cannot delete with provided provenance 'api', needs 'file'"):
        grafana_client.delete_alert_rule("ioc-flood-high")
    grafana.rule_groups[(FOLDER, GROUP)]["rules"][0]["provenance"] = "api"
    grafana_client.delete_alert_rule("ioc-flood-high")  # a rule the API made, deleted by the API: 204
    assert grafana_client.get_alert_rule("ioc-flood-high") is None and (FOLDER, GROUP) not in grafana.rule_groups
