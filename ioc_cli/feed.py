"""``ioc feed``: the open MQTT feed's AsyncAPI document."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ingest.feed.asyncapi import asyncapi_document, render_yaml
from ioc_cli.environment import environment

__all__ = ["DEFAULT_ASYNCAPI_PATH", "register"]

DEFAULT_ASYNCAPI_PATH = Path("docs/asyncapi.yaml")


def register(app: typer.Typer) -> None:
    feed = typer.Typer(help="The open MQTT feed (ioc/v1/...) the ingest publishes.", no_args_is_help=True)

    @feed.command("asyncapi", epilog=environment())
    def asyncapi_cmd(
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Where to write the document; '-' for standard output.")
        ] = DEFAULT_ASYNCAPI_PATH,
    ) -> None:
        """Write the feed's AsyncAPI 3.0 document (topics, payload schemas, examples), generated from the code.

        Run it from the repository root after changing the feed's payloads: a test fails while the committed
        docs/asyncapi.yaml differs from what this command writes.
        """
        text = render_yaml(asyncapi_document())
        if str(out) == "-":
            sys.stdout.write(text)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")

    app.add_typer(feed, name="feed")
