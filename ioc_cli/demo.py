"""``ioc demo``: the whole platform on one machine, with the Da Nang fleet simulated into it in real time."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from device_simulators.fleet import Device, Fleet, build_fleet
from device_simulators.scenarios import get_scenario
from gateways.database import Connection, connect
from gateways.local_postgres import LocalPostgres, free_port, timescaledb_installed
from gateways.migrations import TimescaleChoice, fingerprint, migrate
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_cli.demo_brokers import DemoBrokers, start_demo_brokers
from ioc_cli.demo_hazards import (
    HOME_DISTRICT,
    FloodStation,
    import_demo_wards,
    load_demo_wards,
    pick_flood_stations,
    run_hazard_evaluator,
    set_flood_levels,
    stage_levels_for,
)
from ioc_cli.demo_operations import (
    CITY_USER,
    DISTRICT_USER,
    ESCALATE_AFTER_S,
    RECEIVED,
    TECHNICIAN_USER,
    Receivers,
    WarningAutopilot,
    choose_operator_channels,
    create_operators,
    forget_gone_stand_ins,
    run_dispatcher,
    set_public_routes,
    shorten_escalation,
    start_receivers,
    write_private,
)
from ioc_cli.demo_screen import (
    Banner,
    OperationsBanner,
    show_backfill,
    show_banner,
    show_districts,
    show_hazards,
    show_operations,
)
from ioc_cli.demo_timeline import (
    DANGER_AFTER_S,
    FIRST_ALERT_AFTER_S,
    SimulatorRun,
    plan_backfill,
    stream_options,
)
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

__all__ = ["device_record", "register"]

log = logging.getLogger("ioc.demo")

# What the demo keeps in its folder; --fresh removes exactly these.
_POSTGRES, _MARKER, _KEY_FILE, _LOG_FILE = "postgres", "schema.sha256", "api-key", "demo.log"
_OWNED = (_POSTGRES, _MARKER, _KEY_FILE, _LOG_FILE, "brokers", "mosquitto-internal", "mosquitto-public", RECEIVED,
          f"{_KEY_FILE}-{DISTRICT_USER}", f"{_KEY_FILE}-{CITY_USER}", f"{_KEY_FILE}-{TECHNICIAN_USER}")


def _demo_dir() -> Path:
    # /var/tmp survives reboots and every user can reach it, which the postgres server user needs.
    return Path(os.environ.get("IOC_DEMO_DIR", f"/var/tmp/ioc-demo-{os.getuid()}"))


def _launcher() -> str:
    """``ioc`` as the user can type it: run.sh sets IOC_RUN_SH to its own path as it was invoked."""
    run_sh = os.environ.get("IOC_RUN_SH")
    return f"{run_sh} ioc" if run_sh else "ioc"


def _log_to_file(folder: Path) -> Path:
    """The terminal shows warnings only (the banner and the table stay in view); everything goes to a file."""
    setup_logging("INFO")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    path = folder / _LOG_FILE
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger().addHandler(to_file)
    return path


def device_record(d: Device) -> DeviceRecord:
    """What registering a simulated device tells the registry (the demo's fleet, tests that need a city)."""
    return DeviceRecord(dev_eui=d.dev_eui, name=d.name, kind=d.kind, model=d.model_id, codec_id=d.codec_id,
                        latitude=d.lat, longitude=d.lon, application_id=d.application_id,
                        device_profile_id=d.device_profile_id, tags=dict(d.tags))


def _register_fleet(conn: Connection, fleet: Fleet, unregistered_every: int) -> tuple[int, int]:
    """Register the fleet, leaving every n-th device for the ingest to enrol, with the stations' own levels.
    The demo's wards come first, so the devices in them get their ward (and a reused database's are re-zoned)."""
    seed_zones(conn, load_default_zones())
    import_demo_wards(conn)
    records = []
    left_out = 0
    for i, d in enumerate(fleet.devices):
        if unregistered_every and i % unregistered_every == unregistered_every - 1:
            left_out += 1
            continue
        records.append(device_record(d))
    registered = register_devices(conn, records)
    # Each water level station has its own warning levels on its gauge's scale (device_simulators.sites), and
    # a watch level (BĐ1) as far below alert as danger is above it; this also undoes a previous run's demo
    # levels (ioc_cli.demo_hazards) on a station the flood does not show this time.
    by_eui = fleet.by_eui()
    with conn.transaction():
        for r in records:
            params = by_eui[r.dev_eui].params if r.kind == "water_level" else None
            if params:
                watch = round(2 * params["alarm"] - params["danger"], 3)
                conn.execute(
                    """INSERT INTO alert_thresholds (metric, device_id, watch_above, alert_above, danger_above)
                       SELECT 'water_level', id, %s, %s, %s FROM devices WHERE dev_eui = %s
                       ON CONFLICT (metric, kind, device_id) DO UPDATE SET watch_above = EXCLUDED.watch_above,
                           alert_above = EXCLUDED.alert_above, danger_above = EXCLUDED.danger_above""",
                    (watch, params["alarm"], params["danger"], r.dev_eui),
                )
    return registered, left_out


def _flood_stations(conn: Connection, fleet: Fleet, seed: int, scenario: str, storm_start: datetime | None,
                    live: datetime, alert_after_s: float, danger_after_s: float) -> list[FloodStation]:
    """The river stations whose wards the flood takes through watch, alert and danger on time, their own levels
    stored; none without a storm."""
    if storm_start is None:
        return []
    registered = {r[0] for r in conn.execute("SELECT dev_eui FROM devices WHERE status = 'registered'")}
    levels_of = stage_levels_for(get_scenario(scenario), seed, storm_start.timestamp(), live.timestamp(),
                                 alert_after_s=alert_after_s, danger_after_s=danger_after_s)
    stations = pick_flood_stations(fleet, registered, load_demo_wards(), levels_of)
    set_flood_levels(conn, stations)
    for s in stations:
        log.info("flood station %s in %s (%s): watch %.3f, alert %.3f, danger %.3f m", s.site, s.ward_name,
                 s.district, s.levels.watch, s.levels.alert, s.levels.danger)
    return stations


def _wanted_mode(choice: TimescaleChoice) -> tuple[str, str]:
    """The storage mode of the embedded database, and why."""
    if choice == "off":
        return "postgresql", "IOC_TIMESCALEDB=off"
    if timescaledb_installed():
        return "timescaledb", f"IOC_TIMESCALEDB={choice}, installed"
    if choice == "on":
        raise FatalError("IOC_TIMESCALEDB=on, but TimescaleDB is not installed for this PostgreSQL "
                         "(pg_config --pkglibdir has no timescaledb.so); install it or use IOC_TIMESCALEDB=auto")
    return "postgresql", "IOC_TIMESCALEDB=auto, TimescaleDB not installed"


def _forget_stale_database(console: Console, work: Path, mode: str) -> None:
    """The embedded database is disposable: made by other migrations or in another mode, it starts afresh."""
    marker = work / _MARKER
    current = f"{fingerprint()} {mode}"
    stored = marker.read_text().strip() if marker.exists() else ""
    if stored != current and (work / _POSTGRES).exists():
        if " " not in stored:
            why = "an older demo made this database"
        elif stored.split(" ")[0] != fingerprint():
            why = "the schema changed since the last demo"
        else:
            why = f"the storage mode is now {mode}"
        console.print(f"{why}: starting with a fresh database")
        shutil.rmtree(work / _POSTGRES)
    marker.write_text(current + "\n")


def _write_key(folder: Path, key: str) -> Path:
    return write_private(folder / _KEY_FILE, key)


def register(app: typer.Typer) -> None:
    # The API it serves reads ApiSettings, BrokerSettings (with a configured broker) and OpenDataSettings.
    # IOC_RUN_SH is set by run.sh, so the commands the banner prints start with ./run.sh.
    @app.command("demo", epilog=environment(DatabaseSettings, MqttSettings, IngestSettings, FeedSettings, ApiSettings,
                                            BrokerSettings, OpenDataSettings,
                                            also=("IOC_DEMO_DIR", "IOC_TIMESCALEDB", "IOC_RUN_SH")))
    def demo_cmd(
        devices: Annotated[int, typer.Option("--devices", "-n", min=1, help="Simulated sensors.")] = 300,
        scenario: Annotated[str, typer.Option(help="normal, flood or faults.")] = "flood",
        backfill_hours: Annotated[
            float, typer.Option(min=0.0, max=24.0 * 31, help="Hours of the past to simulate first, as fast as "
                                                             "it goes; then real time.")
        ] = 48.0,
        fresh: Annotated[bool, typer.Option(help="Start from an empty demo folder instead of reusing the "
                                                 "previous run's database.")] = False,
        timescaledb: Annotated[
            str, typer.Option(envvar="IOC_TIMESCALEDB", help="auto: TimescaleDB when installed; on: require it; "
                                                             "off: plain PostgreSQL.")
        ] = "auto",
        encoding: Annotated[str, typer.Option(help="json, protobuf or mixed, like ChirpStack's json flag.")]
        = "mixed",
        duration: Annotated[
            float | None, typer.Option(min=1.0, help="Stop after this many seconds of real time, counted after "
                                                     "the backfill (default: until Ctrl-C).")
        ] = None,
        summary_every: Annotated[float, typer.Option(min=1.0, help="Seconds between district tables.")] = 60.0,
        seed: Annotated[int, typer.Option(help="Seed of the fleet and its messages.")] = 1,
        api: Annotated[bool, typer.Option(help="Also serve the IOC API, with a demo admin key.")] = True,
        api_port: Annotated[int, typer.Option(min=0, max=65_535, help="API port; 0 picks a free one.")] = 0,
        flood_alert_after: Annotated[
            float, typer.Option(min=10.0, max=3600.0, help="Flood: seconds of real time until the first river "
                                                           "station and the demo's flood wards reach alert.")
        ] = FIRST_ALERT_AFTER_S,
        flood_danger_after: Annotated[
            float, typer.Option(min=20.0, max=7200.0, help="Flood: seconds of real time until the demo's flood "
                                                           "wards reach danger (later where a river rises slowly).")
        ] = DANGER_AFTER_S,
        escalate_after: Annotated[
            float, typer.Option(min=10.0, max=86_400.0, help="Seconds an incident may stay unacknowledged before "
                                                             "it escalates to the city IOC: the demo sets every "
                                                             "severity's timer to this (production: critical 300, "
                                                             "major 900).")
        ] = ESCALATE_AFTER_S,
    ) -> None:
        """Run the platform end to end on this machine: database, brokers, simulated Da Nang fleet, ingest, API.

        With nothing configured it starts an embedded PostgreSQL (with TimescaleDB when installed, see
        IOC_TIMESCALEDB) and both Mosquitto brokers, as `ioc broker config` writes them, in IOC_DEMO_DIR (default
        /var/tmp/ioc-demo-<uid>); with IOC_DATABASE_URL / IOC_MQTT_URL set it uses those. A second run reuses
        the folder (devices, users and readings); --fresh starts from an empty one.

        The fleet is registered (every 20th device is left for the ingest to enrol as unregistered), the past
        --backfill-hours are simulated as fast as the ingest takes them, then the fleet reports in real time at
        its own intervals: no reading is ever dated in the future. The flood scenario's storm is placed so the
        first river station passes its alert level about two minutes into real time (--flood-alert-after).

        The demo imports approximate wards of Hải Châu, Cẩm Lệ and Hòa Vang, and sets the own levels of a river
        station in a ward of Hải Châu and of one in another district's ward so that, in the flood, both wards go
        watch, alert (--flood-alert-after) and danger (about --flood-danger-after) in real time; the platform's
        hazard status evaluator runs every few seconds, opening incidents and escalating unacknowledged ones
        (every timer set to --escalate-after). The IOC API is served on loopback with a new admin key (written
        to api-key in the demo folder), and two operators (demo-district on Hải Châu, demo-city) with keys next
        to it: once Hải Châu's flood is in danger, the first drafts a CAP warning from its incident and the
        second approves it, through the API. The dispatcher delivers it to local stand-ins (webhook, Zalo ZNS,
        SMS, and e-mail when aiosmtpd is installed) that write what they receive to received/ in the demo
        folder, and publishes it retained on the public broker. Ctrl-C stops everything within seconds.
        """
        if scenario not in ("normal", "flood", "faults"):
            raise typer.BadParameter("must be normal, flood or faults", param_hint="--scenario")
        if encoding not in ("json", "protobuf", "mixed"):
            raise typer.BadParameter("must be json, protobuf or mixed", param_hint="--encoding")
        if timescaledb not in ("auto", "on", "off"):
            raise typer.BadParameter("must be auto, on or off", param_hint="--timescaledb / IOC_TIMESCALEDB")
        if flood_danger_after <= flood_alert_after:
            raise typer.BadParameter("must come after --flood-alert-after", param_hint="--flood-danger-after")
        choice: TimescaleChoice = timescaledb  # type: ignore[assignment]
        work = _demo_dir()
        if fresh:
            for name in _OWNED:
                target = work / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        work.mkdir(parents=True, exist_ok=True)
        log_file = _log_to_file(work)
        console = Console()
        stop = threading.Event()
        stop_on_signals(stop)
        with ExitStack() as stack:
            reused: bool | None = None
            if "IOC_DATABASE_URL" in os.environ:
                dsn = load(DatabaseSettings).dsn
                reason = f"IOC_TIMESCALEDB={choice}, the configured database"
            else:
                wanted, reason = _wanted_mode(choice)
                _forget_stale_database(console, work, wanted)
                reused = (work / _POSTGRES / "PG_VERSION").exists()
                console.print(f"starting an embedded PostgreSQL in {work / _POSTGRES} ...")
                pg = LocalPostgres(work / _POSTGRES, timescaledb=wanted == "timescaledb")
                pg.start()
                stack.callback(pg.stop)
                dsn = pg.url
            with connect(dsn) as conn:
                mode, _ = migrate(conn, choice)
                timers = shorten_escalation(conn, escalate_after)
                fleet = build_fleet(devices, seed=seed)
                registered, left_out = _register_fleet(conn, fleet, unregistered_every=20)
                row = conn.execute("SELECT max(time) FROM uplinks").fetchone()
                stored_until: datetime | None = row[0] if row else None
            log.info("database ready (%s); registered %d devices, left %d for the ingest to enrol; escalation "
                     "timers %s", mode, registered, left_out, timers)
            brokers: DemoBrokers | None = None
            if "IOC_MQTT_URL" in os.environ:
                mqtt, feed, chirpstack_url = load(MqttSettings), load(FeedSettings), load(MqttSettings).url
            else:
                with connect(dsn, autocommit=True) as conn:
                    brokers = start_demo_brokers(stack, conn, work)
                mqtt = MqttSettings(url=MqttUrl.parse(brokers.ingest_url))
                feed = load(FeedSettings).model_copy(update={"url": brokers.feed_url})
                chirpstack_url = MqttUrl.parse(brokers.chirpstack_url)

            ingest = load(IngestSettings).model_copy(update={"client_id": "ioc-demo-worker"})
            worker = build_worker(ingest, DatabaseSettings(url=dsn), mqtt,  # type: ignore[arg-type]
                                  feed=feed)
            worker_stop = threading.Event()
            worker_thread = threading.Thread(target=worker.run, args=(worker_stop,), name="ingest")

            def stop_worker() -> None:
                worker_stop.set()
                worker_thread.join(30)

            # Closed in reverse: the ingest drains before the API, the brokers and the database stop.
            worker_thread.start()
            stack.callback(stop_worker)
            # The worker's first subscription creates its session; publishing before it would lose messages.
            if not worker.wait_ready(60):
                raise FatalError(f"the ingest worker could not subscribe at {mqtt.url}")

            api_url, key_file, operations = None, None, None
            if api:
                api_url, key = _serve_api(stack, dsn, api_port, brokers)
                key_file = _write_key(work, key)
                operations = _start_operations(stack, console, dsn, work, api_url, feed, mqtt, brokers,
                                               escalate_after)

            backfill = plan_backfill(datetime.now(UTC), backfill_hours, stored_until)
            options = stream_options(backfill, seed=seed, scenario=scenario, encoding=encoding,  # type: ignore[arg-type]
                                     first_alert_after_s=flood_alert_after)
            with connect(dsn) as conn:
                flood = _flood_stations(conn, fleet, seed, scenario, options.storm_start, backfill.live,
                                        flood_alert_after, flood_danger_after)
            simulator = SimulatorRun(fleet, options, chirpstack_url, backfill.live, stop)
            show_banner(console, Banner(
                dsn=dsn, mode=mode, mode_reason=reason, folder=work, reused=reused, api_url=api_url,
                key_file=key_file, log_file=log_file, mqtt_url=str(mqtt.url), brokers=brokers, ioc=_launcher(),
                devices=devices, scenario=scenario, backfill=backfill, flood=tuple(flood),
                first_alert_after_s=flood_alert_after, operations=operations))
            simulator.start()

            def newest_uplink() -> float | None:
                with connect(dsn, autocommit=True) as conn:
                    found = conn.execute("SELECT extract(epoch FROM max(time))::float8 FROM uplinks").fetchone()
                return None if found is None or found[0] is None else float(found[0])

            show_backfill(console, simulator, backfill, newest_uplink, stop)
            # The evaluator starts once the backfill is stored: during it the newest readings are hours old, and
            # every device, gateway and the ingest itself would look silent, opening incidents nobody should chase.
            hazards_stop = threading.Event()
            hazards = run_hazard_evaluator(dsn, hazards_stop)

            def stop_hazards() -> None:
                hazards_stop.set()
                hazards.join(30)

            stack.callback(stop_hazards)  # before the database stops
            if not stop.is_set():
                console.print("real time from here: each sensor reports at its own interval; a district table "
                              f"every {summary_every:g} s", highlight=False)
                show_districts(console, dsn)
                show_hazards(console, dsn)
                show_operations(console, dsn, api_url)
            started = time.monotonic()
            next_summary = started + summary_every
            while not stop.is_set():
                if duration is not None and time.monotonic() - started >= duration:
                    break
                if not simulator.is_alive():
                    if simulator.error is not None:
                        log.error("the simulator stopped: %s", simulator.error)
                    break
                stop.wait(0.25)
                if time.monotonic() >= next_summary:
                    show_districts(console, dsn)
                    show_hazards(console, dsn)
                    show_operations(console, dsn, api_url)
                    next_summary += summary_every
            stop.set()
            console.print("stopping: the simulator, then the ingest drains, then the API, brokers and database ...")
            simulator.join(15)
            stop_worker()
            show_districts(console, dsn)
            show_hazards(console, dsn)
            show_operations(console, dsn, api_url)
        console.print("demo stopped cleanly")


def _start_operations(stack: ExitStack, console: Console, dsn: str, work: Path, api_url: str, feed: FeedSettings,
                      mqtt: MqttSettings, brokers: DemoBrokers | None, escalate_after_s: float) -> OperationsBanner:
    """The two operators, the stand-ins as the public warning's recipients, the dispatcher and the autopilot
    that drafts and approves the warning; each stops before what it needs (the API, the database)."""
    with connect(dsn, autocommit=True) as conn:
        district, city, technician = create_operators(conn, work, HOME_DISTRICT)
    received = work / RECEIVED
    receivers: Receivers = start_receivers(received)
    stack.callback(receivers.stop)
    with connect(dsn, autocommit=True) as conn:
        set_public_routes(conn, receivers.routes())
        gone = forget_gone_stand_ins(conn, receivers.webhook.url, datetime.now(UTC))
    if gone:
        log.info("gave up %d pending webhook messages of a previous run (its stand-in is gone)", gone)
    choose_operator_channels(api_url, district, city, receivers.webhook.url)
    notify_stop = threading.Event()
    notify = run_dispatcher(dsn, receivers.settings(), feed, mqtt, notify_stop)

    def stop_notify() -> None:
        notify_stop.set()
        notify.join(30)

    stack.callback(stop_notify)
    autopilot = WarningAutopilot(dsn, api_url, district, city,
                                 lambda text: console.print(text, highlight=False, soft_wrap=True))
    pilot_stop = threading.Event()
    pilot = autopilot.start(pilot_stop)

    def stop_pilot() -> None:
        pilot_stop.set()
        pilot.join(35)

    stack.callback(stop_pilot)
    return OperationsBanner(district_user=district.name, district_key=district.key_file, city_user=city.name,
                            city_key=city.key_file, technician_user=technician.name,
                            technician_key=technician.key_file, district=HOME_DISTRICT,
                            escalate_after_s=escalate_after_s,
                            received=received, channels=receivers.channels(), smtp_missing=receivers.smtp_missing)


def _serve_api(stack: ExitStack, dsn: str, port: int, brokers: DemoBrokers | None) -> tuple[str, str]:
    """The API in a thread on loopback, with a new key for a ``demo-admin`` user; returns its URL and the key."""
    import uvicorn  # only the demo and `ioc api` need the web stack

    from ingest.codecs.library import CodecLibrary
    from ioc_api.app import create_app
    from ioc_api.queries.users import create_user
    from ioc_core.catalogue import DeviceCatalogue

    with connect(dsn, autocommit=True) as conn:
        # A fresh key each run: the old demo user goes (its audit records stay).
        conn.execute("DELETE FROM api_users WHERE name = 'demo-admin'")
        _user, key = create_user(conn, "demo-admin", "admin", [], actor="ioc demo")
    catalogue = DeviceCatalogue.of((i.id, i.models) for i in CodecLibrary.discover().infos())
    app = create_app(DatabaseSettings(url=dsn), catalogue=catalogue,  # type: ignore[arg-type]
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
    return f"http://127.0.0.1:{port}", key.key
