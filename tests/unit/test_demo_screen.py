"""The demo's district table says in words how many stations are above their levels, and shows the newest level;
the hazard status lines say each status in words."""

from __future__ import annotations

from ioc_cli.demo_screen import STATUS_WORDS, _Water
from operations.status import STATUSES


def test_a_district_counts_its_stations_above_alert_and_danger_and_shows_the_highest_newest_level() -> None:
    rivers = _Water()
    assert rivers.level() == "-" and rivers.warnings() == "-"  # no station in the district
    rivers.add(newest=2.10, value=2.05, alert=2.6, danger=3.0)
    assert rivers.level() == "2.10" and rivers.warnings() == "[green]normal[/]"
    rivers.add(newest=2.72, value=2.70, alert=2.6, danger=3.0)
    rivers.add(newest=5.31, value=5.25, alert=4.5, danger=5.2)
    # The rule's value (the lower of the two newest readings) decides; the newest is what the level column shows.
    rivers.add(newest=3.45, value=3.38, alert=3.4, danger=4.2)
    assert rivers.level() == "5.31"
    assert rivers.warnings() == "[bold red]1 danger[/], [yellow]1 alert[/]"
    streets = _Water()
    streets.add(newest=0.31, value=0.30, alert=0.2, danger=None)  # a station with only an alert level
    assert streets.warnings() == "[yellow]1 alert[/]"


def test_every_hazard_status_is_said_in_vietnamese_and_in_english_not_by_colour_alone() -> None:
    assert set(STATUS_WORDS) == set(STATUSES)
    words = {"normal": "bình thường", "watch": "theo dõi", "alert": "cảnh báo", "danger": "nguy hiểm",
             "unknown": "không rõ"}
    for status, shown in STATUS_WORDS.items():
        plain = shown.split("]", 1)[1].rsplit("[", 1)[0]  # without the colour markup
        assert plain.lower() == f"{words[status]} / {status}"
