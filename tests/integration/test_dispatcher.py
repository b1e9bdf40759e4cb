"""The notification dispatcher on a real database and broker, with stand-ins for every receiver: each channel
delivers, answers are sorted into retries with backoff and permanent failures, every attempt is recorded, two
dispatchers share the outbox without sending a row twice at once, and a dispatcher SIGKILLed mid-batch loses
nothing: the next one resends what was in flight, and the receiver drops the repeat by its id."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateways.database import Connection, connect
from gateways.notify import EmailSender, MqttSender, Sender, SmsSender, WebhookSender, ZaloSender
from ioc_core.settings import MqttUrl
from operations.dispatcher import RetryPolicy, dispatch
from operations.outbox import Message, enqueue_to
from tests.standins.sms import SmsStandIn
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook_receiver import WebhookReceiver
from tests.standins.zalo import ZaloStandIn
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration]

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
TEMPLATE = "7895417a7d3f9461cd2e"
T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def message(n: int = 1, event: str = "warning") -> Message:
    return Message(key=f"warning:urn:oid:2.49.0.1.704.0.2026.{n}", event=event,  # type: ignore[arg-type]
                   subject=f"Cảnh báo lũ #{n} — Hải Châu",
                   text=f"Báo động 2 sông Hàn ({n}). Tránh khu vực ven sông. Flood alert level 2.",
                   body=f"Cảnh báo lũ số {n}.\nFlood warning number {n}.", data={"n": n, "zone": "hai-chau"})


@pytest.fixture
def conn(db_url: str) -> Iterator[Connection]:
    with connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, tolerance_s=None) as server:
        yield server


def rows(conn: Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT channel, state, attempts, last_error IS NULL FROM notification_outbox "
                        "ORDER BY id").fetchall()


def attempts(conn: Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT o.channel, a.ok, a.at, a.detail FROM notification_attempts a "
                        "JOIN notification_outbox o ON o.id = a.outbox_id ORDER BY a.id").fetchall()


class LateSubscriber:
    """Connects after the publish and collects what the broker hands it on ``topic`` (retained included)."""

    def __init__(self, url: str, topic: str) -> None:
        parsed = MqttUrl.parse(url)
        self.messages: list[tuple[bytes, bool]] = []
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="late-subscriber")
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_message = lambda _c, _u, msg: self.messages.append((msg.payload, bool(msg.retain)))
        self._client.connect(parsed.host, parsed.port)
        self._client.loop_start()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def test_every_channel_delivers_and_each_attempt_is_recorded(conn: Connection, receiver: WebhookReceiver,
                                                             broker: Any) -> None:
    topic = "ioc/v1/hai-chau/_warning"
    with SmtpStandIn() as smtp, SmsStandIn("sms-token") as sms, \
            ZaloStandIn("oa-token", {TEMPLATE: ("title", "content", "reference")}) as zalo:
        for channel, address in [("webhook", receiver.url + "/hook"), ("email", "truc.ban@danang.gov.vn"),
                                 ("zalo", "0905123456"), ("sms", "+84 905 123 456"), ("mqtt", topic)]:
            assert enqueue_to(conn, message(), T0, channel=channel, address=address) == 1
        assert enqueue_to(conn, message(), T0, channel="sms", address="+84 905 123 456") == 0  # a repeat: no row
        senders: dict[str, Sender] = {
            "webhook": WebhookSender(SECRET, allow_private=True),
            "email": EmailSender(smtp.host, smtp.port, "ioc@danang.gov.vn"),
            "zalo": ZaloSender("oa-token", TEMPLATE, base_url=zalo.url),
            "sms": SmsSender(sms.url + "/send", "sms-token"),
            "mqtt": MqttSender(MqttUrl.parse(broker.url), client_id="ioc-notify-test")}
        try:
            done = dispatch(conn, senders, T0 + timedelta(seconds=1))
        finally:
            for sender in senders.values():
                sender.close()
        assert [a.outcome for a in done] == ["sent"] * 5, done
        assert rows(conn) == [(c, "sent", 1, True) for c in ("webhook", "email", "zalo", "sms", "mqtt")]
        recorded = attempts(conn)
        assert [(c, ok, at) for c, ok, at, _d in recorded] == [
            (c, True, T0 + timedelta(seconds=1)) for c in ("webhook", "email", "zalo", "sms", "mqtt")]
        assert "msg_id" in recorded[2][3] and "sms-1" in recorded[3][3]

        (mail,) = smtp.messages
        assert mail["Subject"] == message().subject and "Flood warning number 1" in mail.get_content()
        (zns,) = zalo.sent
        assert zns["phone"] == "84905123456" and zns["template_data"]["content"] == message().text
        (sms_body,) = sms.messages.values()
        assert sms_body["to"] == "+84905123456" and sms_body["text"] == message().text
    (hook,) = receiver.delivered.values()
    assert hook["type"] == "warning.issued" and hook["data"]["key"] == message().key
    late = LateSubscriber(broker.url, topic)
    try:
        wait_for(lambda: late.messages, timeout_s=10, what="the retained warning")
    finally:
        late.close()
    payload, retained = late.messages[0]
    assert retained and json.loads(payload) == message().payload()


def test_5xx_is_retried_with_backoff_until_delivered(conn: Connection, receiver: WebhookReceiver) -> None:
    enqueue_to(conn, message(), T0, channel="webhook", address=receiver.url)
    senders: dict[str, Sender] = {"webhook": WebhookSender(SECRET, allow_private=True)}
    policy = RetryPolicy(max_attempts=5, first_delay_s=10, max_delay_s=3600)
    receiver.fail_next(503, 502)
    assert [a.outcome for a in dispatch(conn, senders, T0, policy)] == ["retry"]
    assert dispatch(conn, senders, T0 + timedelta(seconds=9), policy) == []  # not due yet
    (second,) = dispatch(conn, senders, T0 + timedelta(seconds=10), policy)
    assert second.outcome == "retry" and second.next_attempt_at == T0 + timedelta(seconds=30)  # 10 s, then 20 s
    assert dispatch(conn, senders, T0 + timedelta(seconds=29), policy) == []
    assert [a.outcome for a in dispatch(conn, senders, T0 + timedelta(seconds=30), policy)] == ["sent"]
    assert rows(conn) == [("webhook", "sent", 3, True)]
    recorded = attempts(conn)
    assert [(ok, at - T0) for _c, ok, at, _d in recorded] == [
        (False, timedelta(0)), (False, timedelta(seconds=10)), (True, timedelta(seconds=30))]
    assert "503" in recorded[0][3] and "502" in recorded[1][3]
    assert len(receiver.delivered) == 1


def test_4xx_fails_at_once_and_retries_give_up(conn: Connection, receiver: WebhookReceiver) -> None:
    enqueue_to(conn, message(1), T0, channel="webhook", address=receiver.url + "/gone")
    senders: dict[str, Sender] = {"webhook": WebhookSender(SECRET, allow_private=True)}
    receiver.status = 410
    assert [a.outcome for a in dispatch(conn, senders, T0)] == ["failed"]
    assert conn.execute("SELECT state, attempts, last_error FROM notification_outbox").fetchone() == (
        "failed", 1, f"HTTP 410 from {receiver.url}/gone: {{\"message\": \"refused by the receiver\"}}")
    receiver.status = 200
    enqueue_to(conn, message(2), T0, channel="webhook", address=receiver.url)
    receiver.fail_next(500, 500)
    policy = RetryPolicy(max_attempts=2, first_delay_s=1, max_delay_s=1)
    assert [a.outcome for a in dispatch(conn, senders, T0, policy)] == ["retry"]
    (last,) = dispatch(conn, senders, T0 + timedelta(seconds=1), policy)
    assert last.outcome == "failed" and "gave up after 2 attempts" in last.detail
    assert dispatch(conn, senders, T0 + timedelta(days=1), policy) == []
    assert [r[:3] for r in rows(conn)] == [("webhook", "failed", 1), ("webhook", "failed", 2)]
    assert receiver.delivered == {}


def test_rows_of_a_channel_without_an_adapter_wait(conn: Connection, receiver: WebhookReceiver) -> None:
    enqueue_to(conn, message(), T0, channel="zalo", address="0905123456")
    enqueue_to(conn, message(), T0, channel="webhook", address=receiver.url)
    done = dispatch(conn, {"webhook": WebhookSender(SECRET, allow_private=True)}, T0)
    assert [a.channel for a in done] == ["webhook"]
    assert rows(conn) == [("zalo", "pending", 0, True), ("webhook", "sent", 1, True)]


def test_two_dispatchers_never_send_one_row_at_once(db_url: str, conn: Connection,
                                                    receiver: WebhookReceiver) -> None:
    for n in range(12):
        enqueue_to(conn, message(n), T0, channel="webhook", address=receiver.url)
    receiver.delay_s = 0.1  # each send holds its row a while, so the two overlap
    outcomes: list[list[str]] = []

    def run() -> None:
        with connect(db_url, autocommit=True) as own:
            senders: dict[str, Sender] = {"webhook": WebhookSender(SECRET, allow_private=True)}
            outcomes.append([a.outcome for a in dispatch(own, senders, T0)])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(len(o) for o in outcomes) != [0, 12], "one dispatcher did all the work: they did not overlap"
    assert sum(len(o) for o in outcomes) == 12 and all(x == "sent" for o in outcomes for x in o)
    ids = receiver.ids_received()
    assert len(ids) == 12 and len(set(ids)) == 12  # each row sent exactly once
    assert conn.execute("SELECT count(*) FROM notification_attempts").fetchone() == (12,)


def _env(db_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    return {**base, "PYTHONPATH": str(REPO), "IOC_DATABASE_URL": db_url, "IOC_NOTIFY_WEBHOOK_SECRET": SECRET,
            "IOC_NOTIFY_WEBHOOK_ALLOW_PRIVATE": "true",
            "IOC_NOTIFY_MQTT": "false", **extra}


def test_a_dispatcher_killed_mid_batch_loses_nothing_and_the_receiver_drops_the_repeat(
        db_url: str, conn: Connection, receiver: WebhookReceiver) -> None:
    for n in range(5):
        enqueue_to(conn, message(n), T0, channel="webhook", address=receiver.url)
    receiver.delay_s = 2.0  # the third request is received, then the dispatcher dies before it hears the answer
    proc = subprocess.Popen([sys.executable, "-m", "ioc_cli", "notify", "once"], cwd=REPO, env=_env(db_url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(receiver.received) >= 3, timeout_s=60, what="three webhook deliveries")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    in_flight = receiver.ids_received()[2]
    # Two recorded as sent; the third was sent but never recorded: still pending, as if untried.
    wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ioc-notify'")
             .fetchone() == (0,), timeout_s=10, what="the killed dispatcher's session to end")
    assert [r[:3] for r in rows(conn)] == [("webhook", "sent", 1)] * 2 + [("webhook", "pending", 0)] * 3

    receiver.delay_s = 0.0
    again = subprocess.run([sys.executable, "-m", "ioc_cli", "notify", "once"], cwd=REPO, env=_env(db_url),
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 attempts: 3 sent, 0 to retry, 0 failed" in again.stdout, again.stdout
    assert [r[:3] for r in rows(conn)] == [("webhook", "sent", 1)] * 5
    ids = receiver.ids_received()
    assert len(ids) == 6 and ids.count(in_flight) == 2  # at least once: the one in flight went twice
    assert len(receiver.delivered) == 5  # ... and the receiver dropped the repeat by its webhook-id
    assert {body["data"]["key"] for body in receiver.delivered.values()} == {message(n).key for n in range(5)}
    assert conn.execute("SELECT count(*), bool_and(ok) FROM notification_attempts").fetchone() == (5, True)


def test_run_is_woken_by_new_rows_and_stops_on_sigterm(db_url: str, conn: Connection,
                                                        receiver: WebhookReceiver) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ioc_cli", "notify", "run"], cwd=REPO,
                            env=_env(db_url, IOC_NOTIFY_POLL_S="600"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                      "'ioc-notify-listen' AND state = 'idle'").fetchone() == (1,),
                 timeout_s=60, what="the dispatcher to listen")
        enqueue_to(conn, message(), datetime.now(UTC), channel="webhook", address=receiver.url)
        # The poll is 10 minutes: only the LISTEN wake-up delivers it this soon.
        wait_for(lambda: receiver.delivered, timeout_s=20, what="the webhook")
        wait_for(lambda: rows(conn) == [("webhook", "sent", 1, True)], timeout_s=10, what="the row sent")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, out
    assert "channels: webhook" in out and "sent" in out


class _Broken:
    """An adapter with a bug: the dispatcher keeps the row and goes on with the others."""

    channel = "sms"

    def send(self, notice: object, at: datetime) -> str:
        raise RuntimeError("bug in an adapter")

    def close(self) -> None:
        pass


def test_an_adapters_bug_is_recorded_and_retried_without_stopping_the_others(
        conn: Connection, receiver: WebhookReceiver) -> None:
    from operations.dispatcher import next_due, waiting

    enqueue_to(conn, message(1), T0, channel="sms", address="0905123456")
    enqueue_to(conn, message(2), T0, channel="webhook", address=receiver.url)
    done = dispatch(conn, {"sms": _Broken(), "webhook": WebhookSender(SECRET, allow_private=True)}, T0,
                    RetryPolicy(first_delay_s=60))
    assert [(a.channel, a.outcome) for a in done] == [("sms", "retry"), ("webhook", "sent")]
    assert "adapter error: RuntimeError: bug in an adapter" in done[0].detail
    assert next_due(conn, ["sms", "webhook"]) == T0 + timedelta(seconds=60)
    assert next_due(conn, ["webhook"]) is None
    assert waiting(conn) == {("sms", "pending"): 1, ("webhook", "sent"): 1}
