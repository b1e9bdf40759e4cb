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
    BrokerConfig,
    TlsListener,
    reload,
    write_access_files,
    write_config,
)
from ioc_core.errors import FatalError
from ioc_core.settings import BrokerSettings, DatabaseSettings, load

__all__ = ["register"]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _address(value: str, option: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOSTNAME.match(value):
            return value
    raise FatalError(f"{option} must be an IP address or a host name, got {value!r}")


def register(app: typer.Typer) -> None:
    broker = typer.Typer(
        help=(
            "The MQTT broker (Mosquitto): configuration, passwords and ACL written from the database. Service "
            "accounts: chirpstack (publishes application/#) and ioc-ingest (reads application/#, writes ioc/#); "
            "developers read ioc/v1/# only and manage their credentials through the API. Reads IOC_DATABASE_URL."
        ),
        no_args_is_help=True,
    )

    @broker.command("config")
    def config_cmd(
        out: Annotated[Path, typer.Option("--out", help="Folder to write mosquitto.conf, passwords and acl into "
                                          "(created when missing).", file_okay=False)],
        internal_host: Annotated[str, typer.Option(help="Address of the plain listener for the platform's "
                                                   "services; keep it private.")] = "127.0.0.1",
        internal_port: Annotated[int, typer.Option(help="Port of the plain listener.", min=1, max=65535)] = 1883,
        tls_port: Annotated[int, typer.Option(help="Port of the TLS listener for developers (with --tls-cert).",
                                              min=1, max=65535)] = 8883,
        tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM) of the TLS listener; without "
                                                      "it there is no TLS listener.")] = None,
        tls_key: Annotated[Path | None, typer.Option(help="Private key (PEM) of --tls-cert.")] = None,
        tls_ca: Annotated[Path | None, typer.Option(help="CA certificates (PEM) of the server's chain.")] = None,
        tls_host: Annotated[str | None, typer.Option(help="Address the TLS listener binds to; default: every "
                                                     "interface.")] = None,
        data_dir: Annotated[Path | None, typer.Option(help="Persistence folder; default OUT/data.",
                                                      file_okay=False)] = None,
        run_as: Annotated[str | None, typer.Option(help="Account mosquitto drops to when started as root "
                                                   "(its default: mosquitto).")] = None,
    ) -> None:
        """Write mosquitto.conf, passwords and acl into OUT from the accounts in the database.

        Creates the service accounts chirpstack and ioc-ingest when missing and prints their passwords once.

        Only Mosquitto's hash of a password is stored. Anonymous access is off.

        Run it again after changing options: accounts and passwords stay as they are.
        """
        from ioc_api.errors import ApiError
        from ioc_api.queries.mqtt_accounts import broker_users, ensure_service_accounts

        if (tls_cert is None) != (tls_key is None):
            raise FatalError("--tls-cert and --tls-key go together")
        if tls_ca is not None and tls_cert is None:
            raise FatalError("--tls-ca needs --tls-cert and --tls-key")
        if run_as is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", run_as):
            raise FatalError(f"--run-as must be a system account name, got {run_as!r}")
        tls = None
        if tls_cert is not None and tls_key is not None:
            if tls_port == internal_port:
                raise FatalError("--tls-port must differ from --internal-port")
            for path, option in ((tls_cert, "--tls-cert"), (tls_key, "--tls-key"), (tls_ca, "--tls-ca")):
                if path is not None and not path.is_file():
                    raise FatalError(f"{option}: {path} is not a readable file")
            tls = TlsListener(tls_port, tls_cert.absolute(), tls_key.absolute(),
                              tls_ca.absolute() if tls_ca else None,
                              _address(tls_host, "--tls-host") if tls_host else None)
        config = BrokerConfig(out.absolute(), _address(internal_host, "--internal-host"), internal_port, tls,
                              data_dir.absolute() if data_dir else None, run_as)

        def apply(conn: Connection) -> None:
            write_config(config, broker_users(conn))

        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                created = ensure_service_accounts(conn, actor="cli", apply=apply)
            except ApiError as err:
                raise FatalError(err.message) from err
        note = Console(stderr=True, highlight=False)
        note.print(f"wrote {CONF_FILE}, passwords and acl into {config.directory}")
        if created:
            note.print("new service accounts; their passwords are shown once:")
            for username, password in created.items():
                print(f"{username} {password}")
            if "ioc-ingest" in created:
                note.print(f"ingest workers: IOC_MQTT_URL=mqtt://ioc-ingest:<password>@{internal_host}:{internal_port}")
        if run_as != getpass.getuser():
            # The files are 0640 and owned by whoever ran this; Mosquitto reads them again at every reload.
            note.print(f"mosquitto runs as {run_as or 'mosquitto'}: give it the folder, e.g.  chgrp -R "
                       f"{run_as or 'mosquitto'} {config.directory} && chmod 2750 {config.directory} && "
                       f"chmod -R g+w {config.data_dir or config.directory / 'data'}")
        note.print(f"start the broker:  mosquitto -c {config.directory / CONF_FILE}")
        note.print(f"let the API manage developers' credentials:  IOC_BROKER_CONFIG_DIR={config.directory} "
                  f"IOC_BROKER_PID_FILE={config.pid_file}")

    @broker.command("reload")
    def reload_cmd() -> None:
        """Write passwords and acl from the database and tell the broker to reload them.

        Writes into IOC_BROKER_CONFIG_DIR and sends SIGHUP to the process in IOC_BROKER_PID_FILE.

        Connected clients stay connected unless their account was revoked.
        """
        from ioc_api.queries.mqtt_accounts import apply_current

        settings = load(BrokerSettings)
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            apply_current(conn, _writer(settings, required=True))
        _signal(settings)

    @broker.command("rotate")
    def rotate_cmd(
        username: Annotated[str, typer.Argument(help="The service account: chirpstack or ioc-ingest.")],
    ) -> None:
        """Give a service account a new password and print it once; the old one stops working at the reload.

        Writes the files into IOC_BROKER_CONFIG_DIR and reloads the broker (IOC_BROKER_PID_FILE) when they are set.
        """
        from ioc_api.errors import ApiError
        from ioc_api.queries.mqtt_accounts import rotate_service_account

        settings = load(BrokerSettings)
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                password = rotate_service_account(conn, username, actor="cli", apply=_writer(settings))
            except ApiError as err:
                raise FatalError(err.message) from err
        Console(stderr=True).print(f"new password of {username}, shown once:")
        print(password)
        _signal(settings)

    @broker.command("list")
    def list_cmd(
        all_: Annotated[bool, typer.Option("--all", help="Revoked accounts too.")] = False,
    ) -> None:
        """List the broker accounts: service accounts and developers' credentials (never their passwords)."""
        from ioc_api.queries.mqtt_accounts import list_accounts

        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            rows = list_accounts(conn, include_revoked=all_)
        table = Table(title="MQTT accounts")
        for col in ("username", "role", "owner", "created", "revoked"):
            table.add_column(col)
        for a in rows:
            table.add_row(a.username, a.role, a.owner or "-", a.created_at.isoformat(timespec="seconds"),
                          a.revoked_at.isoformat(timespec="seconds") if a.revoked_at else "")
        Console().print(table)

    app.add_typer(broker, name="broker")


def _writer(settings: BrokerSettings, *, required: bool = False) -> Callable[[Connection], None]:
    from ioc_api.queries.mqtt_accounts import broker_users

    directory = settings.broker_config_dir
    if directory is None:
        if required:
            raise FatalError("IOC_BROKER_CONFIG_DIR is not set: name the folder `ioc broker config --out` wrote")
        Console(stderr=True).print("IOC_BROKER_CONFIG_DIR is not set: the change is stored, no file was written")
        return lambda _conn: None
    return lambda conn: write_access_files(directory, broker_users(conn))


def _signal(settings: BrokerSettings) -> None:
    err = Console(stderr=True, highlight=False)
    if settings.broker_config_dir is None:
        return
    if settings.broker_pid_file is None:
        err.print(f"wrote passwords and acl in {settings.broker_config_dir}; IOC_BROKER_PID_FILE is not set, so "
                  "the broker applies them at its next reload or restart")
        return
    pid = reload(settings.broker_pid_file)
    err.print(f"wrote passwords and acl in {settings.broker_config_dir} and told mosquitto (pid {pid}) to reload")
