"""The alarm rules without I/O: dedupe by source and subject, severity only rising, clearing with hysteresis in
time and (for hazards) in value, grouping into incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operations.alarms import (
    CLEAR_AFTER_S,
    ActiveAlarm,
    Clear,
    Condition,
    HazardReading,
    Observation,
    Open,
    Repeat,
    StartClearing,
    Step,
    as_severity,
    hazard_conditions,
    hazard_holds,
    higher,
    plan,
)
from operations.incidents import CITY, IncidentKey, ZoneInfo, incident_key, title
from operations.status import Thresholds

AT = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
WATER = Thresholds(watch=1.0, alert=1.5, danger=2.5)


def silent(eui: str = "00000000000000a1") -> Condition:
    return Condition("device_silent", eui, "minor", f"{eui} silent", zone="hc-ward-a", device_eui=eui)


def alarm(condition: Condition, *, id_: int = 1, clearing_since: datetime | None = None) -> ActiveAlarm:
    return ActiveAlarm(id_, condition.source, condition.subject, condition.severity, clearing_since)


def reading(value: float | None, thresholds: Thresholds = WATER) -> HazardReading:
    return HazardReading("flood", "water_level", "00000000000000a1", "hc-ward-a", value, thresholds, AT)


def test_a_new_condition_opens_an_alarm_and_a_repeat_updates_it() -> None:
    c = silent()
    assert plan([], Observation((c,)), AT) == [Open(c)]
    steps = plan([alarm(c)], Observation((c,)), AT)
    assert steps == [Repeat(alarm(c), c, "minor", raised=False)]


def test_one_condition_per_key_even_when_a_source_repeats_it() -> None:
    c = silent()
    assert plan([], Observation((c, c)), AT) == [Open(c)]


def test_severity_rises_at_once_and_never_falls_while_active() -> None:
    major = Condition("hazard", "a1:water_level", "major", "alert")
    critical = Condition("hazard", "a1:water_level", "critical", "danger")
    steps = plan([alarm(major)], Observation((critical,)), AT)
    assert steps == [Repeat(alarm(major), critical, "critical", raised=True)]
    steps = plan([alarm(critical)], Observation((major,)), AT)
    assert steps == [Repeat(alarm(critical), major, "critical", raised=False)]
    assert higher("minor", "major") == "major" and higher("critical", "info") == "critical"


def test_an_absent_condition_clears_only_after_the_hold() -> None:
    c = silent()
    # Gone: the hold begins.
    assert plan([alarm(c)], Observation(), AT) == [StartClearing(alarm(c))]
    clearing = alarm(c, clearing_since=AT)
    # Still gone, hold not over: nothing to do.
    assert plan([clearing], Observation(), AT + timedelta(seconds=CLEAR_AFTER_S - 1)) == []
    # Gone for the whole hold: cleared.
    assert plan([clearing], Observation(), AT + timedelta(seconds=CLEAR_AFTER_S)) == [Clear(clearing)]
    # A shorter hold given as data.
    assert plan([clearing], Observation(), AT + timedelta(seconds=10), clear_after_s=10) == [Clear(clearing)]


def test_the_condition_back_during_the_hold_cancels_clearing() -> None:
    c = silent()
    clearing = alarm(c, clearing_since=AT)
    steps = plan([clearing], Observation((c,)), AT + timedelta(seconds=60))
    assert steps == [Repeat(clearing, c, "minor", raised=False)]  # the store sets clearing_since back to NULL


def test_an_undetermined_condition_neither_holds_nor_clears() -> None:
    c = Condition("hazard", "a1:water_level", "major", "alert")
    seen = Observation((), frozenset({c.key}))
    assert plan([alarm(c)], seen, AT) == []
    assert plan([alarm(c, clearing_since=AT)], seen, AT + timedelta(hours=1)) == []


def test_alarms_of_other_keys_are_independent() -> None:
    a, b = silent("00000000000000a1"), silent("00000000000000a2")
    steps: list[Step] = plan([alarm(a, id_=1)], Observation((b,)), AT)
    assert steps == [Open(b), StartClearing(alarm(a, id_=1))]


@pytest.mark.parametrize(("value", "active", "holds"), [
    (1.5, False, False),    # at the level is not above it
    (1.51, False, True),
    (1.45, True, True),     # active: holds until below 1.5 - 5 % = 1.425
    (1.43, True, True),
    (1.42, True, False),
    (1.45, False, False),   # the same value does not raise a new one
])
def test_hazard_alarms_hold_with_a_margin_below_the_level(value: float, active: bool, holds: bool) -> None:
    assert hazard_holds(value, 1.5, active=active) is holds


def test_a_level_wavering_at_its_threshold_raises_one_alarm_and_does_not_flap() -> None:
    active: list[ActiveAlarm] = []
    opened = cleared = 0
    at = AT
    for i, value in enumerate([1.4, 1.52, 1.48, 1.53, 1.47, 1.51, 1.46, 1.49] * 3):
        at = AT + timedelta(minutes=i)
        seen = hazard_conditions([reading(value)], [a.subject for a in active])
        for step in plan(active, seen, at):
            if isinstance(step, Open):
                opened += 1
                active = [ActiveAlarm(1, step.condition.source, step.condition.subject, step.condition.severity,
                                      None)]
            elif isinstance(step, Clear):
                cleared += 1
                active = []
            elif isinstance(step, StartClearing):
                active = [ActiveAlarm(1, step.alarm.source, step.alarm.subject, step.alarm.severity, at)]
            elif isinstance(step, Repeat):
                active = [ActiveAlarm(1, step.alarm.source, step.alarm.subject, step.severity, None)]
    assert (opened, cleared) == (1, 0)
    # The water falls well below the level and stays there: the alarm clears once, after the hold.
    for minute in range(1, 8):
        seen = hazard_conditions([reading(1.0)], [a.subject for a in active])
        for step in plan(active, seen, at + timedelta(minutes=minute)):
            if isinstance(step, StartClearing):
                active = [ActiveAlarm(1, step.alarm.source, step.alarm.subject, step.alarm.severity,
                                      at + timedelta(minutes=minute))]
            elif isinstance(step, Clear):
                cleared += 1
                active = []
    assert (opened, cleared) == (1, 1)


def test_hazard_severity_follows_the_levels() -> None:
    assert hazard_conditions([reading(1.2)], []).conditions == ()  # watch raises no alarm
    (alert,) = hazard_conditions([reading(1.8)], []).conditions
    assert (alert.severity, alert.subject, alert.zone, alert.hazard) == (
        "major", "00000000000000a1:water_level", "hc-ward-a", "flood")
    assert alert.details["level"] == "alert" and alert.details["value"] == 1.8
    (danger,) = hazard_conditions([reading(2.6)], []).conditions
    assert danger.severity == "critical" and danger.details["level"] == "danger"
    # Only a danger level: it is the level that raises the alarm.
    (only,) = hazard_conditions([reading(60.0, Thresholds(danger=50.0))], []).conditions
    assert only.severity == "critical"


def test_a_station_without_a_fresh_value_is_undetermined() -> None:
    seen = hazard_conditions([reading(None)], [])
    assert seen.conditions == () and seen.undetermined == {("hazard", "00000000000000a1:water_level")}
    # A station with no alert or danger level at all raises nothing and holds nothing.
    assert hazard_conditions([reading(None, Thresholds(watch=1.0))], []) == Observation()


def test_severities_parse_strictly() -> None:
    assert as_severity("critical") == "critical"
    with pytest.raises(ValueError, match="unknown severity"):
        as_severity("catastrophic")


ZONES = {
    "hai-chau": ZoneInfo("hai-chau", "Hải Châu", "district", None),
    "hc-ward-a": ZoneInfo("hc-ward-a", "Phường A", "ward", "hai-chau"),
    "hc-ward-b": ZoneInfo("hc-ward-b", "Phường B", "ward", "hai-chau"),
    "da-nang": ZoneInfo("da-nang", "Đà Nẵng", "city", None),
}


@pytest.mark.parametrize(("source", "hazard", "zone", "key"), [
    ("hazard", "flood", "hc-ward-a", IncidentKey("hai-chau", "flood", "flood")),
    ("hazard", "flood", "hc-ward-b", IncidentKey("hai-chau", "flood", "flood")),   # one incident per district
    ("hazard", "heavy_rain", "hc-ward-a", IncidentKey("hai-chau", "heavy_rain", "heavy_rain")),
    ("hazard", "flood", "hai-chau", IncidentKey("hai-chau", "flood", "flood")),     # a district's own station
    ("device_silent", None, "hc-ward-a", IncidentKey("hai-chau", "device", "device")),
    ("device_flatline", None, "hc-ward-b", IncidentKey("hai-chau", "device", "device")),
    ("device_out_of_range", None, None, IncidentKey(CITY, "device", "device")),      # a device outside every zone
    ("gateway_offline", None, "hc-ward-a", IncidentKey("hai-chau", "network", "network")),
    ("gateway_offline", None, "da-nang", IncidentKey(CITY, "network", "network")),
    ("dead_letters", None, None, IncidentKey(CITY, "pipeline", "pipeline")),
    ("ingest_stalled", None, "hc-ward-a", IncidentKey(CITY, "pipeline", "pipeline")),
])
def test_alarms_group_into_incidents_by_district_and_hazard(source: str, hazard: str | None, zone: str | None,
                                                            key: IncidentKey) -> None:
    assert incident_key(source, hazard, zone, ZONES) == key
    assert key.owner == key.zone


def test_titles_are_vietnamese_then_english() -> None:
    assert title(IncidentKey("hai-chau", "flood", "flood"), "Hải Châu", ("Ngập lụt", "Flood")) == \
        "Ngập lụt – Hải Châu / Flood – Hải Châu"
