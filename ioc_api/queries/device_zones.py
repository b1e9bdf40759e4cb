"""Where a device stands: the current zone at a point, a zone a caller names, and a caller's zones.

The zone of a device always comes from its position (wards before districts). A zone code a caller sends is a
check against that position, never a replacement for it: a typo in the coordinates shows up as a refusal
instead of a device filed in the wrong district.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateways.database import Connection
from ioc_core.errors import Invalid, NotAllowed

__all__ = ["Placed", "ZoneScope", "check_scope", "placed_in", "zone_at"]

ZoneScope = frozenset[str] | None
"""Zone codes a caller is limited to (a district code covers its wards); None is the whole city."""


@dataclass(frozen=True, slots=True)
class Placed:
    """The current zone that contains a point."""

    zone_id: int
    code: str
    parent: str | None


def zone_at(conn: Connection, lon: float, lat: float) -> Placed:
    """The most precise current zone containing the point; Invalid (field latitude) outside the city."""
    row = conn.execute(
        "SELECT z.id, z.code, z.parent_code FROM zones z WHERE z.id = zone_at(%s, %s)",
        (lon, lat),
    ).fetchone()
    if row is None:
        raise Invalid(f"({lat}, {lon}) is outside the city area: no zone contains it", field="latitude")
    return Placed(int(row[0]), str(row[1]), row[2])


def check_scope(scope: ZoneScope, code: str, parent: str | None, what: str) -> None:
    if scope is not None and code not in scope and (parent is None or parent not in scope):
        allowed = ", ".join(sorted(scope)) or "none"
        raise NotAllowed(f"{what} is in zone {code!r}; your zones: {allowed}")


def placed_in(conn: Connection, dev_eui: str, zone: str, position: tuple[float | None, float | None], *,
              sent: bool) -> Placed:
    """The zone at ``position`` (latitude, longitude), checked to be ``zone`` or one of its wards.

    ``sent`` tells whether the caller sent the position or it is the stored one, for a message that says what
    to change. Invalid naming ``zone`` when no current zone has that code or the position lies elsewhere, and
    naming ``latitude`` when the device has no position at all.
    """
    known = conn.execute("SELECT level FROM zones WHERE code = %s AND valid_to IS NULL", (zone,)).fetchone()
    if known is None:
        raise Invalid(f"no current zone has the code {zone!r} (GET /api/v1/zones lists them)", field="zone")
    lat, lon = position
    if lat is None or lon is None:
        raise Invalid(f"device {dev_eui} has no position yet, so its zone cannot be checked: send latitude and "
                      f"longitude (a point inside {zone!r}) with the zone", field="latitude")
    here = zone_at(conn, lon, lat)
    if zone not in (here.code, here.parent):
        where = "the position sent" if sent else f"device {dev_eui}'s stored position"
        hint = ("check latitude and longitude" if sent
                else f"send its new latitude and longitude (a point inside {zone!r}) with the zone")
        raise Invalid(f"{where} ({lat}, {lon}) is in zone {here.code!r}, not {zone!r}: {hint}", field="zone")
    return here
