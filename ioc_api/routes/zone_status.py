"""Each zone's hazard status (normal, watch, alert, danger, unknown) as the platform evaluates it, with its changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ioc_api.deps import Db, Reader
from ioc_api.queries.zone_status import zone_status, zone_statuses
from ioc_api.schemas.operations import ZoneStatus

__all__ = ["router"]

router = APIRouter(tags=["operations"])

Hazard = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", examples=["flood"],
                                     description="only this hazard (hazards.code)")]


@router.get("/zone-status", response_model=list[ZoneStatus],
            summary="Every district and ward you may see with its status per hazard (the city map in one call)",
            description="A zone and hazard the evaluator has not assessed yet is `unknown`, never `normal`. "
                        "Operators with zones, and technicians, see their zones and their wards; developers are "
                        "refused (403).")
def get_zone_statuses(conn: Db, scope: Reader, hazard: Hazard = None) -> list[ZoneStatus]:
    return zone_statuses(conn, scope.zones, hazard=hazard)


@router.get("/zones/{code}/status", response_model=ZoneStatus,
            summary="One zone's status per hazard: since when, why (the stations and values), and its recent changes")
def get_zone_status(
    code: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$", examples=["hai-chau"])],
    conn: Db,
    scope: Reader,
    hazard: Hazard = None,
    limit: Annotated[int, Query(ge=0, le=500, description="how many recent changes, newest first")] = 20,
) -> ZoneStatus:
    return zone_status(conn, code, scope.zones, limit=limit, hazard=hazard)
