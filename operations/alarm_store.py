"""Alarms as stored: read the active ones, and carry out a round's plan (operations/alarms.py) in its transaction.

The unique index ``alarms_active`` (one active alarm per source and subject) backs the dedupe the plan does; the
caller holds the evaluator's advisory lock, so no other round inserts between the read and the writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateways.database import Connection
from operations.alarms import (
    ActiveAlarm,
    Clear,
    Condition,
    Open,
    Repeat,
    Severity,
    StartClearing,
    Step,
    as_severity,
    as_source,
)

__all__ = ["Applied", "StoredAlarm", "active", "apply"]


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    """An alarm row's identity and what incidents need of it."""

    id: int
    source: str
    subject: str
    severity: Severity
    zone: str | None
    hazard: str | None
    incident_id: int | None


@dataclass(slots=True)
class Applied:
    """What a round did to the alarms."""

    opened: list[StoredAlarm] = field(default_factory=list)
    repeated: int = 0
    raised: list[StoredAlarm] = field(default_factory=list)
    clearing: int = 0
    cleared: list[StoredAlarm] = field(default_factory=list)


def active(conn: Connection) -> list[ActiveAlarm]:
    """Every active alarm."""
    return [ActiveAlarm(i, as_source(src), subject, as_severity(sev), clearing)
            for i, src, subject, sev, clearing in conn.execute(
                "SELECT id, source, subject, severity, clearing_since FROM alarms WHERE state = 'active' "
                "ORDER BY id")]


_RETURNING = "RETURNING id, source, subject, severity, zone_code, hazard, incident_id"


def apply(conn: Connection, steps: Sequence[Step], at: datetime) -> Applied:
    """Carry out ``steps`` at ``at``."""
    out = Applied()
    for step in steps:
        if isinstance(step, Open):
            out.opened.append(_stored(conn.execute(
                f"""INSERT INTO alarms (source, subject, hazard, zone_code, device_eui, severity, message, details,
                                        first_seen, last_seen)
                    VALUES (%(source)s, %(subject)s, %(hazard)s, %(zone)s, %(eui)s, %(severity)s, %(message)s,
                            %(details)s::jsonb, %(at)s, %(at)s) {_RETURNING}""",
                _params(step.condition, step.condition.severity, at)).fetchone()))
        elif isinstance(step, Repeat):
            row = conn.execute(
                f"""UPDATE alarms SET last_seen = %(at)s, count = count + 1, severity = %(severity)s,
                           message = %(message)s, details = %(details)s::jsonb, clearing_since = NULL
                    WHERE id = %(id)s {_RETURNING}""",
                {**_params(step.condition, step.severity, at), "id": step.alarm.id}).fetchone()
            out.repeated += 1
            if step.raised:
                out.raised.append(_stored(row))
        elif isinstance(step, StartClearing):
            conn.execute("UPDATE alarms SET clearing_since = %s WHERE id = %s", (at, step.alarm.id))
            out.clearing += 1
        elif isinstance(step, Clear):
            out.cleared.append(_stored(conn.execute(
                f"UPDATE alarms SET state = 'cleared', cleared_at = %s WHERE id = %s {_RETURNING}",
                (at, step.alarm.id)).fetchone()))
    return out


def _params(c: Condition, severity: Severity, at: datetime) -> dict[str, object]:
    return {"source": c.source, "subject": c.subject, "hazard": c.hazard, "zone": c.zone, "eui": c.device_eui,
            "severity": severity, "message": c.message, "at": at,
            "details": json.dumps(_finite(dict(c.details)), ensure_ascii=False, default=str, allow_nan=False)}


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (jsonb refuses them), and a reading flagged "not finite" brings one here."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _stored(row: tuple[object, ...] | None) -> StoredAlarm:
    assert row is not None  # the row was just written or is held active under the evaluator's lock
    i, source, subject, severity, zone, hazard, incident = row
    return StoredAlarm(int(str(i)), str(source), str(subject), as_severity(str(severity)),
                       None if zone is None else str(zone), None if hazard is None else str(hazard),
                       None if incident is None else int(str(incident)))
