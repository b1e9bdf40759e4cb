"""Open data: the catalogue of published datasets and streamed exports of their readings, for any API key.

The data is public by construction (public devices, published metrics, no device secrets), so every role may
read it: developers have nothing else, and operators and technicians can check what the public sees. A key's
zones do not narrow it. Each key has a request rate and a number of exports it may stream at once (429 with
``Retry-After`` past either). The catalogue's facts are read at most once a minute per process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateways.database import Connection, ConnectionPool
from ioc_api.bounded_stream import BoundedStream
from ioc_api.deps import Caller, CurrentCaller, Db, FunctionDb
from ioc_api.errors import ErrorBody, TooManyRequests
from ioc_api.queries.open_data import (
    MAX_RANGE,
    Bucket,
    DatasetFacts,
    Export,
    dataset_facts,
    export_windows,
    plan_export,
    published_metrics,
)
from ioc_api.rate_limit import ExportSlots, TokenBuckets
from ioc_api.schemas.open_data import CONTEXT, Catalogue, Dataset, Distribution, Location, Period, Variable
from ioc_api.time_range import utc_range
from ioc_core.kinds import KINDS, Kind
from ioc_core.metrics import VOCABULARY
from ioc_core.settings import ApiSettings, OpenDataSettings

__all__ = ["CATALOGUE_TTL_S", "ROWS_PER_CHUNK", "OpenData", "router", "stream_export"]

router = APIRouter(tags=["open data"])

ROWS_PER_CHUNK = 1_000
"""Rows per streamed chunk: each chunk is a hop to a worker thread, so not one row at a time."""

CATALOGUE_TTL_S = 60.0
"""How long a process serves the catalogue's facts before reading them again (a few hundred ms at 5,000 devices)."""
DEFAULT_RANGE = timedelta(hours=24)
EXPORTS_BUSY_RETRY_S = 5
NDJSON = "application/x-ndjson"
JSON_LD = "application/ld+json"
FEED_PREFIX = "ioc/v1"
"""The live feed's default topic prefix; a device's readings go to ``{prefix}/{its zone}/{kind}/{dev_eui}``."""

RATE_LIMITED: dict[int | str, dict[str, Any]] = {429: {
    "model": ErrorBody,
    "description": "past the key's rate or its concurrent exports (`code` rate_limited)",
    "headers": {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}},
}}


class _Facts:
    """The catalogue's facts, read again once they are ``ttl_s`` old; one request reads, the others wait for it."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._facts: list[DatasetFacts] = []
        self._read_at = -float("inf")

    def get(self, conn: Connection) -> list[DatasetFacts]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl_s:
                self._facts = dataset_facts(conn)
                self._read_at = time.monotonic()
            return self._facts


@dataclass(frozen=True, slots=True)
class OpenData:
    """The open-data routes' settings, limits and catalogue cache, kept on ``app.state.open_data``."""

    settings: OpenDataSettings
    requests: TokenBuckets
    exports: ExportSlots
    facts: _Facts = field(default_factory=lambda: _Facts(CATALOGUE_TTL_S))

    @classmethod
    def from_settings(cls, settings: OpenDataSettings) -> OpenData:
        return cls(settings, TokenBuckets(settings.rate_per_minute, settings.rate_burst),
                   ExportSlots(settings.exports_max, settings.exports_per_key))


def _open_data(request: Request) -> OpenData:
    state: OpenData = request.app.state.open_data
    return state


def _rate_limited(request: Request, caller: CurrentCaller) -> Caller:
    buckets = _open_data(request).requests
    wait = buckets.take(caller.name)
    if wait is not None:
        retry = TokenBuckets.retry_after(wait)
        raise TooManyRequests(f"this key made more than {buckets.per_minute:g} open-data requests a minute "
                              f"(bursts of {buckets.burst}); retry in {retry} s", retry_after_s=retry)
    return caller


RateLimited = Annotated[Caller, Depends(_rate_limited)]


def _export_slot(request: Request, caller: RateLimited) -> Iterator[Caller]:
    # A request-scoped dependency: FastAPI leaves it after the response is sent, so the slot covers the stream.
    slots = _open_data(request).exports
    refused = slots.acquire(caller.name)
    if refused is not None:
        raise TooManyRequests(f"{refused}; retry when one has finished", retry_after_s=EXPORTS_BUSY_RETRY_S)
    try:
        yield caller
    finally:
        slots.release(caller.name)


ExportSlot = Annotated[Caller, Depends(_export_slot)]


@router.get("/open/catalogue", response_model=None, name="open_catalogue",
            summary="What is published: a DCAT catalogue (JSON-LD) of datasets per device kind and zone",
            description="Served as `application/ld+json`, or as `application/json` to a client that asks only for "
                        "that.",
            responses={200: {"model": Catalogue, "content": {
                JSON_LD: {"schema": {"$ref": "#/components/schemas/Catalogue"}}}}, **RATE_LIMITED})
def get_catalogue(request: Request, conn: Db, _caller: RateLimited) -> JSONResponse:
    state = _open_data(request)
    base = (state.settings.base_url or str(request.base_url)).rstrip("/")
    here = base + request.app.url_path_for("open_catalogue")
    export = base + request.app.url_path_for("open_measurements")
    licence = state.settings.data_licence
    catalogue = Catalogue(
        context={**CONTEXT, "ioc": here + "#"},
        id=here,
        title="IOC platform open data",
        description="Readings of the city's public sensors, one dataset per device kind and zone (a district's "
                    "dataset includes its wards). Values are good-quality readings in SenML units; devices whose "
                    "owners keep them private are never included.",
        license=licence,
        modified=datetime.now(UTC),
        datasets=[_dataset(facts, here, export, licence) for facts in state.facts.get(conn)],
    )
    accept = request.headers.get("accept", "")
    plain = "application/json" in accept and JSON_LD not in accept
    return JSONResponse(catalogue.model_dump(mode="json", by_alias=True, exclude_none=True),
                        media_type="application/json" if plain else JSON_LD)


def _dataset(facts: DatasetFacts, catalogue: str, export: str, licence: str) -> Dataset:
    info = KINDS[facts.kind]
    metrics = published_metrics(facts.kind)
    period = _duration(info.interval_s)
    plural = "" if facts.devices == 1 else "s"
    wards = ", its wards included" if facts.zone_level == "district" else ""
    query = {"zone": facts.zone, "kind": facts.kind}
    return Dataset(
        id=f"{catalogue}#{facts.zone}/{facts.kind}",
        identifier=f"{facts.zone}/{facts.kind}",
        title=f"{info.title.capitalize()}s, {facts.zone_name}",
        description=f"Readings of {facts.devices} public {info.title}{plural} in {facts.zone_name} "
                    f"({facts.zone_level}{wards}): {', '.join(metrics)}. The downloads cover the last 24 hours; add "
                    f"from and to (at most {MAX_RANGE.days} days) and bucket=1h or 1d for hourly or daily means.",
        license=licence,
        accrual_periodicity=period,
        temporal_resolution=period,
        kind=facts.kind,
        device_count=facts.devices,
        keywords=[facts.kind, facts.zone, *metrics],
        spatial=Location(code=facts.zone, name=facts.zone_name, level=facts.zone_level),
        temporal=(Period(start=facts.first_hour, end=facts.last_hour + timedelta(hours=1))
                  if facts.first_hour is not None and facts.last_hour is not None else None),
        variables=[Variable(name=m, unit=VOCABULARY[m].unit, description=VOCABULARY[m].description)
                   for m in metrics],
        distributions=[
            Distribution(title="CSV export", download_url=f"{export}?{urlencode({**query, 'format': 'csv'})}",
                         media_type="text/csv", format="CSV"),
            Distribution(title="JSON lines export", download_url=f"{export}?{urlencode({**query, 'format': 'json'})}",
                         media_type=NDJSON, format="NDJSON"),
            Distribution(title="Live feed (MQTT, SenML)", media_type="application/senml+json",
                         topic_filters=[f"{FEED_PREFIX}/{zone}/{facts.kind}/#" for zone in facts.device_zones]),
        ],
    )


def _duration(seconds: int) -> str:
    """An ISO 8601 duration: 300 -> PT5M, 5400 -> PT1H30M."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "") if seconds else "PT0S"


_COLUMNS = "time,dev_eui,device,kind,zone,metric,unit,value"


@router.get(
    "/open/measurements", response_class=StreamingResponse, name="open_measurements",
    summary="Readings of public devices, streamed as CSV or JSON lines; hourly and daily means from the rollups",
    description=f"One row per reading (`bucket=raw`) or per device, metric and hour or day (`1h`, `1d`: `value` is "
                f"the mean, with `min`, `max` and `n`), oldest first. Columns: `{_COLUMNS}` (`1h`/`1d` add "
                "`min,max,n`). Times are UTC (ISO 8601); a raw reading's `zone` is the zone it was taken in, a "
                "bucket's the device's zone now. `zone` selects the devices placed in that zone (a district "
                "includes its wards). Good-quality values only.",
    responses={200: {"description": "the rows, streamed", "content": {
        "text/csv": {"schema": {"type": "string"}},
        NDJSON: {"schema": {"type": "string", "description": "one JSON object per line, keys as the CSV columns"}},
    }}, **RATE_LIMITED},
)
def get_measurements(
    request: Request,
    conn: FunctionDb,
    _caller: ExportSlot,
    zone: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,64}$", description="zone code; a district includes "
                                      "its wards", examples=["hai-chau"])] = None,
    kind: Kind | None = None,
    metric: Annotated[str | None, Query(max_length=64, description="one of the kind's published metrics",
                                        examples=["water_level"])] = None,
    dev_eui: Annotated[str | None, Query(pattern=r"^[0-9A-Fa-f]{16}$", description="one public device")] = None,
    start: Annotated[datetime | None, Query(alias="from", description="default: 24 hours before 'to'")] = None,
    end: Annotated[datetime | None, Query(alias="to", description=f"default: now; at most {MAX_RANGE.days} days "
                                          "after 'from'")] = None,
    bucket: Annotated[Bucket, Query(description="raw readings, or hourly or daily (city midnight) means")] = "raw",
    format: Annotated[Literal["csv", "json"], Query(description="csv, or json: JSON lines (NDJSON)")] = "csv",
) -> StreamingResponse:
    start, end = utc_range(start, end, DEFAULT_RANGE)
    export = plan_export(conn, zone=zone, kind=kind, metric=metric, dev_eui=dev_eui, start=start, end=end,
                         bucket=bucket, timezone=request.app.state.timezone)
    # The body takes a connection from the pool per window and gives it back before sending: a slow client holds
    # none. The planning connection (FunctionDb) goes back when this function returns, before the body is sent.
    body = stream_export(request.app.state.pool, export, format)
    name = f"ioc-open-data-{zone or 'all'}-{kind or 'all'}-{bucket}.{'csv' if format == 'csv' else 'ndjson'}"
    # A client that stops reading is dropped, which ends the request and gives its export slot back.
    limits: ApiSettings = request.app.state.limits
    return BoundedStream(body, media_type="text/csv; charset=utf-8" if format == "csv" else NDJSON,
                         headers={"Content-Disposition": f'attachment; filename="{name}"'},
                         idle_timeout_s=limits.export_idle_timeout_s,
                         send_timeout_s=limits.export_send_timeout_s)


def stream_export(pool: ConnectionPool[Connection], export: Export, format: Literal["csv", "json"], *,
                  rows_per_chunk: int = ROWS_PER_CHUNK) -> Iterator[bytes]:
    """The export formatted as UTF-8 chunks of ``rows_per_chunk`` lines (the last one shorter)."""
    line = _line(export, format)
    buffer: list[str] = []
    if format == "csv":
        buffer.append(_COLUMNS + (",min,max,n\n" if export.bucket != "raw" else "\n"))
    for window in export_windows(pool, export):
        i = 0
        while i < len(window):
            take = rows_per_chunk - len(buffer)
            buffer.extend(map(line, window[i:i + take]))
            i += take
            if len(buffer) >= rows_per_chunk:
                yield "".join(buffer).encode()
                buffer = []
    if buffer:
        yield "".join(buffer).encode()


def _line(export: Export, format: Literal["csv", "json"]) -> Callable[[tuple[Any, ...]], str]:
    """A row formatter with each device's and metric's text prepared once, not per row."""
    iso = _times()
    if format == "csv":
        device = {i: f"{d.dev_eui},{_cell(d.name)},{d.kind}" for i, d in export.devices.items()}
        place = {i: _cell(d.zone or "") for i, d in export.devices.items()}
        zones = {i: _cell(code) for i, code in export.zones.items()}
        metric = {m.id: f"{m.name},{_cell(m.unit)}" for m in VOCABULARY.values()}
        if export.bucket == "raw":
            return lambda r: f"{iso(r[0])},{device[r[1]]},{zones.get(r[3], '')},{metric[r[2]]},{r[4]!r}\n"
        return lambda r: f"{iso(r[0])},{device[r[1]]},{place[r[1]]},{metric[r[2]]},{r[4]!r},{r[5]!r},{r[6]!r},{r[3]}\n"

    def fields(values: dict[str, Any]) -> str:
        return json.dumps(values, ensure_ascii=False, separators=(",", ":"))[1:-1]

    device = {i: fields({"dev_eui": d.dev_eui, "device": d.name, "kind": d.kind}) for i, d in export.devices.items()}
    place = {i: json.dumps(d.zone, ensure_ascii=False) for i, d in export.devices.items()}
    zones = {i: json.dumps(code, ensure_ascii=False) for i, code in export.zones.items()}
    metric = {m.id: fields({"metric": m.name, "unit": m.unit}) for m in VOCABULARY.values()}
    if export.bucket == "raw":
        return lambda r: (f'{{"time":"{iso(r[0])}",{device[r[1]]},"zone":{zones.get(r[3], "null")},{metric[r[2]]},'
                          f'"value":{r[4]!r}}}\n')
    return lambda r: (f'{{"time":"{iso(r[0])}",{device[r[1]]},"zone":{place[r[1]]},{metric[r[2]]},'
                      f'"value":{r[4]!r},"min":{r[5]!r},"max":{r[6]!r},"n":{r[3]}}}\n')


def _times() -> Callable[[datetime], str]:
    """ISO 8601 in UTC, remembering the last time: rows come in time order, a bucket's rows share theirs."""
    last: list[Any] = [None, ""]

    def iso(moment: datetime) -> str:
        if moment != last[0]:
            last[0], last[1] = moment, moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        text: str = last[1]
        return text

    return iso


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A CSV text field, quoted when it must be (RFC 4180), and defused as OWASP advises against CSV injection: a
    cell a spreadsheet would read as a formula (starting with = + - @, tab or carriage return; a device's name is
    anyone's text) gets a leading single quote and quotes around it, so it shows as the text it is."""
    if text.startswith(_FORMULA_START):
        return "\"'" + text.replace('"', '""') + '"'
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
