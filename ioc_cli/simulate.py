"""``ioc simulate``: play the Da Nang sensor fleet into the broker as ChirpStack v4 would publish it."""

from __future__ import annotations

import csv
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from device_simulators.events import EventStream, StreamOptions
from device_simulators.fleet import Fleet, build_fleet
from device_simulators.parallel import ParallelStream, publish_sharded
from device_simulators.publisher import JsonLinesWriter, RunSummary, publish_to_broker, read_json_lines, run
from device_simulators.scenarios import SCENARIOS
from ioc_cli.environment import environment
from ioc_core.errors import ConfigError
from ioc_core.settings import MqttSettings, load

__all__ = ["register"]

_DA_NANG = timezone(timedelta(hours=7), "ICT")


class ScenarioName(StrEnum):
    normal = "normal"
    flood = "flood"
    faults = "faults"


class EncodingName(StrEnum):
    json = "json"
    protobuf = "protobuf"
    mixed = "mixed"


def register(app: typer.Typer) -> None:
    app.command("simulate", epilog=environment(MqttSettings))(simulate)


def simulate(
    devices: Annotated[
        int, typer.Option("--devices", "-n", min=0, help="Number of simulated devices.")
    ] = 200,
    seed: Annotated[
        int, typer.Option(help="Seed of the fleet and the stream: same seed, same messages.")
    ] = 1,
    scenario: Annotated[
        ScenarioName,
        typer.Option(help="normal: an ordinary day; flood: a 10-hour storm from minute 20; faults: dead "
                          "batteries, silent devices, out-of-range readings, malformed messages."),
    ] = ScenarioName.normal,
    encoding: Annotated[
        EncodingName,
        typer.Option(help="Payload encoding, like ChirpStack's [integration.mqtt] json=true|false; "
                          "mixed picks one per message."),
    ] = EncodingName.json,
    rate: Annotated[
        float | None,
        typer.Option(min=0, help="Messages per second. 0 = as fast as possible. Unset: follow the "
                                 "simulated clock at --time-scale."),
    ] = None,
    time_scale: Annotated[
        float,
        typer.Option(min=0.001, help="Simulated seconds per real second when pacing by the simulated "
                                     "clock (60 = an hour a minute; 1 = real time)."),
    ] = 60.0,
    duration: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many real seconds (with --rate 0: after "
                                 "duration x time-scale simulated seconds)."),
    ] = None,
    count: Annotated[int | None, typer.Option(min=0, help="Stop after this many messages.")] = None,
    start: Annotated[
        str | None,
        typer.Option(help="Simulated start, ISO 8601 (no offset = Da Nang time, UTC+7). Default: now, or "
                          "now minus duration x time-scale so that a timed run ends at the present."),
    ] = None,
    loss: Annotated[
        float | None, typer.Option(min=0, max=1, help="Share of uplinks lost on air (fCnt gaps).")
    ] = None,
    duplicates: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Share of messages published twice (same deduplicationId)."),
    ] = None,
    malformed: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Share of malformed messages (truncated JSON, garbage protobuf, "
                                        "payloads too short for their codec)."),
    ] = None,
    cayenne_object: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of Cayenne LPP devices whose device profile runs ChirpStack's "
                                        "CAYENNE_LPP codec, so their events carry 'object'."),
    ] = 0.5,
    joins: Annotated[
        bool, typer.Option(help="Start every device with an OTAA join event (--no-joins: mid-session).")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="Processes generating events (each simulates every n-th device); "
                                        "one process renders ~10-15k events/s."),
    ] = 1,
    dry_run: Annotated[
        bool, typer.Option(help="Do not publish: write the messages as JSON lines to standard output.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Do not publish: write the messages as JSON lines to this file.")
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Publish messages recorded with --out instead of "
                                                       "simulating (fastest way to a high rate)."),
    ] = None,
    list_devices: Annotated[
        bool, typer.Option("--list-devices", help="Print the fleet (devices, zones, models) and exit.")
    ] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="With --list-devices: CSV instead of a table.")
    ] = False,
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id of the publisher (default: random).")
    ] = None,
    qos: Annotated[int, typer.Option(min=0, max=2, help="MQTT QoS of the publishes.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Simulate Da Nang's LoRaWAN sensors as ChirpStack v4 MQTT events.

    Rivers, coast and street flooding, rain, air and water quality, parking, waste bins, street lights.

    Each device sends real payload bytes through 1-3 of 16 gateways (AS923-2).

    Topics: application/{id}/device/{dev_eui}/event/{up|join|status|log|ack|txack} on IOC_MQTT_URL.
    """
    console = Console(stderr=True)
    fleet = build_fleet(devices, seed=seed, cayenne_runtime_share=cayenne_object)
    if list_devices:
        _print_fleet(fleet, as_csv)
        return
    to_file = dry_run or out is not None
    options = StreamOptions(
        seed=seed,
        start=_start(start, duration, time_scale, rate),
        scenario=scenario.value,
        encoding=encoding.value,
        loss_ratio=loss,
        duplicate_ratio=duplicates,
        malformed_ratio=malformed,
        joins=joins,
    )
    if replay is None:
        console.print(
            f"[bold]{len(fleet.devices)}[/] devices, [bold]{len(fleet.gateways)}[/] gateways, "
            f"scenario [bold]{scenario.value}[/] ({SCENARIOS[scenario.value].description}) "
            f"from {options.start.astimezone(_DA_NANG):%Y-%m-%d %H:%M} Da Nang time",
            highlight=False,
        )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, _stopper(stop))
    messages: Any = None
    stream_stats: dict[str, Any] | None = None
    try:
        with _progress(console, quiet, count, duration) as bar:
            pacing: dict[str, Any] = {
                "rate": rate,
                "time_scale": time_scale,
                "count": count,
                "duration": duration,
                "on_progress": bar.update,
                "progress_every": _progress_every(rate, time_scale, len(fleet.devices)),
                "should_stop": stop.is_set,
            }
            settings = None if to_file else load(MqttSettings)
            if settings is not None:
                console.print(f"publishing to {settings.url} with QoS {qos}", highlight=False)
            if settings is not None and replay is None and workers > 1:
                # Each shard simulates and publishes on its own connection: one paho client publishes only
                # a few thousand QoS 1 messages a second.
                summary, stream_stats = publish_sharded(
                    devices, options, workers=workers, url=settings.url, seed=seed,
                    cayenne_runtime_share=cayenne_object, client_id=client_id, qos=qos,
                    ca_file=settings.ca_file, **pacing,
                )  # fmt: skip
            else:
                if replay is not None:
                    messages = read_json_lines(replay)
                elif workers > 1:
                    messages = ParallelStream(devices, options, workers=workers, seed=seed,
                                              cayenne_runtime_share=cayenne_object)  # fmt: skip
                else:
                    messages = EventStream(fleet, options)
                if settings is None:
                    summary = _write(messages, out, pacing)
                else:
                    summary = publish_to_broker(
                        messages, settings.url, client_id=client_id, qos=qos, ca_file=settings.ca_file,
                        **pacing,
                    )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
        if isinstance(messages, ParallelStream):
            messages.close()
    if isinstance(messages, EventStream):
        stream_stats = messages.stats.as_dict()
    elif isinstance(messages, ParallelStream):
        stream_stats = messages.stats()
    _print_summary(console, summary, stream_stats)


def _start(text: str | None, duration: float | None, time_scale: float, rate: float | None) -> datetime:
    if text is not None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as err:
            raise ConfigError(f"--start {text!r} is not an ISO 8601 date-time") from err
        return moment if moment.tzinfo else moment.replace(tzinfo=_DA_NANG)
    now = datetime.now(UTC).replace(microsecond=0)
    if duration is not None and rate is None:
        return now - timedelta(seconds=duration * time_scale)
    return now


def _stopper(stop: threading.Event) -> Any:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return handler


def _progress_every(rate: float | None, time_scale: float, devices: int) -> int:
    """About four progress updates a second: rich redraws on its own, feeding it costs per call."""
    if rate is None:
        per_second = devices / 600.0 * time_scale  # devices report every ~10 minutes on average
    elif rate == 0:
        per_second = 20_000.0
    else:
        per_second = rate
    return max(1, int(per_second / 4))


class _Bar:
    """A rich progress bar fed by ``run``'s progress callback."""

    def __init__(self, progress: Progress | None, task: TaskID | None, count: int | None) -> None:
        self._progress, self._task, self._count = progress, task, count

    def update(self, summary: RunSummary) -> None:
        if self._progress is None or self._task is None:
            return
        done = summary.messages if self._count else summary.elapsed_s
        self._progress.update(
            self._task,
            completed=done,
            description=f"{summary.messages:,} messages, {summary.rate:,.0f}/s, "
            f"{summary.malformed:,} malformed, {summary.duplicates:,} duplicates",
        )


class _progress:  # lower case: used like a function in a with statement
    def __init__(self, console: Console, disabled: bool, count: int | None, duration: float | None) -> None:
        self._disabled = disabled
        self._console = console
        self._count = count
        self._total = float(count) if count else duration
        self._progress: Progress | None = None

    def __enter__(self) -> _Bar:
        if self._disabled:
            return _Bar(None, None, self._count)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        task = self._progress.add_task("starting", total=self._total)
        return _Bar(self._progress, task, self._count)

    def __exit__(self, *_exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _write(messages: Any, out: Path | None, pacing: dict[str, Any]) -> RunSummary:
    if out is None:
        return run(messages, JsonLinesWriter(sys.stdout), **pacing)
    with out.open("w", encoding="utf-8") as stream:
        return run(messages, JsonLinesWriter(stream), **pacing)


def _print_fleet(fleet: Fleet, as_csv: bool) -> None:
    rows = [device.as_row() for device in fleet.devices]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["dev_eui"])
        writer.writeheader()
        writer.writerows(rows)
        return
    title = f"Da Nang fleet, seed {fleet.seed}: {len(rows)} devices, {len(fleet.gateways)} gateways"
    table = Table(title=title)
    columns = ("dev_eui", "name", "model", "zone", "lat", "lon", "site")
    for column in columns:
        table.add_column(column, no_wrap=column != "site")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    Console().print(table)


def _print_summary(console: Console, summary: RunSummary, stream: dict[str, Any] | None) -> None:
    table = Table(title="simulation summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("messages", f"{summary.messages:,}")
    table.add_row("real time", f"{summary.elapsed_s:,.1f} s ({summary.rate:,.0f} messages/s)")
    table.add_row("simulated time", str(timedelta(seconds=round(summary.simulated_s))))
    for event, n in sorted(summary.by_event.items()):
        table.add_row(f"  event {event}", f"{n:,}")
    for encoding, n in sorted(summary.by_encoding.items()):
        table.add_row(f"  encoding {encoding}", f"{n:,}")
    table.add_row("malformed", f"{summary.malformed:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    if stream is not None:
        table.add_row("uplinks lost (fCnt gaps)", f"{stream.get('lost', 0):,}")
        table.add_row("uplinks no gateway heard", f"{stream.get('lost_on_air', 0):,}")
        table.add_row("devices gone silent", f"{stream.get('silenced', 0):,}")
    console.print(table)
