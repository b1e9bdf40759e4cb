"""Fixtures: a real PostgreSQL and real Mosquitto brokers, started as local processes on free ports.

Two PostgreSQL servers: one plain, and one with TimescaleDB preloaded when it is installed. Tests marked
``both_modes`` (schema, writer, rollups, API reads, boards, feed) run on each; the rest on the plain one.
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateways.local_mosquitto import LocalMosquitto, find_mosquitto
from gateways.local_postgres import LocalPostgres, find_pg_bindir, timescaledb_installed
from gateways.migrations import Mode, TimescaleChoice, migrate
from gateways.timescale_jobs import pause_policy_jobs
from ioc_core.errors import FatalError

_counter = itertools.count()


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a needed service must start)", pytrace=False)
    pytest.skip(reason)


class PgServer:
    """A running server we may create databases on; ``admin_url`` points at its maintenance database.

    ``mode`` is the storage mode its databases are migrated in, and ``choice`` the ``IOC_TIMESCALEDB`` value
    that gives it: the plain server may have TimescaleDB installed but not loaded, where ``auto`` is an error.
    """

    def __init__(self, admin_url: str, local: LocalPostgres | None, mode: Mode) -> None:
        self.admin_url = admin_url
        self.local = local
        self.mode: Mode = mode
        self.choice: TimescaleChoice = "on" if mode == "timescaledb" else "off"

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


def _local_server(mode: Mode) -> Iterator[PgServer]:
    try:
        bindir = find_pg_bindir()
    except FatalError as err:
        unavailable(str(err))
        raise
    if mode == "timescaledb" and not timescaledb_installed(bindir):
        reason = "TimescaleDB is not installed (../shared/timescaledb/install.sh)"
        if os.environ.get("IOC_TEST_TIMESCALEDB") == "1":
            unavailable(reason)  # fails under CI=true
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix=f"ioc-test-{mode}-"))
    server = LocalPostgres(root / "data", database="postgres", durable=False, bindir=bindir,
                           timescaledb=mode == "timescaledb")
    try:
        server.start()
    except FatalError as err:
        unavailable(f"PostgreSQL did not start: {err}")
    try:
        yield PgServer(server.url, server, mode)
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def plain_pg_server() -> Iterator[PgServer]:
    """PostgreSQL without TimescaleDB loaded (it may be installed): the plain storage mode."""
    docker = _docker_postgres()
    if docker is not None:
        url, container = docker
        try:
            yield PgServer(url, None, "timescaledb")
        finally:
            container.stop()
        return
    yield from _local_server("postgresql")


@pytest.fixture(scope="session")
def timescale_pg_server() -> Iterator[PgServer]:
    """PostgreSQL with TimescaleDB preloaded, started only when a test runs in that mode."""
    yield from _local_server("timescaledb")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_modes`` run once per storage mode; the rest run on plain PostgreSQL."""
    if "storage" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_modes"):
        metafunc.parametrize("storage", ["postgresql", "timescaledb"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def storage(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = getattr(request, "param", "postgresql")
    return mode


@pytest.fixture(scope="module")
def pg_server(storage: Mode, request: pytest.FixtureRequest) -> PgServer:
    server: PgServer = request.getfixturevalue("timescale_pg_server" if storage == "timescaledb"
                                               else "plain_pg_server")
    return server


@pytest.fixture(scope="session")
def _templates() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def template_db(pg_server: PgServer, _templates: dict[str, str]) -> str:
    """A migrated database that each test copies, so every test starts from the same clean schema.

    Made once per server. TimescaleDB starts a job scheduler in every database that has the extension and
    allows connections, and a template with a connection cannot be copied ("source database is being
    accessed by other users"): so the template is closed to connections and its scheduler ended.
    """
    if pg_server.admin_url in _templates:
        return _templates[pg_server.admin_url]
    name = "ioc_template"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_server.url_for(name)) as conn:
        migrate(conn, pg_server.choice)
        if pg_server.mode == "timescaledb":
            # Tests decide when policy jobs run (tests/integration/test_policy_jobs.py runs each): a refresh or
            # compression started by the scheduler halfway through a test would make it flaky.
            pause_policy_jobs(conn)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        deadline = time.monotonic() + 30
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} still has connections after 30 s")
            time.sleep(0.05)
    _templates[pg_server.admin_url] = name
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
