"""Notification schemas: an operator's own channel choices, the public warning routes, and the outbox as admins
see it (each message with its attempts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AttemptPublic", "MyRoute", "MyRoutes", "OutboxDetail", "OutboxPage", "OutboxRow", "PublicRoute",
           "PublicRoutes", "RouteChannel", "RoutePublic"]

RouteChannel = Literal["webhook", "email", "zalo", "sms"]
_ADDRESS = Field(min_length=1, max_length=2000, description="webhook: an http(s) URL; email: an address; zalo and "
                 "sms: a Vietnamese phone number (stored as 84…)", examples=["0905123456"])


class MyRoute(BaseModel):
    """One channel an operator wants for one event."""

    model_config = ConfigDict(extra="forbid")

    event: Literal["incident_new", "escalated"]
    channel: RouteChannel
    address: str = _ADDRESS


class MyRoutes(BaseModel):
    """The caller's whole choice: it replaces what was there (an empty list: no notifications)."""

    model_config = ConfigDict(extra="forbid")

    routes: list[MyRoute] = Field(max_length=50)


class PublicRoute(BaseModel):
    """A recipient of every approved public warning."""

    model_config = ConfigDict(extra="forbid")

    channel: RouteChannel
    address: str = _ADDRESS


class PublicRoutes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[PublicRoute] = Field(max_length=1000)


class RoutePublic(BaseModel):
    id: int
    user: str | None = Field(description="the operator whose choice it is; null: a public warning route")
    event: Literal["incident_new", "escalated", "warning"]
    channel: RouteChannel
    address: str


class AttemptPublic(BaseModel):
    at: datetime
    ok: bool
    detail: str = Field(description="what the channel answered, or why it could not be reached")
    duration_ms: int


class OutboxRow(BaseModel):
    id: int
    idempotency_key: str
    event: str
    channel: Literal["webhook", "email", "zalo", "sms", "mqtt"]
    address: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


class OutboxDetail(OutboxRow):
    payload: dict[str, Any]
    history: list[AttemptPublic] = Field(description="every attempt, oldest first")


class OutboxPage(BaseModel):
    items: list[OutboxRow]
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null: no more")
