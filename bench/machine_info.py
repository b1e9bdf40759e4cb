"""The machine a benchmark ran on, in one line, so every printed number says where it came from."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["host_line"]


def host_line() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores | {mem_gib:.0f} GiB | {platform.system()} "
            f"{platform.release()} | Python {platform.python_version()}")
