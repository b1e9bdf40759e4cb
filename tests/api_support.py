"""Test support for the IOC API: an app on a real database, users with keys, devices, and ingested uplinks."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import psycopg
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateways.local_postgres import free_port
from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from ingest.registry import seed_zones
from ioc_api.app import create_app
from ioc_api.queries.users import create_user
from ioc_core.catalogue import DeviceCatalogue
from ioc_core.settings import ApiSettings, BrokerSettings, ChirpStackSettings, DatabaseSettings, OpenDataSettings
from ioc_core.zones import load_default_zones
from tests.events import uplink
from tests.waiting import wait_for

__all__ = ["HAI_CHAU", "LIEN_CHIEU", "SON_TRA", "Raw", "app_for", "auth", "device", "ingest", "key", "lpp",
           "raw_request", "served"]

# Points inside the packaged (approximate) districts.
HAI_CHAU = (16.0614, 108.2275)
LIEN_CHIEU = (16.07, 108.15)
SON_TRA = (16.10, 108.26)


def app_for(db_url: str, *, api: ApiSettings | None = None, chirpstack: ChirpStackSettings | None = None,
            broker: BrokerSettings | None = None, open_data: OpenDataSettings | None = None,
            catalogue: DeviceCatalogue | None = None, poll_s: float = 3600.0, zones: bool = True) -> FastAPI:
    """The API on ``db_url``, as every test builds it: the default zones seeded, the built-in codecs' models.

    ``zones=False`` leaves the database alone (it may not exist at all); ``catalogue`` replaces the codecs'
    models. The other settings are ``create_app``'s, from the environment when not given. The background pass
    runs once at start-up and then only when woken (``poll_s``), so tests decide when it runs.
    """
    if zones:
        with psycopg.connect(db_url, autocommit=True) as conn:
            seed_zones(conn, load_default_zones())
    if catalogue is None:
        catalogue = DeviceCatalogue.of((i.id, i.models) for i in CodecLibrary.discover().infos())
    return create_app(DatabaseSettings(url=db_url), api, catalogue=catalogue,  # type: ignore[arg-type]
                      chirpstack=chirpstack, broker=broker, open_data=open_data, background_poll_s=poll_s)


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` served over HTTP by uvicorn on a free loopback port, as `ioc api` serves it; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="ioc-api", daemon=True)
    thread.start()

    def started() -> bool:
        if not server.started and not thread.is_alive():
            raise RuntimeError("the API did not start")
        return server.started

    wait_for(started, timeout_s=30, what="the API to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


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
    processor = BatchProcessor(db_url, CodecLibrary.discover())
    try:
        assert processor.process(messages) is not None
    finally:
        processor.close()


@dataclass
class Raw:
    """What ``raw_request`` saw: the answer, and how much of the body the app asked for."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks_read: int = 0
    completed: bool = False
    """The app read the whole body."""
    answered: bool = False
    """The app sent its whole answer (the last body message)."""


def raw_request(client: TestClient, method: str, path: str, *, headers: dict[str, str] | None = None,
                chunks: Iterable[bytes] = (), pause_s: float = 0.0, query: str = "",
                send: Callable[[dict[str, Any]], Awaitable[None]] | None = None, limit_s: float = 30.0) -> Raw:
    """One request straight to the app's ASGI interface on ``client``'s event loop, as a server would make it.

    The TestClient reads a whole body before the app sees it; here each chunk is handed over only when the app
    asks for the next one (``pause_s`` after each, as a slow client sends), and ``chunks_read`` counts them.
    ``send``, when given, also receives every message the app sends (to stall like a client that stops reading).
    ``limit_s`` bounds the whole exchange: past it the app is cancelled and the test fails.
    """
    seen = Raw()
    events: list[anyio.Event] = []  # made on the event loop, in call()
    pieces = iter(chunks)
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if seen.completed:
            await events[0].wait()
            return {"type": "http.disconnect"}
        if pause_s:
            await anyio.sleep(pause_s)
        chunk = next(pieces, None)
        if chunk is None:
            seen.completed = True
            return {"type": "http.request", "body": b"", "more_body": False}
        seen.chunks_read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def respond(message: dict[str, Any]) -> None:
        if send is not None:
            await send(message)
        if message["type"] == "http.response.start":
            seen.status = message["status"]
            seen.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                seen.answered = True
                events[0].set()

    all_headers = {"host": "testserver", **(headers or {})}
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode(), "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()], "state": {}}

    async def call() -> Raw:
        events.append(anyio.Event())
        with anyio.fail_after(limit_s):
            await client.app(scope, receive, respond)
        events[0].set()
        seen.body = b"".join(parts)
        return seen

    return client.portal.call(call)  # type: ignore[union-attr]
