"""What a test does when a service it needs cannot start: skip with the reason locally, fail under ``CI=true``."""

from __future__ import annotations

import os

import pytest

__all__ = ["unavailable"]


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a needed service must start)", pytrace=False)
    pytest.skip(reason)
