"""Test support for the IOC API: an app on a real database, users with keys, devices, and ingested uplinks."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from fastapi import FastAPI

from gateways.mqtt import InboundMessage
from ingest.codecs.registry import CodecRegistry
from ingest.registry import seed_zones
from ingest.worker import BatchProcessor
from ioc_api.app import create_app
from ioc_api.queries.users import create_user
from ioc_core.catalogue import DeviceCatalogue
from ioc_core.settings import ChirpStackSettings, DatabaseSettings
from ioc_core.zones import load_default_zones
from tests.events import uplink

__all__ = ["HAI_CHAU", "LIEN_CHIEU", "SON_TRA", "app_for", "auth", "device", "ingest", "key", "lpp"]

# Points inside the packaged (approximate) districts.
HAI_CHAU = (16.0614, 108.2275)
LIEN_CHIEU = (16.07, 108.15)
SON_TRA = (16.10, 108.26)


def app_for(db_url: str, *, chirpstack: ChirpStackSettings | None = None, poll_s: float = 3600.0) -> FastAPI:
    """The API on ``db_url`` with the default zones seeded and the built-in codecs' models.

    The background pass runs once at start-up and then only when woken, so tests decide when it runs.
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
    catalogue = DeviceCatalogue.of((i.id, i.models) for i in CodecRegistry.discover().infos())
    return create_app(DatabaseSettings(database_url=db_url), catalogue=catalogue,  # type: ignore[arg-type]
                      chirpstack=chirpstack, background_poll_s=poll_s)


def key(db_url: str, name: str, role: str, zones: Iterable[str] = ()) -> dict[str, str]:
    """Authorization headers for a new user."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return auth(create_user(conn, name, role, list(zones), actor="test")[1].key)


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def device(dev_eui: str, where: tuple[float, float] = HAI_CHAU, **more: Any) -> dict[str, Any]:
    """A registration body for a Cayenne LPP temperature/humidity sensor."""
    body: dict[str, Any] = {"dev_eui": dev_eui, "name": f"TH {dev_eui[-4:]}", "kind": "temperature_humidity",
                            "model": "ioc-th100", "latitude": where[0], "longitude": where[1]}
    body.update(more)
    return body


def lpp(temperature: float, humidity: float) -> bytes:
    """Cayenne LPP: channel 1 temperature (0.1 °C), channel 2 relative humidity (0.5 %)."""
    t = round(temperature * 10) & 0xFFFF
    return bytes([1, 0x67, t >> 8, t & 0xFF, 2, 0x68, round(humidity * 2)])


def ingest(db_url: str, frames: Iterable[tuple[str, int, bytes, datetime] | tuple[str, int, bytes, datetime, int]],
           *, gateway: str = "0016c001f153a14c") -> None:
    """Uplinks through the real batch path: (dev_eui, f_cnt, payload, time[, rssi])."""
    messages = []
    for frame in frames:
        dev_eui, f_cnt, data, when = frame[:4]
        rssi = frame[4] if len(frame) > 4 else -90  # type: ignore[misc]
        topic, payload = uplink(dev_eui, f_cnt, data, when=when, gateway=gateway, rssi=rssi)
        messages.append(InboundMessage(topic, payload, mid=1, received_at=time.time(), session=0, duplicate=False))
    processor = BatchProcessor(db_url, CodecRegistry.discover())
    try:
        assert processor.process(messages) is not None
    finally:
        processor.close()
