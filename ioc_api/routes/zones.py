"""Zones as operators see them: each with its devices' health, recent traffic and key values."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ioc_api.deps import Db, Reader
from ioc_api.errors import Forbidden, NotFound
from ioc_api.queries.monitoring import zone_summaries
from ioc_api.schemas.monitoring import ZoneSummary

__all__ = ["router"]

router = APIRouter(tags=["zones"])


@router.get("/zones", response_model=list[ZoneSummary], summary="Current zones you may see, each with a summary")
def get_zones(conn: Db, scope: Reader) -> list[ZoneSummary]:
    return zone_summaries(conn, scope.zones)


@router.get("/zones/{code}", response_model=ZoneSummary, summary="One zone's summary")
def get_zone(code: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$", examples=["hai-chau"])], conn: Db,
             scope: Reader) -> ZoneSummary:
    found = zone_summaries(conn, scope.zones, code)
    if found:
        return found[0]
    if scope.zones is not None and zone_summaries(conn, None, code):
        raise Forbidden(f"zone {code!r} is outside your zones")
    raise NotFound(f"zone {code!r} does not exist", field="code")
