"""Device status and zone summaries on the open feed, from one worker at a time.

Every interval the health of each public device (reporting, late, silent, never seen: the database's
``device_health()``, which the IOC API reads too) is compared with what was published; a change (late,
silent, back) goes out retained on ``{prefix}/{zone}/_status/{dev_eui}``, and at start-up every device's
state does. Each current zone's summary goes to ``{prefix}/{zone}/_summary``. With several workers only the
holder of a PostgreSQL advisory lock (session-level, on a connection of its own) does this; when that
worker goes, its lock goes with its connection and another takes over. A new holder first clears retained
topics under the prefix that no longer belong to a public device or a current zone (devices made private,
moved or decommissioned while no feed was running).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from gateways.database import Connection, DatabaseError, close_quietly, connect, database_errors
from gateways.mqtt import MqttBroadcaster
from ingest.feed.payloads import (
    DEV_EUI,
    KIND,
    ZONE_CODE,
    DeviceStatus,
    Health,
    HealthCounts,
    KeyValue,
    ZoneSummary,
    reading_topic,
    status_event,
    status_topic,
    summary_topic,
)
from ioc_core.kinds import ZONE_KEY_VALUES
from ioc_core.metrics import VOCABULARY

__all__ = ["LOCK_KEY", "StatusPublisher"]

log = logging.getLogger(__name__)

# pg_advisory_lock key of the status publisher: any constant no other part of the platform uses.
LOCK_KEY = 0x10C_FEED

# Health and last seen from the database's device_health() (gateways/schema/0014_device_health.sql), the rule
# the IOC API, the boards and the alert rules read too: the feed and the API never disagree about a device.
_STATUS_SQL = """
SELECT d.dev_eui, d.name, d.kind, z.code, z.parent_code, h.health, h.last_seen_at, h.interval_s,
       h.uplinks_last_hour
FROM devices d
JOIN zones z ON z.id = d.zone_id
JOIN device_health() h ON h.device_id = d.id
WHERE d.status = 'registered' AND d.public AND d.kind IS NOT NULL"""

_ZONES_SQL = "SELECT code, name, level, parent_code FROM zones WHERE valid_to IS NULL ORDER BY code"

# Key values from the per-device rollup of public devices: the zone rollup would mix in private devices.
_KEY_VALUES_SQL = """
WITH r AS (
    SELECT c.code, r.metric_id, r.bucket, sum(r.n)::bigint AS n, sum(r.total) AS total, max(r.maximum) AS maximum
    FROM devices d
    JOIN zones z ON z.id = d.zone_id
    CROSS JOIN LATERAL unnest(array_remove(ARRAY[z.code, z.parent_code], NULL)) AS c(code)
    JOIN rollup_device_hourly r ON r.device_id = d.id
    WHERE d.status = 'registered' AND d.public AND d.kind IS NOT NULL
      AND r.metric_id = ANY(%(metrics)s) AND r.bucket >= date_trunc('hour', now()) - interval '2 hours'
    GROUP BY 1, 2, 3)
SELECT DISTINCT ON (code, metric_id) code, metric_id, bucket, n, total, maximum
FROM r ORDER BY code, metric_id, bucket DESC"""


class StatusPublisher:
    """Computes and publishes device status and zone summaries while it holds the advisory lock."""

    def __init__(self, dsn: str, broadcaster: MqttBroadcaster, prefix: str) -> None:
        self._dsn = dsn
        self._broadcaster = broadcaster
        self._prefix = prefix
        self._conn: Connection | None = None
        self.leader = False
        self._reconciled = False
        # dev_eui → (status topic, health) as last published by this leader.
        self._published: dict[str, tuple[str, Health]] = {}
        # (dev_eui, kind, zone) → status topic, None when they cannot be topic levels: checked once each.
        self._topics: dict[tuple[str, str, str], str | None] = {}
        self.rounds = 0

    def run(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                with database_errors("open feed status"):
                    self.tick()
            except DatabaseError as err:
                log.warning("open feed status: database unavailable (%s); trying again in %.0f s", err, interval_s)
                self._lose()
            except Exception:  # never take the ingest down
                log.exception("open feed status: a round failed")
            stop.wait(interval_s)

    def close(self) -> None:
        self._lose()

    def _lose(self) -> None:
        close_quietly(self._conn)  # ends the session, and with it the advisory lock
        self._conn = None
        self.leader = False
        self._reconciled = False
        self._published.clear()

    def _status_topic(self, eui: str, kind: str, zone: str) -> str | None:
        if len(self._topics) > 1_000_000:
            self._topics.clear()
        if DEV_EUI.fullmatch(eui) and KIND.fullmatch(kind) and ZONE_CODE.fullmatch(zone):
            return status_topic(self._prefix, zone, eui)
        return None

    def tick(self) -> None:
        """One round: take the lock if free, then publish what changed and every zone's summary."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._lose()
            self._conn = connect(self._dsn, autocommit=True, application_name="ioc-feed-status")
        conn = self._conn
        if not self.leader:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if not (row and row[0]):
                return
            self.leader = True
            log.info("open feed: this worker publishes device status and zone summaries")
        if not self._broadcaster.connected:
            return
        now = datetime.now(UTC)
        rows = conn.execute(_STATUS_SQL).fetchall()
        zones = conn.execute(_ZONES_SQL).fetchall()
        key_rows = conn.execute(_KEY_VALUES_SQL, {"metrics": _KEY_METRIC_IDS}).fetchall()
        expected = self._statuses(rows, now)
        expected |= self._summaries(zones, rows, key_rows, now)
        if not self._reconciled:
            self._reconcile(expected, rows)
        self.rounds += 1

    def _statuses(self, rows: list[tuple[Any, ...]], now: datetime) -> set[str]:
        seen: set[str] = set()
        changed: list[tuple[str, bytes, bool]] = []
        # What publishing each message records: (dev_eui, (topic, health)) or (dev_eui, None) for a removal.
        effects: list[tuple[str, tuple[str, Health] | None]] = []
        topics = self._topics
        for eui, name, kind, zone, _parent, health, last_seen, interval, _hour in rows:
            topic = topics.get((eui, kind, zone), "")
            if topic == "":
                topic = topics[(eui, kind, zone)] = self._status_topic(eui, kind, zone)
            if topic is None:
                continue
            seen.add(eui)
            before = self._published.get(eui)
            if before == (topic, health):
                continue
            if before is not None and before[0] != topic:
                changed.append((before[0], b"", True))  # moved: its old zone's topic goes
                effects.append((eui, None))
            previous = before[1] if before is not None and before[0] == topic else None
            payload = DeviceStatus(
                dev_eui=eui, name=name, kind=kind, zone=zone, health=health, previous=previous,
                event=status_event(previous, health), last_seen=last_seen, expected_interval_s=int(interval),
                time=now,
            )
            changed.append((topic, payload.model_dump_json().encode(), True))
            effects.append((eui, (topic, health)))
        for eui, (topic, _health) in self._published.items():
            if eui not in seen:
                changed.append((topic, b"", True))  # left the feed: private, decommissioned, no zone
                effects.append((eui, None))
        if changed:
            taken = self._broadcaster.publish_many(changed, qos=1)
            if taken < len(changed):
                log.warning("open feed status: the broker took %d of %d status messages; the rest next round",
                            taken, len(changed))
            # Only what the broker took is recorded: the rest differs from the record and goes out next round.
            for eui, effect in effects[:taken]:
                if effect is None:
                    self._published.pop(eui, None)
                else:
                    self._published[eui] = effect
        return {topic for topic, _health in self._published.values()}

    def _summaries(self, zones: list[tuple[Any, ...]], rows: list[tuple[Any, ...]],
                   key_rows: list[tuple[Any, ...]], now: datetime) -> set[str]:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_HEALTHS, 0))
        uplinks: dict[str, int] = defaultdict(int)
        for _eui, _name, _kind, zone, parent, health, _seen, _interval, last_hour in rows:
            tally = counts[zone]
            tally[health] += 1
            uplinks[zone] += last_hour or 0
            if parent is not None:
                tally = counts[parent]
                tally[health] += 1
                uplinks[parent] += last_hour or 0
        values: dict[str, list[KeyValue]] = defaultdict(list)
        for code, metric_id, bucket, n, total, maximum in key_rows:
            metric = VOCABULARY.by_id[metric_id]
            aggregate = _AGGREGATES[metric.name]
            value = maximum if aggregate == "max" else total if aggregate == "sum" else total / n
            values[code].append(KeyValue(metric=metric.name, unit=metric.unit, aggregate=aggregate,
                                         value=float(value), samples=int(n), hour=bucket))
        messages = []
        for code, name, level, parent in zones:
            if not ZONE_CODE.fullmatch(code):
                continue
            tally = counts[code]
            summary = ZoneSummary(
                zone=code, name=name, level=level, parent=parent, time=now,
                devices=HealthCounts(**tally, total=sum(tally.values())),
                uplinks_last_hour=uplinks[code],
                key_values=sorted(values[code], key=lambda kv: _ORDER[kv.metric]),
            )
            messages.append((summary_topic(self._prefix, code), summary.model_dump_json().encode(), True))
        self._broadcaster.publish_many(messages, qos=1)
        return {topic for topic, _payload, _retain in messages}

    def _reconcile(self, expected: set[str], rows: list[tuple[Any, ...]]) -> None:
        """Clear retained topics under the prefix that belong to no public device or current zone."""
        retained = self._broadcaster.retained_topics(f"{self._prefix}/#")
        if retained is None:
            log.info("open feed: cannot list retained topics under %s/# (the broker account may not read "
                     "them); stale retained messages are not cleared", self._prefix)
            self._reconciled = True
            return
        readings = {reading_topic(self._prefix, zone, kind, eui) for eui, _n, kind, zone, *_rest in rows}
        stale = sorted(retained - expected - readings)
        if stale:
            taken = self._broadcaster.publish_many([(topic, b"", True) for topic in stale], qos=1)
            log.info("open feed: cleared %d stale retained topic(s) under %s/#", taken, self._prefix)
            if taken < len(stale):
                return  # try again next round
        self._reconciled = True


_HEALTHS = ("reporting", "late", "silent", "never_seen")
_AGGREGATES = dict(ZONE_KEY_VALUES)
_ORDER = {name: i for i, (name, _aggregate) in enumerate(ZONE_KEY_VALUES)}
_KEY_METRIC_IDS = [VOCABULARY[name].id for name, _aggregate in ZONE_KEY_VALUES]
