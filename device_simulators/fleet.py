"""A deterministic Da Nang fleet: devices with identities, positions, districts and ChirpStack metadata."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeVar

from device_simulators.catalogue import APPLICATIONS, MODELS, DeviceModel, Kind
from device_simulators.sites import AREAS, GATEWAY_SITES, ROADS, STATIONS, Area, Road
from ioc_core.zones import Zone, load_default_zones, zone_at

__all__ = [
    "TENANT_ID",
    "TENANT_NAME",
    "Device",
    "Fleet",
    "Gateway",
    "build_fleet",
    "device_profile_id",
]

# Fixed namespace so application, profile and tenant ids stay the same for every seed and every run.
_NAMESPACE: Final = uuid.UUID("6d1f6a2e-0c2b-4f8e-9d55-d4a9e1c0da11")
TENANT_NAME: Final = "Da Nang IOC"
TENANT_ID: Final = str(uuid.uuid5(_NAMESPACE, "tenant/da-nang-ioc"))

ChirpstackCodec = Literal["NONE", "CAYENNE_LPP"]


@dataclass(frozen=True, slots=True)
class Gateway:
    gateway_id: str
    name: str
    lon: float
    lat: float
    altitude: float
    gnss: bool
    gain_db: float


@dataclass(frozen=True, slots=True)
class Device:
    dev_eui: str
    name: str
    kind: Kind
    model_id: str
    codec_id: str
    fport: int
    lon: float
    lat: float
    zone_code: str
    zone_name: str
    site: str
    application_id: str
    application_name: str
    device_profile_id: str
    device_profile_name: str
    chirpstack_codec: ChirpstackCodec
    """Payload codec the device profile runs inside ChirpStack; CAYENNE_LPP fills the event's ``object``."""
    device_class: Literal["CLASS_A", "CLASS_C"]
    uplink_interval_s: int
    battery_powered: bool
    penetration_db: float
    tags: Mapping[str, str]
    params: Mapping[str, float]
    """Physics parameters of the site (datum level, drain capacity, …), see ``sites``."""

    def as_row(self) -> dict[str, str]:
        """A flat row for tables and CSV."""
        return {
            "dev_eui": self.dev_eui,
            "name": self.name,
            "kind": self.kind,
            "model": self.model_id,
            "codec": self.codec_id,
            "zone": self.zone_code,
            "lat": f"{self.lat:.5f}",
            "lon": f"{self.lon:.5f}",
            "site": self.site,
            "application": self.application_name,
            "application_id": self.application_id,
            "device_profile": self.device_profile_name,
            "interval_s": str(self.uplink_interval_s),
        }


@dataclass(frozen=True, slots=True)
class Fleet:
    seed: int
    tenant_id: str
    tenant_name: str
    devices: tuple[Device, ...]
    gateways: tuple[Gateway, ...]

    def by_eui(self) -> dict[str, Device]:
        return {d.dev_eui: d for d in self.devices}

    def count_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for device in self.devices:
            counts[device.kind] = counts.get(device.kind, 0) + 1
        return counts


def device_profile_id(model: DeviceModel, chirpstack_codec: ChirpstackCodec) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"device-profile/{model.id}/{chirpstack_codec}"))


def build_fleet(
    devices: int = 200,
    *,
    seed: int = 1,
    zones: Sequence[Zone] | None = None,
    cayenne_runtime_share: float = 0.5,
) -> Fleet:
    """``devices`` sensors spread over the districts by a fixed mix of kinds, the same for the same seed.

    ``cayenne_runtime_share`` of the Cayenne LPP devices sit in a device profile that runs ChirpStack's own
    CAYENNE_LPP codec, so their events carry ``object``; the others (and all IOC-format devices) carry only
    ``data``, which the platform decodes itself.
    """
    if devices < 0:
        raise ValueError("device count must not be negative")
    zone_list = list(zones) if zones is not None else load_default_zones()
    rng = random.Random(seed)
    gateways = tuple(
        Gateway(g.gateway_id, g.name, g.lon, g.lat, g.altitude, g.gnss, g.gain_db) for g in GATEWAY_SITES
    )
    built: list[Device] = []
    euis: set[str] = set()
    names: dict[tuple[str, str], int] = {}
    for model, count in zip(MODELS, _allocate(devices, [m.share for m in MODELS]), strict=True):
        for index in range(count):
            lon, lat, site, params = _place(model.kind, index, rng, zone_list)
            zone = zone_at(zone_list, lon, lat)
            if zone is None:  # only when a caller's zones do not cover our sites
                raise ValueError(f"site {site!r} ({lon:.4f}, {lat:.4f}) is outside every zone")
            key = (model.short, zone.code)
            names[key] = names.get(key, 0) + 1
            eui = _eui(rng, euis)
            runtime: ChirpstackCodec = (
                "CAYENNE_LPP"
                if model.codec_id == "cayenne-lpp" and rng.random() < cayenne_runtime_share
                else "NONE"
            )
            app = APPLICATIONS[model.application]
            profile_name = f"{model.title} AS923-2 LoRaWAN 1.0.3"
            if runtime == "CAYENNE_LPP":
                profile_name += " (ChirpStack Cayenne LPP codec)"
            tags = {
                # Device-profile tags, merged by ChirpStack into every event's deviceInfo.tags.
                "kind": model.kind,
                "model": model.id,
                "codec": model.codec_id,
                # Device tags.
                "zone": zone.code,
                "site": site,
            }
            built.append(
                Device(
                    dev_eui=eui,
                    name=f"{model.short}-{zone.code}-{names[key]:03d}",
                    kind=model.kind,
                    model_id=model.id,
                    codec_id=model.codec_id,
                    fport=model.fport,
                    lon=round(lon, 6),
                    lat=round(lat, 6),
                    zone_code=zone.code,
                    zone_name=zone.name,
                    site=site,
                    application_id=str(uuid.uuid5(_NAMESPACE, f"application/{app.name}")),
                    application_name=app.name,
                    device_profile_id=device_profile_id(model, runtime),
                    device_profile_name=profile_name,
                    chirpstack_codec=runtime,
                    device_class=model.device_class,
                    uplink_interval_s=model.uplink_interval_s,
                    battery_powered=model.battery_powered,
                    penetration_db=model.penetration_db,
                    tags=MappingProxyType(tags),
                    params=params,
                )
            )
    return Fleet(seed=seed, tenant_id=TENANT_ID, tenant_name=TENANT_NAME, devices=tuple(built),
                 gateways=gateways)


def _allocate(total: int, shares: Sequence[float]) -> list[int]:
    """Largest-remainder split of ``total`` by ``shares``; stable, so the same total gives the same mix."""
    weight = sum(shares)
    exact = [total * s / weight for s in shares]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _eui(rng: random.Random, taken: set[str]) -> str:
    while True:
        # 70-b3-d5 is the IEEE block most LoRaWAN device makers draw their DevEUIs from.
        eui = f"70b3d5{rng.getrandbits(40):010x}"
        if eui not in taken:
            taken.add(eui)
            return eui


_EMPTY: Final[Mapping[str, float]] = MappingProxyType({})


def _place(kind: str, index: int, rng: random.Random, zones: Sequence[Zone]) -> tuple[
    float, float, str, Mapping[str, float]
]:
    stations = STATIONS.get(kind)
    if stations:
        station = stations[index % len(stations)]
        if index < len(stations):
            return station.lon, station.lat, station.label, station.params
        # More devices than stations: redundant sensors a few tens of metres apart.
        lon, lat = _near(station.lon, station.lat, 60.0, rng, zones)
        return lon, lat, f"{station.label} #{index // len(stations) + 1}", station.params
    areas = AREAS.get(kind)
    if areas:
        area = _weighted(areas, rng)
        lon, lat = _near(area.lon, area.lat, area.radius_m, rng, zones)
        return lon, lat, area.label, _EMPTY
    roads = ROADS.get(kind)
    if roads:
        road = _weighted(roads, rng)
        for _ in range(40):
            lon, lat = _along(road, rng)
            if zone_at(zones, lon, lat) is not None:
                break
        lon, lat = _near(lon, lat, 25.0, rng, zones)
        return lon, lat, road.label, _EMPTY
    raise ValueError(f"no sites for device kind {kind!r}")


_Site = TypeVar("_Site", Area, Road)


def _weighted(choices: Sequence[_Site], rng: random.Random) -> _Site:
    return rng.choices(choices, weights=[c.weight for c in choices])[0]


def _near(lon: float, lat: float, radius_m: float, rng: random.Random, zones: Sequence[Zone]) -> tuple[
    float, float
]:
    """A uniform point within ``radius_m`` that lies inside a zone (on land); the centre if none is found."""
    for _ in range(40):
        r = radius_m * math.sqrt(rng.random())
        a = rng.uniform(0.0, 2.0 * math.pi)
        dlat = r * math.cos(a) / 111_320.0
        dlon = r * math.sin(a) / (111_320.0 * math.cos(math.radians(lat)))
        if zone_at(zones, lon + dlon, lat + dlat) is not None:
            return lon + dlon, lat + dlat
    return lon, lat


def _along(road: Road, rng: random.Random) -> tuple[float, float]:
    lengths = [
        math.dist(a, b) for a, b in zip(road.points, road.points[1:], strict=False)
    ]
    at = rng.uniform(0.0, sum(lengths))
    for (a, b), length in zip(zip(road.points, road.points[1:], strict=False), lengths, strict=True):
        if at <= length or length == 0.0:
            f = at / length if length else 0.0
            return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
        at -= length
    return road.points[-1]
