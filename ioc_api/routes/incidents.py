"""Incidents: alarms of one zone and hazard grouped, handled by operators along ``operations/lifecycle.py``.

Actions are sub-resources of the incident, as the devices' are (``/devices/{dev_eui}/claim``):
``POST /incidents/{id}/acknowledge`` (tiếp nhận), ``/start`` (đang xử lý), ``/resolve`` (đã xử lý), ``/close``
(đóng), ``/reopen`` (a resolved incident back to in progress), ``/assign``, ``/comments``, and
``PUT``/``DELETE /incidents/{id}/checklist/{step}`` to tick and untick an SOP step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from ioc_api.deps import CurrentCaller, Db, SopDep
from ioc_api.errors import ErrorBody
from ioc_api.queries import incidents as queries
from ioc_api.schemas.operations import (
    Assignment,
    ChecklistStep,
    Comment,
    Incident,
    IncidentDetail,
    IncidentEvent,
    IncidentList,
    IncidentState,
    Note,
    Severity,
)
from operations.lifecycle import TRANSITIONS, Transition

__all__ = ["IncidentId", "router"]

router = APIRouter(tags=["operations"])

IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1)]
StepId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,63}$", examples=["close_roads"])]

_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorBody, "description": (
    "the incident's state does not allow this action (the message names the current state), or it is closed")}}

_WHO = ("District operators act on the incidents of their zones (a district includes its wards), also once "
        "escalated to the city; city operators (no zones) and admins on all; technicians and developers may not "
        "(403). Written to the incident's timeline and the audit log.")


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/incidents", response_model=IncidentList,
            summary="List incidents you may see: open ones (new, acknowledged, in progress) unless `state` says",
            description="Most severe first, then newest. Technicians see the device and network incidents of their "
                        "zones; developers are refused (403).")
def get_incidents(
    conn: Db,
    caller: CurrentCaller,
    state: Annotated[list[IncidentState] | None, Query(description="repeatable; default: new, acknowledged, "
                                                                   "in_progress")] = None,
    zone: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,64}$", description="a district includes its wards")
                    ] = None,
    hazard: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] = None,
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> IncidentList:
    filters = queries.IncidentFilters(states=tuple(state) if state else queries.OPEN_STATES, zone=zone,
                                      hazard=hazard, kind=kind, severity=severity)
    return queries.list_incidents(conn, filters, caller, limit=limit, offset=offset)


@router.get("/incidents/{incident_id}", response_model=IncidentDetail,
            summary="One incident with its alarms, timeline, and SOP card (the zone's roads and shelters, the "
                    "checklist's ticks)")
def get_incident(incident_id: IncidentId, conn: Db, caller: CurrentCaller, sop: SopDep) -> IncidentDetail:
    return queries.get_incident(conn, incident_id, caller, sop)


def _transition(action: Transition, summary: str) -> None:
    allowed, target = TRANSITIONS[action]

    def handler(incident_id: IncidentId, conn: Db, caller: CurrentCaller,
                body: Annotated[Note | None, Body()] = None) -> Incident:
        return queries.act(conn, incident_id, action, caller, _now(), body.note if body else None)

    handler.__name__ = f"post_{action}"
    router.post(f"/incidents/{{incident_id}}/{action}", response_model=Incident, summary=summary,
                description=f"From {' or '.join(sorted(allowed))} to {target}. The body (`note`) may be left out. "
                            + _WHO, responses=_CONFLICT)(handler)


_transition("acknowledge", "Acknowledge an incident (tiếp nhận): the centre has taken it in; stops escalation")
_transition("start", "Start work on an incident (đang xử lý)")
_transition("resolve", "Resolve an incident (đã xử lý): the situation is handled")
_transition("close", "Close a resolved incident (đóng): final")
_transition("reopen", "Reopen a resolved incident (back to in progress) when its condition returned before closing")


@router.post("/incidents/{incident_id}/assign", response_model=Incident, summary="Assign an incident to an operator",
             description="`assignee` must be an active operator or admin allowed on the incident's zone (422 "
                         "naming `assignee` otherwise); null unassigns. " + _WHO, responses=_CONFLICT)
def post_assign(incident_id: IncidentId, body: Assignment, conn: Db, caller: CurrentCaller) -> Incident:
    return queries.assign(conn, incident_id, body.assignee, caller, _now(), body.note)


@router.post("/incidents/{incident_id}/comments", response_model=IncidentEvent, status_code=201,
             summary="Comment on an incident (kept in its timeline)", description=_WHO, responses=_CONFLICT)
def post_comment(incident_id: IncidentId, body: Comment, conn: Db, caller: CurrentCaller) -> IncidentEvent:
    return queries.comment(conn, incident_id, body.text, caller, _now())


@router.put("/incidents/{incident_id}/checklist/{step}", response_model=list[ChecklistStep],
            summary="Tick a step of the incident's SOP card",
            description="Answers the whole checklist. Ticking a ticked step changes nothing. 404 (field `step`) "
                        "for a step the card does not have. " + _WHO, responses=_CONFLICT)
def put_step(incident_id: IncidentId, step: StepId, conn: Db, caller: CurrentCaller,
             sop: SopDep) -> list[ChecklistStep]:
    return queries.tick(conn, incident_id, step, True, caller, _now(), sop)


@router.delete("/incidents/{incident_id}/checklist/{step}", response_model=list[ChecklistStep],
               summary="Untick a step of the incident's SOP card",
               description="Answers the whole checklist. Unticking an unticked step changes nothing. " + _WHO,
               responses=_CONFLICT)
def delete_step(incident_id: IncidentId, step: StepId, conn: Db, caller: CurrentCaller,
                sop: SopDep) -> list[ChecklistStep]:
    return queries.tick(conn, incident_id, step, False, caller, _now(), sop)
