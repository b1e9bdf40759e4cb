"""Public warnings (CAP 1.2): operators draft them from incidents and a second operator approves them; the public
reads the approved ones without a key, as JSON, as an Atom feed and as the CAP XML itself.

Drafting, approving, rejecting and drafting an Update or Cancel are for operators and admins, on their zones (a
district operator on the wards of their district). The public routes are rate-limited per client address
(IOC_CAP_RATE_PER_MINUTE, IOC_CAP_RATE_BURST) since they need no key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response

from ioc_api.cap_feed import atom_feed
from ioc_api.deps import Access, CurrentCaller, Db, read_scope
from ioc_api.errors import ErrorBody, TooManyRequests
from ioc_api.queries.warnings import (
    Issuer,
    WarningRow,
    approve,
    draft_for_incident,
    draft_replacement,
    get_warning,
    list_warnings,
    public_warnings,
    public_xml,
    reject,
)
from ioc_api.rate_limit import TokenBuckets
from ioc_api.schemas.warnings import (
    InfoBlock,
    PublicWarning,
    WarningDraft,
    WarningList,
    WarningPublic,
    WarningReject,
)
from ioc_core.errors import NotAllowed
from operations.cap import summary

__all__ = ["PUBLIC_PATH", "AtomXml", "CapXml", "WarningsState", "public_router", "router"]

router = APIRouter(tags=["warnings"])
public_router = APIRouter(tags=["public warnings"])

PUBLIC_PATH = "/public/warnings"
FEED_LIMIT = 50
"""Entries of the Atom feed: well under the 900 KB a CAP feed may have (Google Public Alerts)."""


class CapXml(Response):
    media_type = "application/cap+xml"


class AtomXml(Response):
    media_type = "application/atom+xml"


@dataclass(frozen=True, slots=True)
class WarningsState:
    """Kept on ``app.state.warnings``: who issues the messages, and the public routes' per-address buckets."""

    issuer: Issuer
    requests: TokenBuckets
    api_prefix: str
    base_url: str | None = None


def _state(request: Request) -> WarningsState:
    state: WarningsState = request.app.state.warnings
    return state


def _operator(caller: CurrentCaller) -> Access:
    if caller.role not in ("operator", "admin"):
        raise NotAllowed(f"role {caller.role!r} may not handle warnings; needs operator or admin (developers read "
                         f"the public feed: GET /api/v1{PUBLIC_PATH})")
    return Access(caller, read_scope(caller))


Operator = Annotated[Access, Depends(_operator)]
WarningId = Annotated[int, Path(ge=1, le=2**62)]


def _base(request: Request) -> str:
    state = _state(request)
    return (state.base_url or str(request.base_url)).rstrip("/") + state.api_prefix


def _public(row: WarningRow, request: Request) -> WarningPublic:
    cap_url = f"{_base(request)}{PUBLIC_PATH}/{row.identifier}.xml" if row.state == "approved" else None
    return WarningPublic(id=row.id, identifier=row.identifier, incident_id=row.incident_id, msg_type=row.msg_type,
                         replaces=row.replaces, state=row.state,  # type: ignore[arg-type]
                         zones=row.zones, info=[InfoBlock.of(i) for i in row.info], drafted_by=row.drafted_by,
                         drafted_at=row.drafted_at, approved_by=row.approved_by, approved_at=row.approved_at,
                         cap_url=cap_url)


def _now() -> datetime:
    return datetime.now(UTC)


_DRAFT_DOC = ("Leave the body out (or send `{}`) for a draft generated from the incident: the wards of its zone "
              "in alert or danger for its hazard (else its zone), with Vietnamese and English text. Send `zones` "
              "and/or `info` (one block in `vi-VN`, one in `en-US`) to set them. The warning goes out only when "
              "a second, different operator approves it.")


@router.post("/incidents/{incident_id}/warnings", response_model=WarningPublic, status_code=201,
             summary="Draft a public warning (CAP Alert) from an incident", description=_DRAFT_DOC)
def post_draft(incident_id: WarningId, request: Request, conn: Db, access: Operator,
               body: Annotated[WarningDraft | None, Body()] = None) -> WarningPublic:
    body = body or WarningDraft()
    row = draft_for_incident(conn, _state(request).issuer, incident_id, actor=access.caller.name,
                             scope=access.zones, at=_now(), zones=body.zones,
                             info=None if body.info is None else [b.to_info() for b in body.info])
    return _public(row, request)


@router.get("/warnings", response_model=WarningList, summary="Warnings touching your zones, newest first")
def get_warnings(request: Request, conn: Db, access: Operator,
                 state: Literal["draft", "approved", "rejected"] | None = None,
                 incident_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                 before_id: Annotated[int | None, Query(ge=1, le=2**62,
                                                        description="next_before_id of the previous page")] = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> WarningList:
    rows = list_warnings(conn, access.zones, state=state, incident_id=incident_id, limit=limit,
                         before_id=before_id)
    return WarningList(items=[_public(r, request) for r in rows],
                       next_before_id=rows[-1].id if len(rows) == limit else None)


@router.get("/warnings/{warning_id}", response_model=WarningPublic, summary="One warning")
def get_one(warning_id: WarningId, request: Request, conn: Db, access: Operator) -> WarningPublic:
    return _public(get_warning(conn, warning_id, access.zones), request)


@router.post("/warnings/{warning_id}/approve", response_model=WarningPublic,
             summary="Approve a draft: its CAP message is frozen and sent to the public",
             description="Only a second operator may approve: the drafter is refused (403). A warning approved "
                         "already, rejected, or whose earlier message was replaced meanwhile is 409. On approval "
                         "the message is queued for every public notification route and published, retained, "
                         "on the public MQTT feed at `ioc/v1/{zone}/_warning` for each zone and its district.",
             responses={403: {"model": ErrorBody, "description": "you drafted it, or it covers zones outside "
                              "yours"},
                        409: {"model": ErrorBody, "description": "not a draft (approved or rejected already)"}})
def post_approve(warning_id: WarningId, request: Request, conn: Db, access: Operator) -> WarningPublic:
    row = approve(conn, _state(request).issuer, warning_id, actor=access.caller.name, scope=access.zones,
                  at=_now())
    return _public(row, request)


@router.post("/warnings/{warning_id}/reject", response_model=WarningPublic, summary="Reject a draft; nothing is sent")
def post_reject(warning_id: WarningId, request: Request, conn: Db, access: Operator,
                body: Annotated[WarningReject | None, Body()] = None) -> WarningPublic:
    row = reject(conn, warning_id, actor=access.caller.name, scope=access.zones, at=_now(),
                 reason=(body or WarningReject()).reason)
    return _public(row, request)


def _replacement(msg_type: Literal["Update", "Cancel"], warning_id: int, request: Request, conn: Db,
                 access: Access, body: WarningDraft | None) -> WarningPublic:
    body = body or WarningDraft()
    row = draft_replacement(conn, _state(request).issuer, warning_id, msg_type, actor=access.caller.name,
                            scope=access.zones, at=_now(), zones=body.zones,
                            info=None if body.info is None else [b.to_info() for b in body.info])
    return _public(row, request)


@router.post("/warnings/{warning_id}/update", response_model=WarningPublic, status_code=201,
             summary="Draft an Update of an approved warning",
             description="A new draft (CAP msgType Update) that references the earlier message once approved. "
                         "Defaults: the incident's wards in alert or danger now, fresh text. 409 unless the "
                         "warning is approved, not a Cancel, and not replaced already.")
def post_update(warning_id: WarningId, request: Request, conn: Db, access: Operator,
                body: Annotated[WarningDraft | None, Body()] = None) -> WarningPublic:
    return _replacement("Update", warning_id, request, conn, access, body)


@router.post("/warnings/{warning_id}/cancel", response_model=WarningPublic, status_code=201,
             summary="Draft a Cancel of an approved warning",
             description="A new draft (CAP msgType Cancel) with the all-clear for the earlier zones; it too needs "
                         "a second operator's approval.")
def post_cancel(warning_id: WarningId, request: Request, conn: Db, access: Operator,
                body: Annotated[WarningDraft | None, Body()] = None) -> WarningPublic:
    return _replacement("Cancel", warning_id, request, conn, access, body)


# The public routes: no key.

def _limited(request: Request) -> None:
    buckets = _state(request).requests
    client = request.client.host if request.client else "unknown"
    wait = buckets.take(client)
    if wait is not None:
        retry = TokenBuckets.retry_after(wait)
        raise TooManyRequests(f"more than {buckets.per_minute:g} requests a minute to the public warnings from "
                              f"this address; retry in {retry} s", retry_after_s=retry)


def _json_error(description: str, **more: Any) -> dict[str, Any]:
    # Spelled out: FastAPI files a response `model` under the route's own media type (Atom, CAP XML), but errors
    # are always JSON.
    return {"description": description, **more,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


_PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {
    422: _json_error("a value is invalid; `field` names it"),
    429: _json_error("past this address's rate (`code` rate_limited)",
                     headers={"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}),
    503: _json_error("the database is unavailable or busy; retry after `Retry-After` seconds"),
}
_NO_SUCH: dict[int | str, dict[str, Any]] = {404: _json_error("no issued warning has this identifier")}
Limit = Annotated[int, Query(ge=1, le=FEED_LIMIT)]
Identifier = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:@-]{1,200}$")]


def _entries(conn: Db, request: Request, limit: int) -> tuple[list[tuple[dict[str, Any], str, str]], datetime]:
    """(CAP summary, XML URL, JSON URL) of the newest issued messages, and when the newest was approved."""
    base = _base(request) + PUBLIC_PATH
    rows = public_warnings(conn, limit=limit)
    entries = [(summary(xml), f"{base}/{identifier}.xml", f"{base}/{identifier}.json")
               for identifier, _approved_at, xml in rows]
    return entries, rows[0][1] if rows else _now()


@public_router.get(PUBLIC_PATH, response_model=list[PublicWarning], dependencies=[Depends(_limited)],
                   responses=_PUBLIC_ERRORS, summary="Issued public warnings (CAP 1.2 as JSON), newest first; "
                   "no key needed")
def get_public(request: Request, conn: Db, limit: Limit = FEED_LIMIT) -> list[PublicWarning]:
    return [PublicWarning.model_validate({**public, "cap_url": cap_url})
            for public, cap_url, _json in _entries(conn, request, limit)[0]]


@public_router.get(f"{PUBLIC_PATH}.atom", response_class=AtomXml, dependencies=[Depends(_limited)],
                   responses={200: {"content": {AtomXml.media_type: {"schema": {"type": "string"}}},
                                    "description": "an Atom feed; each entry links to its CAP message"},
                              **_PUBLIC_ERRORS},
                   summary="Issued public warnings as an Atom feed of CAP messages; no key needed")
def get_atom(request: Request, conn: Db, limit: Limit = FEED_LIMIT) -> AtomXml:
    entries, newest = _entries(conn, request, limit)
    issuer = _state(request).issuer
    feed = atom_feed(feed_url=f"{_base(request)}{PUBLIC_PATH}.atom",
                     title=f"Cảnh báo công khai — {issuer.settings.sender_name}",
                     author=issuer.settings.sender_name, updated=newest.astimezone(issuer.zone), entries=entries)
    return AtomXml(feed)


@public_router.get(f"{PUBLIC_PATH}/{{identifier}}.xml", response_class=CapXml, dependencies=[Depends(_limited)],
                   responses={200: {"content": {CapXml.media_type: {"schema": {"type": "string"}}},
                                    "description": "the CAP 1.2 message as it was sent"},
                              **_NO_SUCH, **_PUBLIC_ERRORS},
                   summary="One issued warning as its CAP 1.2 XML; no key needed")
def get_cap(identifier: Identifier, conn: Db) -> CapXml:
    return CapXml(public_xml(conn, identifier))


@public_router.get(f"{PUBLIC_PATH}/{{identifier}}.json", response_model=PublicWarning,
                   dependencies=[Depends(_limited)],
                   responses={**_NO_SUCH, **_PUBLIC_ERRORS},
                   summary="One issued warning as JSON; no key needed")
def get_public_one(identifier: Identifier, request: Request, conn: Db) -> PublicWarning:
    xml = public_xml(conn, identifier)
    return PublicWarning.model_validate(
        {**summary(xml), "cap_url": f"{_base(request)}{PUBLIC_PATH}/{identifier}.xml"})
