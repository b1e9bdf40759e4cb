"""psycopg's errors become ours in one place (``gateways.database.database_errors``), sorted by SQLSTATE alone."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from gateways.database import (
    ConnectionLost,
    ConstraintViolated,
    DatabaseError,
    DatabaseFailed,
    DatabaseUnavailable,
    DuplicateKey,
    RowRefused,
    ValueRefused,
    database_errors,
)
from ioc_core.errors import FatalError, RetriableError, SkippableError


def _raised(err: psycopg.Error) -> DatabaseError:
    with pytest.raises(DatabaseError) as caught, database_errors("store the thing"):
        raise err
    assert caught.value.__cause__ is err
    return caught.value


@pytest.mark.parametrize("state", ["08006", "08P01", "57P01", "57P02", "57P05"])
def test_a_session_the_server_ended_is_a_lost_connection(state: str) -> None:
    ours = _raised(errors.lookup(state)("the server went away"))
    assert isinstance(ours, ConnectionLost) and isinstance(ours, RetriableError)
    assert ours.sqlstate == state and ours.detail == "the server went away"


def test_a_broken_connection_without_sqlstate_is_lost() -> None:
    for err in (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
                psycopg.InterfaceError("the connection is closed")):
        ours = _raised(err)
        assert isinstance(ours, ConnectionLost) and ours.sqlstate is None


@pytest.mark.parametrize("state", ["53300", "57014", "40001", "40P01"])
def test_a_busy_database_is_unavailable_with_the_connection_kept(state: str) -> None:
    ours = _raised(errors.lookup(state)())
    assert isinstance(ours, DatabaseUnavailable) and not isinstance(ours, ConnectionLost)


def test_a_unique_violation_is_a_duplicate_key() -> None:
    ours = _raised(errors.UniqueViolation("duplicate key value violates unique constraint \"api_users_name_key\""))
    assert isinstance(ours, DuplicateKey) and isinstance(ours, ConstraintViolated)
    assert isinstance(ours, RowRefused) and isinstance(ours, SkippableError) and ours.stage == "store"
    assert str(ours).startswith("store the thing: database refused the values (23505): duplicate key")


@pytest.mark.parametrize("state", ["23514", "23502", "23503"])
def test_other_integrity_violations_are_a_broken_constraint(state: str) -> None:
    ours = _raised(errors.lookup(state)())
    assert isinstance(ours, ConstraintViolated) and not isinstance(ours, DuplicateKey)


@pytest.mark.parametrize("err", [errors.lookup("22008")("date/time field value out of range"),
                                 errors.lookup("22P05")("unsupported Unicode escape sequence"),
                                 errors.lookup("54000")("index row size 3000 exceeds btree version 4 maximum 2704"),
                                 psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")])
def test_a_data_exception_is_a_refused_value(err: psycopg.Error) -> None:
    ours = _raised(err)
    assert isinstance(ours, ValueRefused) and ours.detail == str(err)


def test_the_rest_is_fatal() -> None:
    for err in (errors.lookup("42P01")("relation \"nowhere\" does not exist"), psycopg.ProgrammingError("bad")):
        assert isinstance(_raised(err), DatabaseFailed)
    assert issubclass(DatabaseFailed, FatalError)


def test_ours_and_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), database_errors("look up"):
        raise KeyError("x")
