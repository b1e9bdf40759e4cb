"""``ioc operations``: the hazard status of every district and ward, evaluated by the platform."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import connect
from ioc_cli.environment import environment
from ioc_cli.ingest import stop_on_signals
from ioc_cli.logs import setup_logging
from ioc_core.settings import DatabaseSettings, OperationsSettings, load
from operations.evaluator import Change, Round, evaluate, evaluate_round
from operations.runner import Pace, Runner

__all__ = ["register"]

log = logging.getLogger("ioc.operations")


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError as err:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time such as 2026-11-03T08:00:00+07:00") from err
    if at.tzinfo is None:
        raise typer.BadParameter("give the time zone, e.g. +07:00")
    return at


def register(app: typer.Typer) -> None:
    ops = typer.Typer(help="Operations: the hazard status (flood, heavy rain, air quality) of every district and "
                      "ward, from its stations' newest readings.", no_args_is_help=True)

    @ops.command("evaluate", epilog=environment(DatabaseSettings))
    def evaluate_cmd(
        at: Annotated[str | None, typer.Option("--at", metavar="<time>",
                                               help="evaluate as of this ISO 8601 time; default: now")] = None,
    ) -> None:
        """Evaluate every zone's hazard status once and print what changed (stored with its reasons)."""
        when = _at(at)
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            changes = evaluate(conn, when)
        console = Console()
        if changes is None:
            console.print("another evaluation is running; nothing done")
            return
        if not changes:
            console.print("no status changed")
            return
        table = Table("zone", "hazard", "from", "to", "why")
        for c in changes:
            table.add_row(c.zone, c.hazard, c.before or "-", c.after, c.reason)
        console.print(table)

    @ops.command("run", epilog=environment(DatabaseSettings, OperationsSettings))
    def run_cmd() -> None:
        """Evaluate soon after the ingest stores readings (it notifies ioc_readings on commit; at most one round
        per IOC_OPERATIONS_MIN_GAP_S) and every IOC_OPERATIONS_INTERVAL_S seconds anyway, until SIGTERM or
        Ctrl-C. Any number may run: one is active, the others stand by and take over when it stops; a round
        catches up from the stored readings after a start or an outage."""
        settings = load(OperationsSettings)
        dsn = load(DatabaseSettings).dsn
        setup_logging("INFO")
        stop = threading.Event()
        stop_on_signals(stop)
        runner = Runner(lambda: connect(dsn, autocommit=True, application_name="ioc-operations"), evaluate_round,
                        lambda: datetime.now(UTC),
                        Pace(interval_s=settings.interval_s, min_gap_s=settings.min_gap_s,
                             retry_s=min(settings.interval_s, 1.0), busy_share=settings.busy_share),
                        on_result=_log_round)
        runner.run(stop)
        c = runner.counts
        log.info("stopped: %d rounds (%.1f s in rounds), %d notifications, %d reconnects, active %d time(s)",
                 c.rounds, c.busy_s, c.notifications, c.failures, c.activations)

    app.add_typer(ops, name="operations")


def _log_round(done: Round, _at: datetime) -> None:
    """What a round of the service did, one line per event an operator may look for in the log."""
    for change in done.changes:
        _log_change(change)
    for alarm in done.alarms.opened:
        log.info("alarm %d opened: %s %s (%s)", alarm.id, alarm.source, alarm.subject, alarm.severity)
    for alarm in done.alarms.raised:
        log.info("alarm %d raised to %s: %s %s", alarm.id, alarm.severity, alarm.source, alarm.subject)
    for alarm in done.alarms.cleared:
        log.info("alarm %d cleared: %s %s", alarm.id, alarm.source, alarm.subject)
    for incident in done.incidents_opened:
        log.info("incident %d opened (%s): %s", incident.id, incident.severity, incident.title)
    for escalated in done.escalated:
        log.info("incident %d escalated to level %d (was owned by %s)", escalated.incident_id, escalated.level,
                 escalated.owner_before)


def _log_change(change: Change) -> None:
    log.info("%s %s: %s -> %s (%s)", change.zone, change.hazard, change.before or "-", change.after, change.reason)
