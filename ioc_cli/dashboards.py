"""``ioc dashboards``: build the Grafana boards and alert rules, check their SQL, push them, set thresholds."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import DatabaseError, connect, database_errors
from ioc_cli.environment import environment
from ioc_core.errors import FatalError
from ioc_core.settings import DatabaseSettings, GrafanaSettings, load

__all__ = ["register"]

TimescaleChoice = Literal["off", "on", "auto"]


def _repository_deploy() -> Path | None:
    """deploy/grafana of the source checkout this package runs from, if it does."""
    candidate = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
    return candidate if candidate.parent.is_dir() else None


def _timescaledb(choice: str) -> bool:
    if choice in ("on", "off"):
        return choice == "on"
    from gateways.migrations import storage_mode

    with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
        mode = storage_mode(conn)
    if mode is None:
        raise FatalError("the database has no IOC schema yet: run `ioc db migrate` first, or pass --timescaledb on|off")
    return mode == "timescaledb"


def _first_rows(rows: list[tuple[Any, ...]], count: int) -> str:
    """Up to ``count`` rows, one a line, values separated by ' | ' and cut to 24 characters each."""

    def cell(value: Any) -> str:
        if value is None:
            text = ""
        elif isinstance(value, datetime):
            text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        elif isinstance(value, float | Decimal):
            text = f"{float(value):.6f}".rstrip("0").rstrip(".")  # epoch seconds stay whole, no 1.79e+09
        else:
            text = str(value)
        return text if len(text) <= 24 else text[:23] + "…"

    lines = [" | ".join(cell(v) for v in row) for row in rows[:count]]
    if len(rows) > count > 0:
        lines.append(f"… {len(rows) - count} more")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    boards = typer.Typer(
        help=(
            "Grafana boards (City, Incidents, Zone, Device, Network, Pipeline) and alert rules, written in Python "
            "with the "
            "grafana-foundation-sdk. `build` writes the JSON and provisioning files, `check` runs every panel's "
            "SQL against the database, `push` puts everything into a running Grafana, `thresholds` sets alert "
            "levels per kind or device."
        ),
        no_args_is_help=True,
    )

    @boards.command("build", epilog=environment(DatabaseSettings))
    def build_cmd(
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Folder to write into; default: deploy/grafana of this source checkout.",
                         file_okay=False),
        ] = None,
        timescaledb: Annotated[
            str,
            typer.Option("--timescaledb", help="Set the datasource's TimescaleDB option: off, on, or auto (ask "
                         "the database in IOC_DATABASE_URL). The repository's files use off."),
        ] = "off",
        check: Annotated[
            bool, typer.Option("--check", help="Write nothing; exit 1 when a file differs from what would be written.")
        ] = False,
    ) -> None:
        """Write the boards' JSON, the datasource, the dashboard provider and the alert rules for Grafana.

        Layout under the folder: dashboards/*.json, provisioning/datasources/ioc.yaml,
        provisioning/dashboards/ioc.yaml and provisioning/alerting/ioc-rules.yaml. Point Grafana's
        paths.provisioning at provisioning/ and mount dashboards/ at /var/lib/grafana/dashboards/ioc.
        """
        from dashboards.provisioning import render_files, write_files

        if timescaledb not in ("off", "on", "auto"):
            raise FatalError(f"--timescaledb must be off, on or auto, got {timescaledb!r}")
        target = out or _repository_deploy()
        if target is None:
            raise FatalError("not running from a source checkout: pass --out DIR")
        console = Console()
        ts = _timescaledb(timescaledb)
        if check:
            stale = [rel for rel, text in render_files(timescaledb=ts).items()
                     if not (target / rel).exists() or (target / rel).read_text(encoding="utf-8") != text]
            for rel in stale:
                console.print(f"stale: {target / rel}")
            if stale:
                raise typer.Exit(1)
            console.print(f"up to date: {target}")
            return
        results = write_files(target, timescaledb=ts)
        changed = [p for p, c in results if c]
        for path in changed:
            console.print(f"wrote {path}")
        console.print(f"{len(results)} files in {target}, {len(changed)} changed")

    @boards.command("check", epilog=environment(DatabaseSettings))
    def check_cmd(
        board: Annotated[
            str | None, typer.Option("--board", help="Only this board (city, zone, device, network, pipeline) "
                                     "or 'alerts'.")
        ] = None,
        time_from: Annotated[
            str | None, typer.Option("--from", help="Relative start such as now-30d; default: each board's own.")
        ] = None,
        var: Annotated[
            list[str] | None, typer.Option("--var", help="A board variable's value, NAME=VALUE (repeatable).")
        ] = None,
        show: Annotated[
            int, typer.Option("--rows", min=0, help="How many of each query's rows to print (0: only how many).")
        ] = 3,
    ) -> None:
        """Run every panel's and alert rule's SQL against IOC_DATABASE_URL, expanded as Grafana sends it.

        Prints the variable values each board runs with (--var, else values with data: the Zone board the
        district and kind heard from last, the Device board the device heard from last), then per query the
        panel's title with those values filled in, how many rows it returned, the first --rows of them and its
        time in ms. Exits 1 when a query fails or lacks a column its panel reads.
        """
        from dashboards.exercise import all_cases, panel_title, parse_relative, run_case, sample_variables
        from dashboards.macros import Variable
        from gateways.migrations import storage_mode

        chosen: dict[str, str] = {}
        for item in var or []:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise FatalError(f"--var wants NAME=VALUE, got {item!r}")
            chosen[name] = value
        wanted = None if board is None else board if board == "alerts" else f"ioc-{board}"
        console = Console()
        table = Table("board", "panel", "ref", "rows", "ms", "first rows" if show else "problem")
        failures = 0
        now = datetime.now(UTC)
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            ts = storage_mode(conn) == "timescaledb"
            sampled: dict[str, list[Variable]] = {}
            for b, case in all_cases():
                if wanted is not None and case.board != wanted:
                    continue
                try:
                    time_range = parse_relative(time_from or case.time_from, now)
                except ValueError as err:
                    raise FatalError(str(err)) from err
                try:
                    with database_errors(f"{case.board} {case.ref_id}"):
                        if b is not None and b.uid not in sampled:
                            sampled[b.uid] = sample_variables(conn, b, time_range, chosen)
                            if sampled[b.uid]:
                                console.print(f"{b.uid}: " + "; ".join(
                                    f"{v.name} = {', '.join(v.values) or '(none)'}" for v in sampled[b.uid]),
                                    highlight=False)
                        runs = run_case(conn, case, time_range, sampled.get(case.board, []), timescaledb=ts)
                except DatabaseError as err:
                    failures += 1
                    table.add_row(case.board, panel_title(case.panel, sampled.get(case.board, [])), case.ref_id,
                                  "", "", "failed: " + err.detail)
                    continue
                for run in runs:
                    missing = [c for c in case.columns if c not in run.columns]
                    if missing:
                        failures += 1
                    shown = f"missing columns {missing}" if missing else _first_rows(run.rows, show)
                    table.add_row(case.board, run.title, case.ref_id, str(len(run.rows)), f"{run.ms:.1f}", shown)
        console.print(table)
        if failures:
            raise FatalError(f"{failures} queries failed")

    @boards.command("push", epilog=environment(GrafanaSettings, DatabaseSettings))
    def push_cmd(
        resend_secrets: Annotated[
            bool, typer.Option("--resend-secrets", help="Send the datasource password even when nothing visible "
                               "changed (after rotating it: Grafana never shows it back).")
        ] = False,
    ) -> None:
        """Create or update the datasource, folder, boards and alert rules in Grafana; report what changed.

        Reads IOC_GRAFANA_URL and IOC_GRAFANA_TOKEN (a service account token), and IOC_GRAFANA_DB_URL (or
        IOC_DATABASE_URL) for the datasource. The TimescaleDB option follows the database's storage mode.
        Running it twice changes nothing the second time.
        """
        from dashboards.provisioning import DatabaseTarget, bundle
        from dashboards.push import format_report, push
        from gateways.grafana import GrafanaClient

        grafana = load(GrafanaSettings)
        token = grafana.required_token()
        database = load(DatabaseSettings)
        url = grafana.db_url.get_secret_value() if grafana.db_url else database.dsn
        ts = _timescaledb("auto")
        target = DatabaseTarget.from_url(url, grafana.db_sslmode)
        with GrafanaClient(grafana.url, token, timeout_s=grafana.timeout_s) as client:
            report = push(bundle(target, timescaledb=ts), client, resend_secrets=resend_secrets)
        Console().print(format_report(report), highlight=False)
        if not report.ok:
            raise typer.Exit(1)

    register_thresholds(boards)
    app.add_typer(boards, name="dashboards")


# Threshold metrics that are not readings but a hazard's window over one (hazard_measures.threshold_metric).
_WINDOWED = frozenset({"rainfall_1h", "rainfall_3h"})


def register_thresholds(boards: typer.Typer) -> None:
    thresholds = typer.Typer(
        help="Hazard levels per kind or per device (a device's own row wins): watch, alert and danger, which the "
        "platform's hazard status reads (docs/operations.md). Water level and flood depth in metres, rain in mm "
        "(rainfall_1h, rainfall_3h), PM2.5 in µg/m³ held for --sustained seconds, silence in seconds (default: "
        "six reporting intervals).",
        no_args_is_help=True,
    )

    @thresholds.command("list", epilog=environment(DatabaseSettings))
    def list_cmd() -> None:
        """Every threshold row, kinds first."""
        table = Table("metric", "kind", "device", "watch above", "alert above", "danger above", "sustained s")
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            for row in conn.execute(
                """SELECT t.metric, coalesce(t.kind, ''), coalesce(d.dev_eui || ' ' || d.name, ''),
                          t.watch_above, t.alert_above, t.danger_above, t.sustained_s
                   FROM alert_thresholds t LEFT JOIN devices d ON d.id = t.device_id
                   ORDER BY t.device_id IS NOT NULL, t.metric, t.kind, d.dev_eui"""
            ):
                table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)

    @thresholds.command("set", epilog=environment(DatabaseSettings))
    def set_cmd(
        metric: Annotated[str, typer.Argument(help="water_level, flood_depth, pm2_5 (any vocabulary metric), a "
                                              "hazard's window (rainfall_1h, rainfall_3h), or silence: the seconds "
                                              "without an uplink before a device counts as silent.")],
        kind: Annotated[str | None, typer.Option("--kind", help="For every device of this kind.")] = None,
        device: Annotated[str | None, typer.Option("--device", help="For one device (DevEUI).")] = None,
        watch: Annotated[float | None, typer.Option("--watch", help="Watch level (theo dõi; for river gauges BĐ1), "
                                                    "below the alert level.")] = None,
        alert: Annotated[float | None, typer.Option("--alert", help="Alert level.")] = None,
        danger: Annotated[float | None, typer.Option("--danger", help="Danger level (at least the alert level).")]
        = None,
        sustained: Annotated[int, typer.Option("--sustained", min=0, help="Seconds the mean must stay above.")]
        = 0,
    ) -> None:
        """Set a kind's or a device's watch, alert and danger levels for METRIC.

        The row is replaced as a whole: a level left out is unset (for a device: no such level, not its kind's).
        """
        from ioc_core.kinds import KINDS
        from ioc_core.metrics import VOCABULARY

        if (kind is None) == (device is None):
            raise FatalError("give exactly one of --kind or --device")
        if metric != "silence" and metric not in {m.name for m in VOCABULARY.values()} | _WINDOWED:
            raise FatalError(f"unknown metric {metric!r}: a vocabulary name, {', '.join(sorted(_WINDOWED))}, "
                             "or silence")
        if metric == "silence" and (alert is None or alert <= 0 or danger is not None or watch is not None):
            raise FatalError("silence takes --alert SECONDS (more than 0) and no --watch or --danger")
        if kind is not None and kind not in KINDS:
            raise FatalError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        if alert is None and danger is None and watch is None:
            raise FatalError("give --watch, --alert, --danger or several")
        if alert is not None and danger is not None and danger < alert:
            raise FatalError("--danger must be at least --alert")
        if watch is not None and any(level is not None and watch >= level for level in (alert, danger)):
            raise FatalError("--watch must be below --alert and --danger")
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            device_id = None
            if device is not None:
                row = conn.execute("SELECT id FROM devices WHERE dev_eui = %s", (device.lower(),)).fetchone()
                if row is None:
                    raise FatalError(f"no device {device}")
                device_id = row[0]
            conn.execute(
                """INSERT INTO alert_thresholds (metric, kind, device_id, watch_above, alert_above, danger_above,
                                                 sustained_s)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (metric, kind, device_id) DO UPDATE
                   SET watch_above = EXCLUDED.watch_above, alert_above = EXCLUDED.alert_above,
                       danger_above = EXCLUDED.danger_above, sustained_s = EXCLUDED.sustained_s, updated_at = now()""",
                (metric, kind, device_id, watch, alert, danger, sustained),
            )
        Console().print(f"{metric} for {'kind ' + kind if kind else 'device ' + str(device)}: watch {watch}, "
                        f"alert {alert}, danger {danger}, sustained {sustained} s")

    @thresholds.command("clear", epilog=environment(DatabaseSettings))
    def clear_cmd(
        metric: Annotated[str, typer.Argument(help="The metric.")],
        kind: Annotated[str | None, typer.Option("--kind")] = None,
        device: Annotated[str | None, typer.Option("--device")] = None,
    ) -> None:
        """Remove a kind's or device's levels for METRIC (a device falls back to its kind's)."""
        if (kind is None) == (device is None):
            raise FatalError("give exactly one of --kind or --device")
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            cur = conn.execute(
                """DELETE FROM alert_thresholds t WHERE t.metric = %s AND t.kind IS NOT DISTINCT FROM %s
                   AND t.device_id IS NOT DISTINCT FROM (SELECT id FROM devices WHERE dev_eui = %s)""",
                (metric, kind, None if device is None else device.lower()),
            )
        Console().print(f"removed {cur.rowcount} row(s)")

    boards.add_typer(thresholds, name="thresholds")
