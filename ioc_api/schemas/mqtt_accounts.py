"""MQTT credential schemas: what a developer asks for, what anyone allowed may see, the one response with a
password, and the broker's state after a change."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ioc_core.mqtt_access import label_slug

__all__ = ["BrokerStatus", "CredentialCreate", "CredentialCreated", "CredentialPublic", "CredentialRevoked"]


class CredentialCreate(BaseModel):
    label: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        # No control characters: the label is shown back in listings and the audit log.
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="your name for these credentials, kept as given; the username ends with it made safe "
        "(`my flood app` gives `dev-<user id>-<your name>-my_flood_app`: accents dropped, anything but letters "
        "and digits `_`, at most 24 characters). Without it four random hex digits end the username",
        examples=["my flood app"],
    )

    @field_validator("label")
    @classmethod
    def _has_a_letter_or_digit(cls, label: str | None) -> str | None:
        if label is not None and not label_slug(label):
            raise ValueError("a label needs at least one letter or digit")
        return label


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
    username: str = Field(examples=["dev-7-anna-my_flood_app"])
    role: Literal["chirpstack", "ingest", "feed", "api", "developer"]
    owner: str | None = Field(description="the developer (API user) it belongs to; none for service accounts")
    label: str | None = Field(default=None, description="the label it was created with, as given",
                              examples=["my flood app"])
    created_at: datetime
    revoked_at: datetime | None


class CredentialCreated(CredentialPublic):
    password: str = Field(description="shown this once and never again; only a hash is stored")
    broker_url: str = Field(examples=["mqtts://iot.danang.gov.vn:8883"])
    topic_filter: str = Field(examples=["ioc/v1/#"], description="what these credentials may subscribe to")
    broker: BrokerStatus


class CredentialRevoked(CredentialPublic):
    broker: BrokerStatus
