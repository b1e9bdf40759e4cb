"""docs/technicians.md works as printed: its ``sh`` blocks run in order against a live API, and each ``text``
block right after one is what that block printed (dates aside, and the progress bar's line)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api_support import app_for, key, served

pytestmark = pytest.mark.e2e

PAGE = Path(__file__).resolve().parents[2] / "docs" / "technicians.md"
_BLOCK = re.compile(r"^```(?P<lang>\w+)(?P<info>[^\n]*)\n(?P<body>.*?)^```\n(?P<after>\s*)", re.M | re.S)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _steps() -> list[tuple[str, int, list[str]]]:
    """(commands, expected exit status, lines they should print) for each ``sh`` block of the page."""
    steps: list[tuple[str, int, list[str]]] = []
    last_end = -1
    for match in _BLOCK.finditer(PAGE.read_text(encoding="utf-8")):
        if match["lang"] == "sh":
            status = re.search(r"exit=(\d+)", match["info"])
            steps.append((match["body"], int(status[1]) if status else 0, []))
        elif match["lang"] == "text" and steps and match.start() == last_end:
            steps[-1][2].extend(line for line in match["body"].splitlines() if not line.startswith("sending "))
        last_end = match.end()
    return steps


def test_the_page_has_steps_to_run() -> None:
    steps = _steps()
    assert len(steps) >= 8 and any(status == 2 for _, status, _ in steps)
    assert all(expected for body, _, expected in steps if "--dry-run" in body)


def test_the_technician_page_runs_as_printed(db_url: str, tmp_path: Path) -> None:
    app = app_for(db_url)  # seeds the packaged zones
    headers = key(db_url, "tech-hai-chau", "technician", ["hai-chau", "lien-chieu"])
    with served(app) as url:
        env = {**os.environ, "IOC_API_URL": url, "IOC_API_KEY": headers["Authorization"].removeprefix("Bearer ")}
        prelude = f'ioc() {{ "{sys.executable}" -m ioc_cli "$@"; }}\n'
        for body, status, expected in _steps():
            done = subprocess.run(["bash", "-c", prelude + body], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=300)
            said = _DATE.sub("DATE", done.stdout + done.stderr)
            assert done.returncode == status, f"{body}\n{said}"
            for line in expected:
                assert _DATE.sub("DATE", line) in said, f"{body}\nexpected: {line}\ngot:\n{said}"
