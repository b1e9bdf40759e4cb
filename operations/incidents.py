"""Incidents from alarms, the system's side: an active alarm joins the one open incident of its district and
hazard, or opens it, and the incident's timeline records what the system did.

Grouping (``incident_key``): a hazard alarm of a ward joins its district's incident for that hazard (a flood in
Hải Châu is one incident with many station alarms), owned by the district's centre; the incident's ``kind`` is
the hazard, the name of its SOP card. Device alarms join the district's ``device`` incident, gateway alarms its
``network`` incident; dead letters and a stalled ingest the city's ``pipeline`` incident. Without a zone, the
city's.

An incident's severity is the worst of its alarms, raised as they rise and never lowered by the system.
Opening one queues an ``incident_new`` message for the operators of its zone and the city operators, in the
same transaction. Alarms clearing do not resolve an incident (operators do) but appear in its timeline.
Human transitions (acknowledge, assign, resolve) are operations/lifecycle.py's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection
from operations.alarm_store import Applied, StoredAlarm
from operations.alarms import SEVERITIES, Severity, as_severity, higher
from operations.outbox import Message, enqueue

__all__ = [
    "CITY",
    "SYSTEM",
    "TECHNICAL",
    "IncidentKey",
    "Opened",
    "ZoneInfo",
    "attach",
    "incident_key",
    "operators_of",
    "title",
]

CITY = "city"      # the city IOC: owner of escalated and city-wide incidents, zone of the city-wide ones
SYSTEM = "system"  # the actor of every change the evaluator makes

# The incidents that are not a hazard: their hazard code (also their kind) and names.
TECHNICAL: Mapping[str, tuple[str, str]] = {
    "device": ("Sự cố thiết bị", "Device fault"),
    "network": ("Sự cố mạng LoRaWAN", "Network fault"),
    "pipeline": ("Sự cố hệ thống thu nhận dữ liệu", "Data pipeline fault"),
}
_TECHNICAL_OF = {"device_silent": "device", "device_flatline": "device", "device_out_of_range": "device",
                 "gateway_offline": "network", "dead_letters": "pipeline", "ingest_stalled": "pipeline"}


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    code: str
    name: str
    level: str
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class IncidentKey:
    """Which open incident an alarm joins: zone (a district, or the city) and hazard; kind names the SOP card."""

    zone: str
    hazard: str
    kind: str

    @property
    def owner(self) -> str:
        return self.zone  # the district's centre, or the city IOC for city-wide incidents


@dataclass(frozen=True, slots=True)
class Opened:
    id: int
    key: IncidentKey
    severity: Severity
    title: str


def incident_key(source: str, hazard: str | None, zone: str | None, zones: Mapping[str, ZoneInfo]) -> IncidentKey:
    """The incident an alarm of ``source`` in ``zone`` (a ward, a district, or None) belongs to."""
    technical = _TECHNICAL_OF.get(source)
    code = hazard if technical is None and hazard else technical or "device"
    if technical == "pipeline" or zone is None:
        return IncidentKey(CITY, code, code)
    info = zones.get(zone)
    if info is None or info.level == "city":
        return IncidentKey(CITY, code, code)
    district = info.parent_code if info.level == "ward" and info.parent_code else info.code
    return IncidentKey(district, code, code)


def title(key: IncidentKey, zone_name: str, hazard_names: tuple[str, str]) -> str:
    """The incident's title, Vietnamese first, then English: "Ngập lụt – Hải Châu / Flood – Hai Chau"."""
    vi, en = hazard_names
    return f"{vi} – {zone_name} / {en} – {zone_name}"


def attach(conn: Connection, applied: Applied, at: datetime) -> list[Opened]:
    """Give every active alarm without an incident one (joining or opening it), raise incidents' severities
    with their alarms, and record cleared alarms in their incidents' timelines. Returns the incidents opened."""
    zones = _zones(conn)
    names = _hazard_names(conn)
    opened: list[Opened] = []
    orphans = conn.execute(
        "SELECT id, source, subject, severity, zone_code, hazard FROM alarms "
        "WHERE state = 'active' AND incident_id IS NULL ORDER BY id").fetchall()
    groups: dict[IncidentKey, list[tuple[Any, ...]]] = {}
    for row in orphans:
        groups.setdefault(incident_key(row[1], row[5], row[4], zones), []).append(row)
    for key, rows in groups.items():
        # Opened at the worst severity of the alarms joining it now, so the first message tells the truth.
        worst = max((as_severity(r[3]) for r in rows), key=SEVERITIES.index)
        found = conn.execute(
            "SELECT id, severity FROM incidents WHERE zone_code = %s AND hazard = %s "
            "AND state NOT IN ('resolved', 'closed') FOR UPDATE", (key.zone, key.hazard)).fetchone()
        new: Opened | None = None
        if found is None:
            zone_name = zones[key.zone].name if key.zone in zones else "Đà Nẵng"
            text = title(key, zone_name, names.get(key.hazard, (key.hazard, key.hazard)))
            inserted = conn.execute(
                """INSERT INTO incidents (zone_code, hazard, kind, severity, title, owner, opened_at, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (key.zone, key.hazard, key.kind, worst, text, key.owner, at, at)).fetchone()
            assert inserted is not None
            incident_id = int(inserted[0])
            _event(conn, incident_id, at, "opened", {"zone": key.zone, "hazard": key.hazard, "severity": worst,
                                                     "owner": key.owner})
            new = Opened(incident_id, key, worst, text)
            opened.append(new)
        else:
            incident_id = int(found[0])
            current = as_severity(found[1])
            if higher(current, worst) != current:
                top = next(r[0] for r in rows if r[3] == worst)
                _raise(conn, incident_id, current, worst, at, int(top))
        for alarm_id, source, subject, severity, zone, _hazard in rows:
            conn.execute("UPDATE alarms SET incident_id = %s WHERE id = %s", (incident_id, alarm_id))
            _event(conn, incident_id, at, "alarm_added",
                   {"alarm_id": alarm_id, "source": source, "subject": subject, "severity": severity, "zone": zone})
        if new is not None:
            _notify_new(conn, new, at)
    for alarm in applied.raised:
        if alarm.incident_id is not None:
            _raise_with(conn, alarm, at)
    for alarm in applied.cleared:
        if alarm.incident_id is not None:
            _event(conn, alarm.incident_id, at, "alarm_cleared",
                   {"alarm_id": alarm.id, "source": alarm.source, "subject": alarm.subject})
    return opened


def operators_of(conn: Connection, zone: str) -> list[str]:
    """Operators who act on ``zone``'s incidents: those given the zone, one of its wards or its district, and
    the city operators (operators without zones). Revoked users are left out."""
    return [str(r[0]) for r in conn.execute(
        """SELECT u.name FROM api_users u
           WHERE u.role = 'operator' AND u.revoked_at IS NULL
             AND (NOT EXISTS (SELECT 1 FROM api_user_zones uz WHERE uz.user_id = u.id)
                  OR EXISTS (SELECT 1 FROM api_user_zones uz JOIN zones z ON z.id = uz.zone_id
                             WHERE uz.user_id = u.id AND %(zone)s IN (z.code, z.parent_code)))
           ORDER BY u.name""", {"zone": zone})]


def _raise_with(conn: Connection, alarm: StoredAlarm, at: datetime) -> None:
    assert alarm.incident_id is not None
    row = conn.execute("SELECT severity FROM incidents WHERE id = %s AND state NOT IN ('resolved', 'closed') "
                       "FOR UPDATE", (alarm.incident_id,)).fetchone()
    if row is None:
        return  # resolved by an operator: the system does not reopen it
    current = as_severity(row[0])
    if higher(current, alarm.severity) != current:
        _raise(conn, alarm.incident_id, current, alarm.severity, at, alarm.id)


def _raise(conn: Connection, incident_id: int, before: Severity, after: Severity, at: datetime,
           alarm_id: int) -> None:
    conn.execute("UPDATE incidents SET severity = %s, updated_at = %s WHERE id = %s", (after, at, incident_id))
    _event(conn, incident_id, at, "severity_raised", {"from": before, "to": after, "alarm_id": alarm_id})


def _event(conn: Connection, incident_id: int, at: datetime, action: str, details: Mapping[str, Any]) -> None:
    conn.execute("INSERT INTO incident_events (incident_id, at, actor, action, details) "
                 "VALUES (%s, %s, %s, %s, %s::jsonb)",
                 (incident_id, at, SYSTEM, action, json.dumps(dict(details), ensure_ascii=False)))


def _notify_new(conn: Connection, incident: Opened, at: datetime) -> None:
    users = operators_of(conn, incident.key.zone)
    data = {"incident_id": incident.id, "zone": incident.key.zone, "hazard": incident.key.hazard,
            "kind": incident.key.kind, "severity": incident.severity, "title": incident.title,
            "owner": incident.key.owner, "opened_at": at.isoformat()}
    text = f"[IOC] Sự cố mới #{incident.id} ({incident.severity}): {incident.title}"
    body = (f"{text}\n\nNew incident #{incident.id}, severity {incident.severity}, owner {incident.key.owner}, "
            f"opened {at.isoformat()}. See /api/v1/incidents/{incident.id}.")
    enqueue(conn, Message(f"incident:{incident.id}:new", "incident_new", f"Sự cố mới / New incident: "
                          f"{incident.title}", text, body, data), at, users=users)


def _zones(conn: Connection) -> dict[str, ZoneInfo]:
    return {str(c): ZoneInfo(str(c), str(n), str(lv), None if p is None else str(p)) for c, n, lv, p in conn.execute(
        "SELECT code, name, level, parent_code FROM zones WHERE valid_to IS NULL")}


def _hazard_names(conn: Connection) -> dict[str, tuple[str, str]]:
    names = {str(c): (str(vi), str(en)) for c, vi, en in conn.execute("SELECT code, name_vi, name_en FROM hazards")}
    return {**names, **TECHNICAL}

