"""The crash-loop guard's state in the database: whether a worker is running, and the message it tries alone.

A worker that dies while it holds messages (killed by the kernel, a crash in native code, an exception we
did not foresee) leaves them unacknowledged, and the broker hands them to it again, with the DUP flag, when
it comes back. If one of them is what killed it, a supervisor that restarts the worker makes a loop. So:

- at start the worker marks itself running (``begin``); a clean stop clears the mark (``end``). A start that
  finds the mark still set knows the previous run died holding messages, and recovers;
- while recovering, the redelivered (DUP) messages are processed one at a time, and before each one its
  fingerprint is written here (``trying``), on a connection with ``synchronous_commit = off`` (the mark
  must survive our process, not the database server, so it need not wait for the disk);
- a start that finds a fingerprint left behind knows the message the previous run died on, alone: when it
  arrives again it becomes a dead letter at stage ``crash`` without being processed.

So a poison message costs at most two exits: the one in its batch and the one when it is tried alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gateways.database import Connection

__all__ = ["GuardState", "begin", "end", "trying"]


@dataclass(frozen=True, slots=True)
class GuardState:
    died: bool
    """The previous run of this worker did not stop cleanly."""
    killer: uuid.UUID | None
    """The fingerprint of the message the previous run died on while it processed that message alone."""


def begin(conn: Connection, worker: str) -> GuardState:
    """Mark ``worker`` running; returns what its previous run left behind."""
    with conn.transaction():
        row = conn.execute(
            "SELECT running, suspect FROM ingest_guard WHERE worker = %s FOR UPDATE", (worker,)
        ).fetchone()
        conn.execute(
            """INSERT INTO ingest_guard (worker, running, suspect) VALUES (%s, true, NULL)
               ON CONFLICT (worker) DO UPDATE SET running = true, suspect = NULL, updated_at = now()""",
            (worker,),
        )
    died = bool(row and row[0])
    return GuardState(died=died, killer=row[1] if row and died else None)


def trying(conn: Connection, worker: str, suspect: uuid.UUID | None) -> None:
    """Record the message about to be processed alone (None: none is)."""
    conn.execute(
        "UPDATE ingest_guard SET suspect = %s, updated_at = now() WHERE worker = %s", (suspect, worker)
    )


def end(conn: Connection, worker: str) -> None:
    """A clean stop: every message taken was committed and acknowledged, or left for the broker."""
    conn.execute(
        "UPDATE ingest_guard SET running = false, suspect = NULL, updated_at = now() WHERE worker = %s",
        (worker,),
    )
