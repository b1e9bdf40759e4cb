"""Ingest benchmark: sustained uplinks/s through one worker, and publish-to-commit latency at fixed rates.

Everything runs on this machine, as in the issue's targets: a Mosquitto broker and a PostgreSQL server
(durable settings: fsync and synchronous_commit on) started as local processes, publishers in their own
processes, and one ingest worker (the same code `ioc ingest` runs) in this process.

    python bench/ingest_bench.py                      # defaults: 150k backlog, rates 1000/2500/5000 for 20 s
    python bench/ingest_bench.py --backlog 50000 --rates 5000 --seconds 10

Sustained throughput: the worker's session is created, the backlog is published while the worker is away,
then the worker starts and drains it; rate = messages / (last commit - first delivery).
Latency: publishers stamp each event's `time` with the wall clock when they publish it; the worker records
commit time minus event time for every uplink, so broker queueing counts too.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from chirpstack_api import common, gw, integration

from gateways.chirpstack_wire import render_json
from gateways.local_mosquitto import LocalMosquitto
from gateways.local_postgres import LocalPostgres
from gateways.migrations import migrate
from gateways.mqtt import MqttConsumer, MqttPublisher
from ingest.codecs.registry import CodecRegistry
from ingest.worker import BatchProcessor, IngestWorker, WorkerConfig
from ioc_core.settings import MqttUrl

PLACEHOLDER_TIME = b"2000-01-01T00:00:00.000000+00:00"
APP = "d6a5c9bf-fafa-5f36-be70-b5a2c751bb98"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[:1]
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores | {mem_gib:.0f} GiB | {platform.system()} "
            f"{platform.release()} | Python {platform.python_version()} | {' '.join(mosq)}")


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process, the PostgreSQL processes and Mosquitto, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"worker": 0.0, "postgres": 0.0, "mosquitto": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) == os.getpid():
            out["worker"] += used
        elif comm.startswith("postgres"):
            out["postgres"] += used
        elif comm == "mosquitto":
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=150_000, help="messages for the sustained run")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rates", type=str, default="1000,2500,5000", help="fixed rates for latency")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each latency run")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-age-ms", type=int, default=200)
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

        # The session exists before the backlog is published, as it would for a worker that went away.
        probe = MqttConsumer(url, client_id=config.client_id, topic_filter=config.topic_filter,
                             share_group=config.share_group, on_message=lambda m: None)
        probe.start()
        probe.stop()

        t0 = time.monotonic()
        events = make_events(args.backlog, args.devices)
        size = np.mean([len(p) for _, p in events])
        print(f"generated {len(events)} events, mean {size:.0f} bytes, in {time.monotonic() - t0:.1f} s")
        took = publish(broker.url, events, processes=2, rate=None, stamp=False)
        print(f"backlog published in {took:.1f} s ({len(events) / took:.0f} msg/s, 2 publisher processes)")

        worker = IngestWorker(config, url, BatchProcessor(pg.url, CodecRegistry.discover()))
        stop = threading.Event()
        runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        runner.start()
        while worker._consumer.delivered == 0:
            time.sleep(0.001)
        first = time.monotonic()
        cpu_before = cpu_seconds()
        while worker.stats.totals.received < len(events):
            time.sleep(0.01)
        drained = time.monotonic() - first
        cpu_after = cpu_seconds()
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
