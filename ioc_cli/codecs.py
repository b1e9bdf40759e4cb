"""``ioc codecs``: list the payload codecs, decode a payload by hand, run a codec's examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ingest.codecs.examples import load_examples, run_examples
from ingest.codecs.js_runtime import JsCodec, JsLimits
from ingest.codecs.library import EXAMPLES_FILE, MANIFEST_FILE, Codec, CodecLibrary
from ingest.normalise import normalise
from ioc_cli.environment import environment
from ioc_core.settings import IngestSettings, load

__all__ = ["register"]

_HELP = (
    "Payload codecs: the built-in codec folders and the JavaScript codecs in IOC_CODEC_DIR "
    "(ids js:<file name>)."
)


def register(app: typer.Typer) -> None:
    codecs = typer.Typer(help=_HELP, no_args_is_help=True)
    codecs.command("list", epilog=environment(IngestSettings))(list_codecs)
    codecs.command("decode", epilog=environment(IngestSettings))(decode_payload)
    codecs.command("test", epilog=environment(IngestSettings))(test_examples)
    app.add_typer(codecs, name="codecs")


def list_codecs() -> None:
    """List every codec: id, kind (builtin or javascript), name and the device models it serves."""
    settings = load(IngestSettings)
    library = _library(settings)
    table = Table(title="codecs")
    table.add_column("id", no_wrap=True)
    table.add_column("kind")
    table.add_column("name")
    table.add_column("models")
    for info in library.infos():
        table.add_row(escape(info.id), info.kind, escape(info.name), escape(", ".join(info.models)) or "-")
    Console().print(table)


def decode_payload(
    fport: Annotated[int, typer.Option("--fport", min=0, max=255, help="LoRaWAN fPort of the uplink.")],
    hex_payload: Annotated[
        str, typer.Option("--hex", help='Payload as hexadecimal; spaces are allowed ("01 67 00 E1").')
    ],
    codec_id: Annotated[
        str | None, typer.Option("--codec", help="Codec id, as `ioc codecs list` shows it.")
    ] = None,
    js_file: Annotated[
        Path | None,
        typer.Option("--js", exists=True, dir_okay=False, help="A JavaScript codec file to load and run."),
    ] = None,
    variables: Annotated[
        list[str] | None,
        typer.Option("--var", help="Device variable KEY=VALUE passed to JavaScript codecs; repeatable."),
    ] = None,
    with_normalise: Annotated[
        bool,
        typer.Option("--normalise", help="Also show the measurements ingest would store (on success)."),
    ] = False,
) -> None:
    """Decode one payload and print {data, warnings, errors} as JSON; exit 1 when the codec reports errors."""
    payload = _parse_hex(hex_payload)
    parsed_variables = _parse_variables(variables or [])
    if (codec_id is None) == (js_file is None):
        raise typer.BadParameter("give exactly one of --codec ID or --js FILE", param_hint="--codec/--js")
    settings = load(IngestSettings)
    codec: Codec
    if js_file is not None:
        codec = JsCodec.load(js_file, limits=JsLimits.from_settings(settings))
    else:
        library = _library(settings)
        if codec_id not in library:
            known = ", ".join(library) or "none"
            raise typer.BadParameter(f"unknown codec {codec_id!r} (known: {known})", param_hint="--codec")
        codec = library.get(str(codec_id))
    result = codec.decode(payload, fport, variables=parsed_variables or None)
    out: dict[str, Any] = result.as_json()
    if with_normalise and result.ok:
        out["normalised"] = normalise(result.data).as_json()
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    if result.errors:
        raise typer.Exit(1)


def test_examples(
    paths: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            help=(
                "Examples to run: a built-in codec folder or its examples.yaml, a JavaScript codec's "
                "<name>.yaml (its fileName, or <name>.js beside it, is the codec), or the .js file itself."
            ),
        ),
    ],
) -> None:
    """Run every example of the given codecs: PASS/FAIL per example, a summary, exit 1 on a failure."""
    settings = load(IngestSettings)
    limits = JsLimits.from_settings(settings)
    library: list[CodecLibrary] = []

    def builtins() -> CodecLibrary:
        # Discovered on first need only, so testing a JavaScript file does not import every built-in.
        if not library:
            library.append(CodecLibrary.discover())
        return library[0]

    console = Console(highlight=False)
    passed = failed = 0
    for path in paths:
        codec, examples_path = _resolve(path, builtins, limits)
        console.print(f"[bold]{escape(codec.id)}[/] {escape(str(examples_path))}")
        for outcome in run_examples(codec, load_examples(examples_path)):
            if outcome.passed:
                passed += 1
                console.print(f"  [green]PASS[/] {escape(outcome.example.label)}")
                continue
            failed += 1
            console.print(f"  [red]FAIL[/] {escape(outcome.example.label)}")
            for problem in outcome.problems:
                console.print(f"       {escape(problem)}")
    colour = "red" if failed else "green"
    console.print(f"[{colour}]{passed} passed, {failed} failed[/]")
    if failed:
        raise typer.Exit(1)


def _library(settings: IngestSettings) -> CodecLibrary:
    return CodecLibrary.discover(js_dir=settings.codec_dir, js_limits=JsLimits.from_settings(settings))


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split())
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not hexadecimal bytes (two hex digits per byte, e.g. 016700E1)", param_hint="--hex"
        ) from None


def _parse_variables(items: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--var")
        parsed[key] = value
    return parsed


def _resolve(path: Path, builtins: Callable[[], CodecLibrary], limits: JsLimits) -> tuple[Codec, Path]:
    """The codec and the examples file that ``ioc codecs test PATH`` means."""
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return _builtin(path, builtins)
        raise typer.BadParameter(f"{path} is not a codec folder (no {MANIFEST_FILE})", param_hint="PATH")
    if path.suffix == ".js":
        codec = JsCodec.load(path, limits=limits)
        if codec.examples_path is None:
            raise typer.BadParameter(f"no examples file ({path.stem}.yaml) beside {path}", param_hint="PATH")
        return codec, codec.examples_path
    if path.suffix not in (".yaml", ".yml"):
        raise typer.BadParameter(
            f"{path} is neither an examples YAML, a .js file nor a folder", param_hint="PATH"
        )
    if path.name == EXAMPLES_FILE and (path.parent / MANIFEST_FILE).is_file():
        return _builtin(path.parent, builtins)
    js_path = _js_beside(path)
    if js_path is None:
        raise typer.BadParameter(
            f"no JavaScript codec for {path}: set uplinkDecoder.fileName or put {path.stem}.js beside it",
            param_hint="PATH",
        )
    return JsCodec.load(js_path, limits=limits), path


def _builtin(folder: Path, builtins: Callable[[], CodecLibrary]) -> tuple[Codec, Path]:
    library = builtins()
    wanted = folder.resolve()
    for info in library.infos():
        if info.kind == "builtin" and info.source.resolve() == wanted and info.examples is not None:
            return library.get(info.id), info.examples
    raise typer.BadParameter(
        f"{folder} is not one of the built-in codec folders of this installation", param_hint="PATH"
    )


def _js_beside(examples: Path) -> Path | None:
    try:
        document = yaml.safe_load(examples.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        document = None  # load_examples reports the problem properly later
    decoder = document.get("uplinkDecoder") if isinstance(document, dict) else None
    file_name = decoder.get("fileName") if isinstance(decoder, dict) else None
    candidates = [examples.parent / file_name] if isinstance(file_name, str) else []
    stem = examples.stem
    candidates.append(examples.with_name(stem + ".js"))
    if stem.endswith("-codec"):
        candidates.append(examples.with_name(stem.removesuffix("-codec") + ".js"))
    return next((c for c in candidates if c.is_file()), None)
