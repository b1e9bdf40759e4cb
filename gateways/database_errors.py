"""psycopg errors raised by statements run outside ``gateways/`` turned into the platform's, at the boundary.

Code such as the ingest runs its statements on a ``gateways.database.Connection`` and so meets psycopg's
errors; it wraps each database step in ``translated`` and sees only ``DatabaseUnavailable`` (retry),
``RowRefused`` (skip the message) or ``DatabaseFailed`` (fatal), sorted by ``gateways.database.classify``.
``DATABASE_ERRORS`` catches the three; ``close_quietly`` closes a connection that may already be gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import psycopg

from gateways.database import Connection, DatabaseFailed, DatabaseUnavailable, RowRefused, translate

__all__ = ["DATABASE_ERRORS", "close_quietly", "translated"]

DATABASE_ERRORS = (DatabaseUnavailable, RowRefused, DatabaseFailed)
"""What ``translated`` raises, for callers that react to any of them the same way."""


def _never() -> bool:
    return False


@contextmanager
def translated(what: str, *, broken: Callable[[], bool] = _never) -> Iterator[None]:
    """Raise the platform's error for a psycopg error of the block, ``from`` it; ``what`` names the step.

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
