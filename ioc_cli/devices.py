"""``ioc devices``: the device registry at a technician's terminal, through the IOC API so roles and audit apply."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ioc_api.schemas.devices import DeviceList, DevicePublic, ImportReport
from ioc_cli.environment import environment
from ioc_core.errors import FatalError
from ioc_core.eui import normalise_eui
from ioc_core.kinds import KINDS
from ioc_core.settings import ApiClientSettings, load

if TYPE_CHECKING:
    from gateways.ioc_api_client import IocApiClient

__all__ = ["register"]

# Every command talks to the API and reads the same variables, listed at the end of each help.
_EPILOG = environment(ApiClientSettings)
_KINDS = ", ".join(KINDS)
_EUI_HELP = "the DevEUI: 16 hex digits; colons, dashes or spaces between them and any case are fine"


@contextmanager
def _api() -> Iterator[IocApiClient]:
    """A client on the configured API; a refusal becomes one line naming the field at fault and the status."""
    # Imported here, not at start-up of every `ioc` command: the HTTP library takes a noticeable time to load.
    from gateways.ioc_api_client import IocApiClient, IocApiRefused

    settings = load(ApiClientSettings)
    with IocApiClient(settings.url, settings.required_key(), timeout_s=settings.timeout_s) as client:
        try:
            yield client
        except IocApiRefused as err:
            field = f" [field: {err.field}]" if err.field else ""
            raise FatalError(f"the API refused (HTTP {err.status}): {err.message}{field}") from err


def _eui(value: str) -> str:
    try:
        return normalise_eui(value)
    except ValueError as err:
        raise FatalError(f"DEV_EUI {value!r} {err}") from err


def _tags(pairs: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise FatalError(f"--tag {pair!r}: write it as key=value, e.g. --tag route=r1")
        tags[name.strip()] = value.strip()
    return tags


def _position(latitude: float | None, longitude: float | None) -> dict[str, float]:
    if (latitude is None) != (longitude is None):
        raise FatalError("--lat and --lon go together: a position needs both")
    return {} if latitude is None or longitude is None else {"latitude": latitude, "longitude": longitude}


def _when(value: Any) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "-"


def _zone(device: DevicePublic) -> str:
    return f"{device.zone.code} ({device.zone.name})" if device.zone is not None else "(none)"


def _done(verb: str, device: DevicePublic) -> None:
    Console(highlight=False).print(
        f"{verb} {device.dev_eui} ({escape(device.name)}) in zone {escape(_zone(device))}: status {device.status}, "
        f"stage {device.commissioning.stage}, ChirpStack {device.provisioning.state}"
        + (f" ({escape(device.provisioning.error)})" if device.provisioning.error else ""), soft_wrap=True)


Lat = Annotated[float | None, typer.Option("--lat", help="latitude in degrees, e.g. 16.0614", min=-90, max=90)]
Lon = Annotated[float | None, typer.Option("--lon", help="longitude in degrees, e.g. 108.2275", min=-180, max=180)]
ZoneOpt = Annotated[str | None, typer.Option(
    "--zone", help="a zone code (district or ward, see `ioc zones list`) the position must lie in; refused "
    "otherwise, so a typo in the coordinates cannot file the device in the wrong district")]
AppKey = Annotated[str | None, typer.Option(
    "--app-key", help="OTAA AppKey, 32 hex digits; needed when the platform provisions ChirpStack")]
NwkKey = Annotated[str | None, typer.Option("--nwk-key", help="OTAA NwkKey of a LoRaWAN 1.1 device")]
Reason = Annotated[str | None, typer.Option("--reason", help="why, kept in the audit log")]
DevEuiArg = Annotated[str, typer.Argument(metavar="DEV_EUI", help=_EUI_HELP)]


def register(app: typer.Typer) -> None:
    devices = typer.Typer(
        help=("The device registry through the IOC API: list, show, register, import a CSV, move, "
                   "decommission and recommission devices, with your key's role and zones, audited under your "
                   "name."),
        no_args_is_help=True,
        epilog=_EPILOG,
    )

    @devices.command("list", epilog=_EPILOG,
                     help=("List devices in your zones, with filters; --json for scripts."))
    def list_cmd(
        zone: Annotated[str | None, typer.Option(help="zone code; a district includes its wards")] = None,
        kind: Annotated[str | None, typer.Option(help=f"one of {_KINDS}")] = None,
        status: Annotated[str | None, typer.Option(help="registered, unregistered or decommissioned")] = None,
        health: Annotated[str | None, typer.Option(help="reporting, late, silent or never_seen")] = None,
        search: Annotated[str | None, typer.Option("--search", "-q", help="part of the name or DevEUI")] = None,
        limit: Annotated[int, typer.Option(min=1, max=500, help="devices per page")] = 50,
        offset: Annotated[int, typer.Option(min=0, help="devices to skip")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print the API's answer as JSON")] = False,
    ) -> None:
        filters: dict[str, str | int] = {"limit": limit, "offset": offset}
        for name, value in (("zone", zone), ("kind", kind), ("status", status), ("health", health), ("q", search)):
            if value is not None:
                filters[name] = value
        with _api() as api:
            page = DeviceList.model_validate(api.list_devices(filters))
        if as_json:
            print(page.model_dump_json(indent=2))
            return
        table = Table(title=f"devices {offset + 1 if page.items else 0}–{offset + len(page.items)} of {page.total}")
        table.add_column("DevEUI", no_wrap=True)
        for column in ("name", "kind", "zone", "status", "health", "stage", "last seen"):
            table.add_column(column)
        for d in page.items:
            table.add_row(d.dev_eui, d.name, d.kind or "-", d.zone.code if d.zone else "-", d.status, d.health,
                          d.commissioning.stage, _when(d.last_seen_at))
        Console().print(table)

    @devices.command("show", epilog=_EPILOG,
                     help=("One device: where it is, its health, ChirpStack state and commissioning "
                                "steps; --json for scripts."))
    def show_cmd(
        dev_eui: DevEuiArg,
        as_json: Annotated[bool, typer.Option("--json", help="print the API's answer as JSON")] = False,
    ) -> None:
        eui = _eui(dev_eui)
        with _api() as api:
            device = DevicePublic.model_validate(api.get_device(eui))
        if as_json:
            print(device.model_dump_json(indent=2))
            return
        table = Table(title=f"{device.dev_eui} {device.name}", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        c = device.commissioning
        rows = [
            ("status", device.status), ("health", device.health), ("kind", device.kind or "-"),
            ("model / codec", f"{device.model or '-'} / {device.codec_id or '-'}"),
            ("zone", _zone(device)),
            ("position", f"{device.latitude}, {device.longitude}" if device.latitude is not None else "-"),
            ("JoinEUI", device.join_eui or "-"), ("reports every", f"{device.expected_interval_s} s"),
            ("last seen", _when(device.last_seen_at)),
            ("tags", "; ".join(f"{k}={v}" for k, v in device.tags.items()) or "-"),
            ("public", "yes" if device.public else "no"),
            ("ChirpStack", device.provisioning.state + (f": {device.provisioning.error}"
                                                        if device.provisioning.error else "")),
            ("stage", c.stage), ("registered", _when(c.registered_at)), ("provisioned", _when(c.provisioned_at)),
            ("first uplink", _when(c.first_uplink_at)), ("decoding verified", _when(c.decoding_verified_at)),
            ("commissioned", _when(c.commissioned_at)), ("decommissioned", _when(c.decommissioned_at)),
        ]
        for name, value in rows:
            table.add_row(name, escape(value))
        Console().print(table)

    @devices.command("register", epilog=_EPILOG, help=(
        "Register one device; its zone comes from --lat/--lon. A decommissioned DevEUI is brought back with "
        "`ioc devices recommission` instead."))
    def register_cmd(
        dev_eui: DevEuiArg,
        name: Annotated[str, typer.Option(help="a name people recognise, e.g. 'WL Cầu Rồng'")],
        kind: Annotated[str, typer.Option(help=f"one of {_KINDS}")],
        model: Annotated[str, typer.Option(help="device model, known to a codec (`ioc codecs list`)")],
        latitude: Annotated[float, typer.Option("--lat", help="latitude in degrees", min=-90, max=90)],
        longitude: Annotated[float, typer.Option("--lon", help="longitude in degrees", min=-180, max=180)],
        codec: Annotated[str | None, typer.Option(help="a codec id over the model's")] = None,
        join_eui: Annotated[str | None, typer.Option(help="JoinEUI (AppEUI), 16 hex digits")] = None,
        app_key: AppKey = None,
        nwk_key: NwkKey = None,
        description: Annotated[str | None, typer.Option(help="free text, e.g. where it is mounted")] = None,
        interval: Annotated[int | None, typer.Option(help="reporting interval in seconds; default: the kind's",
                                                     min=1)] = None,
        tag: Annotated[list[str] | None, typer.Option(help="key=value; repeatable")] = None,
        private: Annotated[bool, typer.Option("--private", help="keep it out of the open data")] = False,
    ) -> None:
        body: dict[str, Any] = {"dev_eui": _eui(dev_eui), "name": name, "kind": kind, "model": model,
                                "latitude": latitude, "longitude": longitude, "tags": _tags(tag),
                                "public": not private}
        for field, value in (("codec_id", codec), ("join_eui", join_eui), ("app_key", app_key),
                             ("nwk_key", nwk_key), ("description", description), ("expected_interval_s", interval)):
            if value is not None:
                body[field] = value
        with _api() as api:
            device = DevicePublic.model_validate(api.register_device(body))
        _done("registered", device)

    @devices.command("import", epilog=_EPILOG, help=(
        "Register the devices of a CSV file: a header row with dev_eui, name, kind, model, latitude, longitude "
        "and optionally codec_id, join_eui, app_key, nwk_key, description, expected_interval_s, tags (k=v;k=v), "
        "public. Every row is checked; refused rows are listed with their line and the field at fault, and the "
        "others are registered. --dry-run checks without storing. Exits 1 when a row was refused."))
    def import_cmd(
        file: Annotated[Path, typer.Argument(help="the CSV file (UTF-8)")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="check every row, store nothing")] = False,
    ) -> None:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise FatalError(f"{file}: {error.strerror or error}") from error
        err = Console(stderr=True)
        with _api() as api, Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TimeElapsedColumn(), console=err) as progress:
            task = progress.add_task(f"sending {file.name}", total=len(data))

            def sent(n: int) -> None:
                progress.advance(task, n)
                if progress.tasks[0].completed >= len(data):
                    progress.update(task, description="the API checks every row")

            report = ImportReport.model_validate(api.import_devices(data, dry_run=dry_run, sent=sent))
        out = Console(highlight=False)
        refused = [r for r in report.rows if r.result == "refused"]
        for r in refused:
            where = f"line {r.row}" + (f" ({r.dev_eui})" if r.dev_eui else "")
            field = f"{r.field}: " if r.field else ""
            out.print(f"[red]refused[/] {escape(where)} {escape(field + (r.reason or ''))}", soft_wrap=True)
        valid = len(report.rows) - len(refused)
        if dry_run:
            out.print(f"{file.name}: {valid} valid, {len(refused)} refused (dry run: nothing stored)")
        else:
            out.print(f"{file.name}: {report.created} created, {len(refused)} refused")
        if refused:
            raise typer.Exit(1)

    @devices.command("move", epilog=_EPILOG, help=(
        "Move a device: its new --lat/--lon, from which its zone is derived; add --zone to have the move refused "
        "unless the new position lies in that zone. --zone alone checks the stored position and never moves the "
        "device by itself."))
    def move_cmd(dev_eui: DevEuiArg, latitude: Lat = None, longitude: Lon = None, zone: ZoneOpt = None) -> None:
        body: dict[str, Any] = _position(latitude, longitude)
        if zone is not None:
            body["zone"] = zone
        if not body:
            raise FatalError("say where: --lat and --lon, with or without --zone")
        eui = _eui(dev_eui)
        with _api() as api:
            device = DevicePublic.model_validate(api.update_device(eui, body))
        _done("moved", device)

    @devices.command("decommission", epilog=_EPILOG, help=(
        "Retire a device: it stops counting as expected, ChirpStack forgets it (with its keys), its data stays. "
        "`ioc devices recommission` brings it back."))
    def decommission_cmd(dev_eui: DevEuiArg, reason: Reason = None) -> None:
        eui = _eui(dev_eui)
        with _api() as api:
            device = DevicePublic.model_validate(api.decommission_device(eui, reason))
        _done("decommissioned", device)

    @devices.command("recommission", epilog=_EPILOG, help=(
        "Bring a decommissioned device back with its registration (name, kind, model, tags), where it stood or "
        "at a new --lat/--lon (checked against --zone when given). With ChirpStack provisioning, give --app-key "
        "again: decommissioning deleted the keys there."))
    def recommission_cmd(dev_eui: DevEuiArg, latitude: Lat = None, longitude: Lon = None, zone: ZoneOpt = None,
                         app_key: AppKey = None, nwk_key: NwkKey = None, reason: Reason = None) -> None:
        body: dict[str, Any] = _position(latitude, longitude)
        for field, value in (("zone", zone), ("app_key", app_key), ("nwk_key", nwk_key), ("reason", reason)):
            if value is not None:
                body[field] = value
        eui = _eui(dev_eui)
        with _api() as api:
            device = DevicePublic.model_validate(api.recommission_device(eui, body))
        _done("recommissioned", device)

    app.add_typer(devices, name="devices")
