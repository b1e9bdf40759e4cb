"""What operators and dashboards read: zone summaries, a device's health, time series, gateways, dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ioc_api.schemas.devices import DevicePublic

__all__ = [
    "Battery",
    "DeadLetter",
    "DeadLetterPage",
    "DeviceOverview",
    "FrameLoss",
    "GatewayDetail",
    "GatewayDevice",
    "GatewayPublic",
    "HealthCounts",
    "KeyValue",
    "LatestValue",
    "RadioHour",
    "Series",
    "SeriesPoint",
    "ZoneSummary",
    "ZoneVersion",
]


class HealthCounts(BaseModel):
    reporting: int = 0
    late: int = 0
    silent: int = 0
    never_seen: int = 0
    total: int = 0


class KeyValue(BaseModel):
    metric: str
    unit: str
    aggregate: Literal["max", "mean", "sum"]
    value: float
    samples: int
    bucket: datetime = Field(description="start of the UTC hour the value sums up")


class ZoneSummary(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str | None
    approximate: bool
    devices: HealthCounts
    uplinks_last_hour: int
    key_values: list[KeyValue]


class ZoneVersion(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str | None
    version: int
    approximate: bool
    valid_from: datetime | None = Field(description="null: since the zones were first loaded")
    valid_to: datetime | None = Field(description="null: the current version")
    devices: int = Field(description="devices placed in this version now")


class LatestValue(BaseModel):
    metric: str
    unit: str
    value: float
    time: datetime
    quality: Literal["good", "out_of_range", "not_finite"]


class Battery(BaseModel):
    percent: float | None
    voltage: float | None
    time: datetime | None
    source: Literal["payload", "device_status", "none"]


class RadioHour(BaseModel):
    hour: datetime
    uplinks: int
    rssi_avg: float | None
    snr_avg: float | None
    rssi_min: int | None
    snr_min: float | None


class FrameLoss(BaseModel):
    window_hours: int
    received: int
    lost: int = Field(description="frames missing from the fCnt sequence")
    loss_ratio: float | None = Field(description="lost / (received + lost); null before two frames")
    counter_resets: int = Field(description="fCnt went back (a rejoin or reboot); gaps across a reset are not loss")


class DeviceOverview(BaseModel):
    device: DevicePublic
    latest: list[LatestValue]
    battery: Battery
    radio: list[RadioHour]
    frame_loss: FrameLoss
    decode_errors_24h: int


class SeriesPoint(BaseModel):
    time: datetime
    n: int
    mean: float | None
    min: float | None
    max: float | None


class Series(BaseModel):
    dev_eui: str
    metric: str
    unit: str
    bucket: str = Field(description="'raw', or the bucket width such as '5m', '1h', '1d'")
    source: Literal["measurements", "rollup_device_hourly"]
    start: datetime
    end: datetime
    points: list[SeriesPoint]


class GatewayPublic(BaseModel):
    gateway_eui: str
    name: str | None
    latitude: float | None
    longitude: float | None
    state: Literal["online", "offline", "never_seen", "unknown"] = Field(
        description="ChirpStack's view when it is configured; otherwise from the last uplink heard")
    last_seen_at: datetime | None
    chirpstack_synced_at: datetime | None
    devices_heard: int = Field(description="devices whose best reception in the window came through it")
    uplinks: int
    rssi_avg: float | None
    snr_avg: float | None


class GatewayDevice(BaseModel):
    dev_eui: str
    name: str
    zone: str | None
    uplinks: int
    last_heard_at: datetime
    rssi_avg: float | None
    snr_avg: float | None


class GatewayDetail(BaseModel):
    gateway: GatewayPublic
    devices: list[GatewayDevice]


class DeadLetter(BaseModel):
    id: int
    received_at: datetime
    stage: str
    reason: str
    topic: str
    dev_eui: str | None
    payload_base64: str
    payload_bytes: int
    replay_count: int
    resolved_at: datetime | None


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total_open: int
    next_before_id: int | None
