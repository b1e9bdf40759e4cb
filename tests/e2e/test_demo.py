"""``ioc demo`` as a newcomer runs it: a backfill, then real time; the banner, the key file, the brokers' doors,
the API agreeing with the demo's table and with the data, a reused folder, a quiet Ctrl-C, and the flood taking
a ward of Hải Châu and a ward of another district to alert and then danger."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateways.local_postgres import timescaledb_installed
from tests.broker_support import NOT_AUTHORIZED, Probe
from tests.waiting import eventually, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STORAGE = "TimescaleDB" if timescaledb_installed() else "plain PostgreSQL"


class Demo:
    """``ioc demo`` in a process group of its own, as a terminal runs it; its output read as it comes."""

    def __init__(self, folder: Path, *args: str, **env: str) -> None:
        base = {k: v for k, v in os.environ.items()
                if k not in ("IOC_DATABASE_URL", "IOC_MQTT_URL", "IOC_TIMESCALEDB", "IOC_RUN_SH")}
        # COLUMNS: rich lays the table out for a wide terminal, one district per line.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc_cli", "demo", "--devices", "40", *args],
            env={**base, "IOC_DEMO_DIR": str(folder), "COLUMNS": "200", **env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, to), daemon=True)
                         for s, to in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    @property
    def out(self) -> str:
        return "".join(self._out)

    @property
    def err(self) -> str:
        return "".join(self._err)

    def wait_for(self, text: str, timeout_s: float = 180.0) -> None:
        def shown() -> bool:
            assert self.proc.poll() is None or text in self.out, f"the demo ended early:\n{self.out}\n{self.err}"
            return text in self.out

        wait_for(shown, timeout_s=timeout_s, what=lambda: f"{text!r}:\n{self.out}\n{self.err}", interval_s=0.2)

    def finish(self, timeout_s: float = 180.0) -> int:
        code = self.proc.wait(timeout_s)
        self._close()
        return code

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def ctrl_c(self) -> float:
        """SIGINT to the whole process group, as a terminal's Ctrl-C; returns how long the demo took to end."""
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.finish(60)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close()


class Api:
    """The demo's API over HTTP, as a curl user would reach it, with one key."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.group(1)


def _table(out: str) -> dict[str, list[str]]:
    """The newest district table: district name -> its cells."""
    tables = out.split("as GET /api/v1/zones")
    rows = [line.split("│") for line in tables[-1].splitlines() if line.startswith("│")]
    return {cells[1].strip(): [c.strip() for c in cells[2:-1]] for cells in rows}


def test_demo_backfills_then_runs_in_real_time_and_stops_quietly_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    demo = Demo(folder, "--backfill-hours", "2", "--summary-every", "3", IOC_RUN_SH="./run.sh")
    try:
        demo.wait_for("real time from here")
        demo.wait_for("as GET /api/v1/zones")
        out = demo.out
        # The banner's first lines: the console and how to sign in, where the API is, where its key is, which
        # storage mode runs.
        first = out.split("IOC platform demo", 1)[1].splitlines()[1:5]
        assert re.match(r"console\s+http://127\.0\.0\.1:\d+/console/\s+sign in with a key", first[0]), first
        assert f"{folder}/api-key-demo-city" in first[0] and f"{folder}/api-key-demo-technician" in first[0]
        assert first[1].startswith("API") and f"admin key in {folder}/api-key" in first[1]
        assert first[3].startswith("storage") and STORAGE in first[3]
        assert "new (a next run reuses it" in out and "backfilling the past 2.0 h" in out
        # Commands that work as printed: started through run.sh, they go through it too.
        assert re.search(r"IOC_DATABASE_URL='\S+' \./run\.sh ioc deadletters list", out)
        key_file = folder / "api-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        api = _found(r"API\s+(http://127\.0\.0\.1:\d+)/docs", out)
        dsn = _found(r"database\s+(postgresql://\S+)", out)
        internal = int(_found(r"internal broker 127\.0\.0\.1:(\d+)", out))
        public = int(_found(r"public broker\s+127\.0\.0\.1:(\d+)", out))
        dev_user, dev_password = re.findall(r"mosquitto_sub -p \d+ -u (dev-\S+) -P (\S+)", out)[0]
        admin = Api(api, key_file.read_text().strip())

        # Nothing is dated in the future; the backfill covers the two hours before real time began.
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT max(time) <= now(), min(time) > now() - interval '2 hours 5 minutes', "
                               "max(time) > now() - interval '5 minutes' FROM uplinks").fetchone()
            assert row == (True, True, True)
            low = conn.execute("SELECT min(value) FROM measurements v JOIN metrics m ON m.id = v.metric_id "
                               "WHERE m.name = 'water_level' AND v.quality = 0").fetchone()
            assert low is not None and low[0] >= 0.0  # stages above each gauge's zero
            missing = conn.execute("SELECT count(*) FROM devices WHERE status = 'registered' "
                                   "AND registered_at IS NULL").fetchone()
            assert missing == (0,)
            rule = dict(conn.execute("SELECT g.gateway_eui, s.status FROM gateways g "
                                     "JOIN gateway_status() s ON s.gateway_id = g.id").fetchall())

        # The table shows what the API shows.
        zones = {z["name"]: z for z in admin.call("GET", "/api/v1/zones")}
        table = _table(demo.out)
        assert table and set(table) <= set(zones)
        for name, cells in table.items():
            assert int(cells[0]) == zones[name]["devices"]["total"]
            assert abs(int(cells[1]) - zones[name]["uplinks_last_hour"]) <= 3  # a few seconds apart
            # The newest levels, and the stations above their levels in words, as the water alerts count them.
            for warnings in (cells[3], cells[5]):
                assert re.fullmatch(r"-|normal|\d+ danger(, \d+ alert)?|\d+ alert", warnings), cells
        # Gateways: the API's state is the alert rule's, and a gateway that forwarded lately is online.
        gateways = admin.call("GET", "/api/v1/gateways")
        assert gateways and {g["gateway_eui"]: g["state"] for g in gateways} == rule
        assert any(g["state"] == "online" for g in gateways)
        # Commissioned devices say when they were registered.
        devices = admin.call("GET", "/api/v1/devices?status=registered&limit=500")
        commissioned = [d for d in devices["items"] if d["commissioning"]["stage"] == "commissioned"]
        assert commissioned and all(d["commissioning"]["registered_at"] for d in commissioned)

        # The brokers run the generated configuration: nobody anonymous, no developer on the internal broker.
        for port in (internal, public):
            anonymous = Probe(port).connect()
            assert anonymous is not None and anonymous.is_failure, port
        refused = Probe(internal, dev_user, dev_password).connect()
        assert refused is not None and refused.value == NOT_AUTHORIZED
        # Credentials from the demo's API name the demo's public broker, and it takes them.
        made = admin.call("POST", "/api/v1/users", {"name": "app-dev", "role": "developer"})
        credentials = Api(api, made["key"]).call("POST", "/api/v1/mqtt/credentials")
        assert credentials["broker_url"] == f"mqtt://127.0.0.1:{public}"
        probes: list[Probe] = []

        def accepted() -> bool:
            probes.append(Probe(public, credentials["username"], credentials["password"]))
            reason = probes[-1].connect()
            return reason is not None and not reason.is_failure

        assert eventually(accepted, 10.0)
        try:
            assert not probes[-1].subscribe("ioc/v1/#").is_failure
        finally:
            probes[-1].close()

        # Ctrl-C: the whole process group gets SIGINT, as in a terminal; it ends within seconds, quietly.
        took = demo.ctrl_c()
        assert demo.proc.returncode == 0, demo.err
        assert took < 8.0, f"took {took:.1f} s"
        assert not re.search(r"WARNING|ERROR|Traceback|lost the broker", demo.err), demo.err
        assert "demo stopped cleanly" in demo.out
    finally:
        demo.kill()


def test_a_second_run_reuses_the_folder_says_so_and_fresh_starts_empty(tmp_path: Path) -> None:
    folder = tmp_path / "demo"

    def run(*args: str, **env: str) -> str:
        demo = Demo(folder, "--backfill-hours", "1", "--duration", "2", *args, **env)
        try:
            assert demo.finish() == 0, demo.err
            assert not re.search(r"WARNING|ERROR|Traceback", demo.err), demo.err
            return demo.out
        finally:
            demo.kill()

    first = run(IOC_TIMESCALEDB="off")
    assert "plain PostgreSQL" in first and "IOC_TIMESCALEDB=off" in first and "new (a next run" in first
    assert re.search(r"IOC_DATABASE_URL='\S+' ioc deadletters list", first)  # not started through run.sh
    second = run(IOC_TIMESCALEDB="off")
    assert "reused from the previous run" in second and "--fresh starts from an empty folder" in second
    assert re.search(r"the stored readings end at .*: backfilling the \d+ min since then", second)
    if timescaledb_installed():
        third = run()  # IOC_TIMESCALEDB unset means auto: the embedded database preloads TimescaleDB
        assert "the storage mode is now timescaledb" in third and "TimescaleDB: hypertables" in third
    fresh = run("--fresh", IOC_TIMESCALEDB="off")
    assert "new (a next run" in fresh and "backfilling the past 1.0 h" in fresh


def test_the_flood_takes_a_ward_of_hai_chau_and_one_of_another_district_to_alert_then_danger(tmp_path: Path) -> None:
    """...and its operations story: an incident opens, escalates when nobody acknowledges it, and once Hải Châu
    is in danger a CAP warning drafted by one operator and approved by another reaches every stand-in exactly
    once and the public broker, retained."""
    # The demo's moments shortened: alert about 30 s into real time, danger about 2.5 min (a level sensor in
    # alarm reports every minute, so each change shows up to a minute later); escalation after 30 s.
    folder = tmp_path / "demo"
    # Danger two level-sensor intervals (60 s) after alert: with less, a reading can land just before the alert
    # moment and the next one past danger, and a ward would skip alert.
    demo = Demo(folder, "--devices", "100", "--backfill-hours", "0.5", "--flood-alert-after", "30",
                "--flood-danger-after", "150", "--summary-every", "15", "--escalate-after", "30")
    try:
        demo.wait_for("real time from here")
        live = time.monotonic()
        out = demo.out
        dsn = _found(r"database\s+(postgresql://\S+)", out)
        flood = re.findall(r"flood\s+ward .+? \(([a-z0-9-]+), district ([a-z-]+)\)", out)
        assert len(flood) == 2 and flood[0][1] == "hai-chau" and flood[1][1] != "hai-chau", out
        wards = [ward for ward, _ in flood]
        # The banner says where operations are to be seen.
        for route in ("/api/v1/zones/{code}/status", "/api/v1/incidents", "/api/v1/alarms",
                      "/api/v1/public/warnings.atom"):
            assert route in out
        with psycopg.connect(dsn, autocommit=True) as conn:
            stored = dict(conn.execute("SELECT code, parent_code FROM zones WHERE level = 'ward' "
                                       "AND valid_to IS NULL").fetchall())
            assert len(stored) == 30 and all(stored[w] == d for w, d in flood)
            # The stations' sensors stand in those wards: registered before or re-zoned by the import.
            held = conn.execute(
                """SELECT count(*) FROM alert_thresholds t JOIN devices d ON d.id = t.device_id
                   JOIN zones z ON z.id = d.zone_id
                   WHERE t.metric = 'water_level' AND t.watch_above < t.alert_above AND z.code = ANY(%s)""",
                (wards,)).fetchone()
            assert held is not None and held[0] >= 2

        def changes() -> dict[str, list[tuple[str, float]]]:
            with psycopg.connect(dsn, autocommit=True) as conn:
                rows = conn.execute(
                    """SELECT zone_code, to_status, extract(epoch FROM at)::float8 FROM zone_hazard_changes
                       WHERE hazard = 'flood' AND zone_code = ANY(%s) ORDER BY id""", (wards,)).fetchall()
            seen: dict[str, list[tuple[str, float]]] = {w: [] for w in wards}
            for ward, status, at in rows:
                seen[ward].append((status, at))
            return seen

        def alert_then_danger(seen: list[tuple[str, float]]) -> bool:
            statuses = [s for s, _ in seen]
            return "alert" in statuses and "danger" in statuses[statuses.index("alert"):]

        wait_for(lambda: all(alert_then_danger(s) for s in changes().values()), timeout_s=420.0,
                 what=lambda: f"alert then danger in {wards}: {changes()}", interval_s=2.0)
        assert time.monotonic() - live < 400.0
        for ward, seen in changes().items():
            # Never danger before alert: the levels lie a reading's noise apart.
            statuses = [s for s, _ in seen]
            assert statuses.index("alert") < statuses.index("danger"), (ward, seen)
        # Its district is the worst of its wards.
        with psycopg.connect(dsn, autocommit=True) as conn:
            districts = dict(conn.execute("SELECT zone_code, status FROM zone_hazard_status WHERE hazard = 'flood' "
                                          "AND zone_code = ANY(%s)", ([d for _, d in flood],)).fetchall())
        assert set(districts.values()) == {"danger"}, districts
        # The screen says it in words, Vietnamese and English.
        demo.wait_for("NGUY HIỂM / danger  Ngập lụt / flood", timeout_s=60.0)
        _check_operations(demo, folder, dsn)
        assert demo.ctrl_c() < 8.0 and demo.proc.returncode == 0, demo.err
        assert not re.search(r"WARNING|ERROR|Traceback", demo.err), demo.err
    finally:
        demo.kill()


def _check_operations(demo: Demo, folder: Path, dsn: str) -> None:
    """The flood's incident in Hải Châu escalated to the city IOC, its warning drafted and approved by two
    different operators, delivered once to each stand-in and retained on the public broker."""
    out = demo.out
    assert "every escalation timer is 30 s" in out
    channels = _found(r"delivered to local stand-ins of ([a-z, ]+):", out).split(", ")
    try:
        import aiosmtpd  # noqa: F401  # a dev extra: without it the demo says it has no e-mail
    except ImportError:
        assert channels == ["webhook", "zalo", "sms"] and "aiosmtpd is not installed" in out
    else:
        assert channels == ["webhook", "zalo", "sms", "email"]
    for user in ("demo-district", "demo-city"):
        assert stat.S_IMODE((folder / f"api-key-{user}").stat().st_mode) == 0o600

    def incident() -> Any:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute("SELECT id, owner, escalation_level, opened_at, escalated_at FROM incidents "
                                "WHERE zone_code = 'hai-chau' AND hazard = 'flood' ORDER BY id LIMIT 1").fetchone()

    wait_for(lambda: (incident() or (0, "", 0))[2] >= 1, timeout_s=90.0, what=lambda: f"escalation: {incident()}",
             interval_s=1.0)
    ident, owner, _level, opened, escalated = incident()
    assert owner == "city" and (escalated - opened).total_seconds() >= 30.0

    def approved() -> Any:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute("SELECT identifier, drafted_by, approved_by, zones FROM warnings "
                                "WHERE incident_id = %s AND state = 'approved'", (ident,)).fetchall()

    wait_for(lambda: bool(approved()), timeout_s=60.0, what=lambda: f"an approved warning:\n{demo.out}",
             interval_s=1.0)
    ((identifier, drafted_by, approved_by, zones),) = approved()
    assert (drafted_by, approved_by) == ("demo-district", "demo-city")
    demo.wait_for(f"demo-city approved {identifier}", timeout_s=10.0)

    def received(channel: str) -> list[dict[str, Any]]:
        path = folder / "received" / f"{channel}.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    wait_for(lambda: all(received(c) for c in channels), timeout_s=60.0,
             what=lambda: f"deliveries: {[(c, received(c)) for c in channels]}", interval_s=1.0)
    time.sleep(3.0)  # a second delivery, if the dispatcher were to send twice, would have come by now
    for channel in channels:
        # The webhook stand-in also takes the operators' own notifications; the rest carry warnings only.
        lines = [x for x in received(channel) if x.get("event", "warning") == "warning"]
        assert len(lines) == 1 and not lines[0]["duplicate"], (channel, lines)
    public_hook = next(x for x in received("webhook") if x["event"] == "warning")
    assert public_hook["identifier"] == identifier and public_hook["signature"] == "verified"
    # Notified again on escalation: the city operator's own webhook heard of the incident's escalation.
    escalations = [x for x in received("webhook") if x["event"] == "escalated" and x["path"] == "/hooks/demo-city"]
    assert escalations and not any(x["duplicate"] for x in received("webhook")), received("webhook")
    with psycopg.connect(dsn, autocommit=True) as conn:
        states = dict(conn.execute("SELECT channel, count(*) FILTER (WHERE state = 'sent') = count(*) "
                                   "FROM notification_outbox WHERE idempotency_key LIKE %s GROUP BY channel",
                                   (f"warning:{identifier}:%",)).fetchall())
    assert set(states) == {*channels, "mqtt"} and all(states.values()), states

    # Retained on the public broker: a subscriber arriving after the publication gets it.
    public = int(_found(r"public broker\s+127\.0\.0\.1:(\d+)", out))
    user, password = re.findall(r"mosquitto_sub -p \d+ -u (dev-\S+) -P (\S+)", out)[0]
    probe = Probe(public, user, password)
    try:
        reason = probe.connect()
        assert reason is not None and not reason.is_failure, reason
        assert not probe.subscribe("ioc/v1/+/_warning").is_failure
        probe.wait_for(f"ioc/v1/{zones[0]}/_warning", timeout_s=10.0)
        payloads = [p for t, p in probe.messages if t == f"ioc/v1/{zones[0]}/_warning"]
        assert identifier.encode() in payloads[0]
    finally:
        probe.close()
