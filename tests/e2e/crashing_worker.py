"""``ioc ingest`` with one fault injected: a decoded object holding ``kill_worker`` ends the process at once.

It stands in for the deaths no ``except`` can catch (the kernel's OOM killer, a crash in native code, a hang
that a watchdog kills): ``os._exit`` runs no handler, acks nothing and leaves the batch with the broker, as
those do. The crash-loop guard must find the message by itself. Run as ``python tests/e2e/crashing_worker.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import ingest.pipeline as pipeline  # after the path is set: run as a script, the repository is not on it
from ingest.normalise import Normalised, normalise
from ioc_cli.app import main

EXIT_CODE = 70


def dying_normalise(data: Mapping[str, Any]) -> Normalised:
    if "kill_worker" in data:
        os._exit(EXIT_CODE)
    return normalise(data)


if __name__ == "__main__":
    pipeline.normalise = dying_normalise  # type: ignore[assignment]
    sys.argv = ["ioc", "ingest"]
    main()
