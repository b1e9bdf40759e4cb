"""Ingest benchmark: sustained uplinks/s through one worker, and publish-to-commit latency at fixed rates.

Everything runs on this machine, as in the issue's targets: a Mosquitto broker and a PostgreSQL server
(durable settings: fsync and synchronous_commit on) started as local processes, publishers in their own
processes, and one ingest worker (the same code `ioc ingest` runs) in this process.

    python bench/ingest_bench.py                      # defaults: 150k backlog, rates 1000/2500/5000 for 20 s
    python bench/ingest_bench.py --backlog 50000 --rates 5000 --seconds 10
    python bench/ingest_bench.py --feed               # the same with the open feed on (registered devices)
    python bench/ingest_bench.py --feed-cost          # the open feed's cost at a fixed 1,000 uplinks/s

Sustained throughput: the worker's session is created, the backlog is published while the worker is away,
then the worker starts and drains it; rate = messages / (last commit - first delivery).
Latency: publishers stamp each event's `time` with the wall clock when they publish it; the worker records
commit time minus event time for every uplink, so broker queueing counts too.
Feed cost: the devices are registered (every tenth private), then runs of the same length at a fixed rate
alternate between a worker without and with the open feed; the worker's CPU seconds (this process) per 1,000
uplinks are compared. Afterwards a fresh subscriber to ioc/v1/# counts the retained readings, which must be one
per public device that reported.

One script of ~470 lines so it runs alone from a checkout: the broker, the database, the publishers and the
worker are wired in one place, read top to bottom.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import psycopg
from chirpstack_api import common, gw, integration
from machine_info import host_line  # bench/ is the script's folder, first on sys.path
from paho.mqtt.enums import CallbackAPIVersion

from gateways.chirpstack import render_json
from gateways.local_mosquitto import LocalMosquitto
from gateways.local_postgres import LocalPostgres
from gateways.migrations import migrate
from gateways.mqtt import MqttBroadcaster, MqttConsumer, MqttPublisher
from ingest.codecs.library import CodecLibrary
from ingest.feed import FeedConfig, OpenFeed
from ingest.processor import BatchProcessor
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ingest.worker import IngestWorker, WorkerConfig
from ioc_core.settings import MqttUrl
from ioc_core.zones import city_bounds, load_default_zones, zone_at

PLACEHOLDER_TIME = b"2000-01-01T00:00:00.000000+00:00"
APP = "d6a5c9bf-fafa-5f36-be70-b5a2c751bb98"


def machine() -> str:
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[:1]
    return f"{host_line()} | {' '.join(mosq)}"


def cpu_seconds(pg: LocalPostgres | None = None, broker: LocalMosquitto | None = None) -> dict[str, float]:
    """CPU time so far of this process, the PostgreSQL processes and Mosquitto, from /proc.

    With ``pg`` and ``broker`` only their processes count (the machine may run other servers too).
    """
    tick = os.sysconf("SC_CLK_TCK")
    out = {"worker": 0.0, "postgres": 0.0, "mosquitto": 0.0}
    postmaster = None
    if pg is not None:
        try:
            postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            postmaster = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes() if comm == "mosquitto" and broker is not None else b""
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        used = (int(fields[11]) + int(fields[12])) / tick
        if pid == os.getpid():
            out["worker"] += used
        elif comm.startswith("postgres") and (postmaster is None or postmaster in (pid, ppid)):
            out["postgres"] += used
        elif comm == "mosquitto" and (broker is None or str(broker.work_dir).encode() in cmdline):
            out["mosquitto"] += used
    return out


def make_events(count: int, devices: int, first_fcnt: int = 0) -> list[tuple[str, bytes]]:
    """ChirpStack v4 JSON uplinks (~800 bytes, one gateway, Cayenne LPP: temperature, humidity, battery)."""
    out = []
    for i in range(count):
        d = i % devices
        eui = f"70b3d5e75e{d:06x}"
        temp = 200 + (i * 7) % 150
        payload = (bytes.fromhex("0167") + temp.to_bytes(2, "big") + bytes.fromhex("0268")
                   + bytes([90 + i % 60]) + bytes.fromhex("0302") + (330 - (i % 30)).to_bytes(2, "big"))
        event = integration.UplinkEvent(
            deduplication_id=str(uuid.uuid4()),
            device_info=integration.DeviceInfo(
                tenant_id="362aaaa3-66e7-5963-869a-8497869f63c9", tenant_name="Da Nang IOC",
                application_id=APP, application_name="dn-environment",
                device_profile_id="c64b0a88-294c-58d3-b1a1-7c85476c22f9",
                device_profile_name="TH-2 temperature/humidity AS923-2",
                device_name=f"th-{d:05d}", dev_eui=eui, tags={"codec": "cayenne-lpp", "kind": "temp_humidity"},
            ),
            dev_addr=f"01{d:06x}", adr=True, dr=3, f_cnt=first_fcnt + i // devices, f_port=2, data=payload,
            rx_info=[gw.UplinkRxInfo(gateway_id="70b3d5e75e00a001", uplink_id=1000 + i, rssi=-95 - i % 20,
                                     snr=4.5 - (i % 9), channel=2, context=b"\x01\x02\x03\x04",
                                     location=common.Location(latitude=16.0544, longitude=108.2022, altitude=8.0),
                                     crc_status=gw.CRCStatus.CRC_OK)],
            tx_info=gw.UplinkTxInfo(frequency=923200000, modulation=gw.Modulation(
                lora=gw.LoraModulationInfo(bandwidth=125000, spreading_factor=9, code_rate=gw.CodeRate.CR_4_5))),
            region_config_id="as923_2",
        )
        event.time.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
        wire = render_json(event).replace(b'"2000-01-01T00:00:00+00:00"', b'"' + PLACEHOLDER_TIME + b'"')
        out.append((f"application/{APP}/device/{eui}/event/up", wire))
    return out


def _publisher(url: str, events: list[tuple[str, bytes]], rate: float | None, stamp: bool) -> None:
    # MQTT 3.1.1 for the load generators: paho parses MQTT 5 properties on every PUBACK, which would make
    # the publishers, not the worker, the limit on this two-core machine.
    with MqttPublisher(MqttUrl.parse(url), client_id=f"bench-pub-{os.getpid()}", max_inflight=2000,
                       mqtt5=False) as pub:
        started = time.monotonic()
        for i, (topic, payload) in enumerate(events):
            if rate:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0.002:
                    time.sleep(ahead)
            if stamp:
                now = datetime.now(UTC).isoformat(timespec="microseconds").encode()
                payload = payload.replace(PLACEHOLDER_TIME, now, 1)
            pub.publish(topic, payload)


def publish(url: str, events: list[tuple[str, bytes]], *, processes: int, rate: float | None,
            stamp: bool) -> float:
    ctx = mp.get_context("spawn")
    share = [events[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_publisher, args=(url, part, rate / processes if rate else None, stamp))
             for part in share]
    started = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"publisher exited with {p.exitcode}")
    return time.monotonic() - started


def publish_with_mosquitto_pub(url: str, events: list[tuple[str, bytes]], rate: float) -> float:
    """Paced publishing through `mosquitto_pub -l` (C, QoS 1), one process per device topic.

    A Python paho publisher costs more CPU per message than the ingest worker does, so on two cores the
    load generator, not the worker, would set the limit. Each event is one line (compact JSON).
    """
    host_port = url.split("://", 1)[1]
    host, _, port = host_port.partition(":")
    topics = sorted({topic for topic, _ in events})
    procs = {
        topic: subprocess.Popen(["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-l", "-t", topic,
                                 "-i", f"bench-{n}"], stdin=subprocess.PIPE)
        for n, topic in enumerate(topics)
    }
    started = time.monotonic()
    for i, (topic, payload) in enumerate(events):
        ahead = i / rate - (time.monotonic() - started)
        if ahead > 0.002:
            time.sleep(ahead)
        now = datetime.now(UTC).isoformat(timespec="microseconds").encode()
        stdin = procs[topic].stdin
        assert stdin is not None
        stdin.write(payload.replace(PLACEHOLDER_TIME, now, 1) + b"\n")
        stdin.flush()
    took = time.monotonic() - started
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
    for proc in procs.values():
        proc.wait(60)
    return took


def register_fleet(url: str, devices: int, private_every: int) -> tuple[int, int]:
    """Register the bench's devices (as make_events names them) in the districts; every n-th one private."""
    zones = load_default_zones()
    min_lon, min_lat, max_lon, max_lat = city_bounds(zones)
    rng = np.random.default_rng(7)
    records = []
    for d in range(devices):
        while True:
            lon, lat = float(rng.uniform(min_lon, max_lon)), float(rng.uniform(min_lat, max_lat))
            if zone_at(zones, lon, lat) is not None:
                break
        records.append(DeviceRecord(dev_eui=f"70b3d5e75e{d:06x}", name=f"th-{d:05d}", kind="temperature_humidity",
                                    model="th-2", codec_id="cayenne-lpp", latitude=lat, longitude=lon))
    with psycopg.connect(url) as conn:
        seed_zones(conn, zones)
        register_devices(conn, records)
        private = [r.dev_eui for i, r in enumerate(records) if private_every and i % private_every == 0]
        conn.execute("UPDATE devices SET public = false WHERE dev_eui = ANY(%s)", (private,))
    return devices - len(private), len(private)


def make_feed(db_url: str, broker_url: str, qos: int, status_interval_s: float) -> OpenFeed:
    broadcaster = MqttBroadcaster(MqttUrl.parse(broker_url), client_id="bench-worker-feed")
    return OpenFeed(db_url, broadcaster, FeedConfig(qos=qos, status_interval_s=status_interval_s))


def retained_under(broker_url: str, topic_filter: str, quiet_s: float = 2.0) -> list[str]:
    """Topics with a retained message, as a new subscriber sees them."""
    topics: list[str] = []
    last = [time.monotonic()]
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-count-{os.getpid()}")

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        if msg.retain and msg.payload:
            topics.append(msg.topic)
        last[0] = time.monotonic()

    client.on_message = on_message
    client.on_subscribe = lambda *_: ready.set()
    client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=0)
    url = MqttUrl.parse(broker_url)
    client.connect(url.host, url.port)
    client.loop_start()
    ready.wait(10)
    last[0] = time.monotonic()
    while time.monotonic() - last[0] < quiet_s:
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    return topics


def thread_cpu(native_ids: list[int]) -> float:
    """CPU seconds so far of some threads of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for tid in native_ids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def feed_threads(feed: OpenFeed) -> list[int]:
    """Native ids of the feed's threads: its publisher, its status task and its MQTT client's network loop."""
    threads = [feed._thread, feed._status_thread, getattr(feed._broadcaster._client, "_thread", None)]
    return [t.native_id for t in threads if t is not None and t.native_id is not None]


def feed_cost(args: argparse.Namespace, pg: LocalPostgres, broker: LocalMosquitto, config: WorkerConfig) -> None:
    """Worker CPU per 1,000 uplinks at a fixed rate, feed off vs on, in alternating runs of the same length."""
    public, private = register_fleet(pg.url, args.devices, args.private_every)
    print(f"registered {args.devices} devices in the districts: {public} public, {private} private")
    url = MqttUrl.parse(broker.url)
    rate, warmup, seconds = args.feed_rate, args.feed_warmup, args.feed_seconds
    per_run = int(rate * (warmup + seconds))
    results: dict[str, list[tuple[float, float, dict[str, float]]]] = {"off": [], "on": []}
    own: list[float] = []
    fcnt = 0
    for run in range(args.feed_rounds):
        # off/on, then on/off: a slow drift of the machine or the growing tables cancels out over two rounds.
        for mode in ("off", "on") if run % 2 == 0 else ("on", "off"):
            feed = make_feed(pg.url, broker.url, args.feed_qos, args.feed_status_interval) if mode == "on" else None
            worker = IngestWorker(config, url, BatchProcessor(pg.url, CodecLibrary.discover()), feed)
            stop = threading.Event()
            runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
            runner.start()
            if not worker.wait_ready(30):
                raise SystemExit("the worker did not subscribe")
            events = make_events(per_run, args.devices, first_fcnt=fcnt)
            fcnt += per_run // args.devices + 1
            ctx = mp.get_context("spawn")
            publisher = ctx.Process(target=_publisher, args=(broker.url, events, rate, True))
            publisher.start()
            del events
            time.sleep(warmup)
            tids = feed_threads(feed) if feed is not None else []
            received0, cpu0, others0 = worker.stats.totals.received, time.process_time(), cpu_seconds(pg, broker)
            feed0 = thread_cpu(tids)
            time.sleep(seconds)
            received1, cpu1, others1 = worker.stats.totals.received, time.process_time(), cpu_seconds(pg, broker)
            feed1 = thread_cpu(tids)
            publisher.join()
            deadline = time.monotonic() + 60
            while worker.stats.totals.received < per_run and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            runner.join(60)
            uplinks = received1 - received0
            per_1000 = (cpu1 - cpu0) / uplinks * 1000
            others = {k: (others1[k] - others0[k]) / uplinks * 1000 for k in ("postgres", "mosquitto")}
            results[mode].append((per_1000, uplinks / seconds, others))
            extra = ""
            if feed is not None:
                own.append((feed1 - feed0) / uplinks * 1000)
                extra = (f"; the feed's own threads {own[-1]:.4f}; published {feed.published}, dropped {feed.dropped}, "
                         f"refused {feed.refused}, skipped {feed.skipped} (private)")
            print(f"run {run + 1} feed {mode:>3}: {uplinks} uplinks in {seconds:.0f} s ({uplinks / seconds:,.0f}/s), "
                  f"worker {per_1000:.4f} CPU s per 1,000 uplinks (postgres {others['postgres']:.4f}, "
                  f"mosquitto {others['mosquitto']:.4f}){extra}")
    off = float(np.mean([r[0] for r in results["off"]]))
    on = float(np.mean([r[0] for r in results["on"]]))
    mine = float(np.mean(own))
    print(f"\nFEED COST at {rate:,.0f} uplinks/s (QoS {args.feed_qos}, status every {args.feed_status_interval:.0f} s, "
          f"{args.feed_rounds} x {seconds:.0f} s each way): worker {off:.4f} -> {on:.4f} CPU s per 1,000 uplinks "
          f"= {(on / off - 1) * 100:+.1f} % (runs off: {', '.join(f'{r[0]:.4f}' for r in results['off'])}; "
          f"on: {', '.join(f'{r[0]:.4f}' for r in results['on'])})")
    print(f"  the feed's own threads: {mine:.4f} CPU s per 1,000 uplinks = {mine / off * 100:.1f} % of the worker "
          "without the feed")
    for part in ("postgres", "mosquitto"):
        a = float(np.mean([r[2][part] for r in results["off"]]))
        b = float(np.mean([r[2][part] for r in results["on"]]))
        print(f"  {part}: {a:.4f} -> {b:.4f} CPU s per 1,000 uplinks")
    retained = retained_under(broker.url, "ioc/v1/#")
    readings = [t for t in retained if "/temperature_humidity/" in t]
    with psycopg.connect(pg.url) as conn:
        row = conn.execute("""SELECT count(*) FROM devices d WHERE d.public AND d.status = 'registered'
                              AND EXISTS (SELECT 1 FROM uplinks u WHERE u.device_id = d.id)""").fetchone()
    with_data = int(row[0]) if row else 0
    private_seen = [t for t in retained if any(f"70b3d5e75e{d:06x}" in t for d in range(0, args.devices,
                                                                                         args.private_every or 1))]
    print(f"RETAINED on ioc/v1/# for a new subscriber: {len(readings)} readings (public devices with data: "
          f"{with_data}), {sum('/_status/' in t for t in retained)} status, "
          f"{sum(t.endswith('/_summary') for t in retained)} zone summaries; topics of private devices: "
          f"{len(private_seen) if args.private_every else 0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=150_000, help="messages for the sustained run")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rates", type=str, default="1000,2500,5000", help="fixed rates for latency")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each latency run")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-age-ms", type=int, default=200)
    parser.add_argument("--feed", action="store_true", help="register the devices and run the worker with the feed")
    parser.add_argument("--feed-cost", action="store_true", help="only measure the feed's cost at a fixed rate")
    parser.add_argument("--feed-rate", type=float, default=1000.0)
    parser.add_argument("--feed-seconds", type=float, default=60.0, help="measured part of each run")
    parser.add_argument("--feed-warmup", type=float, default=5.0, help="unmeasured start of each run")
    parser.add_argument("--feed-rounds", type=int, default=4, help="off/on pairs (alternating order)")
    parser.add_argument("--feed-qos", type=int, choices=(0, 1), default=0)
    parser.add_argument("--feed-status-interval", type=float, default=30.0)
    parser.add_argument("--private-every", type=int, default=10, help="every n-th device is private (0: none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rates = [float(r) for r in args.rates.split(",") if r]

    print(f"machine: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="ioc-bench-"))
    pg = LocalPostgres(root / "pg", durable=True)
    broker = LocalMosquitto(root / "mqtt", max_queued=10_000_000)
    pg.start()
    broker.start()
    try:
        with psycopg.connect(pg.url) as conn:
            migrate(conn)
            version = conn.execute("SHOW server_version").fetchone()
        print(f"postgresql {version[0] if version else '?'} (durable: fsync on, synchronous_commit on)")
        config = WorkerConfig(name="bench", client_id="bench-worker", topic_filter="application/+/device/+/event/+",
                              share_group="ioc-ingest", batch_size=args.batch_size,
                              batch_age_s=args.batch_age_ms / 1000, receive_maximum=20_000,
                              session_expiry_s=3600, stats_interval_s=5.0)
        url = MqttUrl.parse(broker.url)
        if args.feed_cost:
            print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
            feed_cost(args, pg, broker, config)
            print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
            return
        if args.feed:
            public, private = register_fleet(pg.url, args.devices, args.private_every)
            print(f"open feed on: {public} public and {private} private registered devices")

        # The session exists before the backlog is published, as it would for a worker that went away.
        probe = MqttConsumer(url, client_id=config.client_id, topic_filter=config.topic_filter,
                             share_group=config.share_group, on_message=lambda m: None)
        probe.start()
        probe.stop()

        t0 = time.monotonic()
        events = make_events(args.backlog, args.devices)
        size = np.mean([len(p) for _, p in events])
        print(f"generated {len(events)} events, mean {size:.0f} bytes, in {time.monotonic() - t0:.1f} s")
        # Stamped with the publish time: a backlog is minutes old, and the ingest does not trust an event time
        # that is years off (the placeholder is from 2000), which would send every row down the untrusted path.
        took = publish(broker.url, events, processes=2, rate=None, stamp=True)
        print(f"backlog published in {took:.1f} s ({len(events) / took:.0f} msg/s, 2 publisher processes)")

        feed = make_feed(pg.url, broker.url, args.feed_qos, args.feed_status_interval) if args.feed else None
        worker = IngestWorker(config, url, BatchProcessor(pg.url, CodecLibrary.discover()), feed)
        stop = threading.Event()
        runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        runner.start()
        while worker._consumer.delivered == 0:
            time.sleep(0.001)
        first = time.monotonic()
        cpu_before = cpu_seconds(pg, broker)
        while worker.stats.totals.received < len(events):
            time.sleep(0.01)
        drained = time.monotonic() - first
        cpu_after = cpu_seconds(pg, broker)
        cpu = {k: (cpu_after[k] - cpu_before[k]) / drained * 100 for k in cpu_after}
        totals = worker.stats.totals
        print(f"\nSUSTAINED: {len(events)} uplinks drained in {drained:.2f} s = {len(events) / drained:,.0f} uplinks/s "
              f"({totals.measurements} measurements, {totals.batches} batches, "
              f"avg batch {totals.batch_messages / max(totals.batches, 1):.0f} msgs "
              f"/ {totals.batch_seconds * 1000 / max(totals.batches, 1):.0f} ms)")
        print("CPU while draining (100% = one core): " + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items()))

        results = []
        for rate in rates:
            n = int(rate * args.seconds)
            use_c = shutil.which("mosquitto_pub") is not None
            # Few devices when mosquitto_pub publishes: it takes one topic per process.
            live = make_events(n, 40 if use_c else args.devices, first_fcnt=10_000 + int(rate))
            worker.stats.lag_history = []
            before = worker.stats.totals.received
            if use_c:
                took = publish_with_mosquitto_pub(broker.url, live, rate)
            else:
                # One paho publisher manages about 2,000-3,000 QoS 1 messages per second here.
                took = publish(broker.url, live, processes=max(1, math.ceil(rate / 2000)), rate=rate, stamp=True)
            deadline = time.monotonic() + 60
            while worker.stats.totals.received - before < n and time.monotonic() < deadline:
                time.sleep(0.05)
            lags = np.concatenate(worker.stats.lag_history) * 1000 if worker.stats.lag_history else np.array([])
            got = worker.stats.totals.received - before
            p50, p99, pmax = np.percentile(lags, [50, 99, 100]) if len(lags) else (float("nan"),) * 3
            results.append((rate, n / took, got, p50, p99, pmax))
            generator = "mosquitto_pub, 40 devices" if use_c else "paho publishers"
            print(f"LATENCY at {rate:,.0f}/s ({generator}): published {n} at {n / took:,.0f}/s, committed {got}; "
                  f"publish-to-commit p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {pmax:.0f} ms")
        stop.set()
        runner.join(60)
        with psycopg.connect(pg.url) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT deduplication_id) FROM uplinks").fetchone()
        expected = len(events) + sum(int(r * args.seconds) for r in rates)
        print(f"\nstored uplinks: {row[0] if row else 0} (distinct {row[1] if row else 0}, expected {expected})")
        if feed is not None:
            print(f"open feed: {feed.published} readings published, {feed.dropped} dropped (queue full), "
                  f"{feed.refused} refused (broker), {feed.skipped} of private devices skipped")
        print("\nsummary")
        print(f"  sustained, one worker, JSON ~{size:.0f} B events: {len(events) / drained:,.0f} uplinks/s")
        for rate, achieved, got, p50, p99, pmax in results:
            print(f"  {rate:>6,.0f}/s (achieved {achieved:,.0f}/s): p50 {p50:.0f} ms  p99 {p99:.0f} ms  "
                  f"max {pmax:.0f} ms  ({got} committed)")
    finally:
        broker.stop()
        pg.stop("immediate")


if __name__ == "__main__":
    main()
