"""psycopg's errors against a real PostgreSQL, translated at the edge: a refused connection sorted by SQLSTATE (or,
where psycopg gives none, by the least fragile signal), a unique violation and a bad value in a query, and a
connection lost in the middle of an API request."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateways.database import (
    ConstraintViolated,
    DatabaseRefused,
    DatabaseUnavailable,
    DuplicateKey,
    ValueRefused,
    connect,
    database_errors,
)
from gateways.local_postgres import free_port
from ioc_api.queries.device_writes import create_device
from ioc_api.queries.users import create_user
from ioc_api.schemas.devices import DeviceCreate
from ioc_core.errors import AlreadyExists, Invalid
from ioc_core.settings import ApiSettings
from tests.api_support import app_for, device, key
from tests.fix_postgres import PgServer

pytestmark = pytest.mark.integration

_ROLE = f"ioc_pw_{os.getpid()}"
_REJECTED = f"ioc_rejected_{os.getpid()}"
_PASSWORD = "right-horse-battery"


@pytest.fixture(scope="module")
def server(pg_server: PgServer) -> Iterator[str]:
    """host:port of the test server, where ``_ROLE`` must give its password and pg_hba.conf rejects ``_REJECTED``
    (the lines are added for those two roles only and taken out after the module)."""
    if pg_server.local is None:
        pytest.skip("needs the local server, whose pg_hba.conf the test can change")
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {_ROLE} LOGIN PASSWORD '{_PASSWORD}'")
        admin.execute(f"CREATE ROLE {_REJECTED} LOGIN")
        row = admin.execute("SHOW hba_file").fetchone()
        assert row is not None
        hba = Path(row[0])
        before = hba.read_text()
        hba.write_text(f"host all {_ROLE} 127.0.0.1/32 scram-sha-256\nhost all {_REJECTED} 127.0.0.1/32 reject\n"
                       + before)
        admin.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)  # the postmaster re-reads pg_hba.conf on SIGHUP, a moment after pg_reload_conf returns
        yield f"127.0.0.1:{pg_server.local.port}"
    finally:
        hba.write_text(before)
        with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"DROP ROLE {_ROLE}")
            admin.execute(f"DROP ROLE {_REJECTED}")


def _refused(url: str) -> DatabaseRefused:
    with pytest.raises(DatabaseRefused, match=r"^the database refused the connection \(check IOC_DATABASE_URL\): ") \
            as caught:
        connect(url)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    return caught.value


# --- connecting ------------------------------------------------------------------------------------------------

def test_psycopg_gives_no_sqlstate_when_the_server_refuses_a_connection(server: str) -> None:
    # Why connect() infers it: if this fails, psycopg passes the SQLSTATE on and the inference can go.
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(f"postgresql://{_ROLE}:wrong@{server}/postgres", connect_timeout=10)
    assert caught.value.sqlstate is None and caught.value.diag.sqlstate is None


def test_a_wrong_password_is_refused_for_good(server: str) -> None:
    assert _refused(f"postgresql://{_ROLE}:wrong@{server}/postgres").sqlstate == "28P01"


def test_a_missing_password_is_refused_by_libpq_s_flag(server: str) -> None:
    assert _refused(f"postgresql://{_ROLE}@{server}/postgres?passfile=/nonexistent").sqlstate == "28P01"


def test_an_unknown_role_is_refused(server: str) -> None:
    assert _refused(f"postgresql://nobody_{os.getpid()}@{server}/postgres").sqlstate == "28000"


def test_a_pg_hba_rejection_is_refused_not_retried(server: str) -> None:
    # Before: "cannot reach the database", and a worker would have retried it for ever.
    assert _refused(f"postgresql://{_REJECTED}@{server}/postgres").sqlstate == "28000"


def test_a_missing_database_is_refused(server: str) -> None:
    assert _refused(f"postgresql://{_ROLE}:{_PASSWORD}@{server}/nowhere_{os.getpid()}").sqlstate == "3D000"


def test_the_right_password_connects_and_a_closed_server_is_retriable(server: str) -> None:
    with connect(f"postgresql://{_ROLE}:{_PASSWORD}@{server}/postgres") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (_ROLE,)
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(f"postgresql://{_ROLE}:{_PASSWORD}@127.0.0.1:{free_port()}/postgres")  # nothing listens there
    assert caught.value.sqlstate is None


# --- in a query ------------------------------------------------------------------------------------------------

def test_database_errors_carry_the_sqlstate_and_constraint(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO api_users (name, role, key_prefix, key_hash) VALUES ('ana', 'admin', 'p1', '')")
        with pytest.raises(DuplicateKey) as duplicate, database_errors("add a user"):
            conn.execute("INSERT INTO api_users (name, role, key_prefix, key_hash) VALUES ('ana', 'admin', 'p2', '')")
        assert duplicate.value.sqlstate == "23505" and duplicate.value.constraint == "api_users_name_key"
        assert str(duplicate.value).startswith("add a user: database refused the values (23505): duplicate key")
        with pytest.raises(ConstraintViolated) as broken, database_errors("add a user"):
            conn.execute("INSERT INTO api_users (name, role, key_prefix, key_hash) VALUES ('bo', 'king', 'p3', '')")
        assert broken.value.sqlstate == "23514" and broken.value.constraint == "api_users_role_check"
        with pytest.raises(ValueRefused) as value, database_errors("read"):
            conn.execute("SELECT %s::timestamptz + interval '1000000 years'", ("2020-01-01T00:00:00Z",))
        assert value.value.sqlstate is not None and value.value.sqlstate.startswith("22")
        assert value.value.detail == "timestamp out of range"


def test_a_unique_violation_in_a_query_is_the_domain_error(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        create_user(conn, "ana", "operator", [], actor="test")
        with pytest.raises(AlreadyExists) as caught:
            create_user(conn, "ana", "admin", [], actor="test")
    assert caught.value.message == "user 'ana' exists already" and caught.value.field == "name"
    assert caught.value.constraint == "api_users_name_key" and isinstance(caught.value.__cause__, DuplicateKey)


def test_a_value_the_database_refuses_is_invalid(db_url: str) -> None:
    # json.dumps writes the NUL as \\u0000, which jsonb refuses (22P05): the row's fault, so an import goes on.
    body = DeviceCreate.model_validate(device("00000000000000b1", tags={"note": "a\x00b"}))
    with (TestClient(app_for(db_url)) as client, psycopg.connect(db_url, autocommit=True) as conn,
          pytest.raises(Invalid) as caught):
        create_device(conn, body, client.app.state.rules, None, actor="test")  # type: ignore[attr-defined]
    cause = caught.value.__cause__
    assert isinstance(cause, ValueRefused) and cause.sqlstate == "22P05"
    assert caught.value.message == cause.detail == "unsupported Unicode escape sequence"


# --- in the API ------------------------------------------------------------------------------------------------

def test_a_duplicate_user_is_409_with_the_same_body(db_url: str) -> None:
    admin = key(db_url, "root", "admin")
    with TestClient(app_for(db_url)) as client:
        first = client.post("/api/v1/users", headers=admin, json={"name": "ana", "role": "operator"})
        assert first.status_code == 201, first.text
        again = client.post("/api/v1/users", headers=admin, json={"name": "ana", "role": "admin"})
    assert again.status_code == 409
    assert again.json() == {"error": {"code": "conflict", "message": "user 'ana' exists already", "field": "name"}}


def _end_api_sessions(db_url: str) -> None:
    """End the API pool's sessions from the server side, as a database restart or a network cut would."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ioc-api'")
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ioc-api'"
                            ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the API's sessions did not end"
            time.sleep(0.02)


def test_a_connection_lost_mid_request_is_503_with_retry_after(db_url: str) -> None:
    admin = key(db_url, "root", "admin")
    with TestClient(app_for(db_url, api=ApiSettings(pool_size=1, retry_after_s=9))) as client:
        pool = client.app.state.pool  # type: ignore[attr-defined]
        requests: list[Callable[[], Any]] = [
            lambda: client.get("/api/v1/devices", headers=admin),  # the route's connection
            # a request with a body is authenticated by the body guard, before routing: before, a plain 500
            lambda: client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1")),
        ]
        for request in requests:
            pool.wait(10)
            _end_api_sessions(db_url)
            response = request()
            assert response.status_code == 503, response.text
            assert response.json() == {"error": {"code": "unavailable",
                                                 "message": "the database connection was lost; retry"}}
            assert response.headers["retry-after"] == "9"
        pool.wait(10)
        assert client.get("/api/v1/devices", headers=admin).status_code == 200
