"""Device schemas: what a technician sends (create, update, claim), and what anyone allowed may read.

Keys are ``SecretStr``: write-only, never in a response, a log line or a validation message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from ioc_core.eui import EUI_FORMS, normalise_eui
from ioc_core.kinds import Kind

__all__ = [
    "MAX_TAGS",
    "Commissioning",
    "DeviceClaim",
    "DeviceCreate",
    "DeviceList",
    "DevicePublic",
    "DeviceRecommission",
    "DeviceUpdate",
    "Eui",
    "ImportReport",
    "ImportRow",
    "Provisioning",
    "Stage",
    "ZoneRef",
    "parse_eui",
]


def parse_eui(value: object) -> str:
    """An EUI in any form people write it, as 16 lower-case hex digits (a 422 naming the forms otherwise)."""
    if not isinstance(value, str):
        raise PydanticCustomError("eui", "must be a string of {forms}", {"forms": EUI_FORMS})
    try:
        return normalise_eui(value)
    except ValueError as err:  # a custom error type, so the message has no "Value error, " prefix
        raise PydanticCustomError("eui", "{reason}", {"reason": str(err)}) from err


Eui = Annotated[str, BeforeValidator(parse_eui), Field(description=EUI_FORMS, json_schema_extra={"maxLength": 64})]
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


def _zone_code(value: object) -> str:
    code = value.strip().lower() if isinstance(value, str) else ""
    if not code or len(code) > 64 or any(c not in _ZONE_CHARS for c in code):
        raise PydanticCustomError("zone_code", "must be a zone code: letters a-z, digits and dashes, e.g. lien-chieu "
                                  "(GET /api/v1/zones lists them)")
    return code


_ZONE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
ZoneCode = Annotated[str, BeforeValidator(_zone_code), Field(json_schema_extra={"maxLength": 64})]

_ZONE_CHECK = ("a current zone's code (a district or a ward, as GET /api/v1/zones lists them) that the device's "
               "position must lie in: the position sent with it, or the stored one. The zone always comes from the "
               "position (the ward when the point lies in one); a position elsewhere is refused with 422 naming "
               "`zone`, and a device without a position needs latitude and longitude sent with it.")


class DeviceUpdate(_Keys):
    """Only the fields sent change. Moving a device: latitude and longitude together, which re-derive its zone;
    add `zone` to have the move refused unless the new position lies in that zone."""

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
    zone: ZoneCode | None = Field(default=None, description=_ZONE_CHECK, examples=["lien-chieu"])


class DeviceRecommission(_Keys):
    """Brings a decommissioned device back with its registration (name, kind, model, tags) where it stood, or at
    a new position (latitude and longitude together); `zone` checks the position as in a move."""

    model_config = ConfigDict(extra="forbid")

    latitude: Latitude | None = None
    longitude: Longitude | None = None
    zone: ZoneCode | None = Field(default=None, description=_ZONE_CHECK, examples=["hai-chau"])
    reason: str | None = Field(default=None, max_length=500, description="kept in the audit log")


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
