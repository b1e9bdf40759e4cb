"""The MQTT adapter's errors, sorted by what the caller should do.

::

    IocError
    ├── RetriableError
    │   └── BrokerUnavailable   the broker cannot be reached (yet), or did not answer: back off, retry
    └── FatalError
        └── BrokerRefused       the broker answered and refused us (credentials, authorisation, client id)
"""

from __future__ import annotations

from ioc_core.errors import FatalError, RetriableError

__all__ = ["BrokerRefused", "BrokerUnavailable"]


class BrokerUnavailable(RetriableError):
    """The broker cannot be reached (yet)."""


class BrokerRefused(FatalError):
    """The broker answered but refused us (bad credentials, not authorised): retrying will not help."""
