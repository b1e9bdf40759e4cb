"""Binary COPY of row tuples into a table, and the first attempt of an idempotent insert that COPY makes.

The statement is built here with ``psycopg.sql`` (quoted identifiers); the rows are plain tuples whose
PostgreSQL types the caller names, so psycopg dumps them without guessing. Errors are psycopg's, left to the
caller's translation (``gateways.database_errors.translated``), except the one ``copy_new_rows`` expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from gateways.database import Connection

__all__ = ["copy_new_rows", "copy_rows"]


def copy_rows(conn: Connection, table: str, columns: Sequence[str], types: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> None:
    """COPY ``rows`` (tuples in the order of ``columns``, of the PostgreSQL ``types``) into ``table``."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def copy_new_rows(conn: Connection, table: str, columns: Sequence[str], types: Sequence[str],
                  rows: Iterable[Sequence[Any]]) -> bool:
    """``copy_rows`` in a savepoint of the open transaction; False when a row repeats a unique key.

    Then the savepoint is rolled back, nothing of the COPY stays, and the caller takes its idempotent path.
    """
    try:
        with conn.transaction():
            copy_rows(conn, table, columns, types, rows)
    except psycopg.errors.UniqueViolation:
        return False
    return True
