"""The demo's hazard status: approximate wards, the flood stations whose wards rise through watch, alert and
danger minutes into real time, and the evaluator that keeps every zone's status while the demo runs.

The packaged zones are districts only, but the hazard status is kept per ward and district; the demo imports
``ioc_core/data/danang_demo_wards.geojson`` (approximate wards of Hải Châu, Cẩm Lệ and Hòa Vang) the way
``ioc zones import`` does, so a fresh install and the tests that count zones keep the seven districts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Final

from device_simulators.fleet import Device, Fleet
from device_simulators.flood_timing import StageLevels, stage_levels
from device_simulators.scenarios import Scenario
from gateways.database import Connection, connect
from ioc_core.zones import Zone, parse_geojson, zone_at

__all__ = [
    "DEMO_WARDS_RESOURCE",
    "EVALUATE_EVERY_S",
    "HOME_DISTRICT",
    "FloodStation",
    "import_demo_wards",
    "load_demo_wards",
    "pick_flood_stations",
    "run_hazard_evaluator",
    "set_flood_levels",
]

log = logging.getLogger("ioc.demo")

DEMO_WARDS_RESOURCE: Final = "danang_demo_wards.geojson"
HOME_DISTRICT: Final = "hai-chau"
"""The district whose ward the demo's flood shows first: the city centre, on the Hàn."""
EVALUATE_EVERY_S: Final = 5.0
"""Seconds between hazard status rounds: a level sensor in alarm reports every minute, so a change shows within
seconds of its reading."""


def load_demo_wards() -> list[Zone]:
    """The demo's approximate wards as packaged (see the file's ``note``)."""
    text = resources.files("ioc_core.data").joinpath(DEMO_WARDS_RESOURCE).read_text(encoding="utf-8")
    return parse_geojson(text)


def import_demo_wards(conn: Connection) -> int:
    """Import the demo's wards as ``ioc zones import`` would (audited, devices re-zoned); how many were new or
    changed. A second run finds them unchanged; the districts must be stored first (their parents)."""
    from ioc_api.queries.zones import import_zones  # the import's one home, shared with the CLI and the API

    report = import_zones(conn, load_demo_wards(), actor="ioc demo", approximate=True)
    return len(report.created) + len(report.changed)


@dataclass(frozen=True, slots=True)
class FloodStation:
    """A river station whose own levels the demo sets, so its ward goes watch, alert and danger on time."""

    site: str
    ward: str
    ward_name: str
    district: str
    dev_euis: tuple[str, ...]
    """The station's sensors: redundant ones read the same river."""
    levels: StageLevels


def _site(device: Device) -> str:
    return device.site.split(" #", 1)[0]  # "Hàn river, Dragon bridge #2" is the Dragon bridge's second sensor


def pick_flood_stations(fleet: Fleet, registered: Collection[str], wards: Sequence[Zone], levels_of: Callable[
        [Device], StageLevels | None]) -> list[FloodStation]:
    """The river station of the fleet in a ward of Hải Châu, and the one in a ward of another district, whose
    levels (``levels_of``) come first; fewer when the fleet has none there (a small fleet, a river not rising).

    Only registered sensors count (the evaluator reads registered devices); ties go to the fleet's order.
    """
    sites: dict[str, list[Device]] = {}
    for device in fleet.devices:
        if device.kind == "water_level" and device.dev_eui in registered:
            sites.setdefault(_site(device), []).append(device)
    best: dict[bool, tuple[tuple[float, float, int], FloodStation]] = {}
    for order, (site, devices) in enumerate(sites.items()):
        ward = zone_at(wards, devices[0].lon, devices[0].lat)
        if ward is None or ward.parent is None:
            continue
        levels = levels_of(devices[0])
        if levels is None:
            continue
        home = ward.parent == HOME_DISTRICT
        rank = (levels.danger_at, levels.alert_at, order)
        if home not in best or rank < best[home][0]:
            best[home] = (rank, FloodStation(site, ward.code, ward.name, ward.parent,
                                             tuple(d.dev_eui for d in devices), levels))
    return [best[home][1] for home in (True, False) if home in best]


def stage_levels_for(scenario: Scenario, seed: int, storm_start: float, live: float, *, alert_after_s: float,
                     danger_after_s: float) -> Callable[[Device], StageLevels | None]:
    """``levels_of`` for ``pick_flood_stations``: the levels a device's river passes at those moments; watch
    comes half-way to alert."""
    def levels_of(device: Device) -> StageLevels | None:
        return stage_levels(scenario, seed, storm_start, device.params, live, watch_after_s=alert_after_s / 2.0,
                            alert_after_s=alert_after_s, danger_after_s=danger_after_s)
    return levels_of


def set_flood_levels(conn: Connection, stations: Sequence[FloodStation]) -> None:
    """Store each station's levels as its sensors' own water level thresholds (they win over the kind's)."""
    with conn.transaction():
        for station in stations:
            lv = station.levels
            conn.execute(
                """INSERT INTO alert_thresholds (metric, device_id, watch_above, alert_above, danger_above)
                   SELECT 'water_level', id, %s, %s, %s FROM devices WHERE dev_eui = ANY(%s)
                   ON CONFLICT (metric, kind, device_id) DO UPDATE SET watch_above = EXCLUDED.watch_above,
                       alert_above = EXCLUDED.alert_above, danger_above = EXCLUDED.danger_above""",
                (lv.watch, lv.alert, lv.danger, list(station.dev_euis)),
            )


def run_hazard_evaluator(dsn: str, stop: threading.Event, every_s: float = EVALUATE_EVERY_S) -> threading.Thread:
    """A thread running the platform's evaluator service (operations/runner.py, as ``ioc operations run``) until
    ``stop`` is set: a round soon after each ingest commit that stored readings, and every ``every_s`` seconds."""
    from operations.evaluator import Round, evaluate_round
    from operations.runner import Pace, Runner

    def report(result: Round, at: datetime) -> None:
        for c in result.changes:
            if c.after != "unknown" or c.before not in (None, "unknown"):
                log.info("hazard status: %s %s %s -> %s (%s)", c.zone, c.hazard, c.before, c.after, c.reason)

    runner = Runner(lambda: connect(dsn, autocommit=True, application_name="ioc-demo-hazards"), evaluate_round,
                    lambda: datetime.now(UTC), Pace(interval_s=every_s), on_result=report)

    def loop() -> None:
        try:
            runner.run(stop)  # database outages are waited out inside
        except Exception:  # the demo goes on without live status, and says why
            log.exception("the hazard evaluator stopped")

    thread = threading.Thread(target=loop, name="hazard-status", daemon=True)
    thread.start()
    return thread
