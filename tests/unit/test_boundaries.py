"""Adapters stay in gateways/: no package of the platform besides it imports the database or broker drivers, so
their errors are translated in one place (gateways.database, gateways.mqtt) and nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ioc_core", "ioc_api", "ioc_cli", "ingest", "dashboards", "operations")
DRIVERS = {"psycopg", "psycopg_pool"}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_only_gateways_import_the_database_driver(package: str) -> None:
    offenders = sorted(f"{path.relative_to(ROOT)}: {name}" for path in (ROOT / package).rglob("*.py")
                       for name in _imported(path) if name.split(".")[0] in DRIVERS)
    assert offenders == []


def test_the_check_sees_an_import() -> None:
    probe = ROOT / "gateways" / "database.py"
    assert "psycopg" in _imported(probe)
