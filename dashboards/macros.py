"""Grafana 11's interpolation of a PostgreSQL panel query, re-implemented so tests can run the exact SQL Grafana sends.

One module (~450 lines) because the stages below are one pipeline that must match Grafana's order exactly;
each function cites the Grafana source it follows.

The stages run in the order a dashboard query travels, each following Grafana's own source:

1. Template variables, in the browser: grafana ``public/app/features/variables/utils.ts`` (``variableRegex``:
   ``$var``, ``[[var:fmt]]``, ``${var.path:fmt}``), ``public/app/features/templating/template_srv.ts`` and
   ``formatVariableValue.ts``; grafana/scenes ``packages/scenes/src/variables/interpolation/sceneInterpolator.ts``
   and ``formatRegistry.ts`` (the ``:raw``, ``:csv``, ``:sqlstring``, ... formatters v11 uses on both dashboard
   paths) and ``variables/macros/timeMacros.ts`` (``$__from``, ``$__to``, ``$__timezone``); the datasource's own
   quoting, ``packages/grafana-sql/src/datasource/SqlDatasource.ts`` ``interpolateVariable`` with
   ``public/app/plugins/datasource/grafana-postgresql-datasource/PostgresQueryModel.ts`` ``quoteLiteral``.
2. The panel's ``$__interval``, also computed in the browser and sent as ``intervalMs``:
   ``packages/grafana-data/src/datetime/rangeutil.ts`` ``calculateInterval``, ``roundInterval``, ``secondsToHms``.
3. Backend globals: ``pkg/tsdb/grafana-postgresql-datasource/sqleng/sql_engine.go`` ``Interpolate``
   (``$__interval_ms``, ``$__interval``, ``$__unixEpochFrom()``, ``$__unixEpochTo()``) and ``SetupFillmode``.
4. Macros: ``pkg/tsdb/grafana-postgresql-datasource/macros.go`` (its regexp and comma split, the pre-5.3
   ``$__timeGroup`` alias rule, TimescaleDB ``time_bucket``), with grafana-plugin-sdk-go ``backend/gtime/gtime.go``
   (``ParseInterval``, ``FormatInterval``) and Go's ``time.ParseDuration``, ``time.RFC3339Nano`` and ``fmt``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

__all__ = ["MacroError", "TimeRange", "Variable", "expand", "interval_for", "interval_text"]


class MacroError(ValueError):
    """Grafana would refuse to run the query (its answer: ``interpolation failed: <message>``)."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime  # aware
    end: datetime  # aware

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.utcoffset() is None:
                raise ValueError(f"time range bounds must be timezone-aware, got {moment!r}")


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable as it stands when the panel runs: ``values`` are the selected values.

    "All" without a custom all value is written as all the option values with ``include_all=True``.
    """

    name: str
    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.values, tuple):
            raise TypeError(f"variable {self.name!r}: values must be a tuple of strings")
        if not (self.multi or self.include_all) and len(self.values) != 1:
            raise ValueError(f"single-value variable {self.name!r} needs exactly one value, got {len(self.values)}")


# --- $__interval, as the browser computes it (rangeutil.ts) ---------------------------------------------------

_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# roundInterval: (exclusive upper bound of the raw interval in ms, the nice interval in ms)
_NICE_INTERVALS: tuple[tuple[int, int], ...] = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
    (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
    (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
    (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip
_NICE_MAX = 31536000000  # 1y


def _epoch_ms(moment: datetime) -> int:
    """The browser's ``valueOf()``: whole milliseconds, which is all the precision a Grafana range has."""
    return (moment - _EPOCH) // _MS


def interval_for(
    time_range: TimeRange, *, max_data_points: int = 1000, min_interval: timedelta = timedelta(seconds=60)
) -> timedelta:
    """Grafana's $__interval for a panel: range/max_data_points rounded as Grafana rounds it, never below min_interval.

    ``min_interval`` is the query's "Min interval", else the data source's ``timeInterval``, else SQL's ``1m``.
    """
    if max_data_points <= 0:
        raise ValueError(f"max_data_points must be positive, got {max_data_points}")
    raw_ms = (_epoch_ms(time_range.end) - _epoch_ms(time_range.start)) / max_data_points
    interval_ms: float = next((nice for below, nice in _NICE_INTERVALS if raw_ms < below), _NICE_MAX)
    # calculateInterval applies the lower limit after rounding, and does not round the limit itself.
    interval_ms = max(interval_ms, min_interval / _MS)
    return timedelta(milliseconds=interval_ms)


def interval_text(interval: timedelta) -> str:
    """``secondsToHms``: the largest whole unit only, so 90 s prints as ``1m`` (``$__interval_ms`` keeps 90000)."""
    seconds = interval / _MS / 1000
    remainder = seconds
    for size, suffix in ((31536000, "y"), (86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if count := math.floor(remainder / size):
            return f"{count}{suffix}"
        remainder = math.fmod(remainder, size)  # JavaScript's %
    if millis := math.floor(seconds * 1000.0):
        return f"{millis}ms"
    return "less than a millisecond"


# --- Go semantics the backend relies on ----------------------------------------------------------------------

_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DAY_NS = 86400 * 10**9
_GO_MAX = 1 << 63
_DURATION_PART = re.compile(r"([0-9]*)(\.([0-9]*))?([^0-9.]*)")
_DATE_UNIT = re.compile(r"([0-9]+)([dwMy])")  # gtime's dateUnitPattern, ^...$ anchored


def _go_parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds; ``ValueError`` where Go returns an error."""
    rest, negative = text, False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0
    while rest:
        part = _DURATION_PART.match(rest)
        assert part is not None  # every group is optional
        whole, dot, fraction, unit = part[1], part[2], part[3] or "", part[4]
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {text!r}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {text!r}")
        if unit not in _NS:
            raise ValueError(f"time: unknown unit {unit!r} in duration {text!r}")
        value, numerator, scale = int(whole or "0"), 0, 1.0
        if value > _GO_MAX or value > _GO_MAX // _NS[unit]:
            raise ValueError(f"time: invalid duration {text!r}")
        for digit in fraction if dot else "":  # leadingFraction: digits past int64 range are dropped
            if numerator > (_GO_MAX - 1) // 10 or numerator * 10 + int(digit) > _GO_MAX:
                break
            numerator, scale = numerator * 10 + int(digit), scale * 10
        value = value * _NS[unit] + (int(float(numerator) * (float(_NS[unit]) / scale)) if numerator else 0)
        total += value
        if value > _GO_MAX or total > _GO_MAX:
            raise ValueError(f"time: invalid duration {text!r}")
        rest = rest[part.end() :]
    if not negative and total > _GO_MAX - 1:
        raise ValueError(f"time: invalid duration {text!r}")
    return -total if negative else total


def _go_parse_interval(text: str) -> int:
    """gtime.ParseInterval in nanoseconds: ``d``/``w`` are whole days; ``M``/``y`` are calendar steps from now (UTC)."""
    match = _DATE_UNIT.fullmatch(text)
    if match is None:
        return _go_parse_duration(text)
    count, unit = int(match[1]), match[2]
    if count >= _GO_MAX:
        raise ValueError(f"strconv.Atoi: parsing {match[1]!r}: value out of range")
    if unit in ("d", "w"):
        return count * (7 if unit == "w" else 1) * _DAY_NS
    now = datetime.now(UTC)
    months = now.month - 1 + (count if unit == "M" else 0)
    year = now.year + months // 12 + (count if unit == "y" else 0)
    try:  # Go's AddDate: step year and month, then let an overflowing day roll into the next month
        later = now.replace(year=year, month=months % 12 + 1, day=1) + timedelta(days=now.day - 1)
    except (ValueError, OverflowError) as err:
        raise ValueError(f"interval {text!r} is out of range") from err
    return (later - now) // timedelta(microseconds=1) * 1000


def _go_seconds(ns: int) -> float:
    """``Duration.Seconds()``: whole seconds (truncated) plus the nanosecond rest, both as float64."""
    whole = abs(ns) // 10**9 * (1 if ns >= 0 else -1)
    return float(whole) + float(ns - whole * 10**9) / 1e9


def _go_float(value: float) -> str:
    """``fmt`` ``%v`` of a float64: shortest digits, ``%e`` form when the exponent is < -4 or >= 6 (300, 1.0368e+06)."""
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # digits before the decimal point
    prefix = "-" if sign else ""
    if not -4 <= point - 1 < 6:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def _go_format_interval(ns: int) -> str:
    """gtime.FormatInterval: the largest whole unit, or ``1ms`` below a millisecond."""
    for size, suffix in ((365 * _DAY_NS, "y"), (_DAY_NS, "d"), (3600 * 10**9, "h"), (60 * 10**9, "m"), (10**9, "s")):
        if ns >= size:
            return f"{ns // size}{suffix}"
    return f"{ns // 10**6}ms" if ns >= 10**6 else "1ms"


def _utc_seconds(ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"


def _rfc3339_nano(ms: int) -> str:
    """Go's ``UTC().Format(time.RFC3339Nano)``: fraction without trailing zeros, ``Z`` for UTC."""
    fraction = f"{ms % 1000:03d}".rstrip("0")
    return f"{_utc_seconds(ms)}{'.' + fraction if fraction else ''}Z"


_GO_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan"
    r"|0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)p[+-]?[0-9]+)",
    re.IGNORECASE,
)


def _check_fill(fill: str) -> None:
    """SetupFillmode: ``NULL``, ``previous`` or a number Go's ParseFloat accepts (an overflow is an error too)."""
    if fill in ("NULL", "previous"):
        return
    try:
        if not _GO_FLOAT.fullmatch(fill):
            raise ValueError(fill)
        parsed = float.fromhex(fill) if "x" in fill.lower() else float(fill)
        if math.isinf(parsed) and "inf" not in fill.lower():
            raise ValueError(fill)
    except (ValueError, OverflowError):
        raise MacroError(f"error parsing fill value {fill}") from None


# --- stage 1: template variables (browser) --------------------------------------------------------------------

_Value = str | int | list[str]
_VARIABLE = re.compile(r"\$(\w+)|\[\[([\s\S]+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}", re.ASCII)
# Names Grafana's browser would replace but this module cannot reproduce: failing beats sending them unexpanded.
_UNREPRODUCIBLE = frozenset(
    {"__timezone", "__dashboard", "__user", "__org", "__url", "__url_time_range", "__all_variables", "__value",
     "__data", "__series", "__field"}
)  # fmt: skip
_UNREPRODUCIBLE_FORMATS = frozenset(
    {"lucene", "regex", "html", "percentencode", "uriencode", "text", "queryparam", "customqueryparam"}
)


_JS_INT = re.compile(r"\s*([+-]?[0-9]+)")  # the prefix JavaScript's parseInt(value, 10) reads


def _js_string(value: _Value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _quoted(quote: str, escapes: Mapping[str, str]) -> Callable[[_Value, list[str], str], str]:
    def formatter(value: _Value, args: list[str], name: str) -> str:
        items = value if isinstance(value, list) else [str(value)]
        return ",".join(quote + "".join(escapes.get(char, char) for char in item) + quote for item in items)

    return formatter


def _join(separator: str) -> Callable[[_Value, list[str], str], str]:
    return lambda value, args, name: separator.join(value) if isinstance(value, list) else str(value)


def _date(value: _Value, args: list[str], name: str) -> str:
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str) and (parsed := _JS_INT.match(value)):
        ms = int(parsed[1])
    else:
        return "NaN"
    style = args[0] if args else "iso"
    if style == "ms":
        return str(value)
    if style == "seconds":
        return str((ms + 500) // 1000)  # Math.round(ms / 1000)
    if style == "iso":  # moment's toISOString
        return f"{_utc_seconds(ms)}.{ms % 1000:03d}Z"
    raise MacroError(f"${{{name}:date:{':'.join(args)}}}: moment.js date formats are not re-implemented")


_FORMATTERS: dict[str, Callable[[_Value, list[str], str], str]] = {
    "raw": lambda value, args, name: _js_string(value),
    "csv": _join(","),
    "pipe": _join("|"),
    "join": lambda value, args, name: _join(args[0] if args else ",")(value, args, name),
    "glob": lambda value, args, name: (
        "{" + ",".join(value) + "}" if isinstance(value, list) and len(value) > 1 else _js_string(value)
    ),
    "json": lambda value, args, name: (
        value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    ),
    "distributed": lambda value, args, name: (
        ",".join(value[:1] + [f"{name}={item}" for item in value[1:]]) if isinstance(value, list) else str(value)
    ),
    "sqlstring": _quoted("'", {"'": "''", '"': '\\"'}),
    "singlequote": _quoted("'", {"'": "\\'"}),
    "doublequote": _quoted('"', {'"': '\\"'}),
    "date": _date,
}


def _format(value: _Value, fmt: str | None, *, name: str, multi: bool, include_all: bool) -> str:
    if fmt is None:  # SqlDatasource.interpolateVariable with PostgresQueryModel.quoteLiteral
        if isinstance(value, list):
            return ",".join("'" + item.replace("'", "''") + "'" for item in value)
        if isinstance(value, str) and (multi or include_all):
            return "'" + value.replace("'", "''") + "'"
        return value.replace("'", "''") if isinstance(value, str) else str(value)
    format_id, *args = fmt.split(":")
    if format_id in _UNREPRODUCIBLE_FORMATS:
        raise MacroError(f"the :{format_id} variable format is not re-implemented (variable {name!r})")
    # An unknown format id makes Grafana log an error and fall back to glob.
    return _FORMATTERS.get(format_id, _FORMATTERS["glob"])(value, args, name)


def _substitute_variables(
    sql: str, variables: Mapping[str, Variable], scoped: Mapping[str, _Value], macros: Mapping[str, _Value]
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        multi = include_all = False
        if name in scoped:  # the request's scopedVars win, then dashboard variables, then built-in macros
            value = scoped[name]
        elif name in variables:
            variable = variables[name]
            multi, include_all = variable.multi, variable.include_all
            value = list(variable.values) if variable.multi or len(variable.values) != 1 else variable.values[0]
        elif name in macros:
            value = macros[name]
        elif name in _UNREPRODUCIBLE:
            raise MacroError(f"{match[0]}: Grafana would fill this in, but this re-implementation cannot")
        else:
            return match[0]  # unknown names stay as written
        if match[5] is not None:
            raise MacroError(f"{match[0]}: field paths are not re-implemented")
        return _format(value, match[3] or match[6], name=name, multi=multi, include_all=include_all)

    return _VARIABLE.sub(replace, sql)


# --- stage 3 and 4: backend globals and macros ----------------------------------------------------------------

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def _evaluate(name: str, args: list[str], start_ms: int, end_ms: int, timescaledb: bool) -> str:
    if name in ("__timeGroupAlias", "__unixEpochGroupAlias"):
        return _evaluate(name.removesuffix("Alias"), args, start_ms, end_ms, timescaledb) + ' AS "time"'
    if name in ("__timeGroup", "__unixEpochGroup"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        try:
            seconds = _go_seconds(_go_parse_interval(args[1].strip("'")))
        except ValueError:
            raise MacroError(f"error parsing interval {args[1]}") from None
        if len(args) == 3:  # the fill only shapes Grafana's result frame; it never reaches the SQL
            _check_fill(args[2])
        if name == "__unixEpochGroup":
            return f"floor(({args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
        if timescaledb:
            return f"time_bucket('{seconds:.3f}s',{args[0]})"
        return f"floor(extract(epoch from {args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
    column = args[0]  # Go's strings.Split never returns an empty list, so "missing column" cannot happen
    start_ns, end_ns = start_ms * 10**6, end_ms * 10**6
    rendered = {
        "__time": f'{column} AS "time"',
        "__timeEpoch": f'extract(epoch from {column}) as "time"',
        "__timeFilter": f"{column} BETWEEN '{_rfc3339_nano(start_ms)}' AND '{_rfc3339_nano(end_ms)}'",
        "__timeFrom": f"'{_rfc3339_nano(start_ms)}'",
        "__timeTo": f"'{_rfc3339_nano(end_ms)}'",
        "__unixEpochFilter": f"{column} >= {start_ms // 1000} AND {column} <= {end_ms // 1000}",
        "__unixEpochNanoFilter": f"{column} >= {start_ns} AND {column} <= {end_ns}",
        "__unixEpochNanoFrom": str(start_ns),
        "__unixEpochNanoTo": str(end_ns),
    }.get(name)
    if rendered is None:
        raise MacroError(f'unknown macro "{name}"')
    return rendered


def _substitute_macros(sql: str, start_ms: int, end_ms: int, timescaledb: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1]
        # Pre-5.3 compatibility: a $__timeGroup directly followed by ',' gets AS "time". Grafana looks at the
        # first occurrence of the same text in the query, whichever occurrence is being replaced.
        index = sql.find(match[0])
        if name == "__timeGroup" and sql[index + len(match[0]) : index + len(match[0]) + 1] == ",":
            name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in match[2].split(",")]
        return _evaluate(name, args, start_ms, end_ms, timescaledb)

    return _MACRO.sub(replace, sql)


def expand(
    raw_sql: str,
    time_range: TimeRange,
    *,
    variables: Sequence[Variable] = (),
    interval: timedelta | None = None,
    timescaledb: bool = False,
    timezone: str | None = None,
) -> str:
    """The SQL Grafana sends: variables first (frontend), then $__interval / $__interval_ms / $__unixEpochFrom() /
    $__unixEpochTo() (backend Interpolate), then the macros.

    ``interval`` defaults to :func:`interval_for` the range; ``timezone`` is what ``$__timezone`` resolves to (the
    dashboard's zone, with "browser" already resolved); without it ``$__timezone`` raises :class:`MacroError`.
    """
    by_name: dict[str, Variable] = {}
    for variable in variables:
        if variable.name in by_name:
            raise ValueError(f"variable {variable.name!r} is given twice")
        by_name[variable.name] = variable
    start_ms, end_ms = _epoch_ms(time_range.start), _epoch_ms(time_range.end)
    step = interval_for(time_range) if interval is None else interval
    if step % _MS:
        raise ValueError(f"Grafana intervals are whole milliseconds, got {step!r}")
    interval_ms = step // _MS
    scoped: dict[str, _Value] = {"__interval": interval_text(step), "__interval_ms": interval_ms}
    macros: dict[str, _Value] = {"__from": start_ms, "__to": end_ms}
    if timezone is not None:
        macros["__timezone"] = timezone
    sql = _substitute_variables(raw_sql, by_name, scoped, macros)
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", _go_format_interval(interval_ms * 10**6))
    sql = sql.replace("$__unixEpochFrom()", str(start_ms // 1000))
    sql = sql.replace("$__unixEpochTo()", str(end_ms // 1000))
    return _substitute_macros(sql, start_ms, end_ms, timescaledb)
