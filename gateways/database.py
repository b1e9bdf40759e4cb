"""The PostgreSQL adapter: connections, and the one translation of psycopg errors into ours (``database_errors``).

A psycopg error is sorted by its SQLSTATE class, never by its message text (``classify``, ``translate``):

    reaction  SQLSTATE                                                       ours
    retry     08 connection exception, 57P0x shutdown (the server ended the  ConnectionLost
              session), or no SQLSTATE on a connection that broke
              53 insufficient resources, 57 operator intervention,           DatabaseUnavailable
              40 transaction rollback
    refused   23505 unique violation                                         DuplicateKey (``constraint``)
              other 23 integrity constraint violations                       ConstraintViolated (``constraint``)
              22 data exception, psycopg's own DataError (a NUL), and        ValueRefused
              54 program limit (a value too large for its index row)
    fatal     everything else (42 undefined table, ...)                      DatabaseFailed

Ours, and where they sit in the platform's tree (``ioc_core.errors``):

    DatabaseError                 mixin of every error below: ``sqlstate`` and ``detail`` (the driver's first line)
    DatabaseUnavailable           RetriableError: keep the work, try again later
    └── ConnectionLost            the connection broke while in use
    RowRefused                    SkippableError: the values of one message (or request) are at fault
    ├── ConstraintViolated
    │   └── DuplicateKey
    └── ValueRefused
    DatabaseFailed                FatalError: neither retrying nor skipping fixes it
    DatabaseRefused               FatalError: ``connect`` was refused (authentication, no such database)

``borrow`` translates whatever escapes the block it lends a connection to, so the API's routes meet only these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Literal

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from ioc_core.errors import FatalError, IocError, RetriableError, SkippableError

__all__ = [
    "Connection",
    "ConnectionLost",
    "ConnectionPool",
    "ConstraintViolated",
    "DatabaseError",
    "DatabaseFailed",
    "DatabaseRefused",
    "DatabaseUnavailable",
    "DuplicateKey",
    "Reaction",
    "RowRefused",
    "ValueRefused",
    "borrow",
    "classify",
    "close_quietly",
    "connect",
    "database_errors",
    "is_retriable",
    "open_pool",
    "translate",
]

Connection = psycopg.Connection[TupleRow]


class DatabaseError(IocError):
    """Mixin of every error this module raises, whatever the reaction: what the database said, for a report."""

    sqlstate: str | None = None
    """The SQLSTATE of the driver's error; None when it had none (a broken connection, a check in psycopg)."""
    detail: str = ""
    """The first line of the driver's message, which ``str()`` embeds with what was being done."""


class DatabaseUnavailable(RetriableError, DatabaseError):
    """The database cannot be reached, is short of resources or gave up a transaction; retry later."""


class ConnectionLost(DatabaseUnavailable):
    """The connection broke while in use (a restart, a network cut, the session ended by the server)."""


class DatabaseRefused(FatalError, DatabaseError):
    """The database answered but refused us (authentication, missing database)."""


class RowRefused(SkippableError, DatabaseError):
    """The database refused the values of one message (a data or integrity error): that message is at fault."""

    def __init__(self, reason: str, *, stage: str = "store") -> None:
        super().__init__(reason, stage=stage)


class ConstraintViolated(RowRefused):
    """A row breaks a constraint (class 23: check, not null, foreign key, exclusion, unique)."""

    constraint: str | None = None
    """The constraint's name, as the server reports it."""


class DuplicateKey(ConstraintViolated):
    """23505: a row with the same unique key exists already."""


class ValueRefused(RowRefused):
    """A value the database cannot take: class 22 (a time out of range, a bad escape), 54 (too large for its
    index row), or a NUL that psycopg refuses before sending."""


class DatabaseFailed(FatalError, DatabaseError):
    """The database answered with an error that neither retrying nor skipping a message fixes."""


Reaction = Literal["retry", "refused", "fatal"]

# SQLSTATE classes that mean "try again later" rather than "this will never work".
_RETRIABLE_CLASSES = frozenset({"08", "53", "57", "40"})
# Classes caused by the values of a statement: the rows of one message, when we bisect down to it. 54 is
# "program limit exceeded", which the ingest meets only as 54000 "index row size exceeds maximum": data.
_REFUSED_ROW_CLASSES = frozenset({"22", "23", "54"})
# Classes of a server refusing a connection for good: 28 invalid authorization (a wrong password, an unknown role,
# no pg_hba.conf entry), 3D invalid catalog name (no such database).
_CONNECT_REFUSED_CLASSES = frozenset({"28", "3D"})


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
    return classify(err) == "retry"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def translate(err: psycopg.Error, what: str) -> DatabaseUnavailable | RowRefused | DatabaseFailed:
    """Our error for a psycopg error, to be raised ``from err``; ``what`` says what was being done."""
    text = _first_line(err)
    state = err.sqlstate
    shown = state or "no SQLSTATE"
    ours: DatabaseUnavailable | RowRefused | DatabaseFailed
    reaction = classify(err)
    if reaction == "retry":
        lost = state is None or state[:2] == "08" or state.startswith("57P")
        ours = (ConnectionLost if lost else DatabaseUnavailable)(f"{what}: database unavailable ({shown}): {text}")
    elif reaction == "refused":
        message = f"{what}: database refused the values ({shown}): {text}"
        if state is not None and state[:2] == "23":
            ours = (DuplicateKey if state == "23505" else ConstraintViolated)(message)
            ours.constraint = err.diag.constraint_name
        else:
            ours = ValueRefused(message)
    else:
        ours = DatabaseFailed(f"{what}: database error ({shown}): {text}")
    ours.sqlstate = state
    ours.detail = text
    return ours


def _never() -> bool:
    return False


@contextmanager
def database_errors(what: str, *, broken: Callable[[], bool] = _never) -> Iterator[None]:
    """Run the block with psycopg's errors turned into ours (``translate``), like httpx's ``map_exceptions``;
    ``what`` names the step in the message.

    ``broken`` tells whether the block's connection broke: then the error is ``DatabaseUnavailable`` whatever
    its SQLSTATE says, since psycopg reports the break itself and a new connection may well succeed.
    """
    try:
        yield
    except psycopg.Error as err:
        if broken():
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DatabaseUnavailable(f"{what}: the connection broke: {text}") from err
        raise translate(err, what) from err


def close_quietly(conn: Connection | None) -> None:
    """Close ``conn``; a connection that is already broken may fail to close, which changes nothing."""
    if conn is not None:
        with suppress(psycopg.Error):
            conn.close()


# What the server says when it refuses a connection, by the SQLSTATE it sends with it (see ``_connect_sqlstate``).
_CONNECT_REFUSALS = (
    ("28P01", re.compile(r'password authentication failed for user "')),
    ("28000", re.compile(r'role ".*" does not exist|no pg_hba\.conf entry for|pg_hba\.conf rejects connection')),
    ("3D000", re.compile(r'database ".*" does not exist')),
)


def _connect_sqlstate(err: psycopg.Error) -> str | None:
    """The SQLSTATE of a failed connection attempt.

    psycopg gives none (checked with psycopg 3.3.9 and libpq 18 against a local PostgreSQL 15: a wrong password, an
    unknown role and a missing database all raise OperationalError with ``sqlstate`` and ``diag.sqlstate`` None).
    libpq reads the server's ErrorResponse during the start-up, code included, but keeps only its text; psycopg
    issue #1188 asks for it. Until then the code is taken, least fragile first, from the error itself (a later
    psycopg), from libpq's own flag for a password that was needed and not given (``PQconnectionNeedsPassword``,
    which libpq-fe.h says to use instead of its message), and last from the server's message, which PostgreSQL
    has worded the same since 9.x and translates only when the server's ``lc_messages`` is not English.
    """
    if err.sqlstate:
        return err.sqlstate
    if err.pgconn is not None and err.pgconn.needs_password:
        return "28P01"
    text = str(err)
    for state, pattern in _CONNECT_REFUSALS:
        if pattern.search(text):
            return state
    return None


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "ioc") -> Connection:
    """Open a connection; unreachable is retriable, refused credentials or database are fatal. The messages
    name IOC_DATABASE_URL, where every ``dsn`` of the platform comes from, so the reader knows what to fix."""
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except psycopg.Error as err:  # OperationalError today; the class of its SQLSTATE once psycopg passes that on
        text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        state = _connect_sqlstate(err)
        refused = state is not None and state[:2] in _CONNECT_REFUSED_CLASSES
        ours: DatabaseRefused | DatabaseUnavailable
        if refused:
            ours = DatabaseRefused(f"the database refused the connection (check IOC_DATABASE_URL): {text}")
        else:
            ours = DatabaseUnavailable(f"cannot reach the database (check IOC_DATABASE_URL): {text}")
        ours.sqlstate = state
        ours.detail = text
        raise ours from err


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
def borrow(pool: ConnectionPool[Connection], *, timeout: float, what: str = "query") -> Iterator[Connection]:
    """A connection from ``pool``; DatabaseUnavailable when none is free within ``timeout`` seconds (the pool is
    busy, or cannot reach the database), so a caller can answer "retry later" instead of waiting on. A psycopg
    error that escapes the block is translated (``database_errors``): a connection that broke mid-request
    arrives as ConnectionLost."""
    with database_errors(what):
        try:
            with pool.connection(timeout=timeout) as conn:
                yield conn
        except PoolTimeout as err:  # an OperationalError too, so caught before database_errors sees it
            raise DatabaseUnavailable(f"no database connection within {timeout:g} s: {err}") from err
