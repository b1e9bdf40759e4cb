"""Error roots for the whole platform, sorted by what the caller should do about them.

    IocError
    ├── SkippableError   the input is bad: record it as a dead letter (with its stage and reason) and go on
    ├── RetriableError   a dependency is unavailable (database, broker): keep the work, back off, try again
    └── FatalError       the process cannot run as configured: stop at start-up with a clear message
        └── ConfigError  a setting is missing or malformed

Each package keeps its own ``errors.py`` whose classes derive from these, so a runner can decide what to do
from the class alone.
"""

from __future__ import annotations

__all__ = ["ConfigError", "FatalError", "IocError", "RetriableError", "SkippableError"]


class IocError(Exception):
    """Root of every error the platform raises on purpose."""


class SkippableError(IocError):
    """One input cannot be processed; it becomes a dead letter and the rest goes on."""

    def __init__(self, reason: str, *, stage: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


class RetriableError(IocError):
    """A dependency is unavailable for now; the work is kept and retried with backoff."""


class FatalError(IocError):
    """The process cannot go on; the command exits with this message and no traceback."""


class ConfigError(FatalError):
    """Bad configuration, reported at start-up."""
