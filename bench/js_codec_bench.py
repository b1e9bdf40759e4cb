"""JavaScript codec benchmark: what a JS decode costs per uplink, and that the built-in path does not pay for it.

Runs the ingest's decode step as the worker runs it (``parse_messages`` + ``build_rows``, no database) over
batches of ChirpStack uplink events, in this process:

* built-in: every uplink decoded by the built-in ``cayenne-lpp`` codec (the path most devices take);
* javascript: every uplink decoded by a vendor-style The Things Stack codec (``LHT65_LIKE`` below: a
  temperature/humidity sensor's decoder of the usual shape and size);
* javascript, trickle: the same codec in small batches with pauses between them, as a city's traffic
  arrives (a few uplinks per 200 ms batch); workers build contexts ahead while they wait;
* always-timeout: every uplink decoded by a codec that never returns, the case the circuit breaker exists
  for: without it each uplink costs the time limit.

The script uses only interfaces the runtime had before issue 10 (``CodecLibrary.discover``, ``JsLimits``
with time and memory limits), so the same file measures an older checkout: run it with ``PYTHONPATH`` set
to that checkout to get "before" numbers. The machine is shared: the load average is printed beside the
numbers, and each figure is the median of several rounds.

    python bench/js_codec_bench.py                     # 5,000 uplinks per round, 5 rounds
    python bench/js_codec_bench.py --uplinks 1000 --rounds 3 --timeouts 50
    python bench/js_codec_bench.py --js-workers 1      # no parallel decoding of a batch
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine_info import host_line  # bench/ is the script's folder, first on sys.path

# The events are built by the tests' helper (chirpstack-api classes); the repository root is not on sys.path
# when the script is run as `python bench/js_codec_bench.py`.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from gateways.mqtt import InboundMessage
from ingest.codecs.js_runtime import JsLimits
from ingest.codecs.library import CodecLibrary
from ingest.devices import DeviceRef
from ingest.pipeline import build_rows, parse_messages
from tests.events import uplink

# Cayenne LPP: channel 1 temperature 25.5 °C, channel 2 humidity 40 %.
CAYENNE = bytes.fromhex("016700FF026850")
LHT65 = bytes.fromhex("CBF60B0D03760100ADFF7F")
LHT65_LIKE = r"""
function decodeUplink(input) {
  var bytes = input.bytes, warnings = [];
  if (input.fPort !== 2) { return {errors: ["unknown fPort " + input.fPort]}; }
  if (bytes.length !== 11) { return {errors: ["expected 11 bytes, got " + bytes.length]}; }
  function int16(hi, lo) { var v = (hi << 8) | lo; return v & 0x8000 ? v - 0x10000 : v; }
  var status = bytes[0] >> 6;
  var battery = (((bytes[0] << 8) | bytes[1]) & 0x3FFF) / 1000;
  var data = {
    battery_voltage: battery,
    battery_status: ["ultra low", "low", "ok", "good"][status],
    temperature: int16(bytes[2], bytes[3]) / 100,
    humidity: ((bytes[4] << 8) | bytes[5]) / 10,
  };
  var mode = bytes[6] & 0x7F;
  if (mode === 1) {
    var probe = int16(bytes[7], bytes[8]);
    data.probe_temperature = probe === 0x7FFF ? null : probe / 100;
  } else if (mode === 4) {
    data.door_open = bytes[7] === 1;
  }
  if (battery < 2.5) { warnings.push("battery low"); }
  return {data: data, warnings: warnings};
}
"""
LOOP_FOREVER = "function decodeUplink(input) { for (;;) {} }"


def _messages(
    count: int, codec: str, payload: bytes, devices: int = 100
) -> tuple[list[InboundMessage], dict[str, DeviceRef]]:
    refs = {}
    messages = []
    for i in range(count):
        dev_eui = f"a840410000{i % devices:06x}"
        refs[dev_eui] = DeviceRef(id=i % devices + 1, dev_eui=dev_eui, zone_id=None, codec_id=codec,
                                  status="registered")
        topic, body = uplink(dev_eui, i, payload, codec=codec)
        messages.append(InboundMessage(topic, body, i + 1, time.time(), 1, False))
    return messages, refs


def _per_uplink_us(registry: CodecLibrary, messages: list[InboundMessage], refs: dict[str, DeviceRef],
                   rounds: int, batch_size: int | None = None, pause_s: float = 0.0) -> tuple[float, int]:
    """Median µs per uplink of parse + decode + normalise over ``rounds`` (the first round warms up).

    With ``batch_size`` the messages go through in batches of that size with ``pause_s`` between them
    (not counted), as a worker sees a light, steady load.
    """
    times = []
    errors = 0
    size = batch_size or len(messages)
    for round_no in range(rounds + 1):
        elapsed = 0.0
        errors = 0
        for start in range(0, len(messages), size):
            if pause_s:
                time.sleep(pause_s)
            started = time.perf_counter()
            parsed, _ = parse_messages(messages[start : start + size])
            batch = build_rows(parsed, refs, {}, registry)
            elapsed += time.perf_counter() - started
            errors += len(batch.dead_letters)
        if round_no:
            times.append(elapsed / len(messages) * 1e6)
    return statistics.median(times), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uplinks", type=int, default=5000, help="uplinks per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--timeouts", type=int, default=100,
                        help="uplinks through the always-timeout codec (default 100; 0 skips)")
    parser.add_argument("--js-workers", type=int, default=None,
                        help="IOC_JS_WORKERS for this run (default: the runtime's default; not on old checkouts)")
    args = parser.parse_args()
    if not (1 <= args.uplinks <= 100_000 and 1 <= args.rounds <= 50 and 0 <= args.timeouts <= 10_000):
        parser.error("--uplinks 1..100000, --rounds 1..50, --timeouts 0..10000")

    print(host_line())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    extra = {} if args.js_workers is None else {"workers": args.js_workers}
    limits = JsLimits(time_limit_ms=100, memory_limit_mb=32, **extra)
    folder = Path(tempfile.mkdtemp(prefix="ioc-js-bench-"))
    (folder / "lht65_like.js").write_text(LHT65_LIKE, encoding="utf-8")
    (folder / "loop_forever.js").write_text(LOOP_FOREVER, encoding="utf-8")
    registry = CodecLibrary.discover(js_dir=folder, js_limits=limits)
    try:
        messages, refs = _messages(args.uplinks, "cayenne-lpp", CAYENNE)
        builtin_us, builtin_dead = _per_uplink_us(registry, messages, refs, args.rounds)
        print(f"built-in cayenne-lpp : {builtin_us:8.1f} µs/uplink  {1e6 / builtin_us:9.0f} uplinks/s"
              f"  ({builtin_dead} dead letters)")

        messages, refs = _messages(args.uplinks, "js:lht65_like", LHT65)
        js_us, js_dead = _per_uplink_us(registry, messages, refs, args.rounds)
        print(f"javascript lht65-like: {js_us:8.1f} µs/uplink  {1e6 / js_us:9.0f} uplinks/s"
              f"  ({js_dead} dead letters); JS cost over built-in {js_us - builtin_us:.1f} µs/uplink")

        trickle = messages[: min(len(messages), 400)]
        trickle_us, _ = _per_uplink_us(registry, trickle, refs, args.rounds, batch_size=8, pause_s=0.02)
        print(f"javascript, trickle  : {trickle_us:8.1f} µs/uplink in batches of 8 with 20 ms pauses")

        if args.timeouts:
            messages, refs = _messages(args.timeouts, "js:loop_forever", b"\x00", devices=10)
            parsed, _ = parse_messages(messages)
            started = time.perf_counter()
            batch = build_rows(parsed, refs, {}, registry)
            elapsed = time.perf_counter() - started
            reasons: dict[str, int] = {}
            for letter in batch.dead_letters:
                key = letter.reason.split(";")[0].split(" (")[0]
                reasons[key] = reasons.get(key, 0) + 1
            print(f"always-timeout       : {args.timeouts} uplinks in {elapsed:.2f} s "
                  f"({elapsed / args.timeouts * 1000:.1f} ms/uplink); dead letters: {reasons}")
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()
        shutil.rmtree(folder)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
