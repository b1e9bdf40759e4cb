"""Operations through the API on a real PostgreSQL: zone status, alarms and incidents, their lifecycle, roles,
timeline, audit, SOP checklist, concurrent actions, and the SOP cards' validation at start-up.

Incidents and alarms are written with SQL, as the evaluator writes them (gateways/schema/0016_operations.sql is
the contract); everything after that goes through the routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc_api.app import create_app
from ioc_core.settings import DatabaseSettings
from operations.sop import SopError
from tests.api_support import app_for, key, served
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

T0 = datetime(2026, 10, 14, 2, 0, tzinfo=UTC)
Headers = dict[str, str]


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.fixture
def ward(db_url: str, api_client: TestClient) -> str:
    """Thạch Thang, a ward of Hải Châu (the app has seeded the districts)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO zones (code, name, level, parent_code, boundary)
                        VALUES ('thach-thang', 'Thạch Thang', 'ward', 'hai-chau', '{}')""")
    return "thach-thang"


@pytest.fixture
def users(db_url: str, api_client: TestClient) -> dict[str, Headers]:
    """One of each: the city IOC, two Hải Châu operators, one of Sơn Trà, a technician and a developer (the app
    has seeded the districts their zones name)."""
    return {
        "city": key(db_url, "ioc-city", "operator"),
        "hc": key(db_url, "ops-hai-chau", "operator", ["hai-chau"]),
        "hc2": key(db_url, "ops-hai-chau-2", "operator", ["hai-chau"]),
        "st": key(db_url, "ops-son-tra", "operator", ["son-tra"]),
        "tech": key(db_url, "tech-hai-chau", "technician", ["hai-chau"]),
        "dev": key(db_url, "dev-app", "developer"),
    }


def _incident(db_url: str, zone: str, hazard: str = "flood", *, kind: str | None = None, state: str = "new",
              severity: str = "major", owner: str = "hai-chau", opened: datetime = T0) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            """INSERT INTO incidents (zone_code, hazard, kind, severity, state, title, owner, opened_at, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (zone, hazard, kind or hazard, severity, state, f"{hazard} in {zone}", owner, opened, opened)).fetchone()
    assert row is not None
    return int(row[0])


def _alarm(db_url: str, source: str, subject: str, *, zone: str | None, incident: int | None = None,
           severity: str = "major", state: str = "active", device: str | None = None,
           seen: datetime = T0) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            """INSERT INTO alarms (source, subject, hazard, zone_code, device_eui, severity, state, message, details,
                                   first_seen, last_seen, count, cleared_at, incident_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, 3, %s, %s) RETURNING id""",
            (source, subject, "flood" if source == "hazard" else None, zone, device, severity, state,
             f"{source} {subject}", json.dumps({"value": 2.4}), seen - timedelta(minutes=10), seen,
             seen if state == "cleared" else None, incident)).fetchone()
    assert row is not None
    return int(row[0])


def _rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return [tuple(r) for r in conn.execute(query, params).fetchall()]


# --- the lifecycle ------------------------------------------------------------------------------------------------

def test_an_incident_goes_from_new_to_closed_with_its_timeline_and_audit(
        api_client: TestClient, users: dict[str, Headers], ward: str, db_url: str) -> None:
    incident = _incident(db_url, ward)
    _alarm(db_url, "hazard", f"{ward}/flood/a1", zone=ward, incident=incident)
    base = f"/api/v1/incidents/{incident}"
    seen: dict[str, str] = {}
    for action, state, stamp in (("acknowledge", "acknowledged", "acknowledged_at"), ("start", "in_progress", None),
                                 ("resolve", "resolved", "resolved_at"), ("close", "closed", "closed_at")):
        response = api_client.post(f"{base}/{action}", headers=users["hc"], json={"note": f"{action} note"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["state"] == state and body["active_alarms"] == 1
        assert datetime.fromisoformat(body["updated_at"]) > T0
        if stamp:
            seen[stamp] = body[stamp]
            assert body[stamp] == body["updated_at"]
    assert seen.keys() == {"acknowledged_at", "resolved_at", "closed_at"}
    events = _rows(db_url, "SELECT actor, action, details FROM incident_events WHERE incident_id = %s ORDER BY id",
                   incident)
    assert [(a, b, d["from"], d["to"], d["note"]) for a, b, d in events] == [
        ("ops-hai-chau", "acknowledge", "new", "acknowledged", "acknowledge note"),
        ("ops-hai-chau", "start", "acknowledged", "in_progress", "start note"),
        ("ops-hai-chau", "resolve", "in_progress", "resolved", "resolve note"),
        ("ops-hai-chau", "close", "resolved", "closed", "close note"),
    ]
    audit = _rows(db_url, "SELECT actor, action, entity_id FROM audit_log WHERE entity = 'incident' ORDER BY id")
    assert audit == [("ops-hai-chau", a, str(incident)) for a in ("acknowledge", "start", "resolve", "close")]
    admin = key(db_url, "root", "admin")
    logged = api_client.get("/api/v1/audit", headers=admin, params={"entity": "incident"}).json()["items"]
    assert [(e["action"], e["changes"]["to"]) for e in logged] == [
        ("close", "closed"), ("resolve", "resolved"), ("start", "in_progress"), ("acknowledge", "acknowledged")]
    detail = api_client.get(base, headers=users["city"]).json()
    assert [e["action"] for e in detail["events"]] == ["acknowledge", "start", "resolve", "close"]
    assert detail["state"] == "closed" and len(detail["alarms"]) == 1
    # Closed is final: every action now is a 409 naming the state.
    for action in ("acknowledge", "start", "resolve", "close", "reopen"):
        error = _error(api_client.post(f"{base}/{action}", headers=users["hc"]), 409)
        assert "closed" in error["message"] and error["field"] == "state"
    error = _error(api_client.post(f"{base}/comments", headers=users["hc"], json={"text": "late"}), 409)
    assert "closed" in error["message"]


@pytest.mark.parametrize(("state", "action", "named"), [
    ("new", "start", "new (mới)"), ("new", "resolve", "new (mới)"), ("new", "close", "new (mới)"),
    ("acknowledged", "acknowledge", "acknowledged (tiếp nhận)"), ("acknowledged", "resolve", "acknowledged"),
    ("in_progress", "close", "in progress (đang xử lý)"), ("resolved", "start", "resolved (đã xử lý)"),
    ("new", "reopen", "new"),
])
def test_a_skipped_or_repeated_step_is_409_naming_the_state(api_client: TestClient, users: dict[str, Headers],
                                                           db_url: str, state: str, action: str, named: str) -> None:
    incident = _incident(db_url, "hai-chau", state=state)
    error = _error(api_client.post(f"/api/v1/incidents/{incident}/{action}", headers=users["hc"]), 409)
    assert named in error["message"] and error["code"] == "conflict"
    assert _rows(db_url, "SELECT state FROM incidents WHERE id = %s", incident) == [(state,)]
    assert _rows(db_url, "SELECT count(*) FROM incident_events") == [(0,)]


def test_reopen_brings_a_resolved_incident_back_unless_another_is_open(
        api_client: TestClient, users: dict[str, Headers], db_url: str) -> None:
    first = _incident(db_url, "hai-chau", state="resolved")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE incidents SET resolved_at = %s WHERE id = %s", (T0, first))
    body = api_client.post(f"/api/v1/incidents/{first}/reopen", headers=users["city"]).json()
    assert body["state"] == "in_progress" and body["resolved_at"] is None
    assert api_client.post(f"/api/v1/incidents/{first}/resolve", headers=users["city"]).status_code == 200
    _incident(db_url, "hai-chau", state="new")  # the water came back: the evaluator opened a new one
    error = _error(api_client.post(f"/api/v1/incidents/{first}/reopen", headers=users["city"]), 409)
    assert "another open flood incident" in error["message"]
    assert _rows(db_url, "SELECT state FROM incidents WHERE id = %s", first) == [("resolved",)]


# --- who may see and act ------------------------------------------------------------------------------------------

def test_roles_and_zones_decide_who_sees_and_acts(api_client: TestClient, users: dict[str, Headers], ward: str,
                                                  db_url: str) -> None:
    flood = _incident(db_url, ward)
    device = _incident(db_url, ward, "device", severity="minor")
    network = _incident(db_url, "son-tra", "network", owner="son-tra")
    escalated = _incident(db_url, "hai-chau", "heavy_rain", owner="city", severity="critical")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE incidents SET escalated_at = %s, escalation_level = 1 WHERE id = %s", (T0, escalated))

    def listed(who: str, **params: Any) -> list[int]:
        response = api_client.get("/api/v1/incidents", headers=users[who], params=params)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert listed("city") == [escalated, network, flood, device]  # most severe first, then newest
    assert set(listed("hc")) == {flood, device, escalated}
    assert listed("st") == [network]
    assert listed("tech") == [device]  # device and network incidents of its zones only
    assert listed("city", zone="hai-chau") == [escalated, flood, device]  # a district includes its wards
    assert listed("city", zone=ward, hazard="flood") == [flood]
    assert listed("city", severity="critical") == [escalated]
    assert listed("city", kind="network") == [network]
    _error(api_client.get("/api/v1/incidents", headers=users["dev"]), 403)

    assert api_client.get(f"/api/v1/incidents/{flood}", headers=users["hc"]).status_code == 200
    assert "outside your zones" in _error(api_client.get(f"/api/v1/incidents/{flood}", headers=users["st"]),
                                          403)["message"]
    assert "technicians see device" in _error(api_client.get(f"/api/v1/incidents/{flood}", headers=users["tech"]),
                                              403)["message"]
    assert api_client.get(f"/api/v1/incidents/{device}", headers=users["tech"]).status_code == 200
    _error(api_client.get(f"/api/v1/incidents/{device}", headers=users["dev"]), 403)
    assert _error(api_client.get("/api/v1/incidents/999999", headers=users["city"]), 404)["field"] == "incident_id"

    # Acting: the district's operators on their zones (escalated ones too), the city on all; never technicians.
    _error(api_client.post(f"/api/v1/incidents/{device}/acknowledge", headers=users["tech"]), 403)
    _error(api_client.post(f"/api/v1/incidents/{flood}/acknowledge", headers=users["st"]), 403)
    _error(api_client.post(f"/api/v1/incidents/{flood}/comments", headers=users["st"], json={"text": "x"}), 403)
    _error(api_client.post(f"/api/v1/incidents/{flood}/acknowledge", headers=users["dev"]), 403)
    assert api_client.post(f"/api/v1/incidents/{escalated}/acknowledge", headers=users["hc"]).json()["owner"] == "city"
    assert api_client.post(f"/api/v1/incidents/{network}/acknowledge", headers=users["city"]).status_code == 200
    assert _rows(db_url, "SELECT state FROM incidents WHERE id = %s", flood) == [("new",)]
    _error(api_client.post("/api/v1/incidents/999999/acknowledge", headers=users["city"]), 404)


def test_assign_only_to_an_operator_allowed_on_the_zone(api_client: TestClient, users: dict[str, Headers],
                                                        ward: str, db_url: str) -> None:
    incident = _incident(db_url, ward)
    url = f"/api/v1/incidents/{incident}/assign"
    for name, words in (("ops-son-tra", "may not act"), ("tech-hai-chau", "may not act"), ("dev-app", "may not act"),
                        ("ghost", "no active user")):
        error = _error(api_client.post(url, headers=users["hc"], json={"assignee": name}), 422)
        assert error["field"] == "assignee" and words in error["message"], (name, error)
    _error(api_client.post(url, headers=users["hc"], json={"assignee": "bad name!"}), 422)
    assert api_client.post(url, headers=users["hc"], json={"assignee": "ops-hai-chau-2"}).json()["assignee"] \
        == "ops-hai-chau-2"
    body = api_client.post(url, headers=users["hc"], json={"assignee": "ioc-city", "note": "city takes it"}).json()
    assert body["assignee"] == "ioc-city" and body["state"] == "new"  # assigning is not acknowledging
    assert api_client.post(url, headers=users["city"], json={"assignee": None}).json()["assignee"] is None
    events = _rows(db_url, "SELECT actor, details->>'from', details->>'to' FROM incident_events "
                           "WHERE incident_id = %s AND action = 'assign' ORDER BY id", incident)
    assert events == [("ops-hai-chau", None, "ops-hai-chau-2"), ("ops-hai-chau", "ops-hai-chau-2", "ioc-city"),
                      ("ioc-city", "ioc-city", None)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE api_users SET revoked_at = now() WHERE name = 'ops-hai-chau-2'")
    assert "no active user" in _error(api_client.post(url, headers=users["hc"],
                                                      json={"assignee": "ops-hai-chau-2"}), 422)["message"]


# --- the SOP card and its checklist -----------------------------------------------------------------------------

def test_the_incident_shows_its_sop_card_and_ticks_go_into_the_timeline(
        api_client: TestClient, users: dict[str, Headers], ward: str, db_url: str) -> None:
    incident = _incident(db_url, ward)
    base = f"/api/v1/incidents/{incident}"
    sop = api_client.get(base, headers=users["hc"]).json()["sop"]
    assert sop["kind"] == "flood" and sop["title"]["vi"] == "Ngập lụt đô thị"
    assert sop["places_zone"] == ward and sop["places"]["example"] is True and sop["places"]["roads"]
    assert {"1022", "114"} <= {c["phone"] for c in sop["contacts"]}
    assert [s["done_by"] for s in sop["steps"]] == [None] * len(sop["steps"])
    first, second = sop["steps"][0]["id"], sop["steps"][1]["id"]

    steps = api_client.put(f"{base}/checklist/{first}", headers=users["hc"]).json()
    assert steps[0]["id"] == first and steps[0]["done_by"] == "ops-hai-chau" and steps[0]["done_at"]
    again = api_client.put(f"{base}/checklist/{first}", headers=users["hc2"]).json()
    assert again[0]["done_by"] == "ops-hai-chau"  # ticked already: nothing changes
    api_client.put(f"{base}/checklist/{second}", headers=users["hc2"])
    assert api_client.delete(f"{base}/checklist/{first}", headers=users["hc"]).json()[0]["done_by"] is None
    api_client.delete(f"{base}/checklist/{first}", headers=users["hc"])  # unticked already: nothing
    error = _error(api_client.put(f"{base}/checklist/swim", headers=users["hc"]), 404)
    assert error["field"] == "step" and first in error["message"]
    _error(api_client.put(f"{base}/checklist/{first}", headers=users["st"]), 403)
    _error(api_client.put(f"{base}/checklist/{first}", headers=users["tech"]), 403)

    comment = api_client.post(f"{base}/comments", headers=users["hc"], json={"text": "Nước lên nhanh ở Lê Lợi"})
    assert comment.status_code == 201 and comment.json()["details"] == {"text": "Nước lên nhanh ở Lê Lợi"}
    _error(api_client.post(f"{base}/comments", headers=users["hc"], json={"text": ""}), 422)

    detail = api_client.get(base, headers=users["hc"]).json()
    assert [(e["actor"], e["action"], e["details"]) for e in detail["events"]] == [
        ("ops-hai-chau", "tick", {"step": first}), ("ops-hai-chau-2", "tick", {"step": second}),
        ("ops-hai-chau", "untick", {"step": first}),
        ("ops-hai-chau", "comment", {"text": "Nước lên nhanh ở Lê Lợi"})]
    assert [(s["id"], s["done_by"]) for s in detail["sop"]["steps"][:2]] == [(first, None), (second, "ops-hai-chau-2")]
    assert _rows(db_url, "SELECT step, done_by FROM incident_checklist") == [(second, "ops-hai-chau-2")]
    assert _rows(db_url, "SELECT count(*) FROM audit_log WHERE entity = 'incident'") == [(4,)]
    assert detail["state"] == "new"


def test_a_ward_without_its_own_places_shows_its_districts(api_client: TestClient, users: dict[str, Headers],
                                                         db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO zones (code, name, level, parent_code, boundary)
                        VALUES ('hoa-cuong-bac', 'Hòa Cường Bắc', 'ward', 'hai-chau', '{}')""")
    incident = _incident(db_url, "hoa-cuong-bac", "heavy_rain")
    sop = api_client.get(f"/api/v1/incidents/{incident}", headers=users["hc"]).json()["sop"]
    assert sop["kind"] == "heavy_rain" and sop["places_zone"] == "hai-chau"
    pipeline = _incident(db_url, "city", "pipeline", owner="city")
    body = api_client.get(f"/api/v1/incidents/{pipeline}", headers=users["city"]).json()
    assert body["sop"]["kind"] == "pipeline" and body["sop"]["places"] is None
    _error(api_client.get(f"/api/v1/incidents/{pipeline}", headers=users["hc"]), 403)  # the city's own


# --- two operators at once --------------------------------------------------------------------------------------

def test_two_acknowledges_at_once_one_wins_the_other_is_409(users: dict[str, Headers], ward: str,
                                                            db_url: str) -> None:
    incident = _incident(db_url, ward)
    answers: list[tuple[int, dict[str, Any]]] = []
    with served(app_for(db_url, zones=False)) as url, psycopg.connect(db_url) as blocker:
        # Hold the incident's row so both requests are inside their transaction before either can go on.
        blocker.execute("SELECT 1 FROM incidents WHERE id = %s FOR UPDATE", (incident,))

        def acknowledge(who: str) -> None:
            request = urllib.request.Request(f"{url}/api/v1/incidents/{incident}/acknowledge", method="POST",
                                             headers=users[who])
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers.append((response.status, json.load(response)))
            except urllib.error.HTTPError as refused:
                answers.append((refused.code, json.load(refused)))

        threads = [threading.Thread(target=acknowledge, args=(who,)) for who in ("hc", "hc2")]
        for thread in threads:
            thread.start()
        with psycopg.connect(db_url, autocommit=True) as watcher:
            wait_for(lambda: watcher.execute(
                """SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                   AND query LIKE '%%FOR UPDATE OF i%%'""").fetchone() == (2,),
                timeout_s=30, what="both acknowledges to wait on the incident's row")
        blocker.rollback()
        for thread in threads:
            thread.join(timeout=30)
    assert sorted(status for status, _body in answers) == [200, 409], answers
    loser = next(body for status, body in answers if status == 409)
    assert "acknowledged (tiếp nhận)" in loser["error"]["message"]
    assert _rows(db_url, "SELECT count(*) FROM incident_events WHERE action = 'acknowledge'") == [(1,)]


# --- alarms -------------------------------------------------------------------------------------------------------

def test_alarms_by_role_with_filters_and_pages(api_client: TestClient, users: dict[str, Headers], ward: str,
                                               db_url: str) -> None:
    incident = _incident(db_url, ward)
    hazard = _alarm(db_url, "hazard", f"{ward}/flood/a1", zone=ward, incident=incident, severity="critical",
                    seen=T0 + timedelta(minutes=4))
    silent = _alarm(db_url, "device_silent", "00000000000000a2", zone=ward, device="00000000000000a2",
                    severity="minor", seen=T0 + timedelta(minutes=3))
    gateway = _alarm(db_url, "gateway_offline", "b827ebfffe61ca01", zone="son-tra", seen=T0 + timedelta(minutes=2))
    pipeline = _alarm(db_url, "dead_letters", "dead_letters", zone=None, state="cleared",
                      seen=T0 + timedelta(minutes=1))

    def listed(who: str, **params: Any) -> list[int]:
        response = api_client.get("/api/v1/alarms", headers=users[who], params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["items"]]

    assert listed("city") == [hazard, silent, gateway, pipeline]  # newest first
    assert listed("hc") == [hazard, silent]
    assert listed("st") == [gateway]
    assert listed("tech") == [silent]  # device and gateway alarms of its zones
    _error(api_client.get("/api/v1/alarms", headers=users["dev"]), 403)
    assert listed("city", state="active") == [hazard, silent, gateway]
    assert listed("city", state="cleared") == [pipeline]
    assert listed("city", source="gateway_offline") == [gateway]
    assert listed("city", severity="minor") == [silent]
    assert listed("city", zone="hai-chau") == [hazard, silent]
    assert listed("city", incident_id=incident) == [hazard]
    page = api_client.get("/api/v1/alarms", headers=users["city"], params={"limit": 2, "offset": 2}).json()
    assert [a["id"] for a in page["items"]] == [gateway, pipeline] and page["total"] == 4
    empty = api_client.get("/api/v1/alarms", headers=users["city"], params={"offset": 10}).json()
    assert empty["items"] == [] and empty["total"] == 4
    _error(api_client.get("/api/v1/alarms", headers=users["city"], params={"source": "volcano"}), 422)

    one = api_client.get(f"/api/v1/alarms/{silent}", headers=users["tech"]).json()
    assert one["source"] == "device_silent" and one["zone"] == ward and one["count"] == 3
    assert one["device_eui"] == "00000000000000a2" and one["details"] == {"value": 2.4}
    assert "technicians see device" in _error(api_client.get(f"/api/v1/alarms/{hazard}", headers=users["tech"]),
                                              403)["message"]
    _error(api_client.get(f"/api/v1/alarms/{hazard}", headers=users["st"]), 403)
    _error(api_client.get(f"/api/v1/alarms/{pipeline}", headers=users["hc"]), 403)
    _error(api_client.get(f"/api/v1/alarms/{hazard}", headers=users["dev"]), 403)
    assert _error(api_client.get("/api/v1/alarms/999999", headers=users["city"]), 404)["field"] == "alarm_id"
    detail = api_client.get(f"/api/v1/incidents/{incident}", headers=users["hc"]).json()
    assert [a["id"] for a in detail["alarms"]] == [hazard] and detail["active_alarms"] == 1


# --- zone status --------------------------------------------------------------------------------------------------

def test_zone_status_with_its_reasons_and_changes(api_client: TestClient, users: dict[str, Headers], ward: str,
                                                  db_url: str) -> None:
    evidence = [{"dev_eui": "00000000000000a1", "metric": "water_level", "value": 2.4}]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO zone_hazard_status (zone_code, hazard, status, since, evaluated_at, reason, evidence)
               VALUES (%s, 'flood', 'alert', %s, %s, 'alert: 00000000000000a1 water_level 2.4', %s::jsonb),
                      ('hai-chau', 'flood', 'alert', %s, %s, 'worst ward', '[]'),
                      ('hai-chau', 'air_quality', 'normal', %s, %s, 'all normal', '[]')""",
            (ward, T0, T0, json.dumps(evidence), T0, T0, T0, T0))
        for minutes, before, after in ((0, None, "unknown"), (5, "unknown", "watch"), (9, "watch", "alert")):
            conn.execute("""INSERT INTO zone_hazard_changes (zone_code, hazard, at, from_status, to_status, reason,
                                                             evidence) VALUES (%s, 'flood', %s, %s, %s, 'why', '[]')""",
                         (ward, T0 + timedelta(minutes=minutes), before, after))

    body = api_client.get(f"/api/v1/zones/{ward}/status", headers=users["hc"], params={"limit": 2}).json()
    assert body["code"] == ward and body["parent_code"] == "hai-chau" and body["level"] == "ward"
    hazards = {h["hazard"]: h for h in body["hazards"]}
    assert set(hazards) == {"flood", "heavy_rain", "air_quality"}
    assert hazards["flood"]["status"] == "alert" and hazards["flood"]["evidence"] == evidence
    assert hazards["flood"]["hazard_name"] == {"vi": "Ngập lụt", "en": "Flood"}
    # Not evaluated is not normal.
    assert hazards["heavy_rain"]["status"] == "unknown" and hazards["heavy_rain"]["since"] is None
    assert body["worst"] == "alert"
    assert [(c["from_status"], c["to_status"]) for c in body["changes"]] == [("watch", "alert"),
                                                                             ("unknown", "watch")]
    flood_only = api_client.get(f"/api/v1/zones/{ward}/status", headers=users["tech"],
                                params={"hazard": "flood"}).json()
    assert [h["hazard"] for h in flood_only["hazards"]] == ["flood"] and len(flood_only["changes"]) == 3

    _error(api_client.get(f"/api/v1/zones/{ward}/status", headers=users["st"]), 403)
    _error(api_client.get(f"/api/v1/zones/{ward}/status", headers=users["dev"]), 403)
    assert _error(api_client.get("/api/v1/zones/atlantis/status", headers=users["city"]), 404)["field"] == "code"

    city = api_client.get("/api/v1/zone-status", headers=users["city"]).json()
    by_code = {z["code"]: z for z in city}
    assert {"hai-chau", "son-tra", ward} <= set(by_code) and "city" not in by_code
    assert by_code["hai-chau"]["worst"] == "alert" and by_code["son-tra"]["worst"] == "unknown"
    assert by_code["hai-chau"]["changes"] is None
    assert sorted(z["code"] for z in api_client.get("/api/v1/zone-status", headers=users["hc"]).json()) \
        == ["hai-chau", ward]
    air = api_client.get("/api/v1/zone-status", headers=users["hc"], params={"hazard": "air_quality"}).json()
    assert {z["code"]: z["worst"] for z in air} == {"hai-chau": "normal", ward: "unknown"}
    _error(api_client.get("/api/v1/zone-status", headers=users["dev"]), 403)


# --- the SOP cards at start-up ------------------------------------------------------------------------------------

def _bad_cards(tmp_path: Path) -> Path:
    folder = tmp_path / "sop"
    folder.mkdir()
    (folder / "flood.yaml").write_text("kind: flood\ntitle: {vi: Ngập, en: Flood}\nsteps:\n  - {id: a}\n",
                                       encoding="utf-8")
    return folder


def test_a_bad_sop_folder_stops_the_app_from_being_built(tmp_path: Path, db_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_SOP_DIR", str(_bad_cards(tmp_path)))
    with pytest.raises(SopError, match=r"flood\.yaml: steps\.0\.text: Field required"):
        create_app(DatabaseSettings(url=db_url))  # type: ignore[arg-type]


def test_ioc_api_with_a_bad_sop_folder_exits_with_one_line(tmp_path: Path, db_url: str) -> None:
    env = {**os.environ, "IOC_DATABASE_URL": db_url, "IOC_SOP_DIR": str(_bad_cards(tmp_path)),
           "IOC_API_PORT": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "ioc_cli", "api"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "flood.yaml: steps.0.text: Field required" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    missing = subprocess.run([sys.executable, "-m", "ioc_cli", "api"], env={**env, "IOC_SOP_DIR": str(tmp_path / "x")},
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "(IOC_SOP_DIR) is not a folder" in missing.stderr, missing.stderr


# --- the OpenAPI document -----------------------------------------------------------------------------------------

def test_every_operations_route_is_documented_with_its_answers(api_client: TestClient) -> None:
    paths = api_client.get("/openapi.json").json()["paths"]
    ours = {path: ops for path, ops in paths.items()
            if (path.startswith(("/api/v1/incidents", "/api/v1/alarms", "/api/v1/zone-status"))
                and not path.endswith("/warnings"))  # drafting a warning: tests/integration/test_api_warnings.py
            or path == "/api/v1/zones/{code}/status"}
    assert {(path, method) for path, ops in ours.items() for method in ops} == {
        ("/api/v1/zone-status", "get"), ("/api/v1/zones/{code}/status", "get"),
        ("/api/v1/alarms", "get"), ("/api/v1/alarms/{alarm_id}", "get"),
        ("/api/v1/incidents", "get"), ("/api/v1/incidents/{incident_id}", "get"),
        *((f"/api/v1/incidents/{{incident_id}}/{a}", "post")
          for a in ("acknowledge", "start", "resolve", "close", "reopen", "assign", "comments")),
        ("/api/v1/incidents/{incident_id}/checklist/{step}", "put"),
        ("/api/v1/incidents/{incident_id}/checklist/{step}", "delete"),
    }
    for path, ops in ours.items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op["summary"] and op["tags"] == ["operations"], where
            success = op["responses"].get("201" if path.endswith("/comments") else "200")
            assert success and success["content"]["application/json"]["schema"], where
            assert {"401", "403", "404", "422", "503"} <= set(op["responses"]), where
            if path.startswith("/api/v1/incidents/{incident_id}/"):
                assert "409" in op["responses"] and "timeline" in op["description"], where
    assert "tiếp nhận" in paths["/api/v1/incidents/{incident_id}/acknowledge"]["post"]["summary"]
