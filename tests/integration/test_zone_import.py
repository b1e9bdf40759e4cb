"""Versioned zone import against a real PostgreSQL: new versions, kept history, re-zoned devices, audit."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from ingest.registry import seed_zones, zone_id_at
from ioc_api.queries.audit import list_audit
from ioc_api.queries.zones import DeviceRezone, import_zones, list_zones
from ioc_cli.app import build_app, main
from ioc_core.errors import RefusedError
from ioc_core.zones import Zone, load_default_zones, parse_geojson, zone_at
from tests.unit.test_zones import DISTRICTS

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

# (lon, lat): inside the ward drawn below, in Hải Châu outside that ward, and in Hòa Vang.
IN_WARD = (108.215, 16.050)
IN_HAI_CHAU = (108.225, 16.035)
IN_HOA_VANG = (107.950, 16.050)
WARD_RING = [[108.21, 16.045], [108.22, 16.045], [108.22, 16.055], [108.21, 16.055], [108.21, 16.045]]


def _default_document() -> dict[str, Any]:
    text = resources.files("ioc_core.data").joinpath("danang_districts.geojson").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _feature(document: dict[str, Any], code: str) -> dict[str, Any]:
    features: list[dict[str, Any]] = document["features"]
    (feature,) = [f for f in features if f["properties"]["code"] == code]
    return feature


def _with_extra_vertex(code: str) -> list[Zone]:
    """The default districts, ``code`` drawn with one more (collinear) vertex: same area, new boundary."""
    document = _default_document()
    ring = _feature(document, code)["geometry"]["coordinates"][0]
    (x1, y1), (x2, y2) = ring[0], ring[1]
    ring.insert(1, [(x1 + x2) / 2, (y1 + y2) / 2])
    return parse_geojson(json.dumps(document))


def _ward_file(parent: str = "hai-chau") -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [{
            "type": "Feature",
            "properties": {"code": "thach-thang", "name": "Thạch Thang", "level": "ward", "parent": parent},
            "geometry": {"type": "Polygon", "coordinates": [WARD_RING]},
        }],
    }


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def _count(conn: psycopg.Connection[Any], sql: str, *params: Any) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def _device(conn: psycopg.Connection[Any], eui: str, point: tuple[float, float] | None,
            zone_id: int | None = None) -> int:
    lon, lat = point if point else (None, None)
    if zone_id is None and point is not None:
        zone_id = zone_id_at(conn, *point)
    row = conn.execute(
        "INSERT INTO devices (dev_eui, name, longitude, latitude, zone_id) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (eui, f"sensor {eui}", lon, lat, zone_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _zone_of(conn: psycopg.Connection[Any], eui: str) -> tuple[str, int] | None:
    row = conn.execute(
        "SELECT z.code, z.version FROM devices d LEFT JOIN zones z ON z.id = d.zone_id WHERE d.dev_eui = %s", (eui,)
    ).fetchone()
    assert row is not None
    return None if row[0] is None else (row[0], row[1])


def _current_id(conn: psycopg.Connection[Any], code: str) -> int:
    return _count(conn, "SELECT id FROM zones WHERE code = %s AND valid_to IS NULL", code)


def test_the_points_used_here_lie_where_the_tests_say() -> None:
    defaults = load_default_zones()
    assert [getattr(zone_at(defaults, *p), "code", None) for p in (IN_WARD, IN_HAI_CHAU, IN_HOA_VANG)] == [
        "hai-chau", "hai-chau", "hoa-vang"]
    ward = parse_geojson(json.dumps(_ward_file()))
    assert zone_at(ward, *IN_WARD) is not None and zone_at(ward, *IN_HAI_CHAU) is None


def test_importing_the_defaults_creates_them_and_a_second_import_changes_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    first = import_zones(conn, load_default_zones(), actor="alice", approximate=False)
    assert sorted(first.created) == sorted(DISTRICTS)
    assert (first.changed, first.unchanged, first.retired, first.rezoned) == ((), (), (), ())
    # The packaged file says approximate, so it stays approximate even when imported as official.
    assert {(z.code, z.name, z.version, z.approximate, z.valid_to) for z in list_zones(conn)} == {
        (code, name, 1, True, None) for code, name in DISTRICTS.items()}
    assert _count(conn, "SELECT count(*) FROM zone_rings") == 7
    audits = list_audit(conn, entity="zone")
    assert len(audits) == 7 and {a[2] for a in audits} == {"alice"} and {a[3] for a in audits} == {"create"}
    hai_chau = next(a for a in audits if a[5] == "hai-chau")[6]
    assert hai_chau["name"] == "Hải Châu" and hai_chau["version"] == [None, 1]
    assert hai_chau["boundary"].startswith("sha256:") and "coordinates" not in json.dumps(hai_chau)

    second = import_zones(conn, load_default_zones(), actor="bob", approximate=False)
    assert sorted(second.unchanged) == sorted(DISTRICTS)
    assert (second.created, second.changed, second.retired, second.rezoned) == ((), (), (), ())
    assert _count(conn, "SELECT count(*) FROM zones") == 7
    assert _count(conn, "SELECT count(*) FROM audit_log") == 7


def test_seeded_zones_and_imported_ones_agree(conn: psycopg.Connection[Any]) -> None:
    assert seed_zones(conn, load_default_zones()) == 7
    report = import_zones(conn, load_default_zones(), actor="cli", approximate=True)
    assert sorted(report.unchanged) == sorted(DISTRICTS) and not report.created and not report.changed
    # Seeding again after an import that retired a district does not bring it back.
    remaining = [z for z in load_default_zones() if z.code != "hoa-vang"]
    assert import_zones(conn, remaining, actor="cli", approximate=True, retire_missing=True).retired == (
        "hoa-vang",)
    assert seed_zones(conn, load_default_zones()) == 0
    assert "hoa-vang" not in {z.code for z in list_zones(conn)}


def test_a_changed_boundary_is_a_new_version_and_readings_keep_the_old_one(conn: psycopg.Connection[Any]) -> None:
    import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    v1 = _current_id(conn, "hai-chau")
    device = _device(conn, "00000000000000a1", IN_HAI_CHAU)
    _device(conn, "00000000000000a2", None, zone_id=v1)  # no coordinates: follows its zone's code
    _device(conn, "00000000000000a3", IN_HOA_VANG)
    assert _zone_of(conn, "00000000000000a1") == ("hai-chau", 1)
    conn.execute("INSERT INTO measurements (time, device_id, zone_id, metric_id, value) VALUES (now(), %s, %s, 1, 2.5)",
                 (device, v1))
    audits_before = _count(conn, "SELECT count(*) FROM audit_log")

    report = import_zones(conn, _with_extra_vertex("hai-chau"), actor="alice", approximate=False)

    assert report.changed == ("hai-chau",) and len(report.unchanged) == 6 and not report.created
    assert report.changes["hai-chau"]["version"] == [1, 2]
    assert set(report.changes["hai-chau"]) == {"version", "boundary"}
    assert report.rezoned == (
        DeviceRezone("00000000000000a1", "hai-chau", 1, "hai-chau", 2),
        DeviceRezone("00000000000000a2", "hai-chau", 1, "hai-chau", 2),
    )
    v2 = _current_id(conn, "hai-chau")
    assert v2 != v1
    old = conn.execute("SELECT version, valid_to IS NOT NULL FROM zones WHERE id = %s", (v1,)).fetchone()
    assert old == (1, True)
    assert _count(conn, "SELECT count(*) FROM zone_rings WHERE zone_id = %s", v1) == 1  # history is kept
    assert _count(conn, "SELECT zone_id FROM measurements WHERE device_id = %s", device) == v1
    assert _zone_of(conn, "00000000000000a1") == ("hai-chau", 2)
    assert _zone_of(conn, "00000000000000a2") == ("hai-chau", 2)
    assert _zone_of(conn, "00000000000000a3") == ("hoa-vang", 1)
    assert zone_id_at(conn, *IN_HAI_CHAU) == v2

    new_audits = list_audit(conn, limit=10)[: _count(conn, "SELECT count(*) FROM audit_log") - audits_before]
    assert {(a[2], a[3], a[4], a[5]) for a in new_audits} == {
        ("alice", "update", "zone", "hai-chau"),
        ("alice", "rezone", "device", "00000000000000a1"),
        ("alice", "rezone", "device", "00000000000000a2"),
    }
    rezone = next(a for a in new_audits if a[5] == "00000000000000a1")[6]
    assert rezone == {"zone": ["hai-chau", "hai-chau"], "zone_version": [1, 2]}
    history = [z for z in list_zones(conn, include_history=True) if z.code == "hai-chau"]
    assert [(z.version, z.valid_to is None, z.devices) for z in history] == [(1, False, 0), (2, True, 2)]
    assert history[0].valid_to == history[1].valid_from


def test_a_renamed_zone_records_old_and_new_names(conn: psycopg.Connection[Any]) -> None:
    import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    document = _default_document()
    _feature(document, "hoa-vang")["properties"]["name"] = "Huyện Hòa Vang"
    report = import_zones(conn, parse_geojson(json.dumps(document)), actor="cli", approximate=False)
    assert report.changed == ("hoa-vang",)
    assert report.changes["hoa-vang"] == {"version": [1, 2], "name": ["Hòa Vang", "Huyện Hòa Vang"]}
    (entry,) = list_audit(conn, entity="zone", entity_id="hoa-vang", limit=1)
    assert entry[3] == "update" and entry[6] == {"version": [1, 2], "name": ["Hòa Vang", "Huyện Hòa Vang"]}
    names = {z.code: z.name for z in list_zones(conn)}
    assert names == {**DISTRICTS, "hoa-vang": "Huyện Hòa Vang"}


def test_devices_prefer_a_ward_over_its_district(conn: psycopg.Connection[Any]) -> None:
    import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    _device(conn, "00000000000000b1", IN_WARD)
    _device(conn, "00000000000000b2", IN_HAI_CHAU)

    report = import_zones(conn, parse_geojson(json.dumps(_ward_file())), actor="cli", approximate=False)

    # A ward file on its own: the districts stay, the ward's parent is found among them.
    assert report.created == ("thach-thang",) and not report.retired
    assert report.rezoned == (DeviceRezone("00000000000000b1", "hai-chau", 1, "thach-thang", 1),)
    assert _zone_of(conn, "00000000000000b1") == ("thach-thang", 1)
    assert _zone_of(conn, "00000000000000b2") == ("hai-chau", 1)
    assert zone_id_at(conn, *IN_WARD) == _current_id(conn, "thach-thang")
    (ward,) = [z for z in list_zones(conn) if z.level == "ward"]
    assert (ward.name, ward.parent_code, ward.devices, ward.approximate) == ("Thạch Thang", "hai-chau", 1, False)
    assert [z.level for z in list_zones(conn)][-1] == "ward"  # districts first


def test_a_ward_needs_a_stored_or_imported_district(conn: psycopg.Connection[Any]) -> None:
    import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    with pytest.raises(RefusedError, match="parent 'nowhere' is neither in the file nor stored"):
        import_zones(conn, parse_geojson(json.dumps(_ward_file("nowhere"))), actor="cli", approximate=False)
    with pytest.raises(RefusedError, match="it would be retired"):
        import_zones(conn, parse_geojson(json.dumps(_ward_file())), actor="cli", approximate=False,
                     retire_missing=True)
    assert _count(conn, "SELECT count(*) FROM zones") == 7
    assert _count(conn, "SELECT count(*) FROM zones WHERE valid_to IS NOT NULL") == 0
    # Turning the ward's district into a ward would orphan the stored ward.
    import_zones(conn, parse_geojson(json.dumps(_ward_file())), actor="cli", approximate=False)
    document = _default_document()
    _feature(document, "hai-chau")["properties"].update(level="ward", parent="thanh-khe")
    with pytest.raises(RefusedError, match="parent 'hai-chau' is a ward, not a district"):
        import_zones(conn, parse_geojson(json.dumps(document)), actor="cli", approximate=False)


def test_retire_missing_closes_absent_zones(conn: psycopg.Connection[Any]) -> None:
    import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    _device(conn, "00000000000000c1", IN_HOA_VANG)
    remaining = [z for z in load_default_zones() if z.code != "hoa-vang"]

    kept = import_zones(conn, remaining, actor="cli", approximate=False)
    assert not kept.retired and "hoa-vang" in {z.code for z in list_zones(conn)}

    report = import_zones(conn, remaining, actor="carol", approximate=False, retire_missing=True)
    assert report.retired == ("hoa-vang",) and len(report.unchanged) == 6
    assert report.rezoned == (DeviceRezone("00000000000000c1", "hoa-vang", 1, None, None),)
    assert "hoa-vang" not in {z.code for z in list_zones(conn)}
    assert _zone_of(conn, "00000000000000c1") is None
    assert zone_id_at(conn, *IN_HOA_VANG) is None
    (entry,) = list_audit(conn, entity="zone", entity_id="hoa-vang", limit=1)
    assert entry[2:4] == ("carol", "retire") and entry[6]["version"] == 1

    back = import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    assert back.created == ("hoa-vang",)
    versions = [z.version for z in list_zones(conn, include_history=True) if z.code == "hoa-vang"]
    assert versions == [1, 2]
    assert _zone_of(conn, "00000000000000c1") == ("hoa-vang", 2)


def test_dry_run_reports_and_writes_nothing(conn: psycopg.Connection[Any]) -> None:
    dry = import_zones(conn, load_default_zones(), actor="cli", approximate=False, dry_run=True)
    assert dry.dry_run and sorted(dry.created) == sorted(DISTRICTS)
    assert _count(conn, "SELECT count(*) FROM zones") == 0
    assert _count(conn, "SELECT count(*) FROM audit_log") == 0

    import_zones(conn, load_default_zones(), actor="cli", approximate=False)
    _device(conn, "00000000000000d1", IN_HAI_CHAU)
    before = conn.execute("SELECT id, valid_to FROM zones ORDER BY id").fetchall()
    audits = _count(conn, "SELECT count(*) FROM audit_log")
    report = import_zones(conn, _with_extra_vertex("hai-chau"), actor="cli", approximate=False, dry_run=True)
    assert report.changed == ("hai-chau",) and len(report.rezoned) == 1
    assert conn.execute("SELECT id, valid_to FROM zones ORDER BY id").fetchall() == before
    assert _count(conn, "SELECT count(*) FROM audit_log") == audits
    assert _zone_of(conn, "00000000000000d1") == ("hai-chau", 1)


def test_bad_input_is_refused_before_anything_is_written(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(RefusedError, match="no zones"):
        import_zones(conn, [], actor="cli", approximate=False, retire_missing=True)
    square = (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)),)
    with pytest.raises(RefusedError, match="parts disagree"):
        import_zones(conn, [Zone("x", "X", "district", square), Zone("x", "Y", "district", square)],
                     actor="cli", approximate=False)
    with pytest.raises(ValueError, match=r"feature #0 \(Bad\): code must be"):
        parse_geojson(json.dumps({"type": "FeatureCollection", "features": [{
            "type": "Feature", "properties": {"code": "Bad", "name": "B"},
            "geometry": {"type": "Polygon", "coordinates": [WARD_RING]}}]}))
    assert _count(conn, "SELECT count(*) FROM zones") == 0


def test_seed_zones_stores_the_parent_code(conn: psycopg.Connection[Any]) -> None:
    seed_zones(conn, load_default_zones())
    assert seed_zones(conn, parse_geojson(json.dumps(_ward_file()))) == 1
    row = conn.execute("SELECT level, parent_code, version FROM zones WHERE code = 'thach-thang'").fetchone()
    assert row == ("ward", "hai-chau", 1)


# --- the `ioc zones` commands ---------------------------------------------------------------------------------


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")  # wide tables keep names and codes on one line
    return db_url


def _flat(output: str) -> str:
    return " ".join(output.translate(str.maketrans("", "", "│┃╭╮╰╯─━┏┓┗┛┡┩└┘┌┐")).split())


def test_cli_help_explains_the_options() -> None:
    result = CliRunner().invoke(build_app(), ["zones", "import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--official", "--approximate", "--retire-missing", "--dry-run", "parent"):
        assert option in result.output


def test_cli_import_and_list(cli_env: str, tmp_path: Path) -> None:
    app = build_app()
    runner = CliRunner()
    district_file = tmp_path / "districts.geojson"
    district_file.write_text(json.dumps(_default_document(), ensure_ascii=False), encoding="utf-8")

    dry = runner.invoke(app, ["zones", "import", str(district_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "7 created" in dry.output and "dry run" in dry.output
    with psycopg.connect(cli_env) as conn:
        assert _count(conn, "SELECT count(*) FROM zones") == 0

    first = runner.invoke(app, ["zones", "import", str(district_file)])
    assert first.exit_code == 0, first.output
    assert "7 created, 0 changed, 0 unchanged, 0 retired" in first.output
    again = runner.invoke(app, ["zones", "import", str(district_file)])
    assert "0 created, 0 changed, 7 unchanged" in again.output

    ward_file = tmp_path / "wards.geojson"
    ward_file.write_text(json.dumps(_ward_file()), encoding="utf-8")
    ward = runner.invoke(app, ["zones", "import", str(ward_file), "--approximate"])
    assert ward.exit_code == 0, ward.output
    assert "thach-thang" in ward.output and "1 created" in ward.output

    listed = runner.invoke(app, ["zones", "list"])
    assert listed.exit_code == 0, listed.output
    text = _flat(listed.output)
    assert all(name in text for name in DISTRICTS.values())
    assert "thach-thang Thạch Thang ward hai-chau 1 yes" in text
    with psycopg.connect(cli_env) as conn:
        actors = {a[2] for a in list_audit(conn)}
        assert actors == {"cli"} and _count(conn, "SELECT count(*) FROM audit_log") == 8

    document = _default_document()
    document["features"] = [f for f in document["features"] if f["properties"]["code"] != "hoa-vang"]
    district_file.write_text(json.dumps(document), encoding="utf-8")
    retired = runner.invoke(app, ["zones", "import", str(district_file), "--retire-missing"])
    assert retired.exit_code == 0, retired.output
    # The ward is not in this file either, so it goes too.
    assert "2 retired" in retired.output
    history = _flat(runner.invoke(app, ["zones", "list", "--history"]).output)
    assert "hoa-vang Hòa Vang district 1 yes" in history and "Hòa Vang" not in _flat(
        runner.invoke(app, ["zones", "list"]).output)


def test_cli_bad_file_exits_2_with_the_parse_message(
    cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"code": "x", "name": "X", "level": "province"},
        "geometry": {"type": "Polygon", "coordinates": [WARD_RING]}}]}), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["ioc", "zones", "import", str(bad)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    message = _flat(captured.err)
    assert "error:" in message and "feature #0 (x): properties.level must be one of" in message
    assert "Traceback" not in captured.err + captured.out

    orphan = tmp_path / "orphan.geojson"
    orphan.write_text(json.dumps(_ward_file("nowhere")), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["ioc", "zones", "import", str(orphan)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "parent 'nowhere' is neither in the file nor stored" in _flat(capsys.readouterr().err)
    with psycopg.connect(cli_env) as conn:
        assert _count(conn, "SELECT count(*) FROM zones") == 0
