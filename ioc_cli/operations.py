"""``ioc operations``: the hazard status of every district and ward, evaluated by the platform."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import DatabaseUnavailable, close_quietly, connect
from ioc_cli.environment import environment
from ioc_cli.ingest import stop_on_signals
from ioc_cli.logs import setup_logging
from ioc_core.settings import DatabaseSettings, OperationsSettings, load
from operations.evaluator import Change, evaluate

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
        """Evaluate every IOC_OPERATIONS_INTERVAL_S seconds until SIGTERM or Ctrl-C. Any number may run: one round
        runs at a time (an advisory lock); after a restart the first round catches up from the stored readings."""
        settings = load(OperationsSettings)
        dsn = load(DatabaseSettings).dsn
        setup_logging("INFO")
        stop = threading.Event()
        stop_on_signals(stop)
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = connect(dsn, autocommit=True, application_name="ioc-operations")
                changes = evaluate(conn, datetime.now(UTC))
                for change in changes or []:
                    _log_change(change)
            except DatabaseUnavailable as err:
                log.warning("%s; retrying in %g s", err, settings.interval_s)
                close_quietly(conn)
                conn = None
            stop.wait(settings.interval_s)
        close_quietly(conn)

    app.add_typer(ops, name="operations")


def _log_change(change: Change) -> None:
    log.info("%s %s: %s -> %s (%s)", change.zone, change.hazard, change.before or "-", change.after, change.reason)
