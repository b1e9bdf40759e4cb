"""Named simulation scenarios: a normal day, a flood-producing storm, and a fleet full of faults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from device_simulators.environment import RainCell

__all__ = ["SCENARIOS", "Scenario", "get_scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    storm_delay_h: float | None = None
    """Hours after the start when the storm begins; None for no storm."""
    storm_hours: float = 0.0
    storm_peak_mm_h: float = 0.0
    dead_battery_share: float = 0.0
    """Battery devices whose battery collapses within hours, then go silent."""
    silent_share: float = 0.0
    """Devices that stop sending at a random time in the first six hours."""
    glitch_ratio: float = 0.0
    """Uplinks carrying an out-of-range reading (a saturated or spiking sensor)."""
    fault_flag_ratio: float = 0.0
    """Uplinks where the device reports a sensor fault (no echo, stuck bucket, probe out of water)."""
    loss_ratio: float = 0.0
    duplicate_ratio: float = 0.0
    malformed_ratio: float = 0.0

    def storm(self, start: float, *, begins: float | None = None) -> RainCell | None:
        """The storm of a stream starting at ``start``: ``storm_delay_h`` later, or at ``begins`` if given."""
        if self.storm_delay_h is None:
            return None
        at = start + self.storm_delay_h * 3600.0 if begins is None else begins
        return RainCell(at, self.storm_hours * 3600.0, self.storm_peak_mm_h)


SCENARIOS: Final[Mapping[str, Scenario]] = MappingProxyType(
    {
        "normal": Scenario(
            "normal",
            "An ordinary day: showers from the monthly climate, rush-hour traffic, tides, some radio loss.",
            loss_ratio=0.005,
            duplicate_ratio=0.002,
        ),
        "flood": Scenario(
            "flood",
            "A storm from minute 20: rain building to 110 mm/h over 4 hours, 8 hours in all (440 mm, like "
            "October 2022); streets flood from the third hour and deepen as the Hàn backs up their drains, "
            "the rivers rise up to a metre or two an hour and pass their alert levels from the fifth hour.",
            storm_delay_h=1.0 / 3.0,
            storm_hours=8.0,
            storm_peak_mm_h=110.0,
            loss_ratio=0.01,
            duplicate_ratio=0.005,
        ),
        "faults": Scenario(
            "faults",
            "Dead batteries, silent devices, out-of-range readings, sensor faults, lost, duplicated "
            "and malformed messages: everything the ingest must flag or dead-letter.",
            dead_battery_share=0.05,
            silent_share=0.05,
            glitch_ratio=0.02,
            fault_flag_ratio=0.02,
            loss_ratio=0.03,
            duplicate_ratio=0.02,
            malformed_ratio=0.02,
        ),
    }
)


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None
