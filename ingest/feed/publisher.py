"""The open MQTT feed: every committed reading of a public device, as a retained SenML pack.

The committing thread only hands the batch over (``offer``, a few list operations); a thread of the feed's
own turns its rows into packs and writes them through a separate MQTT connection. Between them sits a
bounded queue: when the broker is slow or away, the oldest readings waiting are dropped and counted, and the
ingest never waits. The device's description (name, kind, zone, position, the ``public`` flag) comes from
the database, cached and reloaded when the registry changes; private, unregistered and decommissioned
devices are never published, and a device that leaves the feed (made private, moved) has its retained
reading cleared. A reading older than one already published for its device is published without the retain
flag, so the retained message stays the latest reading. Status and zone summaries: ``ingest.feed.status``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateways.database import Connection, DatabaseError, close_quietly, connect, database_errors
from gateways.mqtt import MqttBroadcaster
from ingest.feed.payloads import FeedDevice, SenMLPacker
from ingest.feed.status import StatusPublisher
from ingest.rows import MEASUREMENT_DEVICE_ID, MEASUREMENT_TIME, MeasurementRow
from ingest.writer import WriteResult

__all__ = ["FeedConfig", "FeedDirectory", "OpenFeed"]

log = logging.getLogger(__name__)

_DEVICES_SQL = """
SELECT d.id, d.dev_eui, d.name, d.kind, z.code, z.name, d.latitude, d.longitude
FROM devices d JOIN zones z ON z.id = d.zone_id
WHERE d.status = 'registered' AND d.public"""
# Cheap enough to ask every few seconds: any registry edit (the API sets updated_at), new device or new zone
# version changes it, and only then is the whole table read again.
_CHANGED_SQL = """
SELECT (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') FROM devices)
       || '/' || (SELECT coalesce(max(id), 0) FROM zones)"""


@dataclass(frozen=True, slots=True)
class FeedConfig:
    prefix: str = "ioc/v1"
    queue_size: int = 50_000
    """Readings (measurement sets) that may wait for the broker; beyond it the oldest are dropped."""
    qos: int = 0
    status_interval_s: float = 30.0
    """How often device health and zone summaries are computed; 0 turns them off."""
    check_s: float = 5.0
    """How often the registry is asked whether devices or zones changed (a cheap query)."""
    reload_s: float = 600.0
    """Reload the devices this often even when nothing seemed to change (edits that bypassed updated_at)."""
    log_s: float = 60.0


class FeedDirectory:
    """Device id → ``FeedDevice`` for the devices the feed may show, reloaded when the registry changes."""

    def __init__(self, prefix: str, *, check_s: float = 5.0, reload_s: float = 600.0) -> None:
        self._prefix = prefix
        self._check_s = check_s
        self._reload_s = reload_s
        self.devices: dict[int, FeedDevice] = {}
        self._stamp: Any = None
        self._checked_at = -1e18
        self._loaded_at = -1e18
        self._unsafe_logged: set[str] = set()

    def refresh(self, conn: Connection) -> list[FeedDevice]:
        """Reload when due or changed; returns the devices that left the feed or changed topic."""
        now = time.monotonic()
        if now - self._checked_at < self._check_s:
            return []
        self._checked_at = now
        row = conn.execute(_CHANGED_SQL).fetchone()
        stamp = row[0] if row else None
        if stamp == self._stamp and now - self._loaded_at < self._reload_s:
            return []
        devices: dict[int, FeedDevice] = {}
        for ident, eui, name, kind, zone, zone_name, lat, lon in conn.execute(_DEVICES_SQL).fetchall():
            device = FeedDevice.of(self._prefix, ident, eui, name, kind, zone, zone_name, lat, lon)
            if device is not None:
                devices[ident] = device
            elif kind and eui not in self._unsafe_logged:
                self._unsafe_logged.add(eui)
                log.warning("device %s stays off the feed: kind %r or zone %r cannot be a topic level",
                            eui, kind, zone)
        gone = [old for ident, old in self.devices.items()
                if ident not in devices or devices[ident].topic != old.topic]
        self.devices, self._stamp, self._loaded_at = devices, stamp, now
        return gone


_Item = tuple[Mapping[uuid.UUID, Sequence[MeasurementRow]], tuple[uuid.UUID, ...]]


class OpenFeed:
    """Publishes committed readings; ``offer`` is called by the committing thread after the MQTT ack."""

    def __init__(self, dsn: str, broadcaster: MqttBroadcaster, config: FeedConfig) -> None:
        self.config = config
        self._dsn = dsn
        self._broadcaster = broadcaster
        self.directory = FeedDirectory(config.prefix, check_s=config.check_s, reload_s=config.reload_s)
        self._packer = SenMLPacker()
        self._queue: deque[_Item] = deque()
        self._waiting = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._latest: dict[int, float] = {}
        self._status: StatusPublisher | None = None
        self._status_stop = threading.Event()
        self._status_thread: threading.Thread | None = None
        # Totals since start: readings published, dropped from a full queue, refused by an absent or slow
        # broker, and readings of devices that are not on the feed.
        self.published = 0
        self.dropped = 0
        self.refused = 0
        self.skipped = 0
        self._logged = (0, 0, 0)
        self._logged_at = time.monotonic()

    # --- the committing thread -------------------------------------------------------------------------
    def offer(self, result: WriteResult) -> None:
        """Hand over a committed batch's new uplinks; never blocks on the broker."""
        if not result.stored:
            return
        with self._cond:
            self._queue.append((result.readings, result.stored))
            self._waiting += len(result.stored)
            while self._waiting > self.config.queue_size and len(self._queue) > 1:
                _, stored = self._queue.popleft()
                self._waiting -= len(stored)
                self.dropped += len(stored)
            self._cond.notify()

    # --- life cycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect the publisher (a refusal is fatal) and start the feed's threads."""
        self._broadcaster.start()
        self._thread = threading.Thread(target=self._run, name="ioc-feed", daemon=True)
        self._thread.start()
        if self.config.status_interval_s > 0:
            self._status = StatusPublisher(self._dsn, self._broadcaster, self.config.prefix)
            self._status_thread = threading.Thread(
                target=self._status.run, args=(self._status_stop, self.config.status_interval_s),
                name="ioc-feed-status", daemon=True)
            self._status_thread.start()
        log.info("open feed on %s/#: readings at QoS %d, status every %.0f s", self.config.prefix, self.config.qos,
                 self.config.status_interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        """Publish what is waiting (within ``timeout``), then disconnect."""
        self._status_stop.set()
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._status_thread is not None:
            self._status_thread.join(timeout)
        if self._status is not None:
            self._status.close()
        self._broadcaster.stop()
        self._drop_conn()
        self._log(force=True)

    # --- the feed's thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(1.0)
                items = list(self._queue)
                self._queue.clear()
                self._waiting = 0
                stopping = self._stopping
            try:
                self._refresh()
                if items:
                    self._publish(items)
            except Exception:  # the feed must never take the ingest down; the next batch tries again
                log.exception("open feed: could not publish a batch")
            self._log()
            if stopping:
                return

    def _refresh(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._dsn, autocommit=True, application_name="ioc-feed")
            with database_errors("open feed: registry"):
                gone = self.directory.refresh(self._conn)
        except DatabaseError as err:
            self._drop_conn()
            log.warning("open feed: cannot read the registry (%s); using what it read before", err)
            return
        if gone:
            # Retained readings of devices that left the feed (private, decommissioned, moved) must go.
            cleared = self._broadcaster.publish_many([(d.topic, b"", True) for d in gone], qos=1)
            for device in gone:
                self._latest.pop(device.id, None)
            log.info("open feed: %d device(s) left the feed or moved; cleared %d retained reading(s)",
                     len(gone), cleared)

    def _publish(self, items: list[_Item]) -> None:
        devices = self.directory.devices
        latest = self._latest
        pack = self._packer.pack_rows
        time_at, device_at = MEASUREMENT_TIME, MEASUREMENT_DEVICE_ID
        out: list[tuple[str, bytes, bool]] = []
        skipped = 0
        for measurements, stored in items:
            # Usually every uplink of the batch was new: walk the dict instead of hashing each id (a UUID's
            # hash runs Python code).
            if len(stored) == len(measurements):
                batch_rows: Iterable[Sequence[MeasurementRow] | None] = measurements.values()
            else:
                batch_rows = map(measurements.get, stored)
            for rows in batch_rows:
                if not rows:
                    continue  # nothing decoded: no reading to publish
                first = rows[0]
                device_id = first[device_at]
                device = devices.get(device_id)
                if device is None:
                    skipped += 1
                    continue
                when = first[time_at].timestamp()
                payload = pack(device, when, rows)
                if payload is None:
                    continue  # only flagged values
                newest = latest.get(device_id)
                retain = newest is None or when >= newest
                if retain:
                    latest[device_id] = when
                out.append((device.topic, payload, retain))
        self.skipped += skipped
        if out:
            taken = self._broadcaster.publish_many(out, qos=self.config.qos)
            self.published += taken
            self.refused += len(out) - taken

    def _drop_conn(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    def _log(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._logged_at < self.config.log_s:
            return
        published, dropped, refused = self.published, self.dropped, self.refused
        was = self._logged
        self._logged, self._logged_at = (published, dropped, refused), now
        if (published, dropped, refused) == was:
            return
        level = logging.WARNING if dropped > was[1] or refused > was[2] else logging.INFO
        log.log(level, "open feed: %d readings published, %d dropped (queue full), %d refused (broker away or "
                "slow) since the last report", published - was[0], dropped - was[1], refused - was[2])
