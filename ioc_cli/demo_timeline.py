"""The demo's clock: which past to backfill, and the simulator that fills it and then keeps pace with real time.

Events are never dated in the future: the simulator publishes every message whose time has come at once (the
backfill, as fast as the brokers and the ingest take it) and then waits for the wall clock to reach each next
one, so the fleet reports at its real intervals and the API's "last hour" is the last real hour.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from device_simulators.events import StreamOptions, generate
from device_simulators.fleet import Fleet
from device_simulators.flood_timing import storm_start_for_alert
from device_simulators.messages import EncodingChoice, SimMessage
from device_simulators.publisher import publish_to_broker
from device_simulators.scenarios import get_scenario
from ioc_core.settings import MqttUrl

__all__ = [
    "DANGER_AFTER_S",
    "FIRST_ALERT_AFTER_S",
    "ICT",
    "Backfill",
    "SimulatorRun",
    "plan_backfill",
    "stream_options",
]

log = logging.getLogger("ioc.demo")

# Da Nang's clock, for the times the demo shows.
ICT = timezone(timedelta(hours=7), "ICT")


@dataclass(frozen=True, slots=True)
class Backfill:
    """The simulated past: from ``start`` to ``live``, when real time takes over; ``note`` says why."""

    start: datetime
    live: datetime
    note: str

    @property
    def seconds(self) -> float:
        return (self.live - self.start).total_seconds()


def _ict(at: datetime) -> str:
    return at.astimezone(ICT).strftime("%Y-%m-%d %H:%M ICT")


def _span(seconds: float) -> str:
    hours = seconds / 3600.0
    return f"{hours:.1f} h" if hours >= 1.0 else f"{seconds / 60.0:.0f} min"


def plan_backfill(now: datetime, hours: float, stored_until: datetime | None) -> Backfill:
    """The past to simulate before real time: ``hours`` back from ``now``, or less where data is stored.

    A reused demo folder keeps its readings: the backfill continues from where they end (no second copy of
    the same hours), or starts ``hours`` back when they end earlier than that (leaving a gap before).
    """
    now = now.replace(microsecond=0)
    window = now - timedelta(hours=hours)
    if hours == 0:
        return Backfill(now, now, "no backfill (--backfill-hours 0): real time from now")
    if stored_until is None:
        return Backfill(window, now, f"backfilling the past {_span(hours * 3600.0)}")
    if stored_until >= now:
        return Backfill(now, now, f"the stored readings run until {_ict(stored_until)}, ahead of the clock (an "
                                  "older demo wrote them): no backfill; --fresh starts from an empty folder")
    if stored_until > window:
        start = stored_until + timedelta(seconds=1)
        return Backfill(start, now, f"the stored readings end at {_ict(stored_until)}: backfilling the "
                                    f"{_span((now - start).total_seconds())} since then")
    return Backfill(window, now, f"the stored readings end at {_ict(stored_until)}, more than "
                                 f"{_span(hours * 3600.0)} ago: backfilling the past {_span(hours * 3600.0)} "
                                 "(a gap remains before it)")


# The first river station reaches its alert level this long after real time begins: the newcomer sees the
# rivers rising from the first minute and the first alerts two minutes in. The demo's flood stations
# (ioc_cli.demo_hazards) reach their alert level then too, and their danger level DANGER_AFTER_S in.
FIRST_ALERT_AFTER_S: Final = 120.0
DANGER_AFTER_S: Final = 300.0


def stream_options(backfill: Backfill, *, seed: int, scenario: str, encoding: EncodingChoice,
                   first_alert_after_s: float = FIRST_ALERT_AFTER_S) -> StreamOptions:
    """The fleet's stream for this run: its storm placed so the first river alert comes minutes into real time."""
    storm = storm_start_for_alert(get_scenario(scenario), seed, backfill.live.timestamp() + first_alert_after_s)
    # Message ids come from the seed; the start joins them, so a reused database never sees an id twice.
    return StreamOptions(seed=seed, start=backfill.start, scenario=scenario, encoding=encoding,
                         stream_id=f"@{int(backfill.start.timestamp())}",
                         storm_start=None if storm is None else datetime.fromtimestamp(storm, UTC))


class SimulatorRun:
    """The simulator in a thread: the backfill as fast as it goes, then real time, until ``stop`` is set."""

    def __init__(self, fleet: Fleet, options: StreamOptions, url: MqttUrl, live: datetime,
                 stop: threading.Event) -> None:
        self._fleet, self._options, self._url, self._stop = fleet, options, url, stop
        self._live = live.timestamp()
        self.published_until = options.start.timestamp()
        """Time of the newest message published."""
        self.last_backfill_uplink: float | None = None
        """Time of the newest uplink of the backfill, which the ingest has stored once the backfill is in."""
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def backfilled(self) -> bool:
        return self.published_until >= self._live or not self.is_alive()

    def _seen(self, message: SimMessage) -> None:
        self.published_until = max(self.published_until, message.time)
        if message.event == "up" and not message.malformed and message.time <= self._live:
            self.last_backfill_uplink = message.time

    def _run(self) -> None:
        try:
            publish_to_broker(generate(self._fleet, self._options), self._url, client_id="ioc-demo-simulator",
                              real_time=True, should_stop=self._stop.is_set, on_message=self._seen,
                              flush_timeout_s=10.0)
        except Exception as err:  # reported by the demo's loop, which stops
            self.error = err
