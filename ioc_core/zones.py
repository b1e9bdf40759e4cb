"""City zones (districts, wards) as polygons, and which zone a coordinate falls in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "DEFAULT_ZONES_RESOURCE",
    "LEVELS",
    "PARENT_LEVEL",
    "Ring",
    "Zone",
    "city_bounds",
    "load_default_zones",
    "multipolygon",
    "parse_geojson",
    "point_in_polygon",
    "polygon_text",
    "zone_at",
]

DEFAULT_ZONES_RESOURCE = "danang_districts.geojson"

LEVELS = ("city", "district", "ward")
"""Zone levels, largest first."""

PARENT_LEVEL = {"district": "city", "ward": "district"}
"""The level a zone's ``parent`` must have; a city has no parent."""

_CODE = re.compile(r"[a-z0-9-]{1,64}")

Ring = tuple[tuple[float, float], ...]
"""A closed ring of ``(lon, lat)`` points; the last point repeats the first."""


@dataclass(frozen=True, slots=True)
class Zone:
    """One area of the city. ``polygon[0]`` is the outer ring, any further rings are holes.

    A multi-part area (a district with islands) is one ``Zone`` per part, sharing ``code``. ``parent`` is the
    code of the enclosing zone (a ward's district); ``approximate`` is true when the source says the outline
    is not official.
    """

    code: str
    name: str
    level: str
    polygon: tuple[Ring, ...]
    parent: str | None = None
    approximate: bool = False

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(min_lon, min_lat, max_lon, max_lat)`` of the outer ring."""
        lons = [p[0] for p in self.polygon[0]]
        lats = [p[1] for p in self.polygon[0]]
        return min(lons), min(lats), max(lons), max(lats)

    def contains(self, lon: float, lat: float) -> bool:
        return point_in_polygon(self.polygon, lon, lat)


def load_default_zones() -> list[Zone]:
    """Da Nang's districts as packaged (approximate outlines, see the file's ``note``)."""
    text = resources.files("ioc_core.data").joinpath(DEFAULT_ZONES_RESOURCE).read_text(encoding="utf-8")
    return parse_geojson(text)


def parse_geojson(text: str) -> list[Zone]:
    """Zones from a GeoJSON FeatureCollection of Polygon/MultiPolygon features.

    Properties of each feature: ``code`` (``^[a-z0-9-]{1,64}$``, unique in the file), ``name`` (non-empty, kept
    exactly as written, Vietnamese included), ``level`` (city, district or ward; default ``"district"``),
    ``parent`` (the code of the zone one level up; required for a ward) and ``approximate`` (boolean, default
    false). A parent named in the same file must have the level above; a parent not in the file is left for
    the importer to find among the zones already stored, so a file of one district's wards can be imported on
    its own. Raises ValueError naming the feature index, its code and the problem.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"zones file is not JSON: {err}") from err
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise ValueError("zones file must be a GeoJSON FeatureCollection")
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise ValueError("zones FeatureCollection has no features")
    zones: list[Zone] = []
    levels: dict[str, str] = {}
    parents: list[tuple[str, str, str]] = []  # (where, level, parent) checked once every level is known
    for index, feature in enumerate(features):
        where = f"feature #{index}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise ValueError(f"{where} is not a GeoJSON Feature")
        props = feature.get("properties")
        if not isinstance(props, dict):
            raise ValueError(f"{where} has no properties")
        code, name = props.get("code"), props.get("name")
        if not isinstance(code, str) or not code:
            raise ValueError(f"{where} has no properties.code")
        where = f"feature #{index} ({code})"
        if not _CODE.fullmatch(code):
            raise ValueError(f"{where}: code must be 1 to 64 of a-z, 0-9 and '-'")
        if code in levels:
            raise ValueError(f"{where}: code {code!r} is used by two features")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where} has no properties.name")
        level = props.get("level", "district")
        if level not in LEVELS:
            raise ValueError(f"{where}: properties.level must be one of {', '.join(LEVELS)}, got {level!r}")
        levels[code] = level
        parent = props.get("parent")
        if parent is not None:
            if not isinstance(parent, str) or not _CODE.fullmatch(parent):
                raise ValueError(f"{where}: properties.parent must be a zone code, got {parent!r}")
            if level not in PARENT_LEVEL:
                raise ValueError(f"{where}: a {level} has no parent")
            if parent == code:
                raise ValueError(f"{where}: a zone cannot be its own parent")
            parents.append((where, level, parent))
        elif level == "ward":
            raise ValueError(f"{where}: a ward needs properties.parent (the code of its district)")
        approximate = props.get("approximate", False)
        if not isinstance(approximate, bool):
            raise ValueError(f"{where}: properties.approximate must be true or false")
        for polygon in _polygons(feature.get("geometry"), where):
            zones.append(Zone(code=code, name=name, level=level, polygon=polygon, parent=parent,
                              approximate=approximate))
    for where, level, parent in parents:
        if parent in levels and levels[parent] != PARENT_LEVEL[level]:
            raise ValueError(
                f"{where}: parent {parent!r} is a {levels[parent]}, but a {level}'s parent must be a "
                f"{PARENT_LEVEL[level]}"
            )
    return zones


def multipolygon(parts: Sequence[Zone]) -> dict[str, Any]:
    """The GeoJSON MultiPolygon of one zone's parts (holes included), as stored in ``zones.boundary``."""
    return {
        "type": "MultiPolygon",
        "coordinates": [[[list(p) for p in ring] for ring in part.polygon] for part in parts],
    }


def polygon_text(ring: Iterable[tuple[float, float]]) -> str:
    """A ring as PostgreSQL's ``polygon`` text, ``((lon,lat),...)``: how ``zone_rings`` stores a zone's outline."""
    return "(" + ",".join(f"({lon},{lat})" for lon, lat in ring) + ")"


def _polygons(geometry: Any, where: str) -> list[tuple[Ring, ...]]:
    if not isinstance(geometry, dict):
        raise ValueError(f"{where} has no geometry")
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        return [_polygon(coordinates, where)]
    if kind == "MultiPolygon":
        if not isinstance(coordinates, list) or not coordinates:
            raise ValueError(f"{where}: MultiPolygon has no polygons")
        return [_polygon(part, where) for part in coordinates]
    raise ValueError(f"{where}: geometry must be Polygon or MultiPolygon, got {kind!r}")


def _polygon(rings: Any, where: str) -> tuple[Ring, ...]:
    if not isinstance(rings, list) or not rings:
        raise ValueError(f"{where}: polygon has no rings")
    return tuple(_ring(ring, where) for ring in rings)


def _ring(ring: Any, where: str) -> Ring:
    if not isinstance(ring, list) or len(ring) < 4:
        raise ValueError(f"{where}: a ring needs at least 4 positions (closed triangle)")
    points: list[tuple[float, float]] = []
    for position in ring:
        if (
            not isinstance(position, list | tuple)
            or len(position) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in position[:2])
        ):
            raise ValueError(f"{where}: bad position {position!r}; expected [lon, lat]")
        lon, lat = float(position[0]), float(position[1])
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"{where}: position {position!r} is not [lon, lat] in degrees")
        points.append((lon, lat))
    if points[0] != points[-1]:
        raise ValueError(f"{where}: ring is not closed (first and last positions differ)")
    return tuple(points)


def point_in_polygon(polygon: Sequence[Ring], lon: float, lat: float) -> bool:
    """Even-odd ray casting over all rings, so holes subtract themselves."""
    inside = False
    for ring in polygon:
        x1, y1 = ring[-1]
        for x2, y2 in ring:
            # Half-open test on y, so a vertex on the ray is counted once.
            if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
            x1, y1 = x2, y2
    return inside


def zone_at(zones: Iterable[Zone], lon: float, lat: float) -> Zone | None:
    """The first zone containing the point, or None when it is outside all of them (sea, another city)."""
    for zone in zones:
        west, south, east, north = zone.bounds
        if west <= lon <= east and south <= lat <= north and zone.contains(lon, lat):
            return zone
    return None


def city_bounds(zones: Iterable[Zone]) -> tuple[float, float, float, float]:
    """``(min_lon, min_lat, max_lon, max_lat)`` over all zones."""
    boxes = [zone.bounds for zone in zones]
    if not boxes:
        raise ValueError("no zones")
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
