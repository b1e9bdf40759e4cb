"""PostgreSQL LISTEN/NOTIFY as a wake-up call: one process says "there is new data", another wakes up for it.

A notification sent inside a transaction is delivered only when that transaction commits, and then once: a
listener never hears of data it cannot see yet, nor of data that was rolled back. Notifications carry no
payload here: the listener reads what it needs from the tables, so a lost or merged notification costs only
latency (the listener's fallback timer covers it), never data.
"""

from __future__ import annotations

from psycopg import sql

from gateways.database import Connection, database_errors

__all__ = ["READINGS", "Listener", "notify"]

READINGS = "ioc_readings"
"""The channel the ingest notifies after a commit that stored measurements."""


def notify(conn: Connection, channel: str) -> None:
    """Queue a notification on ``channel`` in ``conn``'s current transaction (sent on its commit; PostgreSQL
    folds repeats within one transaction into one). The database's errors are psycopg's, for the caller's
    ``database_errors``, as for any other statement of its transaction."""
    conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(channel)))


class Listener:
    """A connection listening on one channel (autocommit, so notifications arrive while it idles)."""

    def __init__(self, conn: Connection, channel: str) -> None:
        self._conn = conn
        with database_errors(f"listening on {channel}", broken=lambda: conn.broken):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout_s: float) -> int:
        """Wait at most ``timeout_s`` for notifications; how many arrived (0 after a timeout). Returns as soon as
        one arrives, with those already received, also while the connection ran other statements. A broken
        connection raises ``DatabaseUnavailable``."""
        conn = self._conn
        count = 0
        with database_errors("waiting for notifications", broken=lambda: conn.broken):
            for _ in conn.notifies(timeout=max(timeout_s, 0.0), stop_after=1):
                count += 1
            if count:
                for _ in conn.notifies(timeout=0):
                    count += 1
        return count
