"""Replay dead letters through the live ingest path and record which now succeed."""

from __future__ import annotations

from dataclasses import dataclass

from gateways.mqtt import InboundMessage
from ingest.dead_letters import StoredDeadLetter, fingerprint
from ingest.processor import BatchProcessor

__all__ = ["ReplayOutcome", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    attempted: int
    resolved: int
    still_failing: int


def replay(processor: BatchProcessor, letters: list[StoredDeadLetter], *, batch_size: int = 1000) -> ReplayOutcome:
    resolved = failing = 0
    for start in range(0, len(letters), batch_size):
        chunk = letters[start : start + batch_size]
        messages = [
            # Not from the broker: no packet id to ack, and no session to match.
            InboundMessage(d.topic, d.payload, mid=0, received_at=d.received_at.timestamp(), session=-1,
                           duplicate=False)
            for d in chunk
        ]
        outcome = processor.process(messages)
        if outcome is None:
            break
        result, _ = outcome
        ok_ids = [d.id for d in chunk if fingerprint(d.topic, d.payload) not in result.failed]
        bad_ids = [d.id for d in chunk if fingerprint(d.topic, d.payload) in result.failed]
        conn = processor.connection()
        with conn.transaction():
            conn.execute(
                """UPDATE dead_letters SET replay_count = replay_count + 1, last_replayed_at = now(),
                       resolved_at = CASE WHEN id = ANY(%s) THEN now() ELSE resolved_at END
                   WHERE id = ANY(%s)""",
                ([*ok_ids], [*ok_ids, *bad_ids]),
            )
        resolved += len(ok_ids)
        failing += len(bad_ids)
    return ReplayOutcome(attempted=resolved + failing, resolved=resolved, still_failing=failing)
