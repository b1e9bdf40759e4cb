"""Audit records as admins read them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["AuditEntry", "AuditPage"]


class AuditEntry(BaseModel):
    id: int
    time: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    changes: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before_id: int | None
