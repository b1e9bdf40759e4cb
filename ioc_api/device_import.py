"""Device registration from a CSV file: parsed and checked in full first, then stored row by row in one transaction.

The row limit is counted while the file is parsed, so a file past it is refused before anything touches the
database; every problem of one row (a bad value, a NUL character, a cell the parser refuses) refuses that row
and names it, and the others go on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateways.database import Connection
from ioc_api.errors import ApiError, Invalid, TooLarge
from ioc_api.queries.devices import Registry, Scope, create_device
from ioc_api.schemas.devices import DeviceCreate, ImportReport, ImportRow

__all__ = ["IMPORT_COLUMNS", "REQUIRED_COLUMNS", "ParsedRow", "parse", "store"]

IMPORT_COLUMNS = ("dev_eui", "name", "kind", "model", "latitude", "longitude", "codec_id", "join_eui", "app_key",
                  "nwk_key", "description", "expected_interval_s", "tags", "public")
REQUIRED_COLUMNS = ("dev_eui", "name", "kind", "model", "latitude", "longitude")


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One data row: a device to register, or why the row is refused."""

    line: int
    dev_eui: str | None
    device: DeviceCreate | None
    refusal: ImportRow | None


def parse(body: bytes, *, max_rows: int) -> list[ParsedRow]:
    """Every data row of a CSV body; TooLarge on the row past ``max_rows``, Invalid when the file cannot be read."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Invalid(f"the CSV is not UTF-8 (byte {err.start})", field="body") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in reader.fieldnames or ()]
    except csv.Error as err:
        raise Invalid(f"the CSV header cannot be read: {err}", field="body") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise Invalid(f"the CSV header lacks {', '.join(missing)} (columns: {', '.join(IMPORT_COLUMNS)})",
                      field="body")
    unknown = [h for h in header if h not in IMPORT_COLUMNS]
    if unknown:
        raise Invalid(f"unknown CSV columns: {', '.join(unknown)}", field="body")
    reader.fieldnames = header
    rows: list[ParsedRow] = []
    for line, record in _records(reader):
        if len(rows) >= max_rows:
            raise TooLarge(f"more than {max_rows:,} rows; split the file (nothing was stored)", field="body")
        if record is None:
            rows.append(ParsedRow(line, None, None, ImportRow(row=line, dev_eui=None, result="refused", field="body",
                                                              reason="the row cannot be parsed as CSV")))
            continue
        eui = (record.get("dev_eui") or "").strip().lower() or None
        try:
            rows.append(ParsedRow(line, eui, DeviceCreate.model_validate(_row_values(record)), None))
        except ValidationError as err:
            first = err.errors()[0]
            rows.append(ParsedRow(line, eui, None, ImportRow(
                row=line, dev_eui=eui, result="refused", field=".".join(str(p) for p in first["loc"]) or None,
                reason=first["msg"])))
        except ApiError as err:
            rows.append(ParsedRow(line, eui, None, ImportRow(row=line, dev_eui=eui, result="refused",
                                                             field=err.field, reason=err.message)))
    return rows


def _records(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str | Any, str | Any] | None]]:
    """(line, record) pairs; a record the parser refuses is None, and parsing goes on with the next line."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error:
            # The DictReader counts only rows it returns; its reader has counted the refused one too.
            yield reader.reader.line_num, None
        else:
            yield reader.line_num, record


def _row_values(record: dict[str | Any, str | Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in record.items():
        if name is None:  # more cells than header columns
            raise Invalid("the row has more cells than the header", field="body")
        value = (raw or "").strip()
        if not value:
            continue
        if "\x00" in value:
            # PostgreSQL text cannot hold NUL; refused here, the row is named instead of the whole file failing.
            raise Invalid("a NUL character (0x00) is not allowed", field=name)
        if name == "tags":
            pairs = [p.split("=", 1) for p in value.split(";") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise Invalid("tags must look like key=value;key=value", field="tags")
            values[name] = {k.strip(): v.strip() for k, v in pairs}
        else:
            values[name] = value
    return values


def store(conn: Connection, rows: list[ParsedRow], registry: Registry, zones: Scope, *, actor: str,
          dry_run: bool) -> ImportReport:
    """Register the rows' devices in one transaction (rolled back for a dry run); each row refused on its own."""
    report: list[ImportRow] = []
    created = 0
    with conn.transaction(force_rollback=dry_run):
        for row in rows:
            if row.device is None:
                assert row.refusal is not None
                report.append(row.refusal)
                continue
            try:
                create_device(conn, row.device, registry, zones, actor=actor)
            except ApiError as err:
                report.append(ImportRow(row=row.line, dev_eui=row.dev_eui, result="refused", field=err.field,
                                        reason=err.message))
            else:
                created += 1
                report.append(ImportRow(row=row.line, dev_eui=row.dev_eui, result="valid" if dry_run else "created"))
    return ImportReport(created=0 if dry_run else created, refused=len(report) - created, dry_run=dry_run,
                        rows=report)
