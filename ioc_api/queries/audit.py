"""The audit log: who changed which device, user or zone, when, and what changed (secrets masked)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateways.database import Connection

__all__ = ["SECRET_FIELDS", "AuditRecord", "audit", "list_audit", "masked"]

SECRET_FIELDS = frozenset({"app_key", "nwk_key", "key", "token", "password"})


def masked(changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every secret's value replaced, at any depth, so the log can be read by anyone allowed."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in SECRET_FIELDS and value is not None:
            out[name] = "***"
        elif isinstance(value, Mapping):
            out[name] = masked(value)
        else:
            out[name] = value
    return out


def audit(conn: Connection, actor: str, action: str, entity: str, entity_id: str, changes: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, entity, entity_id, changes) VALUES (%s, %s, %s, %s, %s::jsonb)",
        (actor, action, entity, entity_id, json.dumps(masked(changes), default=str, ensure_ascii=False)),
    )


AuditRecord = tuple[int, datetime, str, str, str, str, dict[str, Any]]


def list_audit(
    conn: Connection,
    *,
    entity: str | None = None,
    entity_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditRecord]:
    """Newest first; ``before_id`` pages backwards (keyset, stable while new records arrive)."""
    rows = conn.execute(
        """SELECT id, time, actor, action, entity, entity_id, changes FROM audit_log
           WHERE (%(entity)s::text IS NULL OR entity = %(entity)s)
             AND (%(entity_id)s::text IS NULL OR entity_id = %(entity_id)s)
             AND (%(actor)s::text IS NULL OR actor = %(actor)s)
             AND (%(since)s::timestamptz IS NULL OR time >= %(since)s)
             AND (%(before)s::bigint IS NULL OR id < %(before)s)
           ORDER BY id DESC LIMIT %(limit)s""",
        {"entity": entity, "entity_id": entity_id, "actor": actor, "since": since, "before": before_id,
         "limit": limit},
    ).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]
