"""What the operations routes answer and take: zone hazard status, alarms, incidents with their timeline and SOP."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc_api.queries.users import NAME_PATTERN
from operations.sop import Contact, Text, ZonePlaces

__all__ = [
    "ALARM_SOURCES",
    "SEVERITIES",
    "Alarm",
    "AlarmList",
    "AlarmSource",
    "Assignment",
    "ChecklistStep",
    "Comment",
    "HazardStatus",
    "Incident",
    "IncidentDetail",
    "IncidentEvent",
    "IncidentList",
    "IncidentState",
    "Note",
    "Severity",
    "SopView",
    "Status",
    "StatusChange",
    "ZoneStatus",
]

Status = Literal["normal", "watch", "alert", "danger", "unknown"]
Severity = Literal["info", "minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "minor", "major", "critical")
AlarmSource = Literal["hazard", "device_silent", "device_flatline", "device_out_of_range", "gateway_offline",
                      "dead_letters", "ingest_stalled"]
ALARM_SOURCES: tuple[AlarmSource, ...] = ("hazard", "device_silent", "device_flatline", "device_out_of_range",
                                          "gateway_offline", "dead_letters", "ingest_stalled")
IncidentState = Literal["new", "acknowledged", "in_progress", "resolved", "closed"]


class HazardStatus(BaseModel):
    hazard: str = Field(examples=["flood"])
    hazard_name: Text
    status: Status = Field(description="unknown where the zone's stations are silent: never normal unseen")
    since: datetime | None = Field(description="when the status became what it is; null: never evaluated")
    evaluated_at: datetime | None
    reason: str
    evidence: list[dict[str, Any]] = Field(description="the stations and values that decided it")


class StatusChange(BaseModel):
    id: int
    hazard: str
    at: datetime
    from_status: Status | None
    to_status: Status
    reason: str
    evidence: list[dict[str, Any]]


class ZoneStatus(BaseModel):
    code: str = Field(examples=["hai-chau"])
    name: str = Field(examples=["Hải Châu"])
    level: str = Field(examples=["district"])
    parent_code: str | None
    worst: Status = Field(description="the worst status over the hazards (danger > alert > watch > unknown > normal)")
    hazards: list[HazardStatus]
    changes: list[StatusChange] | None = Field(
        default=None, description="newest first, bounded by `limit`; only in the one-zone answer")


class Alarm(BaseModel):
    id: int
    source: AlarmSource
    subject: str = Field(description="what the alarm is about, unique while active with its source")
    hazard: str | None
    zone: str | None
    device_eui: str | None
    severity: Severity
    state: Literal["active", "cleared"]
    message: str
    details: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    count: int
    clearing_since: datetime | None
    cleared_at: datetime | None
    incident_id: int | None


class AlarmList(BaseModel):
    items: list[Alarm]
    total: int
    limit: int
    offset: int


class Incident(BaseModel):
    id: int
    zone: str = Field(examples=["hai-chau"])
    hazard: str = Field(examples=["flood"])
    kind: str = Field(description="names the SOP card: a hazard code, or device, network, pipeline")
    severity: Severity
    state: IncidentState = Field(description="new (mới), acknowledged (tiếp nhận), in_progress (đang xử lý), "
                                             "resolved (đã xử lý), closed (đóng)")
    title: str
    owner: str = Field(description="the owning centre: the zone's district code, or 'city' once escalated")
    assignee: str | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    escalated_at: datetime | None
    escalation_level: int
    active_alarms: int


class IncidentList(BaseModel):
    items: list[Incident]
    total: int
    limit: int
    offset: int


class IncidentEvent(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="a user's name, or 'system'")
    action: str = Field(examples=["acknowledge"])
    details: dict[str, Any]


class ChecklistStep(BaseModel):
    id: str
    text: Text
    done_by: str | None
    done_at: datetime | None


class SopView(BaseModel):
    """The incident kind's SOP card, with the zone's roads and shelters and the checklist's ticks."""

    kind: str
    title: Text
    steps: list[ChecklistStep]
    contacts: list[Contact]
    places_zone: str | None = Field(description="the zone whose roads and shelters are shown (the district's "
                                                "when the ward has none of its own)")
    places: ZonePlaces | None


class IncidentDetail(Incident):
    alarms: list[Alarm]
    events: list[IncidentEvent] = Field(description="the timeline, oldest first")
    sop: SopView | None = Field(description="null when no card exists for the incident's kind")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000, description="kept in the timeline")


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(pattern=NAME_PATTERN, description="a user name (operator or admin allowed on "
                                                                    "the incident's zone), or null to unassign")
    note: str | None = Field(default=None, max_length=2000)


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)
