"""The device rules: technicians register, move, claim and retire devices; operators read them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator

from gateways.database import borrow
from ioc_api import device_import
from ioc_api.deps import Access, Db, ProvisionerDep, Reader, RulesDep, Writer
from ioc_api.device_import import IMPORT_COLUMNS
from ioc_api.errors import ErrorBody, TooManyRequests
from ioc_api.queries.device_writes import (
    claim_device,
    create_device,
    decommission_device,
    recommission_device,
    update_device,
)
from ioc_api.queries.devices import DeviceFilters, get_device, list_devices
from ioc_api.queries.monitoring import device_overview, device_series
from ioc_api.rate_limit import Slots
from ioc_api.registration import RegistrationRules
from ioc_api.schemas.devices import (
    DeviceClaim,
    DeviceCreate,
    DeviceList,
    DevicePublic,
    DeviceRecommission,
    DeviceUpdate,
    ImportReport,
    parse_eui,
)
from ioc_api.schemas.monitoring import DeviceOverview, Series
from ioc_api.time_range import utc_range
from ioc_core.eui import EUI_FORMS
from ioc_core.kinds import Kind
from ioc_core.settings import ApiSettings

__all__ = ["DevEui", "router"]

router = APIRouter(tags=["devices"])

DevEui = Annotated[str, BeforeValidator(parse_eui),
                   Path(description=EUI_FORMS, examples=["a84041000181c9a1"], json_schema_extra={"maxLength": 64})]

IMPORT_BUSY_RETRY_S = 10
"""Retry-After of a refused concurrent import: an import of a few thousand rows takes seconds."""


def _import_slot(request: Request, scope: Writer) -> Iterator[Access]:
    # Taken before the body is read and held until the answer is sent: one import holds a database connection
    # for its whole transaction, so a key's parallel uploads would otherwise empty the pool for everyone.
    slots: Slots = request.app.state.imports
    refused = slots.acquire(scope.caller.name)
    if refused is not None:
        raise TooManyRequests(f"{refused}; retry when it has finished", retry_after_s=IMPORT_BUSY_RETRY_S)
    try:
        yield scope
    finally:
        slots.release(scope.caller.name)


ImportSlot = Annotated[Access, Depends(_import_slot)]


@router.get("/devices", response_model=DeviceList, summary="List devices in your zones, with filters")
def get_devices(
    conn: Db,
    scope: Reader,
    zone: Annotated[str | None, Query(max_length=64, description="zone code; a district includes its wards")] = None,
    kind: Kind | None = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["registered", "unregistered", "decommissioned"] | None = None,
    health: Literal["reporting", "late", "silent", "never_seen"] | None = None,
    provisioning: Literal["not_configured", "pending", "provisioned", "failed", "deprovision_pending",
                          "deprovisioned"] | None = None,
    seen_after: Annotated[datetime | None, Query(description="last uplink at or after")] = None,
    seen_before: Annotated[datetime | None, Query(description="last uplink before (or never)")] = None,
    q: Annotated[str | None, Query(max_length=100, description="part of the name or DevEUI")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DeviceList:
    filters = DeviceFilters(zone=zone, kind=kind, model=model, status=status, health=health,
                            provisioning=provisioning, seen_after=seen_after, seen_before=seen_before, search=q)
    return list_devices(conn, filters, scope.zones, limit=limit, offset=offset)


@router.post("/devices", response_model=DevicePublic, status_code=201, summary="Register a device",
             description="The DevEUI (and JoinEUI) may be written in any case, with colons, dashes or spaces "
                         "between the digits; it is stored as 16 lower-case hex digits. The zone comes from "
                         "latitude and longitude.",
             responses={409: {"model": ErrorBody, "description": "the DevEUI is registered already, or was "
                              "decommissioned (recommission it: POST /api/v1/devices/{dev_eui}/recommission), or "
                              "the ingest enrolled it (claim it: POST /api/v1/devices/{dev_eui}/claim)"}})
def post_device(body: DeviceCreate, conn: Db, scope: Writer, rules: RulesDep,
                provisioner: ProvisionerDep) -> DevicePublic:
    device = create_device(conn, body, rules, scope.zones, actor=scope.caller.name)
    return _provisioned(conn, device, provisioner)


@router.post("/devices:import", response_model=ImportReport, summary="Register devices from a CSV file",
             responses={429: {"model": ErrorBody, "description": "this key (or the server) runs its most imports "
                                                                 "at once already; retry after `Retry-After`"}},
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {
                 "type": "string",
                 "description": "header row with: " + ", ".join(IMPORT_COLUMNS) + "; tags as key=value;key=value",
             }}}}})
async def import_devices(request: Request, scope: ImportSlot, rules: RulesDep, provisioner: ProvisionerDep,
                         dry_run: Annotated[bool, Query(description="check every row, store nothing")] = False,
                         ) -> ImportReport:
    settings: ApiSettings = request.app.state.limits
    body = bytearray()
    async for chunk in request.stream():  # the body guard stops the stream past IOC_API_IMPORT_MAX_BYTES
        body += chunk
    # Parsing and row work are blocking: off the event loop, like any sync route. The connection is taken only
    # now, so a slow upload holds none.
    rows = await run_in_threadpool(device_import.parse, bytes(body), max_rows=settings.import_max_rows)
    del body
    report = await run_in_threadpool(_store, request, rows, scope, rules, dry_run)
    if report.created and not dry_run:
        provisioner.wake()
    return report


def _store(request: Request, rows: list[device_import.ParsedRow], scope: Access, rules: RegistrationRules,
           dry_run: bool) -> ImportReport:
    with borrow(request.app.state.pool, timeout=request.app.state.pool_timeout_s) as conn:
        return device_import.store(conn, rows, rules, scope.zones, actor=scope.caller.name, dry_run=dry_run)


@router.get("/devices/{dev_eui}", response_model=DevicePublic, summary="One device, with its commissioning steps")
def get_one(dev_eui: DevEui, conn: Db, scope: Reader) -> DevicePublic:
    return get_device(conn, dev_eui, scope.zones)


@router.patch("/devices/{dev_eui}", response_model=DevicePublic, summary="Change or move a device",
              description="Only the fields sent change. **Moving a device to another zone**: send its new "
                          "`latitude` and `longitude` together; the zone is derived from them (the ward when the "
                          "point lies in one). Add `zone` (a district or ward code) to have the move refused "
                          "unless the point lies in that zone, e.g. `{\"latitude\": 16.07, \"longitude\": "
                          "108.15, \"zone\": \"lien-chieu\"}`. `zone` alone checks the stored position and "
                          "re-derives the zone from it; it never moves a device by itself. Refusals: 422 with "
                          "`field` `zone` (unknown code, or the position lies in another zone), `latitude` (no "
                          "position stored, or outside the city), 403 when the position is outside your zones, "
                          "409 for a decommissioned or unregistered device.")
def patch_device(dev_eui: DevEui, body: DeviceUpdate, conn: Db, scope: Writer, rules: RulesDep,
                 provisioner: ProvisionerDep) -> DevicePublic:
    device = update_device(conn, dev_eui, body, rules, scope.zones, actor=scope.caller.name)
    return _provisioned(conn, device, provisioner)


@router.post("/devices/{dev_eui}/claim", response_model=DevicePublic,
             summary="Register a device the ingest enrolled on its own (shown as unregistered), or a decommissioned "
                     "device again")
def post_claim(dev_eui: DevEui, body: DeviceClaim, conn: Db, scope: Writer, rules: RulesDep,
               provisioner: ProvisionerDep) -> DevicePublic:
    device = claim_device(conn, dev_eui, body, rules, scope.zones, actor=scope.caller.name)
    return _provisioned(conn, device, provisioner)


@router.delete("/devices/{dev_eui}", response_model=DevicePublic,
               summary="Decommission a device: its data stays, ChirpStack forgets it")
def delete_device(dev_eui: DevEui, conn: Db, scope: Writer, provisioner: ProvisionerDep,
                  reason: Annotated[str | None, Query(max_length=500)] = None) -> DevicePublic:
    device = decommission_device(conn, dev_eui, scope.zones, actor=scope.caller.name, reason=reason)
    return _provisioned(conn, device, provisioner)


@router.post("/devices/{dev_eui}/recommission", response_model=DevicePublic,
             summary="Bring a decommissioned device back into service",
             description="The device comes back with its registration (name, kind, model, codec, tags) where it "
                         "stood, or at the `latitude` and `longitude` sent (with `zone` as in a move). With "
                         "ChirpStack provisioning, send `app_key` again: decommissioning deleted the device and its "
                         "keys there. The same role and zone rules as registering; audited as `recommission`. "
                         "The body may be empty. 409 when the device is not decommissioned.")
def post_recommission(dev_eui: DevEui, conn: Db, scope: Writer, rules: RulesDep, provisioner: ProvisionerDep,
                      body: Annotated[DeviceRecommission | None, Body()] = None) -> DevicePublic:
    device = recommission_device(conn, dev_eui, body or DeviceRecommission(), rules, scope.zones,
                                 actor=scope.caller.name)
    return _provisioned(conn, device, provisioner)


def _provisioned(conn: Db, device: DevicePublic, provisioner: ProvisionerDep) -> DevicePublic:
    """One inline attempt, so a technician in the field sees the outcome; the background retries the rest."""
    if device.provisioning.state in ("pending", "deprovision_pending") and provisioner.enabled:
        provisioner.provision_now(conn, device.dev_eui)
        return get_device(conn, device.dev_eui, None)
    return device


@router.get("/devices/{dev_eui}/overview", response_model=DeviceOverview,
            summary="Latest values, battery, radio trend, frame loss and commissioning of one device")
def get_overview(dev_eui: DevEui, conn: Db, scope: Reader,
                 hours: Annotated[int, Query(ge=1, le=168, description="window of the radio trend")] = 24,
                 ) -> DeviceOverview:
    return device_overview(conn, dev_eui, scope.zones, hours=hours)


@router.get("/devices/{dev_eui}/measurements", response_model=Series,
            summary="A metric's time series; hourly and longer buckets come from the rollups",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
def get_measurements(
    request: Request,
    dev_eui: DevEui,
    conn: Db,
    scope: Reader,
    metric: Annotated[str, Query(max_length=64, examples=["water_level"])],
    start: Annotated[datetime | None, Query(alias="from", description="default: 24 hours before 'to'")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    bucket: Annotated[Literal["raw", "auto", "1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d", "7d"], Query(
        description="raw points, a width, or auto (raw up to 6 h, 5m up to 2 days, 1h up to 60 days, then 1d)",
    )] = "auto",
    format: Annotated[Literal["json", "csv"], Query(description="or send Accept: text/csv")] = "json",
) -> Series | Response:
    start, end = utc_range(start, end, timedelta(hours=24))
    if bucket == "auto":
        span = end - start
        bucket = ("raw" if span <= timedelta(hours=6) else "5m" if span <= timedelta(days=2)
                  else "1h" if span <= timedelta(days=60) else "1d")
    series = device_series(conn, dev_eui, scope.zones, metric=metric, start=start, end=end, bucket=bucket,
                           timezone=request.app.state.timezone)
    if format == "csv" or "text/csv" in request.headers.get("accept", ""):
        # One body, not a stream of lines: the series is bounded, and each streamed chunk costs a thread hop.
        return Response("".join(_csv(series)), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{series.dev_eui}-{series.metric}.csv"'})
    return series


def _csv(series: Series) -> Iterator[str]:
    yield "time,metric,unit,n,mean,min,max\n"
    for p in series.points:
        yield (f"{p.time.isoformat()},{series.metric},{series.unit},{p.n},"
               f"{'' if p.mean is None else repr(p.mean)},{'' if p.min is None else repr(p.min)},"
               f"{'' if p.max is None else repr(p.max)}\n")
