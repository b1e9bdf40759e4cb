"""Device schemas: what a technician sends (create, update, claim), and what anyone allowed may read.

Keys are ``SecretStr``: write-only, never in a response, a log line or a validation message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from ioc_core.kinds import Kind

__all__ = [
    "MAX_TAGS",
    "Commissioning",
    "DeviceClaim",
    "DeviceCreate",
    "DeviceList",
    "DevicePublic",
    "DeviceUpdate",
    "ImportReport",
    "ImportRow",
    "Provisioning",
    "Stage",
    "ZoneRef",
]


def _lower(value: str) -> str:
    return value.lower()


Eui = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{16}$"), AfterValidator(_lower)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Model = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
MAX_TAGS = 32
"""Tags one device may carry: each at most 64 + 256 characters, so at most ~10 KiB of tags a device."""
Tags = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                      Annotated[str, StringConstraints(max_length=256)]],
                 Field(max_length=MAX_TAGS, description=f"at most {MAX_TAGS} key/value pairs")]

_HEX32 = "0123456789abcdefABCDEF"


def _key(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value()
    # The message names the rule, never the value: a key must not leak through a 422.
    if len(raw) != 32 or any(c not in _HEX32 for c in raw):
        raise ValueError("must be 32 hexadecimal digits (a 128-bit key)")
    return SecretStr(raw.lower())


class _Keys(BaseModel):
    app_key: SecretStr | None = Field(default=None, description="OTAA AppKey, 32 hex digits; write-only")
    nwk_key: SecretStr | None = Field(default=None, description="OTAA NwkKey for LoRaWAN 1.1 devices; write-only")

    @field_validator("app_key", "nwk_key")
    @classmethod
    def _hex_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _key(value)


class _Placement(BaseModel):
    name: Name = Field(examples=["WL Cầu Rồng"])
    description: str = Field(default="", max_length=1000)
    kind: Kind
    model: Model = Field(examples=["ioc-wl100"], description="device model; must be known to a codec")
    codec_id: Model | None = Field(default=None, description="overrides the model's codec")
    latitude: Latitude = Field(examples=[16.0614])
    longitude: Longitude = Field(examples=[108.2275])
    join_eui: Eui | None = Field(default=None, examples=["70b3d57ed0000000"])
    expected_interval_s: int | None = Field(default=None, gt=0, le=7 * 24 * 3600,
                                            description="reporting interval; the kind's default when absent")
    tags: Tags = Field(default_factory=dict)
    public: bool = Field(default=True, description="shown in the open-data feed and exports")


class DeviceCreate(_Placement, _Keys):
    model_config = ConfigDict(extra="forbid")

    dev_eui: Eui = Field(examples=["a84041000181c9a1"])


class DeviceClaim(_Placement, _Keys):
    """Registers a device the ingest enrolled on its own (ChirpStack knew it, the registry did not)."""

    model_config = ConfigDict(extra="forbid")


class DeviceUpdate(_Keys):
    """Only the fields sent change; moving a device (latitude and longitude together) re-derives its zone."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: str | None = Field(default=None, max_length=1000)
    kind: Kind | None = None
    model: Model | None = None
    codec_id: Model | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    join_eui: Eui | None = None
    expected_interval_s: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    tags: Tags | None = None
    public: bool | None = None


class ZoneRef(BaseModel):
    code: str
    name: str


class Provisioning(BaseModel):
    state: Literal["not_configured", "pending", "provisioned", "failed", "deprovision_pending", "deprovisioned"]
    error: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None


Stage = Literal["unregistered", "registered", "provisioned", "first_uplink", "decoding_verified", "commissioned",
                "decommissioned"]


class Commissioning(BaseModel):
    stage: Stage
    registered_at: datetime | None = None
    provisioned_at: datetime | None = None
    first_uplink_at: datetime | None = None
    decoding_verified_at: datetime | None = None
    commissioned_at: datetime | None = None
    claimed_at: datetime | None = None
    decommissioned_at: datetime | None = None


class DevicePublic(BaseModel):
    dev_eui: str
    name: str
    description: str
    status: Literal["registered", "unregistered", "decommissioned"]
    health: Literal["reporting", "late", "silent", "never_seen"]
    kind: str | None
    model: str | None
    codec_id: str | None
    latitude: float | None
    longitude: float | None
    zone: ZoneRef | None
    join_eui: str | None
    expected_interval_s: int
    tags: dict[str, str]
    public: bool
    last_seen_at: datetime | None
    provisioning: Provisioning
    commissioning: Commissioning
    created_at: datetime
    updated_at: datetime


class DeviceList(BaseModel):
    items: list[DevicePublic]
    total: int
    limit: int
    offset: int


class ImportRow(BaseModel):
    row: int = Field(description="line number in the CSV file (the header is line 1)")
    dev_eui: str | None
    result: Literal["created", "refused", "valid"]
    field: str | None = None
    reason: str | None = None


class ImportReport(BaseModel):
    created: int
    refused: int
    dry_run: bool
    rows: list[ImportRow]
