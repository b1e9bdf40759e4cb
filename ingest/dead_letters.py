"""Dead letters: every message the ingest could not process, kept with its raw bytes, stage and reason."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateways.chirpstack import clean_text
from gateways.database import Connection

__all__ = ["DeadLetter", "StoredDeadLetter", "fingerprint", "list_dead_letters", "write_dead_letters"]

# crash: the worker died while it processed this message alone (the crash-loop guard, ingest/crash_guard.py).
STAGES = ("parse", "device", "decode", "normalise", "store", "crash")


def fingerprint(topic: str, payload: bytes) -> uuid.UUID:
    """Identity of a message, so a redelivered bad message is recorded once."""
    digest = hashlib.blake2b(topic.encode() + b"\x00" + payload, digest_size=16).digest()
    return uuid.UUID(bytes=digest)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    stage: str
    reason: str
    received_at: datetime
    dev_eui: str | None = None
    deduplication_id: uuid.UUID | None = None
    fingerprint: uuid.UUID = field(default_factory=uuid.uuid4)

    @classmethod
    def of(
        cls,
        topic: str,
        payload: bytes,
        *,
        stage: str,
        reason: str,
        received_at: float,
        dev_eui: str | None = None,
        deduplication_id: uuid.UUID | None = None,
        identity: uuid.UUID | None = None,
    ) -> DeadLetter:
        """``identity`` replaces the fingerprint of ``topic`` and ``payload`` when ``payload`` is only the
        first bytes of the message. Control characters leave the text columns (PostgreSQL refuses a NUL)."""
        return cls(
            topic=clean_text(topic),
            payload=payload,
            stage=stage,
            reason=clean_text(reason[:2000]),
            received_at=datetime.fromtimestamp(received_at, UTC),
            dev_eui=dev_eui,
            deduplication_id=deduplication_id,
            fingerprint=identity or fingerprint(topic, payload),
        )


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    received_at: datetime
    topic: str
    payload: bytes
    stage: str
    reason: str
    dev_eui: str | None
    replay_count: int
    resolved_at: datetime | None


def write_dead_letters(conn: Connection, letters: Sequence[DeadLetter]) -> int:
    """Insert inside the caller's transaction; returns how many were new."""
    if not letters:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO dead_letters (fingerprint, received_at, topic, payload, stage, reason, dev_eui,
                   deduplication_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (fingerprint, stage) DO NOTHING""",
            [
                (d.fingerprint, d.received_at, d.topic, d.payload, d.stage, d.reason, d.dev_eui,
                 d.deduplication_id)
                for d in letters
            ],
            returning=False,
        )
        return max(cur.rowcount, 0)


def list_dead_letters(
    conn: Connection,
    *,
    stage: str | None = None,
    reason_contains: str | None = None,
    ids: list[int] | None = None,
    include_resolved: bool = False,
    limit: int = 100,
) -> list[StoredDeadLetter]:
    clauses = []
    params: list[object] = []
    if not include_resolved:
        clauses.append("resolved_at IS NULL")
    if stage:
        clauses.append("stage = %s")
        params.append(stage)
    if reason_contains:
        clauses.append("reason ILIKE %s")
        params.append(f"%{reason_contains}%")
    if ids:
        clauses.append("id = ANY(%s)")
        params.append(ids)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    params.append(limit)
    rows = conn.execute(
        "SELECT id, received_at, topic, payload, stage, reason, dev_eui, replay_count, resolved_at "
        f"FROM dead_letters {where} ORDER BY id LIMIT %s",
        params,
    ).fetchall()
    return [StoredDeadLetter(*r) for r in rows]
