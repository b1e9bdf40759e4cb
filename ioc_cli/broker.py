"""``ioc broker``: Mosquitto's configuration, password and ACL files from the database, and its reload."""

from __future__ import annotations

import getpass
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import Connection, connect
from gateways.mosquitto_files import (
    CONF_FILE,
    INTERNAL,
    INTERNAL_MESSAGE_BYTES,
    PUBLIC,
    BrokerConfig,
    Listener,
    PublicLimits,
    TlsFiles,
    pid_file,
    reload,
    write_access_files,
    write_config,
)
from ioc_cli.environment import environment
from ioc_core.errors import FatalError, RefusedError
from ioc_core.mqtt_access import ROLE_PLACE, SERVICE_ACCOUNTS
from ioc_core.settings import BrokerSettings, DatabaseSettings, load

__all__ = ["register"]

_LIMITS = PublicLimits()  # the defaults of the public broker's limits, in one place
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _address(value: str, option: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOSTNAME.match(value):
            return value
    raise FatalError(f"{option} must be an IP address or a host name, got {value!r}")


def _tls(port: int, cert: Path | None, key: Path | None, ca: Path | None, host: str | None) -> Listener | None:
    if (cert is None) != (key is None):
        raise FatalError("--tls-cert and --tls-key go together")
    if ca is not None and cert is None:
        raise FatalError("--tls-ca needs --tls-cert and --tls-key")
    if cert is None or key is None:
        return None
    for path, option in ((cert, "--tls-cert"), (key, "--tls-key"), (ca, "--tls-ca")):
        if path is not None and not path.is_file():
            raise FatalError(f"{option}: {path} is not a readable file")
    return Listener(port, _address(host, "--tls-host") if host else None,
                    TlsFiles(cert.absolute(), key.absolute(), ca.absolute() if ca else None))


def register(app: typer.Typer) -> None:
    broker = typer.Typer(
        help=(
            "The two MQTT brokers (Mosquitto), configured from the database. The internal broker carries "
            "ChirpStack's events (application/#) for the ingest: service accounts chirpstack and ioc-ingest "
            "only. The public broker carries the open feed (ioc/v1/#), which the ingest publishes there as "
            "ioc-feed; developers read ioc/v1/# only and manage their credentials through the API. "
            "Reads IOC_DATABASE_URL."
        ),
        no_args_is_help=True,
    )

    @broker.command("config", epilog=environment(DatabaseSettings))
    def config_cmd(
        out: Annotated[Path, typer.Option("--out", help="Folder to write internal/ and public/ into (created "
                                          "when missing).", file_okay=False)],
        internal_host: Annotated[str, typer.Option(help="Address of the internal broker (ChirpStack and the "
                                                   "ingest); keep it private.")] = "127.0.0.1",
        internal_port: Annotated[int, typer.Option(help="Port of the internal broker.", min=1, max=65535)] = 1883,
        public_host: Annotated[str | None, typer.Option(help="Address of the public broker's plain listener for "
                                                        "developers; empty: every interface.")] = "127.0.0.1",
        public_port: Annotated[int, typer.Option(help="Port of that listener; 0: none (TLS only).", min=0,
                                                 max=65535)] = 1884,
        service_host: Annotated[str, typer.Option(help="Address of the public broker's service listener (the "
                                                  "feed publisher and the API); keep it private.")] = "127.0.0.1",
        service_port: Annotated[int, typer.Option(help="Port of the service listener.", min=1, max=65535)] = 1885,
        tls_port: Annotated[int, typer.Option(help="Port of the public broker's TLS listener for developers "
                                              "(with --tls-cert).", min=1, max=65535)] = 8883,
        tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM) of the TLS listener; without "
                                                      "it there is no TLS listener.")] = None,
        tls_key: Annotated[Path | None, typer.Option(help="Private key (PEM) of --tls-cert.")] = None,
        tls_ca: Annotated[Path | None, typer.Option(help="CA certificates (PEM) of the server's chain.")] = None,
        tls_host: Annotated[str | None, typer.Option(help="Address the TLS listener binds to; default: every "
                                                     "interface.")] = None,
        session_expiry_hours: Annotated[int, typer.Option(help="Public broker: longest a developer's session "
                                                          "outlives its connection.", min=1, max=8760)]
        = _LIMITS.session_expiry_hours,
        queue_messages: Annotated[int, typer.Option(help="Public broker: QoS 1 messages queued per client.",
                                                    min=1)] = _LIMITS.queued_messages,
        queue_bytes: Annotated[int, typer.Option(help="Public broker: bytes queued per client.", min=1024)]
        = _LIMITS.queued_bytes,
        max_connections: Annotated[int, typer.Option(help="Public broker: connections per developer listener.",
                                                     min=1)] = _LIMITS.connections,
        message_size: Annotated[int, typer.Option(help="Public broker: largest message, in bytes.", min=1024)]
        = _LIMITS.message_bytes,
        memory_mb: Annotated[int, typer.Option(help="Public broker: heap limit in MiB.", min=16)] = _LIMITS.memory_mb,
        internal_message_size: Annotated[int, typer.Option(
            help="Internal broker: largest message, in bytes (ChirpStack's largest real event is ~48 KiB).",
            min=64 * 1024)] = INTERNAL_MESSAGE_BYTES,
        run_as: Annotated[str | None, typer.Option(help="Account mosquitto drops to when started as root "
                                                   "(its default: mosquitto).")] = None,
    ) -> None:
        """Write both brokers' mosquitto.conf, passwords and acl into OUT/internal and OUT/public.

        Creates the service accounts chirpstack, ioc-ingest, ioc-feed and ioc-api when missing and prints
        their passwords once.

        Only Mosquitto's hash of a password is stored. Anonymous access is off on every listener.

        Run it again after changing options: accounts and passwords stay as they are.
        """
        from ioc_api.queries.mqtt_accounts import broker_users, ensure_service_accounts

        if run_as is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", run_as):
            raise FatalError(f"--run-as must be a system account name, got {run_as!r}")
        developers = []
        if public_port:
            developers.append(Listener(public_port, _address(public_host, "--public-host") if public_host else None))
        tls = _tls(tls_port, tls_cert, tls_key, tls_ca, tls_host)
        if tls is not None:
            developers.append(tls)
        if not developers:
            raise FatalError("--public-port 0 needs a TLS listener (--tls-cert, --tls-key): developers need a door")
        ports = [service_port, *(d.port for d in developers)]
        if len(set(ports)) != len(ports):
            raise FatalError("the public broker's ports (--service-port, --public-port, --tls-port) must differ")
        if internal_port in ports and _address(internal_host, "--internal-host") in (
                service_host, public_host, tls_host, None):
            raise FatalError("--internal-port must differ from the public broker's ports on the same address")
        config = BrokerConfig(
            out.absolute(), Listener(internal_port, _address(internal_host, "--internal-host")),
            Listener(service_port, _address(service_host, "--service-host")), tuple(developers),
            PublicLimits(session_expiry_hours, queue_messages, queue_bytes, message_size,
                         max(message_size * 2, _LIMITS.packet_bytes), max_connections, memory_mb),
            internal_message_size, run_as)

        def apply(conn: Connection) -> None:
            write_config(config, broker_users(conn))

        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                created = ensure_service_accounts(conn, actor="cli", apply=apply)
            except RefusedError as err:
                raise FatalError(err.message) from err
        note = Console(stderr=True, highlight=False)
        note.print(f"wrote the internal broker into {config.folder(INTERNAL)} and the public one into "
                   f"{config.folder(PUBLIC)}")
        if created:
            note.print("new service accounts; their passwords are shown once:")
            for username, password in created.items():
                print(f"{username} {password}")
        internal = f"{internal_host}:{internal_port}"
        service = f"{service_host}:{service_port}"
        note.print(f"ChirpStack:  [integration.mqtt] server = \"tcp://{internal}\", username = \"chirpstack\"")
        note.print(f"ingest:      IOC_MQTT_URL=mqtt://ioc-ingest:<password>@{internal}  "
                   f"IOC_FEED_URL=mqtt://ioc-feed:<password>@{service}")
        note.print(f"API:         IOC_BROKER_CONFIG_DIR={config.directory} "
                   f"IOC_BROKER_PID_FILE={pid_file(config.directory, PUBLIC)} "
                   f"IOC_BROKER_ADMIN_URL=mqtt://ioc-api:<password>@{service} "
                   f"IOC_BROKER_PUBLIC_URL=<how developers reach a developer listener>")
        if run_as != getpass.getuser():
            # The files are 0640 and owned by whoever ran this; Mosquitto reads them again at every reload.
            who = run_as or "mosquitto"
            note.print(f"mosquitto runs as {who}: give it the folders, e.g.  chgrp -R {who} {config.directory} && "
                       f"chmod -R g+rwX {config.directory} && chmod g+s {config.folder(INTERNAL)} "
                       f"{config.folder(PUBLIC)}")
        note.print(f"start the brokers:  mosquitto -c {config.folder(INTERNAL) / CONF_FILE}   and   "
                   f"mosquitto -c {config.folder(PUBLIC) / CONF_FILE}")

    @broker.command("reload", epilog=environment(DatabaseSettings, BrokerSettings))
    def reload_cmd() -> None:
        """Write both brokers' passwords and acl from the database and tell the running brokers to reload them.

        Writes into IOC_BROKER_CONFIG_DIR and sends SIGHUP to each broker whose pid file is there (the public
        one's may be named by IOC_BROKER_PID_FILE).

        Connected clients stay connected unless their account was revoked.
        """
        from ioc_api.queries.mqtt_accounts import apply_current

        settings = load(BrokerSettings)
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            apply_current(conn, _writer(settings, required=True))
        _signal(settings, (INTERNAL, PUBLIC))

    @broker.command("rotate", epilog=environment(DatabaseSettings, BrokerSettings))
    def rotate_cmd(
        username: Annotated[str, typer.Argument(help="The service account: chirpstack, ioc-ingest, ioc-feed or "
                                                "ioc-api.")],
    ) -> None:
        """Give a service account a new password and print it once; the old one stops working at the reload.

        Writes the files into IOC_BROKER_CONFIG_DIR and reloads the account's broker when they are set.
        """
        from ioc_api.queries.mqtt_accounts import rotate_service_account

        settings = load(BrokerSettings)
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                password = rotate_service_account(conn, username, actor="cli", apply=_writer(settings))
            except RefusedError as err:
                raise FatalError(err.message) from err
        Console(stderr=True).print(f"new password of {username}, shown once:")
        print(password)
        _signal(settings, (INTERNAL if ROLE_PLACE[SERVICE_ACCOUNTS[username]] == "internal" else PUBLIC,))

    @broker.command("list", epilog=environment(DatabaseSettings))
    def list_cmd(
        all_: Annotated[bool, typer.Option("--all", help="Revoked accounts too.")] = False,
    ) -> None:
        """List the broker accounts: service accounts and developers' credentials (never their passwords)."""
        from ioc_api.queries.mqtt_accounts import list_accounts

        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            rows = list_accounts(conn, include_revoked=all_)
        table = Table(title="MQTT accounts")
        for col in ("username", "role", "broker", "owner", "created", "revoked"):
            table.add_column(col)
        for a in rows:
            place = ROLE_PLACE.get(a.role, "developer")  # type: ignore[call-overload]
            table.add_row(a.username, a.role, "internal" if place == "internal" else "public", a.owner or "-",
                          a.created_at.isoformat(timespec="seconds"),
                          a.revoked_at.isoformat(timespec="seconds") if a.revoked_at else "")
        Console().print(table)

    app.add_typer(broker, name="broker")


def _writer(settings: BrokerSettings, *, required: bool = False) -> Callable[[Connection], None]:
    from ioc_api.queries.mqtt_accounts import broker_users

    directory = settings.config_dir
    if directory is None:
        if required:
            raise FatalError("IOC_BROKER_CONFIG_DIR is not set: name the folder `ioc broker config --out` wrote")
        Console(stderr=True).print("IOC_BROKER_CONFIG_DIR is not set: the change is stored, no file was written")
        return lambda _conn: None

    def write(conn: Connection) -> None:
        write_access_files(directory, broker_users(conn))

    return write


def _signal(settings: BrokerSettings, brokers: tuple[str, ...]) -> None:
    err = Console(stderr=True, highlight=False)
    directory = settings.config_dir
    if directory is None:
        return
    for name in brokers:
        path = settings.pid_file if name == PUBLIC and settings.pid_file else pid_file(directory, name)
        if not path.exists():
            err.print(f"wrote the {name} broker's passwords and acl; it is not running here ({path} does not "
                      "exist), so it applies them when it starts")
            continue
        pid = reload(path)
        err.print(f"wrote the {name} broker's passwords and acl and told mosquitto (pid {pid}) to reload")
