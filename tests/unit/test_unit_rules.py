"""Unit tests do not read the clock to measure or wait: a windowed timing assertion flakes on a busy machine.
Code that needs time takes a clock (``FakeClock`` in test_simulator_publisher, the codec health's ``now``);
tests that time real processes live in tests/integration/."""

from __future__ import annotations

import re
from pathlib import Path

UNIT = Path(__file__).resolve().parent
# Measuring (perf_counter, monotonic) or waiting (sleep, polling helpers) in a test body.
CLOCK = re.compile(r"\b(?:time\.)?(?:perf_counter|monotonic)(?:_ns)?\(|\b(?:time|asyncio)\.sleep\(|"
                   r"\b(?:wait_for|eventually)\(")


def test_no_unit_test_measures_or_waits_on_the_wall_clock() -> None:
    offenders = [f"{path.name}:{n}: {line.strip()}"
                 for path in sorted(UNIT.glob("*.py")) if path.name != Path(__file__).name
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if CLOCK.search(line)]
    assert offenders == []


def test_the_rule_finds_a_timing_window() -> None:
    assert CLOCK.search("started = time.perf_counter()")
    assert CLOCK.search("time.sleep(0.1)")
    assert CLOCK.search("deadline = time.monotonic() + 5")
    assert not CLOCK.search("def sleep(self, seconds: float) -> None:")
