"""PostgreSQL for the tests: the plain and the TimescaleDB server, the migrated template, a database per test.

Two servers: one plain, and one with TimescaleDB preloaded when it is installed. Tests marked ``both_modes``
(schema, writer, rollups, API reads, boards, feed) run on each; the rest on the plain one. With
``IOC_TEST_DOCKER=1`` and a reachable Docker engine, PostgreSQL comes from a TimescaleDB container through
testcontainers instead, so the TimescaleDB path is tested for real. A missing binary skips the tests that need it
locally and fails them under ``CI=true``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateways.local_postgres import LocalPostgres, find_pg_bindir, timescaledb_installed
from gateways.migrations import Mode, TimescaleChoice, migrate
from gateways.timescale_jobs import pause_policy_jobs
from ioc_core.errors import FatalError
from tests.availability import unavailable
from tests.waiting import wait_for

__all__ = ["PgServer", "new_database"]

_counter = itertools.count()


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
        wait_for(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                       (name,)).fetchone() == (0,),
                 timeout_s=30, what=f"the last connection to {name} to end")
    _templates[pg_server.admin_url] = name
    return name


@contextmanager
def new_database(server: PgServer, prefix: str, template: str | None = None) -> Iterator[str]:
    """A database of its own on ``server``, a copy of ``template`` (else empty), dropped afterwards; yields its URL."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    copy = f' TEMPLATE "{template}"' if template is not None else ""
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    yield server.url_for(name)
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A migrated database of the test's own."""
    with new_database(pg_server, "ioc_test", template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    with new_database(pg_server, "ioc_empty") as url:
        yield url


