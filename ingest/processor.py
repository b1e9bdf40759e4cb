"""One batch from messages to committed rows: look-ups, decode, COPY and COMMIT, retries and isolation.

``BatchProcessor`` is what the worker (``ingest.worker``) and dead-letter replay (``ingest.replay``) run. No
message can stop it: what one message raises makes it a dead letter; database errors are sorted by SQLSTATE
(``gateways.database.classify``): connection-class errors are retried with backoff, a refusal of a batch's
values (a look-up, an enrolment or the write) is narrowed down by halving to the message at fault, and
anything else is fatal.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from gateways.database import (
    Connection,
    DatabaseError,
    DatabaseUnavailable,
    RowRefused,
    close_quietly,
    connect,
    database_errors,
)
from gateways.migrations import Mode, storage_mode
from gateways.mqtt import InboundMessage
from ingest import crash_guard
from ingest.dead_letters import DeadLetter, write_dead_letters
from ingest.devices import DeviceDirectory, DeviceRef, GatewayDirectory
from ingest.pipeline import (
    Batch,
    CodecLookup,
    EdgeLimits,
    Parsed,
    build_rows,
    device_infos,
    gateways_heard,
    parse_messages,
)
from ingest.stats import IngestStats
from ingest.writer import WriteResult, write_batch
from ioc_core.errors import FatalError

__all__ = ["BatchProcessor", "NotMigrated"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_V = TypeVar("_V")


class NotMigrated(FatalError):
    """The database has no platform schema yet."""


class _Link:
    """One database connection, opened on demand and dropped when it fails."""

    def __init__(self, dsn: str, name: str) -> None:
        self._dsn = dsn
        self._name = name
        self.conn: Connection | None = None

    def get(self) -> Connection:
        if self.conn is None or self.conn.closed:
            # Autocommit: every write goes through an explicit ``transaction()`` block, and plain reads
            # must not leave a transaction open around them.
            self.conn = connect(self._dsn, autocommit=True, application_name=self._name)
        return self.conn

    @property
    def broken(self) -> bool:
        return self.conn is None or self.conn.closed or self.conn.broken

    def drop(self) -> None:
        close_quietly(self.conn)
        self.conn = None


class BatchProcessor:
    """Turns a list of messages into committed rows, retrying while the database is away.

    Two steps, so the worker can overlap them: ``prepare`` (parse, look up devices, decode, normalise;
    CPU work plus rare look-ups on its own connection) and ``commit`` (COPY and COMMIT on another
    connection; mostly waiting for PostgreSQL). ``process`` runs both, for dead-letter replay, so a
    replayed message takes exactly the path a live one takes.
    """

    def __init__(
        self, dsn: str, codecs: CodecLookup, *, max_backoff_s: float = 30.0, stop_grace_s: float = 30.0,
        limits: EdgeLimits | None = None,
    ) -> None:
        self.codecs = codecs
        self.limits = limits or EdgeLimits()
        self.devices = DeviceDirectory(codecs)
        self.gateways = GatewayDirectory()
        # One connection per thread that talks to the database: a psycopg connection is safe to share,
        # but its transactions are not, and a stats insert inside a batch transaction would commit it.
        self._lookup = _Link(dsn, "ioc-ingest-lookup")
        self._writer = _Link(dsn, "ioc-ingest")
        self._stats = _Link(dsn, "ioc-ingest-stats")
        self._guard = _Link(dsn, "ioc-ingest-guard")
        self._mode: Mode | None = None
        self._max_backoff_s = max_backoff_s
        # How long to keep retrying a batch after a stop was asked for; then the broker redelivers it.
        self._stop_grace_s = stop_grace_s

    def connection(self) -> Connection:
        """The writing connection; checks once that the schema is installed."""
        conn = self._writer.get()
        if self._mode is None:
            mode = storage_mode(conn)
            if mode is None:
                raise NotMigrated("the database has no IOC schema yet: run `ioc db migrate` first")
            self._mode = mode
        return conn

    def stats_connection(self) -> Connection | None:
        """A connection for statistics only, or None while the database is away."""
        try:
            return self._stats.get()
        except DatabaseUnavailable:
            self._stats.drop()
            return None

    def drop_stats_connection(self) -> None:
        self._stats.drop()

    def close(self) -> None:
        self._lookup.drop()
        self._writer.drop()
        self._stats.drop()
        self._guard.drop()

    # --- the crash-loop guard's marks (ingest.crash_guard), on a connection of their own --------------------
    def _guard_conn(self) -> Connection:
        fresh = self._guard.conn is None or self._guard.conn.closed
        conn = self._guard.get()
        if fresh:
            # The mark must outlive our process, not the server: no need to wait for the disk.
            conn.execute("SET synchronous_commit = off")
        return conn

    def guard_begin(self, worker: str, stop: threading.Event | None = None) -> crash_guard.GuardState | None:
        return self._retrying(lambda: crash_guard.begin(self._guard_conn(), worker), self._guard, 0, stop, None,
                              "crash guard")

    def guard_trying(self, worker: str, suspect: uuid.UUID | None, stop: threading.Event | None = None) -> None:
        self._retrying(lambda: crash_guard.trying(self._guard_conn(), worker, suspect), self._guard, 1, stop, None,
                       "crash guard")

    def guard_end(self, worker: str) -> None:
        try:
            with database_errors("crash guard"):
                crash_guard.end(self._guard_conn(), worker)
        except DatabaseError as err:
            # The next start then recovers needlessly (slower for its first messages), nothing worse.
            log.warning("could not record the clean stop: %s", _first_line(err))
            self._guard.drop()

    def store_dead_letters(self, letters: list[DeadLetter], stop: threading.Event | None = None) -> WriteResult | None:
        """Write dead letters alone (the crash-loop guard's)."""

        def write() -> int:
            conn = self.connection()
            with conn.transaction():
                return write_dead_letters(conn, letters)

        written = self._retrying(write, self._writer, len(letters), stop, None)
        if written is None:
            return None
        return WriteResult(dead_letters=written, failed=frozenset(d.fingerprint for d in letters))

    def _retrying(
        self,
        step: Callable[[], _T],
        link: _Link,
        what: int,
        stop: threading.Event | None,
        stats: IngestStats | None,
        label: str = "batch write",
    ) -> _T | None:
        """Run ``step`` until it succeeds; None when ``stop`` is set and the database stays away.

        The database's errors are sorted by SQLSTATE where they are raised (``translated``):
        connection-class errors (or any error of a connection that broke) retry; a refusal of the values
        raises ``RowRefused``, anything else ``DatabaseFailed``. An exception that is not the database's (a
        value the driver cannot dump) is a refusal of the values too, unless the link broke.
        """
        backoff = 0.5
        stop_deadline: float | None = None
        while True:
            try:
                with database_errors(label, broken=lambda: link.broken):
                    return step()
            except (RowRefused, FatalError):
                raise
            except DatabaseUnavailable as err:
                problem: BaseException = err
            except Exception as err:
                if not link.broken:
                    raise RowRefused(f"values the database driver cannot send: {type(err).__name__}: {err}") \
                        from err
                problem = err
            link.drop()
            if link is self._lookup:
                # Cached ids may refer to rows that a restored database no longer has.
                self.devices.invalidate()
            if stats:
                stats.retried()
            if stop is not None and stop.is_set():
                stop_deadline = stop_deadline or time.monotonic() + self._stop_grace_s
                if time.monotonic() > stop_deadline:
                    log.error("giving up on %d messages at shutdown; the broker will redeliver them", what)
                    return None
            log.warning("database unavailable (%s); keeping %d messages, retrying in %.1f s",
                        _first_line(problem), what, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def prepare(
        self, messages: list[InboundMessage], *, stop: threading.Event | None = None,
        stats: IngestStats | None = None,
    ) -> Batch | None:
        parsed, dead = parse_messages(messages, self.limits)
        infos, heard = device_infos(parsed), gateways_heard(parsed)
        what = len(messages)

        def look_up() -> tuple[dict[str, DeviceRef], dict[str, int]]:
            conn = self._lookup.get()
            return self.devices.resolve(conn, infos), self.gateways.resolve(conn, heard)

        try:
            found = self._retrying(look_up, self._lookup, what, stop, stats, "device look-up")
        except RowRefused:
            found = None
            # One device or gateway of the batch has values the database refuses (enrolment): find it.
            devices = self._narrow(infos, lambda part: self.devices.resolve(self._lookup.get(), part), what, stop,
                                   stats)
            gateways = self._narrow(heard, lambda part: self.gateways.resolve(self._lookup.get(), part), what,
                                    stop, stats)
            if devices is None or gateways is None:
                return None
            parsed = self._drop_refused(parsed, devices[1], gateways[1], dead)
            found = devices[0], gateways[0]
        if found is None:
            return None
        return build_rows(parsed, found[0], found[1], self.codecs, messages=messages, dead_letters=dead)

    def _narrow(
        self,
        items: dict[str, _V],
        resolve: Callable[[dict[str, _V]], dict[str, _T]],
        what: int,
        stop: threading.Event | None,
        stats: IngestStats | None,
    ) -> tuple[dict[str, _T], dict[str, str]] | None:
        """Resolve ``items`` in halves until each refusal is pinned on one key; (found, refused key -> reason)."""
        found: dict[str, _T] = {}
        refused: dict[str, str] = {}
        parts = [items]
        while parts:
            part = parts.pop()
            if not part:
                continue

            def attempt(chunk: dict[str, _V] = part) -> dict[str, _T]:
                return resolve(chunk)

            try:
                got = self._retrying(attempt, self._lookup, what, stop, stats, "device look-up")
            except RowRefused as err:
                keys = list(part)
                if len(keys) == 1:
                    refused[keys[0]] = err.reason
                else:
                    middle = len(keys) // 2
                    parts += [{k: part[k] for k in keys[:middle]}, {k: part[k] for k in keys[middle:]}]
                continue
            if got is None:
                return None
            found.update(got)
        return found, refused

    @staticmethod
    def _drop_refused(
        parsed: list[Parsed], devices: dict[str, str], gateways: dict[str, str], dead: list[DeadLetter]
    ) -> list[Parsed]:
        """The messages whose device or gateway the database refused become dead letters at stage device."""
        kept: list[Parsed] = []
        for p in parsed:
            info = p.event.device_info
            assert info is not None
            reason = devices.get(info.dev_eui)
            if reason is None:
                for rx in getattr(p.event, "rx_info", ()):
                    reason = gateways.get(rx.gateway_id)
                    if reason is not None:
                        reason = f"gateway {rx.gateway_id}: {reason}"
                        break
            else:
                reason = f"device {info.dev_eui}: {reason}"
            if reason is None:
                kept.append(p)
                continue
            m = p.message
            log.warning("dead letter at stage device: %s", reason)
            dead.append(DeadLetter.of(m.topic, m.payload, stage="device", reason=reason, received_at=m.received_at,
                                      dev_eui=info.dev_eui))
        return kept

    def commit(
        self, batch: Batch, *, stop: threading.Event | None = None, stats: IngestStats | None = None
    ) -> WriteResult | None:
        def write() -> WriteResult:
            conn = self.connection()
            assert self._mode is not None
            return write_batch(conn, batch, self._mode)

        try:
            return self._retrying(write, self._writer, len(batch.messages), stop, stats)
        except RowRefused as refused:
            return self._isolate(batch.messages, refused)

    def process(
        self, messages: list[InboundMessage], *, stop: threading.Event | None = None,
        stats: IngestStats | None = None,
    ) -> tuple[WriteResult, Sequence[float]] | None:
        """Prepare and commit ``messages``; None when giving up at shutdown while the database is away."""
        batch = self.prepare(messages, stop=stop, stats=stats)
        if batch is None:
            return None
        result = self.commit(batch, stop=stop, stats=stats)
        return None if result is None else (result, batch.event_times)

    def _isolate(self, messages: list[InboundMessage], err: RowRefused) -> WriteResult:
        """A batch the database refuses for a reason other than availability: find the message at fault.

        Halving keeps the good messages flowing; the one that still fails alone becomes a dead letter.
        """
        if len(messages) == 1:
            message = messages[0]
            reason = f"database refused the row: {err.reason}"
            letter = DeadLetter.of(message.topic, message.payload, stage="store", reason=reason,
                                   received_at=message.received_at)
            log.warning("stored a message as a dead letter: %s", reason)
            result = self.store_dead_letters([letter])
            assert result is not None  # no stop event: retries until the database answers
            return result
        middle = len(messages) // 2
        total = WriteResult()
        for half in (messages[:middle], messages[middle:]):
            batch = self.prepare(half)
            result = None if batch is None else self.commit(batch)
            if result is not None:
                total += result
        return total


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
