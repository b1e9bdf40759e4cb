"""Puts registered devices into ChirpStack, and takes decommissioned ones out, without half states.

A device is stored first, as ``pending``; the provisioner then makes the gRPC calls with the row locked
(``FOR UPDATE SKIP LOCKED``, so several API processes never provision one device twice) and records the
outcome. ChirpStack down → the device stays ``pending`` with the reason; ChirpStack refusing → ``failed``
with the reason; both are retried with a doubling delay, capped at an hour. Calls pass one rate limiter,
so a bulk import of thousands of devices reaches ChirpStack at a steady, configured pace.

The same background thread fills in commissioning steps that uplinks have proved, and copies ChirpStack's
gateway list (state, last seen, location) beside what the uplinks show.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from gateways.chirpstack.api import (
    ChirpStackClient,
    ChirpStackError,
    ChirpStackRefused,
    ChirpStackUnavailable,
    DeviceSpec,
)
from gateways.database import Connection, ConnectionPool
from ioc_api.queries.devices import refresh_commissioning
from ioc_core.settings import ChirpStackSettings

__all__ = ["Provisioner", "RateLimiter"]

log = logging.getLogger(__name__)

_MAX_DELAY_S = 3600.0


class RateLimiter:
    """At most ``rate`` acquisitions per second, spaced evenly, shared by every thread."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            time.sleep(wait)


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    dev_eui: str
    name: str
    description: str
    application_id: str | None
    device_profile_id: str | None
    join_eui: str | None
    tags: dict[str, Any]
    provisioning: str
    attempts: int
    app_key: str | None
    nwk_key: str | None


_DUE = """SELECT d.id, d.dev_eui, d.name, d.description, d.application_id, d.device_profile_id, d.join_eui, d.tags,
                 d.provisioning, d.provisioning_attempts, k.app_key, k.nwk_key
          FROM devices d LEFT JOIN device_keys k ON k.device_id = d.id
          WHERE d.provisioning IN ('pending', 'failed', 'deprovision_pending')"""


class Provisioner:
    """Background provisioning and commissioning refresh; ``provision_now`` serves a single request inline."""

    def __init__(self, pool: ConnectionPool[Connection], settings: ChirpStackSettings, *,
                 poll_s: float = 5.0, gateway_sync_s: float = 60.0) -> None:
        self._pool = pool
        self._settings = settings
        self._poll_s = poll_s
        self._gateway_sync_s = gateway_sync_s
        self._gateways_synced = float("-inf")
        self._limiter = RateLimiter(settings.calls_per_s)
        self._client: ChirpStackClient | None = None
        if settings.enabled:
            assert settings.api is not None and settings.token is not None
            self._client = ChirpStackClient(settings.api, settings.token.get_secret_value(),
                                            tls=settings.tls, timeout_s=settings.timeout_s,
                                            before_call=self._limiter.acquire)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ioc-provisioner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.timeout_s * 3 + 5)
        if self._client is not None:
            self._client.close()

    def wake(self) -> None:
        """Look for due devices now (after a bulk import) instead of at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._pool.connection() as conn:
                    refresh_commissioning(conn)
                    if time.monotonic() - self._gateways_synced >= self._gateway_sync_s:
                        self.sync_gateways(conn)
                    while not self._stop.is_set() and self.run_due(conn, limit=50):
                        pass
            except Exception:  # the loop must outlive any one failure; the next pass retries
                log.exception("provisioning pass failed")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def sync_gateways(self, conn: Connection) -> int:
        """Copy ChirpStack's gateways into the inventory; returns how many. ChirpStack down → keep the last copy."""
        if self._client is None:
            return 0
        self._gateways_synced = time.monotonic()
        try:
            gateways = self._client.list_gateways()
        except ChirpStackError as err:
            log.warning("gateway inventory not refreshed: %s", err)
            return 0
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO gateways (gateway_eui, name, latitude, longitude, altitude, chirpstack_state,
                       chirpstack_last_seen_at, chirpstack_synced_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, now())
                   ON CONFLICT (gateway_eui) DO UPDATE SET name = EXCLUDED.name,
                       latitude = coalesce(EXCLUDED.latitude, gateways.latitude),
                       longitude = coalesce(EXCLUDED.longitude, gateways.longitude),
                       altitude = coalesce(EXCLUDED.altitude, gateways.altitude),
                       chirpstack_state = EXCLUDED.chirpstack_state,
                       chirpstack_last_seen_at = EXCLUDED.chirpstack_last_seen_at,
                       chirpstack_synced_at = now()""",
                [(g.gateway_id.lower(), g.name, g.latitude, g.longitude, g.altitude, g.state, g.last_seen_at)
                 for g in gateways],
            )
        return len(gateways)

    def run_due(self, conn: Connection, *, limit: int = 50) -> int:
        """Provision up to ``limit`` devices whose retry time has come; returns how many were tried."""
        if self._client is None:
            return 0
        tried = 0
        for _ in range(limit):
            if self._stop.is_set() or not self._step(conn, "AND d.provisioning_next_at <= now()", ()):
                break
            tried += 1
        return tried

    def provision_now(self, conn: Connection, dev_eui: str) -> None:
        """Try one device at once, in the caller's request; a locked or settled device is left alone."""
        if self._client is not None:
            self._step(conn, "AND d.dev_eui = %s", (dev_eui,))

    def _step(self, conn: Connection, where: str, params: tuple[Any, ...]) -> bool:
        with conn.transaction():
            row = conn.execute(
                _DUE + f" {where} ORDER BY d.provisioning_next_at LIMIT 1 FOR UPDATE OF d SKIP LOCKED", params
            ).fetchone()
            if row is None:
                return False
            due = _Due(*row)
            try:
                outcome = self._deprovision(due) if due.provisioning == "deprovision_pending" else self._provision(due)
            except ChirpStackError as err:
                self._failed(conn, due, err)
            else:
                self._done(conn, due, outcome)
        return True

    def _provision(self, due: _Due) -> str:
        assert self._client is not None
        if due.application_id is None or due.device_profile_id is None:
            raise ChirpStackRefused(f"no ChirpStack application/profile recorded for {due.dev_eui}",
                                    code="FAILED_PRECONDITION")
        spec = DeviceSpec(
            dev_eui=due.dev_eui, name=due.name, application_id=due.application_id,
            device_profile_id=due.device_profile_id, description=due.description, join_eui=due.join_eui,
            tags={str(k): str(v) for k, v in due.tags.items()},
        )
        result = self._client.ensure_device(spec)
        if due.app_key is not None:
            mac_version = self._client.device_profile_mac_version(due.device_profile_id)
            self._client.ensure_keys(due.dev_eui, due.app_key, due.nwk_key, mac_version=mac_version)
        log.debug("device %s %s in ChirpStack", due.dev_eui, result)
        return "provisioned"

    def _deprovision(self, due: _Due) -> str:
        assert self._client is not None
        self._client.delete_device(due.dev_eui)
        return "deprovisioned"

    def _done(self, conn: Connection, due: _Due, state: str) -> None:
        conn.execute(
            """UPDATE devices SET provisioning = %s, provisioning_error = NULL, provisioning_next_at = NULL,
                   provisioning_attempts = provisioning_attempts + 1,
                   provisioned_at = CASE WHEN %s = 'provisioned' THEN coalesce(provisioned_at, now())
                                         ELSE provisioned_at END
               WHERE id = %s""",
            (state, state, due.id),
        )
        # ChirpStack holds the keys now; the platform keeps no copy it does not need.
        conn.execute("DELETE FROM device_keys WHERE device_id = %s", (due.id,))
        log.info("device %s %s in ChirpStack", due.dev_eui, state)

    def _failed(self, conn: Connection, due: _Due, err: ChirpStackError) -> None:
        delay = min(self._settings.retry_s * 2 ** min(due.attempts, 16), _MAX_DELAY_S)
        if due.provisioning == "deprovision_pending":
            state = "deprovision_pending"
        else:
            state = "pending" if isinstance(err, ChirpStackUnavailable) else "failed"
        conn.execute(
            """UPDATE devices SET provisioning = %s, provisioning_error = %s,
                   provisioning_attempts = provisioning_attempts + 1,
                   provisioning_next_at = now() + make_interval(secs => %s)
               WHERE id = %s""",
            (state, str(err)[:500], delay, due.id),
        )
        log.warning("device %s: ChirpStack %s (%s); retrying in %.0f s", due.dev_eui, state, err, delay)
