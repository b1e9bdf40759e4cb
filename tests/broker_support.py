"""Test support: the platform's two brokers as `ioc broker config` writes them, started as real Mosquitto
processes, and an MQTT 5 probe that records what a broker answers."""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from gateways.local_mosquitto import LocalMosquitto, find_mosquitto
from gateways.local_postgres import free_port
from gateways.mosquitto_files import reload
from ioc_api.broker import BrokerControl
from ioc_api.queries.mqtt_accounts import create_developer_account
from ioc_api.queries.users import create_user
from ioc_cli.app import build_app
from ioc_core.errors import FatalError
from ioc_core.mqtt_access import ROLE_PLACE, SERVICE_ACCOUNTS
from ioc_core.settings import BrokerSettings
from tests.availability import unavailable
from tests.waiting import eventually, wait_for

__all__ = ["NOT_AUTHORIZED", "READING_TOPIC", "PlatformBroker", "Probe", "accepted_soon", "broker_config",
           "connected", "developer", "refused_soon", "start_brokers"]

NOT_AUTHORIZED = 0x87
READING_TOPIC = "ioc/v1/hai-chau/water_level/0000000000000001"
_ids = itertools.count(1)


class Probe:
    """An MQTT 5 client that records what the broker answers: CONNACK, SUBACK, PUBACK, messages, drops."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None, *,
                 ca_file: Path | None = None, client_id: str | None = None, clean_start: bool = True,
                 session_expiry: int = 0) -> None:
        self.port = port
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{next(_ids)}",
                                  protocol=paho.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.connack: ReasonCode | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, Any] = {}
        self.dropped = threading.Event()
        self._lock = threading.Lock()
        self._connacked = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def _on_connect(self, client: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        if self.connack is None:
            self.connack = reason
        if reason.is_failure:
            client.disconnect()  # no reconnect attempts in the background
        self._connacked.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, _reason: Any, _p: Any) -> None:
        if self.connack is not None and not self.connack.is_failure:
            self.dropped.set()

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        self.acks[mid] = reasons[0]

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self.acks[mid] = reason

    def connect(self, host: str = "127.0.0.1", timeout_s: float = 5.0) -> ReasonCode | None:
        """The CONNACK's reason code; None when no MQTT session came about at all."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry
        try:
            self.client.connect(host, self.port, keepalive=30, clean_start=self.clean_start, properties=properties)
        except OSError:
            return None
        self.client.loop_start()
        self._connacked.wait(timeout_s)
        if self.connack is None or self.connack.is_failure:
            self.close()  # no reconnect attempts in the background
        return self.connack

    def _ack(self, mid: int) -> Any:
        wait_for(lambda: mid in self.acks, timeout_s=5.0, what=f"the acknowledgement of packet {mid}")
        return self.acks.pop(mid)

    def subscribe(self, topic_filter: str) -> ReasonCode:
        _rc, mid = self.client.subscribe(topic_filter, qos=1)
        reason: ReasonCode = self._ack(mid)
        return reason

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        reason: ReasonCode = self._ack(self.client.publish(topic, payload, qos=1).mid)
        return reason

    def topics(self) -> list[str]:
        with self._lock:
            return [topic for topic, _ in self.messages]

    def wait_for(self, topic: str, timeout_s: float = 5.0) -> None:
        wait_for(lambda: topic in self.topics(), timeout_s=timeout_s,
                 what=lambda: f"{topic} to arrive; got {self.topics()}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class PlatformBroker:
    """Both brokers `ioc broker config` wrote, running: the internal one and the public one."""

    internal: LocalMosquitto
    public: LocalMosquitto
    directory: Path
    internal_port: int
    public_port: int  # the developer listener
    service_port: int  # the public broker's service listener
    passwords: dict[str, str]

    @property
    def pid_file(self) -> Path:
        return self.directory / "public" / "mosquitto.pid"

    def port_of(self, username: str) -> int:
        role = SERVICE_ACCOUNTS.get(username)
        if role is None:
            return self.public_port
        return self.internal_port if ROLE_PLACE[role] == "internal" else self.service_port

    def url(self, username: str) -> str:
        return f"mqtt://{username}:{self.passwords[username]}@127.0.0.1:{self.port_of(username)}"

    def probe(self, username: str | None, password: str | None = None, *, port: int | None = None,
              **options: Any) -> Probe:
        return Probe(port or (self.port_of(username) if username else self.public_port), username, password,
                     **options)

    def service(self, username: str) -> Probe:
        probe = self.probe(username, self.passwords[username])
        assert connected(probe), (username, probe.connack)
        return probe

    def settings(self, *, pid_file: Path | None = None, admin: bool = True) -> BrokerSettings:
        return BrokerSettings(config_dir=self.directory, pid_file=pid_file or self.pid_file,
                              public_url=f"mqtt://127.0.0.1:{self.public_port}",
                              admin_url=self.url("ioc-api") if admin else None)

    def stop(self) -> None:
        self.public.stop()
        self.internal.stop()


def connected(probe: Probe) -> bool:
    reason = probe.connect()
    return reason is not None and not reason.is_failure


def accepted_soon(broker: PlatformBroker, username: str, password: str, **options: Any) -> Probe:
    """A connected client; waits out the reload that makes new credentials known."""
    probes: list[Probe] = []

    def attempt() -> bool:
        probes.append(broker.probe(username, password, **options))
        return connected(probes[-1])

    wait_for(attempt, timeout_s=5.0,
             what=lambda: f"{username} to be accepted; last: {probes[-1].connack}\n{broker.public.log_tail()}")
    return probes[-1]


def refused_soon(broker: PlatformBroker, username: str, password: str, *, port: int | None = None) -> bool:
    def attempt() -> bool:
        probe = broker.probe(username, password, port=port)
        reason = probe.connect()
        if reason is not None and not reason.is_failure:
            probe.close()
            return False
        return reason is not None and reason.value == NOT_AUTHORIZED

    return eventually(attempt)


def broker_config(db_url: str, out: Path, *args: str) -> Any:
    run_as = ["--run-as", "root"] if os.geteuid() == 0 else []  # as root, Mosquitto would drop to `mosquitto`
    return CliRunner().invoke(build_app(), ["broker", "config", "--out", str(out), *run_as, *args],
                              env={"IOC_DATABASE_URL": db_url})


def start_brokers(db_url: str, tmp_path: Path, *args: str) -> PlatformBroker:
    try:
        find_mosquitto()
    except FatalError as err:
        unavailable(str(err))
    internal_port, public_port, service_port = free_port(), free_port(), free_port()
    directory = tmp_path / "broker"
    result = broker_config(db_url, directory, "--internal-port", str(internal_port), "--public-port",
                           str(public_port), "--service-port", str(service_port), *args)
    assert result.exit_code == 0, result.output
    passwords = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert set(passwords) == set(SERVICE_ACCOUNTS)
    internal = LocalMosquitto(tmp_path / "run-internal", port=internal_port,
                              config_file=directory / "internal" / "mosquitto.conf")
    public = LocalMosquitto(tmp_path / "run-public", port=service_port,
                            config_file=directory / "public" / "mosquitto.conf")
    try:
        internal.start()
        public.start()
    except FatalError as err:
        internal.stop()
        unavailable(f"mosquitto did not start: {err}")
    return PlatformBroker(internal, public, directory, internal_port, public_port, service_port, passwords)


def developer(db_url: str, broker: PlatformBroker, name: str) -> tuple[str, str]:
    """A developer with one set of credentials, created and applied the way the API does it."""
    control = BrokerControl.from_settings(broker.settings())
    with psycopg.connect(db_url, autocommit=True) as conn:
        create_user(conn, name, "developer", [], actor="test")
        account, password = create_developer_account(conn, name, label=None, limit=5, actor="test",
                                                      apply=control.write)
    reload(broker.pid_file)
    return account.username, password
