"""Zones as versioned rows: import a boundary file, list current zones and their history."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateways.database import Connection
from ioc_api.queries.audit import audit
from ioc_core.errors import Invalid
from ioc_core.zones import PARENT_LEVEL, Zone, multipolygon, polygon_text

__all__ = ["DeviceRezone", "ZoneImportReport", "ZoneRecord", "import_zones", "list_zones"]


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """One stored version of a zone. ``valid_from`` None: valid since always (a seeded zone); ``valid_to``
    None: the current version. ``devices`` counts the devices whose zone is this very row."""

    id: int
    code: str
    name: str
    level: str
    parent_code: str | None
    version: int
    approximate: bool
    valid_from: datetime | None
    valid_to: datetime | None
    devices: int


@dataclass(frozen=True, slots=True)
class DeviceRezone:
    """A device whose zone row changed; ``None`` means outside every current zone (or no coordinates)."""

    dev_eui: str
    old_zone: str | None
    old_version: int | None
    new_zone: str | None
    new_version: int | None


@dataclass(frozen=True, slots=True)
class ZoneImportReport:
    """What an import did (or, with ``dry_run``, would do); ``changes`` holds each audit record's changes."""

    created: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    retired: tuple[str, ...]
    rezoned: tuple[DeviceRezone, ...]
    dry_run: bool
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Wanted:
    name: str
    level: str
    parent: str | None
    approximate: bool
    boundary: dict[str, Any]
    parts: tuple[Zone, ...]


@dataclass(frozen=True, slots=True)
class _Current:
    name: str
    level: str
    parent: str | None
    approximate: bool
    boundary: dict[str, Any]
    version: int


def import_zones(
    conn: Connection,
    zones: Sequence[Zone],
    *,
    actor: str,
    approximate: bool,
    retire_missing: bool = False,
    dry_run: bool = False,
) -> ZoneImportReport:
    """Make the stored zones match ``zones`` in one transaction, keeping every earlier version.

    A zone whose boundary, name, level, parent or approximate flag differs gets a new row (``version`` + 1,
    ``valid_from = now()``) and its current row is closed (``valid_to = now()``); measurements and uplinks keep
    pointing at the row they were taken in. Identical zones are not touched. ``approximate`` marks every zone
    approximate; otherwise a zone is approximate only when its source says so. With ``retire_missing``,
    current zones absent from ``zones`` are closed. Devices whose zone row was closed, or that lie in a new
    row, get their zone again from their coordinates (wards first); one without coordinates follows its
    zone's code to the new version. Every zone and device change is audited. ``dry_run`` does all of it and
    rolls back, so the report is exact and nothing is written.
    """
    wanted = _wanted(zones, approximate)
    with conn.transaction(force_rollback=dry_run):
        # Imports queue behind each other (and behind seeding); readers are not blocked.
        conn.execute("LOCK TABLE zones IN SHARE ROW EXCLUSIVE MODE")
        current = _current(conn)
        retiring = [code for code in current if code not in wanted] if retire_missing else []
        _check_parents(wanted, current, set(retiring))

        created: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        changes: dict[str, dict[str, Any]] = {}
        for code, want in wanted.items():
            old = current.get(code)
            if old is None:
                version = _insert(conn, code, want)
                created.append(code)
                changes[code] = {
                    "version": [None, version], "name": want.name, "level": want.level, "parent": want.parent,
                    "approximate": want.approximate, "boundary": _fingerprint(want.boundary),
                }
                continue
            diff = _diff(old, want)
            if not diff:
                unchanged.append(code)
                continue
            conn.execute("UPDATE zones SET valid_to = now() WHERE code = %s AND valid_to IS NULL", (code,))
            version = _insert(conn, code, want, version=old.version + 1)
            changed.append(code)
            changes[code] = {"version": [old.version, version], **diff}
        for code in retiring:
            row = conn.execute(
                "UPDATE zones SET valid_to = now() WHERE code = %s AND valid_to IS NULL RETURNING valid_to",
                (code,),
            ).fetchone()
            assert row is not None
            changes[code] = {"version": current[code].version, "valid_to": [None, row[0].isoformat()]}
        for code in (*created, *changed):
            audit(conn, actor, "create" if code in created else "update", "zone", code, changes[code])
        for code in retiring:
            audit(conn, actor, "retire", "zone", code, changes[code])

        rezoned = _rezone(conn, closed=[*changed, *retiring], new=[*created, *changed])
        for move in rezoned:
            audit(conn, actor, "rezone", "device", move.dev_eui, {
                "zone": [move.old_zone, move.new_zone], "zone_version": [move.old_version, move.new_version],
            })
    return ZoneImportReport(
        created=tuple(created), changed=tuple(changed), unchanged=tuple(unchanged), retired=tuple(retiring),
        rezoned=tuple(rezoned), dry_run=dry_run, changes=changes,
    )


def list_zones(conn: Connection, *, include_history: bool = False) -> list[ZoneRecord]:
    """Current zones (with ``include_history``, every version), cities first, then districts, then wards."""
    rows = conn.execute(
        """SELECT z.id, z.code, z.name, z.level, z.parent_code, z.version, z.approximate,
                  CASE WHEN isfinite(z.valid_from) THEN z.valid_from END,
                  CASE WHEN isfinite(z.valid_to) THEN z.valid_to END,
                  (SELECT count(*) FROM devices d WHERE d.zone_id = z.id)
           FROM zones z
           WHERE %s OR z.valid_to IS NULL
           ORDER BY CASE z.level WHEN 'city' THEN 0 WHEN 'district' THEN 1 ELSE 2 END, z.code, z.version""",
        (include_history,),
    ).fetchall()
    return [ZoneRecord(*row) for row in rows]


def _wanted(zones: Iterable[Zone], approximate: bool) -> dict[str, _Wanted]:
    by_code: dict[str, list[Zone]] = {}
    for zone in zones:
        by_code.setdefault(zone.code, []).append(zone)
    if not by_code:
        raise Invalid("there are no zones to import", field="zones")
    wanted: dict[str, _Wanted] = {}
    for code, parts in by_code.items():
        first = parts[0]
        if any((p.name, p.level, p.parent, p.approximate) != (first.name, first.level, first.parent,
                                                              first.approximate) for p in parts):
            raise Invalid(f"zone {code!r}: its parts disagree on name, level, parent or approximate",
                           field="zones")
        wanted[code] = _Wanted(first.name, first.level, first.parent, approximate or first.approximate,
                               multipolygon(parts), tuple(parts))
    return wanted


def _current(conn: Connection) -> dict[str, _Current]:
    rows = conn.execute(
        """SELECT code, name, level, parent_code, approximate, boundary, version FROM zones
           WHERE valid_to IS NULL ORDER BY valid_from"""
    ).fetchall()
    return {r[0]: _Current(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}


def _check_parents(wanted: dict[str, _Wanted], current: dict[str, _Current], retiring: set[str]) -> None:
    """Every zone the import touches must have a parent of the level above, in the file or stored and kept."""
    levels = {code: zone.level for code, zone in current.items() if code not in retiring}
    levels.update((code, zone.level) for code, zone in wanted.items())
    children = [(code, zone.level, zone.parent) for code, zone in wanted.items()]
    # Stored zones whose parent the import changes or retires must still fit.
    children += [(code, zone.level, zone.parent) for code, zone in current.items()
                 if code not in wanted and code not in retiring and zone.parent in (wanted.keys() | retiring)]
    for code, level, parent in children:
        if parent is None:
            if level == "ward":
                raise Invalid(f"ward {code!r} has no parent district", field="parent")
            continue
        expected = PARENT_LEVEL.get(level)
        if expected is None:
            raise Invalid(f"{level} {code!r} cannot have a parent", field="parent")
        if parent not in levels:
            gone = " (it would be retired)" if parent in retiring else ""
            raise Invalid(f"{level} {code!r}: parent {parent!r} is neither in the file nor stored{gone}",
                           field="parent")
        if levels[parent] != expected:
            raise Invalid(f"{level} {code!r}: parent {parent!r} is a {levels[parent]}, not a {expected}",
                           field="parent")


def _diff(old: _Current, new: _Wanted) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for key, before, after in (
        ("name", old.name, new.name),
        ("level", old.level, new.level),
        ("parent", old.parent, new.parent),
        ("approximate", old.approximate, new.approximate),
    ):
        if before != after:
            diff[key] = [before, after]
    if old.boundary != new.boundary:
        diff["boundary"] = [_fingerprint(old.boundary), _fingerprint(new.boundary)]
    return diff


def _insert(conn: Connection, code: str, zone: _Wanted, *, version: int | None = None) -> int:
    """A new current row for ``code`` with its rings; a first version follows any retired ones."""
    row = conn.execute(
        """INSERT INTO zones (code, name, level, parent_code, boundary, approximate, valid_from, version)
           VALUES (%(code)s, %(name)s, %(level)s, %(parent)s, %(boundary)s::jsonb, %(approximate)s, now(),
                   coalesce(%(version)s, (SELECT max(version) + 1 FROM zones WHERE code = %(code)s), 1))
           RETURNING id, version""",
        {"code": code, "name": zone.name, "level": zone.level, "parent": zone.parent,
         "boundary": json.dumps(zone.boundary, ensure_ascii=False), "approximate": zone.approximate,
         "version": version},
    ).fetchone()
    assert row is not None
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO zone_rings (zone_id, ring) VALUES (%s, %s::polygon)",
            [(row[0], polygon_text(part.polygon[0])) for part in zone.parts],
        )
    return int(row[1])


def _rezone(conn: Connection, *, closed: list[str], new: list[str]) -> list[DeviceRezone]:
    """Re-derive the zone of devices in a closed zone row or inside a new one; returns those that moved."""
    if not closed and not new:
        return []
    rows = conn.execute(
        """WITH candidates AS (
                SELECT d.id, d.zone_id, d.longitude, d.latitude FROM devices d
                WHERE d.zone_id IN (SELECT id FROM zones WHERE code = ANY(%(closed)s) AND valid_to = now())
                   OR (d.longitude IS NOT NULL AND d.latitude IS NOT NULL AND EXISTS (
                        SELECT 1 FROM zone_rings r JOIN zones z ON z.id = r.zone_id
                        WHERE z.code = ANY(%(new)s) AND z.valid_to IS NULL
                          AND r.ring @> point(d.longitude, d.latitude)))
            ), derived AS (
                SELECT c.id, c.zone_id AS old_id,
                       CASE WHEN c.longitude IS NOT NULL AND c.latitude IS NOT NULL THEN
                           zone_at(c.longitude, c.latitude)
                       ELSE
                           (SELECT z.id FROM zones z JOIN zones o ON o.code = z.code
                            WHERE o.id = c.zone_id AND z.valid_to IS NULL)
                       END AS new_id
                FROM candidates c
            )
            UPDATE devices d SET zone_id = x.new_id, updated_at = now()
            FROM derived x LEFT JOIN zones o ON o.id = x.old_id LEFT JOIN zones n ON n.id = x.new_id
            WHERE d.id = x.id AND x.new_id IS DISTINCT FROM x.old_id
            RETURNING d.dev_eui, o.code, o.version, n.code, n.version""",
        {"closed": closed, "new": new},
    ).fetchall()
    return sorted((DeviceRezone(*row) for row in rows), key=lambda move: move.dev_eui)


def _fingerprint(boundary: dict[str, Any]) -> str:
    """A short hash that tells boundaries apart in the audit log without copying the geometry."""
    text = json.dumps(boundary, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


