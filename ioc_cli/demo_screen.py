"""What the demo shows: the banner, the backfill's progress, the district table (the API's own numbers) and the
zones' hazard status (the platform's evaluator's)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from dashboards.alerts import LOOK_BACK_S, water_levels
from gateways.database import connect
from ioc_api.queries.monitoring import list_gateways, zone_summaries
from ioc_cli.demo_brokers import DemoBrokers
from ioc_cli.demo_hazards import FloodStation
from ioc_cli.demo_timeline import ICT, Backfill, SimulatorRun
from ioc_core.settings import MqttUrl

__all__ = [
    "STATUS_WORDS",
    "Banner",
    "OperationsBanner",
    "incident_line",
    "show_backfill",
    "show_banner",
    "show_districts",
    "show_hazards",
    "show_operations",
]

log = logging.getLogger("ioc.demo")

_STORAGE = {
    "timescaledb": "TimescaleDB: hypertables, compression, retention and continuous aggregates",
    "postgresql": "plain PostgreSQL: the same schema and the same answers, without TimescaleDB's extras",
}


# The words the operators use (docs/operations.md), with the English, so no status is told by colour alone.
STATUS_WORDS = {
    "danger": "[bold red]NGUY HIỂM / danger[/]",
    "alert": "[yellow]CẢNH BÁO / alert[/]",
    "watch": "[cyan]theo dõi / watch[/]",
    "unknown": "[dim]không rõ / unknown[/]",
    "normal": "[green]bình thường / normal[/]",
}
_SHOWN = 12  # hazard status lines at most: the screen stays short, the API has them all


@dataclass(frozen=True, slots=True)
class OperationsBanner:
    """What the banner says of the demo's operations story: the operators, the timers and the stand-ins."""

    district_user: str
    district_key: Path
    city_user: str
    city_key: Path
    technician_user: str
    technician_key: Path
    district: str
    escalate_after_s: float
    received: Path
    channels: Sequence[str]
    smtp_missing: str | None = None


@dataclass(frozen=True, slots=True)
class Banner:
    dsn: str
    mode: str
    mode_reason: str
    folder: Path
    reused: bool | None
    """Whether the demo folder's database held a previous run's data; None for a configured database."""
    api_url: str | None
    key_file: Path | None
    log_file: Path
    mqtt_url: str
    brokers: DemoBrokers | None
    ioc: str
    """How to run ``ioc`` as the user started the demo: ``./run.sh ioc`` or ``ioc``."""
    devices: int
    scenario: str
    backfill: Backfill
    flood: Sequence[FloodStation] = ()
    """The river stations whose wards the flood takes through watch, alert and danger on time."""
    first_alert_after_s: float = 120.0
    """When the first river station passes its own alert level, in seconds of real time."""
    operations: OperationsBanner | None = None


def show_banner(console: Console, b: Banner) -> None:
    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)  # commands stay on one line, so they can be copied

    console.rule("IOC platform demo")
    if b.api_url and b.operations:
        o = b.operations
        # First, because it is where a newcomer starts: a browser, not curl.
        say(f"[bold]console[/]   {b.api_url}/console/   sign in with a key (paste the file's text): city IOC "
            f"{o.city_user} in {o.city_key}; district centre {o.district_user} in {o.district_key}; technician "
            f"{o.technician_user} in {o.technician_key}")
    if b.api_url and b.key_file:
        say(f"[bold]API[/]       {b.api_url}/docs   admin key in {b.key_file} (readable by you only)\n"
            f"          curl -H \"Authorization: Bearer $(cat {b.key_file})\" {b.api_url}/api/v1/zones")
    say(f"[bold]storage[/]   {_STORAGE[b.mode]} ({b.mode_reason})")
    if b.reused is True:
        say(f"[bold]folder[/]    {b.folder}: [bold]reused[/] from the previous run (its devices, users and readings "
            "are kept; --fresh starts from an empty folder)")
    elif b.reused is False:
        say(f"[bold]folder[/]    {b.folder}: new (a next run reuses it; --fresh starts from an empty one)")
    say(f"[bold]clock[/]     {b.backfill.note}; then real time, each sensor at its own interval (5 to 30 min). "
        f"Times are Da Nang's (ICT).")
    say(f"[bold]fleet[/]     {b.devices} simulated Da Nang sensors, scenario '{b.scenario}'"
        + (": a storm has been pouring for hours and the streets are flooding; the rivers rise from the "
           f"first minute, the first station passes its alert level about {_after(b.first_alert_after_s)} in "
           "(level sensors then report every minute)"
           if b.scenario == "flood" else ""))
    for f in b.flood:
        lv = f.levels
        say(f"[bold]flood[/]     ward {f.ward_name} ({f.ward}, district {f.district}): {f.site} passes the demo's "
            f"levels watch {lv.watch:.2f} m about {_clock_s(lv.watch_at)}, alert {lv.alert:.2f} m about "
            f"{_clock_s(lv.alert_at)}, danger {lv.danger:.2f} m about {_clock_s(lv.danger_at)}")
    if b.api_url:
        say(f"[bold]operations[/] hazard status of a zone: {b.api_url}/api/v1/zones/{{code}}/status"
            + (f" (e.g. {b.flood[0].ward})" if b.flood else "")
            + f"; incidents: {b.api_url}/api/v1/incidents; alarms: {b.api_url}/api/v1/alarms; public "
            f"warnings (no key): {b.api_url}/api/v1/public/warnings.atom")
    if b.api_url and b.operations:
        _show_operations_banner(say, b.api_url, b.operations, b.brokers)
    console.rule(style="dim")
    say(f"[bold]database[/]  {b.dsn}\n          psql '{b.dsn}' -c 'SELECT * FROM uplinks ORDER BY time DESC LIMIT 5'")
    if b.brokers is None:
        url = MqttUrl.parse(b.mqtt_url)
        say(f"[bold]broker[/]    {url}\n          mosquitto_sub -h {url.host} -p {url.port} -t 'application/#' -v")
    else:
        ingest = b.brokers.passwords["ioc-ingest"]
        username, password = b.brokers.developer
        say(f"[bold]internal broker[/] 127.0.0.1:{b.brokers.internal_port}  ChirpStack's events, for the ingest "
            "only (no anonymous or developer access)\n"
            f"          mosquitto_sub -p {b.brokers.internal_port} -u ioc-ingest -P {ingest} -t 'application/#' -v")
        say(f"[bold]public broker[/]   127.0.0.1:{b.brokers.public_port}  the open feed for developers (read-only "
            "ioc/v1/#; more credentials from POST /api/v1/mqtt/credentials)\n"
            f"          mosquitto_sub -p {b.brokers.public_port} -u {username} -P {password} -t 'ioc/v1/#' -v")
        say(f"          broker files in {b.brokers.directory} (what `{b.ioc} broker config` writes)")
    env = f"IOC_DATABASE_URL='{b.dsn}'"
    say(f"[bold]ingest[/]    {env} {b.ioc} deadletters list\n          log: {b.log_file}")
    say(f"[bold]grafana[/]   {env} {b.ioc} dashboards check   (every board's SQL)\n"
        f"          {env} IOC_GRAFANA_URL=... IOC_GRAFANA_TOKEN=... {b.ioc} dashboards push")
    say("Ctrl-C stops everything.")
    console.rule(style="dim")


def _show_operations_banner(say: Callable[[str], None], api: str, o: OperationsBanner,
                            brokers: DemoBrokers | None) -> None:
    say(f"[bold]incidents[/] opened by the platform per district and hazard, with their SOP card: "
        f"{api}/api/v1/incidents/{{id}}; in the demo every escalation timer is {o.escalate_after_s:g} s "
        f"(--escalate-after; production: critical 300 s, major 900 s), so an incident nobody acknowledges goes to "
        f"the city IOC within minutes")
    say(f"[bold]operators[/] {o.district_user} (district {o.district}) key in {o.district_key}; {o.city_user} "
        f"(city IOC, every zone) key in {o.city_key}")
    say(f"[bold]warning[/]   automatic in the demo: once {o.district}'s flood is in danger, {o.district_user} drafts "
        f"a CAP warning from its incident and {o.city_user} approves it (a second, different operator), through "
        "the API. By hand:\n"
        f"          curl -X POST -H \"Authorization: Bearer $(cat {o.district_key})\" "
        f"{api}/api/v1/incidents/ID/warnings\n"
        f"          curl -X POST -H \"Authorization: Bearer $(cat {o.city_key})\" {api}/api/v1/warnings/ID/approve")
    say(f"[bold]delivered[/] to local stand-ins of {', '.join(o.channels)}: what each received is in "
        f"{o.received}/<channel>.log"
        + (f" ({o.smtp_missing})" if o.smtp_missing else "")
        + f"; public CAP feed (no key): {api}/api/v1/public/warnings.atom; the operators hear of new and "
        f"escalated incidents by webhook too (their own choice, PUT /api/v1/me/notifications)")
    if brokers is not None:
        username, password = brokers.developer
        say(f"          mosquitto_sub -h 127.0.0.1 -p {brokers.public_port} -u {username} -P {password} "
            "-t 'ioc/v1/+/_warning' -v   (retained)")


def _after(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120.0 else f"{seconds / 60.0:.0f} minutes"


def show_backfill(console: Console, run: SimulatorRun, backfill: Backfill, stored_until: Callable[[], float | None],
                  stop: threading.Event) -> None:
    """Progress bars of the backfill, published and stored, until the ingest has stored the past."""
    total = backfill.seconds
    if total <= 0:
        return
    start = backfill.start.timestamp()
    columns = (TextColumn("{task.description:<28}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[at]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        published = progress.add_task("backfill: simulated", total=total, at="")
        stored = progress.add_task("backfill: stored by the ingest", total=total, at="")
        last, changed = None, time.monotonic()
        while not stop.is_set():
            sent = min(run.published_until, backfill.live.timestamp())
            progress.update(published, completed=sent - start, at=_clock(sent))
            newest = stored_until()
            if newest != last:
                last, changed = newest, time.monotonic()
            if newest is not None:
                progress.update(stored, completed=min(max(newest - start, 0.0), total), at=_clock(newest))
            if run.backfilled:
                target = run.last_backfill_uplink
                if target is None or (newest is not None and newest >= target - 1.0):
                    progress.update(published, completed=total)
                    progress.update(stored, completed=total)
                    break
                if time.monotonic() - changed > 20.0:
                    log.warning("the ingest stored nothing new for 20 s; going on to real time")
                    break
            stop.wait(0.25)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, ICT).strftime("%d %b %H:%M")


def _clock_s(at: float) -> str:
    return datetime.fromtimestamp(at, ICT).strftime("%H:%M:%S")


@dataclass(slots=True)
class _Water:
    """A district's level sensors of one kind: the highest newest reading, and how many are above each level."""

    newest: float | None = None
    alert: int = 0
    danger: int = 0

    def add(self, newest: float, value: float, alert: float | None, danger: float | None) -> None:
        self.newest = newest if self.newest is None else max(self.newest, newest)
        if danger is not None and value > danger:
            self.danger += 1
        elif alert is not None and value > alert:
            self.alert += 1

    def level(self) -> str:
        return "-" if self.newest is None else f"{self.newest:.2f}"

    def warnings(self) -> str:
        if self.newest is None:
            return "-"
        said = [f"[bold red]{self.danger} danger[/]" if self.danger else "",
                f"[yellow]{self.alert} alert[/]" if self.alert else ""]
        return ", ".join(x for x in said if x) or "[green]normal[/]"


def show_districts(console: Console, dsn: str) -> None:
    """The districts as GET /api/v1/zones shows them (the same query), the water levels as the alert rules see
    them (the same query), and the gateways' states."""
    try:
        with connect(dsn, autocommit=True) as conn:
            zones = [z for z in zone_summaries(conn, None) if z.level == "district"]
            gateways = Counter(g.state for g in list_gateways(conn, None))
            levels_sql = water_levels(f"now() - make_interval(secs => {LOOK_BACK_S})")
            levels = conn.execute(f"SELECT w.zone_code, w.metric, w.newest, w.value, w.alert_above, w.danger_above "
                                  f"FROM ({levels_sql}) w").fetchall()
            # Devices in a ward count for its district, as GET /api/v1/zones counts them.
            district_of: dict[str, str] = dict(conn.execute(
                "SELECT code, parent_code FROM zones WHERE valid_to IS NULL AND level = 'ward'").fetchall())
            row = conn.execute(
                """SELECT (SELECT count(*) FROM devices WHERE status = 'unregistered'),
                          (SELECT count(*) FROM dead_letters), now()"""
            ).fetchone()
    except Exception as err:  # the table is a courtesy; the demo goes on without it
        log.warning("could not read the district summary: %s", err)
        return
    assert row is not None
    unregistered, dead_letters, now = row
    water: dict[tuple[str, str], _Water] = defaultdict(_Water)
    for zone_code, metric, newest, value, alert, danger in levels:
        water[district_of.get(zone_code, zone_code) or "", metric].add(newest, value, alert, danger)
    table = Table(title=f"Da Nang districts at {now.astimezone(ICT):%Y-%m-%d %H:%M} ICT, as GET /api/v1/zones",
                  caption="water level: the highest of the stations' newest readings (m above each gauge's zero); "
                          "street flood: the deepest newest reading; warnings: stations or streets above their "
                          "danger or alert level, each station counted once (the lower of its two "
                          "newest readings); uplinks: the last hour; PM2.5: the current hour's mean",
                  caption_justify="left")
    for col in ("district", "devices", "uplinks\nlast hour", "water level\nnow (m)", "river and sea\nwarnings",
                "street flood\nnow (m)", "street\nwarnings", "PM2.5\n(µg/m³)"):
        table.add_column(col, justify="left" if col == "district" or "warnings" in col else "right")
    for z in zones:
        values = {kv.metric: kv.value for kv in z.key_values}
        pm2_5 = values.get("pm2_5")
        rivers, streets = water[z.code, "water_level"], water[z.code, "flood_depth"]
        table.add_row(z.name, str(z.devices.total), str(z.uplinks_last_hour), rivers.level(), rivers.warnings(),
                      streets.level(), streets.warnings(), "-" if pm2_5 is None else f"{pm2_5:.1f}")
    console.print(table, width=min(console.width, 120))
    states = ", ".join(f"{n} {state}" for state, n in sorted(gateways.items()))
    console.print(f"gateways: {states or 'none seen yet'}; {unregistered} devices enrolled as unregistered; "
                  f"{dead_letters} dead letters", highlight=False)


def show_hazards(console: Console, dsn: str) -> None:
    """The zones not normal, floods first (the demo's story), worst first, as the platform's evaluator keeps them
    (zone_hazard_status), in the operators' Vietnamese words and in English; then how many are unknown and
    normal."""
    try:
        with connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                """SELECT z.name, z.level, z.parent_code, h.name_vi, h.name_en, s.status, s.since, s.reason
                   FROM zone_hazard_status s
                   JOIN zones z ON z.code = s.zone_code AND z.valid_to IS NULL
                   JOIN hazards h ON h.code = s.hazard
                   WHERE s.status IN ('watch', 'alert', 'danger')
                   ORDER BY s.hazard <> 'flood', CASE s.status WHEN 'danger' THEN 0 WHEN 'alert' THEN 1 ELSE 2 END,
                            CASE z.level WHEN 'district' THEN 0 ELSE 1 END, s.since DESC, z.code"""
            ).fetchall()
            counts: dict[str, int] = dict(conn.execute(
                "SELECT status, count(*) FROM zone_hazard_status WHERE status IN ('unknown', 'normal') "
                "GROUP BY status").fetchall())
    except Exception as err:  # a courtesy, like the district table
        log.warning("could not read the hazard status: %s", err)
        return
    say = console.print
    say("hazard status (trạng thái nguy cơ) of districts and wards, as the platform evaluates it; one zone: "
        "GET /api/v1/zones/{code}/status", highlight=False)
    for name, level, parent, hazard_vi, hazard_en, status, since, reason in rows[:_SHOWN]:
        where = f"{name} (ward of {parent})" if level == "ward" else f"{name} (district)"
        say(f"  {STATUS_WORDS[status]}  {hazard_vi} / {hazard_en.lower()}  {where}  since "
            f"{since.astimezone(ICT):%H:%M:%S}: {reason}", highlight=False, soft_wrap=True)
    more = f"{len(rows) - _SHOWN} more above normal; " if len(rows) > _SHOWN else ""
    none = "" if rows else "nothing above normal; "
    say(f"  {more}{none}{counts.get('unknown', 0)} zone statuses {STATUS_WORDS['unknown']} (no station, or none "
        f"reported in time), {counts.get('normal', 0)} {STATUS_WORDS['normal']}", highlight=False)


def incident_line(incident_id: int, zone: str, hazard: str, severity: str, state: str, owner: str, level: int,
                  api_url: str | None) -> str:
    """One open incident as the screen shows it: what, how bad, where it stands, whose, and where to see it."""
    escalated = f", escalated x{level}" if level else ""
    where = f"  {api_url}/api/v1/incidents/{incident_id}" if api_url else ""
    return f"  #{incident_id} {zone} {hazard} {severity} {state} owner {owner}{escalated}{where}"


def show_operations(console: Console, dsn: str, api_url: str | None) -> None:
    """The open incidents (escalated ones say so) and the public warnings with their deliveries by channel."""
    try:
        with connect(dsn, autocommit=True) as conn:
            incidents = conn.execute(
                """SELECT i.id, i.zone_code, i.hazard, i.severity, i.state, i.owner, i.escalation_level
                   FROM incidents i JOIN alarm_severities v ON v.severity = i.severity
                   WHERE i.state NOT IN ('resolved', 'closed')
                   ORDER BY v.rank DESC, i.opened_at DESC LIMIT %s""", (_SHOWN,)).fetchall()
            warnings = conn.execute(
                """SELECT w.identifier, w.state, w.drafted_by, w.approved_by,
                          (SELECT string_agg(o.channel || ' ' || o.state, ', ' ORDER BY o.channel)
                           FROM (SELECT channel, state FROM notification_outbox
                                 WHERE idempotency_key LIKE 'warning:' || w.identifier || ':%%'
                                 GROUP BY channel, state) o)
                   FROM warnings w ORDER BY w.id DESC LIMIT 3""").fetchall()
    except Exception as err:  # a courtesy, like the district table
        log.warning("could not read the incidents: %s", err)
        return
    console.print("open incidents (sự cố), most severe first: GET /api/v1/incidents" if incidents
                  else "open incidents (sự cố): none", highlight=False)
    for ident, zone, hazard, severity, state, owner, level in incidents:
        console.print(incident_line(int(ident), str(zone), str(hazard), str(severity), str(state), str(owner),
                                    int(level), api_url), highlight=False, soft_wrap=True)
    for identifier, state, drafted_by, approved_by, deliveries in warnings:
        by = f"drafted by {drafted_by}" + (f", approved by {approved_by}" if approved_by else "")
        console.print(f"  warning {identifier} {state} ({by}){': ' + deliveries if deliveries else ''}",
                      highlight=False, soft_wrap=True)
