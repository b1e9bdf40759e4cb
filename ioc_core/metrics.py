"""The metric vocabulary: every quantity the platform stores, with its SenML unit and valid range.

Decoded fields from any codec are mapped onto these names (see ``ingest.normalise``); a value outside
``[minimum, maximum]`` is stored flagged, never as good data. Units are SenML names (RFC 8428 and the
RFC 8798 additions), so the open feed can publish them unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Cayenne LPP style names carry the channel as a suffix: temperature_1, humidity2.
_CHANNEL_SUFFIX = re.compile(r"^(.*?[a-zA-Z])_?(\d+)$")

__all__ = ["VOCABULARY", "Metric", "Vocabulary", "canonical_key"]


@dataclass(frozen=True, slots=True)
class Metric:
    id: int
    name: str
    unit: str
    minimum: float
    maximum: float
    description: str
    aliases: tuple[str, ...] = field(default=())


def canonical_key(name: str) -> str:
    """Field names arrive as camelCase, snake_case or with dots; compare them without case or separators."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


# Ids are stored in the measurements table: never renumber, only append.
_METRICS: tuple[Metric, ...] = (
    # Negative values stay valid for stations kept on a national datum (Hòn Dấu), where low tides fall below 0.
    Metric(1, "water_level", "m", -5.0, 30.0, "stage: water level above the station's gauge zero, which lies "
           "below the lowest water (rivers, canals, sea); compare with the station's own alert levels",
           ("waterlevel", "riverlevel", "waterheight", "stage")),
    Metric(2, "flood_depth", "m", 0.0, 5.0, "depth of water standing on a street or underpass",
           ("flooddepth", "inundation", "waterdepth")),
    Metric(3, "rainfall", "mm", 0.0, 500.0, "rain since the previous report",
           ("rain", "precipitation", "rainmm", "rainfallmm")),
    Metric(4, "rain_rate", "mm/h", 0.0, 500.0, "rain intensity", ("rainrate", "rainintensity")),
    Metric(5, "temperature", "Cel", -40.0, 85.0, "air temperature",
           ("temp", "temperaturesensor", "airtemperature", "tempc")),
    Metric(6, "humidity", "%RH", 0.0, 100.0, "relative humidity",
           ("humiditysensor", "relativehumidity", "rh", "hum")),
    Metric(7, "pressure", "hPa", 300.0, 1100.0, "barometric pressure", ("barometer", "barometricpressure")),
    Metric(8, "pm2_5", "ug/m3", 0.0, 1000.0, "fine particulate matter PM2.5", ("pm25", "pm2p5")),
    Metric(9, "pm10", "ug/m3", 0.0, 2000.0, "particulate matter PM10", ("pm100",)),
    Metric(10, "co2", "ppm", 250.0, 10_000.0, "carbon dioxide", ("carbondioxide", "co2ppm")),
    Metric(11, "water_temperature", "Cel", 0.0, 50.0, "water temperature", ("watertemp",)),
    Metric(12, "ph", "pH", 0.0, 14.0, "acidity of water", ()),
    Metric(13, "dissolved_oxygen", "mg/L", 0.0, 25.0, "dissolved oxygen in water", ("do", "oxygen")),
    Metric(14, "turbidity", "NTU", 0.0, 4000.0, "turbidity of water", ()),
    Metric(15, "conductivity", "uS/cm", 0.0, 100_000.0, "electrical conductivity of water", ("ec",)),
    Metric(16, "occupied", "/", 0.0, 1.0, "parking bay occupied (1) or free (0)",
           ("occupancy", "parkingstatus", "carpresent", "presence")),
    Metric(17, "fill_level", "%", 0.0, 100.0, "waste bin fill level", ("filllevel", "fill", "binlevel")),
    Metric(18, "lamp_on", "/", 0.0, 1.0, "street light switched on (1) or off (0)", ("lampon", "lampstate")),
    Metric(19, "dimming", "%", 0.0, 100.0, "street light dimming level", ("dimlevel", "brightness")),
    Metric(20, "power", "W", 0.0, 5000.0, "electrical power drawn", ("activepower", "watts")),
    Metric(21, "energy", "kWh", 0.0, 1e9, "electrical energy counter", ("energykwh", "activeenergy")),
    Metric(22, "battery_voltage", "V", 0.0, 5.0, "battery voltage",
           ("batteryvoltage", "batv", "vbat", "battery_v", "voltage")),
    Metric(23, "battery", "%", 0.0, 100.0, "battery charge", ("batterylevel", "batterypercent", "bat")),
    Metric(24, "illuminance", "lx", 0.0, 200_000.0, "ambient light", ("lux", "luminosity", "illuminancesensor")),
    Metric(25, "distance", "m", 0.0, 20.0, "raw distance reading of an ultrasonic or radar sensor",
           ("distancem",)),
    Metric(26, "tilt", "deg", 0.0, 180.0, "tilt of the device (bin lid, pole)", ("angle",)),
    Metric(27, "link_margin", "dB", -20.0, 254.0, "demodulation margin reported by the device status", ("margin",)),
    Metric(28, "noise", "dB", 0.0, 150.0, "sound level", ("soundlevel", "laeq")),
)


class Vocabulary(Mapping[str, Metric]):
    """Metrics by name, with alias look-up for decoded field names."""

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        by_name: dict[str, Metric] = {}
        by_key: dict[str, Metric] = {}
        for metric in metrics:
            if metric.name in by_name:
                raise ValueError(f"metric {metric.name!r} is defined twice")
            by_name[metric.name] = metric
            for alias in (metric.name, *metric.aliases):
                key = canonical_key(alias)
                if by_key.get(key, metric) is not metric:
                    raise ValueError(f"alias {alias!r} maps to two metrics")
                by_key[key] = metric
        self._by_name = MappingProxyType(by_name)
        self._by_key = MappingProxyType(by_key)
        self.by_id = MappingProxyType({m.id: m for m in metrics})
        self._resolved: dict[str, Metric | None] = {}

    def __getitem__(self, name: str) -> Metric:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def lookup(self, field_name: str) -> Metric | None:
        """The metric a decoded field name stands for, or None."""
        return self._by_key.get(canonical_key(field_name))

    def resolve(self, field_name: str) -> Metric | None:
        """Like ``lookup``, also for channel-suffixed names (``temperature_1``); memoised, because the
        same few field names arrive millions of times and the ingest resolves them per message."""
        try:
            return self._resolved[field_name]
        except KeyError:
            pass
        metric = self.lookup(field_name)
        if metric is None:
            match = _CHANNEL_SUFFIX.match(field_name)
            if match:
                metric = self.lookup(match.group(1))
        if len(self._resolved) < 10_000:  # codec output is a small vocabulary; garbage must not grow this
            self._resolved[field_name] = metric
        return metric


VOCABULARY = Vocabulary(_METRICS)
