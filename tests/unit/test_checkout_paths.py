"""Code and tests find files relative to the checkout, so any checkout (a worktree, CI's) runs them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reference import CHIRPSTACK_SAMPLES, SHARED

ROOT = Path(__file__).resolve().parents[2]
_PACKAGES = ("tests", "bench", "gateways", "ingest", "ioc_api", "ioc_cli", "ioc_core", "dashboards",
             "device_simulators", "operations")


def test_shared_is_beside_the_checkout() -> None:
    assert ROOT.parent / "shared" == SHARED
    assert CHIRPSTACK_SAMPLES.is_file(), f"reference samples missing at {CHIRPSTACK_SAMPLES}"


def test_no_absolute_paths_into_the_build_machine() -> None:
    found = []
    for package in _PACKAGES:
        for path in (ROOT / package).rglob("*.py") if (ROOT / package).is_dir() else ():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"[\"']/work/", line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "absolute paths; use tests.reference or Path(__file__):\n" + "\n".join(found)
