"""``ioc simulate`` without a broker: dry runs, files, replays and the fleet listing."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ioc_cli.app import build_app
from ioc_core.errors import ConfigError


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_dry_run_writes_json_lines(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["simulate", "-n", "30", "--dry-run", "--rate", "0", "--count", "50",
                                         "--scenario", "faults", "--quiet", "--start", "2025-10-14T07:00"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 50
    assert {"topic", "payload", "event", "encoding", "malformed", "duplicate", "time"} <= set(rows[0])
    first = json.loads(base64.b64decode(rows[0]["payload"]))
    assert first["time"].startswith("2025-10-14T00:0")  # 07:00 in Da Nang is midnight UTC


def test_out_file_then_replay(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    result = runner.invoke(build_app(), ["simulate", "-n", "20", "--out", str(out), "--rate", "0",
                                         "--count", "40", "--encoding", "protobuf", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 40
    replayed = runner.invoke(build_app(), ["simulate", "--replay", str(out), "--dry-run", "--rate", "0", "-q"])
    assert replayed.exit_code == 0, replayed.output
    assert [line for line in replayed.stdout.splitlines() if line.startswith("{")] == out.read_text(
        encoding="utf-8"
    ).splitlines()


def test_list_devices_as_csv(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["simulate", "-n", "12", "--list-devices", "--csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 12 and rows[0]["zone"] and rows[0]["dev_eui"]


def test_list_devices_as_table(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["simulate", "-n", "5", "--list-devices"])
    assert result.exit_code == 0 and "Da Nang fleet" in result.stdout


def test_help_explains_the_options(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["simulate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--devices", "--rate", "--time-scale", "--duration", "--scenario", "--encoding", "--loss",
                   "--duplicates", "--malformed", "--seed", "--dry-run", "--out", "--list-devices"):
        assert option in result.stdout


def test_bad_start_is_a_config_error(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["simulate", "--dry-run", "--start", "yesterday", "--count", "1"])
    assert isinstance(result.exception, ConfigError)


def test_workers_shard_the_generation(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["simulate", "-n", "30", "--dry-run", "--rate", "0", "--count", "100",
                                         "--workers", "2", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 100 and len({r["dev_eui"] for r in rows}) > 15
