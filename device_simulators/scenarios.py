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
    streets_flood_after_h: float = 0.0
    """Hours from the storm's start until the first streets flood (the drains are overwhelmed)."""
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

    def storm_start_for_live(self, live: float, *, lead_s: float = 0.0) -> float | None:
        """When the storm must begin for the first streets to start flooding ``lead_s`` after ``live``.

        The demo backfills the past and then runs in real time; with the storm placed here, a newcomer
        watches the rise happen in the first minutes rather than finding it over in the backfill.
        """
        if self.storm_delay_h is None:
            return None
        return live + lead_s - self.streets_flood_after_h * 3600.0


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
            "A storm from minute 20: rain building to 90 mm/h over 5 hours, 10 hours in all (450 mm, like "
            "October 2022); the first streets start to flood after about 2.6 hours and pass 0.2 m half an "
            "hour later, rivers rise over the following hours and reach their alert levels after 8 to 10.",
            storm_delay_h=1.0 / 3.0,
            storm_hours=10.0,
            storm_peak_mm_h=90.0,
            streets_flood_after_h=2.6,
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
