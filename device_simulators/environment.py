"""Da Nang's simulated weather, tide and city rhythm as deterministic functions of time.

Everything is a pure function of the simulated time and the seed, so two runs with the same seed see the
same rain, and a device can ask for "rain between my last report and now" without the simulator stepping
through time. Rain comes in cells (a sin² pulse of intensity); the monthly climate decides how many and how
strong. A scenario can add one storm on top.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

__all__ = ["LOCAL_UTC_OFFSET_S", "Conditions", "Environment", "RainCell"]

LOCAL_UTC_OFFSET_S: Final = 7 * 3600  # Indochina Time, no daylight saving

_DAY: Final = 86_400.0
_MINUTES: Final = 1440

# Monthly climate of Da Nang (Jan..Dec): mean air temperature, mean relative humidity, rain cells per day
# and mean peak intensity of a cell (mm/h). A cell brings peak x duration / 2, about 0.83 x peak on average,
# which gives the monthly totals (about 100, 30, 25, 30, 60, 90, 90, 110, 350, 610, 400 and 200 mm): the
# wet season (Sep-Dec) brings most of the year's rain, summer storms are rare but strong.
_TEMPERATURE: Final = (21.6, 22.6, 24.1, 26.2, 28.1, 29.2, 29.2, 28.8, 27.5, 26.0, 24.4, 22.6)
_HUMIDITY: Final = (85.0, 85.0, 84.0, 82.0, 78.0, 74.0, 73.0, 75.0, 82.0, 85.0, 86.0, 86.0)
_CELLS_PER_DAY: Final = (1.0, 0.5, 0.4, 0.4, 0.5, 0.4, 0.4, 0.5, 1.6, 2.2, 2.2, 1.6)
_CELL_PEAK: Final = (4.0, 2.4, 2.5, 3.0, 4.8, 9.0, 9.0, 8.8, 8.75, 11.1, 7.3, 5.0)

# Tidal constituents (amplitude m, period h, phase rad). Da Nang's tide is mixed with a ~1.2 m range;
# M2 (12.42 h) and the diurnal K1/O1 dominate.
_TIDE: Final = ((0.30, 12.4206, 0.0), (0.28, 23.9345, 1.1), (0.20, 25.8193, 2.3), (0.08, 12.0, 0.7))


@dataclass(frozen=True, slots=True)
class RainCell:
    """Rain of ``peak`` mm/h shaped as sin² over ``[start, start + duration)`` (POSIX seconds)."""

    start: float
    duration: float
    peak: float

    def rate(self, t: float) -> float:
        x = t - self.start
        if x <= 0.0 or x >= self.duration:
            return 0.0
        return self.peak * math.sin(math.pi * x / self.duration) ** 2

    def amount(self, t0: float, t1: float) -> float:
        """Millimetres fallen between t0 and t1."""
        return self._cumulative(t1) - self._cumulative(t0)

    def _cumulative(self, t: float) -> float:
        x = min(max(t - self.start, 0.0), self.duration)
        d = self.duration
        return self.peak / 3600.0 * (x / 2.0 - d / (4.0 * math.pi) * math.sin(2.0 * math.pi * x / d))


class Conditions(NamedTuple):
    """City-wide conditions at one minute, shared by every device reporting in it."""

    local_hour: float
    tide: float
    traffic: float
    air_temperature: float
    humidity: float
    rain_rate: float
    dark: bool


class Environment:
    """Weather, tide and the city's daily rhythm for one seed (and optionally one storm).

    Rain is tabulated per local day on a one-minute grid (cumulative millimetres and intensity), and
    city-wide conditions are cached per minute, because thousands of devices ask for the same minutes.
    """

    def __init__(self, seed: int, storm: RainCell | None = None) -> None:
        self._seed = seed
        self._storm = storm
        self._cells: dict[int, tuple[RainCell, ...]] = {}
        self._calendar: dict[int, tuple[int, int, int]] = {}
        self._rain: dict[int, tuple[list[float], list[float]]] = {}
        self._minutes: dict[int, Conditions] = {}

    # --- calendar --------------------------------------------------------------------------------------

    @staticmethod
    def local_day(t: float) -> int:
        return int((t + LOCAL_UTC_OFFSET_S) // _DAY)

    @staticmethod
    def local_hour(t: float) -> float:
        return ((t + LOCAL_UTC_OFFSET_S) % _DAY) / 3600.0

    def _date(self, day: int) -> tuple[int, int, int]:
        """Month index (0-11), day of year (1-366) and weekday (0 = Monday) of a local day."""
        found = self._calendar.get(day)
        if found is None:
            date = datetime.fromtimestamp(day * _DAY, UTC)
            found = (date.month - 1, date.timetuple().tm_yday, date.weekday())
            self._calendar[day] = found
        return found

    def month(self, t: float) -> int:
        return self._date(self.local_day(t))[0]

    # --- rain --------------------------------------------------------------------------------------------

    def cells(self, day: int) -> tuple[RainCell, ...]:
        """The showers that start on a local day; drawn from the seed, so the same for every caller."""
        found = self._cells.get(day)
        if found is not None:
            return found
        month = self._date(day)[0]
        rng = random.Random(self._seed * 1_000_003 + day)
        count = _poisson(rng, _CELLS_PER_DAY[month])
        midnight = day * _DAY - LOCAL_UTC_OFFSET_S
        made = tuple(
            RainCell(
                start=midnight + rng.uniform(0.0, _DAY),
                duration=rng.uniform(20.0, 180.0) * 60.0,
                peak=min(120.0, rng.expovariate(1.0 / _CELL_PEAK[month])),
            )
            for _ in range(count)
        )
        if len(self._cells) > 64:
            self._cells.clear()
        self._cells[day] = made
        return made

    def _rain_day(self, day: int) -> tuple[list[float], list[float]]:
        """Cumulative rain since local midnight and intensity, per minute 0..1440 of a local day."""
        found = self._rain.get(day)
        if found is not None:
            return found
        midnight = day * _DAY - LOCAL_UTC_OFFSET_S
        # A cell lasts at most three hours, so yesterday's cells are the only ones that can spill over.
        cells = [*self.cells(day - 1), *self.cells(day)]
        if self._storm is not None:
            cells.append(self._storm)
        cells = [c for c in cells if c.start < midnight + _DAY and c.start + c.duration > midnight]
        minutes = [midnight + 60.0 * m for m in range(_MINUTES + 1)]
        cumulative = [sum(c.amount(midnight, t) for c in cells) for t in minutes]
        rates = [sum(c.rate(t) for c in cells) for t in minutes]
        if len(self._rain) > 64:
            self._rain.clear()
        self._rain[day] = (cumulative, rates)
        return cumulative, rates

    def _grid(self, t: float) -> tuple[int, int, float]:
        day = self.local_day(t)
        x = (t + LOCAL_UTC_OFFSET_S - day * _DAY) / 60.0
        minute = min(int(x), _MINUTES - 1)
        return day, minute, x - minute

    def rain_rate(self, t: float) -> float:
        """City-wide rain intensity, mm/h."""
        day, minute, frac = self._grid(t)
        rates = self._rain_day(day)[1]
        return rates[minute] + (rates[minute + 1] - rates[minute]) * frac

    def _since_midnight(self, t: float) -> tuple[int, float]:
        day, minute, frac = self._grid(t)
        cumulative = self._rain_day(day)[0]
        return day, cumulative[minute] + (cumulative[minute + 1] - cumulative[minute]) * frac

    def rain_between(self, t0: float, t1: float) -> float:
        """Rain fallen between two times, mm."""
        if t1 <= t0:
            return 0.0
        day0, at0 = self._since_midnight(t0)
        day1, at1 = self._since_midnight(t1)
        if day0 == day1:
            return max(0.0, at1 - at0)
        total = self._rain_day(day0)[0][-1] - at0 + at1
        for day in range(day0 + 1, day1):
            total += self._rain_day(day)[0][-1]
        return max(0.0, total)

    # --- sea -------------------------------------------------------------------------------------------

    @staticmethod
    def tide(t: float) -> float:
        """Sea level relative to the mean, m."""
        hours = t / 3600.0
        return sum(a * math.cos(2.0 * math.pi * hours / period + phase) for a, period, phase in _TIDE)

    # --- air -------------------------------------------------------------------------------------------

    def air_temperature(self, t: float) -> float:
        month = self.month(t)
        daily = 3.5 * math.cos(2.0 * math.pi * (self.local_hour(t) - 14.5) / 24.0)
        return _TEMPERATURE[month] + daily - min(4.0, 0.25 * self.rain_rate(t))

    def humidity(self, t: float) -> float:
        month = self.month(t)
        daily = -13.0 * math.cos(2.0 * math.pi * (self.local_hour(t) - 14.5) / 24.0)
        value = _HUMIDITY[month] + daily + min(15.0, 1.5 * self.rain_rate(t))
        return min(99.0, max(35.0, value))

    def traffic(self, t: float) -> float:
        """Road traffic, 0..1: morning and evening rush hours, a lunchtime hump, quiet nights."""
        hour = self.local_hour(t)
        weekend = self._date(self.local_day(t))[2] >= 5
        peak = 0.7 if weekend else 1.0
        daytime = 0.5 / ((1.0 + math.exp(-2.0 * (hour - 6.5))) * (1.0 + math.exp(1.5 * (hour - 20.5))))
        shape = max(
            peak * math.exp(-(((hour - 7.4) / 1.0) ** 2)),
            peak * 0.95 * math.exp(-(((hour - 17.6) / 1.2) ** 2)),
            daytime,
        )
        return 0.12 + 0.88 * shape

    # --- light -------------------------------------------------------------------------------------------

    def sun_hours(self, t: float) -> tuple[float, float]:
        """Local sunrise and sunset (hours) for the day of ``t``."""
        season = math.sin(2.0 * math.pi * (self._date(self.local_day(t))[1] - 80) / 365.0)
        return 5.65 - 0.45 * season, 17.75 + 0.55 * season

    def is_dark(self, t: float) -> bool:
        sunrise, sunset = self.sun_hours(t)
        hour = self.local_hour(t)
        # Photocells switch a little after sunset and before sunrise.
        return hour >= sunset + 0.15 or hour < sunrise - 0.15

    # --- all of it at once -------------------------------------------------------------------------------

    def now(self, t: float) -> Conditions:
        """Conditions of the minute containing ``t`` (evaluated at the minute's start)."""
        key = int(t // 60.0)
        found = self._minutes.get(key)
        if found is None:
            at = key * 60.0
            found = Conditions(
                local_hour=self.local_hour(at),
                tide=self.tide(at),
                traffic=self.traffic(at),
                air_temperature=self.air_temperature(at),
                humidity=self.humidity(at),
                rain_rate=self.rain_rate(at),
                dark=self.is_dark(at),
            )
            if len(self._minutes) > 20_000:
                self._minutes.clear()
            self._minutes[key] = found
        return found


def _poisson(rng: random.Random, mean: float) -> int:
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
