"""Operations benchmark: how soon a flood reading becomes a zone status change, and what the evaluator costs the
ingest.

Everything runs on this machine, as in the issue's targets: a Mosquitto broker and a durable PostgreSQL server
(fsync and synchronous_commit on) as local processes, background publishers in a process of their own, one
ingest worker (the code `ioc ingest` runs) in this process, and the evaluator as the real service,
`ioc operations run`, in its own process, woken by the ingest's NOTIFY on ioc_readings.

    python bench/operations_bench.py                       # defaults: 1,000 uplinks/s, 50 crossings, 3 x 2 drains
    python bench/operations_bench.py --crossings 20 --backlog 20000 --pairs 1     # a quicker look
    python bench/operations_bench.py --skip-throughput     # only the latency

(a) Latency: background traffic at --rate uplinks/s from --devices devices (temperature/humidity, Cayenne LPP;
--stations of them registered as flood, rain and air stations, so a round has real work) while a river gauge
in a ward of Hải Châu alternates between a normal and an alert level --crossings times. For each crossing the
time runs from just before its uplink is published (its event `time` is that moment) to when a poll every
--poll-ms sees the ward's new row in zone_hazard_changes, so broker, batching, commit, notification, the
round and its commit all count, and the poll adds up to --poll-ms.

(b) Throughput: the same backlog (--backlog uplinks) is published while no worker runs, then one worker
drains it; rate = uplinks / (last commit - first delivery). Runs alternate between the evaluator stopped and
running (off/on, then on/off), so a drift of the machine or the growing tables cancels out.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from chirpstack_api import common, gw, integration
from ingest_bench import cpu_seconds, machine, make_events, publish, register_fleet

from device_simulators.payloads import encode_water_level
from gateways.chirpstack import render_json
from gateways.local_mosquitto import LocalMosquitto
from gateways.local_postgres import LocalPostgres
from gateways.migrations import migrate
from gateways.mqtt import MqttConsumer, MqttPublisher
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ingest.worker import IngestWorker, WorkerConfig
from ioc_core.settings import MqttUrl
from ioc_core.zones import Zone, load_default_zones

ROOT = Path(__file__).resolve().parent.parent
APP = "0b5c1a6e-5d1e-4a55-9a43-6f0a4c3d2e11"
GAUGE = "70b3d5e75ef10001"
WARD = Zone("hc-bench-ward", "Phường Bench", "ward",
            (((108.220, 16.058), (108.224, 16.058), (108.224, 16.062), (108.220, 16.062), (108.220, 16.058)),),
            parent="hai-chau")
LOW, HIGH = 0.4, 2.0  # metres: normal, and above the water_level kind's alert level (1.5 m)
STATION_KINDS = ("water_level", "rain_gauge", "air_quality")


def gauge_event(level: float, f_cnt: int) -> tuple[str, bytes]:
    """A WL100 river gauge's uplink with ``level``, its `time` the moment of the call."""
    payload = encode_water_level({"water_level": level, "distance": 6.0 - level, "battery_voltage": 3.6})
    event = integration.UplinkEvent(
        deduplication_id=str(uuid.uuid4()),
        device_info=integration.DeviceInfo(
            tenant_id="362aaaa3-66e7-5963-869a-8497869f63c9", tenant_name="Da Nang IOC", application_id=APP,
            application_name="dn-flood", device_profile_id="8f0e3c8a-6a53-5a35-b7c5-2d1f4e0d9a10",
            device_profile_name="WL100 AS923-2", device_name="wl-bench", dev_eui=GAUGE,
            tags={"codec": "ioc-water-level", "kind": "water_level"}),
        dev_addr="01f10001", adr=True, dr=3, f_cnt=f_cnt, f_port=10, data=payload,
        rx_info=[gw.UplinkRxInfo(gateway_id="70b3d5e75e00a001", uplink_id=f_cnt, rssi=-90, snr=6.0, channel=1,
                                 location=common.Location(latitude=16.06, longitude=108.222),
                                 crc_status=gw.CRCStatus.CRC_OK)],
        tx_info=gw.UplinkTxInfo(frequency=923200000, modulation=gw.Modulation(
            lora=gw.LoraModulationInfo(bandwidth=125000, spreading_factor=9, code_rate=gw.CodeRate.CR_4_5))),
        region_config_id="as923_2",
    )
    event.time.FromDatetime(datetime.now(UTC))
    return f"application/{APP}/device/{GAUGE}/event/up", render_json(event)


def _background(url: str, rate: float, seconds: float, devices: int, ready: Any, stop: Any) -> None:
    """Generate ``rate * seconds`` events first (so generating costs nothing while measured), then publish them
    at ``rate`` until ``stop`` is set."""
    events = make_events(int(rate * seconds), devices, first_fcnt=1_000_000)
    ready.set()
    with MqttPublisher(MqttUrl.parse(url), client_id=f"bench-bg-{os.getpid()}", max_inflight=2000,
                       mqtt5=False) as pub:
        started = time.monotonic()
        for i, (topic, payload) in enumerate(events):
            if i % 200 == 0 and stop.is_set():
                return
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0.002:
                time.sleep(ahead)
            now = datetime.now(UTC).isoformat(timespec="microseconds").encode()
            pub.publish(topic, payload.replace(b"2000-01-01T00:00:00.000000+00:00", now, 1))


def set_up(url: str, devices: int, stations: int) -> None:
    register_fleet(url, devices, 0)
    with psycopg.connect(url) as conn:
        seed_zones(conn, [*load_default_zones(), WARD])
        register_devices(conn, [DeviceRecord(dev_eui=GAUGE, name="wl-bench", kind="water_level", model="ioc-wl100",
                                             codec_id="ioc-water-level", latitude=16.060, longitude=108.222)])
        # Part of the fleet registered as hazard stations: each is a row the round evaluates (its readings are
        # temperatures, so it has none in the window and counts as silent, which costs the same queries).
        for n, kind in enumerate(STATION_KINDS):
            conn.execute("UPDATE devices SET kind = %s WHERE dev_eui = ANY(%s)",
                         (kind, [f"70b3d5e75e{d:06x}" for d in range(n, stations, len(STATION_KINDS))]))
        zone = conn.execute("SELECT z.code FROM devices d JOIN zones z ON z.id = d.zone_id WHERE d.dev_eui = %s",
                            (GAUGE,)).fetchone()
    if zone != (WARD.code,):
        raise SystemExit(f"the gauge landed in {zone}, not in {WARD.code}")


class Evaluator:
    """`ioc operations run` as a process of its own, as it is deployed."""

    def __init__(self, db_url: str, log_path: Path, interval_s: float, min_gap_s: float, busy_share: float) -> None:
        self._args = (db_url, log_path, interval_s, min_gap_s, busy_share)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        db_url, log_path, interval_s, min_gap_s, busy_share = self._args
        env = {**os.environ, "IOC_DATABASE_URL": db_url, "IOC_OPERATIONS_INTERVAL_S": str(interval_s),
               "IOC_OPERATIONS_MIN_GAP_S": str(min_gap_s), "IOC_OPERATIONS_BUSY_SHARE": str(busy_share),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ioc_cli", "operations", "run"], env=env,
                                         stdout=log, stderr=log, cwd=ROOT)

    def cpu_s(self) -> float:
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.returncode != 0:
            raise SystemExit(f"`ioc operations run` exited with {self.proc.returncode}; see {self._args[1]}")
        self.proc = None

    def last_counts(self) -> str:
        """What the service said it did when it stopped last (rounds, time in rounds, notifications)."""
        lines = [line for line in self._args[1].read_text().splitlines() if "stopped:" in line]
        return lines[-1].split("stopped:", 1)[1].strip() if lines else "?"


def start_worker(config: WorkerConfig, broker_url: str, db_url: str) -> tuple[IngestWorker, threading.Event,
                                                                                threading.Thread]:
    worker = IngestWorker(config, MqttUrl.parse(broker_url), BatchProcessor(db_url, CodecLibrary.discover()))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread


def latest_change(conn: psycopg.Connection[Any]) -> tuple[int, str | None]:
    row = conn.execute("SELECT id, to_status FROM zone_hazard_changes WHERE zone_code = %s AND hazard = 'flood' "
                       "ORDER BY id DESC LIMIT 1", (WARD.code,)).fetchone()
    return (0, None) if row is None else (int(row[0]), str(row[1]))


def await_status(conn: psycopg.Connection[Any], after_id: int, expected: str, poll_s: float,
                 timeout_s: float) -> float | None:
    """time.time() when the ward's newest change past ``after_id`` is to ``expected``; None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        change_id, status = latest_change(conn)
        if change_id > after_id and status == expected:
            return time.time()
        time.sleep(poll_s)
    return None


def latency(args: argparse.Namespace, pg: LocalPostgres, broker: LocalMosquitto, config: WorkerConfig,
            evaluator: Evaluator) -> None:
    ctx = mp.get_context("spawn")
    ready, stop_bg = ctx.Event(), ctx.Event()
    budget = args.crossings * (args.gap + 3) + args.warmup + 30
    background = ctx.Process(target=_background, args=(broker.url, args.rate, budget, args.devices, ready, stop_bg))
    background.start()
    if not ready.wait(600):
        raise SystemExit("the background publisher did not get ready")
    worker, stop, thread = start_worker(config, broker.url, pg.url)
    if not worker.wait_ready(30):
        raise SystemExit("the worker did not subscribe")
    evaluator.start()
    lat: list[float] = []
    missed = 0
    with MqttPublisher(MqttUrl.parse(broker.url), client_id="bench-gauge", mqtt5=False) as gauge, \
            psycopg.connect(pg.url, autocommit=True) as conn:
        last, _ = latest_change(conn)
        gauge.publish(*gauge_event(LOW, 0))
        if await_status(conn, last, "normal", args.poll_ms / 1000, 60) is None:
            raise SystemExit("the ward never became normal: is the evaluator running? see the log")
        time.sleep(args.warmup)
        received0, t0, cpu0, ev0 = worker.stats.totals.received, time.monotonic(), cpu_seconds(pg, broker), \
            evaluator.cpu_s()
        worker.stats.lag_history = []
        for i in range(args.crossings):
            level, expected = (HIGH, "alert") if i % 2 == 0 else (LOW, "normal")
            last, _ = latest_change(conn)
            topic, payload = gauge_event(level, i + 1)
            sent = time.time()
            gauge.publish(topic, payload)
            seen = await_status(conn, last, expected, args.poll_ms / 1000, 30)
            if seen is None:
                missed += 1
            else:
                lat.append((seen - sent) * 1000)
            time.sleep(args.gap)
        took = time.monotonic() - t0
        received = worker.stats.totals.received - received0
        cpu1, ev1 = cpu_seconds(pg, broker), evaluator.cpu_s()
        # The status change and the station's alarm are committed by the same round, in one transaction.
        alarms = conn.execute("SELECT count(*), coalesce(sum(count), 0), count(DISTINCT incident_id) FROM alarms "
                              "WHERE source = 'hazard' AND device_eui = %s", (GAUGE,)).fetchone()
    stop_bg.set()
    background.join(60)
    evaluator.stop()
    stop.set()
    thread.join(60)
    worker.processor.close()
    lags = np.concatenate(worker.stats.lag_history) * 1000 if worker.stats.lag_history else np.array([np.nan])
    p50, p99, pmax = np.percentile(lat, [50, 99, 100]) if lat else (float("nan"),) * 3
    i50, i99 = np.percentile(lags, [50, 99])
    print(f"\nLATENCY publish -> zone status change committed, {len(lat)} crossings ({missed} missed) under "
          f"{received / took:,.0f} uplinks/s of background traffic: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
          f"max {pmax:.0f} ms (target p99 <= 2000 ms)")
    print(f"  the ingest alone, publish -> commit of every uplink meanwhile: p50 {i50:.0f} ms, p99 {i99:.0f} ms")
    cpu = {k: (cpu1[k] - cpu0[k]) / took * 100 for k in cpu1}
    print("  CPU meanwhile (100% = one core): " + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
          + f", evaluator {(ev1 - ev0) / took * 100:.0f}%")
    print(f"  the evaluator since its start: {evaluator.last_counts()}")
    if alarms is not None:
        print(f"  the gauge's hazard alarms: {alarms[0]} row(s), seen {alarms[1]} times in all, in {alarms[2]} "
              "incident(s)")


def throughput(args: argparse.Namespace, pg: LocalPostgres, broker: LocalMosquitto, config: WorkerConfig,
               evaluator: Evaluator) -> None:
    results: dict[str, list[float]] = {"off": [], "on": []}
    costs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    fcnt = 2_000_000
    url = MqttUrl.parse(broker.url)
    for pair in range(args.pairs):
        for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            # The session exists while the backlog is published, as for a worker that went away.
            probe = MqttConsumer(url, client_id=config.client_id, topic_filter=config.topic_filter,
                                 share_group=config.share_group, on_message=lambda m: None)
            probe.start()
            probe.stop()
            events = make_events(args.backlog, args.devices, first_fcnt=fcnt)
            fcnt += args.backlog // args.devices + 1
            publish(broker.url, events, processes=2, rate=None, stamp=True)
            del events
            if mode == "on":
                evaluator.start()
                time.sleep(3)  # its start-up and catch-up round are not what is measured
            worker, stop, thread = start_worker(config, broker.url, pg.url)
            while worker._consumer.delivered == 0:
                time.sleep(0.001)
            first = time.monotonic()
            ev0, cpu0 = evaluator.cpu_s(), cpu_seconds(pg, broker)
            deadline = first + 300
            while worker.stats.totals.received < args.backlog and time.monotonic() < deadline:
                time.sleep(0.01)
            drained = time.monotonic() - first
            ev1, cpu1 = evaluator.cpu_s(), cpu_seconds(pg, broker)
            # CPU per 1,000 uplinks of everything on the ingest's path, the evaluator's process included: less
            # sensitive than the rate to whatever else the machine runs meanwhile.
            used = {k: (cpu1[k] - cpu0[k]) / args.backlog * 1000 for k in cpu1}
            used["evaluator"] = (ev1 - ev0) / args.backlog * 1000
            costs[mode].append(used)
            stop.set()
            thread.join(60)
            worker.processor.close()
            extra = ""
            if mode == "on":
                evaluator.stop()
                extra = (f" (evaluator CPU {(ev1 - ev0) / drained * 100:.0f}% of a core; since its start: "
                         f"{evaluator.last_counts()})")
            rate = worker.stats.totals.received / drained
            results[mode].append(rate)
            load = os.getloadavg()[0]
            print(f"drain {len(results['off']) + len(results['on'])} evaluator {mode:>3}: "
                  f"{worker.stats.totals.received} uplinks in {drained:.2f} s = {rate:,.0f} uplinks/s, "
                  f"load {load:.1f}; CPU s per 1,000: " + ", ".join(f"{k} {v:.4f}" for k, v in used.items()) + extra)
    off, on = float(np.mean(results["off"])), float(np.mean(results["on"]))
    off_m, on_m = float(np.median(results["off"])), float(np.median(results["on"]))
    print(f"\nTHROUGHPUT one worker, {args.backlog} uplinks backlog, {args.pairs} x off/on: evaluator off "
          f"{off:,.0f}/s, on {on:,.0f}/s = {(on / off - 1) * 100:+.1f} % (medians {off_m:,.0f} and {on_m:,.0f}: "
          f"{(on_m / off_m - 1) * 100:+.1f} %; target: loss <= 10 %)")
    total = {mode: float(np.mean([sum(c.values()) for c in costs[mode]])) for mode in costs}
    parts = {mode: {k: float(np.mean([c[k] for c in costs[mode]])) for k in costs[mode][0]} for mode in costs}
    print(f"  CPU s per 1,000 uplinks, all processes: off {total['off']:.4f}, on {total['on']:.4f} = "
          f"{(total['on'] / total['off'] - 1) * 100:+.1f} % (" + "; ".join(
              f"{k} {parts['off'][k]:.4f} -> {parts['on'][k]:.4f}" for k in parts["off"]) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="background uplinks/s during (a)")
    parser.add_argument("--devices", type=int, default=2000, help="background devices")
    parser.add_argument("--stations", type=int, default=150,
                        help="background devices registered as flood, rain and air stations")
    parser.add_argument("--crossings", type=int, default=50, help="threshold crossings of the gauge in (a)")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between a change and the next crossing")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of background traffic before (a)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="how often (a) looks for the change")
    parser.add_argument("--interval", type=float, default=5.0, help="IOC_OPERATIONS_INTERVAL_S of the evaluator")
    parser.add_argument("--min-gap", type=float, default=0.25, help="IOC_OPERATIONS_MIN_GAP_S of the evaluator")
    parser.add_argument("--busy-share", type=float, default=0.15, help="IOC_OPERATIONS_BUSY_SHARE of the evaluator")
    parser.add_argument("--backlog", type=int, default=100_000, help="uplinks per drain in (b)")
    parser.add_argument("--pairs", type=int, default=3, help="off/on drain pairs in (b), order alternating")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-age-ms", type=int, default=200)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    print(f"machine: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="ioc-ops-bench-"))
    pg = LocalPostgres(root / "pg", durable=True)
    broker = LocalMosquitto(root / "mqtt", max_queued=10_000_000)
    pg.start()
    broker.start()
    evaluator = Evaluator(pg.url, root / "operations.log", args.interval, args.min_gap, args.busy_share)
    try:
        with psycopg.connect(pg.url) as conn:
            migrate(conn)
            version = conn.execute("SHOW server_version").fetchone()
        print(f"postgresql {version[0] if version else '?'} (durable: fsync on, synchronous_commit on); "
              f"evaluator log: {root / 'operations.log'}")
        set_up(pg.url, args.devices, args.stations)
        print(f"{args.devices} background devices ({args.stations} of them hazard stations), one river gauge in "
              f"{WARD.code} (Hải Châu); evaluator every {args.interval:g} s and on notification, min gap "
              f"{args.min_gap:g} s, busy share {args.busy_share:g}")
        config = WorkerConfig(name="bench", client_id="bench-worker", topic_filter="application/+/device/+/event/+",
                              share_group="ioc-ingest", batch_size=args.batch_size,
                              batch_age_s=args.batch_age_ms / 1000, receive_maximum=20_000,
                              session_expiry_s=3600, stats_interval_s=5.0)
        if not args.skip_latency:
            latency(args, pg, broker, config, evaluator)
        if not args.skip_throughput:
            throughput(args, pg, broker, config, evaluator)
    finally:
        if evaluator.proc is not None:
            evaluator.proc.kill()
        broker.stop()
        pg.stop("immediate")


if __name__ == "__main__":
    main()
