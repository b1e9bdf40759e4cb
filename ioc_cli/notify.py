"""``ioc notify``: the dispatcher that sends the notification outbox (webhook, e-mail, Zalo, SMS, public MQTT)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import Connection, DatabaseUnavailable, close_quietly, connect, database_errors
from gateways.notify import EmailSender, MqttSender, Sender, SmsSender, WebhookSender, ZaloSender
from ioc_cli.environment import environment
from ioc_cli.ingest import stop_on_signals
from ioc_cli.logs import setup_logging
from ioc_core.settings import DatabaseSettings, FeedSettings, MqttSettings, NotifySettings, load
from operations.dispatcher import WAKE_CHANNEL, RetryPolicy, dispatch, next_due, waiting

__all__ = ["build_senders", "register"]

log = logging.getLogger("ioc.notify")
_SETTINGS = (NotifySettings, DatabaseSettings, FeedSettings, MqttSettings)


def build_senders(settings: NotifySettings, feed: FeedSettings, mqtt: MqttSettings) -> dict[str, Sender]:
    """An adapter for every channel the settings configure."""
    senders: dict[str, Sender] = {}
    if settings.webhook_secret is not None:
        senders["webhook"] = WebhookSender(settings.webhook_secret.get_secret_value(), timeout_s=settings.timeout_s)
    if settings.smtp_host and settings.smtp_from:
        senders["email"] = EmailSender(
            settings.smtp_host, settings.smtp_port, settings.smtp_from, user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls, timeout_s=settings.timeout_s)
    if settings.zalo_access_token is not None and settings.zalo_template_id:
        senders["zalo"] = ZaloSender(settings.zalo_access_token.get_secret_value(), settings.zalo_template_id,
                                     base_url=settings.zalo_url, timeout_s=settings.timeout_s)
    if settings.sms_url:
        senders["sms"] = SmsSender(settings.sms_url,
                                   settings.sms_token.get_secret_value() if settings.sms_token else None,
                                   timeout_s=settings.timeout_s)
    if settings.mqtt:
        senders["mqtt"] = MqttSender(settings.mqtt_broker(feed, mqtt), ca_file=feed.broker_ca_file(mqtt),
                                     timeout_s=settings.timeout_s)
    return senders


def _policy(settings: NotifySettings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.max_attempts, first_delay_s=settings.retry_s,
                       max_delay_s=settings.retry_max_s)


def _configured() -> tuple[NotifySettings, str, dict[str, Sender]]:
    settings = load(NotifySettings)
    dsn = load(DatabaseSettings).dsn
    return settings, dsn, build_senders(settings, load(FeedSettings), load(MqttSettings))


def _close(senders: dict[str, Sender]) -> None:
    for sender in senders.values():
        sender.close()


def register(app: typer.Typer) -> None:
    notify = typer.Typer(help="Notifications: send the outbox (incident and escalation messages to operators, "
                         "public warnings) on webhook, e-mail, Zalo ZNS, SMS and the public MQTT feed.",
                         no_args_is_help=True)

    @notify.command("once", epilog=environment(*_SETTINGS))
    def once_cmd() -> None:
        """Send every message due now, once each, and print each attempt and what the outbox holds."""
        settings, dsn, senders = _configured()
        console = Console()
        try:
            with connect(dsn, autocommit=True, application_name="ioc-notify") as conn:
                attempts = dispatch(conn, senders, datetime.now(UTC), _policy(settings), limit=1_000_000)
                counts = waiting(conn)
        finally:
            _close(senders)
        table = Table("row", "channel", "address", "attempt", "outcome", "ms", "detail")
        for a in attempts:
            table.add_row(str(a.outbox_id), a.channel, a.address, str(a.attempt), a.outcome, str(a.duration_ms),
                          a.detail)
        if attempts:
            console.print(table)
        sent = sum(a.outcome == "sent" for a in attempts)
        console.print(f"{len(attempts)} attempts: {sent} sent, {sum(a.outcome == 'retry' for a in attempts)} to "
                      f"retry, {sum(a.outcome == 'failed' for a in attempts)} failed")
        channels = sorted({c for c, _s in counts})
        summary = Table("channel", "pending", "sent", "failed", "adapter")
        for channel in channels:
            summary.add_row(channel, *(str(counts.get((channel, s), 0)) for s in ("pending", "sent", "failed")),
                            "configured" if channel in senders else "not configured: its rows wait")
        if channels:
            console.print(summary)

    @notify.command("run", epilog=environment(*_SETTINGS))
    def run_cmd() -> None:
        """Send due messages until SIGTERM or Ctrl-C: woken at once by new rows (LISTEN), and at least every
        IOC_NOTIFY_POLL_S seconds for retries. Any number may run; each row is sent by one of them at a time."""
        settings, dsn, senders = _configured()
        setup_logging("INFO")
        log.info("channels: %s", ", ".join(sorted(senders)) or "none configured")
        stop = threading.Event()
        stop_on_signals(stop)
        conn: Connection | None = None
        listener: Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None or listener is None:
                        conn = connect(dsn, autocommit=True, application_name="ioc-notify")
                        listener = connect(dsn, autocommit=True, application_name="ioc-notify-listen")
                        listener.execute(f"LISTEN {WAKE_CHANNEL}")
                    attempts = dispatch(conn, senders, datetime.now(UTC), _policy(settings), limit=settings.batch)
                    for a in attempts:
                        level = logging.INFO if a.outcome == "sent" else logging.WARNING
                        log.log(level, "row %s %s %s attempt %s: %s (%s)", a.outbox_id, a.channel, a.address,
                                a.attempt, a.outcome, a.detail)
                    if len(attempts) < settings.batch:
                        _wait(listener, conn, senders, settings.poll_s, stop)
                except DatabaseUnavailable as err:
                    log.warning("%s; retrying in %g s", err, settings.poll_s)
                    close_quietly(conn)
                    close_quietly(listener)
                    conn = listener = None
                    stop.wait(settings.poll_s)
        finally:
            close_quietly(conn)
            close_quietly(listener)
            _close(senders)

    app.add_typer(notify, name="notify")


def _wait(listener: Connection, conn: Connection, senders: dict[str, Sender], poll_s: float,
          stop: threading.Event) -> None:
    """Until a new row is announced, the next retry falls due, ``poll_s`` passes or ``stop`` is set."""
    due = next_due(conn, sorted(senders))
    wait_s = poll_s if due is None else max(0.0, min(poll_s, (due - datetime.now(UTC)).total_seconds()))
    deadline = datetime.now(UTC).timestamp() + wait_s
    with database_errors("waiting for new notifications"):
        while not stop.is_set():
            left = deadline - datetime.now(UTC).timestamp()
            if left <= 0:
                return
            # Short slices, so SIGTERM is seen within a second.
            for _ in listener.notifies(timeout=min(left, 1.0), stop_after=1):
                return
