"""The channel adapters' errors, sorted by what the dispatcher should do with the message.

::

    IocError
    └── DeliveryError           .detail: what the channel said, for the attempt's record
        ├── DeliveryDeferred    (also a RetriableError) timeout, refused connection, 5xx, 429: send again later,
        │                       no sooner than ``retry_after_s`` when the receiver said so
        └── DeliveryRefused     4xx, a bad address, a rejected template: sending it again gets the same answer

An answer that may or may not mean "sent" (a timeout after the request went out) is deferred: the message goes
again with the same idempotency key, and the receiver drops the repeat.
"""

from __future__ import annotations

from ioc_core.errors import IocError, RetriableError

__all__ = ["DeliveryDeferred", "DeliveryError", "DeliveryRefused"]


class DeliveryError(IocError):
    """Root of the adapters' errors."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class DeliveryDeferred(DeliveryError, RetriableError):
    """The channel is unavailable for now; ``retry_after_s`` is the receiver's own wish, when it gave one."""

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class DeliveryRefused(DeliveryError):
    """The channel refused this message for good."""
