"""What each simulated sensor measures at a given moment, from the environment and its own state."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from device_simulators.environment import Environment
from device_simulators.fleet import Device
from device_simulators.sites import STATIONS, TIDAL_ZERO_M

__all__ = [
    "DEAD_BATTERY_V",
    "FAST_INTERVAL_S",
    "Reading",
    "SensorState",
    "Sensors",
    "battery_percent",
    "fault_flag",
    "glitch",
]

DEAD_BATTERY_V: Final = 2.9
"""Below this the radio brown-outs: the device falls silent."""

FAST_INTERVAL_S: Final = 60
"""The reporting interval of a water level station or street flood sensor in alarm mode."""

# Alarm mode: a level sensor reports every minute while its level is above the alert level or rising faster
# than this (metres per hour, over the last 15 minutes of its own samples). The river threshold lies above the
# fastest tide (about 0.27 m/h), so the tide alone never switches a tidal station into alarm mode.
_RISING_FAST_M_H: Final = {"water_level": 0.4, "flood_depth": 0.1}
_STREET_ALERT_M: Final = 0.2

# What the catchment soaks up before rain runs off to the rivers (the SCS curve-number method's potential
# retention S, wet-season soils; the first 0.2 S never runs off): an ordinary shower hardly moves a river,
# a storm's second hundred millimetres mostly does.
_SOIL_STORAGE_MM: Final = 120.0

# The street drains' outfalls: the Hàn at the Dragon bridge. Backed up, the drains still carry a little.
_OUTFALL: Final = STATIONS["water_level"][0]
_DRAINS_MOSTLY_BLOCKED: Final = 0.1

_FULL_BATTERY_V: Final = 3.65
_EMPTY_BATTERY_V: Final = 3.0

# Share of on-street parking bays taken, by local hour 0..23 (downtown Da Nang: lunch dip, busy evenings).
_PARKING: Final = (0.18, 0.15, 0.13, 0.12, 0.12, 0.15, 0.25, 0.45, 0.70, 0.85, 0.88, 0.85,
                   0.65, 0.62, 0.72, 0.78, 0.80, 0.85, 0.90, 0.92, 0.88, 0.72, 0.50, 0.30)  # fmt: skip


@dataclass(slots=True)
class SensorState:
    """Per-device physical state carried between uplinks."""

    start: float
    last_t: float | None = None
    battery_v0: float = 3.62
    drain_v_per_day: float = 0.0005
    factor: float = 1.0
    """Site intensity: rain catch, pollution, bin fill rate, parking popularity, lamp power."""
    offset: float = 0.0
    """Site offset: microclimate, bin tilt."""
    bucket_mm: float = 0.0
    occupied: bool = False
    energy_kwh: float = 0.0
    empties_twice: bool = False
    alarm_mode: bool = False
    """A level sensor reporting at ``FAST_INTERVAL_S``: its level is above the alert level or rising fast."""


def battery_percent(voltage: float) -> float:
    """State of charge of a lithium thionyl chloride cell, linear between 3.0 V and 3.65 V."""
    return min(100.0, max(0.0, (voltage - _EMPTY_BATTERY_V) / (_FULL_BATTERY_V - _EMPTY_BATTERY_V) * 100.0))


Reading = dict[str, float]


class Sensors:
    """Readings for every device kind, in the field names of the matching codec."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment
        self._by_kind: dict[str, Callable[[Device, SensorState, float, random.Random], Reading]] = {
            "water_level": self._water_level,
            "flood_depth": self._flood_depth,
            "rain_gauge": self._rain_gauge,
            "air_quality": self._air_quality,
            "water_quality": self._water_quality,
            "parking": self._parking,
            "waste_bin": self._waste_bin,
            "street_light": self._street_light,
            "temperature_humidity": self._temperature_humidity,
        }

    def new_state(self, device: Device, start: float, rng: random.Random) -> SensorState:
        state = SensorState(
            start=start, battery_v0=rng.uniform(3.55, 3.66), drain_v_per_day=rng.uniform(2e-4, 8e-4)
        )
        kind = device.kind
        if kind in ("rain_gauge", "flood_depth"):  # a river station's catchment is the river's: no factor
            state.factor = rng.uniform(0.85, 1.15)
        elif kind == "air_quality":
            state.factor = rng.uniform(0.6, 1.4)
            state.offset = rng.uniform(10.0, 22.0)  # background PM2.5 of the neighbourhood
        elif kind == "parking":
            state.factor = rng.uniform(0.75, 1.1)
            state.occupied = rng.random() < 0.5
        elif kind == "waste_bin":
            state.factor = rng.uniform(1.5, 5.0)  # % per hour
            state.offset = rng.uniform(1.0, 6.0)  # resting tilt, degrees
            state.empties_twice = state.factor > 3.5
        elif kind == "street_light":
            state.factor = rng.choice((90.0, 120.0, 150.0))  # rated LED power, W
            state.energy_kwh = rng.uniform(50.0, 2500.0)
        elif kind == "temperature_humidity":
            state.offset = rng.uniform(-1.5, 1.5)
        return state

    def read(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        values = self._by_kind[device.kind](device, state, t, rng)
        if device.battery_powered:
            values["battery_voltage"] = self.battery_voltage(state, t, rng)
        state.last_t = t
        return values

    @staticmethod
    def battery_voltage(state: SensorState, t: float, rng: random.Random) -> float:
        days = (t - state.start) / 86_400.0
        return state.battery_v0 - state.drain_v_per_day * days + rng.gauss(0.0, 0.003)

    # --- kinds -----------------------------------------------------------------------------------------

    def river_stage(self, params: Mapping[str, float], t: float) -> float:
        """A river or sea station's stage (m above its gauge zero) at ``t``, without the sensor's noise.

        The rain of the last 12 hours on the catchment arrives ``lag_h`` later; what the soil does not soak
        up runs off (SCS curve number) and raises the river, less and less once it spills over its banks onto
        the flood plain (``rise``: the most it rises above ``base``). Upstream stations see the tide late and
        damped.
        """
        p, env = params, self.env
        lag = p["lag_h"] * 3600.0
        runoff = _runoff(env.rain_between(t - lag - 12 * 3600.0, t - lag))
        tide = env.now(t - 1800.0 * (1.0 - p["tide_gain"])).tide
        rise = _spill(p["rain_gain"] * runoff, p["rise"])
        # A stage above the gauge zero, which lies below the lowest water (see ``sites``): never negative.
        return max(0.0, p["base"] + p["tide_gain"] * tide + rise)

    def street_depth(self, params: Mapping[str, float], factor: float, t: float) -> float:
        """Water standing on a street at ``t`` (m), without the sensor's noise.

        The drains empty into the Hàn and the sea: as the river rises over its normal range their outfalls back
        up, they carry less and less, and the streets flood after the river.
        """
        p, env = params, self.env
        outfall = self.river_stage(_OUTFALL.params, t) - TIDAL_ZERO_M  # metres above mean sea level
        free = min(1.0, max(_DRAINS_MOSTLY_BLOCKED, 1.0 - (outfall - 1.0) / 1.2))
        # Water stands once the last 75 minutes brought more than the drains carry; it drains 15 min late.
        excess = env.rain_between(t - 5400.0, t - 900.0) * factor - p["capacity"] * free * 1.25
        return max(0.0, excess * p["gain"]) + max(0.0, outfall - 0.4) * p["tidal"]

    def _water_level(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        p = device.params
        stage = self.river_stage(p, t)
        rising = (stage - self.river_stage(p, t - 900.0)) * 4.0
        state.alarm_mode = stage >= p["alarm"] or rising >= _RISING_FAST_M_H["water_level"]
        level = max(0.0, stage + rng.gauss(0.0, 0.004))
        return {
            "water_level": level,
            "distance": p["mount"] - level,
            "alarm": 1.0 if level >= p["alarm"] else 0.0,
        }

    def _flood_depth(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        p = device.params
        depth = self.street_depth(p, state.factor, t)
        rising = (depth - self.street_depth(p, state.factor, t - 900.0)) * 4.0
        state.alarm_mode = depth >= _STREET_ALERT_M or rising >= _RISING_FAST_M_H["flood_depth"]
        if depth > 0.0:
            depth = max(0.0, depth + rng.gauss(0.0, 0.003))
        return {"flood_depth": depth, "distance": p["mount"] - depth,
                "alarm": 1.0 if depth >= _STREET_ALERT_M else 0.0}

    def _rain_gauge(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        since = state.last_t if state.last_t is not None else t - device.uplink_interval_s
        caught = self.env.rain_between(since, t) * state.factor + state.bucket_mm
        tips = math.floor(caught / 0.2 + 1e-9)
        state.bucket_mm = caught - tips * 0.2  # water left in the bucket, not yet a tip
        rate = max(self.env.now(t).rain_rate, self.env.now((since + t) / 2.0).rain_rate) * state.factor
        return {"rainfall": tips * 2 / 10, "rain_rate": rate}

    def _air_quality(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        now = self.env.now(t)
        traffic = now.traffic
        washout = 1.0 / (1.0 + now.rain_rate / 8.0)
        pm2_5 = (state.offset + 35.0 * state.factor * traffic) * washout * rng.lognormvariate(0.0, 0.12)
        return {
            "pm2_5": pm2_5,
            "pm10": pm2_5 * rng.uniform(1.55, 1.9),
            "co2": 415.0 + 95.0 * traffic * state.factor + rng.gauss(0.0, 6.0),
            "temperature": now.air_temperature + 0.8 + rng.gauss(0.0, 0.15),
            "humidity": min(100.0, max(0.0, now.humidity - 2.0 + rng.gauss(0.0, 1.0))),
        }

    def _water_quality(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        p, env = device.params, self.env
        # Water follows the air slowly and within a narrow band.
        water_t = 0.45 * env.now(t - 4 * 3600.0).air_temperature + 0.55 * 27.5 + rng.gauss(0.0, 0.05)
        now = env.now(t)
        sun = math.sin(2.0 * math.pi * (now.local_hour - 9.0) / 24.0)  # photosynthesis, highest mid-afternoon
        recent_rain = env.rain_between(t - 12 * 3600.0, t)
        saturation = 14.62 - 0.3898 * water_t + 0.006969 * water_t**2 - 5.897e-5 * water_t**3
        turbidity = p["turbidity"] * (1.0 + recent_rain / 25.0) * rng.lognormvariate(0.0, 0.08)
        salt = p["salinity"] * max(0.0, now.tide + 0.1) / (1.0 + recent_rain / 50.0)
        return {
            "water_temperature": water_t,
            "ph": 7.2 + 0.25 * sun + (0.3 if p["salinity"] > 0 else 0.0) + rng.gauss(0.0, 0.03),
            "dissolved_oxygen": max(0.5, saturation * p["oxygen"] + 0.6 * sun - 0.01 * turbidity),
            "turbidity": turbidity,
            "conductivity": 180.0 + salt + rng.gauss(0.0, 5.0),
        }

    def _parking(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        hour = self.env.local_hour(t)
        low = int(hour) % 24
        share = _PARKING[low] + (_PARKING[(low + 1) % 24] - _PARKING[low]) * (hour - int(hour))
        share = min(0.97, max(0.02, share * state.factor))
        since = state.last_t if state.last_t is not None else t - device.uplink_interval_s
        changed = False
        # Cars stay ~40 minutes on average; between reports the bay may have turned over.
        if rng.random() < 1.0 - math.exp(-(t - since) / 2400.0):
            now = rng.random() < share
            changed = now != state.occupied
            state.occupied = now
        return {"occupied": 1.0 if state.occupied else 0.0, "change": 1.0 if changed else 0.0}

    def _waste_bin(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        now = self.env.now(t)
        hour = now.local_hour
        # Night collection at 21:30; busy bins are emptied at 09:30 too.
        since_night = (hour - 21.5) % 24.0
        since = min(since_night, (hour - 9.5) % 24.0) if state.empties_twice else since_night
        fill = min(100.0, state.factor * since + rng.gauss(0.0, 1.5))
        return {
            "fill_level": max(0.0, fill),
            "temperature": now.air_temperature + 1.5 + rng.gauss(0.0, 0.3),
            "tilt": max(0.0, state.offset + rng.gauss(0.0, 0.4)),
        }

    def _street_light(self, device: Device, state: SensorState, t: float, rng: random.Random) -> Reading:
        now = self.env.now(t)
        dark, hour = now.dark, now.local_hour
        # Full power in the evening, 60 % in the small hours when the streets are empty.
        dimming = (60.0 if hour >= 23.0 or hour < 4.5 else 100.0) if dark else 0.0
        power = (state.factor * dimming / 100.0 * rng.uniform(0.98, 1.02) if dark else 0.0) + 1.2
        since = state.last_t if state.last_t is not None else t
        state.energy_kwh += power * (t - since) / 3_600_000.0
        return {
            "lamp_on": 1.0 if dark else 0.0,
            "dimming": dimming,
            "power": power,
            "energy": state.energy_kwh,
        }

    def _temperature_humidity(
        self, device: Device, state: SensorState, t: float, rng: random.Random
    ) -> Reading:
        now = self.env.now(t)
        return {
            "temperature": now.air_temperature + state.offset + rng.gauss(0.0, 0.2),
            "humidity": min(100.0, max(5.0, now.humidity - 2.0 * state.offset + rng.gauss(0.0, 1.5))),
        }


# A sensor that saturates or spikes: one value per kind beyond its metric's valid range.
_GLITCHES: Final[dict[str, tuple[str, float]]] = {
    "water_level": ("water_level", 31.5),
    "flood_depth": ("flood_depth", 6.2),
    "rain_gauge": ("rainfall", 612.0),
    "air_quality": ("pm2_5", 1500.0),
    "water_quality": ("ph", 15.5),
    "parking": ("battery_voltage", 5.8),
    "waste_bin": ("temperature", 95.0),
    "street_light": ("power", 6000.0),
    "temperature_humidity": ("temperature", -45.0),
}

# The fault each model can report about itself in its frame.
_FAULT_FLAGS: Final[dict[str, str]] = {
    "water_level": "sensor_fault",
    "flood_depth": "sensor_fault",
    "rain_gauge": "bucket_stuck",
    "air_quality": "pm_fault",
    "water_quality": "out_of_water",
    "street_light": "lamp_failure",
}


def glitch(kind: str, values: Reading) -> None:
    """Replace one reading with a value outside its metric's range."""
    name, value = _GLITCHES[kind]
    values[name] = value


def fault_flag(kind: str, values: Reading) -> None:
    """Make the device report a sensor fault, as its firmware would."""
    if kind == "waste_bin":
        values["fill_level"] = math.nan  # no echo
        return
    flag = _FAULT_FLAGS.get(kind)
    if flag is not None:
        values[flag] = 1.0
        if kind == "street_light":
            values["power"] = 0.0


def _runoff(rain_mm: float) -> float:
    """Millimetres that run off from ``rain_mm`` on the catchment (SCS curve number, S = 120 mm)."""
    initial = 0.2 * _SOIL_STORAGE_MM
    return 0.0 if rain_mm <= initial else (rain_mm - initial) ** 2 / (rain_mm - initial + _SOIL_STORAGE_MM)


def _spill(rise: float, most: float) -> float:
    """``rise`` in the river's banks, flattening towards ``most`` as the water spreads over the flood plain."""
    return float(rise / (1.0 + (rise / most) ** 8) ** 0.125)
