"""The simulated city behaves like one: tides, rain, rush hours, night lights, bins, batteries."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime

from device_simulators.environment import Environment, RainCell
from device_simulators.fleet import Device, build_fleet
from device_simulators.scenarios import SCENARIOS, get_scenario
from device_simulators.sensors import Sensors, battery_percent

START = datetime(2025, 10, 14, 0, 0, tzinfo=UTC).timestamp()  # 07:00 in Da Nang
HOUR = 3600.0


def _device(kind: str, site_prefix: str = "") -> Device:
    return next(d for d in build_fleet(400, seed=1).devices if d.kind == kind and d.site.startswith(site_prefix))


def test_tide_is_mostly_semidiurnal_with_a_metre_range() -> None:
    env = Environment(1)
    levels = [env.tide(START + m * 600.0) for m in range(6 * 24 * 15)]
    assert 0.8 < max(levels) - min(levels) < 2.0
    # M2 dominates: the level ~12.42 h later is closer than ~6.21 h later.
    lag = [abs(env.tide(START + h * HOUR) - env.tide(START + (h + 12.42) * HOUR)) for h in range(48)]
    half = [abs(env.tide(START + h * HOUR) - env.tide(START + (h + 6.21) * HOUR)) for h in range(48)]
    assert statistics.mean(lag) < statistics.mean(half)


def test_rain_cells_integrate_exactly() -> None:
    cell = RainCell(START, 2 * HOUR, 30.0)
    assert abs(cell.amount(START - HOUR, START + 3 * HOUR) - 30.0) < 1e-9  # peak x duration / 2
    env = Environment(3, storm=cell)
    assert abs(env.rain_between(START - HOUR, START + 3 * HOUR) - 30.0 - _showers(env)) < 0.05
    assert env.rain_rate(START + HOUR) >= 30.0 - 0.01


def _showers(env: Environment) -> float:
    day = env.local_day(START)
    return sum(c.amount(START - HOUR, START + 3 * HOUR) for d in (day - 1, day) for c in env.cells(d))


def test_same_seed_same_weather() -> None:
    a, b = Environment(5), Environment(5)
    times = [START + h * HOUR for h in range(24 * 30)]
    assert [a.rain_rate(t) for t in times] == [b.rain_rate(t) for t in times]
    wet = sum(a.rain_between(t, t + HOUR) for t in times)
    assert 150.0 < wet < 1200.0  # mid-October to mid-November: the wettest weeks, 400-600 mm on average


def test_rush_hours_and_quiet_nights() -> None:
    env = Environment(1)
    monday = datetime(2025, 10, 13, 0, 0, tzinfo=UTC).timestamp() - 7 * HOUR  # local midnight
    traffic = {h: env.traffic(monday + h * HOUR + 1800) for h in range(24)}  # half past each hour
    assert traffic[7] > 0.9 and traffic[17] > 0.85
    assert traffic[3] < 0.2 and traffic[12] < traffic[7] and traffic[12] > 2 * traffic[3]


def test_temperature_peaks_in_the_afternoon() -> None:
    env = Environment(1)
    dry = Environment(1, storm=None)
    local_midnight = START - 7 * HOUR
    temperatures = {h: dry.air_temperature(local_midnight + h * HOUR) for h in (5, 14)}
    assert temperatures[14] > temperatures[5] + 4
    assert env.humidity(local_midnight + 5 * HOUR) > env.humidity(local_midnight + 14 * HOUR)


def test_flood_scenario_floods_streets_then_rivers() -> None:
    scenario = get_scenario("flood")
    env = Environment(1, scenario.storm(START))
    sensors = Sensors(env)
    rng = random.Random(1)
    street = _device("flood_depth")
    river = _device("water_level", "Cẩm Lệ river")
    street_state = sensors.new_state(street, START, rng)
    river_state = sensors.new_state(river, START, rng)
    depth = {h: sensors.read(street, street_state, START + h * HOUR, rng)["flood_depth"] for h in (0, 5, 6, 20)}
    level = {h: sensors.read(river, river_state, START + h * HOUR, rng)["water_level"] for h in (0, 5, 12, 28)}
    # Before the storm only a high tide backs a little water up the drains.
    assert depth[0] < 0.02 and depth[5] > 0.25 and depth[6] > 0.25 and depth[20] < 0.02
    assert level[5] < level[0] + 0.3  # the river answers hours later
    assert level[12] > level[0] + 1.5
    assert level[28] < level[12] - 1.5  # and falls again


def test_water_levels_are_stages_above_the_gauge_zero_and_meet_the_stations_warning_levels() -> None:
    # A stage is never negative (the gauge zero lies below the lowest water, see sites), stays below the
    # station's alert level through a dry fortnight of tides and reaches it in the flood scenario's storm.
    stations = [d for d in build_fleet(400, seed=1).devices if d.kind == "water_level"]
    dry, wet = Sensors(Environment(2)), Sensors(Environment(1, get_scenario("flood").storm(START)))
    rng = random.Random(3)
    for device in stations:
        dry_state, wet_state = dry.new_state(device, START, rng), wet.new_state(device, START, rng)
        calm = [dry.read(device, dry_state, START + m * 1800.0, rng)["water_level"] for m in range(48 * 14)]
        storm = [wet.read(device, wet_state, START + m * 1800.0, rng)["water_level"] for m in range(48 * 2)]
        assert min(calm + storm) >= 0.0, device.site
        assert max(calm) < device.params["alarm"] < device.params["danger"], device.site
        if not device.site.startswith("Coast"):  # the sea hardly rises with the rain
            assert max(storm) > device.params["alarm"], device.site


def test_the_demo_storm_floods_the_first_streets_as_real_time_begins() -> None:
    scenario = get_scenario("flood")
    live = START + 48 * HOUR  # the demo backfills two days, then runs in real time
    begins = scenario.storm_start_for_live(live)
    assert begins is not None
    sensors = Sensors(Environment(1, scenario.storm(live - 48 * HOUR, begins=begins)))
    rng = random.Random(1)
    streets = [d for d in build_fleet(400, seed=1).devices if d.kind == "flood_depth"]
    states = [sensors.new_state(d, live - 48 * HOUR, rng) for d in streets]

    def deepest(minute: float) -> float:
        return max(sensors.read(d, s, live + minute * 60.0, rng)["flood_depth"] for d, s in zip(streets, states,
                                                                                               strict=True))

    def flooded(minute: float) -> int:
        return sum(sensors.read(d, s, live + minute * 60.0, rng)["flood_depth"] > 0.05
                   for d, s in zip(streets, states, strict=True))

    assert max(deepest(m) for m in range(-24 * 60, -30, 10)) < 0.02  # the backfill is dry underfoot
    assert deepest(0) < 0.1 and flooded(0) <= 1  # real time begins as the first street starts to flood
    assert flooded(10) < flooded(20) < flooded(30)  # and a newcomer watches the flood spread
    assert deepest(45) > 0.2  # past the alert depth within the hour
    assert sensors.env.rain_rate(live) > 30.0  # it is pouring, and getting worse
    assert sensors.env.rain_rate(live + 1800) > sensors.env.rain_rate(live)


def test_normal_day_keeps_streets_mostly_dry() -> None:
    env = Environment(2)
    sensors = Sensors(env)
    rng = random.Random(2)
    street = _device("flood_depth")
    state = sensors.new_state(street, START, rng)
    depths = [sensors.read(street, state, START + m * 300.0, rng)["flood_depth"] for m in range(12 * 24 * 7)]
    assert sum(d > 0.05 for d in depths) / len(depths) < 0.05


def test_rain_gauge_reports_whole_tips_and_keeps_the_remainder() -> None:
    env = Environment(1, RainCell(START, 3 * HOUR, 20.0))
    sensors = Sensors(env)
    rng = random.Random(1)
    gauge = _device("rain_gauge")
    state = sensors.new_state(gauge, START, rng)
    total = 0.0
    for m in range(1, 7 * 6):
        reading = sensors.read(gauge, state, START + m * 600.0, rng)
        assert abs(reading["rainfall"] / 0.2 - round(reading["rainfall"] / 0.2)) < 1e-9
        total += reading["rainfall"]
    expected = env.rain_between(START + 600.0, START + 41 * 600.0) * state.factor
    assert abs(total - expected) < 0.2 + 1e-6


def test_street_lights_at_night_bins_fill_parking_by_hour() -> None:
    env = Environment(1)
    sensors = Sensors(env)
    rng = random.Random(1)
    local_midnight = START - 7 * HOUR
    light = _device("street_light")
    state = sensors.new_state(light, START, rng)
    night = sensors.read(light, state, local_midnight + 24 * HOUR + 20 * HOUR, rng)
    day = sensors.read(light, state, local_midnight + 48 * HOUR + 12 * HOUR, rng)
    assert night["lamp_on"] == 1.0 and night["power"] > 50 and day["lamp_on"] == 0.0 and day["power"] < 2
    assert day["energy"] > night["energy"]
    bin_ = _device("waste_bin")
    bin_state = sensors.new_state(bin_, START, rng)
    bin_state.empties_twice = False
    after_collection = sensors.read(bin_, bin_state, local_midnight + 22 * HOUR, rng)["fill_level"]
    before_collection = sensors.read(bin_, bin_state, local_midnight + 45 * HOUR, rng)["fill_level"]
    assert after_collection < 10 < before_collection
    bays = [d for d in build_fleet(400, seed=1).devices if d.kind == "parking"]
    states = [sensors.new_state(d, START, rng) for d in bays]

    def share(hour: float) -> float:
        return statistics.mean(sensors.read(d, s, local_midnight + hour * HOUR, rng)["occupied"]
                               for d, s in zip(bays, states, strict=True))  # fmt: skip

    for warm_up in (1.0, 2.0, 3.0):
        share(warm_up)
    night_share = share(4.0)
    for warm_up in (17.0, 18.0):
        share(warm_up)
    assert share(19.0) > night_share + 0.4


def test_batteries_decline() -> None:
    sensors = Sensors(Environment(1))
    rng = random.Random(1)
    device = _device("parking")
    state = sensors.new_state(device, START, rng)
    first = sensors.read(device, state, START, rng)["battery_voltage"]
    later = sensors.read(device, state, START + 200 * 24 * HOUR, rng)["battery_voltage"]
    assert 3.5 < first < 3.7 and later < first - 0.03
    assert battery_percent(3.65) == 100.0 and battery_percent(2.5) == 0.0


def test_scenarios_are_named() -> None:
    assert set(SCENARIOS) == {"normal", "flood", "faults"}
    assert get_scenario("flood").storm(START) is not None and get_scenario("normal").storm(START) is None
