"""Mosquitto for the tests: a broker of each test's own, as a local process or (``IOC_TEST_DOCKER=1``) a container."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateways.local_mosquitto import LocalMosquitto, find_mosquitto
from ioc_core.errors import FatalError
from tests.availability import unavailable
from tests.waiting import WaitTimeout, wait_for

__all__ = ["DockerMosquitto"]


class DockerMosquitto:
    """Mosquitto in a container (``IOC_TEST_DOCKER=1``), with the interface of ``LocalMosquitto``.

    The host port is bound explicitly so it survives ``restart()``, and persistence is on, as the broker
    restart tests need.
    """

    def __init__(self, work_dir: Path) -> None:
        from testcontainers.core.container import DockerContainer

        from gateways.local_postgres import free_port

        work_dir.mkdir(parents=True, exist_ok=True)
        conf = work_dir / "mosquitto.conf"
        conf.write_text("listener 1883\nallow_anonymous true\npersistence true\n"
                        "persistence_location /mosquitto/data/\nmax_queued_messages 2000000\n")
        self.port = free_port()
        self._container = (
            DockerContainer("eclipse-mosquitto:2")
            .with_bind_ports(1883, self.port)
            .with_volume_mapping(str(conf), "/mosquitto/config/mosquitto.conf", "ro")
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._container.start()
        _wait_for_port(self.port)

    def restart(self) -> None:
        self._container.get_wrapped_container().restart(timeout=10)
        _wait_for_port(self.port)

    def stop(self) -> None:
        self._container.stop()


def _wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_for(listening, timeout_s=timeout_s, what=f"something to listen on port {port}", interval_s=0.1)
    except WaitTimeout as err:
        unavailable(str(err))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A broker of the test's own: starting Mosquitto takes milliseconds, and no test sees another's
    sessions or retained messages."""
    if os.environ.get("IOC_TEST_DOCKER") == "1":
        container = DockerMosquitto(tmp_path / "mosquitto")
        container.start()
        try:
            yield container
        finally:
            container.stop()
        return
    try:
        find_mosquitto()
    except FatalError as err:
        unavailable(str(err))
    server = LocalMosquitto(tmp_path / "mosquitto")
    try:
        server.start()
    except FatalError as err:
        unavailable(f"mosquitto did not start: {err}")
    try:
        yield server
    finally:
        server.stop()
