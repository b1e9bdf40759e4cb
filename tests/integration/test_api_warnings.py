"""Public warnings through the API on a real database: a draft from an incident, approval by a second operator,
the outbox rows it writes once (public routes and one retained MQTT topic per zone), Updates and Cancels that
reference the earlier message, the public feeds without a key, and who may do what."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import xmlschema
from fastapi.testclient import TestClient

from gateways.database import connect
from ingest.registry import seed_zones
from ioc_api.queries.warnings import Issuer, approve
from ioc_core.errors import Conflict
from ioc_core.settings import CapSettings
from ioc_core.zones import Zone, load_default_zones
from tests.api_support import app_for, key

pytestmark = [pytest.mark.integration]

XSD = Path(__file__).parent.parent / "fixtures" / "cap" / "CAP-v1.2.xsd"
ATOM = "{http://www.w3.org/2005/Atom}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


def _square(lon: float, lat: float, half: float = 0.002) -> tuple[tuple[tuple[float, float], ...]]:
    return (((lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half), (lon - half, lat + half),
             (lon - half, lat - half)),)


WARD_A = Zone("hc-ward-a", "Phường A", "ward", _square(108.222, 16.060), parent="hai-chau")
WARD_B = Zone("hc-ward-b", "Phường B", "ward", _square(108.218, 16.050), parent="hai-chau")
WARD_C = Zone("hc-ward-c", "Phường C", "ward", _square(108.215, 16.080), parent="hai-chau")  # stays normal


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture
def city(db_url: str) -> Iterator[dict[str, Any]]:
    """Wards A (danger) and B (alert) of Hải Châu, an open flood incident there, two public routes, and users."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, [*load_default_zones(), WARD_A, WARD_B, WARD_C])
        now = datetime.now(UTC)
        for ward, status in (("hc-ward-a", "danger"), ("hc-ward-b", "alert"), ("hc-ward-c", "normal")):
            conn.execute("INSERT INTO zone_hazard_status (zone_code, hazard, status, since, evaluated_at, reason) "
                         "VALUES (%s, 'flood', %s, %s, %s, 'test')", (ward, status, now, now))
        (incident,) = conn.execute(
            """INSERT INTO incidents (zone_code, hazard, kind, severity, title, owner, opened_at, updated_at)
               VALUES ('hai-chau', 'flood', 'flood', 'major', 'Ngập lụt Hải Châu', 'hai-chau', %s, %s)
               RETURNING id""", (now, now)).fetchone()  # type: ignore[misc]
        (other,) = conn.execute(
            """INSERT INTO incidents (zone_code, hazard, kind, severity, title, owner, opened_at, updated_at)
               VALUES ('son-tra', 'flood', 'flood', 'minor', 'Ngập lụt Sơn Trà', 'son-tra', %s, %s)
               RETURNING id""", (now, now)).fetchone()  # type: ignore[misc]
        conn.execute("""INSERT INTO notification_routes (user_name, event, channel, address) VALUES
                        (NULL, 'warning', 'webhook', 'http://127.0.0.1:9/hook'),
                        (NULL, 'warning', 'email', 'dan@example.org'),
                        (NULL, 'incident_new', 'sms', '84900000000')""")
    with TestClient(app_for(db_url, zones=False)) as client:
        yield {
            "client": client, "incident": incident, "other": other, "db_url": db_url,
            "an": key(db_url, "an", "operator"),  # the city IOC: no zones
            "binh": key(db_url, "binh", "operator", ["hai-chau"]),
            "chi": key(db_url, "chi", "operator", ["hai-chau"]),
            "son": key(db_url, "son", "operator", ["son-tra"]),
            "admin": key(db_url, "root", "admin"),
            "dev": key(db_url, "devon", "developer"),
            "tech": key(db_url, "tuan", "technician", ["hai-chau"]),
        }


def _outbox(db_url: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT idempotency_key, channel, address, payload FROM notification_outbox "
                            "ORDER BY id").fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


def _draft(city: dict[str, Any], who: str = "binh", body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = city["client"].post(f"/api/v1/incidents/{city['incident']}/warnings", headers=city[who], json=body)
    assert answer.status_code == 201, answer.text
    draft: dict[str, Any] = answer.json()
    return draft


def _approve(city: dict[str, Any], warning_id: int, who: str = "chi") -> dict[str, Any]:
    answer = city["client"].post(f"/api/v1/warnings/{warning_id}/approve", headers=city[who])
    assert answer.status_code == 200, answer.text
    approved: dict[str, Any] = answer.json()
    return approved


def test_a_draft_approved_by_another_operator_is_queued_once(city: dict[str, Any],
                                                             schema: xmlschema.XMLSchema) -> None:
    client, db_url = city["client"], city["db_url"]
    draft = _draft(city)  # no body: one click
    assert draft["state"] == "draft" and draft["msg_type"] == "Alert" and draft["replaces"] is None
    assert draft["zones"] == ["hc-ward-a", "hc-ward-b"]  # the wards in danger and alert, worst first
    assert [i["language"] for i in draft["info"]] == ["vi-VN", "en-US"]
    assert draft["info"][0]["severity"] == "Severe" and draft["info"][0]["event"] == "Ngập lụt"
    assert draft["cap_url"] is None
    assert _outbox(db_url) == []  # nothing goes out before approval

    own = client.post(f"/api/v1/warnings/{draft['id']}/approve", headers=city["binh"])
    assert own.status_code == 403 and "second, different operator" in own.json()["error"]["message"]

    approved = _approve(city, draft["id"], "chi")
    assert approved["state"] == "approved" and approved["approved_by"] == "chi"
    assert approved["cap_url"].endswith(f"/api/v1/public/warnings/{draft['identifier']}.xml")

    rows = _outbox(db_url)
    assert sorted((channel, address) for _k, channel, address, _p in rows) == [
        ("email", "dan@example.org"), ("mqtt", "ioc/v1/hai-chau/_warning"), ("mqtt", "ioc/v1/hc-ward-a/_warning"),
        ("mqtt", "ioc/v1/hc-ward-b/_warning"), ("webhook", "http://127.0.0.1:9/hook")]
    assert {k.split(":")[1] for k, *_ in rows} == {draft["identifier"]}
    payload = rows[0][3]
    assert payload["event"] == "warning" and len(payload["text"]) <= 400
    assert payload["data"]["warning"]["identifier"] == draft["identifier"]
    xml = payload["data"]["cap_xml"]
    schema.validate(xml)
    root = ET.fromstring(xml)
    assert root.findtext(f"{CAP}sender") == CapSettings().sender
    assert root.findtext(f"{CAP}sent", "").endswith("+07:00")
    assert (root.findtext(f"{CAP}status"), root.findtext(f"{CAP}msgType"), root.findtext(f"{CAP}scope")) == (
        "Actual", "Alert", "Public")
    areas = root.findall(f"{CAP}info/{CAP}area/{CAP}areaDesc")
    assert [a.text for a in areas] == ["Phường A", "Phường B"] * 2  # each info block carries the areas
    polygon = root.findtext(f"{CAP}info/{CAP}area/{CAP}polygon", "").split()
    assert polygon[0] == polygon[-1] and len(polygon) == 5 and polygon[0].startswith("16.058,108.22")

    again = client.post(f"/api/v1/warnings/{draft['id']}/approve", headers=city["an"])
    assert again.status_code == 409
    assert len(_outbox(db_url)) == 5  # approved and queued once

    with psycopg.connect(db_url) as conn:
        events = conn.execute("SELECT actor, action FROM incident_events WHERE incident_id = %s ORDER BY id",
                              (city["incident"],)).fetchall()
        audited = conn.execute("SELECT actor, action FROM audit_log WHERE entity = 'warning' ORDER BY id").fetchall()
    assert events == [("binh", "warning_drafted"), ("chi", "warning_approved")]
    assert audited == [("binh", "draft"), ("chi", "approve")]


def test_the_table_refuses_self_approval_too(city: dict[str, Any]) -> None:
    draft = _draft(city)
    with psycopg.connect(city["db_url"]) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE warnings SET approved_by = drafted_by WHERE id = %s", (draft["id"],))


def test_two_approvals_at_once_approve_once(city: dict[str, Any]) -> None:
    draft = _draft(city)
    issuer = Issuer(CapSettings(), ZoneInfo("Asia/Ho_Chi_Minh"))
    outcomes: list[str] = []

    def run(name: str) -> None:
        conn = connect(city["db_url"], autocommit=True)
        try:
            approve(conn, issuer, draft["id"], actor=name, scope=None, at=datetime.now(UTC))
            outcomes.append("approved")
        except Conflict:
            outcomes.append("conflict")
        finally:
            conn.close()

    # Hold the row so both approvals wait on it and then race for it.
    with psycopg.connect(city["db_url"]) as holder:
        holder.execute("SELECT 1 FROM warnings WHERE id = %s FOR UPDATE", (draft["id"],))
        threads = [threading.Thread(target=run, args=(name,)) for name in ("chi", "an")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=0.5)  # both are blocked on the lock
        assert outcomes == []
        holder.rollback()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["approved", "conflict"]
    assert len(_outbox(city["db_url"])) == 5


def test_updates_and_cancels_reference_the_earlier_messages(city: dict[str, Any],
                                                            schema: xmlschema.XMLSchema) -> None:
    client = city["client"]
    first = _approve(city, _draft(city)["id"])
    first_xml = client.get(f"/api/v1/public/warnings/{first['identifier']}.xml").text
    first_sent = ET.fromstring(first_xml).findtext(f"{CAP}sent")
    first_ref = f"{CapSettings().sender},{first['identifier']},{first_sent}"

    # Only an approved warning is replaced: a draft is not.
    pending = _draft(city)
    assert client.post(f"/api/v1/warnings/{pending['id']}/update", headers=city["binh"]).status_code == 409

    update = client.post(f"/api/v1/warnings/{first['id']}/update", headers=city["binh"])
    assert update.status_code == 201, update.text
    assert (update.json()["msg_type"], update.json()["replaces"]) == ("Update", first["id"])
    updated = _approve(city, update.json()["id"])
    update_xml = client.get(f"/api/v1/public/warnings/{updated['identifier']}.xml").text
    schema.validate(update_xml)
    assert ET.fromstring(update_xml).findtext(f"{CAP}references") == first_ref

    # The first is replaced now: update or cancel the Update instead.
    assert client.post(f"/api/v1/warnings/{first['id']}/cancel", headers=city["binh"]).status_code == 409
    cancel = client.post(f"/api/v1/warnings/{updated['id']}/cancel", headers=city["an"])
    assert cancel.status_code == 201, cancel.text
    assert cancel.json()["info"][0]["response_type"] == ["AllClear"]
    cancelled = _approve(city, cancel.json()["id"], "binh")
    cancel_xml = client.get(f"/api/v1/public/warnings/{cancelled['identifier']}.xml").text
    schema.validate(cancel_xml)
    root = ET.fromstring(cancel_xml)
    assert root.findtext(f"{CAP}msgType") == "Cancel"
    refs = (root.findtext(f"{CAP}references") or "").split()
    assert refs[0] == first_ref and refs[1].split(",")[1] == updated["identifier"]
    # A Cancel ends the chain.
    assert client.post(f"/api/v1/warnings/{cancelled['id']}/update", headers=city["binh"]).status_code == 409
    # The retained topic of each zone gets the Cancel too, under its own key.
    keys = {k for k, channel, address, _p in _outbox(city["db_url"]) if address == "ioc/v1/hc-ward-a/_warning"}
    assert keys == {f"warning:{w['identifier']}:mqtt:ioc/v1/hc-ward-a/_warning" for w in (first, updated, cancelled)}


def test_the_public_feeds_need_no_key(city: dict[str, Any], schema: xmlschema.XMLSchema) -> None:
    client = city["client"]
    draft_only = _draft(city)
    first = _approve(city, _draft(city)["id"])
    second = _approve(city, _draft(city, body={"zones": ["hc-ward-b"]})["id"])

    listed = client.get("/api/v1/public/warnings")
    assert listed.status_code == 200
    assert [w["identifier"] for w in listed.json()] == [second["identifier"], first["identifier"]]
    assert draft_only["identifier"] not in listed.text
    assert listed.json()[0]["info"][0]["areas"] == [{"description": "Phường B", "zone": "hc-ward-b"}]

    feed = client.get("/api/v1/public/warnings.atom")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(feed.text)  # well-formed, and Atom's required elements (RFC 4287) are there
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{required}") is not None, required
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 2
    for entry in entries:
        assert all(entry.findtext(f"{ATOM}{tag}") for tag in ("id", "title", "updated"))
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == 2
    link = entries[0].find(f"{ATOM}link[@type='application/cap+xml']")
    assert link is not None and link.get("rel") == "alternate"
    href = link.get("href", "")
    assert href.endswith(f"/api/v1/public/warnings/{second['identifier']}.xml")

    xml = client.get(href.removeprefix("http://testserver"))
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/cap+xml")
    schema.validate(xml.text)
    one = client.get(f"/api/v1/public/warnings/{first['identifier']}.json")
    assert one.status_code == 200 and one.json()["msg_type"] == "Alert"
    assert client.get(f"/api/v1/public/warnings/{draft_only['identifier']}.xml").status_code == 404
    assert client.get("/api/v1/public/warnings/nope.xml").status_code == 404


def test_the_public_feed_is_rate_limited_per_address(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_CAP_RATE_BURST", "2")
    monkeypatch.setenv("IOC_CAP_RATE_PER_MINUTE", "1")
    with TestClient(app_for(db_url)) as client:
        assert [client.get("/api/v1/public/warnings").status_code for _ in range(3)] == [200, 200, 429]
        refused = client.get("/api/v1/public/warnings.atom")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_who_may_draft_approve_and_read(city: dict[str, Any]) -> None:
    client, incident = city["client"], city["incident"]
    for who in ("dev", "tech"):
        refused = client.post(f"/api/v1/incidents/{incident}/warnings", headers=city[who])
        assert refused.status_code == 403, (who, refused.text)
        assert client.get("/api/v1/warnings", headers=city[who]).status_code == 403
    # Sơn Trà's operator may not draft for Hải Châu, nor Hải Châu's for Sơn Trà.
    assert client.post(f"/api/v1/incidents/{incident}/warnings", headers=city["son"]).status_code == 403
    assert client.post(f"/api/v1/incidents/{city['other']}/warnings", headers=city["binh"]).status_code == 403
    outside = client.post(f"/api/v1/incidents/{incident}/warnings", headers=city["binh"],
                          json={"zones": ["hc-ward-a", "son-tra"]})
    assert outside.status_code == 403
    assert client.post(f"/api/v1/incidents/{incident}/warnings", headers=city["admin"]).status_code == 201
    assert client.post("/api/v1/incidents/999999/warnings", headers=city["an"]).status_code == 404
    assert client.post(f"/api/v1/incidents/{incident}/warnings").status_code == 401

    draft = _draft(city, "binh")
    assert client.post(f"/api/v1/warnings/{draft['id']}/approve", headers=city["son"]).status_code == 403
    assert client.get(f"/api/v1/warnings/{draft['id']}", headers=city["son"]).status_code == 403
    assert client.get("/api/v1/warnings", headers=city["son"]).json()["items"] == []
    mine = client.get("/api/v1/warnings", headers=city["chi"], params={"state": "draft"}).json()["items"]
    assert draft["id"] in [w["id"] for w in mine]
    rejected = client.post(f"/api/v1/warnings/{draft['id']}/reject", headers=city["chi"],
                           json={"reason": "wrong ward"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert client.post(f"/api/v1/warnings/{draft['id']}/approve", headers=city["an"]).status_code == 409
    assert _outbox(city["db_url"]) == []


def test_drafts_are_validated_with_the_field_at_fault(city: dict[str, Any]) -> None:
    client, incident = city["client"], city["incident"]
    generated = _draft(city)["info"]
    one_language = client.post(f"/api/v1/incidents/{incident}/warnings", headers=city["binh"],
                               json={"info": [generated[0], {**generated[0]}]})
    assert one_language.status_code == 422 and one_language.json()["error"]["field"] == "info"
    bad_enum = client.post(f"/api/v1/incidents/{incident}/warnings", headers=city["binh"],
                           json={"info": [{**generated[0], "severity": "High"}, generated[1]]})
    assert bad_enum.status_code == 422 and "severity" in bad_enum.json()["error"]["field"]
    unknown_zone = client.post(f"/api/v1/incidents/{incident}/warnings", headers=city["an"],
                               json={"zones": ["atlantis"]})
    assert unknown_zone.status_code == 422 and unknown_zone.json()["error"]["field"] == "zones"
    edited = _draft(city, body={"zones": ["hc-ward-c"], "info": [
        {**generated[0], "headline": "Cảnh báo thử"}, generated[1]]})
    assert edited["zones"] == ["hc-ward-c"] and edited["info"][0]["headline"] == "Cảnh báo thử"
