"""Notifications: operators choose their own channels for new and escalated incidents; admins choose the public
warning's recipients and see every queued message with its attempts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from ioc_api.deps import Caller, Db, require_role
from ioc_api.queries.notifications import OutboxEntry, Route, find_outbox, list_outbox, list_routes, replace_routes
from ioc_api.schemas.notifications import (
    AttemptPublic,
    MyRoutes,
    OutboxDetail,
    OutboxPage,
    OutboxRow,
    PublicRoutes,
    RoutePublic,
)

__all__ = ["router"]

router = APIRouter(tags=["notifications"])
Operator = Annotated[Caller, Depends(require_role("operator", "admin"))]
Admin = Annotated[Caller, Depends(require_role("admin"))]
_MINE = ("incident_new", "escalated")
_PUBLIC = ("warning",)


def _route(route: Route) -> RoutePublic:
    return RoutePublic(id=route.id, user=route.user, event=route.event,  # type: ignore[arg-type]
                       channel=route.channel, address=route.address)  # type: ignore[arg-type]


def _row(entry: OutboxEntry) -> OutboxRow:
    return OutboxRow(id=entry.id, idempotency_key=entry.idempotency_key, event=entry.event,
                     channel=entry.channel, address=entry.address, state=entry.state,  # type: ignore[arg-type]
                     attempts=entry.attempts, created_at=entry.created_at, next_attempt_at=entry.next_attempt_at,
                     sent_at=entry.sent_at, last_error=entry.last_error)


@router.get("/me/notifications", response_model=list[RoutePublic], summary="Your notification channels")
def get_my_routes(conn: Db, caller: Operator) -> list[RoutePublic]:
    """Where you are told of a new incident in your zones (`incident_new`) and of an escalation (`escalated`)."""
    return [_route(r) for r in list_routes(conn, user=caller.name, events=_MINE)]


@router.put("/me/notifications", response_model=list[RoutePublic], summary="Choose your notification channels")
def put_my_routes(body: MyRoutes, conn: Db, caller: Operator) -> list[RoutePublic]:
    """Replaces your choice with this list (empty: none). Phone numbers are stored as 84…; an address the
    channel cannot use is refused (422). Only your own routes: no one chooses channels for someone else."""
    routes = replace_routes(conn, user=caller.name, events=_MINE, actor=caller.name,
                            routes=[(r.event, r.channel, r.address) for r in body.routes])
    return [_route(r) for r in routes]


@router.get("/notifications/routes", response_model=list[RoutePublic], summary="Public warning recipients")
def get_public_routes(conn: Db, _admin: Admin) -> list[RoutePublic]:
    """Where every approved public warning goes besides the open MQTT feed (admins)."""
    return [_route(r) for r in list_routes(conn, user=None, events=_PUBLIC)]


@router.put("/notifications/routes", response_model=list[RoutePublic], summary="Set public warning recipients")
def put_public_routes(body: PublicRoutes, conn: Db, admin: Admin) -> list[RoutePublic]:
    """Replaces the public warning recipients with this list (admins). Zalo needs an approved ZNS template."""
    routes = replace_routes(conn, user=None, events=_PUBLIC, actor=admin.name,
                            routes=[("warning", r.channel, r.address) for r in body.routes])
    return [_route(r) for r in routes]


@router.get("/notifications/outbox", response_model=OutboxPage, summary="Queued and sent notifications")
def get_outbox(
    conn: Db,
    _admin: Admin,
    state: Literal["pending", "sent", "failed"] | None = None,
    channel: Literal["webhook", "email", "zalo", "sms", "mqtt"] | None = None,
    event: Literal["incident_new", "escalated", "warning"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> OutboxPage:
    """Every message the dispatcher sends or sent, newest first, with its state, attempts and last error
    (admins). A `failed` one was refused by its channel or ran out of attempts."""
    entries = list_outbox(conn, state=state, channel=channel, event=event, limit=limit + 1, before_id=before_id)
    more = len(entries) > limit
    items = [_row(e) for e in entries[:limit]]
    return OutboxPage(items=items, next_before_id=items[-1].id if more and items else None)


@router.get("/notifications/outbox/{outbox_id}", response_model=OutboxDetail,
            summary="One notification with its attempts")
def get_outbox_row(outbox_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: Db, _admin: Admin) -> OutboxDetail:
    """The message as queued (its payload) and every attempt to send it, oldest first (admins)."""
    entry = find_outbox(conn, outbox_id)
    history = [AttemptPublic(at=a.at, ok=a.ok, detail=a.detail, duration_ms=a.duration_ms) for a in entry.history]
    return OutboxDetail(**_row(entry).model_dump(), payload=entry.payload, history=history)
