"""The demo's operations stage hands: what the warning autopilot does next, the incident line on the screen, and
the local stand-ins receiving through the platform's own adapters and journaling each delivery once."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateways.notify import Notice
from ioc_cli.demo_operations import (
    DISTRICT_USER,
    Journal,
    Receivers,
    next_step,
    start_receivers,
    write_private,
)
from ioc_cli.demo_screen import incident_line
from ioc_cli.notify import build_senders
from ioc_core.settings import FeedSettings, MqttSettings


def test_the_autopilot_drafts_when_there_is_nothing_then_approves_the_district_draft_then_is_done() -> None:
    assert next_step(7, []) == ("draft", 7)
    draft = {"id": 3, "state": "draft", "drafted_by": DISTRICT_USER}
    assert next_step(7, [draft]) == ("approve", 3)
    # Someone else's draft is not the demo's to approve; a rejected one is left alone.
    assert next_step(7, [{"id": 4, "state": "draft", "drafted_by": "ops-anh"}]) == ("draft", 7)
    assert next_step(7, [{"id": 4, "state": "rejected", "drafted_by": DISTRICT_USER}]) == ("draft", 7)
    assert next_step(7, [draft, {"id": 2, "state": "approved", "drafted_by": DISTRICT_USER}]) == ("done", 2)


def test_an_incident_line_says_what_whose_escalation_and_where() -> None:
    line = incident_line(12, "hai-chau", "flood", "critical", "new", "city", 1, "http://127.0.0.1:8000")
    assert line == ("  #12 hai-chau flood critical new owner city, escalated x1  "
                    "http://127.0.0.1:8000/api/v1/incidents/12")
    assert "escalated" not in incident_line(3, "cam-le", "flood", "major", "acknowledged", "cam-le", 0, None)


def test_a_key_file_is_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "api-key-x"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "k3y")
    assert path.read_text() == "k3y\n" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_journal_marks_a_repeated_key_as_a_duplicate(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "received")
    journal.record("sms", "abc", "Lũ", {"to": "+84905000113"})
    journal.record("sms", "abc", "Lũ", {"to": "+84905000113"})
    journal.record("zalo", "abc", "Lũ", {})
    lines = [json.loads(x) for x in journal.path("sms").read_text().splitlines()]
    assert [x["duplicate"] for x in lines] == [False, True]
    assert json.loads(journal.path("zalo").read_text())["duplicate"] is False


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Receivers]:
    started = start_receivers(tmp_path / "received")
    try:
        yield started
    finally:
        started.stop()


def _lines(receivers: Receivers, channel: str) -> list[dict[str, Any]]:
    path = receivers.journal.path(channel)
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_the_stand_ins_take_the_platforms_adapters_and_journal_each_delivery(receivers: Receivers) -> None:
    """The dispatcher's channels as the demo configures them reach the stand-ins, which check what they check
    (signature, token, template, number); a repeat (same idempotency key) is journaled as a duplicate."""
    settings = receivers.settings().model_copy(update={"mqtt": False})
    senders = build_senders(settings, FeedSettings(), MqttSettings())
    assert sorted(senders) == sorted(receivers.channels())
    payload = {"subject": "Cảnh báo lũ / Flood warning", "text": "Lũ trên sông Hàn. Di chuyển lên cao.",
               "body": "Lũ trên sông Hàn.", "data": {"warning": {"identifier": "VN-DN-IOC-2026-1"}}}
    at = datetime.now(UTC)
    try:
        for _event, channel, address in receivers.routes():
            notice = Notice.of(f"warning:VN-DN-IOC-2026-1:{channel}:{address}", "warning", address, payload)
            senders[channel].send(notice, at)
            senders[channel].send(notice, at)  # a redelivery after a crash: same key
    finally:
        for sender in senders.values():
            sender.close()
    for channel in receivers.channels():
        lines = _lines(receivers, channel)
        assert [x["duplicate"] for x in lines] == [False, True], (channel, lines)
        assert lines[0]["key"] == lines[1]["key"]
        assert "Cảnh báo lũ" in lines[0]["subject"] or "Lũ" in lines[0]["subject"], lines[0]
    assert receivers.webhook.rejected == [] and _lines(receivers, "webhook")[0]["signature"] == "verified"
    assert _lines(receivers, "webhook")[0]["identifier"] == "VN-DN-IOC-2026-1"
    assert receivers.zalo.errors == []


def test_a_stand_in_journals_only_what_it_accepts(receivers: Receivers) -> None:
    wrong = build_senders(receivers.settings().model_copy(update={"mqtt": False, "sms_token": None,
                                                                   "webhook_secret": None}),
                          FeedSettings(), MqttSettings())
    payload = {"subject": "x", "text": "x"}
    notice = Notice.of("warning:k:sms", "warning", "+84905000113", payload)
    with pytest.raises(Exception):  # noqa: B017 - refused by the gateway (401), however the adapter sorts it
        wrong["sms"].send(notice, datetime.now(UTC))
    wrong["sms"].close()
    assert _lines(receivers, "sms") == []


def test_the_banner_says_where_to_look_and_how_an_operator_would_do_it_by_hand(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from ioc_cli.demo_brokers import DemoBrokers
    from ioc_cli.demo_screen import Banner, OperationsBanner, show_banner
    from ioc_cli.demo_timeline import plan_backfill

    brokers = DemoBrokers(internal_port=1, public_port=2883, service_port=3, passwords={"ioc-ingest": "pw"},
                          developer=("dev-1", "secret"), directory=tmp_path / "brokers")
    operations = OperationsBanner(district_user="demo-district", district_key=tmp_path / "api-key-demo-district",
                                  city_user="demo-city", city_key=tmp_path / "api-key-demo-city",
                                  technician_user="demo-technician",
                                  technician_key=tmp_path / "api-key-demo-technician", district="hai-chau",
                                  escalate_after_s=90.0, received=tmp_path / "received",
                                  channels=("webhook", "zalo", "sms"), smtp_missing="aiosmtpd is not installed")
    banner = Banner(dsn="postgresql://x", mode="postgresql", mode_reason="r", folder=tmp_path, reused=False,
                    api_url="http://127.0.0.1:8000", key_file=tmp_path / "api-key", log_file=tmp_path / "demo.log",
                    mqtt_url="mqtt://127.0.0.1:1883", brokers=brokers, ioc="ioc", devices=10, scenario="flood",
                    backfill=plan_backfill(datetime(2026, 11, 3, tzinfo=UTC), 1.0, None), operations=operations)
    out = io.StringIO()
    show_banner(Console(file=out, width=300, color_system=None), banner)
    text = out.getvalue()
    # The first line after the title: the console, and which key file signs in as whom.
    first = text.split("IOC platform demo", 1)[1].splitlines()[1]
    assert first.startswith("console   http://127.0.0.1:8000/console/   sign in with a key"), first
    for who in ("demo-city", "demo-district", "demo-technician"):
        assert f"{who} in {tmp_path}/api-key-{who}" in first
    assert "every escalation timer is 90 s" in text and "automatic in the demo" in text
    assert (f'curl -X POST -H "Authorization: Bearer $(cat {tmp_path}/api-key-demo-district)" '
            "http://127.0.0.1:8000/api/v1/incidents/ID/warnings") in text
    assert (f'curl -X POST -H "Authorization: Bearer $(cat {tmp_path}/api-key-demo-city)" '
            "http://127.0.0.1:8000/api/v1/warnings/ID/approve") in text
    assert f"{tmp_path}/received/<channel>.log (aiosmtpd is not installed)" in text
    assert "mosquitto_sub -h 127.0.0.1 -p 2883 -u dev-1 -P secret -t 'ioc/v1/+/_warning' -v" in text
    assert "http://127.0.0.1:8000/api/v1/public/warnings.atom" in text


def test_the_autopilot_gives_up_after_repeated_failures_and_says_how_to_do_it_by_hand(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from ioc_cli.demo_operations import CITY_USER, Operator, WarningAutopilot

    district = Operator(DISTRICT_USER, ("hai-chau",), write_private(tmp_path / "d", "kd"))
    city = Operator(CITY_USER, (), write_private(tmp_path / "c", "kc"))

    class Refused(WarningAutopilot):
        calls = 0

        def step(self) -> bool:
            self.calls += 1
            raise RuntimeError("refused")

    pilot = Refused("postgresql://unused", "http://127.0.0.1:1", district, city, print, every_s=0.0)
    thread = pilot.start(threading.Event())
    thread.join(30)
    assert not thread.is_alive() and pilot.calls == WarningAutopilot.MAX_FAILURES
    assert "gives up its automatic warning" in caplog.text and "curl" in caplog.text
