"""The demo's clock: what it backfills, fresh or over a reused database, and where it puts the storm."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from device_simulators.environment import Environment
from device_simulators.events import generate
from device_simulators.fleet import build_fleet
from device_simulators.scenarios import get_scenario
from device_simulators.sensors import Sensors
from device_simulators.sites import STATIONS
from ioc_cli.demo_timeline import FIRST_ALERT_AFTER_S, plan_backfill, stream_options

NOW = datetime(2026, 3, 14, 9, 30, 15, 250_000, tzinfo=UTC)


def test_a_fresh_demo_backfills_the_window_up_to_now() -> None:
    plan = plan_backfill(NOW, 48, None)
    assert plan.live == NOW.replace(microsecond=0) and plan.seconds == 48 * 3600
    assert "past 48.0 h" in plan.note


def test_a_reused_database_continues_where_its_readings_end() -> None:
    stored = NOW - timedelta(hours=3)
    plan = plan_backfill(NOW, 48, stored)
    assert plan.start == stored + timedelta(seconds=1)  # no second copy of the stored hours
    assert "end at 2026-03-14 13:30 ICT" in plan.note and "3.0 h since then" in plan.note


def test_readings_older_than_the_window_leave_a_gap_and_say_so() -> None:
    plan = plan_backfill(NOW, 48, NOW - timedelta(days=5))
    assert plan.seconds == 48 * 3600 and "a gap remains" in plan.note


def test_readings_ahead_of_the_clock_get_no_backfill_and_point_to_fresh() -> None:
    # An older demo ran its fleet at 600x and dated readings hours into the future.
    plan = plan_backfill(NOW, 48, NOW + timedelta(hours=5))
    assert plan.seconds == 0 and "ahead of the clock" in plan.note and "--fresh" in plan.note


def test_no_backfill_asked() -> None:
    assert plan_backfill(NOW, 0, None).seconds == 0


def test_the_storm_is_placed_for_the_first_river_alert_minutes_into_real_time_and_ids_differ_per_run() -> None:
    plan = plan_backfill(NOW, 48, None)
    options = stream_options(plan, seed=1, scenario="flood", encoding="json")
    assert options.storm_start is not None
    scenario = get_scenario("flood")
    sensors = Sensors(Environment(1, scenario.storm(0.0, begins=options.storm_start.timestamp())))
    rivers = STATIONS["water_level"]
    live = plan.live.timestamp()

    def alerts(seconds: float) -> int:
        return sum(sensors.river_stage(s.params, live + seconds) >= s.params["alarm"] for s in rivers)

    assert alerts(0) == 0 and alerts(FIRST_ALERT_AFTER_S + 1) >= 1
    later = stream_options(plan_backfill(NOW + timedelta(hours=1), 48, NOW), seed=1, scenario="flood",
                           encoding="json")
    assert later.stream_id != options.stream_id  # a reused database must not see the same message ids again
    assert stream_options(plan, seed=1, scenario="normal", encoding="json").storm_start is None


def test_level_sensors_speed_up_to_a_minute_as_the_rivers_rise() -> None:
    plan = plan_backfill(NOW, 8, None)
    options = stream_options(plan, seed=1, scenario="flood", encoding="json")
    fleet = build_fleet(300, seed=1)
    levels = {d.dev_eui for d in fleet.devices if d.kind in ("water_level", "flood_depth")}
    live = plan.live.timestamp()
    times: dict[str, list[float]] = defaultdict(list)
    for message in generate(fleet, options):
        if message.time > live + 900:
            break
        if message.event == "up" and message.dev_eui in levels and not message.duplicate:
            times[message.dev_eui].append(message.time)

    def gaps(start: float, end: float) -> list[float]:
        return [b - a for t in times.values() for a, b in itertools.pairwise(t) if start <= a < end]

    calm = gaps(plan.start.timestamp(), plan.start.timestamp() + 2 * 3600)  # before the storm
    assert min(calm) > 280
    rising = gaps(live, live + 900)
    assert sum(g < 70 for g in rising) > len(rising) / 2  # most level sensors report every minute now
