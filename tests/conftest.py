"""Fixtures: a real PostgreSQL and real Mosquitto brokers, started as local processes on free ports.

With ``IOC_TEST_DOCKER=1`` and a reachable Docker engine, PostgreSQL comes from a TimescaleDB container
through testcontainers instead, so the TimescaleDB path is tested for real. Mosquitto then
runs in a container too. A missing binary skips the tests that need it locally and fails them under
``CI=true``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateways.local_mosquitto import LocalMosquitto, find_mosquitto
from gateways.local_postgres import LocalPostgres, find_pg_bindir
from gateways.migrations import migrate
from ioc_core.errors import FatalError

_counter = itertools.count()


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a needed service must start)", pytrace=False)
    pytest.skip(reason)


class PgServer:
    """A running server we may create databases on; ``admin_url`` points at its maintenance database."""

    def __init__(self, admin_url: str, local: LocalPostgres | None) -> None:
        self.admin_url = admin_url
        self.local = local

    def url_for(self, database: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{database}"


def _docker_postgres() -> tuple[str, Any] | None:
    if os.environ.get("IOC_TEST_DOCKER") != "1":
        return None
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        unavailable("IOC_TEST_DOCKER=1 needs `pip install -e .[docker]`")
        return None
    container = PostgresContainer("timescale/timescaledb:latest-pg16", username="ioc", password="ioc",
                                  dbname="postgres")
    container.start()
    url = container.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
    return url, container


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    docker = _docker_postgres()
    if docker is not None:
        url, container = docker
        try:
            yield PgServer(url, None)
        finally:
            container.stop()
        return
    try:
        find_pg_bindir()
    except FatalError as err:
        unavailable(str(err))
    root = Path(tempfile.mkdtemp(prefix="ioc-test-pg-"))
    server = LocalPostgres(root / "data", database="postgres", durable=False)
    try:
        server.start()
    except FatalError as err:
        unavailable(f"PostgreSQL did not start: {err}")
    try:
        yield PgServer(server.url, server)
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """A migrated database that each test copies, so every test starts from the same clean schema."""
    name = "ioc_template"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_server.url_for(name)) as conn:
        migrate(conn)
    return name


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    name = f"ioc_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    name = f"ioc_empty_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    unavailable(f"nothing listens on port {port} after {timeout_s:.0f} s")


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
