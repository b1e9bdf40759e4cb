"""The demo's operations story: two operators, short escalation timers, a public warning drafted by one and
approved by the other once Hải Châu's flood reaches danger, and its delivery to local stand-ins of every channel.

Everything here is the demo's own stage hands; the platform's parts (the evaluator that opens and escalates
incidents, the warnings API, the dispatcher and its adapters) run as they would in production. The warning goes
through the HTTP API with each operator's own key, so it passes the same checks (a second, different operator
approves) and is audited like any other.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from gateways.database import Connection, DatabaseUnavailable, close_quietly, connect
from gateways.ioc_api_client import IocApiClient, IocApiError
from ioc_cli.standins.loopback import LoopbackServer, Request
from ioc_cli.standins.sms import SmsStandIn
from ioc_cli.standins.webhook_receiver import WebhookReceiver
from ioc_cli.standins.zalo import ZaloStandIn
from ioc_core.settings import FeedSettings, MqttSettings, NotifySettings

__all__ = [
    "CITY_USER",
    "DISTRICT_USER",
    "ESCALATE_AFTER_S",
    "TECHNICIAN_USER",
    "Journal",
    "Operator",
    "Receivers",
    "WarningAutopilot",
    "choose_operator_channels",
    "create_operators",
    "forget_gone_stand_ins",
    "next_step",
    "run_dispatcher",
    "set_public_routes",
    "shorten_escalation",
    "start_receivers",
    "write_private",
]

log = logging.getLogger("ioc.demo")

DISTRICT_USER: Final = "demo-district"
"""The district centre's operator, on Hải Châu: drafts the warning."""
CITY_USER: Final = "demo-city"
"""The city IOC's operator, on every zone: approves it."""
TECHNICIAN_USER: Final = "demo-technician"
"""A field technician on the same district: the console's technician view (devices, registering from a QR code)."""
ESCALATE_AFTER_S: Final = 90.0
"""The demo's escalation timer (production: critical 300 s, major 900 s), so escalation shows in minutes."""
ZALO_TEMPLATE: Final = "demo-ioc-warning"
ZALO_PARAMS: Final = ("title", "content", "reference")
PHONE: Final = "+84905000113"
"""The demo's public recipient for Zalo and SMS (a made-up number; nothing leaves this machine)."""
EMAIL: Final = "canh-bao@example.org"
RECEIVED: Final = "received"
"""The demo folder's sub-folder where the stand-ins write what they receive, one file per channel."""


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a file only its owner can read (a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        out.write(text + "\n")
    return path


def shorten_escalation(conn: Connection, after_s: float) -> dict[str, int]:
    """Every severity that escalates does so after ``after_s`` seconds (the timers are data); returns them.
    In the demo's database only: it is the demo's way of showing escalation within its first minutes."""
    with conn.transaction():
        rows = conn.execute("UPDATE alarm_severities SET escalate_after_s = %s WHERE escalate_after_s IS NOT NULL "
                            "RETURNING severity, escalate_after_s", (round(after_s),)).fetchall()
    return {str(s): int(n) for s, n in rows}


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    zones: tuple[str, ...]
    key_file: Path


def create_operators(conn: Connection, folder: Path, district: str) -> tuple[Operator, Operator, Operator]:
    """The district operator (on ``district``), the city operator (all zones) and a technician (on ``district``),
    each with a new key written to ``folder/api-key-<name>``; a previous run's users of those names go first
    (their audit records stay)."""
    from ioc_api.queries.users import create_user  # the users' one home, shared with the API

    made = []
    for name, role, zones in ((DISTRICT_USER, "operator", [district]), (CITY_USER, "operator", []),
                              (TECHNICIAN_USER, "technician", [district])):
        conn.execute("DELETE FROM api_users WHERE name = %s", (name,))
        _user, key = create_user(conn, name, role, zones, actor="ioc demo")
        made.append(Operator(name, tuple(zones), write_private(folder / f"api-key-{name}", key.key)))
    return made[0], made[1], made[2]


class Journal:
    """What the stand-ins received, one JSON line per delivery in ``folder/<channel>.log``; a repeat of a key
    already received (a redelivery after a crash) is written too, marked ``duplicate``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def path(self, channel: str) -> Path:
        return self.folder / f"{channel}.log"

    def record(self, channel: str, key: str, subject: str, detail: Mapping[str, Any]) -> None:
        with self._lock:
            duplicate = (channel, key) in self._seen
            self._seen.add((channel, key))
            entry = {"at": datetime.now(UTC).isoformat(), "channel": channel, "key": key, "duplicate": duplicate,
                     "subject": subject, **detail}
            with self.path(channel).open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _journaled(server: LoopbackServer, journal: Journal, channel: str,
               describe: Callable[[Request], tuple[str, str, dict[str, Any]]]) -> None:
    """Make ``server`` write every request it accepts (2xx) to the journal."""
    answer = server.answer

    def journaled(request: Request) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = answer(request)
        if 200 <= status < 300:
            key, subject, detail = describe(request)
            journal.record(channel, key, subject, detail)
        return status, body, headers

    server.answer = journaled  # type: ignore[method-assign]


def _webhook(request: Request) -> tuple[str, str, dict[str, Any]]:
    data = request.json().get("data", {})
    warning = (data.get("data") or {}).get("warning") or {}  # a public warning's JSON form, when it is one
    return request.headers["webhook-id"], str(data.get("subject", "")), {
        "signature": "verified", "event": data.get("event"), "path": request.path,
        "identifier": warning.get("identifier"), "text": data.get("text")}


def _zalo(request: Request) -> tuple[str, str, dict[str, Any]]:
    body = request.json()
    params = body.get("template_data", {})
    return str(body.get("tracking_id")), str(params.get("title", "")), {"phone": body.get("phone"),
                                                                        "template_data": params}


def _sms(request: Request) -> tuple[str, str, dict[str, Any]]:
    body = request.json()
    return str(body.get("reference")), str(body.get("text", ""))[:80], {"to": body.get("to"),
                                                                        "text": body.get("text")}


@dataclass(slots=True)
class Receivers:
    """The local stand-ins the demo's public warning goes to, and where they write what they received."""

    journal: Journal
    webhook: WebhookReceiver
    zalo: ZaloStandIn
    sms: SmsStandIn
    secret: str
    zalo_token: str
    sms_token: str
    smtp: Any | None = None
    """The SMTP sink, when aiosmtpd is installed (a dev extra); else the demo has no e-mail."""
    smtp_missing: str | None = None
    stops: list[Callable[[], None]] = field(default_factory=list)

    def settings(self) -> NotifySettings:
        """The dispatcher's channels, pointed at the stand-ins; the public MQTT feed stays on."""
        values: dict[str, Any] = {
            "webhook_secret": SecretStr(self.secret), "webhook_allow_private": True,  # the stand-ins are local
            "zalo_url": self.zalo.url,
            "zalo_access_token": SecretStr(self.zalo_token), "zalo_template_id": ZALO_TEMPLATE,
            "sms_url": f"{self.sms.url}/send", "sms_token": SecretStr(self.sms_token), "mqtt": True,
            "retry_s": 2.0, "retry_max_s": 30.0, "timeout_s": 10.0}
        if self.smtp is not None:
            values.update(smtp_host=self.smtp.host, smtp_port=self.smtp.port, smtp_starttls=False,
                          smtp_from="ioc-demo@example.org")
        return NotifySettings(**values)

    def routes(self) -> list[tuple[str, str, str]]:
        """The public warning's recipients: one on each channel."""
        routes = [("warning", "webhook", f"{self.webhook.url}/hooks/warnings"), ("warning", "zalo", PHONE),
                  ("warning", "sms", PHONE)]
        if self.smtp is not None:
            routes.append(("warning", "email", EMAIL))
        return routes

    def channels(self) -> list[str]:
        return ["webhook", "zalo", "sms"] + (["email"] if self.smtp is not None else [])

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


def _smtp_sink(journal: Journal) -> Any:
    """An aiosmtpd server journaling every message, or ImportError when aiosmtpd is not installed."""
    from email.message import EmailMessage

    from ioc_cli.standins.smtp import SmtpStandIn

    class Sink(SmtpStandIn):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer = await super().handle_DATA(server, session, envelope)
            message: EmailMessage = self.messages[-1]
            journal.record("email", str(message["Message-ID"]), str(message["Subject"]),
                           {"to": list(envelope.rcpt_tos)})
            return answer

    return Sink()


def start_receivers(folder: Path) -> Receivers:
    """Start the stand-ins on loopback with fresh secrets; ``Receivers.stop`` stops them."""
    journal = Journal(folder)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    zalo_token, sms_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    receivers = Receivers(journal, WebhookReceiver(secret), ZaloStandIn(zalo_token, {ZALO_TEMPLATE: ZALO_PARAMS}),
                          SmsStandIn(sms_token), secret, zalo_token, sms_token)
    for server, channel, describe in ((receivers.webhook, "webhook", _webhook), (receivers.zalo, "zalo", _zalo),
                                      (receivers.sms, "sms", _sms)):
        _journaled(server, journal, channel, describe)
        server.start()
        receivers.stops.append(server.stop)
    try:
        sink = _smtp_sink(journal)
    except ImportError as err:
        receivers.smtp_missing = f"aiosmtpd is not installed ({err.name}; ./run.sh installs it): no e-mail"
    else:
        sink.__enter__()
        receivers.smtp = sink
        receivers.stops.append(lambda: sink.__exit__(None, None, None))
    return receivers


def forget_gone_stand_ins(conn: Connection, webhook_url: str, at: datetime) -> int:
    """Give up, as failed and saying why, the pending webhook messages of a previous run: they are addressed to
    its stand-in's port, gone with it (the other channels' addresses are numbers and mailboxes, which this
    run's stand-ins take). Only loopback addresses: a webhook a user added elsewhere keeps its messages."""
    with conn.transaction():
        rows = conn.execute(
            """UPDATE notification_outbox SET state = 'failed', last_error = %s
               WHERE state = 'pending' AND channel = 'webhook' AND address LIKE 'http://127.0.0.1:%%'
                 AND address NOT LIKE %s RETURNING id""",
            (f"the demo's webhook stand-in of a previous run is gone (at {at.isoformat()})",
             webhook_url.replace("%", r"\%").replace("_", r"\_") + "/%")).fetchall()
    return len(rows)


def set_public_routes(conn: Connection, routes: Sequence[tuple[str, str, str]]) -> None:
    """Make these the public warning's recipients, as an admin's PUT /api/v1/notifications/routes would."""
    from ioc_api.queries.notifications import replace_routes

    replace_routes(conn, user=None, events=("warning",), routes=routes, actor="ioc demo")


def choose_operator_channels(api_url: str, district: Operator, city: Operator, webhook_url: str) -> None:
    """Each operator chooses, with their own key (PUT /api/v1/me/notifications), to hear by webhook of what
    concerns them: the district operator of new and escalated incidents in Hải Châu, the city operator of
    escalations; each on a path of their own at the webhook stand-in."""
    for operator, events in ((district, ("incident_new", "escalated")), (city, ("escalated",))):
        with _client(api_url, operator) as client:
            client.set_my_notifications([{"event": e, "channel": "webhook",
                                          "address": f"{webhook_url}/hooks/{operator.name}"} for e in events])


def run_dispatcher(dsn: str, settings: NotifySettings, feed: FeedSettings, mqtt: MqttSettings,
                   stop: threading.Event, every_s: float = 1.0) -> threading.Thread:
    """A thread sending the notification outbox every ``every_s`` seconds, as ``ioc notify run`` does (a poll
    instead of LISTEN: the demo is one process, and a second's delay shows nothing else)."""
    from ioc_cli.notify import build_senders
    from operations.dispatcher import RetryPolicy, dispatch

    policy = RetryPolicy(max_attempts=settings.max_attempts, first_delay_s=settings.retry_s,
                         max_delay_s=settings.retry_max_s)

    def loop() -> None:
        senders = build_senders(settings, feed, mqtt)
        conn: Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = connect(dsn, autocommit=True, application_name="ioc-demo-notify")
                    for a in dispatch(conn, senders, datetime.now(UTC), policy, limit=settings.batch):
                        level = logging.INFO if a.outcome == "sent" else logging.WARNING
                        log.log(level, "notification %s %s %s attempt %s: %s (%s)", a.outbox_id, a.channel,
                                a.address, a.attempt, a.outcome, a.detail)
                except DatabaseUnavailable as err:
                    log.info("notification round skipped: %s", err)
                    close_quietly(conn)
                    conn = None
                except Exception:  # the demo goes on; the next round starts on a new connection
                    log.exception("notification round failed")
                    close_quietly(conn)
                    conn = None
                stop.wait(every_s)
        finally:
            close_quietly(conn)
            for sender in senders.values():
                sender.close()

    thread = threading.Thread(target=loop, name="notify", daemon=True)
    thread.start()
    return thread


# The warning's autopilot.

Step = tuple[str, int]
"""What the autopilot does next: ("draft", incident id), ("approve", warning id) or ("done", warning id)."""


def next_step(incident_id: int, warnings: Sequence[Mapping[str, Any]]) -> Step:
    """From an incident's warnings (the API's JSON, any order): approve the district operator's draft, or draft
    one when there is none; done once one is approved. A rejected draft is left alone and a new one drafted."""
    approved = [w for w in warnings if w.get("state") == "approved"]
    if approved:
        return "done", int(min(approved, key=lambda w: int(w["id"]))["id"])
    drafts = [w for w in warnings if w.get("state") == "draft" and w.get("drafted_by") == DISTRICT_USER]
    if drafts:
        return "approve", int(min(drafts, key=lambda w: int(w["id"]))["id"])
    return "draft", incident_id


class WarningAutopilot:
    """Once the home district's flood reaches danger and it has an open incident, the district operator drafts a
    public warning from it and the city operator approves it, through the API; it says so on ``say``."""

    MAX_FAILURES: Final = 5

    def __init__(self, dsn: str, api_url: str, district: Operator, city: Operator, say: Callable[[str], None],
                 *, hazard: str = "flood", every_s: float = 2.0) -> None:
        self.dsn, self.api_url, self.hazard, self.every_s = dsn, api_url, hazard, every_s
        self.district_code = district.zones[0]
        self._district = _client(api_url, district)
        self._city = _client(api_url, city)
        self._say = say
        self.approved: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None

    def _incident(self) -> int | None:
        """The open incident of the district's hazard, once the district is in danger."""
        with connect(self.dsn, autocommit=True, application_name="ioc-demo-warnings") as conn:
            row = conn.execute(
                """SELECT i.id FROM incidents i JOIN zone_hazard_status s
                       ON s.zone_code = i.zone_code AND s.hazard = i.hazard AND s.status = 'danger'
                   WHERE i.zone_code = %s AND i.hazard = %s AND i.state NOT IN ('resolved', 'closed')
                   ORDER BY i.id LIMIT 1""", (self.district_code, self.hazard)).fetchone()
        return None if row is None else int(row[0])

    def step(self) -> bool:
        """One look; True once a warning is approved."""
        incident = self._incident()
        if incident is None:
            return False
        warnings = self._city.list_warnings(incident)["items"]
        action, ident = next_step(incident, warnings)
        if action == "draft":
            drafted = self._district.draft_warning(incident)
            self._say(f"[bold]warning[/]  {DISTRICT_USER} drafted {drafted['identifier']} from incident {incident} "
                      f"for {', '.join(drafted['zones'])} (automatic in the demo)")
            action, ident = "approve", int(drafted["id"])
        if action == "approve":
            done = self._city.approve_warning(ident)
            self._say(f"[bold]warning[/]  {CITY_USER} approved {done['identifier']} (drafted by "
                      f"{done['drafted_by']}): CAP {done['cap_url']} - on its way to the public feed and the "
                      "stand-ins")
            self.approved = done
            return True
        self.approved = next(w for w in warnings if int(w["id"]) == ident)
        return True

    def start(self, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            failures = 0
            while not stop.is_set():
                try:
                    if self.step():
                        return
                    failures = 0
                except IocApiError as err:
                    failures += 1
                    log.warning("the demo's warning: HTTP %s %s", err.status, err)
                except Exception:  # the demo goes on; the next look tries again
                    failures += 1
                    log.exception("the demo's warning failed")
                if failures >= self.MAX_FAILURES:  # a refusal that repeats will not change by itself
                    log.error("the demo gives up its automatic warning after %d failures in a row; draft and "
                              "approve one by hand (the banner's curl lines)", failures)
                    return
                stop.wait(self.every_s)

        def run() -> None:
            try:
                loop()
            finally:
                self._district.close()
                self._city.close()

        self._thread = threading.Thread(target=run, name="demo-warning", daemon=True)
        self._thread.start()
        return self._thread


def _client(api_url: str, operator: Operator) -> IocApiClient:
    """The API with one operator's key, as the operator's curl would reach it."""
    return IocApiClient(api_url, SecretStr(operator.key_file.read_text().strip()), timeout_s=30.0)
