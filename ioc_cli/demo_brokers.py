"""The demo's two brokers: the same configuration `ioc broker config` writes, started as local processes.

The demo runs what production runs: an internal broker that only ChirpStack (here the simulator) and the
ingest may use, and a public broker that carries the open feed to developers, with a demo developer's
credentials ready for `mosquitto_sub`.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from gateways.database import Connection
from gateways.local_mosquitto import LocalMosquitto
from gateways.local_postgres import free_port
from gateways.mosquitto_files import INTERNAL, PUBLIC, BrokerConfig, Listener, pid_file, write_config
from ioc_api.queries.mqtt_accounts import (
    apply_current,
    broker_users,
    create_developer_account,
    rotate_service_account,
)
from ioc_api.queries.users import create_user
from ioc_core.mqtt_access import SERVICE_ACCOUNTS
from ioc_core.settings import BrokerSettings, MqttUrl

__all__ = ["DemoBrokers", "start_demo_brokers"]

_DEVELOPER = "demo-developer"


@dataclass(frozen=True, slots=True)
class DemoBrokers:
    internal_port: int
    public_port: int  # the developer listener
    service_port: int
    passwords: dict[str, str]  # the service accounts', new at every start
    developer: tuple[str, str]  # a demo developer's MQTT username and password
    directory: Path

    def url(self, username: str, port: int) -> str:
        return f"mqtt://{username}:{self.passwords[username]}@127.0.0.1:{port}"

    @property
    def ingest_url(self) -> str:
        return self.url("ioc-ingest", self.internal_port)

    @property
    def chirpstack_url(self) -> str:
        return self.url("chirpstack", self.internal_port)

    @property
    def feed_url(self) -> str:
        return self.url("ioc-feed", self.service_port)

    def api_settings(self) -> BrokerSettings:
        """The API manages developers' credentials on the public broker and ends revoked sessions."""
        return BrokerSettings(config_dir=self.directory, pid_file=pid_file(self.directory, PUBLIC),
                              public_url=f"mqtt://127.0.0.1:{self.public_port}",
                              admin_url=MqttUrl.parse(self.url("ioc-api", self.service_port)))


def start_demo_brokers(stack: ExitStack, conn: Connection, work: Path) -> DemoBrokers:
    """Write both brokers' files under ``work``, start them, and stop them when ``stack`` closes."""
    directory = work / "brokers"
    ports = {name: free_port() for name in ("internal", "public", "service")}
    # As root Mosquitto would drop to the `mosquitto` account, which cannot read a root-owned demo folder.
    config = BrokerConfig(directory, internal=Listener(ports["internal"]), service=Listener(ports["service"]),
                          developers=(Listener(ports["public"]),), run_as="root" if os.geteuid() == 0 else None)
    # The demo database outlives runs; the service passwords are shown only once, so each run sets new ones.
    passwords = {name: rotate_service_account(conn, name, actor="ioc demo", apply=lambda _c: None)
                 for name in SERVICE_ACCOUNTS}
    conn.execute("UPDATE mqtt_accounts SET revoked_at = now() WHERE role = 'developer' AND revoked_at IS NULL "
                 "AND user_id = (SELECT id FROM api_users WHERE name = %s)", (_DEVELOPER,))
    if conn.execute("SELECT 1 FROM api_users WHERE name = %s", (_DEVELOPER,)).fetchone() is None:
        create_user(conn, _DEVELOPER, "developer", [], actor="ioc demo")
    account, password = create_developer_account(conn, _DEVELOPER, label=None, limit=5, actor="ioc demo",
                                                  apply=lambda _c: None)

    def write(c: Connection) -> None:
        write_config(config, broker_users(c))

    apply_current(conn, write)
    internal = LocalMosquitto(work / "mosquitto-internal", port=ports["internal"],
                              config_file=config.folder(INTERNAL) / "mosquitto.conf")
    public = LocalMosquitto(work / "mosquitto-public", port=ports["service"],
                            config_file=config.folder(PUBLIC) / "mosquitto.conf")
    internal.start()
    stack.callback(internal.stop)
    public.start()
    stack.callback(public.stop)
    return DemoBrokers(ports["internal"], ports["public"], ports["service"], passwords,
                       (account.username, password), directory)
