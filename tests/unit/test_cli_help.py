"""Every ``ioc`` command's --help: it names the IOC_ variables the command reads, and shows no type for flags.

The walk covers whatever commands ``build_app()`` has, so a new command must declare its environment
(``epilog=environment(...)`` from ioc_cli.environment) to pass.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

import ioc_core.settings
from ioc_cli.app import build_app
from ioc_cli.environment import MARKER, settings_variables

# Read with os.environ rather than through a settings class.
_READ_DIRECTLY = {"IOC_DEMO_DIR", "IOC_RUN_SH"}
_SETTINGS = {name: cls for name in ioc_core.settings.__all__
             if isinstance(cls := getattr(ioc_core.settings, name), type) and issubclass(cls, BaseSettings)}


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if hasattr(command, "list_commands"):
        ctx = typer.Context(command)
        for name in command.list_commands(ctx):
            yield from _walk(command.get_command(ctx, name), (*path, name))


_COMMANDS = list(_walk(typer.main.get_command(build_app())))
_LEAVES = [(path, command) for path, command in _COMMANDS if not hasattr(command, "list_commands")]


def _option_variables(command: Any) -> set[str]:
    return {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}


_KNOWN = {v for cls in _SETTINGS.values() for v in settings_variables(cls)} | _READ_DIRECTLY \
    | {v for _, command in _LEAVES for v in _option_variables(command)}


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(build_app(), [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _declared(text: str) -> list[str]:
    assert MARKER in text, "the help declares no environment: add epilog=environment(...) to the command"
    return re.findall(r"\bIOC_[A-Z0-9_]+", text.split(MARKER, 1)[1])


def _reads(callback: Any) -> set[str]:
    """What the command's code visibly reads: settings classes passed to load(), IOC_ names looked up in
    os.environ, in the command's function and in the module's private helpers it calls."""
    function = inspect.unwrap(callback)
    module = inspect.getmodule(function)
    sources = [inspect.getsource(function)]
    for helper in set(re.findall(r"\b(_[a-z]\w*)\(", sources[0])):
        target = getattr(module, helper, None)
        if inspect.isfunction(target):
            sources.append(inspect.getsource(target))
    code = "\n".join(sources)
    names = {v for cls in re.findall(r"\bload\((\w+)\)", code) for v in settings_variables(_SETTINGS[cls])}
    return names | set(re.findall(r"os\.environ(?:\.get\(|\[)\s*\"(IOC_[A-Z0-9_]+)\"", code)) \
        | set(re.findall(r"\"(IOC_[A-Z0-9_]+)\" (?:not )?in os\.environ", code))


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in _LEAVES}
    assert {"ingest", "users create", "zones list", "dashboards check", "db migrate"} <= names


@pytest.mark.parametrize(("path", "command"), _LEAVES, ids=[" ".join(p) for p, _ in _LEAVES])
def test_help_names_the_variables_the_command_reads(path: tuple[str, ...], command: Any) -> None:
    declared = _declared(_help(path))
    assert len(declared) == len(set(declared)), declared
    assert set(declared) <= _KNOWN, f"not a variable the platform reads: {set(declared) - _KNOWN}"
    options = _option_variables(command)
    assert options <= set(declared), f"options read {options - set(declared)}"
    read = _reads(command.callback)
    assert read <= set(declared), f"the code reads {sorted(read - set(declared))} but the help does not say so"


@pytest.mark.parametrize("path", [p for p, _ in _COMMANDS], ids=[" ".join(p) or "ioc" for p, _ in _COMMANDS])
def test_no_type_or_default_noise_for_flags(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "<bool>" not in text and "[default: False]" not in text, text
