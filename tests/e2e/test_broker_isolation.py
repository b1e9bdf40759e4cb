"""A hostile developer against the two brokers, with a real ingest worker, real Mosquitto processes and
developer credentials from the API.

Every attack the single-broker release lost uplinks to is tried here: joining the ingest's shared
subscription (online, and parked offline then revoked), taking the ingest's or ChirpStack's client id, and
parking sessions. After each, 100 % of the uplinks are stored, another developer still gets the feed, and
the public broker's memory stays bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateways.mqtt import MqttPublisher
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_core.settings import MqttUrl
from ioc_core.zones import load_default_zones
from tests.api_support import app_for, key
from tests.broker_support import NOT_AUTHORIZED, PlatformBroker, Probe, accepted_soon, start_brokers
from tests.events import uplink
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAYENNE = bytes.fromhex("016700fa0268a0")
HAI_CHAU = (16.0600, 108.2200)
DEVICES = [f"00000000000a{i:04x}" for i in range(10)]
SHARE = "$share/ioc-ingest/application/+/device/+/event/+"
INGEST_CLIENT_ID = f"ioc-ingest-{socket.gethostname()}"[:64]  # the worker's default, as an attacker guesses it
CHIRPSTACK_CLIENT_ID = "chirpstack-ioc"  # the id the README tells ChirpStack to use
FEED_CLIENT_ID = f"{INGEST_CLIENT_ID[:59]}-feed"  # the ingest's feed publisher on the public broker


def _count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM uplinks").fetchone()
    return int(row[0]) if row else 0


@dataclass
class Stack:
    db_url: str
    brokers: PlatformBroker
    worker: subprocess.Popen[bytes]
    log: Path
    api: TestClient
    keys: dict[str, dict[str, str]] = field(default_factory=dict)

    def headers(self, user: str, role: str = "developer") -> dict[str, str]:
        if user not in self.keys:
            self.keys[user] = key(self.db_url, user, role)
        return self.keys[user]

    def credentials(self, user: str, n: int = 1) -> list[tuple[str, str]]:
        """``n`` MQTT credentials of developer ``user``, created through the API."""
        headers = self.headers(user)
        made = []
        for _ in range(n):
            response = self.api.post("/api/v1/mqtt/credentials", headers=headers)
            assert response.status_code == 201, response.text
            made.append((response.json()["username"], response.json()["password"]))
        return made

    def developer(self, username: str, password: str, **options: object) -> Probe:
        return accepted_soon(self.brokers, username, password, **options)

    def publish_uplinks(self, n: int, *, client_id: str = CHIRPSTACK_CLIENT_ID) -> None:
        """``n`` uplinks as ChirpStack publishes them: its account, its documented client id, QoS 1."""
        messages = [uplink(DEVICES[i % len(DEVICES)], i, CAYENNE, encoding="json" if i % 2 else "protobuf")
                    for i in range(n)]
        with MqttPublisher(MqttUrl.parse(self.brokers.url("chirpstack")), client_id=client_id) as pub:
            for topic, payload in messages:
                pub.publish(topic, payload)


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    with psycopg.connect(db_url) as conn:
        seed_zones(conn, load_default_zones())
        register_devices(conn, [DeviceRecord(dev_eui=eui, name=f"Gauge {i}", kind="temperature_humidity",
                                             codec_id="cayenne-lpp", latitude=HAI_CHAU[0], longitude=HAI_CHAU[1])
                                for i, eui in enumerate(DEVICES)])
        conn.commit()
    brokers = start_brokers(db_url, tmp_path)
    log = tmp_path / "worker.log"
    env = {**os.environ, "IOC_DATABASE_URL": db_url, "IOC_MQTT_URL": brokers.url("ioc-ingest"),
           "IOC_FEED_URL": brokers.url("ioc-feed"), "IOC_INGEST_BATCH_AGE_MS": "50",
           "IOC_FEED_STATUS_INTERVAL_S": "1"}
    env.pop("IOC_INGEST_CLIENT_ID", None)  # the default, predictable id
    with open(log, "ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "ioc_cli", "ingest"], env=env, stdout=out, stderr=out)
    api = TestClient(app_for(db_url, broker=brokers.settings()))
    api.__enter__()
    try:
        wait_for(lambda: "running (batch" in log.read_text(errors="replace"),
                 timeout_s=60, what="the worker to subscribe")
        yield Stack(db_url, brokers, worker, log, api)
    finally:
        api.__exit__(None, None, None)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        brokers.stop()


def _assert_all_stored(stack: Stack, n: int) -> None:
    wait_for(lambda: _count(stack.db_url) >= n, timeout_s=30, what=f"{n} uplinks stored")
    time.sleep(0.5)
    assert _count(stack.db_url) == n
    with psycopg.connect(stack.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    assert stack.worker.poll() is None, stack.log.read_text()


def _feed_reaches(probe: Probe, timeout: float = 15.0) -> None:
    """A reading of a registered device arrives on the open feed (after the uplinks just published)."""
    wait_for(lambda: any(t.startswith("ioc/v1/") and t.split("/")[-1] in DEVICES and "/_" not in t
                         for t in probe.topics()), timeout_s=timeout, what="a reading on the open feed")


def _public_broker_rss_kib(brokers: PlatformBroker) -> int:
    pid = int((brokers.directory / "public" / "mosquitto.pid").read_text())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _saved_sessions(brokers: PlatformBroker) -> bytes:
    """The public broker's persistence file, written on demand (SIGUSR1): it names every stored session."""
    pid = int((brokers.directory / "public" / "mosquitto.pid").read_text())
    db = brokers.directory / "public" / "data" / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: db.exists() and db.stat().st_mtime_ns != before,
             timeout_s=10, what="the broker to save its sessions")
    time.sleep(0.2)
    return db.read_bytes()


def test_joining_the_ingests_shared_subscription_takes_no_uplink(stack: Stack) -> None:
    honest = stack.developer(*stack.credentials("honest")[0])
    honest.subscribe("ioc/v1/#")
    thieves = [stack.developer(u, p) for u, p in stack.credentials("thief", 5)]
    for thief in thieves:
        # Mosquitto may grant these on the public broker, but application/# never flows there.
        thief.subscribe(SHARE)
        thief.subscribe("application/#")
    username, password = stack.credentials("thief2")[0]
    # The broker that does carry application/# does not know any developer.
    assert Probe(stack.brokers.internal_port, username, password).connect().value == NOT_AUTHORIZED  # type: ignore[union-attr]

    stack.publish_uplinks(100)
    _assert_all_stored(stack, 100)
    assert all(not t.startswith("application/") for thief in thieves for t in thief.topics())
    _feed_reaches(honest)
    for probe in (*thieves, honest):
        probe.close()


def test_a_parked_session_of_a_revoked_credential_is_ended(stack: Stack) -> None:
    honest = stack.developer(*stack.credentials("honest")[0])
    honest.subscribe("ioc/v1/#")
    admin = stack.headers("root", "admin")
    username, password = stack.credentials("parker")[0]
    parked = stack.developer(username, password, clean_start=False, session_expiry=0xFFFFFFFE)
    parked.subscribe(SHARE)
    parked.subscribe("ioc/v1/#")
    parked.close()  # offline, the session stays
    assert username.encode() in _saved_sessions(stack.brokers)

    revoked = stack.api.delete(f"/api/v1/mqtt/credentials/{username}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["broker"]["state"] == "reloaded"
    assert revoked.json()["broker"]["sessions"].startswith("ended")
    assert username.encode() not in _saved_sessions(stack.brokers)

    stack.publish_uplinks(100)
    _assert_all_stored(stack, 100)
    _feed_reaches(honest)
    honest.close()


def test_a_revoked_credentials_connection_is_dropped_at_once(stack: Stack) -> None:
    username, password = stack.credentials("leaver")[0]
    online = stack.developer(username, password, clean_start=False, session_expiry=3600)
    online.subscribe("ioc/v1/#")
    response = stack.api.delete(f"/api/v1/mqtt/credentials/{username}",
                                headers=stack.headers("leaver"))
    assert response.status_code == 200 and response.json()["broker"]["sessions"].startswith("ended")
    assert online.dropped.wait(5)
    online.close()
    assert username.encode() not in _saved_sessions(stack.brokers)


def _lost_the_broker(stack: Stack) -> bool:
    return "lost the broker" in stack.log.read_text(errors="replace")


@pytest.mark.parametrize("victim", [INGEST_CLIENT_ID, CHIRPSTACK_CLIENT_ID, FEED_CLIENT_ID])
def test_a_services_client_id_cannot_be_taken(stack: Stack, victim: str) -> None:
    honest = stack.developer(*stack.credentials("honest")[0])
    honest.subscribe("ioc/v1/#")
    chirpstack = stack.brokers.probe("chirpstack", stack.brokers.passwords["chirpstack"],
                                     client_id=CHIRPSTACK_CLIENT_ID)
    assert chirpstack.connect() is not None and not chirpstack.dropped.is_set()
    username, password = stack.credentials("impostor")[0]
    # On the internal broker a developer is nobody, whatever client id it asks for.
    refused = Probe(stack.brokers.internal_port, username, password, client_id=victim).connect()
    assert refused is not None and refused.value == NOT_AUTHORIZED
    # On the public broker the asked-for id is replaced by the username: no service is kicked off.
    impostors = [stack.developer(username, password, client_id=victim) for _ in range(3)]
    time.sleep(0.5)
    assert not chirpstack.dropped.is_set()
    assert not _lost_the_broker(stack), stack.log.read_text()  # neither the ingest nor its feed publisher
    chirpstack.close()

    stack.publish_uplinks(300)
    _assert_all_stored(stack, 300)
    _feed_reaches(honest)
    assert not honest.dropped.is_set()
    assert not _lost_the_broker(stack), stack.log.read_text()
    for probe in (*impostors, honest):
        probe.close()


def test_parked_sessions_cannot_grow_the_public_broker(stack: Stack) -> None:
    honest = stack.developer(*stack.credentials("honest")[0])
    honest.subscribe("ioc/v1/#")
    # One developer's five credentials try to park twenty sessions each under made-up client ids.
    for username, password in stack.credentials("hoarder", 5):
        for _ in range(20):
            probe = stack.developer(username, password, client_id=f"park-{uuid.uuid4()}", clean_start=False,
                                    session_expiry=0xFFFFFFFE)
            probe.subscribe("ioc/v1/#")
            probe.close()
    saved = _saved_sessions(stack.brokers)
    assert saved.count(b"park-") == 0  # the made-up ids were replaced by the usernames: five sessions at most

    before = _public_broker_rss_kib(stack.brokers)
    feed = stack.brokers.service("ioc-feed")
    payload = b"x" * 1024
    with MqttPublisher(MqttUrl.parse(stack.brokers.url("ioc-feed")), client_id="test-flood") as pub:
        for i in range(20_000):  # 20 MiB at QoS 1: without per-client bounds each parked session keeps it all
            pub.publish(f"ioc/v1/test/flood/{i % 100}", payload)
    time.sleep(1.0)
    grown = _public_broker_rss_kib(stack.brokers) - before
    # Five sessions × 1 MiB queue, plus the broker's own bookkeeping.
    assert grown < 12 * 1024, f"the public broker grew by {grown} KiB"

    stack.publish_uplinks(100)
    _assert_all_stored(stack, 100)
    _feed_reaches(honest, timeout=30)
    feed.close()
    honest.close()
