"""The PostgreSQL adapter: connections, and the translation of psycopg errors into ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from ioc_core.errors import FatalError, RetriableError

__all__ = [
    "Connection",
    "ConnectionPool",
    "DatabaseRefused",
    "DatabaseUnavailable",
    "borrow",
    "connect",
    "is_retriable",
    "open_pool",
]

Connection = psycopg.Connection[TupleRow]


class DatabaseUnavailable(RetriableError):
    """The database cannot be reached or dropped the connection; retry later."""


class DatabaseRefused(FatalError):
    """The database answered but refused us (authentication, missing database)."""


# SQLSTATE classes that mean "try again later" rather than "this will never work".
_RETRIABLE_CLASSES = ("08", "53", "57", "40")
_REFUSED = ("28", "3D")


def is_retriable(err: BaseException) -> bool:
    if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
        state = getattr(err, "sqlstate", None)
        return not (state and state[:2] in _REFUSED)
    state = getattr(err, "sqlstate", None)
    return bool(state and state[:2] in _RETRIABLE_CLASSES)


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "ioc") -> Connection:
    """Open a connection; unreachable is retriable, refused credentials or database are fatal."""
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        if "password authentication failed" in text or "does not exist" in text:
            raise DatabaseRefused(f"the database refused the connection: {text}") from err
        raise DatabaseUnavailable(f"cannot reach the database: {text}") from err


def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, name: str = "ioc-api") -> ConnectionPool[Connection]:
    """A pool of autocommit connections; writes use explicit ``transaction()`` blocks."""
    return ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # JIT compiles for queries the planner overestimates (lateral look-ups per device): it adds tens of
        # milliseconds to answers that take a few, so the API's short queries run without it.
        kwargs={"autocommit": True, "application_name": name, "options": "-c jit=off"},
        open=True,
        timeout=10.0,
    )


@contextmanager
def borrow(pool: ConnectionPool[Connection], *, timeout: float) -> Iterator[Connection]:
    """A connection from ``pool``; DatabaseUnavailable when none is free within ``timeout`` seconds (the pool is
    busy, or cannot reach the database), so a caller can answer "retry later" instead of waiting on."""
    try:
        with pool.connection(timeout=timeout) as conn:
            yield conn
    except PoolTimeout as err:
        raise DatabaseUnavailable(f"no database connection within {timeout:g} s: {err}") from err
