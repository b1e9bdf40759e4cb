"""Public warnings in the database: drafts from incidents, approval by a second operator, Updates and Cancels.

Each change runs in one transaction with its incident event, its audit record and, on approval, the outbox
rows that deliver it (public routes, and one retained MQTT message per zone topic), so a crash between
"approved" and "sent" neither loses nor doubles a warning. Rows are locked (``FOR UPDATE``) before they change:
two operators approving at once approve once, the second hears 409.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, cast

from gateways.database import Connection
from ioc_api.queries.audit import audit
from ioc_api.queries.device_zones import ZoneScope
from ioc_core.errors import Conflict, Invalid, NotAllowed, NotFound
from ioc_core.settings import CapSettings
from operations import cap
from operations.cap import Info, MsgType
from operations.outbox import enqueue, enqueue_to
from operations.warnings import (
    IncidentFacts,
    ZoneFacts,
    cancel_info,
    check_approver,
    check_draft,
    check_replaceable,
    default_info,
    identifier_for,
    info_from_json,
    info_to_json,
    message,
    topics,
)

__all__ = [
    "Issuer",
    "WarningRow",
    "approve",
    "draft_for_incident",
    "draft_replacement",
    "get_warning",
    "list_warnings",
    "public_warnings",
    "public_xml",
    "reject",
]

_COLUMNS = ("id, identifier, incident_id, msg_type, replaces, state, zones, content, drafted_by, drafted_at, "
            "approved_by, approved_at, cap_xml")


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who the messages say they are from and how they are written: the IOC_CAP_* settings, the city's time
    zone for CAP times, and the public feed's topic prefix (IOC_FEED_PREFIX)."""

    settings: CapSettings
    zone: tzinfo
    topic_prefix: str = "ioc/v1"


@dataclass(frozen=True, slots=True)
class WarningRow:
    id: int
    identifier: str
    incident_id: int | None
    msg_type: MsgType
    replaces: int | None
    state: str
    zones: list[str]
    info: tuple[Info, ...]
    drafted_by: str
    drafted_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    cap_xml: str | None


def _row(r: Sequence[Any]) -> WarningRow:
    content = r[7] if isinstance(r[7], dict) else json.loads(r[7])
    return WarningRow(id=int(r[0]), identifier=str(r[1]), incident_id=r[2], msg_type=r[3], replaces=r[4],
                      state=str(r[5]), zones=list(r[6]), info=info_from_json(content["info"]),
                      drafted_by=str(r[8]), drafted_at=r[9], approved_by=r[10], approved_at=r[11], cap_xml=r[12])


def _zones(conn: Connection, codes: Sequence[str], hazard: str | None) -> list[ZoneFacts]:
    """Current zones by code, in the order given, with their status for ``hazard``; Invalid for an unknown one."""
    rows = conn.execute(
        """SELECT z.code, z.name, z.level, z.parent_code, s.status FROM zones z
           LEFT JOIN zone_hazard_status s ON s.zone_code = z.code AND s.hazard = %s
           WHERE z.valid_to IS NULL AND z.code = ANY(%s)""", (hazard, list(codes))).fetchall()
    found = {str(r[0]): ZoneFacts(str(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows}
    unknown = [c for c in codes if c not in found]
    if unknown:
        raise Invalid(f"no current zone has the code {', '.join(map(repr, unknown))}", field="zones")
    return [found[c] for c in codes]


def _check_scope(conn: Connection, scope: ZoneScope, codes: Sequence[str], what: str) -> None:
    """NotAllowed unless every zone is the caller's or a ward of one of the caller's districts."""
    if scope is None:
        return
    rows = conn.execute("SELECT code, parent_code FROM zones WHERE valid_to IS NULL AND code = ANY(%s)",
                        (list(codes),)).fetchall()
    parents: dict[str, str] = {str(code): str(parent) for code, parent in rows if parent is not None}
    outside = [c for c in codes if c not in scope and parents.get(c, "") not in scope]
    if outside:
        raise NotAllowed(f"{what} covers {', '.join(outside)}, outside your zones "
                         f"({', '.join(sorted(scope)) or 'none'})")


def _incident(conn: Connection, incident_id: int, *, lock: bool = False) -> IncidentFacts:
    row = conn.execute(
        "SELECT i.id, i.zone_code, i.hazard, coalesce(h.name_vi, i.hazard), coalesce(h.name_en, i.hazard), "
        "i.severity, i.state FROM incidents i LEFT JOIN hazards h ON h.code = i.hazard WHERE i.id = %s"
        + (" FOR UPDATE OF i" if lock else ""), (incident_id,)).fetchone()
    if row is None:
        raise NotFound(f"incident {incident_id} does not exist", field="id")
    return IncidentFacts(int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]),
                         str(row[6]))


def _affected(conn: Connection, incident: IncidentFacts) -> list[str]:
    """The zones a draft covers by default: the wards of the incident's zone (or beside it, for a ward) that
    are in alert or danger for its hazard, worst first; else the incident's own zone."""
    rows = conn.execute(
        """SELECT z.code FROM zones z
           JOIN zones here ON here.code = %(zone)s AND here.valid_to IS NULL
           JOIN zone_hazard_status s ON s.zone_code = z.code AND s.hazard = %(hazard)s
           WHERE z.valid_to IS NULL AND z.level = 'ward' AND s.status IN ('alert', 'danger')
             AND (z.code = here.code OR z.parent_code = here.code
                  OR (here.level = 'ward' AND z.parent_code = here.parent_code))
           ORDER BY s.status = 'danger' DESC, z.code""", {"zone": incident.zone_code, "hazard": incident.hazard},
    ).fetchall()
    return [str(r[0]) for r in rows] or [incident.zone_code]


def _event(conn: Connection, incident_id: int | None, at: datetime, actor: str, action: str,
           details: dict[str, Any]) -> None:
    if incident_id is not None:
        conn.execute("INSERT INTO incident_events (incident_id, at, actor, action, details) "
                     "VALUES (%s, %s, %s, %s, %s::jsonb)",
                     (incident_id, at, actor, action, json.dumps(details, ensure_ascii=False)))


def _insert(conn: Connection, issuer: Issuer, *, incident_id: int | None, msg_type: MsgType, replaces: int | None,
            zones: Sequence[str], info: Sequence[Info], actor: str, at: datetime) -> WarningRow:
    (warning_id,) = cast(tuple[int], conn.execute(
        "SELECT nextval(pg_get_serial_sequence('warnings', 'id'))").fetchone())
    identifier = identifier_for(issuer.settings.identifier_prefix, warning_id, at.astimezone(issuer.zone).year)
    row = conn.execute(
        f"""INSERT INTO warnings (id, identifier, incident_id, msg_type, replaces, zones, content, drafted_by,
                                  drafted_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING {_COLUMNS}""",
        (warning_id, identifier, incident_id, msg_type, replaces, list(zones),
         json.dumps({"info": info_to_json(info)}, ensure_ascii=False), actor, at)).fetchone()
    assert row is not None
    drafted = _row(row)
    details = {"warning_id": drafted.id, "identifier": identifier, "msg_type": msg_type, "zones": list(zones)}
    _event(conn, incident_id, at, actor, "warning_drafted", details)
    audit(conn, actor, "draft", "warning", str(drafted.id), {**details, "replaces": replaces})
    return drafted


def draft_for_incident(conn: Connection, issuer: Issuer, incident_id: int, *, actor: str, scope: ZoneScope,
                       at: datetime, zones: Sequence[str] | None = None,
                       info: Sequence[Info] | None = None) -> WarningRow:
    """A new Alert drafted from an incident: the zones and text given, or the defaults for both."""
    with conn.transaction():
        incident = _incident(conn, incident_id)
        _check_scope(conn, scope, [incident.zone_code], f"incident {incident_id}")
        if incident.state == "closed":
            raise Conflict(f"incident {incident_id} is closed; reopen it or draft from an open one")
        codes = list(zones) if zones is not None else _affected(conn, incident)
        facts = _zones(conn, codes, incident.hazard)
        _check_scope(conn, scope, codes, "the warning")
        text = tuple(info) if info is not None else default_info(incident, facts)
        check_draft(text, codes)
        return _insert(conn, issuer, incident_id=incident_id, msg_type="Alert", replaces=None, zones=codes,
                       info=text, actor=actor, at=at)


def _locked(conn: Connection, warning_id: int) -> WarningRow:
    row = conn.execute(f"SELECT {_COLUMNS} FROM warnings WHERE id = %s FOR UPDATE", (warning_id,)).fetchone()
    if row is None:
        raise NotFound(f"warning {warning_id} does not exist", field="id")
    return _row(row)


def _replaced(conn: Connection, warning_id: int) -> bool:
    return conn.execute("SELECT 1 FROM warnings WHERE replaces = %s AND state = 'approved'",
                        (warning_id,)).fetchone() is not None


def draft_replacement(conn: Connection, issuer: Issuer, warning_id: int, msg_type: MsgType, *, actor: str,
                      scope: ZoneScope, at: datetime, zones: Sequence[str] | None = None,
                      info: Sequence[Info] | None = None) -> WarningRow:
    """An Update or Cancel of an approved warning, as a new draft that replaces it. By default an Update covers
    the incident's zones in alert or danger now (else the earlier zones) with fresh text, and a Cancel the
    earlier zones with the all-clear."""
    if msg_type == "Alert":
        raise Invalid("an Alert is drafted from an incident; a replacement is an Update or a Cancel",
                      field="msg_type")
    with conn.transaction():
        earlier = _locked(conn, warning_id)
        _check_scope(conn, scope, earlier.zones, f"warning {warning_id}")
        check_replaceable(earlier.state, earlier.msg_type, _replaced(conn, warning_id))
        incident = _incident(conn, earlier.incident_id) if earlier.incident_id is not None else None
        if zones is not None:
            codes = list(zones)
        elif msg_type == "Update" and incident is not None:
            codes = _affected(conn, incident)
        else:
            codes = list(earlier.zones)
        facts = _zones(conn, codes, incident.hazard if incident else None)
        _check_scope(conn, scope, codes, "the warning")
        if info is not None:
            text = tuple(info)
        elif msg_type == "Cancel":
            text = cancel_info(earlier.info)
        elif incident is not None:
            text = default_info(incident, facts)
        else:
            text = earlier.info
        check_draft(text, codes)
        return _insert(conn, issuer, incident_id=earlier.incident_id, msg_type=msg_type, replaces=warning_id,
                       zones=codes, info=text, actor=actor, at=at)


def _areas(conn: Connection, codes: Sequence[str]) -> tuple[cap.Area, ...]:
    rows = conn.execute("SELECT code, name, boundary FROM zones WHERE valid_to IS NULL AND code = ANY(%s)",
                        (list(codes),)).fetchall()
    by_code = {str(r[0]): r for r in rows}
    areas = []
    for code in codes:
        if code not in by_code:
            raise Conflict(f"zone {code!r} no longer exists; draft the warning again", field="zones")
        _code, name, boundary = by_code[code]
        geometry = boundary if isinstance(boundary, dict) else json.loads(boundary)
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        rings = tuple(tuple((float(x), float(y)) for x, y, *_ in polygon[0]) for polygon in polygons)
        areas.append(cap.Area(str(name), rings, code))
    return tuple(areas)


def approve(conn: Connection, issuer: Issuer, warning_id: int, *, actor: str, scope: ZoneScope,
            at: datetime) -> WarningRow:
    """Approve a draft: freeze its CAP message, record it, and queue it for every public route and zone topic,
    all in one transaction. NotAllowed for its drafter; Conflict when it is not a draft (approved already by
    someone quicker, or rejected) or what it replaces was replaced meanwhile."""
    with conn.transaction():
        draft = _locked(conn, warning_id)
        facts = _zones(conn, draft.zones, None)
        _check_scope(conn, scope, draft.zones, f"warning {warning_id}")
        if draft.state != "draft":
            raise Conflict(f"warning {warning_id} is {draft.state} already; only a draft can be approved")
        check_approver(draft.drafted_by, actor)
        references: tuple[cap.Reference, ...] = ()
        if draft.replaces is not None:
            earlier = _locked(conn, draft.replaces)
            check_replaceable(earlier.state, earlier.msg_type, _replaced(conn, earlier.id))
            assert earlier.cap_xml is not None  # approved rows have it (the table's CHECK)
            references = cap.references_of(earlier.cap_xml)
        sender_name = issuer.settings.sender_name
        alert = cap.Alert(
            identifier=draft.identifier, sender=issuer.settings.sender, sent=at, msg_type=draft.msg_type,
            info=tuple(_with_sender(i, sender_name) for i in draft.info), areas=_areas(conn, draft.zones),
            references=references,
            incidents=f"incident-{draft.incident_id}" if draft.incident_id is not None else None)
        xml = cap.to_xml(alert, issuer.zone)
        row = conn.execute(
            f"""UPDATE warnings SET state = 'approved', approved_by = %s, approved_at = %s, cap_xml = %s
                WHERE id = %s RETURNING {_COLUMNS}""", (actor, at, xml, warning_id)).fetchone()
        assert row is not None
        details = {"warning_id": warning_id, "identifier": draft.identifier, "msg_type": draft.msg_type,
                   "drafted_by": draft.drafted_by}
        _event(conn, draft.incident_id, at, actor, "warning_approved", details)
        audit(conn, actor, "approve", "warning", str(warning_id), details)
        outgoing = message(cap.summary(xml), xml, alert.info)
        enqueue(conn, outgoing, at)
        for topic in topics(facts, issuer.topic_prefix):
            enqueue_to(conn, outgoing, at, channel="mqtt", address=topic)
        return _row(row)


def _with_sender(info: Info, sender_name: str) -> Info:
    return Info(language=info.language, category=info.category, event=info.event, urgency=info.urgency,
                severity=info.severity, certainty=info.certainty, headline=info.headline,
                description=info.description, instruction=info.instruction, response_type=info.response_type,
                sender_name=info.sender_name or sender_name, web=info.web)


def reject(conn: Connection, warning_id: int, *, actor: str, scope: ZoneScope, at: datetime,
           reason: str | None) -> WarningRow:
    """Turn a draft down (its drafter may withdraw their own); nothing is sent."""
    with conn.transaction():
        draft = _locked(conn, warning_id)
        _check_scope(conn, scope, draft.zones, f"warning {warning_id}")
        if draft.state != "draft":
            raise Conflict(f"warning {warning_id} is {draft.state} already; only a draft can be rejected")
        row = conn.execute(f"UPDATE warnings SET state = 'rejected' WHERE id = %s RETURNING {_COLUMNS}",
                           (warning_id,)).fetchone()
        assert row is not None
        details = {"warning_id": warning_id, "identifier": draft.identifier, "reason": reason}
        _event(conn, draft.incident_id, at, actor, "warning_rejected", details)
        audit(conn, actor, "reject", "warning", str(warning_id), details)
        return _row(row)


_IN_SCOPE = """(%(scope)s::text[] IS NULL OR EXISTS (
    SELECT 1 FROM zones z WHERE z.valid_to IS NULL AND z.code = ANY(w.zones)
      AND (z.code = ANY(%(scope)s::text[]) OR z.parent_code = ANY(%(scope)s::text[]))))"""


def list_warnings(conn: Connection, scope: ZoneScope, *, state: str | None = None, incident_id: int | None = None,
                  limit: int = 50, before_id: int | None = None) -> list[WarningRow]:
    """Newest first, those touching the caller's zones; ``before_id`` pages backwards."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM warnings w
            WHERE {_IN_SCOPE}
              AND (%(state)s::text IS NULL OR state = %(state)s)
              AND (%(incident)s::bigint IS NULL OR incident_id = %(incident)s)
              AND (%(before)s::bigint IS NULL OR id < %(before)s)
            ORDER BY id DESC LIMIT %(limit)s""",
        {"scope": None if scope is None else sorted(scope), "state": state, "incident": incident_id,
         "before": before_id, "limit": limit}).fetchall()
    return [_row(r) for r in rows]


def get_warning(conn: Connection, warning_id: int, scope: ZoneScope) -> WarningRow:
    row = conn.execute(f"SELECT {_COLUMNS} FROM warnings w WHERE id = %(id)s", {"id": warning_id}).fetchone()
    if row is None:
        raise NotFound(f"warning {warning_id} does not exist", field="id")
    warning = _row(row)
    _check_scope(conn, scope, warning.zones, f"warning {warning_id}")
    return warning


def public_warnings(conn: Connection, *, limit: int) -> list[tuple[str, datetime, str]]:
    """Approved messages, newest first: (identifier, approved_at, CAP XML)."""
    rows = conn.execute(
        "SELECT identifier, approved_at, cap_xml FROM warnings WHERE state = 'approved' "
        "ORDER BY approved_at DESC, id DESC LIMIT %s", (limit,)).fetchall()
    return [(str(r[0]), r[1], str(r[2])) for r in rows]


def public_xml(conn: Connection, identifier: str) -> str:
    row = conn.execute("SELECT cap_xml FROM warnings WHERE identifier = %s AND state = 'approved'",
                       (identifier,)).fetchone()
    if row is None:
        raise NotFound(f"no public warning has the identifier {identifier!r}", field="identifier")
    return str(row[0])
