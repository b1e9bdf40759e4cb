"""The demo's approximate wards: valid zones, each inside its district, tiling it without overlapping, and every
flood station the demo shows standing in one of them."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

from device_simulators.sites import STATIONS
from ioc_cli.demo_hazards import DEMO_WARDS_RESOURCE, load_demo_wards
from ioc_core.zones import Zone, load_default_zones, zone_at

GRID = 120  # sample points per side of a district's bounding box


def _districts() -> dict[str, Zone]:
    return {z.code: z for z in load_default_zones()}


def test_the_file_says_the_wards_are_approximate_and_every_ward_has_a_packaged_district() -> None:
    text = resources.files("ioc_core.data").joinpath(DEMO_WARDS_RESOURCE).read_text(encoding="utf-8")
    assert "NOT official" in json.loads(text)["note"]
    wards = load_demo_wards()
    districts = _districts()
    assert all(w.level == "ward" and w.approximate and w.parent in districts for w in wards)
    per_district = Counter(w.parent for w in wards)
    # Hải Châu's 13 pre-2025 wards, Cẩm Lệ's 6 and Hòa Vang's 11 communes.
    assert per_district == {"hai-chau": 13, "cam-le": 6, "hoa-vang": 11}
    names = {w.code: w.name for w in wards}
    assert names["hai-chau-1"] == "Hải Châu I" and names["thach-thang"] == "Thạch Thang"
    assert len(names) == len(wards)  # one polygon each


def test_every_ward_lies_inside_its_district_and_the_wards_tile_it_without_overlapping() -> None:
    districts = _districts()
    wards = load_demo_wards()
    for code in {w.parent for w in wards}:
        district = districts[code]
        own = [w for w in wards if w.parent == code]
        west, south, east, north = district.bounds
        inside = covered = twice = spilled = 0
        for i in range(GRID):
            for j in range(GRID):
                lon = west + (east - west) * (i + 0.5) / GRID
                lat = south + (north - south) * (j + 0.5) / GRID
                in_wards = sum(w.contains(lon, lat) for w in own)
                if not district.contains(lon, lat):
                    spilled += in_wards  # only on the edge: the wards' corners are rounded to about a metre
                    continue
                inside += 1
                covered += in_wards >= 1
                twice += in_wards >= 2
        assert covered >= 0.99 * inside, f"{code}: wards cover {covered} of {inside} sample points"
        assert twice <= 0.005 * inside, f"{code}: {twice} sample points in two wards"
        assert spilled <= 0.001 * inside, f"{code}: {spilled} sample points in a ward but not in the district"
        for ward in own:  # every corner of a ward within about 10 m of its district
            for lon, lat in ward.polygon[0]:
                assert any(district.contains(lon + dx, lat + dy) for dx in (-1e-4, 0, 1e-4)
                           for dy in (-1e-4, 0, 1e-4)), (ward.code, lon, lat)


def test_river_stations_of_hai_chau_and_of_another_district_stand_in_wards_of_their_district() -> None:
    wards = load_demo_wards()
    districts = list(_districts().values())
    placed = {}
    for station in STATIONS["water_level"]:
        ward = zone_at(wards, station.lon, station.lat)
        district = zone_at(districts, station.lon, station.lat)
        assert district is not None
        if ward is not None:
            assert ward.parent == district.code, station.label
            placed[station.label] = ward.code
    assert placed["Hàn river, Dragon bridge"] == "hai-chau-2"
    assert placed["Cu Đê river, Hòa Bắc"] == "hoa-bac"
    assert placed["Cẩm Lệ river, Cẩm Lệ bridge"] == "hoa-tho-dong"
    # The demo's Hải Châu flood ward holds no street sensor that the storm has flooded already.
    streets = [s.label for s in STATIONS["flood_depth"] if (w := zone_at(wards, s.lon, s.lat)) and w.code in
               ("hai-chau-2", "hoa-bac")]
    assert streets == []
