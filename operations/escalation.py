"""Escalation (leo thang): an incident nobody acknowledged in time goes to the city IOC, and people are told again.

The timer is data: ``alarm_severities.escalate_after_s`` of the incident's severity (NULL: never). An incident
still ``new`` that long after it was opened, or after its last escalation, is escalated: its owner becomes the
city IOC, ``escalation_level`` rises by one, and an ``escalated`` message goes to the city operators and the
district's operators, keyed by the level so a repeated round sends it once. After ``MAX_LEVEL`` escalations the
system stops re-notifying: by then the city has been told three times and a pager storm helps nobody.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateways.database import Connection
from operations.incidents import CITY, SYSTEM, operators_of
from operations.outbox import Message, enqueue

__all__ = ["MAX_LEVEL", "Escalated", "due", "escalate"]

MAX_LEVEL = 3


@dataclass(frozen=True, slots=True)
class Escalated:
    incident_id: int
    level: int
    owner_before: str


def due(*, state: str, opened_at: datetime, escalated_at: datetime | None, level: int,
        escalate_after_s: int | None, at: datetime) -> bool:
    """Whether an incident is to be escalated at ``at``: still unacknowledged, its severity has a timer, the
    timer ran out since it was opened (or last escalated), and it has not reached MAX_LEVEL."""
    if state != "new" or escalate_after_s is None or level >= MAX_LEVEL:
        return False
    since = escalated_at if escalated_at is not None else opened_at
    return at - since >= timedelta(seconds=escalate_after_s)


def escalate(conn: Connection, at: datetime) -> list[Escalated]:
    """Escalate every incident due at ``at``, in the caller's transaction."""
    rows = conn.execute(
        """SELECT i.id, i.state, i.opened_at, i.escalated_at, i.escalation_level, s.escalate_after_s, i.owner,
                  i.zone_code, i.title, i.severity
           FROM incidents i JOIN alarm_severities s ON s.severity = i.severity
           WHERE i.state = 'new' AND s.escalate_after_s IS NOT NULL
           ORDER BY i.id FOR UPDATE OF i""").fetchall()
    out = []
    for incident_id, state, opened_at, escalated_at, level, after_s, owner, zone, title, severity in rows:
        if not due(state=state, opened_at=opened_at, escalated_at=escalated_at, level=level,
                   escalate_after_s=after_s, at=at):
            continue
        new_level = level + 1
        conn.execute("UPDATE incidents SET owner = %s, escalation_level = %s, escalated_at = %s, updated_at = %s "
                     "WHERE id = %s", (CITY, new_level, at, at, incident_id))
        conn.execute(
            "INSERT INTO incident_events (incident_id, at, actor, action, details) VALUES (%s, %s, %s, %s, %s::jsonb)",
            (incident_id, at, SYSTEM, "escalated",
             json.dumps({"level": new_level, "from_owner": owner, "to_owner": CITY,
                         "unacknowledged_s": int((at - opened_at).total_seconds())})))
        users = sorted(set(operators_of(conn, CITY)) | set(operators_of(conn, zone)))
        minutes = int((at - opened_at).total_seconds() // 60)
        text = (f"[IOC] Leo thang cấp {new_level}: sự cố #{incident_id} ({severity}) chưa được xác nhận sau "
                f"{minutes} phút: {title}")
        body = (f"{text}\n\nIncident #{incident_id} ({severity}) has not been acknowledged {minutes} minutes after "
                f"it opened; escalated to the city IOC (level {new_level}). See /api/v1/incidents/{incident_id}.")
        enqueue(conn, Message(f"incident:{incident_id}:escalated:{new_level}", "escalated",
                              f"Leo thang / Escalated: {title}", text, body,
                              {"incident_id": incident_id, "level": new_level, "zone": zone, "severity": severity,
                               "title": title, "opened_at": opened_at.isoformat(), "escalated_at": at.isoformat()}),
                at, users=users)
        out.append(Escalated(incident_id, new_level, owner))
    return out
