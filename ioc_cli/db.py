"""``ioc db``: install and inspect the database schema."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import connect
from gateways.migrations import applied, available, migrate, storage_mode
from ioc_cli.environment import environment
from ioc_core.settings import DatabaseSettings, load

__all__ = ["register"]

TimescaleOption = Annotated[
    str,
    typer.Option(
        "--timescaledb",
        help="auto: TimescaleDB when the extension is installed and preloaded (installed but not preloaded is an "
        "error that says how to load it); on: require it; off: plain PostgreSQL.",
        envvar="IOC_TIMESCALEDB",
    ),
]


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema: versioned migrations (IOC_DATABASE_URL).", no_args_is_help=True)

    @db.command("migrate", epilog=environment(DatabaseSettings, also=("IOC_TIMESCALEDB",)))
    def migrate_cmd(timescaledb: TimescaleOption = "auto") -> None:
        """Apply the migrations that are missing; safe to run twice and from several machines at once."""
        if timescaledb not in ("auto", "on", "off"):
            raise typer.BadParameter("must be auto, on or off", param_hint="--timescaledb")
        settings = load(DatabaseSettings)
        with connect(settings.dsn) as conn:
            mode, done = migrate(conn, timescaledb)  # type: ignore[arg-type]
        console = Console()
        if done:
            for m in done:
                console.print(f"applied {m.version:04d}_{m.name} ({mode})")
        else:
            console.print(f"schema is up to date ({mode})")

    @db.command("status", epilog=environment(DatabaseSettings))
    def status_cmd() -> None:
        """Show which migrations are applied, and whether TimescaleDB or plain PostgreSQL is in use."""
        settings = load(DatabaseSettings)
        with connect(settings.dsn) as conn:
            done = applied(conn)
            mode = storage_mode(conn)
        table = Table(title=f"schema migrations (storage: {mode or 'not installed'})")
        table.add_column("version")
        table.add_column("name")
        table.add_column("applied at")
        for m in available():
            at = done.get(m.version)
            table.add_row(f"{m.version:04d}", m.name, at[1].isoformat(timespec="seconds") if at else "pending")
        Console().print(table)

    app.add_typer(db, name="db")
