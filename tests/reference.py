"""The reference material in shared/, found beside the checkout (the checkout's parent holds shared/)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHIRPSTACK_SAMPLES", "SHARED"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CHIRPSTACK_SAMPLES = SHARED / "reference" / "chirpstack-sample-events.json"
