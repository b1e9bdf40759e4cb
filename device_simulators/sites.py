"""Where Da Nang's simulated sensors and gateways stand: named stations, streets and neighbourhoods.

Coordinates are approximate (a few hundred metres) and chosen to fall inside the packaged district
outlines; parameters give each station its hydrology (mean stage above the gauge zero, tide and rain response, warning
levels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

__all__ = [
    "AREAS",
    "GATEWAY_SITES",
    "ROADS",
    "STATIONS",
    "TIDAL_ZERO_M",
    "Area",
    "GatewaySite",
    "Road",
    "Station",
]


@dataclass(frozen=True, slots=True)
class Station:
    """A fixed measuring point (a river gauge, a flood-prone street corner, a lake)."""

    label: str
    lon: float
    lat: float
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Area:
    """A neighbourhood where devices are scattered within ``radius_m`` of the centre."""

    label: str
    lon: float
    lat: float
    radius_m: float
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Road:
    """A main road as a polyline of ``(lon, lat)``; devices are placed along it."""

    label: str
    points: tuple[tuple[float, float], ...]
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class GatewaySite:
    name: str
    gateway_id: str
    lon: float
    lat: float
    altitude: float
    gnss: bool
    gain_db: float
    """Antenna gain plus the height advantage of the site over the path-loss model's street level."""


# Water levels are stages: metres of water above the station's gauge zero, which sits below the lowest water
# the station sees, so a level is never negative. At the tidal stations (the coast and the lower Hàn, Cẩm Lệ
# and Cu Đê rivers) the zero is TIDAL_ZERO_M below mean sea level, under the lowest tide (0.86 m below); up
# the rivers it is the bed at low flow. Each station has its own alert and danger levels on that scale, like
# the flood warning levels (báo động) Vietnam sets per hydrological station; the demo registers them as the
# devices' alert thresholds.
TIDAL_ZERO_M: Final = 1.0
_Z: Final = TIDAL_ZERO_M


def _wl(
    base: float, tide: float, rain: float, lag_h: float, mount: float, alert: float, danger: float, rise: float
) -> Mapping[str, float]:
    # base: mean stage in dry weather (m above the gauge zero); tide: share of the sea tide seen here;
    # rain: metres of rise per mm of the catchment's runoff; lag_h: how long the rain takes to arrive;
    # mount: sensor height above the gauge zero (m); alert / danger: the station's warning levels (m), the
    # device raising its own alarm flag at the alert level; rise: the most the rain raises it above base
    # (beyond its banks the water spreads over the flood plain), so a flood peaks a metre or so above danger.
    return MappingProxyType(
        {"base": base, "tide_gain": tide, "rain_gain": rain, "lag_h": lag_h, "mount": mount, "alarm": alert,
         "danger": danger, "rise": rise}
    )


def _fd(capacity: float, gain: float, tidal: float) -> Mapping[str, float]:
    # capacity: mm/h the drains carry away while their outfalls are free; gain: metres of water per mm of
    # excess rain; tidal: extra depth per metre of water above 0.4 m at the outfalls (high tide, a high Hàn).
    return MappingProxyType({"capacity": capacity, "gain": gain, "tidal": tidal, "mount": 3.0})


def _wq(salinity: float, turbidity: float, oxygen: float) -> Mapping[str, float]:
    # salinity: uS/cm of salt intrusion per metre of tide above mean; turbidity: base NTU;
    # oxygen: dissolved oxygen as a share of saturation.
    return MappingProxyType({"salinity": salinity, "turbidity": turbidity, "oxygen": oxygen})


STATIONS: Final[Mapping[str, tuple[Station, ...]]] = MappingProxyType(
    {
        "water_level": (
            Station("Hàn river, Dragon bridge", 108.2245, 16.0610,
                    _wl(_Z + 0.35, 0.95, 0.0200, 1.5, 7.0, 2.6, 3.0, 2.6)),
            Station("Hàn river, Sông Hàn bridge", 108.2248, 16.0720,
                    _wl(_Z + 0.30, 1.00, 0.0190, 1.5, 7.5, 2.5, 2.9, 2.6)),
            Station("Hàn river, Tiên Sơn bridge", 108.2290, 16.0370,
                    _wl(_Z + 0.45, 0.85, 0.0210, 1.5, 7.0, 2.8, 3.3, 2.8)),
            Station("Cẩm Lệ river, Cẩm Lệ bridge", 108.2100, 16.0150,
                    _wl(_Z + 0.80, 0.60, 0.0170, 2.0, 8.0, 3.4, 4.2, 3.6)),
            Station("Cu Đê river, Nam Ô bridge", 108.1250, 16.1170,
                    _wl(_Z + 0.40, 0.80, 0.0140, 1.5, 7.0, 2.9, 3.6, 3.2)),
            Station("Cu Đê river, Hòa Bắc", 108.0500, 16.1250, _wl(2.10, 0.05, 0.0300, 0.75, 8.0, 4.5, 5.2, 4.6)),
            Station("Túy Loan river, Hòa Phong", 108.1300, 15.9950, _wl(1.50, 0.20, 0.0200, 1.25, 7.5, 3.6, 4.4, 3.9)),
            Station("Vu Gia river, Ái Nghĩa ferry", 108.0500, 15.9600,
                    _wl(2.60, 0.05, 0.0200, 2.5, 9.0, 5.0, 6.0, 4.6)),
            Station("Coast, Thọ Quang fishing port", 108.2330, 16.1050,
                    _wl(_Z + 0.05, 1.00, 0.0010, 1.0, 6.0, 2.2, 2.6, 0.3)),
            Station("Coast, Mỹ Khê beach", 108.2440, 16.0620, _wl(_Z + 0.00, 1.00, 0.0006, 1.0, 6.0, 2.2, 2.6, 0.2)),
            Station("Coast, Non Nước beach", 108.2620, 15.9960, _wl(_Z + 0.00, 1.00, 0.0006, 1.0, 6.0, 2.2, 2.6, 0.2)),
            Station("Coast, Kim Liên", 108.1360, 16.0880, _wl(_Z + 0.05, 1.00, 0.0010, 1.0, 6.0, 2.2, 2.6, 0.3)),
        ),
        "flood_depth": (
            Station("Điện Biên Phủ x Hà Huy Tập", 108.1930, 16.0660, _fd(61.6, 0.0060, 0.05)),
            Station("Hoàng Diệu x Nguyễn Văn Linh", 108.2150, 16.0600, _fd(70.4, 0.0050, 0.08)),
            Station("Phan Đăng Lưu", 108.2140, 16.0380, _fd(55.0, 0.0065, 0.04)),
            Station("Tôn Đức Thắng, Hòa Khánh", 108.1560, 16.0640, _fd(52.8, 0.0070, 0.02)),
            Station("Trường Chinh, An Khê", 108.1840, 16.0450, _fd(57.2, 0.0060, 0.02)),
            Station("Hàm Nghi x Lê Duẩn", 108.2080, 16.0700, _fd(66.0, 0.0055, 0.06)),
            Station("Ngô Quyền, An Hải Bắc", 108.2360, 16.0760, _fd(66.0, 0.0050, 0.10)),
            Station("Lê Văn Hiến, Khuê Mỹ", 108.2450, 16.0200, _fd(59.4, 0.0060, 0.05)),
            Station("Nguyễn Tất Thành, Xuân Hà", 108.1950, 16.0790, _fd(63.8, 0.0055, 0.12)),
            Station("Ông Ích Khiêm underpass", 108.2090, 16.0640, _fd(48.4, 0.0080, 0.03)),
        ),
        "water_quality": (
            Station("Hàn river, Bạch Đằng", 108.2250, 16.0780, _wq(2500.0, 12.0, 0.85)),
            Station("Cầu Đỏ raw-water intake", 108.1900, 15.9950, _wq(900.0, 18.0, 0.90)),
            Station("Bàu Trảng lake", 108.1800, 16.0630, _wq(0.0, 9.0, 0.80)),
            Station("29/3 park lake", 108.2020, 16.0620, _wq(0.0, 7.0, 0.82)),
            Station("Đồng Nghệ reservoir", 108.0600, 15.9900, _wq(0.0, 4.0, 0.95)),
            Station("Cu Đê estuary", 108.1300, 16.1100, _wq(4000.0, 15.0, 0.88)),
            Station("Phú Lộc canal", 108.1860, 16.0740, _wq(300.0, 25.0, 0.55)),
        ),
    }
)

AREAS: Final[Mapping[str, tuple[Area, ...]]] = MappingProxyType(
    {
        "parking": (
            Area("Hải Châu centre", 108.2200, 16.0680, 900, 3.0),
            Area("Bạch Đằng riverside", 108.2230, 16.0650, 350, 1.5),
            Area("Võ Nguyên Giáp beachfront", 108.2420, 16.0600, 450, 1.5),
            Area("Thanh Khê market", 108.1950, 16.0650, 500, 1.0),
            Area("An Thượng tourist quarter", 108.2410, 16.0480, 400, 1.0),
            Area("Hòa Khánh industrial park", 108.1500, 16.0700, 500, 0.5),
        ),
        "waste_bin": (
            Area("Hải Châu", 108.2150, 16.0550, 1500, 2.0),
            Area("Thanh Khê", 108.1900, 16.0680, 1000, 1.5),
            Area("Sơn Trà", 108.2380, 16.0800, 1200, 1.5),
            Area("Ngũ Hành Sơn", 108.2500, 16.0150, 1500, 1.0),
            Area("Liên Chiểu", 108.1500, 16.0720, 1200, 1.0),
            Area("Cẩm Lệ", 108.1950, 16.0200, 1200, 1.0),
            Area("Hòa Vang, Hòa Phong", 108.1300, 15.9900, 1200, 0.4),
        ),
        "rain_gauge": (
            Area("Hải Châu", 108.2150, 16.0550, 1200, 1.0),
            Area("Thanh Khê", 108.1900, 16.0650, 800, 1.0),
            Area("Sơn Trà", 108.2450, 16.0950, 1500, 1.0),
            Area("Ngũ Hành Sơn", 108.2500, 16.0000, 1500, 1.0),
            Area("Liên Chiểu", 108.1350, 16.0900, 2000, 1.0),
            Area("Cẩm Lệ", 108.1900, 16.0150, 1500, 1.0),
            Area("Hòa Vang west", 107.9500, 16.0500, 8000, 1.5),
            Area("Hòa Vang south", 108.1000, 15.9700, 5000, 1.0),
        ),
        "temperature_humidity": (
            Area("Hải Châu", 108.2150, 16.0550, 1500, 1.5),
            Area("Thanh Khê", 108.1900, 16.0650, 900, 1.0),
            Area("Sơn Trà peninsula", 108.2700, 16.1150, 2500, 1.0),
            Area("Ngũ Hành Sơn", 108.2500, 16.0100, 1800, 1.0),
            Area("Liên Chiểu", 108.1300, 16.1000, 2500, 1.0),
            Area("Cẩm Lệ", 108.1900, 16.0150, 1500, 1.0),
            Area("Hòa Vang, Bà Nà foothills", 107.9800, 16.0200, 6000, 1.0),
        ),
    }
)

ROADS: Final[Mapping[str, tuple[Road, ...]]] = MappingProxyType(
    {
        "air_quality": (
            Road("Nguyễn Văn Linh", ((108.2000, 16.0600), (108.2240, 16.0605)), 1.5),
            Road("Điện Biên Phủ", ((108.1750, 16.0660), (108.2050, 16.0670)), 1.5),
            Road("Nguyễn Tất Thành", ((108.1650, 16.0720), (108.1900, 16.0790), (108.2040, 16.0840))),
            Road("Trường Chinh", ((108.1790, 16.0550), (108.1880, 16.0300), (108.1950, 16.0100))),
            Road("Ngô Quyền", ((108.2350, 16.0950), (108.2380, 16.0600), (108.2400, 16.0460))),
            Road("Lê Văn Hiến", ((108.2420, 16.0430), (108.2500, 16.0150), (108.2600, 15.9900))),
            Road("Tôn Đức Thắng", ((108.1400, 16.0800), (108.1550, 16.0650), (108.1700, 16.0600))),
            Road("National road 1A, Hòa Vang", ((108.1600, 15.9950), (108.1450, 16.0300))),
        ),
        "street_light": (
            Road("Bạch Đằng", ((108.2240, 16.0850), (108.2250, 16.0620), (108.2270, 16.0500)), 1.5),
            Road("Võ Nguyên Giáp", ((108.2440, 16.0850), (108.2460, 16.0500), (108.2560, 16.0200)), 1.5),
            Road("Nguyễn Văn Linh", ((108.2000, 16.0600), (108.2240, 16.0605))),
            Road("2 Tháng 9", ((108.2260, 16.0450), (108.2240, 16.0250))),
            Road("Điện Biên Phủ", ((108.1750, 16.0660), (108.2050, 16.0670))),
            Road("Nguyễn Tất Thành", ((108.1440, 16.0785), (108.1550, 16.0730), (108.1650, 16.0720),
                                      (108.1900, 16.0790), (108.2040, 16.0840))),
            Road("Trường Sa", ((108.2560, 16.0200), (108.2680, 15.9800))),
            Road("Hoàng Sa (Sơn Trà)", ((108.2450, 16.0980), (108.2800, 16.1020))),
            Road("Cách Mạng Tháng 8", ((108.2100, 16.0200), (108.2000, 15.9950))),
        ),
    }
)

# Rooftop and hilltop gateways of the free city LoRa network; ids are vendor-style EUIs.
GATEWAY_SITES: Final[tuple[GatewaySite, ...]] = (
    GatewaySite("Administrative Centre tower", "ac1f09fffe0b1a01", 108.2211, 16.0771, 166.0, True, 12.0),
    GatewaySite("Sơn Trà peak", "ac1f09fffe0b1a02", 108.2730, 16.1175, 620.0, True, 16.0),
    GatewaySite("Thọ Quang", "ac1f09fffe0b1a03", 108.2400, 16.1000, 25.0, False, 4.0),
    GatewaySite("Mỹ Khê", "ac1f09fffe0b1a04", 108.2440, 16.0600, 40.0, False, 5.0),
    GatewaySite("Marble Mountains", "ac1f09fffe0b1a05", 108.2630, 16.0040, 90.0, True, 8.0),
    GatewaySite("Hòa Hải", "ac1f09fffe0b1a06", 108.2550, 15.9800, 20.0, False, 4.0),
    GatewaySite("Thanh Khê ward office", "7276ff000b031f01", 108.1900, 16.0670, 35.0, False, 5.0),
    GatewaySite("Airport south", "7276ff000b031f02", 108.2000, 16.0450, 25.0, True, 4.0),
    GatewaySite("Cẩm Lệ district office", "7276ff000b031f03", 108.2000, 16.0150, 30.0, False, 5.0),
    GatewaySite("Hòa Xuân", "7276ff000b031f04", 108.2180, 16.0000, 25.0, False, 4.0),
    GatewaySite("Hòa Khánh", "7276ff000b031f05", 108.1500, 16.0700, 30.0, True, 5.0),
    GatewaySite("Nam Ô", "0080000000a1b201", 108.1280, 16.1150, 40.0, False, 5.0),
    GatewaySite("Hòa Phong", "0080000000a1b202", 108.1200, 15.9850, 25.0, False, 4.0),
    GatewaySite("Bà Nà Hills", "0080000000a1b203", 107.9900, 15.9970, 1400.0, True, 20.0),
    GatewaySite("Hòa Bắc", "0080000000a1b204", 108.0200, 16.1200, 60.0, False, 8.0),
    GatewaySite("Hòa Liên", "0080000000a1b205", 108.1000, 16.1000, 30.0, False, 5.0),
)
