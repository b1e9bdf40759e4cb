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
from ioc_api.queries.device_writes import create_device
from ioc_api.queries.device_zones import ZoneScope
from ioc_api.registration import RegistrationRules
from ioc_api.schemas.devices import DeviceCreate, ImportReport, ImportRow
from ioc_core.errors import Invalid, OverLimit, RefusedError
from ioc_core.eui import normalise_eui

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
    """Every data row of a CSV body; OverLimit on the row past ``max_rows``, Invalid when the file cannot be read.

    A row is numbered by the line it starts on (the header is line 1). A DevEUI that a row above has already
    named refuses the later row, so a dry run says so instead of "exists already" on the real run.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Invalid(f"the CSV is not UTF-8 (byte {err.start})", field="body") from err
    records = _records(list(io.StringIO(text, newline="")))
    first = next(records, None)
    if first is not None and first.problem == _UNTERMINATED:
        raise Invalid(f'the CSV header (line {first.line}) has a quote (") that is never closed', field="body")
    if first is not None and first.problem is not None:
        raise Invalid(f"the CSV header cannot be read: {first.problem}", field="body")
    header = [h.strip().lower() for h in (first.cells if first is not None and first.cells else ())]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise Invalid(f"the CSV header lacks {', '.join(missing)} (columns: {', '.join(IMPORT_COLUMNS)})",
                      field="body")
    unknown = [h for h in header if h not in IMPORT_COLUMNS]
    if unknown:
        raise Invalid(f"unknown CSV columns: {', '.join(unknown)}", field="body")
    rows: list[ParsedRow] = []
    seen: dict[str, int] = {}
    for record in records:
        if len(rows) >= max_rows:
            raise OverLimit(f"more than {max_rows:,} rows; split the file (nothing was stored)", field="body")
        line = record.line
        if record.problem is not None:
            reason, column = record.problem, "body"
            if record.problem == _UNTERMINATED and record.cell is not None:
                column = header[record.cell] if record.cell < len(header) else "body"
                reason = (f'line {line}: the quote (") that opens the {column} cell (cell {record.cell + 1}) is '
                          f'never closed, so every line after it was read into that cell; close the quote or '
                          f'remove it (the lines after it were read on their own)')
            eui = _eui_of(record.cells, header) if record.cell != 0 else None
            rows.append(ParsedRow(line, eui, None, ImportRow(row=line, dev_eui=eui, result="refused", field=column,
                                                             reason=reason)))
            continue
        cells = record.cells
        eui = _eui_of(cells, header)
        earlier = seen.setdefault(eui, line) if eui else line
        try:
            if earlier != line:
                raise Invalid(f"DevEUI {eui} is repeated in this file (line {earlier}); a device is registered once",
                              field="dev_eui")
            rows.append(ParsedRow(line, eui, DeviceCreate.model_validate(_row_values(header, cells)), None))
        except ValidationError as err:
            problem = err.errors()[0]
            rows.append(ParsedRow(line, eui, None, ImportRow(
                row=line, dev_eui=eui, result="refused", field=".".join(str(p) for p in problem["loc"]) or None,
                reason=str(problem["msg"]) + record.span_hint)))
        except RefusedError as err:
            rows.append(ParsedRow(line, eui, None, ImportRow(row=line, dev_eui=eui, result="refused",
                                                             field=err.field, reason=err.message + record.span_hint)))
    return rows


def _eui_of(cells: list[str], header: list[str]) -> str | None:
    """The DevEUI a row names, normalised when it is one (so repeats in any form are found), as written if not."""
    column = header.index("dev_eui")
    raw = cells[column].strip() if column < len(cells) else ""
    try:
        return normalise_eui(raw)
    except ValueError:
        return raw.lower() or None


@dataclass(frozen=True, slots=True)
class _Record:
    line: int
    """The line the record starts on."""
    last: int
    cells: list[str]
    problem: str | None = None
    cell: int | None = None
    """The cell (0-based) the problem is in, when it is in one."""

    @property
    def span_hint(self) -> str:
        """For a refused record over several lines: most often a closing quote is missing."""
        if self.last == self.line:
            return ""
        return (f' (a quoted cell runs from line {self.line} to line {self.last}: is a closing quote (") '
                "missing?)")


def _records(lines: list[str]) -> Iterator[_Record]:
    """The file's records, blank lines skipped; parsing goes on after a record the parser refuses.

    Python's csv reader, not strict, reads an unterminated quote to the end of the file as one cell: that record
    is refused at the line where the quote opens, and reading starts again on the line after it.
    """
    start = 0
    while start < len(lines):
        rest = lines[start:]
        reader = csv.reader(rest)
        done = 0  # lines of ``rest`` read so far
        try:
            for cells in reader:
                begin, done = start + done + 1, reader.line_num
                if not cells:
                    continue
                if done == len(rest) and _unterminated(lines[begin - 1:]):
                    yield _Record(begin, start + done, cells, problem=_UNTERMINATED, cell=len(cells) - 1)
                    start = begin
                    break
                yield _Record(begin, start + done, cells)
            else:
                return
        except csv.Error as err:
            begin, done = start + done + 1, reader.line_num
            yield _Record(begin, start + done, [], problem=f"the row cannot be parsed as CSV: {err}")
            start += done


_UNTERMINATED = "unterminated"


def _unterminated(lines: list[str]) -> bool:
    """True when the record these lines start with ends inside a quoted cell (strict parsing says so)."""
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False


def _row_values(header: list[str], cells: list[str]) -> dict[str, Any]:
    if len(cells) > len(header):
        raise Invalid("the row has more cells than the header", field="body")
    values: dict[str, Any] = {}
    for name, raw in zip(header, cells, strict=False):
        value = raw.strip()
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


def store(conn: Connection, rows: list[ParsedRow], rules: RegistrationRules, zones: ZoneScope, *, actor: str,
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
                create_device(conn, row.device, rules, zones, actor=actor)
            except RefusedError as err:
                report.append(ImportRow(row=row.line, dev_eui=row.dev_eui, result="refused", field=err.field,
                                        reason=err.message))
            else:
                created += 1
                report.append(ImportRow(row=row.line, dev_eui=row.dev_eui, result="valid" if dry_run else "created"))
    return ImportReport(created=0 if dry_run else created, refused=len(report) - created, dry_run=dry_run,
                        rows=report)
