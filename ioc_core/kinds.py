"""Device kinds the platform knows: how often each reports, and which value sums up a zone for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "DEFAULT_INTERVAL_S",
    "KINDS",
    "LATE_AFTER",
    "SILENT_AFTER",
    "ZONE_KEY_VALUES",
    "Kind",
    "KindInfo",
]

Kind = Literal[
    "water_level",
    "flood_depth",
    "rain_gauge",
    "air_quality",
    "water_quality",
    "parking",
    "waste_bin",
    "street_light",
    "temperature_humidity",
    "other",
]


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    interval_s: int
    """The reporting interval a device of this kind is expected to keep unless its own record says otherwise."""
    title: str
    metrics: tuple[str, ...] = ()
    """What devices of this kind usually report (vocabulary names), for catalogues and boards."""


KINDS: Final[Mapping[str, KindInfo]] = MappingProxyType({
    k.kind: k for k in (
        KindInfo("water_level", 300, "water level station", ("water_level", "battery_voltage")),
        KindInfo("flood_depth", 300, "street flood sensor", ("flood_depth", "battery_voltage")),
        KindInfo("rain_gauge", 600, "rain gauge", ("rainfall", "rain_rate", "battery_voltage")),
        KindInfo("air_quality", 900, "air quality node",
                 ("pm2_5", "pm10", "co2", "temperature", "humidity", "battery_voltage")),
        KindInfo("water_quality", 900, "water quality probe",
                 ("ph", "dissolved_oxygen", "turbidity", "conductivity", "water_temperature", "battery_voltage")),
        KindInfo("parking", 600, "parking bay sensor", ("occupied", "battery_voltage")),
        KindInfo("waste_bin", 1800, "waste bin sensor", ("fill_level", "tilt", "temperature", "battery_voltage")),
        KindInfo("street_light", 900, "street light controller", ("lamp_on", "dimming", "power", "energy")),
        KindInfo("temperature_humidity", 600, "temperature/humidity sensor", ("temperature", "humidity")),
        KindInfo("other", 3600, "other sensor"),
    )
})
DEFAULT_INTERVAL_S: Final = 3600

# A device is "late" once it has missed its interval twice over, and "silent" at six times: one lost frame
# (LoRa loses a few percent) must not page anyone, a dead battery must.
LATE_AFTER: Final = 2.0
SILENT_AFTER: Final = 6.0

# What a zone tile shows per metric: the worst case for hazards, the mean for ambient values.
ZONE_KEY_VALUES: Final[tuple[tuple[str, Literal["max", "mean", "sum"]], ...]] = (
    ("water_level", "max"),
    ("flood_depth", "max"),
    ("rainfall", "sum"),
    ("pm2_5", "mean"),
    ("pm10", "mean"),
    ("temperature", "mean"),
    ("humidity", "mean"),
    ("occupied", "mean"),
    ("fill_level", "max"),
    ("lamp_on", "mean"),
)
