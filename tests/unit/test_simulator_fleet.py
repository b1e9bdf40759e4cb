"""The simulated Da Nang fleet: deterministic, in the districts, with ChirpStack identities."""

from __future__ import annotations

import re
import uuid

import pytest

from device_simulators.catalogue import APPLICATIONS, KINDS, MODELS
from device_simulators.fleet import TENANT_ID, build_fleet
from device_simulators.radio import SPREADING_FACTORS, adr_data_rate, links_for
from device_simulators.sites import AREAS, ROADS, STATIONS
from ioc_core.zones import load_default_zones, zone_at


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    assert build_fleet(150, seed=4) == build_fleet(150, seed=4)
    other = build_fleet(150, seed=5)
    assert [d.dev_eui for d in build_fleet(150, seed=4).devices] != [d.dev_eui for d in other.devices]


def test_every_device_is_inside_its_zone() -> None:
    zones = load_default_zones()
    fleet = build_fleet(600, seed=2)
    for device in fleet.devices:
        zone = zone_at(zones, device.lon, device.lat)
        assert zone is not None, device
        assert zone.code == device.zone_code == device.tags["zone"]
        assert zone.name == device.zone_name
    # A city fleet reaches every district.
    assert {d.zone_code for d in fleet.devices} == {z.code for z in zones}


def test_all_named_sites_lie_in_a_zone() -> None:
    zones = load_default_zones()
    for stations in STATIONS.values():
        for station in stations:
            assert zone_at(zones, station.lon, station.lat) is not None, station.label
    for areas in AREAS.values():
        for area in areas:
            assert zone_at(zones, area.lon, area.lat) is not None, area.label
    for roads in ROADS.values():
        for road in roads:
            for lon, lat in road.points:
                assert zone_at(zones, lon, lat) is not None, road.label


def test_mix_of_kinds() -> None:
    fleet = build_fleet(200, seed=1)
    counts = fleet.count_by_kind()
    assert set(counts) == set(KINDS)
    assert sum(counts.values()) == 200
    assert counts["parking"] > counts["water_level"]
    assert build_fleet(0).devices == ()
    assert len(build_fleet(3).devices) == 3
    with pytest.raises(ValueError):
        build_fleet(-1)


def test_water_level_stations_are_on_the_rivers_and_coast() -> None:
    sites = {d.site for d in build_fleet(200, seed=1).devices if d.kind == "water_level"}
    assert any("Hàn river" in s for s in sites)
    assert any("Cu Đê river" in s for s in sites)
    assert any(s.startswith("Coast") for s in sites)


def test_identities() -> None:
    fleet = build_fleet(500, seed=3)
    assert fleet.tenant_id == TENANT_ID
    euis = [d.dev_eui for d in fleet.devices]
    assert len(set(euis)) == len(euis)
    assert all(re.fullmatch(r"[0-9a-f]{16}", e) for e in euis)
    assert len({d.name for d in fleet.devices}) == len(fleet.devices)
    apps = {d.application_name: d.application_id for d in fleet.devices}
    assert set(apps) == {a.name for a in APPLICATIONS.values()}
    for device in fleet.devices:
        uuid.UUID(device.application_id)
        uuid.UUID(device.device_profile_id)
        model = next(m for m in MODELS if m.id == device.model_id)
        assert device.tags["kind"] == device.kind == model.kind
        assert device.tags["model"] == device.model_id
        assert device.tags["codec"] == device.codec_id == model.codec_id
        assert device.fport == model.fport
    # Ids do not depend on the seed: the applications exist once in ChirpStack.
    assert {d.application_id for d in build_fleet(50, seed=9).devices} <= set(apps.values())


def test_some_cayenne_devices_run_chirpstacks_codec() -> None:
    fleet = build_fleet(400, seed=1)
    th = [d for d in fleet.devices if d.codec_id == "cayenne-lpp"]
    runtimes = {d.chirpstack_codec for d in th}
    assert runtimes == {"CAYENNE_LPP", "NONE"}
    assert all(d.chirpstack_codec == "NONE" for d in fleet.devices if d.codec_id != "cayenne-lpp")
    profiles = {d.device_profile_id for d in th}
    assert len(profiles) == 2
    assert all(d.chirpstack_codec == "NONE" for d in build_fleet(100, cayenne_runtime_share=0.0).devices)


def test_gateways_cover_every_device() -> None:
    fleet = build_fleet(600, seed=2)
    assert 10 <= len(fleet.gateways) <= 20
    assert len({g.gateway_id for g in fleet.gateways}) == len(fleet.gateways)
    assert all(re.fullmatch(r"[0-9a-f]{16}", g.gateway_id) for g in fleet.gateways)
    gateways = [(g.lon, g.lat, g.gain_db) for g in fleet.gateways]
    rates = set()
    for device in fleet.devices:
        links = links_for(device.lon, device.lat, device.penetration_db, gateways)
        assert len(links) == 3 and links[0].distance_m < 30_000
        rates.add(SPREADING_FACTORS[adr_data_rate(links)])
    assert 7 in rates and len(rates) >= 3  # mostly SF7, slower where the link is weak


def test_rows_for_listing() -> None:
    row = build_fleet(5).devices[0].as_row()
    assert set(row) >= {"dev_eui", "name", "kind", "model", "codec", "zone", "lat", "lon", "site"}
