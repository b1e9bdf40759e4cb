"""Issue 10, part 3, end to end: a stuck vendor codec does not stall `ioc ingest` for the other devices.

The finding: a 31-byte uplink through a codec whose regular expression backtracks stalled all ingest for
38 s. Here `ioc ingest` runs as an operator runs it, with such a codec in IOC_CODEC_DIR, a real broker and
a real database: the other devices' uplinks are stored at once, the stuck codec's uplinks become dead letters
(timed out, then disabled by its breaker), and the worker's statistics and log say so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from gateways.local_mosquitto import LocalMosquitto
from gateways.mqtt import MqttPublisher
from ioc_core.settings import MqttUrl
from tests.events import uplink
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAYENNE = bytes.fromhex("016700fa0268a0")
# A plausible vendor codec with a validation regex that backtracks exponentially on this input.
STUCK_CODEC = r"""
function decodeUplink(input) {
  var text = '';
  for (var i = 0; i < 26; i++) { text += 'a'; }
  if (/(a+)+$/.test(text + '!')) { return {errors: ['unexpected']}; }
  return {data: {level: input.bytes[0]}};
}
"""


def _scalar(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url, connect_timeout=2) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def test_a_stuck_vendor_codec_does_not_stall_the_other_devices(
    db_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    codecs = tmp_path / "codecs"
    codecs.mkdir()
    (codecs / "vendor.js").write_text(STUCK_CODEC, encoding="utf-8")
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ, "IOC_DATABASE_URL": db_url, "IOC_MQTT_URL": broker.url, "IOC_INGEST_CLIENT_ID": "e2e-js",
        "IOC_INGEST_BATCH_AGE_MS": "50", "IOC_INGEST_STATS_INTERVAL_S": "1", "IOC_CODEC_DIR": str(codecs),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ioc_cli", "ingest"], env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: "running (batch" in log_path.read_text(errors="replace"),
                 timeout_s=60, what="the worker to subscribe")
        messages = []
        for i in range(300):
            messages.append(uplink(f"00000000000{i % 30:05x}", i, CAYENNE))
            if i % 10 == 0:  # 30 uplinks of five devices with the stuck codec, among the others
                messages.append(uplink(f"000000000001{i % 5:04x}", i, b"\x07", codec="js:vendor"))
        started = time.monotonic()
        with MqttPublisher(MqttUrl.parse(broker.url), client_id="e2e-js-pub") as pub:
            for topic, payload in messages:
                pub.publish(topic, payload)
        wait_for(lambda: _scalar(db_url, "SELECT count(*) FROM uplinks") == 330, timeout_s=60, what="330 uplinks")
        elapsed = time.monotonic() - started
        # Before: each of these uplinks held the only decoding thread for seconds (38 s in the field).
        assert elapsed < 20, f"{elapsed:.1f} s to store 330 uplinks"
        with psycopg.connect(db_url) as conn:
            reasons = [r[0] for r in conn.execute("SELECT reason FROM dead_letters ORDER BY received_at, id")]
            measured = conn.execute("SELECT count(*) FROM measurements").fetchone()
        assert measured == (600,)  # every Cayenne uplink decoded: two measurements each
        assert len(reasons) == 30
        timed_out = [r for r in reasons if "codec timed out after 100 ms" in r]
        disabled = [r for r in reasons if "codec disabled after 5 failures in 60 s; retry at" in r]
        assert 5 <= len(timed_out) <= 6 and len(timed_out) + len(disabled) == 30, reasons
        wait_for(lambda: _scalar(db_url, "SELECT sum(codec_refused) FROM ingest_stats") == len(disabled),
                 timeout_s=10, what="the refusals in ingest_stats")
        assert _scalar(db_url, "SELECT sum(js_timeouts) FROM ingest_stats") == len(timed_out)
        log = log_path.read_text(errors="replace")
        assert "JavaScript codec js:vendor disabled after" in log
        assert "disabled: js:vendor" in log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log_path.read_text(errors="replace")[-2000:]
