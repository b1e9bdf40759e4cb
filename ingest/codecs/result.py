"""The result every codec returns, in the device-repository shape ``{data, warnings, errors}``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DecodeResult"]


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What a codec made of one payload.

    Expected anomalies (short payload, unknown channel type) are reported in ``errors`` or ``warnings``;
    a codec that raises has a bug.
    """

    data: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())
    errors: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors

    @classmethod
    def failure(cls, *errors: str, data: dict[str, Any] | None = None) -> DecodeResult:
        return cls(data=data or {}, errors=tuple(errors))

    def as_json(self) -> dict[str, Any]:
        return {"data": self.data, "warnings": list(self.warnings), "errors": list(self.errors)}
