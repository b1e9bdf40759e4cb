"""``ioc demo``: the whole platform on one machine, with the Da Nang fleet simulated into it."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from device_simulators.events import StreamOptions, generate
from device_simulators.fleet import Fleet, build_fleet
from device_simulators.publisher import publish_to_broker
from gateways.database import Connection, connect
from gateways.local_postgres import LocalPostgres, free_port
from gateways.migrations import fingerprint, migrate
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_cli.demo_brokers import DemoBrokers, start_demo_brokers
from ioc_cli.environment import environment
from ioc_cli.ingest import build_worker, stop_on_signals
from ioc_cli.logs import setup_logging
from ioc_core.errors import FatalError
from ioc_core.settings import (
    ApiSettings,
    BrokerSettings,
    DatabaseSettings,
    FeedSettings,
    IngestSettings,
    MqttSettings,
    MqttUrl,
    OpenDataSettings,
    load,
)
from ioc_core.zones import load_default_zones

__all__ = ["register"]

log = logging.getLogger("ioc.demo")

# Da Nang's clock, for the simulated time the summary shows.
_ICT = timezone(timedelta(hours=7), "ICT")

# What an operator looks at first: per district, how many sensors report, and the flood and air numbers.
_ZONE_SUMMARY = """
SELECT z.name,
       count(DISTINCT d.id) FILTER (WHERE d.status <> 'decommissioned') AS devices,
       (SELECT count(*) FROM uplinks u WHERE u.zone_id = z.id
          AND u.time > (SELECT max(time) FROM uplinks) - interval '1 hour') AS uplinks_last_hour,
       (SELECT max(r.maximum) FROM rollup_zone_hourly r JOIN metrics m ON m.id = r.metric_id
          WHERE r.zone_id = z.id AND m.name = 'water_level'
            AND r.bucket >= date_trunc('hour', (SELECT max(time) FROM uplinks)) - interval '1 hour')
          AS max_water_level,
       (SELECT sum(r.total) / nullif(sum(r.n), 0) FROM rollup_zone_hourly r JOIN metrics m ON m.id = r.metric_id
          WHERE r.zone_id = z.id AND m.name = 'pm2_5'
            AND r.bucket >= date_trunc('hour', (SELECT max(time) FROM uplinks)) - interval '1 hour')
          AS mean_pm2_5
FROM zones z LEFT JOIN devices d ON d.zone_id = z.id
WHERE z.valid_to IS NULL
GROUP BY z.id, z.name ORDER BY z.name
"""


def _demo_dir() -> Path:
    # /var/tmp survives reboots and every user can reach it, which the postgres server user needs.
    return Path(os.environ.get("IOC_DEMO_DIR", f"/var/tmp/ioc-demo-{os.getuid()}"))


def _register_fleet(conn: Connection, fleet: Fleet, unregistered_every: int) -> tuple[int, int]:
    """Register the fleet in the registry, leaving every n-th device for the ingest to enrol."""
    seed_zones(conn, load_default_zones())
    records = []
    left_out = 0
    for i, d in enumerate(fleet.devices):
        if unregistered_every and i % unregistered_every == unregistered_every - 1:
            left_out += 1
            continue
        records.append(
            DeviceRecord(
                dev_eui=d.dev_eui, name=d.name, kind=d.kind, model=d.model_id, codec_id=d.codec_id,
                latitude=d.lat, longitude=d.lon, application_id=d.application_id,
                device_profile_id=d.device_profile_id, tags=dict(d.tags),
            )
        )
    return register_devices(conn, records), left_out


def _print_summary(console: Console, dsn: str) -> None:
    try:
        with connect(dsn, autocommit=True) as conn:
            rows = conn.execute(_ZONE_SUMMARY).fetchall()
            totals = conn.execute(
                """SELECT (SELECT count(*) FROM uplinks), (SELECT count(*) FROM measurements),
                          (SELECT count(*) FROM device_events), (SELECT count(*) FROM dead_letters),
                          (SELECT count(*) FROM devices WHERE status = 'unregistered'),
                          (SELECT max(time) FROM uplinks)"""
            ).fetchone()
    except Exception as err:  # the summary is a courtesy; the demo goes on without it
        log.warning("could not read the summary: %s", err)
        return
    assert totals is not None
    latest = totals[5].astimezone(_ICT).strftime("%Y-%m-%d %H:%M") if totals[5] else "-"
    table = Table(title=f"Da Nang districts, last simulated hour (simulated clock {latest} ICT)")
    for col in ("district", "devices", "uplinks/h", "max water level (m)", "mean PM2.5 (µg/m³)"):
        table.add_column(col, justify="right" if col != "district" else "left")
    for name, devices, uplinks, water, pm in rows:
        table.add_row(name, str(devices), str(uplinks), f"{water:.2f}" if water is not None else "-",
                      f"{pm:.1f}" if pm is not None else "-")
    console.print(table)
    console.print(
        f"stored: {totals[0]} uplinks, {totals[1]} measurements, {totals[2]} device events, "
        f"{totals[3]} dead letters; {totals[4]} devices enrolled as unregistered"
    )


def register(app: typer.Typer) -> None:
    # The API it serves reads ApiSettings, BrokerSettings (with a configured broker) and OpenDataSettings.
    @app.command("demo", epilog=environment(DatabaseSettings, MqttSettings, IngestSettings, FeedSettings, ApiSettings,
                                            BrokerSettings, OpenDataSettings, also=("IOC_DEMO_DIR",)))
    def demo_cmd(
        devices: Annotated[int, typer.Option("--devices", "-n", min=1, help="Simulated sensors.")] = 300,
        scenario: Annotated[str, typer.Option(help="normal, flood or faults.")] = "flood",
        time_scale: Annotated[
            float, typer.Option(min=1.0, help="Simulated seconds per real second (600: ten minutes a second).")
        ] = 600.0,
        encoding: Annotated[str, typer.Option(help="json, protobuf or mixed, like ChirpStack's json flag.")]
        = "mixed",
        duration: Annotated[
            float | None, typer.Option(min=1.0, help="Stop after this many seconds (default: until Ctrl-C).")
        ] = None,
        summary_every: Annotated[float, typer.Option(min=1.0, help="Seconds between district summaries.")]
        = 15.0,
        seed: Annotated[int, typer.Option(help="Seed of the fleet and its messages.")] = 1,
        api: Annotated[bool, typer.Option(help="Also serve the IOC API, with a demo admin key.")] = True,
        api_port: Annotated[int, typer.Option(min=0, max=65_535, help="API port; 0 picks a free one.")] = 0,
    ) -> None:
        """Run the platform end to end on this machine: broker, database, simulated Da Nang fleet, ingest.

        With nothing configured it starts an embedded PostgreSQL and a local Mosquitto in IOC_DEMO_DIR
        (default /var/tmp/ioc-demo-<uid>); with IOC_DATABASE_URL / IOC_MQTT_URL set it uses those. The
        database is migrated, the default (approximate) Da Nang districts and the fleet are registered
        (every 20th device is left for the ingest to enrol as unregistered), the simulator publishes
        ChirpStack v4 events, and an ingest worker stores them. The IOC API is served on loopback with a
        fresh admin key printed at start (--no-api to skip). Ctrl-C stops everything cleanly.
        """
        if scenario not in ("normal", "flood", "faults"):
            raise typer.BadParameter("must be normal, flood or faults", param_hint="--scenario")
        if encoding not in ("json", "protobuf", "mixed"):
            raise typer.BadParameter("must be json, protobuf or mixed", param_hint="--encoding")
        setup_logging("INFO")
        console = Console()
        stop = threading.Event()
        stop_on_signals(stop)
        with ExitStack() as stack:
            work = _demo_dir()
            work.mkdir(parents=True, exist_ok=True)
            if "IOC_DATABASE_URL" in os.environ:
                dsn = load(DatabaseSettings).dsn
            else:
                _forget_stale_database(console, work)
                console.print(f"starting an embedded PostgreSQL in {work / 'postgres'} ...")
                pg = LocalPostgres(work / "postgres")
                pg.start()
                stack.callback(pg.stop)
                dsn = pg.url
            with connect(dsn) as conn:
                mode, _ = migrate(conn)
                fleet = build_fleet(devices, seed=seed)
                registered, left_out = _register_fleet(conn, fleet, unregistered_every=20)
            console.print(f"database ready ({mode}); registered {registered} devices, left {left_out} "
                          "for the ingest to enrol")
            brokers: DemoBrokers | None = None
            if "IOC_MQTT_URL" in os.environ:
                mqtt, feed, chirpstack_url = load(MqttSettings), load(FeedSettings), load(MqttSettings).mqtt_url
            else:
                with connect(dsn, autocommit=True) as conn:
                    brokers = start_demo_brokers(stack, conn, work)
                mqtt = MqttSettings(mqtt_url=brokers.ingest_url)
                feed = load(FeedSettings).model_copy(update={"feed_url": brokers.feed_url})
                chirpstack_url = brokers.chirpstack_url

            ingest = load(IngestSettings).model_copy(update={"ingest_client_id": "ioc-demo-worker"})
            worker = build_worker(ingest, DatabaseSettings(database_url=dsn), mqtt,  # type: ignore[arg-type]
                                  feed=feed)
            worker_stop = threading.Event()
            worker_thread = threading.Thread(target=worker.run, args=(worker_stop,), name="ingest")
            worker_thread.start()

            def stop_worker() -> None:
                worker_stop.set()
                worker_thread.join(60)

            stack.callback(stop_worker)
            # The worker's first subscription creates its session; publishing before it would lose messages.
            if not worker.wait_ready(60):
                raise FatalError(f"the ingest worker could not subscribe at {mqtt.mqtt_url}")

            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
            options = StreamOptions(seed=seed, start=start, scenario=scenario, encoding=encoding)  # type: ignore[arg-type]
            simulator = threading.Thread(
                target=publish_to_broker,
                args=(generate(fleet, options), MqttUrl.parse(chirpstack_url)),
                kwargs={"client_id": "ioc-demo-simulator", "time_scale": time_scale, "should_stop": stop.is_set},
                name="simulator",
                daemon=True,
            )
            simulator.start()
            api_line = _serve_api(stack, dsn, api_port, brokers) if api else None
            _where_to_look(console, dsn, mqtt.mqtt_url, devices, scenario, time_scale, api_line, brokers)

            started = time.monotonic()
            next_summary = started + summary_every
            while not stop.is_set():
                if duration is not None and time.monotonic() - started >= duration:
                    stop.set()
                    break
                if not simulator.is_alive():
                    stop.set()
                    break
                stop.wait(0.5)
                if time.monotonic() >= next_summary:
                    _print_summary(console, dsn)
                    next_summary += summary_every
            console.print("stopping: simulator, then the ingest drains, then the broker and database ...")
            simulator.join(30)
            stop_worker()
            _print_summary(console, dsn)
        console.print("demo stopped cleanly")


def _forget_stale_database(console: Console, work: Path) -> None:
    """The embedded database is disposable: built by other migrations than these, it starts afresh."""
    marker = work / "schema.sha256"
    current = fingerprint()
    stale = not marker.exists() or marker.read_text().strip() != current
    if stale and (work / "postgres").exists():
        console.print("the schema changed since the last demo: starting with a fresh database")
        shutil.rmtree(work / "postgres")
    marker.write_text(current + "\n")


def _serve_api(stack: ExitStack, dsn: str, port: int, brokers: DemoBrokers | None) -> str:
    """The API in a thread on loopback, with a new key for a ``demo-admin`` user; returns where to look."""
    import uvicorn  # only the demo and `ioc api` need the web stack

    from ingest.codecs.registry import CodecRegistry
    from ioc_api.app import create_app
    from ioc_api.queries.users import create_user
    from ioc_core.catalogue import DeviceCatalogue

    with connect(dsn, autocommit=True) as conn:
        # A fresh key each run: the old demo user goes (its audit records stay).
        conn.execute("DELETE FROM api_users WHERE name = 'demo-admin'")
        _user, key = create_user(conn, "demo-admin", "admin", [], actor="ioc demo")
    catalogue = DeviceCatalogue.of((i.id, i.models) for i in CodecRegistry.discover().infos())
    app = create_app(DatabaseSettings(database_url=dsn), catalogue=catalogue,  # type: ignore[arg-type]
                     broker=brokers.api_settings() if brokers else None)
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()

    def stop_api() -> None:
        server.should_exit = True
        thread.join(10)

    stack.callback(stop_api)
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise FatalError(f"the IOC API could not listen on 127.0.0.1:{port}")
    return (f"http://127.0.0.1:{port}/docs\n           curl -H 'Authorization: Bearer {key.key}' "
            f"http://127.0.0.1:{port}/api/v1/zones")


def _where_to_look(console: Console, dsn: str, mqtt_url: str, devices: int, scenario: str,
                   time_scale: float, api_line: str | None, brokers: DemoBrokers | None) -> None:
    def say(text: str) -> None:
        console.print(text, soft_wrap=True)  # commands stay on one line, so they can be copied

    console.rule("IOC platform demo is running")
    console.print(f"simulating {devices} Da Nang sensors, scenario '{scenario}', {time_scale:.0f}x real time")
    say(f"[bold]database[/]  {dsn}\n           psql '{dsn}' -c 'SELECT * FROM uplinks LIMIT 5'")
    if brokers is None:
        host_port = mqtt_url.split("://", 1)[1].rsplit("@", 1)[-1]
        host, _, port = host_port.partition(":")
        say(f"[bold]broker[/]    {MqttUrl.parse(mqtt_url)}\n           mosquitto_sub -h {host} "
                      f"-p {port or 1883} -t 'application/#' -v")
    else:
        ingest = brokers.passwords["ioc-ingest"]
        username, password = brokers.developer
        say(f"[bold]internal broker[/] 127.0.0.1:{brokers.internal_port}  ChirpStack's events, for "
                      "the ingest only (no developer account exists here)\n"
                      f"           mosquitto_sub -p {brokers.internal_port} -u ioc-ingest -P {ingest} "
                      "-t 'application/#' -v")
        say(f"[bold]public broker[/]   127.0.0.1:{brokers.public_port}  the open feed for developers "
                      "(read-only; credentials from POST /api/v1/mqtt/credentials)\n"
                      f"           mosquitto_sub -p {brokers.public_port} -u {username} -P {password} "
                      "-t 'ioc/v1/#' -v")
        say(f"           broker files in {brokers.directory} (what `ioc broker config` writes)")
    say(f"[bold]ingest[/]    IOC_DATABASE_URL='{dsn}' ioc deadletters list")
    say(f"[bold]grafana[/]   IOC_DATABASE_URL='{dsn}' ioc dashboards check   (every board's SQL)\n"
                  f"           IOC_DATABASE_URL='{dsn}' IOC_GRAFANA_URL=... IOC_GRAFANA_TOKEN=... "
                  "ioc dashboards push")
    if api_line:
        say(f"[bold]API[/]       {api_line}")
    console.print("Ctrl-C stops everything.")
    console.rule()
