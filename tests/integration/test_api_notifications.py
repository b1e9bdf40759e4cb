"""The notification routes of the API: operators choose only their own channels, admins the public warning
recipients and see the outbox with every attempt; other roles are refused; changes are audited."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateways.database import connect
from gateways.notify import WebhookSender
from operations.dispatcher import dispatch
from operations.outbox import Message, enqueue, enqueue_to
from tests.api_support import key
from tests.standins.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.integration]

MINE = "/api/v1/me/notifications"
PUBLIC = "/api/v1/notifications/routes"
OUTBOX = "/api/v1/notifications/outbox"
AT = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()


def test_an_operator_chooses_their_own_channels(api_client: TestClient, db_url: str) -> None:
    ops = key(db_url, "ops-hai-chau", "operator", ["hai-chau"])
    other = key(db_url, "ops-son-tra", "operator", ["son-tra"])
    assert api_client.get(MINE, headers=ops).json() == []
    body = {"routes": [{"event": "incident_new", "channel": "zalo", "address": "0905 123 456"},
                       {"event": "escalated", "channel": "sms", "address": "+84905123456"},
                       {"event": "escalated", "channel": "email", "address": "ops@danang.gov.vn"},
                       {"event": "escalated", "channel": "email", "address": "ops@danang.gov.vn"}]}  # twice: once
    answer = api_client.put(MINE, json=body, headers=ops)
    assert answer.status_code == 200, answer.text
    mine = [(r["user"], r["event"], r["channel"], r["address"]) for r in answer.json()]
    assert mine == [("ops-hai-chau", "escalated", "email", "ops@danang.gov.vn"),
                    ("ops-hai-chau", "escalated", "sms", "84905123456"),
                    ("ops-hai-chau", "incident_new", "zalo", "84905123456")]
    assert api_client.get(MINE, headers=other).json() == []  # each sees only their own
    assert [r["address"] for r in api_client.get(MINE, headers=ops).json()] == [m[3] for m in mine]

    # What the API stored is what operations.outbox.enqueue reads for a named operator.
    with connect(db_url, autocommit=True) as conn:
        message = Message(key="incident:1:escalated:1", event="escalated", subject="s", text="t", body="b")
        assert enqueue(conn, message, AT, users=["ops-hai-chau", "ops-son-tra"]) == 2
        audited = conn.execute("SELECT actor, entity, entity_id FROM audit_log WHERE entity = "
                               "'notification_routes'").fetchall()
    assert audited == [("ops-hai-chau", "notification_routes", "ops-hai-chau")]

    assert api_client.put(MINE, json={"routes": []}, headers=ops).json() == []


@pytest.mark.parametrize(("route", "field"), [
    ({"event": "incident_new", "channel": "sms", "address": "12345"}, "address"),
    ({"event": "incident_new", "channel": "email", "address": "not-an-address"}, "address"),
    ({"event": "incident_new", "channel": "webhook", "address": "ftp://x.vn/"}, "address"),
    ({"event": "warning", "channel": "sms", "address": "0905123456"}, None),  # not an operator's event
    ({"event": "incident_new", "channel": "mqtt", "address": "ioc/v1/x"}, None)])
def test_addresses_a_channel_cannot_use_are_refused(api_client: TestClient, db_url: str, route: dict[str, str],
                                                   field: str | None) -> None:
    ops = key(db_url, "ops", "operator")
    answer = api_client.put(MINE, json={"routes": [route]}, headers=ops)
    assert answer.status_code == 422, answer.text
    if field is not None:
        assert answer.json()["error"]["field"] == field
    assert api_client.get(MINE, headers=ops).json() == []


@pytest.mark.parametrize("role", ["technician", "developer"])
def test_other_roles_choose_no_channels_and_see_no_outbox(api_client: TestClient, db_url: str, role: str) -> None:
    headers = key(db_url, f"a-{role}", role)
    assert api_client.get(MINE, headers=headers).status_code == 403
    assert api_client.put(MINE, json={"routes": []}, headers=headers).status_code == 403
    assert api_client.get(OUTBOX, headers=headers).status_code == 403
    assert api_client.get(PUBLIC, headers=headers).status_code == 403


def test_public_warning_routes_are_for_admins(api_client: TestClient, db_url: str, admin: dict[str, str]) -> None:
    ops = key(db_url, "ops", "operator")
    body = {"routes": [{"channel": "webhook", "address": "https://app.danang.gov.vn/hooks/warnings"},
                       {"channel": "zalo", "address": "0905000111"}]}
    assert api_client.put(PUBLIC, json=body, headers=ops).status_code == 403
    answer = api_client.put(PUBLIC, json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    assert [(r["user"], r["event"], r["address"]) for r in api_client.get(PUBLIC, headers=admin).json()] == [
        (None, "warning", "https://app.danang.gov.vn/hooks/warnings"), (None, "warning", "84905000111")]
    assert api_client.get(MINE, headers=admin).json() == []  # the admin's own routes are another set


def test_admins_see_the_outbox_with_every_attempt(api_client: TestClient, db_url: str,
                                                  admin: dict[str, str]) -> None:
    with WebhookReceiver(SECRET, tolerance_s=None) as receiver, psycopg.connect(db_url, autocommit=True) as conn:
        for n in range(3):
            enqueue_to(conn, Message(key=f"warning:{n}", event="warning", subject=f"s{n}", text="t", body="b"), AT,
                       channel="webhook", address=receiver.url)
        receiver.fail_next(503)
        dispatch(conn, {"webhook": WebhookSender(SECRET)}, AT)
    page = api_client.get(OUTBOX, params={"limit": 2}, headers=admin).json()
    assert [i["id"] for i in page["items"]] == [3, 2] and page["next_before_id"] == 2
    rest = api_client.get(OUTBOX, params={"before_id": 2}, headers=admin).json()
    assert [i["id"] for i in rest["items"]] == [1] and rest["next_before_id"] is None
    first = rest["items"][0]
    assert (first["state"], first["attempts"]) == ("pending", 1) and "503" in first["last_error"]
    assert [i["id"] for i in api_client.get(OUTBOX, params={"state": "sent"}, headers=admin).json()["items"]] == [3, 2]

    detail = api_client.get(f"{OUTBOX}/1", headers=admin).json()
    assert detail["payload"]["key"] == "warning:0" and detail["idempotency_key"] == f"warning:0:webhook:{receiver.url}"
    assert [(a["ok"], "503" in a["detail"]) for a in detail["history"]] == [(False, True)]
    assert [a["ok"] for a in api_client.get(f"{OUTBOX}/2", headers=admin).json()["history"]] == [True]
    missing = api_client.get(f"{OUTBOX}/99", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
