"""Zones as operators see them: each with its devices' health, recent traffic and key values."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ioc_api.deps import Db, Reader
from ioc_api.queries.monitoring import zone_summaries
from ioc_api.queries.zones import list_zones
from ioc_api.schemas.monitoring import ZoneSummary, ZoneVersion
from ioc_core.errors import NotAllowed, NotFound

__all__ = ["router"]

router = APIRouter(tags=["zones"])


@router.get("/zones", response_model=list[ZoneSummary], summary="Current zones you may see, each with a summary")
def get_zones(conn: Db, scope: Reader) -> list[ZoneSummary]:
    return zone_summaries(conn, scope.zones)


ZoneCode = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$", examples=["hai-chau"])]


@router.get("/zones/{code}", response_model=ZoneSummary, summary="One zone's summary")
def get_zone(code: ZoneCode, conn: Db, scope: Reader) -> ZoneSummary:
    found = zone_summaries(conn, scope.zones, code)
    if found:
        return found[0]
    if scope.zones is not None and zone_summaries(conn, None, code):
        raise NotAllowed(f"zone {code!r} is outside your zones")
    raise NotFound(f"zone {code!r} does not exist", field="code")


@router.get("/zones/{code}/versions", response_model=list[ZoneVersion],
            summary="Every version of a zone's boundary; readings keep the version they were taken in")
def get_zone_versions(code: ZoneCode, conn: Db, scope: Reader) -> list[ZoneVersion]:
    get_zone(code, conn, scope)  # the same 403/404 as the summary
    return [ZoneVersion(code=z.code, name=z.name, level=z.level, parent_code=z.parent_code, version=z.version,
                        approximate=z.approximate, valid_from=z.valid_from, valid_to=z.valid_to, devices=z.devices)
            for z in list_zones(conn, include_history=True) if z.code == code]
