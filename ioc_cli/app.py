"""Entry point of the ``ioc`` console command."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ioc_core.errors import IocError

__all__ = ["build_app", "main"]

# Each module adds its commands through ``register(app)``; listed explicitly so a broken module fails loudly.
_COMMAND_MODULES = (
    "ioc_cli.db",
    "ioc_cli.codecs",
    "ioc_cli.ingest",
    "ioc_cli.deadletters",
    "ioc_cli.simulate",
    "ioc_cli.demo",
    "ioc_cli.api",
    "ioc_cli.zones",
    "ioc_cli.feed",
    "ioc_cli.broker",
    "ioc_cli.dashboards",
    "ioc_cli.devices",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="ioc",
        help=(
            "IOC platform: LoRaWAN sensor data from ChirpStack v4 over MQTT into TimescaleDB/PostgreSQL.\n\n"
            "Configuration comes from IOC_* environment variables; IOC_DATABASE_URL and IOC_MQTT_URL "
            "name the database and the broker. Start with `ioc demo`."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main() -> None:
    err = Console(stderr=True)
    try:
        build_app()(standalone_mode=True)
    except IocError as exc:  # fatal, or a dependency still unavailable: one line, no traceback
        # Escaped: a message quoting user input ("[/x]" as a name) must not be read as rich markup; soft_wrap keeps
        # a long message on one line for whoever greps the log.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
