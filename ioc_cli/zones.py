"""``ioc zones``: import district and ward boundaries as new zone versions, and list them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import connect
from ioc_cli.environment import environment
from ioc_core.errors import FatalError, RefusedError
from ioc_core.settings import DatabaseSettings, load
from ioc_core.zones import parse_geojson

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    zones = typer.Typer(
        help=(
            "City zones (districts and wards) as polygons with Vietnamese names. Boundaries are versioned: an "
            "import adds a new version of each changed zone and readings keep the zone they were taken in."
        ),
        no_args_is_help=True,
    )

    @zones.command("import", epilog=environment(DatabaseSettings))
    def import_cmd(
        file: Annotated[
            Path,
            typer.Argument(
                help="GeoJSON FeatureCollection of Polygon/MultiPolygon features with properties code, name, "
                "level (city|district|ward, default district), parent (a ward's district code) and "
                "approximate (true|false).",
                exists=True, dir_okay=False, readable=True,
            ),
        ],
        official: Annotated[
            bool,
            typer.Option(
                "--official/--approximate",
                help="--approximate marks every zone of the file as approximate; with --official (the default) "
                "only features whose properties say approximate: true are.",
            ),
        ] = True,
        retire_missing: Annotated[
            bool,
            typer.Option("--retire-missing", help="Close the current zones that the file does not contain."),
        ] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show what would change and write nothing.")
        ] = False,
    ) -> None:
        """Import zone boundaries from FILE, e.g. an official file replacing the approximate defaults.

        Unchanged zones are left alone: importing the same file twice changes nothing.

        A changed zone gets a new version and its old version is closed; readings keep the old one.

        Devices are re-zoned from their coordinates, wards before districts.

        Every change goes to the audit log with actor "cli". Reads IOC_DATABASE_URL.
        """
        from ioc_api.queries.zones import import_zones

        try:
            parsed = parse_geojson(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise FatalError(f"{file}: {err}") from err
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                report = import_zones(conn, parsed, actor="cli", approximate=not official,
                                      retire_missing=retire_missing, dry_run=dry_run)
            except RefusedError as err:
                raise FatalError(f"{file}: {err.message}") from err

        title = f"zones from {file.name}" + (" (dry run: nothing written)" if dry_run else "")
        table = Table(title=title)
        for col in ("zone", "result", "what changed"):
            table.add_column(col)
        for code in report.created:
            table.add_row(code, "[green]created[/]", f"version {report.changes[code]['version'][1]}")
        for code in report.changed:
            what = ", ".join(key for key in report.changes[code] if key != "version")
            old, new = report.changes[code]["version"]
            table.add_row(code, "[yellow]changed[/]", f"{what}; version {old} → {new}")
        for code in report.retired:
            table.add_row(code, "[red]retired[/]", f"version {report.changes[code]['version']} closed")
        for code in report.unchanged:
            table.add_row(code, "unchanged", "")
        console = Console()
        console.print(table)
        if report.rezoned:
            moves = Table(title="devices re-zoned")
            for col in ("device", "from", "to"):
                moves.add_column(col)
            for move in report.rezoned:
                moves.add_row(move.dev_eui, _zone_label(move.old_zone, move.old_version),
                              _zone_label(move.new_zone, move.new_version))
            console.print(moves)
        console.print(
            f"{len(report.created)} created, {len(report.changed)} changed, {len(report.unchanged)} unchanged, "
            f"{len(report.retired)} retired, {len(report.rezoned)} device{'' if len(report.rezoned) == 1 else 's'} "
            "re-zoned"
            + (" (dry run)" if dry_run else "")
        )

    @zones.command("list", epilog=environment(DatabaseSettings))
    def list_cmd(
        history: Annotated[
            bool, typer.Option("--history", help="Show every version, closed ones included.")
        ] = False,
    ) -> None:
        """List the current zones with their version and device count (--history: all versions)."""
        from ioc_api.queries.zones import list_zones

        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            rows = list_zones(conn, include_history=history)
        table = Table(title="zones" + (" (all versions)" if history else ""))
        table.add_column("code", no_wrap=True)
        table.add_column("name")
        table.add_column("level")
        table.add_column("parent", no_wrap=True)
        table.add_column("v", justify="right")
        table.add_column("approx.")
        table.add_column("since")
        if history:
            table.add_column("until")
        table.add_column("devices", justify="right")
        for z in rows:
            cells = [z.code, z.name, z.level, z.parent_code or "", str(z.version), "yes" if z.approximate else "no",
                     _time(z.valid_from, "always")]
            if history:
                cells.append(_time(z.valid_to, "current"))
            table.add_row(*cells, str(z.devices))
        Console().print(table)

    app.add_typer(zones, name="zones")


def _time(value: datetime | None, missing: str) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else missing


def _zone_label(code: str | None, version: int | None) -> str:
    return f"{code} v{version}" if code is not None else "(none)"
