"""``ioc api`` serves the IOC API; ``ioc users`` manages its users and their keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateways.database import connect
from ioc_cli.environment import environment
from ioc_cli.logs import setup_logging
from ioc_core.errors import FatalError, RefusedError
from ioc_core.settings import (
    ApiSettings,
    BrokerSettings,
    CapSettings,
    ChirpStackSettings,
    DatabaseSettings,
    FeedSettings,
    IngestSettings,
    OpenDataSettings,
    SopSettings,
    load,
)

__all__ = ["register"]

_ROLES = ("admin", "operator", "technician", "developer")


def register(app: typer.Typer) -> None:
    @app.command("api", epilog=environment(ApiSettings, DatabaseSettings, IngestSettings, ChirpStackSettings,
                                           BrokerSettings, OpenDataSettings, CapSettings, FeedSettings,
                                           SopSettings))
    def api_cmd() -> None:
        """Serve the IOC API (OpenAPI at /docs, routes under /api/v1, /healthz and /readyz).

        Listens on IOC_API_HOST:IOC_API_PORT (default 127.0.0.1:8000) and reads IOC_DATABASE_URL.
        Devices may use the models and codecs the ingest knows (built-ins and IOC_CODEC_DIR). With
        IOC_CHIRPSTACK_API, IOC_CHIRPSTACK_TOKEN and IOC_CHIRPSTACK_PROFILES(_FILE) set, registered devices are
        created in ChirpStack over gRPC, with retries in the background while ChirpStack is unreachable.
        The open-data routes read IOC_OPEN_DATA_LICENCE, IOC_OPEN_BASE_URL and the per-key limits IOC_OPEN_RATE_*
        and IOC_OPEN_EXPORTS_*. Request bodies are limited by IOC_API_BODY_MAX_BYTES, IOC_API_IMPORT_MAX_BYTES and
        IOC_API_ROUTE_BODY_MAX_BYTES, imports by IOC_API_IMPORT_MAX_ROWS and IOC_API_IMPORTS_*, waits by
        IOC_API_BODY_TIMEOUT_S, IOC_API_POOL_TIMEOUT_S and IOC_API_EXPORT_*_TIMEOUT_S. Public warnings (CAP 1.2)
        are issued as IOC_CAP_SENDER with identifiers under IOC_CAP_IDENTIFIER_PREFIX, published on the open feed
        under IOC_FEED_PREFIX, and their public routes limited by IOC_CAP_RATE_*. Incidents show the SOP cards of
        IOC_SOP_DIR (default: the shipped deploy/sop), validated here: a bad card stops start-up.
        """
        # FastAPI and uvicorn are imported here, not at start-up of every `ioc` command.
        import uvicorn

        from ingest.codecs.js_runtime import JsLimits
        from ingest.codecs.library import CodecLibrary
        from ioc_api.app import create_app
        from ioc_core.catalogue import DeviceCatalogue

        settings = load(ApiSettings)
        ingest = load(IngestSettings)
        codecs = CodecLibrary.discover(js_dir=ingest.codec_dir, js_limits=JsLimits.from_settings(ingest))
        catalogue = DeviceCatalogue.of((info.id, info.models) for info in codecs.infos())
        app = create_app(load(DatabaseSettings), settings, catalogue=catalogue, chirpstack=load(ChirpStackSettings),
                         open_data=load(OpenDataSettings), cap=load(CapSettings), feed=load(FeedSettings))
        setup_logging("INFO")
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")

    users = typer.Typer(help="API users and their keys.", no_args_is_help=True)

    @users.command("create", epilog=environment(DatabaseSettings))
    def create_cmd(
        name: Annotated[str, typer.Option(help="A unique name, e.g. ops-hai-chau.")],
        role: Annotated[str, typer.Option(help=f"One of {', '.join(_ROLES)}.")],
        zone: Annotated[list[str] | None, typer.Option(help="Zone code this user is limited to; repeatable.")] = None,
    ) -> None:
        """Create a user and print its API key (shown this once; only a hash is stored)."""
        from ioc_api.queries.users import create_user

        if role not in _ROLES:
            raise FatalError(f"--role must be one of {', '.join(_ROLES)}")
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                user, key = create_user(conn, name, role, zone or [], actor="cli")
            except RefusedError as err:
                raise FatalError(err.message) from err
        Console(stderr=True).print(f"created {user.name} ({user.role}); the key is shown once:")
        print(key.key)

    @users.command("revoke", epilog=environment(DatabaseSettings, BrokerSettings))
    def revoke_cmd(name: Annotated[str, typer.Argument(help="The user whose key stops working.")]) -> None:
        """Revoke a user's key at once, with the user's MQTT credentials (the broker reloads when managed)."""
        from ioc_api.broker import BrokerControl
        from ioc_api.queries.mqtt_accounts import apply_current
        from ioc_api.queries.users import revoke_user

        broker = BrokerControl.from_settings(load(BrokerSettings))
        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            try:
                user = revoke_user(conn, name, actor="cli")
                if user.role == "developer":
                    apply_current(conn, broker.write)
            except RefusedError as err:
                raise FatalError(err.message) from err
        Console().print(f"revoked {name}")
        if user.role == "developer":
            Console().print(f"broker: {broker.reload().detail}")

    @users.command("list", epilog=environment(DatabaseSettings))
    def list_cmd() -> None:
        """List users, roles, zones and whether their key still works."""
        from ioc_api.queries.users import list_users

        with connect(load(DatabaseSettings).dsn, autocommit=True) as conn:
            rows = list_users(conn)
        table = Table(title="API users")
        for col in ("name", "role", "zones", "created", "revoked"):
            table.add_column(col)
        for u in rows:
            table.add_row(u.name, u.role, ", ".join(u.zones) or "-", u.created_at.isoformat(timespec="seconds"),
                          u.revoked_at.isoformat(timespec="seconds") if u.revoked_at else "")
        Console().print(table)

    app.add_typer(users, name="users")
