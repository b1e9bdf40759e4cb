"""The PostgreSQL adapter: connections, and the translation of psycopg errors into ours.

A psycopg error is sorted by its SQLSTATE class, never by its message text (``classify``):

    retry    08 connection, 53 insufficient resources, 57 operator intervention, 40 transaction rollback,
             and errors without a SQLSTATE on a connection that is gone   -> DatabaseUnavailable
    refused  22 data exception, 23 integrity violation, 54 program limit (an index row too large), and
             psycopg's own client-side DataError (a NUL in a string)       -> RowRefused (skippable)
    fatal    everything else (42 undefined table, 28 authentication, ...)  -> DatabaseFailed
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from ioc_core.errors import FatalError, RetriableError, SkippableError

__all__ = [
    "Connection",
    "ConnectionPool",
    "DatabaseFailed",
    "DatabaseRefused",
    "DatabaseUnavailable",
    "Reaction",
    "RowRefused",
    "borrow",
    "classify",
    "connect",
    "is_retriable",
    "open_pool",
    "translate",
]

Connection = psycopg.Connection[TupleRow]


class DatabaseUnavailable(RetriableError):
    """The database cannot be reached or dropped the connection; retry later."""


class DatabaseRefused(FatalError):
    """The database answered but refused us (authentication, missing database)."""


class RowRefused(SkippableError):
    """The database refused the values of one message (a data or integrity error): that message is at fault."""

    def __init__(self, reason: str, *, stage: str = "store") -> None:
        super().__init__(reason, stage=stage)


class DatabaseFailed(FatalError):
    """The database answered with an error that neither retrying nor skipping a message fixes."""


Reaction = Literal["retry", "refused", "fatal"]

# SQLSTATE classes that mean "try again later" rather than "this will never work".
_RETRIABLE_CLASSES = frozenset({"08", "53", "57", "40"})
# Classes caused by the values of a statement: the rows of one message, when we bisect down to it. 54 is
# "program limit exceeded", which the ingest meets only as 54000 "index row size exceeds maximum": data.
_REFUSED_ROW_CLASSES = frozenset({"22", "23", "54"})
_REFUSED = ("28", "3D")


def classify(err: BaseException) -> Reaction:
    """What the caller should do about ``err``, from its SQLSTATE class (see the module docstring)."""
    state = getattr(err, "sqlstate", None)
    if state:
        cls = state[:2]
        if cls in _RETRIABLE_CLASSES:
            return "retry"
        if cls in _REFUSED_ROW_CLASSES:
            return "refused"
        return "fatal"
    if isinstance(err, psycopg.DataError):
        # Raised by psycopg itself before anything is sent, e.g. a NUL character in a text parameter.
        return "refused"
    if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
        return "retry"  # no SQLSTATE: the connection broke before the server could answer
    return "fatal"


def is_retriable(err: BaseException) -> bool:
    if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
        state = getattr(err, "sqlstate", None)
        if state and state[:2] in _REFUSED:
            return False
    return classify(err) == "retry"


def translate(err: psycopg.Error, what: str) -> DatabaseUnavailable | RowRefused | DatabaseFailed:
    """Our error for a psycopg error, to be raised ``from err``."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    state = getattr(err, "sqlstate", None) or "no SQLSTATE"
    reaction = classify(err)
    if reaction == "retry":
        return DatabaseUnavailable(f"{what}: database unavailable ({state}): {text}")
    if reaction == "refused":
        return RowRefused(f"{what}: database refused the values ({state}): {text}")
    return DatabaseFailed(f"{what}: database error ({state}): {text}")


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "ioc") -> Connection:
    """Open a connection; unreachable is retriable, refused credentials or database are fatal. The messages
    name IOC_DATABASE_URL, where every ``dsn`` of the platform comes from, so the reader knows what to fix."""
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        if "password authentication failed" in text or "does not exist" in text:
            raise DatabaseRefused(f"the database refused the connection (check IOC_DATABASE_URL): {text}") from err
        raise DatabaseUnavailable(f"cannot reach the database (check IOC_DATABASE_URL): {text}") from err


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
