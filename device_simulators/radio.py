"""LoRa radio in AS923-2 (Vietnam): path loss to the gateways, RSSI/SNR per uplink, data rate by link budget.

A log-distance path-loss model at 923 MHz (exponent 3.2: street-level devices in a built-up city) gives
each device a mean RSSI at its three best gateways; every uplink adds shadowing noise, and a gateway hears
the frame only when the SNR clears the demodulation floor of the spreading factor. The data rate is what
ChirpStack's ADR would settle on: the fastest one that leaves a 10 dB installation margin at the best
gateway.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final, NamedTuple

__all__ = [
    "BANDWIDTH_HZ",
    "NOISE_FLOOR_DBM",
    "REGION_CONFIG_ID",
    "REQUIRED_SNR_DB",
    "RX2_FREQUENCY_HZ",
    "RX2_SPREADING_FACTOR",
    "SPREADING_FACTORS",
    "UPLINK_CHANNELS_HZ",
    "Link",
    "Reception",
    "adr_data_rate",
    "distance_m",
    "links_for",
    "receive",
]

REGION_CONFIG_ID: Final = "as923_2"
# AS923-2 = AS923 with a -1.8 MHz offset: default channels 921.4/921.6 MHz plus six extra ones,
# as in ChirpStack's region_as923_2.toml.
UPLINK_CHANNELS_HZ: Final = (
    921_400_000,
    921_600_000,
    921_800_000,
    922_000_000,
    922_200_000,
    922_400_000,
    922_600_000,
    922_800_000,
)
BANDWIDTH_HZ: Final = 125_000
# RX2 (and class C) downlinks: 921.4 MHz at DR2 (SF10) in AS923-2.
RX2_FREQUENCY_HZ: Final = 921_400_000
RX2_SPREADING_FACTOR: Final = 10
# AS923 data rates 0..5 are SF12..SF7 at 125 kHz.
SPREADING_FACTORS: Final = (12, 11, 10, 9, 8, 7)
REQUIRED_SNR_DB: Final = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
# Thermal noise in 125 kHz (-174 dBm/Hz + 51 dB) plus a 6 dB receiver noise figure.
NOISE_FLOOR_DBM: Final = -117.0

_TX_POWER_DBM: Final = 14.0
_PATH_LOSS_1M_DB: Final = 32.0
_PATH_LOSS_EXPONENT: Final = 3.2
_SHADOWING_DB: Final = 3.0
_ADR_MARGIN_DB: Final = 10.0
_MAX_SNR_DB: Final = 13.5  # concentrators saturate their SNR estimate around here
_EARTH_RADIUS_M: Final = 6_371_000.0


@dataclass(frozen=True, slots=True)
class Link:
    gateway: int
    """Index into the fleet's gateway list."""
    distance_m: float
    mean_rssi: float


class Reception(NamedTuple):
    gateway: int
    rssi: int
    snr: float


@functools.cache
def _normal_table() -> tuple[float, ...]:
    """4096 standard normal quantiles: a table look-up is several times cheaper than ``gauss``."""
    dist = NormalDist()
    return tuple(dist.inv_cdf((i + 0.5) / 4096) for i in range(4096))


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Equirectangular distance, plenty accurate across one city."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2.0))
    y = math.radians(lat2 - lat1)
    return _EARTH_RADIUS_M * math.hypot(x, y)


def links_for(
    lon: float,
    lat: float,
    penetration_db: float,
    gateways: Sequence[tuple[float, float, float]],
    keep: int = 3,
) -> tuple[Link, ...]:
    """The ``keep`` strongest gateways for a device; ``gateways`` holds ``(lon, lat, gain_db)``."""
    links = []
    for index, (g_lon, g_lat, gain) in enumerate(gateways):
        d = max(distance_m(lon, lat, g_lon, g_lat), 10.0)
        loss = _PATH_LOSS_1M_DB + 10.0 * _PATH_LOSS_EXPONENT * math.log10(d) + penetration_db
        links.append(Link(index, d, _TX_POWER_DBM + gain - loss))
    links.sort(key=lambda link: -link.mean_rssi)
    return tuple(links[:keep])


def adr_data_rate(links: Sequence[Link]) -> int:
    """The AS923 data rate ADR would choose: the fastest with a 10 dB margin at the best gateway."""
    if not links:
        return 0
    snr = min(links[0].mean_rssi - NOISE_FLOOR_DBM, _MAX_SNR_DB)
    for dr in range(len(SPREADING_FACTORS) - 1, -1, -1):
        if snr - REQUIRED_SNR_DB[SPREADING_FACTORS[dr]] >= _ADR_MARGIN_DB:
            return dr
    return 0


def receive(links: Sequence[Link], spreading_factor: int, rng: random.Random) -> list[Reception]:
    """Which gateways hear this uplink and how well; empty when the frame is lost on air."""
    floor = REQUIRED_SNR_DB[spreading_factor]
    heard = []
    normal, bits, uniform = _normal_table(), rng.getrandbits, rng.random
    for link in links:
        rssi = link.mean_rssi + normal[bits(12)] * _SHADOWING_DB
        snr = rssi - NOISE_FLOOR_DBM + uniform() - 0.5
        if snr < floor:
            continue
        if snr > _MAX_SNR_DB:
            snr = _MAX_SNR_DB
        # Concentrators report SNR in quarter-dB steps and RSSI in whole dB; + 0.0 turns -0.0 into 0.0.
        heard.append(Reception(link.gateway, round(rssi), round(snr * 4.0) / 4.0 + 0.0))
    return heard
