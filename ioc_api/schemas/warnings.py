"""Public warnings as operators draft and read them, and as the public reads them (CAP 1.2 in JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from operations.cap import Category, Certainty, Info, MsgType, ResponseType, Severity, Urgency

__all__ = [
    "InfoBlock",
    "PublicArea",
    "PublicInfo",
    "PublicWarning",
    "WarningDraft",
    "WarningList",
    "WarningPublic",
    "WarningReject",
]

ZoneCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class InfoBlock(BaseModel):
    """One CAP ``<info>`` block in one language; the enumerations are CAP 1.2's own words."""

    model_config = ConfigDict(extra="forbid")

    language: Literal["vi-VN", "en-US"]
    category: list[Category] = Field(min_length=1, max_length=5, examples=[["Met"]])
    event: Annotated[Text, Field(max_length=100, examples=["Ngập lụt"])]
    response_type: list[ResponseType] = Field(default_factory=list, max_length=5, examples=[["Prepare"]])
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    headline: Annotated[Text, Field(max_length=160)]
    description: Annotated[Text, Field(max_length=2000)]
    instruction: Annotated[Text, Field(max_length=1000)]

    def to_info(self) -> Info:
        return Info(language=self.language, category=tuple(self.category), event=self.event,
                    urgency=self.urgency, severity=self.severity, certainty=self.certainty, headline=self.headline,
                    description=self.description, instruction=self.instruction,
                    response_type=tuple(self.response_type))

    @classmethod
    def of(cls, info: Info) -> InfoBlock:
        return cls.model_validate({"language": info.language, "category": list(info.category),
                                   "event": info.event, "response_type": list(info.response_type),
                                   "urgency": info.urgency, "severity": info.severity,
                                   "certainty": info.certainty, "headline": info.headline,
                                   "description": info.description, "instruction": info.instruction})


class WarningDraft(BaseModel):
    """What an operator may set on a draft; whatever is left out comes from the incident."""

    model_config = ConfigDict(extra="forbid")

    zones: list[ZoneCode] | None = Field(default=None, min_length=1, max_length=50,
                                         description="ward or district codes; default: the incident's wards in "
                                         "alert or danger, else its zone", examples=[["hai-chau"]])
    info: list[InfoBlock] | None = Field(default=None, min_length=2, max_length=2,
                                         description="one block in vi-VN and one in en-US; default: generated")


class WarningReject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class WarningPublic(BaseModel):
    """A warning as operators see it, draft or not."""

    id: int
    identifier: str
    incident_id: int | None
    msg_type: MsgType
    replaces: int | None
    state: Literal["draft", "approved", "rejected"]
    zones: list[str]
    info: list[InfoBlock]
    drafted_by: str
    drafted_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    cap_url: str | None = Field(description="the frozen CAP 1.2 XML, once approved (public, no key)")


class WarningList(BaseModel):
    items: list[WarningPublic]
    next_before_id: int | None


class PublicArea(BaseModel):
    description: str | None
    zone: str | None


class PublicInfo(BaseModel):
    language: str | None
    category: list[str]
    event: str | None
    response_type: list[str]
    urgency: str | None
    severity: str | None
    certainty: str | None
    sender_name: str | None
    headline: str | None
    description: str | None
    instruction: str | None
    areas: list[PublicArea]


class PublicWarning(BaseModel):
    """An issued CAP 1.2 message in JSON; ``cap_url`` is the message itself, with the area polygons."""

    identifier: str | None
    sender: str | None
    sent: str | None
    status: str | None
    msg_type: str | None
    scope: str | None
    references: list[str] = Field(description="sender,identifier,sent of each earlier message it updates or "
                                  "cancels")
    incidents: str | None
    info: list[PublicInfo]
    cap_url: str
