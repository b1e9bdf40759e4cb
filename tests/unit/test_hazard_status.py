"""The hazard status rule: levels from thresholds, freshness, worst-of, and a district over its wards."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from operations.status import (
    Evidence,
    Level,
    Thresholds,
    ZoneStatus,
    district_status,
    level_of,
    worst,
    zone_status,
)

WATER = Thresholds(watch=1.0, alert=1.5, danger=2.5)  # Cẩm Lệ-like: BĐ1 1.0 m, BĐ3 2.5 m
AT = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def station(eui: str, level: Level | None, value: float | None = 1.0, zone: str = "hoa-cuong") -> Evidence:
    return Evidence(eui, zone, "water_level", value, AT if value is not None else None, level)


@pytest.mark.parametrize(("value", "level"), [
    (0.3, "normal"), (1.0, "normal"), (1.01, "watch"), (1.5, "watch"), (1.51, "alert"), (2.5, "alert"),
    (2.51, "danger"), (9.0, "danger"),
])
def test_a_value_reaches_a_level_only_strictly_above_it(value: float, level: Level) -> None:
    assert level_of(value, WATER) == level


def test_missing_levels_are_skipped() -> None:
    assert level_of(60.0, Thresholds(alert=50.0, danger=150.0)) == "alert"
    assert level_of(40.0, Thresholds(alert=50.0, danger=150.0)) == "normal"
    assert level_of(1e9, Thresholds()) == "normal"


@pytest.mark.parametrize(("value", "previous", "level"), [
    (1.46, "alert", "alert"),     # within 5 % below alert (1.425 m): held
    (1.42, "alert", "watch"),     # below the margin: falls
    (2.40, "danger", "danger"),   # within 5 % below danger (2.375 m)
    (2.30, "danger", "alert"),    # below danger's margin, still above alert: alert
    (1.44, "danger", "alert"),    # below danger's margin, within alert's: held at alert, not dropped to watch
    (0.5, "danger", "normal"),    # far below everything
    (0.96, "watch", "watch"),     # within 5 % below watch
    (2.6, "watch", "danger"),     # rising is never held back
    (1.46, None, "watch"),        # no previous level: the plain rule
])
def test_a_level_falls_only_past_a_margin(value: float, previous: Level | None, level: Level) -> None:
    assert level_of(value, WATER, previous) == level


def test_a_level_wavering_at_its_threshold_does_not_flap() -> None:
    levels: list[Level] = []
    previous: Level | None = None
    for value in (1.49, 1.52, 1.49, 1.53, 1.48, 1.51, 1.47, 1.40):  # noise of a few cm around alert
        previous = level_of(value, WATER, previous)
        levels.append(previous)
    assert levels == ["watch", "alert", "alert", "alert", "alert", "alert", "alert", "watch"]


def test_levels_must_rise() -> None:
    with pytest.raises(ValueError, match="rise"):
        Thresholds(watch=2.0, alert=1.0)


def test_a_zone_is_its_worst_fresh_station() -> None:
    status = zone_status("hoa-cuong", "flood", [station("a", "watch", 1.2), station("b", "alert", 1.8),
                                                station("c", "normal", 0.4)])
    assert status.status == "alert" and [e.dev_eui for e in status.because] == ["b"]
    assert status.reason.startswith("alert: b water_level 1.8")


def test_silent_stations_make_a_zone_unknown_never_normal() -> None:
    status = zone_status("hoa-cuong", "flood", [station("a", None, None), station("b", None, None)])
    assert status.status == "unknown" and "none of its 2 station(s)" in status.reason
    # Some normal and some silent: still not "normal".
    mixed = zone_status("hoa-cuong", "flood", [station("a", "normal", 0.2), station("b", None, None)])
    assert mixed.status == "unknown" and [e.dev_eui for e in mixed.because] == ["b"]
    # A warning is a warning even when another station is silent.
    warned = zone_status("hoa-cuong", "flood", [station("a", "danger", 3.0), station("b", None, None)])
    assert warned.status == "danger" and "1 station(s) did not report" in warned.reason


def test_a_zone_without_stations_is_unknown() -> None:
    assert zone_status("hoa-vang", "air_quality", []) == ZoneStatus("hoa-vang", "air_quality", "unknown", (),
                                                                    "no stations")


def test_precedence_of_statuses() -> None:
    assert worst(["normal", "unknown"]) == "unknown"
    assert worst(["unknown", "watch"]) == "watch"
    assert worst(["alert", "danger", "normal"]) == "danger"
    assert worst([]) is None


def test_a_district_is_the_worst_of_its_wards() -> None:
    def ward(code: str, level: Level | None) -> ZoneStatus:
        return zone_status(code, "flood", [station(f"{code}-1", level, 1.0 if level else None, zone=code)])

    own = zone_status("hai-chau", "flood", [])
    wards = [ward("hoa-cuong-bac", "normal"), ward("thach-thang", "alert"), ward("phuoc-ninh", None)]
    district = district_status("hai-chau", "flood", own, wards)
    assert district.status == "alert" and district.reason == "alert in thach-thang"
    assert [e.dev_eui for e in district.because] == ["thach-thang-1"]
    # Normal wards with a silent one: unknown, not normal.
    quiet = district_status("hai-chau", "flood", own, [ward("hoa-cuong-bac", "normal"), ward("phuoc-ninh", None)])
    assert quiet.status == "unknown"
    # Wards without any station do not make their district unknown.
    covered = district_status("hai-chau", "flood", own, [ward("hoa-cuong-bac", "normal"),
                                                         zone_status("phuoc-ninh", "flood", [])])
    assert covered.status == "normal"
    # No station anywhere in the district.
    assert district_status("hai-chau", "flood", own, [zone_status("phuoc-ninh", "flood", [])]).status == "unknown"
