"""The demo's flood: levels a river's simulated stage passes at chosen moments, and the stations whose wards show
the flood (one in Hải Châu, one in another district)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from device_simulators.environment import Environment
from device_simulators.fleet import build_fleet
from device_simulators.flood_timing import stage_levels, storm_start_for_alert
from device_simulators.scenarios import get_scenario
from device_simulators.sensors import Sensors
from device_simulators.sites import STATIONS
from ioc_cli.demo_hazards import load_demo_wards, pick_flood_stations, stage_levels_for

FLOOD = get_scenario("flood")
# Several times of day: the tide at the Hàn's stations rises and falls against the flood.
LIVES = [datetime(2026, 10, 14, h, 7, 30, tzinfo=UTC).timestamp() for h in (0, 5, 9, 14, 19)]


@pytest.mark.parametrize("live", LIVES)
def test_a_rising_river_passes_watch_alert_and_danger_in_order_near_the_chosen_moments(live: float) -> None:
    storm = storm_start_for_alert(FLOOD, 1, live + 120.0)
    assert storm is not None
    sensors = Sensors(Environment(1, FLOOD.storm(storm, begins=storm)))
    for station in STATIONS["water_level"][:3]:  # the Hàn in Hải Châu
        levels = stage_levels(FLOOD, 1, storm, station.params, live, watch_after_s=60.0, alert_after_s=120.0,
                              danger_after_s=300.0)
        assert levels is not None, station.label
        assert levels.watch + 0.02 <= levels.alert + 1e-9 and levels.alert + 0.02 <= levels.danger + 1e-9
        # The backfill's last reading stays below alert; the stage passes each level at its moment.
        stage = sensors.river_stage
        assert stage(station.params, live) < levels.alert
        assert live + 120.0 <= levels.alert_at <= live + 600.0 and live + 300.0 <= levels.danger_at <= live + 900.0
        assert stage(station.params, levels.alert_at) == pytest.approx(levels.alert, abs=1e-3)
        assert stage(station.params, levels.danger_at) == pytest.approx(levels.danger, abs=1e-3)
        assert stage(station.params, levels.alert_at - 60.0) < levels.alert + 1e-3


def test_a_river_that_does_not_rise_gets_no_levels() -> None:
    live = LIVES[0]
    storm = storm_start_for_alert(FLOOD, 1, live + 120.0)
    assert storm is not None
    sea = next(s for s in STATIONS["water_level"] if s.label == "Coast, Mỹ Khê beach")  # rain barely moves it
    assert stage_levels(FLOOD, 1, storm, sea.params, live, watch_after_s=60.0, alert_after_s=120.0,
                        danger_after_s=300.0) is None
    with pytest.raises(ValueError, match="follow each other"):
        stage_levels(FLOOD, 1, storm, sea.params, live, watch_after_s=60.0, alert_after_s=300.0,
                     danger_after_s=120.0)


@pytest.mark.parametrize("live", LIVES)
def test_the_flood_shows_in_a_ward_of_hai_chau_and_in_a_ward_of_another_district(live: float) -> None:
    fleet = build_fleet(100, seed=1)
    storm = storm_start_for_alert(FLOOD, 1, live + 120.0)
    assert storm is not None
    levels_of = stage_levels_for(FLOOD, 1, storm, live, alert_after_s=120.0, danger_after_s=300.0)
    registered = {d.dev_eui for d in fleet.devices}
    home, other = pick_flood_stations(fleet, registered, load_demo_wards(), levels_of)
    assert home.district == "hai-chau" and home.ward.startswith(("hai-chau-", "binh-thuan"))
    assert other.district != "hai-chau" and other.ward == "hoa-bac"  # the fastest river of the fleet
    for station in (home, other):
        assert station.levels.alert_at <= live + 240.0 and station.levels.danger_at <= live + 420.0
        assert station.dev_euis and all(d in registered for d in station.dev_euis)
    # A sensor the registry does not hold is no station; a fleet without another district's river shows one.
    assert all(s.district == "hai-chau" for s in pick_flood_stations(
        build_fleet(40, seed=1), registered | {d.dev_eui for d in build_fleet(40, seed=1).devices},
        load_demo_wards(), levels_of))
    unregistered = registered - set(other.dev_euis)
    assert all(s.site != other.site for s in pick_flood_stations(fleet, unregistered, load_demo_wards(),
                                                                   levels_of))
