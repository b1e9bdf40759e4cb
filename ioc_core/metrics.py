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

__all__ = ["UNIT_NAMES", "VOCABULARY", "Metric", "Vocabulary", "canonical_key"]


@dataclass(frozen=True, slots=True)
class Metric:
    id: int
    name: str
    unit: str
    minimum: float
    maximum: float
    description: str
    aliases: tuple[str, ...] = field(default=())

    def range_text(self) -> str:
        """The valid range as people read it: ``-5 to 30``."""
        return f"{_number(self.minimum)} to {_number(self.maximum)}"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def canonical_key(name: str) -> str:
    """Field names arrive as camelCase, snake_case or with dots; compare them without case or separators."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


# Ids are stored in the measurements table: never renumber, only append.
_METRICS: tuple[Metric, ...] = (
    # Negative values stay valid for stations kept on a national datum (Hòn Dấu), where low tides fall below 0.
    Metric(1, "water_level", "m", -5.0, 30.0, "stage: water level above the station's gauge zero, which lies "
           "below the lowest water (rivers, canals, sea); compare with the station's own alert levels",
           ("waterlevel", "riverlevel", "waterheight", "stage")),
    Metric(2, "flood_depth", "m", 0.0, 5.0,
           "depth of water standing on a street or in an underpass; 0 when dry",
           ("flooddepth", "inundation", "waterdepth")),
    Metric(3, "rainfall", "mm", 0.0, 500.0,
           "rain that fell since the device's previous report",
           ("rain", "precipitation", "rainmm", "rainfallmm")),
    Metric(4, "rain_rate", "mm/h", 0.0, 500.0,
           "rain intensity at the time of the report",
           ("rainrate", "rainintensity")),
    Metric(5, "temperature", "Cel", -40.0, 85.0,
           "air temperature (a waste bin reports the temperature inside it)",
           ("temp", "temperaturesensor", "airtemperature", "tempc")),
    Metric(6, "humidity", "%RH", 0.0, 100.0,
           "relative humidity of the air",
           ("humiditysensor", "relativehumidity", "rh", "hum")),
    Metric(7, "pressure", "hPa", 300.0, 1100.0,
           "barometric air pressure at the station",
           ("barometer", "barometricpressure")),
    Metric(8, "pm2_5", "ug/m3", 0.0, 1000.0,
           "fine particulate matter (particles up to 2.5 µm) in the air",
           ("pm25", "pm2p5")),
    Metric(9, "pm10", "ug/m3", 0.0, 2000.0, "particulate matter (particles up to 10 µm) in the air", ("pm100",)),
    Metric(10, "co2", "ppm", 250.0, 10_000.0, "carbon dioxide concentration in the air", ("carbondioxide", "co2ppm")),
    Metric(11, "water_temperature", "Cel", 0.0, 50.0,
           "temperature of the water a water-quality probe sits in",
           ("watertemp",)),
    Metric(12, "ph", "pH", 0.0, 14.0, "acidity of water: 7 neutral, lower acidic, higher alkaline", ()),
    Metric(13, "dissolved_oxygen", "mg/L", 0.0, 25.0,
           "oxygen dissolved in water; fish suffer below about 4 mg/L",
           ("do", "oxygen")),
    Metric(14, "turbidity", "NTU", 0.0, 4000.0, "cloudiness of water", ()),
    Metric(15, "conductivity", "uS/cm", 0.0, 100_000.0,
           "electrical conductivity of water: dissolved salts (sea water intrusion), pollution",
           ("ec",)),
    Metric(16, "occupied", "/", 0.0, 1.0,
           "whether a parking bay is taken: 1 a vehicle is on it, 0 free",
           ("occupancy", "parkingstatus", "carpresent", "presence")),
    Metric(17, "fill_level", "%", 0.0, 100.0, "how full a waste bin is", ("filllevel", "fill", "binlevel")),
    Metric(18, "lamp_on", "/", 0.0, 1.0, "whether a street light is switched on: 1 on, 0 off", ("lampon", "lampstate")),
    Metric(19, "dimming", "%", 0.0, 100.0,
           "a street light's output as a share of full brightness",
           ("dimlevel", "brightness")),
    Metric(20, "power", "W", 0.0, 5000.0, "electrical power a street light or cabinet draws", ("activepower", "watts")),
    Metric(21, "energy", "kWh", 0.0, 1e9,
           "electrical energy meter reading since the meter was installed (a counter: it only grows)",
           ("energykwh", "activeenergy")),
    Metric(22, "battery_voltage", "V", 0.0, 5.0,
           "voltage of the device's battery",
           ("batteryvoltage", "batv", "vbat", "battery_v", "voltage")),
    Metric(23, "battery", "%", 0.0, 100.0,
           "the device's battery charge as it reports it",
           ("batterylevel", "batterypercent", "bat")),
    Metric(24, "illuminance", "lx", 0.0, 200_000.0,
           "ambient light falling on the sensor",
           ("lux", "luminosity", "illuminancesensor")),
    Metric(25, "distance", "m", 0.0, 20.0,
           "raw echo distance of an ultrasonic or radar sensor, from the sensor down to the water surface or the "
           "bin's contents; the water level, flood depth or fill level derived from it is the value to use",
           ("distancem",)),
    Metric(26, "tilt", "deg", 0.0, 180.0, "tilt of the device from upright (a bin's lid, a pole)", ("angle",)),
    Metric(27, "link_margin", "dB", -20.0, 254.0,
           "radio margin the device measured on the network's last status request (LoRaWAN DevStatusAns): how "
           "far the signal it received was above the weakest it can demodulate",
           ("margin",)),
    Metric(28, "noise", "dB", 0.0, 150.0,
           "sound pressure level (A-weighted equivalent level, LAeq)",
           ("soundlevel", "laeq")),
)


# What each SenML unit of the vocabulary means, for the feed's readers (docs/open-data.md, the AsyncAPI document).
UNIT_NAMES: Mapping[str, str] = MappingProxyType({
    "m": "metres", "mm": "millimetres", "mm/h": "millimetres per hour", "Cel": "degrees Celsius",
    "%RH": "percent relative humidity", "hPa": "hectopascals", "ug/m3": "micrograms per cubic metre",
    "ppm": "parts per million", "pH": "pH units", "mg/L": "milligrams per litre",
    "NTU": "nephelometric turbidity units", "uS/cm": "microsiemens per centimetre",
    "/": "a ratio; here 0 or 1", "%": "percent", "W": "watts", "kWh": "kilowatt hours", "V": "volts",
    "lx": "lux", "deg": "degrees", "dB": "decibels",
})


class Vocabulary(Mapping[str, Metric]):
    """Metrics by name, with alias look-up for decoded field names."""

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        by_name: dict[str, Metric] = {}
        by_key: dict[str, Metric] = {}
        for metric in metrics:
            if metric.name in by_name:
                raise ValueError(f"metric {metric.name!r} is defined twice")
            if metric.unit not in UNIT_NAMES:
                raise ValueError(f"metric {metric.name!r} has unit {metric.unit!r}, which UNIT_NAMES does not name")
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
