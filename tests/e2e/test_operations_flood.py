"""The flood scenario end to end, in real time: stations' uplinks through the broker and two ingest workers (one
SIGKILLed midway) into the database; ``ioc operations run`` turning them into ward statuses, alarms, incidents
and escalations; operators acting through the HTTP API (acknowledge, SOP tick, draft, a second operator's
approval); ``ioc notify run`` delivering the CAP warning to the public broker (retained) and to the e-mail,
webhook, Zalo ZNS and SMS stand-ins. Then the books are checked: every uplink stored once, one incident per zone
and hazard, one outbox row per route, and each delivered exactly once after the receivers' dedupe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
import xmlschema

from gateways.local_mosquitto import LocalMosquitto
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_core.zones import Zone, load_default_zones
from tests.api_support import HAI_CHAU, LIEN_CHIEU, app_for, key, served
from tests.operations_support import FloodStation, LateSubscriber, Published, Service, TrafficPlan, play
from tests.standins.sms import SmsStandIn
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook_receiver import WebhookReceiver
from tests.standins.zalo import ZaloStandIn
from tests.waiting import wait_for

# One storage mode (the run is a minute and a half): TimescaleDB when the suite is asked to test it, else plain.
_MODE = "timescaledb" if os.environ.get("IOC_TEST_TIMESCALEDB") == "1" else "postgresql"
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.parametrize("storage", [_MODE], indirect=True)]

XSD = Path(__file__).parent.parent / "fixtures" / "cap" / "CAP-v1.2.xsd"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
SECRET = "whsec_" + base64.b64encode(b"flood-e2e-signing-key-32-bytes!!").decode()
ZALO_TOKEN, ZALO_TEMPLATE, SMS_TOKEN = "oa-token", "7895417a7d3f9461cd2e", "sms-token"
DURATION_S = 60.0
ESCALATE_AFTER_S = 6  # alarm_severities' timers, shortened from minutes so escalation happens within the test


def _square(lon: float, lat: float, half: float = 0.002) -> tuple[tuple[tuple[float, float], ...]]:
    return (((lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half), (lon - half, lat + half),
             (lon - half, lat - half)),)


WARD_A = Zone("hc-ward-a", "Phường Thạch Thang (thử)", "ward", _square(108.222, 16.060), parent="hai-chau")
WARD_B = Zone("hc-ward-b", "Phường Hải Châu 1 (thử)", "ward", _square(108.218, 16.050), parent="hai-chau")
WARD_S = Zone("st-ward-a", "Phường An Hải Bắc (thử)", "ward", _square(108.26, 16.10), parent="son-tra")


def _centre(zone: Zone) -> tuple[float, float]:
    west, south, east, north = zone.bounds
    return (south + north) / 2, (west + east) / 2


# Hải Châu rises first (watch at 8 s, alert at 16 s, danger at 26 s); Sơn Trà follows (14, 24, 34 s). Thresholds
# are the kinds' defaults: water level watch 1.0 / alert 1.5 / danger 2.5 m, flood depth 0.1 / 0.2 / 0.5 m.
HC_LEVEL = ((0.0, 0.5), (8.0, 1.2), (16.0, 1.8), (26.0, 2.8))
HC_DEPTH = ((0.0, 0.04), (8.0, 0.15), (16.0, 0.3), (26.0, 0.6))
ST_LEVEL = ((0.0, 0.5), (14.0, 1.2), (24.0, 1.8), (34.0, 2.8))
STATIONS = {  # station -> its ward
    FloodStation("00000000000fa001", "water_level", HC_LEVEL): WARD_A,
    FloodStation("00000000000fa002", "water_level", HC_LEVEL): WARD_A,
    FloodStation("00000000000fb001", "water_level", HC_LEVEL): WARD_B,
    FloodStation("00000000000fb002", "flood_depth", HC_DEPTH): WARD_B,
    FloodStation("00000000000f5001", "water_level", ST_LEVEL): WARD_S,
}
BACKGROUND = [f"00000000000bb{i:03x}" for i in range(10)]  # temperature and humidity, 4 uplinks/s each
FLOOD_WARDS = ("hc-ward-a", "hc-ward-b", "st-ward-a")


@pytest.fixture(scope="module")
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _city(db_url: str, hook: str) -> dict[str, dict[str, str]]:
    """Zones, stations and background sensors, two operators with their own channels, the public routes."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, [*load_default_zones(), WARD_A, WARD_B, WARD_S])
        records = []
        for station, ward in STATIONS.items():
            lat, lon = _centre(ward)
            records.append(DeviceRecord(dev_eui=station.dev_eui, name=f"Trạm {station.dev_eui[-4:]}",
                                        kind=station.metric, model="ioc-fd100" if station.metric == "flood_depth"
                                        else "ioc-wl100", codec_id="ioc-water-level", latitude=lat, longitude=lon))
        for i, eui in enumerate(BACKGROUND):
            lat, lon = HAI_CHAU if i % 2 else LIEN_CHIEU
            records.append(DeviceRecord(dev_eui=eui, name=f"TH {eui[-4:]}", kind="temperature_humidity",
                                        model="ioc-th100", codec_id="cayenne-lpp", latitude=lat, longitude=lon))
        register_devices(conn, records)
        placed: dict[str, str] = dict(conn.execute(
            "SELECT d.dev_eui, z.code FROM devices d JOIN zones z ON z.id = d.zone_id WHERE d.dev_eui = ANY(%s)",
            ([s.dev_eui for s in STATIONS],)).fetchall())
        assert placed == {s.dev_eui: w.code for s, w in STATIONS.items()}, placed
        conn.execute("UPDATE alarm_severities SET escalate_after_s = %s WHERE severity IN ('major', 'critical')",
                     (ESCALATE_AFTER_S,))
    users = {
        "binh": key(db_url, "binh", "operator", ["hai-chau"]),  # Hải Châu's district centre
        "an": key(db_url, "an", "operator"),                     # the city IOC
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        # The operators' own channels (binh: new incidents by webhook; an: escalations by e-mail), and the
        # public recipients of approved warnings on every channel.
        conn.execute("""INSERT INTO notification_routes (user_name, event, channel, address) VALUES
                        ('binh', 'incident_new', 'webhook', %(binh)s),
                        ('an', 'escalated', 'email', 'an.truc.ban@danang.gov.vn'),
                        (NULL, 'warning', 'webhook', %(public)s), (NULL, 'warning', 'email', 'dan.cu@example.org'),
                        (NULL, 'warning', 'zalo', '0905123456'), (NULL, 'warning', 'sms', '+84 905 123 456')""",
                     {"binh": hook + "/binh", "public": hook + "/public"})
    return users


def _one(conn: psycopg.Connection, sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _reference(idempotency_key: str) -> str:
    """What every adapter sends as the message's id: gateways/notify/notice.py ``Notice.reference``."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


@pytest.fixture
def stand_ins() -> Iterator[dict[str, Any]]:
    with WebhookReceiver(SECRET) as hook, SmtpStandIn() as smtp, SmsStandIn(SMS_TOKEN) as sms, \
            ZaloStandIn(ZALO_TOKEN, {ZALO_TEMPLATE: ("title", "content", "reference")}) as zalo:
        yield {"hook": hook, "smtp": smtp, "sms": sms, "zalo": zalo}


def test_flood_from_uplinks_to_a_delivered_cap_warning_with_a_worker_sigkilled(
        db_url: str, broker: LocalMosquitto, stand_ins: dict[str, Any], tmp_path: Path,
        cap_schema: xmlschema.XMLSchema) -> None:
    hook, smtp, sms, zalo = stand_ins["hook"], stand_ins["smtp"], stand_ins["sms"], stand_ins["zalo"]
    users = _city(db_url, hook.url)
    base = {"IOC_DATABASE_URL": db_url, "IOC_MQTT_URL": broker.url}
    # Worker 0 batches for a second, so when it is killed it holds up to a second of uplinks not yet committed.
    workers = [Service(["ingest"], tmp_path / f"ingest-{n}.log",
                       {**base, "IOC_INGEST_CLIENT_ID": f"flood-worker-{n}", "IOC_INGEST_BATCH_AGE_MS": age,
                        "IOC_INGEST_STATS_INTERVAL_S": "1"}) for n, age in enumerate(("1000", "50"))]
    evaluator = Service(["operations", "run"], tmp_path / "operations.log",
                        {**base, "IOC_OPERATIONS_INTERVAL_S": "0.5"})
    notifier = Service(["notify", "run"], tmp_path / "notify.log", {
        **base, "IOC_NOTIFY_WEBHOOK_SECRET": SECRET, "IOC_NOTIFY_SMTP_HOST": smtp.host,
        "IOC_NOTIFY_SMTP_PORT": str(smtp.port), "IOC_NOTIFY_SMTP_STARTTLS": "false",
        "IOC_NOTIFY_SMTP_FROM": "ioc@danang.gov.vn", "IOC_NOTIFY_ZALO_URL": zalo.url,
        "IOC_NOTIFY_ZALO_ACCESS_TOKEN": ZALO_TOKEN, "IOC_NOTIFY_ZALO_TEMPLATE_ID": ZALO_TEMPLATE,
        "IOC_NOTIFY_SMS_URL": sms.url + "/send", "IOC_NOTIFY_SMS_TOKEN": SMS_TOKEN, "IOC_NOTIFY_MQTT_URL": broker.url,
        "IOC_NOTIFY_POLL_S": "1"})
    services = [*workers, evaluator, notifier]
    published = Published()
    timings: dict[str, float] = {}
    try:
        for worker in workers:
            worker.start(ready="running (batch")
        notifier.start(ready="channels: email, mqtt, sms, webhook, zalo")
        evaluator.start()
        with psycopg.connect(db_url, autocommit=True) as conn:
            wait_for(lambda: _one(conn, "SELECT count(*) FROM zone_hazard_status WHERE zone_code = ANY(%s)",
                                  list(FLOOD_WARDS)) == 9, timeout_s=30, what="the evaluator's first round")
        started = time.monotonic()
        publisher = play(broker.url, TrafficPlan(list(STATIONS), BACKGROUND, DURATION_S), published, started)

        with psycopg.connect(db_url, autocommit=True) as conn, served(app_for(db_url, zones=False)) as api, \
                httpx2.Client(base_url=api, timeout=30) as client:
            def http(method: str, path: str, **kwargs: Any) -> httpx2.Response:
                return client.request(method, path, **kwargs)

            # Midway through the rise, one ingest worker dies with its batch in hand; the other carries on.
            wait_for(lambda: time.monotonic() - started >= 20, timeout_s=40, what="20 s of traffic")
            stored_at_kill = _one(conn, "SELECT count(*) FROM uplinks")
            workers[0].kill()
            killed_at = datetime.now(UTC)
            timings["killed_at_s"] = time.monotonic() - started
            assert 0 < stored_at_kill < published.total() + 1

            # Nobody acknowledges Hải Châu's flood incident: it is escalated to the city IOC.
            def incident(zone: str) -> tuple[Any, ...] | None:
                return conn.execute("SELECT id, state, owner, escalation_level, severity FROM incidents "
                                    "WHERE zone_code = %s AND hazard = 'flood'", (zone,)).fetchone()

            wait_for(lambda: (incident("hai-chau") or (0, "", "", 0))[3] >= 1, timeout_s=40,
                     what=lambda: f"Hải Châu's incident to be escalated: {incident('hai-chau')}")
            timings["escalated_at_s"] = time.monotonic() - started
            hc_id, state, owner, _level, _severity = incident("hai-chau")  # type: ignore[misc]
            assert (state, owner) == ("new", "city")

            # The dead worker comes back under its own client id: its session still holds what it had taken.
            restarted_at = datetime.now(UTC)
            workers[0].start(ready="running (batch")
            assert "died holding messages" in workers[0].log()

            binh, an = users["binh"], users["an"]
            ack = http("POST", f"/api/v1/incidents/{hc_id}/acknowledge", headers=binh, json={"note": "Đã tiếp nhận"})
            assert ack.status_code == 200, ack.text
            assert ack.json()["state"] == "acknowledged" and ack.json()["owner"] == "city"
            level_at_ack = ack.json()["escalation_level"]  # from here on it must not rise: escalation stopped
            assert level_at_ack >= 1
            tick = http("PUT", f"/api/v1/incidents/{hc_id}/checklist/confirm", headers=binh)
            assert tick.status_code == 200, tick.text
            assert [(s["id"], s["done_by"]) for s in tick.json() if s["done_by"]] == [("confirm", "binh")]
            detail = http("GET", f"/api/v1/incidents/{hc_id}", headers=binh)
            assert detail.status_code == 200, detail.text
            assert detail.json()["sop"]["kind"] == "flood", detail.json().get("sop")
            listed = http("GET", "/api/v1/alarms", headers=binh,
                          params={"incident_id": hc_id, "source": "hazard", "state": "active"})
            assert listed.status_code == 200, listed.text
            assert sorted(a["subject"].split(":")[0] for a in listed.json()["items"]) == sorted(
                s.dev_eui for s, w in STATIONS.items() if w is not WARD_S), listed.json()

            # Both Hải Châu wards in danger, then the district operator drafts and the city operator approves.
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM zone_hazard_status WHERE zone_code IN ('hc-ward-a', 'hc-ward-b') "
                "AND hazard = 'flood' AND status = 'danger'").fetchone() == (2,), timeout_s=40,
                what="both Hải Châu wards in danger")
            status = http("GET", "/api/v1/zones/hc-ward-a/status", headers=binh)
            assert status.status_code == 200, status.text
            flood = next(h for h in status.json()["hazards"] if h["hazard"] == "flood")
            assert flood["status"] == "danger" and status.json()["worst"] == "danger"
            draft = http("POST", f"/api/v1/incidents/{hc_id}/warnings", headers=binh)
            assert draft.status_code == 201, draft.text
            warning = draft.json()
            assert sorted(warning["zones"]) == ["hc-ward-a", "hc-ward-b"] and warning["msg_type"] == "Alert"
            own = http("POST", f"/api/v1/warnings/{warning['id']}/approve", headers=binh)
            assert own.status_code == 403, own.text  # two people: the drafter cannot approve
            approved = http("POST", f"/api/v1/warnings/{warning['id']}/approve", headers=an)
            assert approved.status_code == 200, approved.text
            assert approved.json()["state"] == "approved"
            timings["approved_at_s"] = time.monotonic() - started
            identifier = warning["identifier"]

            # The public feeds, no key needed.
            atom = http("GET", "/api/v1/public/warnings.atom")
            assert atom.status_code == 200 and identifier in atom.text
            cap_xml = http("GET", f"/api/v1/public/warnings/{identifier}.xml")
            assert cap_xml.status_code == 200
            cap_schema.validate(cap_xml.text)

            publisher.join(DURATION_S + 30)
            assert not publisher.is_alive() and published.error is None, published.error
            total = published.total()
            wait_for(lambda: _one(conn, "SELECT count(*) FROM uplinks") >= total, timeout_s=60,
                     what=lambda: f"all {total} uplinks; stored "
                                  f"{_one(conn, 'SELECT count(*) FROM uplinks')}")
            timings["all_stored_at_s"] = time.monotonic() - started
            wait_for(lambda: _one(conn, "SELECT count(*) FROM notification_outbox WHERE state <> 'sent'") == 0,
                     timeout_s=30, what=lambda: "every notification sent: " + str(conn.execute(
                         "SELECT channel, address, state, last_error FROM notification_outbox "
                         "WHERE state <> 'sent'").fetchall()))
            time.sleep(1.0)  # a late duplicate, if any, would land now
            st_level = incident("son-tra")
            hc_after = incident("hai-chau")
    finally:
        exits = {s.log_file.name: s.stop() for s in services}
    for service in services:
        assert "Traceback" not in service.log(), service.log()[-3000:]
    assert set(exits.values()) == {0}, exits  # every service stopped cleanly on SIGTERM

    with psycopg.connect(db_url) as conn:
        # 1. Every uplink published is stored exactly once (by ChirpStack's deduplication id), with its readings.
        ids = [i for device in published.by_device.values() for i in device]
        stored = conn.execute("SELECT deduplication_id::text FROM uplinks").fetchall()
        assert Counter(r[0] for r in stored) == Counter(ids), "uplinks lost or doubled"
        per_device: dict[str, int] = dict(conn.execute(
            "SELECT d.dev_eui, count(*) FROM measurements m JOIN devices d ON d.id = m.device_id "
            "GROUP BY d.dev_eui").fetchall())
        # Water level frame: level or depth, distance, battery; Cayenne LPP here: temperature, humidity.
        assert per_device == {eui: published.count(eui) * (3 if eui in {s.dev_eui for s in STATIONS} else 2)
                              for eui in published.by_device}
        assert conn.execute("SELECT count(*) = count(DISTINCT (device_id, metric_id, time)) "
                            "FROM measurements").fetchone() == (True,)
        assert _one(conn, "SELECT coalesce(sum(n), 0) FROM rollup_device_hourly") == sum(per_device.values())
        # The killed worker's share (what it held uncommitted, and what the broker queued for its session while
        # it was dead) arrived only after its restart, and is in the counts above exactly once.
        held = _one(conn, "SELECT count(*) FROM uplinks WHERE time < %s AND received_at >= %s", killed_at,
                    restarted_at)
        assert held > 0, "nothing was redelivered after the restart: the kill tested nothing"

        # 2. Each flood ward went up the ladder, in order, and each change kept its reason.
        for ward in FLOOD_WARDS:
            history = [r[0] for r in conn.execute(
                "SELECT to_status FROM zone_hazard_changes WHERE zone_code = %s AND hazard = 'flood' ORDER BY id",
                (ward,))]
            assert history == ["unknown", "normal", "watch", "alert", "danger"], (ward, history)
        for district in ("hai-chau", "son-tra"):
            assert _one(conn, "SELECT status FROM zone_hazard_status WHERE zone_code = %s AND hazard = 'flood'",
                        district) == "danger"
        reason, evidence = conn.execute("SELECT reason, evidence FROM zone_hazard_changes WHERE zone_code = "
                                        "'hc-ward-b' AND to_status = 'danger'").fetchone()  # type: ignore[misc]
        assert reason.startswith("danger: ") and {e["dev_eui"] for e in evidence} == {"00000000000fb001",
                                                                                     "00000000000fb002"}

        # 3. One incident per zone and hazard; Hải Châu's holds the four station alarms, critical at the end.
        assert conn.execute("SELECT zone_code, hazard, count(*) FROM incidents GROUP BY 1, 2 "
                            "HAVING count(*) > 1").fetchall() == []
        alarms = conn.execute("SELECT subject, severity, count FROM alarms WHERE incident_id = %s AND source = "
                              "'hazard' ORDER BY subject", (hc_id,)).fetchall()
        assert len(alarms) == 4 and all(sev == "critical" for _s, sev, _n in alarms), alarms
        assert conn.execute("SELECT count(*) FROM alarms WHERE state = 'active' AND source = 'hazard' "
                            "GROUP BY subject HAVING count(*) > 1").fetchall() == []
        assert hc_after is not None and hc_after[1:] == ("acknowledged", "city", level_at_ack, "critical")
        assert st_level is not None and st_level[1:4] == ("new", "city", 3)  # nobody came: three levels, then quiet
        timeline = [r[0] for r in conn.execute(
            "SELECT actor || ':' || action FROM incident_events WHERE incident_id = %s ORDER BY id", (hc_id,))]
        for step in ("system:opened", "system:alarm_added", "system:escalated", "binh:acknowledge",
                     "binh:tick", "binh:warning_drafted", "an:warning_approved"):
            assert step in timeline, (step, timeline)
        assert timeline.index("system:escalated") < timeline.index("binh:acknowledge")

        # 4. One outbox row per route and message, every one sent; each attempt recorded.
        outbox = conn.execute("SELECT idempotency_key, event, channel, address, payload, attempts FROM "
                              "notification_outbox ORDER BY id").fetchall()
        warning_rows = [r for r in outbox if r[1] == "warning"]
        assert sorted((r[2], r[3]) for r in warning_rows) == sorted([
            ("webhook", hook.url + "/public"), ("email", "dan.cu@example.org"), ("zalo", "0905123456"),
            ("sms", "+84 905 123 456"), ("mqtt", "ioc/v1/hai-chau/_warning"), ("mqtt", "ioc/v1/hc-ward-a/_warning"),
            ("mqtt", "ioc/v1/hc-ward-b/_warning")])
        hc_incidents = _one(conn, "SELECT count(*) FROM incidents WHERE zone_code = 'hai-chau'")
        assert [r[3] for r in outbox if r[1] == "incident_new"] == [hook.url + "/binh"] * hc_incidents
        escalations = _one(conn, "SELECT coalesce(sum(escalation_level), 0) FROM incidents")
        assert [r[3] for r in outbox if r[1] == "escalated"] == ["an.truc.ban@danang.gov.vn"] * escalations
        assert all(r[5] == 1 for r in outbox), [(r[0], r[5]) for r in outbox]
        assert _one(conn, "SELECT count(*) FROM notification_attempts WHERE ok") == len(outbox)

    # 5. At every receiver, each message exactly once (a repeat would carry the same id and be dropped).
    refs: dict[str, set[str]] = {}
    for idem, _event, channel, _address, _payload, _n in outbox:
        refs.setdefault(channel, set()).add(_reference(idem))
    assert hook.rejected == [], hook.rejected  # every signature valid
    webhook_ids = hook.ids_received()
    assert sorted(webhook_ids) == sorted(f"msg_{r}" for r in refs["webhook"])
    mail_ids = smtp.message_ids()
    assert sorted(m.strip("<>").split("@")[0] for m in mail_ids) == sorted(refs["email"])
    assert sorted(zalo.tracking_ids()) == sorted(refs["zalo"]) and sms.requests == len(refs["sms"])
    assert set(sms.messages) == refs["sms"]

    public_hook = next(b for b in hook.delivered.values() if b["type"] == "warning.issued")
    public_mail = next(m for m in smtp.messages if m["To"] == "dan.cu@example.org")
    (zns,) = zalo.sent
    assert zns["phone"] == "84905123456" and len(zns["template_data"]["content"]) <= 400
    for xml in (public_hook["data"]["data"]["cap_xml"], ):
        cap_schema.validate(xml)
        root = ET.fromstring(xml)
        assert root.findtext(f"{CAP}identifier") == identifier
        assert (root.findtext(f"{CAP}msgType"), root.findtext(f"{CAP}scope")) == ("Alert", "Public")
        assert [i.findtext(f"{CAP}language") for i in root.findall(f"{CAP}info")] == ["vi-VN", "en-US"]
        assert len(root.findall(f"{CAP}info/{CAP}area/{CAP}polygon")) == 4  # two wards in each language
    warning_payload = next(r[4] for r in warning_rows if r[2] == "email")
    assert public_mail["Subject"] == warning_payload["subject"] and public_mail["X-IOC-Event"] == "warning"
    assert WARD_A.name in public_mail.get_content() and "114" in public_mail.get_content()

    # 6. The public broker kept the warning: a subscriber connecting now receives it, retained, per zone.
    late = LateSubscriber(broker.url, ["ioc/v1/+/_warning"])
    try:
        late.wait(lambda got: len({t for t, _p, _r in got}) >= 3, timeout_s=10)
        time.sleep(0.5)
        got = late.received()
    finally:
        late.close()
    assert sorted(t for t, _p, _r in got) == ["ioc/v1/hai-chau/_warning", "ioc/v1/hc-ward-a/_warning",
                                             "ioc/v1/hc-ward-b/_warning"]
    for _topic, payload, retained in got:
        body = json.loads(payload)
        assert retained and body["key"] == f"warning:{identifier}"
        cap_schema.validate(body["data"]["cap_xml"])
    print(f"\nflood e2e: {published.total()} uplinks ({stored_at_kill} stored at the kill, {held} delivered "
          f"after the restart), timings { {k: round(v, 1) for k, v in timings.items()} }, "
          f"{sum(1 for _ in outbox)} notifications, at {datetime.now(UTC):%H:%M:%S}")
