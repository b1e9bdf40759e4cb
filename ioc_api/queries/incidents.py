"""Incidents as operators handle them: a filtered page, one incident with its alarms, timeline and SOP checklist,
and every action on it (``operations/lifecycle.py`` decides what is allowed; this module stores it).

Each action runs in one transaction that locks the incident row (``SELECT … FOR UPDATE``): two operators acting
at once are served one after the other, and the second sees the state the first left (a 409 naming it, when its
action no longer applies). Each writes an ``incident_events`` row (the timeline) and an ``audit_log`` row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection, DuplicateKey, database_errors
from ioc_api.deps import Caller
from ioc_api.queries.alarms import alarms_of
from ioc_api.queries.audit import audit
from ioc_api.schemas.operations import ChecklistStep, Incident, IncidentDetail, IncidentEvent, IncidentList, SopView
from ioc_core.errors import Conflict, Invalid, NotAllowed, NotFound
from operations.lifecycle import (
    STAMPS,
    TECHNICAL_KINDS,
    TRANSITIONS,
    Action,
    Placement,
    State,
    Transition,
    check_act,
    check_read,
    may_act,
    next_state,
)
from operations.sop import SopCard, SopLibrary

__all__ = ["OPEN_STATES", "IncidentFilters", "act", "assign", "comment", "get_incident", "list_incidents", "tick"]

OPEN_STATES: tuple[State, ...] = ("new", "acknowledged", "in_progress")
"""What the list shows without ``state``: incidents still being handled (resolved ones wait only to be closed)."""


@dataclass(frozen=True, slots=True)
class IncidentFilters:
    states: tuple[str, ...] = OPEN_STATES
    zone: str | None = None
    hazard: str | None = None
    kind: str | None = None
    severity: str | None = None


_COLUMNS = """i.id, i.zone_code, i.hazard, i.kind, i.severity, i.state, i.title, i.owner, i.assignee, i.opened_at,
              i.updated_at, i.acknowledged_at, i.resolved_at, i.closed_at, i.escalated_at, i.escalation_level,
              (SELECT count(*) FROM alarms a WHERE a.incident_id = i.id AND a.state = 'active'), z.parent_code"""

_FROM = "FROM incidents i LEFT JOIN zones z ON z.code = i.zone_code AND z.valid_to IS NULL"


def _scope_sql(caller: Caller) -> tuple[str, dict[str, Any]]:
    """The incidents ``caller`` may read, as SQL over ``i`` and ``z`` (the rule of ``lifecycle.may_read``)."""
    if caller.role == "admin" or (caller.role == "operator" and not caller.zones):
        return "true", {}
    in_zones = "(i.zone_code = ANY(%(scope)s) OR z.parent_code = ANY(%(scope)s))"
    params: dict[str, Any] = {"scope": list(caller.zones)}
    if caller.role == "operator":
        return in_zones, params
    if caller.role == "technician":
        return f"({in_zones} AND i.kind = ANY(%(technical)s))", {**params, "technical": sorted(TECHNICAL_KINDS)}
    raise NotAllowed(f"role {caller.role!r} may not read incidents; developers see public warnings only")


def _incident(r: tuple[Any, ...]) -> Incident:
    return Incident(id=r[0], zone=r[1], hazard=r[2], kind=r[3], severity=r[4], state=r[5], title=r[6], owner=r[7],
                    assignee=r[8], opened_at=r[9], updated_at=r[10], acknowledged_at=r[11], resolved_at=r[12],
                    closed_at=r[13], escalated_at=r[14], escalation_level=r[15], active_alarms=r[16])


def list_incidents(conn: Connection, filters: IncidentFilters, caller: Caller, *, limit: int,
                   offset: int) -> IncidentList:
    """Most severe first, then newest; a zone filter on a district includes its wards."""
    scope, params = _scope_sql(caller)
    where = [scope, "i.state = ANY(%(states)s)"]
    params.update(states=list(filters.states), limit=limit, offset=offset)
    for name in ("hazard", "kind", "severity"):
        value = getattr(filters, name)
        if value is not None:
            where.append(f"i.{name} = %({name})s")
            params[name] = value
    if filters.zone is not None:
        where.append("(i.zone_code = %(zone)s OR z.parent_code = %(zone)s)")
        params["zone"] = filters.zone
    condition = " AND ".join(where)
    rows = conn.execute(
        f"""SELECT {_COLUMNS}, count(*) OVER () {_FROM} LEFT JOIN alarm_severities s ON s.severity = i.severity
            WHERE {condition} ORDER BY s.rank DESC, i.opened_at DESC, i.id DESC
            LIMIT %(limit)s OFFSET %(offset)s""", params).fetchall()
    if rows:
        total = int(rows[0][-1])
    else:
        found = conn.execute(f"SELECT count(*) {_FROM} WHERE {condition}", params).fetchone()
        total = int(found[0]) if found else 0
    return IncidentList(items=[_incident(r) for r in rows], total=total, limit=limit, offset=offset)


def _row(conn: Connection, incident_id: int, *, lock: bool) -> tuple[Any, ...]:
    row = conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE i.id = %s{' FOR UPDATE OF i' if lock else ''}",
                       (incident_id,)).fetchone()
    if row is None:
        raise NotFound(f"incident {incident_id} does not exist", field="incident_id")
    return tuple(row)


def _placement(row: tuple[Any, ...]) -> Placement:
    return Placement(zone_code=row[1], parent_code=row[17], kind=row[3])


def get_incident(conn: Connection, incident_id: int, caller: Caller, sop: SopLibrary) -> IncidentDetail:
    """The incident with its alarms, timeline (oldest first) and SOP card with the checklist's ticks."""
    row = _row(conn, incident_id, lock=False)
    check_read(caller.role, caller.zones, _placement(row), f"incident {incident_id}")
    events = [IncidentEvent(id=r[0], at=r[1], actor=r[2], action=r[3], details=r[4] if isinstance(r[4], dict) else {})
              for r in conn.execute("""SELECT id, at, actor, action, details FROM incident_events
                                       WHERE incident_id = %s ORDER BY at, id LIMIT 1000""", (incident_id,))]
    ticks = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT step, done_by, done_at FROM incident_checklist WHERE incident_id = %s", (incident_id,))}
    card = sop.card(row[3])
    view = None if card is None else _sop_view(card, row[1], row[17], ticks)
    return IncidentDetail(**_incident(row).model_dump(), alarms=alarms_of(conn, incident_id), events=events, sop=view)


def _sop_view(card: SopCard, zone: str, parent: str | None, ticks: Mapping[str, tuple[str, datetime]]) -> SopView:
    found = card.places(zone, parent)
    steps = [ChecklistStep(id=s.id, text=s.text, done_by=ticks[s.id][0] if s.id in ticks else None,
                           done_at=ticks[s.id][1] if s.id in ticks else None) for s in card.steps]
    return SopView(kind=card.kind, title=card.title, steps=steps,
                   contacts=[*card.contacts, *(found[1].contacts if found else ())],
                   places_zone=found[0] if found else None, places=found[1] if found else None)


def _record(conn: Connection, incident_id: int, at: datetime, actor: str, action: str,
            details: Mapping[str, Any]) -> IncidentEvent:
    """The action in the incident's timeline and in the audit log, in the caller's transaction."""
    row = conn.execute(
        """INSERT INTO incident_events (incident_id, at, actor, action, details) VALUES (%s, %s, %s, %s, %s::jsonb)
           RETURNING id, at, actor, action, details""",
        (incident_id, at, actor, action, json.dumps(details, default=str, ensure_ascii=False))).fetchone()
    assert row is not None
    audit(conn, actor, action, "incident", str(incident_id), details)
    return IncidentEvent(id=row[0], at=row[1], actor=row[2], action=row[3], details=row[4])


def _locked(conn: Connection, incident_id: int, caller: Caller, action: Action) -> tuple[tuple[Any, ...], State]:
    """The incident row, locked for this transaction, once the caller may act on it; and the state ``action``
    leads to (Conflict naming the current state when it may not be taken)."""
    row = _row(conn, incident_id, lock=True)
    check_act(caller.role, caller.zones, _placement(row), f"incident {incident_id}")
    return row, next_state(row[5], action)


def act(conn: Connection, incident_id: int, action: Transition, caller: Caller, at: datetime,
        note: str | None = None) -> Incident:
    """Move the incident along its lifecycle (acknowledge, start, resolve, close, reopen)."""
    assert action in TRANSITIONS
    with conn.transaction():
        row, target = _locked(conn, incident_id, caller, action)
        sets = ["state = %(state)s", "updated_at = %(at)s"]
        sets += [f"{column} = %(at)s" for column in STAMPS.get(action, ())]
        if action == "reopen":
            sets.append("resolved_at = NULL")
        try:
            # Reopening can meet the one-open-incident-per-zone-and-hazard rule when a new one opened since.
            with database_errors(f"{action} incident {incident_id}"), conn.transaction():
                conn.execute(f"UPDATE incidents SET {', '.join(sets)} WHERE id = %(id)s",
                             {"state": target, "at": at, "id": incident_id})
        except DuplicateKey as err:
            raise Conflict(f"incident {incident_id} cannot be reopened: zone {row[1]!r} has another open "
                           f"{row[2]} incident; work on that one", field="state") from err
        details: dict[str, Any] = {"from": row[5], "to": target}
        if note:
            details["note"] = note
        _record(conn, incident_id, at, caller.name, action, details)
    return _incident(_row(conn, incident_id, lock=False))


def assign(conn: Connection, incident_id: int, assignee: str | None, caller: Caller, at: datetime,
           note: str | None = None) -> Incident:
    """Give the incident to an operator or admin who may act on its zone (None: to nobody)."""
    with conn.transaction():
        row, _state = _locked(conn, incident_id, caller, "assign")
        if assignee is not None:
            _check_assignee(conn, assignee, _placement(row), incident_id)
        conn.execute("UPDATE incidents SET assignee = %s, updated_at = %s WHERE id = %s", (assignee, at, incident_id))
        details: dict[str, Any] = {"from": row[8], "to": assignee}
        if note:
            details["note"] = note
        _record(conn, incident_id, at, caller.name, "assign", details)
    return _incident(_row(conn, incident_id, lock=False))


def _check_assignee(conn: Connection, name: str, place: Placement, incident_id: int) -> None:
    user = conn.execute(
        """SELECT u.role, coalesce(array_agg(z.code) FILTER (WHERE z.code IS NOT NULL), '{}'), u.revoked_at
           FROM api_users u LEFT JOIN api_user_zones uz ON uz.user_id = u.id LEFT JOIN zones z ON z.id = uz.zone_id
           WHERE u.name = %s GROUP BY u.id""", (name,)).fetchone()
    if user is None or user[2] is not None:
        raise Invalid(f"no active user is named {name!r}", field="assignee")
    if not may_act(str(user[0]), tuple(user[1]), place):
        raise Invalid(f"{name!r} ({user[0]}) may not act on incident {incident_id} in zone {place.zone_code!r}; "
                      "assign an operator or admin of that zone or of the city", field="assignee")


def comment(conn: Connection, incident_id: int, text: str, caller: Caller, at: datetime) -> IncidentEvent:
    """A comment in the timeline; the incident's state stays."""
    with conn.transaction():
        _locked(conn, incident_id, caller, "comment")
        conn.execute("UPDATE incidents SET updated_at = %s WHERE id = %s", (at, incident_id))
        return _record(conn, incident_id, at, caller.name, "comment", {"text": text})


def tick(conn: Connection, incident_id: int, step: str, done: bool, caller: Caller, at: datetime,
         sop: SopLibrary) -> list[ChecklistStep]:
    """Tick (``done``) or untick an SOP step; a step already in that state is left alone and not recorded again.
    NotFound (field ``step``) for a step the incident's card does not have."""
    with conn.transaction():
        row, _state = _locked(conn, incident_id, caller, "tick" if done else "untick")
        card = sop.card(row[3])
        if card is None:
            raise NotFound(f"incident {incident_id} ({row[3]}) has no SOP card", field="step")
        if step not in card.step_ids():
            raise NotFound(f"the {row[3]} SOP card has no step {step!r}; its steps: {', '.join(card.step_ids())}",
                           field="step")
        if done:
            changed = conn.execute(
                """INSERT INTO incident_checklist (incident_id, step, done_by, done_at) VALUES (%s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""", (incident_id, step, caller.name, at)).rowcount
        else:
            changed = conn.execute("DELETE FROM incident_checklist WHERE incident_id = %s AND step = %s",
                                   (incident_id, step)).rowcount
        if changed:
            conn.execute("UPDATE incidents SET updated_at = %s WHERE id = %s", (at, incident_id))
            _record(conn, incident_id, at, caller.name, "tick" if done else "untick", {"step": step})
        ticks = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT step, done_by, done_at FROM incident_checklist WHERE incident_id = %s", (incident_id,))}
    return _sop_view(card, row[1], row[17], ticks).steps
