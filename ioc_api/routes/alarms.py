"""Alarms the platform raised (hazard thresholds, devices, gateways, the pipeline), deduplicated and cleared by it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ioc_api.deps import Caller, CurrentCaller, Db, read_scope
from ioc_api.queries.alarms import TECHNICIAN_SOURCES, AlarmFilters, AlarmScope, get_alarm, list_alarms
from ioc_api.schemas.operations import Alarm, AlarmList, AlarmSource, Severity

__all__ = ["AlarmId", "alarm_scope", "router"]

router = APIRouter(tags=["operations"])

AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def alarm_scope(caller: Caller) -> AlarmScope:
    """The alarms ``caller`` may read; NotAllowed for developers (``read_scope``)."""
    return AlarmScope(read_scope(caller), TECHNICIAN_SOURCES if caller.role == "technician" else None)


@router.get("/alarms", response_model=AlarmList, summary="List alarms you may see, newest first, with filters",
            description="City operators and admins see every alarm; district operators those of their zones (a "
                        "district includes its wards); technicians only device and gateway alarms in their zones; "
                        "developers are refused (403).")
def get_alarms(
    conn: Db,
    caller: CurrentCaller,
    state: Annotated[str | None, Query(pattern="^(active|cleared)$")] = None,
    source: AlarmSource | None = None,
    zone: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,64}$", description="a district includes its wards")
                    ] = None,
    severity: Severity | None = None,
    hazard: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = None,
    incident_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AlarmList:
    filters = AlarmFilters(state=state, source=source, zone=zone, severity=severity, hazard=hazard,
                           incident_id=incident_id)
    return list_alarms(conn, filters, alarm_scope(caller), limit=limit, offset=offset)


@router.get("/alarms/{alarm_id}", response_model=Alarm, summary="One alarm")
def get_one_alarm(alarm_id: AlarmId, conn: Db, caller: CurrentCaller) -> Alarm:
    return get_alarm(conn, alarm_id, alarm_scope(caller))
