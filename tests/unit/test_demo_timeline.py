"""The demo's clock: what it backfills, fresh or over a reused database, and where it puts the storm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from device_simulators.scenarios import get_scenario
from ioc_cli.demo_timeline import plan_backfill, stream_options

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


def test_the_storm_floods_streets_minutes_after_the_backfill_and_ids_differ_per_run() -> None:
    plan = plan_backfill(NOW, 48, None)
    options = stream_options(plan, seed=1, scenario="flood", encoding="json")
    assert options.storm_start is not None
    flood_at = options.storm_start + timedelta(hours=get_scenario("flood").streets_flood_after_h)
    assert flood_at == plan.live  # the first streets start to flood as real time begins
    later = stream_options(plan_backfill(NOW + timedelta(hours=1), 48, NOW), seed=1, scenario="flood",
                           encoding="json")
    assert later.stream_id != options.stream_id  # a reused database must not see the same message ids again
    assert stream_options(plan, seed=1, scenario="normal", encoding="json").storm_start is None
