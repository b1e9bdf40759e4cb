"""``ioc codecs list | decode | test`` through Typer's test runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from ingest.codecs.errors import CodecLoadError
from ioc_cli import codecs as codecs_cli

JS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "js_codecs"
CAYENNE = Path(codecs_cli.__file__).resolve().parent.parent / "ingest" / "codecs" / "builtin" / "cayenne_lpp"
# Tests must not see an IOC_CODEC_DIR from the developer's shell; wide output keeps messages on one line.
BASE_ENV: dict[str, str | None] = {"IOC_CODEC_DIR": None, "COLUMNS": "200"}
_BOX = str.maketrans("", "", "│╭╮╰╯─")


def _app() -> typer.Typer:
    try:
        from ioc_cli.app import build_app

        return build_app()
    except ImportError:
        # Other command modules may not exist yet; the codecs group registers the same way on its own.
        app = typer.Typer(
            name="ioc", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
        )
        codecs_cli.register(app)

        @app.callback()
        def _root() -> None:
            """ioc"""

        return app


APP = _app()


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(APP, list(args), env={**BASE_ENV, **(env or {})})


def flat(output: str) -> str:
    """The text of Typer's error boxes without the frame, on one line."""
    return " ".join(output.translate(_BOX).split())


@pytest.mark.parametrize("command", [[], ["list"], ["decode"], ["test"]])
def test_help(command: list[str]) -> None:
    result = run("codecs", *command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_explains_the_commands() -> None:
    assert "IOC_CODEC_DIR" in run("codecs", "--help").output
    assert "--normalise" in run("codecs", "decode", "--help").output
    assert "examples.yaml" in run("codecs", "test", "--help").output


def test_list_shows_builtins() -> None:
    result = run("codecs", "list")
    assert result.exit_code == 0, result.output
    assert "cayenne-lpp" in result.output and "builtin" in result.output
    assert "js:" not in result.output


def test_list_includes_js_codecs_from_the_codec_dir() -> None:
    result = run("codecs", "list", env={"IOC_CODEC_DIR": str(JS_FIXTURES)})
    assert result.exit_code == 0, result.output
    assert "js:tts_environment" in result.output and "javascript" in result.output


def test_list_fails_on_a_broken_codec_dir() -> None:
    result = run("codecs", "list", env={"IOC_CODEC_DIR": str(JS_FIXTURES / "broken")})
    assert isinstance(result.exception, CodecLoadError)


def test_decode_prints_json() -> None:
    result = run("codecs", "decode", "--codec", "cayenne-lpp", "--fport", "2", "--hex", "01 67 00E1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"data": {"temperature_1": 22.5}, "warnings": [], "errors": []}


def test_decode_with_normalise() -> None:
    result = run(
        "codecs", "decode", "--codec", "cayenne-lpp", "--fport", "2", "--hex", "016700E1", "--normalise"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    temperature = out["normalised"]["measurements"]["temperature"]
    assert temperature == {"value": 22.5, "unit": "Cel", "quality": "good"}


def test_decode_exits_1_when_the_codec_reports_errors() -> None:
    result = run("codecs", "decode", "--codec", "cayenne-lpp", "--fport", "2", "--hex", "0167")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["errors"] and "truncated payload" in out["errors"][0]


@pytest.mark.parametrize("bad", ["0167Z0", "016", "xyz"])
def test_bad_hex_exits_2_without_a_traceback(bad: str) -> None:
    result = run("codecs", "decode", "--codec", "cayenne-lpp", "--fport", "2", "--hex", bad)
    assert result.exit_code == 2
    assert "--hex" in flat(result.output) and "not hexadecimal" in flat(result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fport", "2", "--hex", "00"], "exactly one of --codec ID or --js FILE"),
        (
            ["--fport", "2", "--hex", "00", "--codec", "cayenne-lpp", "--js", str(JS_FIXTURES / "throws.js")],
            "exactly one of",
        ),
        (["--fport", "2", "--hex", "00", "--codec", "nope"], "unknown codec 'nope'"),
        (["--fport", "256", "--hex", "00", "--codec", "cayenne-lpp"], "--fport"),
        (["--fport", "2", "--hex", "00", "--js", str(JS_FIXTURES / "absent.js")], "--js"),
        (
            ["--fport", "2", "--hex", "00", "--js", str(JS_FIXTURES / "throws.js"), "--var", "novalue"],
            "KEY=VALUE",
        ),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run("codecs", "decode", *args)
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)


def test_decode_a_js_file_with_variables() -> None:
    result = run(
        "codecs",
        "decode",
        "--js",
        str(JS_FIXTURES / "chirpstack_v4_level.js"),
        "--fport",
        "2",
        "--hex",
        "0BB8",
        "--var",
        "mount_height_mm=5000",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["water_level"] == 2.0


def test_decode_a_js_codec_from_the_codec_dir_by_id() -> None:
    result = run(
        "codecs",
        "decode",
        "--codec",
        "js:tts_environment",
        "--fport",
        "1",
        "--hex",
        "08CA960E10",
        env={"IOC_CODEC_DIR": str(JS_FIXTURES)},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["temperature"] == 22.5


def test_decode_a_js_file_that_does_not_compile_is_fatal() -> None:
    result = run(
        "codecs",
        "decode",
        "--js",
        str(JS_FIXTURES / "broken" / "syntax_error.js"),
        "--fport",
        "1",
        "--hex",
        "00",
    )
    # ioc_cli.app.main turns this FatalError into a one-line message and exit status 2.
    assert isinstance(result.exception, CodecLoadError)
    assert "SyntaxError" in str(result.exception)


@pytest.mark.parametrize(
    "target",
    [CAYENNE, CAYENNE / "examples.yaml", JS_FIXTURES / "tts_environment.yaml", JS_FIXTURES / "throws.js"],
    ids=["builtin-folder", "builtin-yaml", "js-yaml", "js-file"],
)
def test_test_passes(target: Path) -> None:
    result = run("codecs", "test", str(target))
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    assert " 0 failed" in result.output


def test_test_runs_several_paths_and_counts() -> None:
    result = run(
        "codecs",
        "test",
        str(JS_FIXTURES / "tts_environment.yaml"),
        str(JS_FIXTURES / "chirpstack_v3_rain.yaml"),
    )
    assert result.exit_code == 0, result.output
    assert "7 passed, 0 failed" in result.output


def test_test_reports_failures_with_a_diff(tmp_path: Path) -> None:
    shutil.copy(JS_FIXTURES / "tts_environment.js", tmp_path / "env.js")
    (tmp_path / "env.yaml").write_text(
        "uplinkDecoder:\n"
        "  examples:\n"
        "    - description: wrong [temperature]\n"
        "      input: {fPort: 1, hex: '08CA960E10'}\n"
        "      output: {data: {temperature: 21.0, humidity: 75.0, battery_voltage: 3.6}}\n"
        "    - description: right\n"
        "      input: {fPort: 9, hex: '00'}\n"
        "      output: {errors: [unknown fPort]}\n",
        encoding="utf-8",
    )
    result = run("codecs", "test", str(tmp_path / "env.yaml"))
    assert result.exit_code == 1
    assert "FAIL #1 wrong [temperature]" in result.output
    assert "data.temperature: expected 21.0, got 22.5" in result.output
    assert "PASS #2 right" in result.output
    assert "1 passed, 1 failed" in result.output


def test_test_uses_the_ttn_file_name(tmp_path: Path) -> None:
    shutil.copy(JS_FIXTURES / "tts_environment.js", tmp_path / "sensor.js")
    text = (JS_FIXTURES / "tts_environment.yaml").read_text(encoding="utf-8")
    text = text.replace("tts_environment.js", "sensor.js")
    (tmp_path / "sensor-codec.yaml").write_text(text, encoding="utf-8")
    result = run("codecs", "test", str(tmp_path / "sensor-codec.yaml"))
    assert result.exit_code == 0, result.output
    assert "js:sensor" in result.output


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.txt", "neither an examples YAML"),
        ("orphan.yaml", "no JavaScript codec"),
        ("lonely.js", "no examples"),
    ],
)
def test_test_rejects_paths_it_cannot_use(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(
        "function decodeUplink(i) { return {data: {}}; }" if name.endswith(".js") else "x: 1",
        encoding="utf-8",
    )
    result = run("codecs", "test", str(path))
    assert result.exit_code == 2
    assert message in flat(result.output)


def test_test_rejects_a_folder_without_manifest(tmp_path: Path) -> None:
    result = run("codecs", "test", str(tmp_path))
    assert result.exit_code == 2
    assert "not a codec folder" in flat(result.output)
