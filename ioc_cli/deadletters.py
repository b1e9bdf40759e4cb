"""``ioc deadletters``: see what the ingest could not process, and replay it after a fix."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import connect
from ingest.codecs.js_runtime import JsLimits
from ingest.codecs.library import CodecLibrary
from ingest.dead_letters import STAGES, list_dead_letters
from ingest.processor import BatchProcessor
from ingest.replay import replay
from ioc_cli.environment import environment
from ioc_core.errors import FatalError
from ioc_core.settings import DatabaseSettings, IngestSettings, load

__all__ = ["register"]

StageOption = Annotated[str | None, typer.Option(help=f"Only this stage: {', '.join(STAGES)}.")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Only reasons containing this text.")]
LimitOption = Annotated[int, typer.Option(min=1, help="At most this many.")]


def _check_stage(stage: str | None) -> None:
    if stage is not None and stage not in STAGES:
        raise FatalError(f"--stage must be one of {', '.join(STAGES)}")


def register(app: typer.Typer) -> None:
    dl = typer.Typer(help="Dead letters: messages the ingest could not process.", no_args_is_help=True)

    @dl.command("list", epilog=environment(DatabaseSettings))
    def list_cmd(
        stage: StageOption = None,
        reason: ReasonOption = None,
        limit: LimitOption = 50,
        all_: Annotated[bool, typer.Option("--all", help="Include resolved ones.")] = False,
    ) -> None:
        """List open dead letters, oldest first, with their stage and reason."""
        _check_stage(stage)
        with connect(load(DatabaseSettings).dsn) as conn:
            letters = list_dead_letters(conn, stage=stage, reason_contains=reason, limit=limit,
                                        include_resolved=all_)
            counts = conn.execute(
                "SELECT stage, count(*) FROM dead_letters WHERE resolved_at IS NULL GROUP BY stage ORDER BY 1"
            ).fetchall()
        table = Table(title="dead letters")
        for col in ("id", "received", "stage", "dev_eui", "reason", "replays", "resolved"):
            table.add_column(col)
        for d in letters:
            table.add_row(str(d.id), d.received_at.isoformat(timespec="seconds"), d.stage, d.dev_eui or "-",
                          d.reason, str(d.replay_count),
                          d.resolved_at.isoformat(timespec="seconds") if d.resolved_at else "")
        console = Console()
        console.print(table)
        console.print("open by stage: " + (", ".join(f"{s} {n}" for s, n in counts) or "none"))

    @dl.command("replay", epilog=environment(DatabaseSettings, IngestSettings))
    def replay_cmd(
        ids: Annotated[list[int] | None, typer.Argument(help="Dead letter ids; all open ones when omitted.")] = None,
        stage: StageOption = None,
        reason: ReasonOption = None,
        limit: LimitOption = 10_000,
    ) -> None:
        """Run dead letters through the ingest again (after a codec fix or a registry change).

        Those that now succeed are marked resolved; the rest stay open with their replay count raised.
        """
        _check_stage(stage)
        settings = load(IngestSettings)
        dsn = load(DatabaseSettings).dsn
        codecs = CodecLibrary.discover(
            js_dir=settings.codec_dir,
            js_limits=JsLimits(time_limit_ms=settings.js_time_limit_ms,
                               memory_limit_mb=settings.js_memory_limit_mb),
        )
        processor = BatchProcessor(dsn, codecs)
        try:
            with connect(dsn) as conn:
                letters = list_dead_letters(conn, stage=stage, reason_contains=reason, ids=ids, limit=limit)
            outcome = replay(processor, letters)
        finally:
            processor.close()
        Console().print(
            f"replayed {outcome.attempted}: {outcome.resolved} resolved, {outcome.still_failing} still failing"
        )
        if outcome.still_failing:
            raise typer.Exit(1)

    app.add_typer(dl, name="deadletters")

