"""The simulated city behaves like one: tides, rain, rush hours, night lights, bins, batteries."""

from __future__ import annotations

import itertools
import random
import statistics
from datetime import UTC, datetime

import pytest

from device_simulators.environment import Environment, RainCell
from device_simulators.fleet import Device, build_fleet
from device_simulators.flood_timing import storm_start_for_alert
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


@pytest.mark.parametrize("hour", [0, 5, 10, 15, 20])  # real time beginning at every phase of the tide
def test_the_demo_flood_rises_in_the_first_minutes_of_real_time(hour: int) -> None:
    scenario = get_scenario("flood")
    live = START + (48 + hour) * HOUR  # the demo backfills two days, then runs in real time
    begins = storm_start_for_alert(scenario, 1, live + 180.0)
    assert begins is not None and live - 6 * HOUR < begins < live - 2 * HOUR  # the storm's start is backfilled
    sensors = Sensors(Environment(1, scenario.storm(live - 48 * HOUR, begins=begins)))
    fleet = build_fleet(300, seed=1).devices  # the demo's fleet
    rivers = [d for d in fleet if d.kind == "water_level" and not d.site.startswith("Coast")]
    streets = [d for d in fleet if d.kind == "flood_depth"]

    def above(level: str, minute: float) -> int:
        return sum(sensors.river_stage(d.params, live + minute * 60.0) > d.params[level] for d in rivers)

    # Before the storm the backfill shows ordinary days: every station below its alert level.
    before = range(int(live - 48 * HOUR), int(begins), 600)
    assert all(sensors.river_stage(d.params, t) < d.params["alarm"] for d in rivers for t in before)
    # Real time begins with no station at its alert level, the rivers rising visibly minute by minute ...
    assert above("alarm", 0) == 0
    assert max(sensors.river_stage(d.params, live + 60.0) - sensors.river_stage(d.params, live)
               for d in rivers) > 0.015
    # ... the first alert within five minutes, the first danger within twenty, more stations following.
    assert above("alarm", 5) >= 1 and above("danger", 20) >= 1 and above("alarm", 45) >= 3
    # Streets, flooded by the downpour, deepen as the Hàn backs up their drains.
    depth = {m: max(sensors.street_depth(d.params, 1.0, live + m * 60.0) for d in streets) for m in (0, 30)}
    assert 0.2 < depth[0] < depth[30] < 1.5
    # Plausible rivers: never negative, below the sensor, rising at most a few metres an hour.
    for d in rivers:
        stages = [sensors.river_stage(d.params, live + m * 60.0) for m in range(-120, 12 * 60, 5)]
        assert min(stages) >= 0.0 and max(stages) < d.params["mount"] - 0.5, d.site
        assert max(b - a for a, b in itertools.pairwise(stages)) * 12 < 3.0, d.site


def test_level_sensors_report_every_minute_while_rising_fast_or_above_alert() -> None:
    sensors = Sensors(Environment(1, get_scenario("flood").storm(START)))
    rng = random.Random(1)
    river, street = _device("water_level", "Hàn river, Dragon"), _device("flood_depth")
    states = {d.dev_eui: sensors.new_state(d, START, rng) for d in (river, street)}
    modes: dict[str, list[bool]] = {d.kind: [] for d in (river, street)}
    alarms: dict[str, list[bool]] = {d.kind: [] for d in (river, street)}
    for minute in range(0, 36 * 60, 5):
        for d in (river, street):
            reading = sensors.read(d, states[d.dev_eui], START + minute * 60.0, rng)
            modes[d.kind].append(states[d.dev_eui].alarm_mode)
            alarms[d.kind].append(reading["alarm"] == 1.0)
    for kind, series in modes.items():
        assert not series[0] and any(series) and not series[-1], kind  # normal, alarm in the storm, normal again
        # Rising fast switches the alarm mode on before the level reaches alert.
        assert series.index(True) < alarms[kind].index(True), kind


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
