"""Error roots for the whole platform, sorted by what the caller should do about them.

    IocError
    ├── SkippableError   the input is bad: record it as a dead letter (with its stage and reason) and go on
    ├── RetriableError   a dependency is unavailable (database, broker): keep the work, back off, try again
    ├── FatalError       the process cannot run as configured: stop at start-up with a clear message
    │   └── ConfigError  a setting is missing or malformed
    └── RefusedError     a request breaks a rule of the domain: tell whoever asked why; nothing changed
        ├── NotFound         the thing it names does not exist
        ├── NotAllowed       the caller's role or zones do not allow it
        ├── Conflict         it conflicts with what exists (a decommissioned device, a limit reached)
        │   └── AlreadyExists    the thing exists already (a DevEUI, a user name)
        ├── Invalid          a value breaks a rule the schema cannot express (outside the city, unknown model)
        └── OverLimit        the request is larger than a limit allows (a CSV's rows)

Each package keeps its own ``errors.py`` whose classes derive from these, so a runner can decide what to do
from the class alone. A refusal carries ``field``, the value at fault when there is one; the API chooses its
HTTP status from the class (``ioc_api.errors``), the CLI prints its message and exits.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "Conflict",
    "FatalError",
    "Invalid",
    "IocError",
    "NotAllowed",
    "NotFound",
    "OverLimit",
    "RefusedError",
    "RetriableError",
    "SkippableError",
]


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


class RefusedError(IocError):
    """A request breaks a rule of the domain; ``field`` names the value at fault, when one is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(RefusedError):
    """The device, zone, user or account a request names does not exist."""


class NotAllowed(RefusedError):
    """The caller's role or zones do not allow the request."""


class Conflict(RefusedError):
    """The request conflicts with what exists: a device in the wrong status, a limit of things reached."""


class AlreadyExists(Conflict):
    """What the request would create exists already; ``constraint`` names the database's unique constraint when
    the database found it."""

    def __init__(self, message: str, *, field: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message, field=field)
        self.constraint = constraint


class Invalid(RefusedError):
    """A value breaks a rule the schema cannot express (outside the city, an unknown model)."""


class OverLimit(RefusedError):
    """The request is larger than a limit allows (more rows in a CSV than an import takes)."""
