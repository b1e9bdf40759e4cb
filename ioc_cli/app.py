"""Entry point of the ``ioc`` console command."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup, TyperOption

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
    "ioc_cli.operations",
    "ioc_cli.notify",
)


class _FlagsWithoutType:
    """Typer's rich help writes ``<bool>`` beside every flag (``--help <bool>``), as if it took a value: a flag
    shows no type here, as in plain click."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    pass


class _Group(_FlagsWithoutType, TyperGroup):
    pass


def _use_our_classes(app: typer.Typer) -> None:
    """Every command and group of ``app`` built with the classes above, whichever module registered it."""
    if app.info.cls in (None, TyperGroup) or not isinstance(app.info.cls, type):  # unset: a placeholder
        app.info.cls = _Group
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # Typer's default; a module's own class stays
            command.cls = _Command
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _use_our_classes(group.typer_instance)


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
    _use_our_classes(app)
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
