"""MQTT credential schemas: what a developer asks for, what anyone allowed may see, the one response with a
password, and the broker's state after a change."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["BrokerStatus", "CredentialCreate", "CredentialCreated", "CredentialPublic", "CredentialRevoked"]


class CredentialCreate(BaseModel):
    label: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_]{1,24}$",
        description="ends the username, `dev-<your name>-<label>`; without it four random hex digits do",
        examples=["flood_app"],
    )


class BrokerStatus(BaseModel):
    """Whether the broker applied the change; the change itself is stored in every state."""

    state: Literal["reloaded", "files_written", "reload_failed", "not_managed"] = Field(
        description="reloaded: live now; files_written: live at the broker's next reload or restart; "
        "reload_failed: files written, the broker not signalled (see detail); not_managed: stored only, this API "
        "does not write the broker's files"
    )
    detail: str
    sessions: str | None = Field(
        default=None, description="for a revocation: whether the credential's connection and parked session on "
        "the broker were ended at once (they are when the API has IOC_BROKER_ADMIN_URL)")


class CredentialPublic(BaseModel):
    username: str = Field(examples=["dev-flood-watch-3f9a"])
    role: Literal["chirpstack", "ingest", "feed", "api", "developer"]
    owner: str | None = Field(description="the developer (API user) it belongs to; none for service accounts")
    created_at: datetime
    revoked_at: datetime | None


class CredentialCreated(CredentialPublic):
    password: str = Field(description="shown this once and never again; only a hash is stored")
    broker_url: str = Field(examples=["mqtts://iot.danang.gov.vn:8883"])
    topic_filter: str = Field(examples=["ioc/v1/#"], description="what these credentials may subscribe to")
    broker: BrokerStatus


class CredentialRevoked(CredentialPublic):
    broker: BrokerStatus
