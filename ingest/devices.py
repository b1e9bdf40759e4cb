"""Who a DevEUI is: the registry's devices cached in memory, and enrolment of devices it does not know."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass

from gateways.chirpstack import DeviceInfo, RxInfo
from gateways.database import Connection

__all__ = ["DeviceDirectory", "DeviceRef", "GatewayDirectory"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    dev_eui: str
    zone_id: int | None
    codec_id: str | None
    status: str


class DeviceDirectory:
    """DevEUI → device, refreshed from the database now and then so registry edits reach the ingest.

    A device ChirpStack knows but the registry does not is enrolled from the event's ``deviceInfo`` as
    ``unregistered``: its data is kept and it shows up for a technician to claim. Its codec comes from the
    ``codec`` tag (ChirpStack merges device-profile tags into events) or the device-profile mapping table.
    """

    def __init__(self, codecs: Container[str], *, refresh_s: float = 60.0) -> None:
        self._codecs = codecs
        self._refresh_s = refresh_s
        self._by_eui: dict[str, DeviceRef] = {}
        self._profile_codecs: dict[str, str] = {}
        self._loaded_at = -1e18

    def __len__(self) -> int:
        return len(self._by_eui)

    def get(self, dev_eui: str) -> DeviceRef | None:
        return self._by_eui.get(dev_eui)

    def invalidate(self) -> None:
        self._loaded_at = -1e18

    def refresh_if_stale(self, conn: Connection) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_s:
            return
        rows = conn.execute("SELECT id, dev_eui, zone_id, codec_id, status FROM devices").fetchall()
        self._by_eui = {r[1]: DeviceRef(r[0], r[1], r[2], r[3], r[4]) for r in rows}
        self._profile_codecs = dict(
            conn.execute("SELECT device_profile_id, codec_id FROM device_profile_codecs").fetchall()
        )
        self._loaded_at = time.monotonic()

    def resolve(self, conn: Connection, infos: dict[str, DeviceInfo]) -> dict[str, DeviceRef]:
        """Devices for every DevEUI in ``infos``, enrolling the unknown ones in one statement."""
        self.refresh_if_stale(conn)
        unknown = [info for eui, info in infos.items() if eui not in self._by_eui]
        if unknown:
            self._enrol(conn, unknown)
        return {eui: self._by_eui[eui] for eui in infos}

    def _codec_for(self, info: DeviceInfo) -> str | None:
        tagged = info.tags.get("codec")
        if tagged and tagged in self._codecs:
            return tagged
        return self._profile_codecs.get(info.device_profile_id)

    def _enrol(self, conn: Connection, infos: Iterable[DeviceInfo]) -> None:
        rows = [
            (
                i.dev_eui,
                i.device_name or i.dev_eui,
                i.tags.get("kind"),
                i.tags.get("model"),
                self._codec_for(i),
                i.application_id,
                i.application_name,
                i.device_profile_id,
                i.device_profile_name,
                json.dumps(i.tags),
            )
            for i in infos
        ]
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO devices (dev_eui, name, status, kind, model, codec_id, application_id,
                       application_name, device_profile_id, device_profile_name, tags)
                   VALUES (%s, %s, 'unregistered', %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
                   ON CONFLICT (dev_eui) DO NOTHING""",
                rows,
            )
            cur.execute(
                "SELECT id, dev_eui, zone_id, codec_id, status FROM devices WHERE dev_eui = ANY(%s)",
                ([r[0] for r in rows],),
            )
            for r in cur.fetchall():
                self._by_eui[r[1]] = DeviceRef(r[0], r[1], r[2], r[3], r[4])
        log.info("enrolled %d device(s) unknown to the registry as unregistered", len(rows))


class GatewayDirectory:
    """Gateway EUI → id, enrolling gateways the first time an uplink names them."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def resolve(self, conn: Connection, seen: dict[str, RxInfo]) -> dict[str, int]:
        missing = [eui for eui in seen if eui not in self._ids]
        if missing:
            rows = []
            for eui in missing:
                loc = seen[eui].location
                has_loc = loc is not None and (loc.latitude != 0.0 or loc.longitude != 0.0)
                rows.append(
                    (
                        eui,
                        loc.latitude if has_loc and loc else None,
                        loc.longitude if has_loc and loc else None,
                        loc.altitude if has_loc and loc else None,
                    )
                )
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO gateways (gateway_eui, latitude, longitude, altitude)
                       VALUES (%s, %s, %s, %s) ON CONFLICT (gateway_eui) DO NOTHING""",
                    rows,
                )
                cur.execute(
                    "SELECT gateway_eui, id FROM gateways WHERE gateway_eui = ANY(%s)", (missing,)
                )
                self._ids.update(dict(cur.fetchall()))
        return self._ids
