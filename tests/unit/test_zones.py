"""The packaged Da Nang districts and the zone look-up."""

from __future__ import annotations

import json
import random

import pytest

from ioc_core.zones import Zone, city_bounds, load_default_zones, parse_geojson, point_in_polygon, zone_at

DISTRICTS = {
    "hai-chau": "Hải Châu",
    "thanh-khe": "Thanh Khê",
    "son-tra": "Sơn Trà",
    "ngu-hanh-son": "Ngũ Hành Sơn",
    "lien-chieu": "Liên Chiểu",
    "cam-le": "Cẩm Lệ",
    "hoa-vang": "Hòa Vang",
}


def test_default_zones_are_the_seven_districts() -> None:
    zones = load_default_zones()
    assert {z.code: z.name for z in zones} == DISTRICTS
    assert {z.level for z in zones} == {"district"}


def test_default_file_says_it_is_approximate() -> None:
    from importlib import resources

    document = json.loads(
        resources.files("ioc_core.data").joinpath("danang_districts.geojson").read_text(encoding="utf-8")
    )
    assert "not official" in document["note"].lower()
    assert all(f["properties"]["approximate"] is True for f in document["features"])


@pytest.mark.parametrize(
    ("lat", "lon", "code"),
    [
        (16.050, 108.215, "hai-chau"),
        (16.065, 108.190, "thanh-khe"),
        (16.100, 108.245, "son-tra"),
        (16.140, 108.290, "son-tra"),  # the peninsula
        (16.000, 108.250, "ngu-hanh-son"),
        (16.080, 108.130, "lien-chieu"),
        (16.010, 108.190, "cam-le"),
        (16.050, 107.950, "hoa-vang"),
        (15.960, 108.100, "hoa-vang"),
    ],
)
def test_known_places_fall_in_their_district(lat: float, lon: float, code: str) -> None:
    zone = zone_at(load_default_zones(), lon, lat)
    assert zone is not None and zone.code == code


@pytest.mark.parametrize(("lat", "lon"), [(16.12, 108.20), (16.05, 108.30), (21.03, 105.85)])
def test_sea_and_other_cities_are_in_no_zone(lat: float, lon: float) -> None:
    assert zone_at(load_default_zones(), lon, lat) is None


def test_districts_do_not_overlap() -> None:
    zones = load_default_zones()
    west, south, east, north = city_bounds(zones)
    rng = random.Random(7)
    inside = 0
    for _ in range(20_000):
        lon, lat = rng.uniform(west, east), rng.uniform(south, north)
        hits = [z.code for z in zones if z.contains(lon, lat)]
        assert len(hits) <= 1, (lon, lat, hits)
        inside += bool(hits)
    assert inside > 10_000


def test_city_bounds_cover_da_nang() -> None:
    west, south, east, north = city_bounds(load_default_zones())
    assert 107.8 <= west < 107.9 and 108.3 < east < 108.4
    assert 15.9 < south < 15.96 and 16.15 < north < 16.25
    with pytest.raises(ValueError, match="no zones"):
        city_bounds([])


def test_holes_are_outside() -> None:
    outer = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0))
    hole = ((4.0, 4.0), (6.0, 4.0), (6.0, 6.0), (4.0, 6.0), (4.0, 4.0))
    assert point_in_polygon((outer, hole), 2.0, 2.0)
    assert not point_in_polygon((outer, hole), 5.0, 5.0)


def _collection(*features: object) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def _feature(code: object = "x", name: object = "X", geometry: object = None) -> dict[str, object]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name},
        "geometry": geometry
        if geometry is not None
        else {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    }


def test_parse_multipolygon_gives_one_zone_per_part() -> None:
    square = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]
    moved = [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]
    zones = parse_geojson(_collection(_feature(geometry={"type": "MultiPolygon", "coordinates": [square, moved]})))
    assert [z.code for z in zones] == ["x", "x"]
    assert zones[0] == Zone("x", "X", "district", (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)),))
    assert zone_at(zones, 5.5, 5.5) is zones[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        (json.dumps({"type": "Feature"}), "FeatureCollection"),
        (_collection(), "no features"),
        (_collection(_feature(code="")), "no properties.code"),
        (_collection(_feature(), _feature()), "used by two features"),
        (_collection(_feature(name=None)), "no properties.name"),
        (_collection(_feature(geometry={"type": "Point", "coordinates": [0, 0]})), "Polygon or MultiPolygon"),
        (_collection(_feature(geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]})),
         "at least 4 positions"),
        (_collection(_feature(geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]})),
         "not closed"),
        (_collection(_feature(geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [1, 1], [0, 0]]]})),
         "bad position"),
        (_collection(_feature(geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 95], [1, 1], [0, 0]]]})),
         "in degrees"),
    ],
)
def test_parse_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_geojson(text)


def _props_feature(**props: object) -> dict[str, object]:
    feature = _feature()
    feature["properties"] = props
    return feature


def test_parse_keeps_parent_approximate_and_vietnamese_names() -> None:
    zones = parse_geojson(_collection(
        _props_feature(code="da-nang", name="Thành phố Đà Nẵng", level="city"),
        _props_feature(code="hai-chau", name="Hải Châu", parent="da-nang", approximate=True),
        _props_feature(code="thach-thang", name="Thạch Thang", level="ward", parent="hai-chau"),
    ))
    assert [(z.code, z.name, z.level, z.parent, z.approximate) for z in zones] == [
        ("da-nang", "Thành phố Đà Nẵng", "city", None, False),
        ("hai-chau", "Hải Châu", "district", "da-nang", True),
        ("thach-thang", "Thạch Thang", "ward", "hai-chau", False),
    ]


def test_a_ward_may_name_a_district_that_is_not_in_the_file() -> None:
    # The importer checks it against the stored zones, so one district's wards can come in a file of their own.
    (ward,) = parse_geojson(_collection(_props_feature(code="an-hai-bac", name="An Hải Bắc", level="ward",
                                                       parent="son-tra")))
    assert ward.parent == "son-tra"


def test_the_packaged_districts_carry_their_approximate_flag() -> None:
    assert all(z.approximate and z.parent is None for z in load_default_zones())


def test_zone_keeps_its_positional_form() -> None:
    square = (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)),)
    zone = Zone("x", "X", "district", square)
    assert (zone.parent, zone.approximate) == (None, False)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([_props_feature(code="Hai-Chau", name="Hải Châu")], r"feature #0 \(Hai-Chau\): code must be 1 to 64"),
        ([_props_feature(code="hai chau", name="Hải Châu")], "code must be"),
        ([_props_feature(code="x" * 65, name="X")], "code must be"),
        ([_props_feature(code="x", name="   ")], r"feature #0 \(x\) has no properties.name"),
        ([_props_feature(code="x", name="X", level="province")], r"level must be one of city, district, ward"),
        ([_props_feature(code="x", name="X", level=3)], "level must be one of"),
        ([_props_feature(code="x", name="X", level="ward")], r"feature #0 \(x\): a ward needs properties.parent"),
        ([_props_feature(code="x", name="X", parent="Bad Code")], "parent must be a zone code"),
        ([_props_feature(code="x", name="X", level="city", parent="y")], "a city has no parent"),
        ([_props_feature(code="x", name="X", parent="x")], "cannot be its own parent"),
        ([_props_feature(code="x", name="X", approximate="yes")], "approximate must be true or false"),
        (
            [_props_feature(code="d", name="D"), _props_feature(code="w", name="W", level="ward", parent="v"),
             _props_feature(code="v", name="V", level="ward", parent="d")],
            r"feature #1 \(w\): parent 'v' is a ward, but a ward's parent must be a district",
        ),
        (
            [_props_feature(code="c", name="C", level="city"),
             _props_feature(code="w", name="W", level="ward", parent="c")],
            "parent 'c' is a city",
        ),
    ],
)
def test_parse_rejects_bad_properties(features: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_geojson(_collection(*features))
