"""The simulated device models: what each measures, its codec, fPort, uplink interval and fleet share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, get_args

from ioc_core.kinds import Kind

__all__ = [
    "APPLICATIONS",
    "KINDS",
    "MODELS",
    "MODELS_BY_KIND",
    "Application",
    "DeviceModel",
    "Kind",
]

# The kinds the simulated fleet has: every kind but "other".
KINDS: Final[tuple[Kind, ...]] = tuple(k for k in get_args(Kind) if k != "other")


@dataclass(frozen=True, slots=True)
class Application:
    """A ChirpStack application; the simulator groups device kinds the way a city department would."""

    key: str
    name: str
    description: str


APPLICATIONS: Final[Mapping[str, Application]] = MappingProxyType(
    {
        "flood": Application("flood", "dn-flood-warning", "Water level, street flooding and rain gauges"),
        "environment": Application("environment", "dn-environment", "Air and water quality, weather"),
        "parking": Application("parking", "dn-smart-parking", "On-street parking bays downtown"),
        "waste": Application("waste", "dn-waste-collection", "Public waste bins"),
        "lighting": Application("lighting", "dn-street-lighting", "Street light controllers"),
    }
)


@dataclass(frozen=True, slots=True)
class DeviceModel:
    id: str
    kind: Kind
    codec_id: str
    fport: int
    title: str
    application: str
    uplink_interval_s: int
    share: float
    """Fraction of the fleet made of this model."""
    short: str
    """Prefix of device names."""
    battery_powered: bool = True
    device_class: Literal["CLASS_A", "CLASS_C"] = "CLASS_A"
    penetration_db: float = 0.0
    """Extra radio loss of the mounting (in-ground, inside a bin, down a drain)."""


MODELS: Final[tuple[DeviceModel, ...]] = (
    DeviceModel("ioc-wl100", "water_level", "ioc-water-level", 10, "WL100 radar water level station",
                "flood", 300, 0.06, "wl"),
    DeviceModel("ioc-fd100", "flood_depth", "ioc-water-level", 10, "FD100 ultrasonic street flood sensor",
                "flood", 300, 0.08, "fd", penetration_db=4.0),
    DeviceModel("ioc-rg100", "rain_gauge", "ioc-rain-gauge", 11, "RG100 tipping-bucket rain gauge",
                "flood", 600, 0.06, "rg"),
    DeviceModel("ioc-aq100", "air_quality", "ioc-air-quality", 12, "AQ100 roadside air quality node",
                "environment", 900, 0.10, "aq"),
    DeviceModel("ioc-wq100", "water_quality", "ioc-water-quality", 13, "WQ100 water quality probe",
                "environment", 900, 0.04, "wq"),
    DeviceModel("ioc-pk100", "parking", "ioc-parking", 14, "PK100 in-ground parking bay sensor",
                "parking", 600, 0.22, "pk", penetration_db=10.0),
    DeviceModel("ioc-wb100", "waste_bin", "ioc-waste-bin", 15, "WB100 waste bin fill level sensor",
                "waste", 1800, 0.18, "wb", penetration_db=6.0),
    DeviceModel("ioc-sl100", "street_light", "ioc-street-light", 16, "SL100 street light controller",
                "lighting", 900, 0.16, "sl", battery_powered=False, device_class="CLASS_C"),
    DeviceModel("ioc-th100", "temperature_humidity", "cayenne-lpp", 2, "TH100 temperature/humidity (LPP)",
                "environment", 600, 0.10, "th"),
)

MODELS_BY_KIND: Final[Mapping[str, DeviceModel]] = MappingProxyType({m.kind: m for m in MODELS})
