"""Run every board's panel and annotation SQL and every alert rule's, against a database, as Grafana sends it.

Grafana cannot run everywhere the platform does; this is how ``ioc dashboards check``, the tests and the
benchmark know each panel's query works on the real schema and returns the columns its panel reads.
Variables take the value given, else one with data where the board says how to find it (``VariableSample``),
else Grafana's preselected value or the first their own query returns; a panel repeated over a multi-value
variable is run once per selected value, as Grafana clones it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from grafana_foundation_sdk.models import dashboard as model

from dashboards.alerts import all_rules
from dashboards.boards import all_boards
from dashboards.macros import TimeRange, Variable, expand, interval_for
from dashboards.panels import Board
from dashboards.sql import ANNOTATION_REF_ID, SqlAnnotationTarget, SqlQuery
from gateways.database import Connection

__all__ = [
    "QueryCase",
    "QueryRun",
    "annotation_title",
    "board_cases",
    "panel_title",
    "parse_relative",
    "rule_cases",
    "run_case",
    "sample_variables",
]

_RELATIVE = re.compile(r"^now-(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# $name, ${name}, ${name:format} and [[name]]: how a panel title refers to a variable.
_REFERENCE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


@dataclass(frozen=True, slots=True)
class QueryCase:
    board: str
    panel: str
    ref_id: str
    sql: str
    columns: tuple[str, ...]
    time_from: str
    """Grafana's relative start, e.g. ``now-6h``."""
    repeat: str | None = None
    """The variable the panel is repeated over."""
    max_data_points: int = 1000


@dataclass(frozen=True, slots=True)
class QueryRun:
    case: QueryCase
    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(repr=False)
    ms: float
    variables: tuple[Variable, ...] = ()
    """The variables it ran with: a repeated panel's own value in place of the whole selection."""

    @property
    def title(self) -> str:
        """The panel's title as Grafana shows this run of it."""
        return panel_title(self.case.panel, self.variables)


def panel_title(title: str, variables: Sequence[Variable]) -> str:
    """``title`` with its variable references replaced by their values (comma-separated when several); a
    reference to a variable the board does not have stays as written, as in Grafana."""
    by_name = {v.name: v for v in variables}

    def value(match: re.Match[str]) -> str:
        variable = by_name.get(match.group(1) or match.group(2) or match.group(3))
        return match.group(0) if variable is None else ", ".join(variable.values)

    return _REFERENCE.sub(value, title)


def parse_relative(text: str, now: datetime) -> TimeRange:
    match = _RELATIVE.match(text)
    if not match:
        raise ValueError(f"time range must look like now-6h, got {text!r}")
    return TimeRange(now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)]), now)


def _panels(panels: Sequence[model.Panel | model.RowPanel | model.LibraryPanelRef] | None) -> Iterator[model.Panel]:
    for panel in panels or ():
        if isinstance(panel, model.RowPanel):
            yield from _panels(panel.panels)
        elif isinstance(panel, model.Panel):
            yield panel


def annotation_title(name: str) -> str:
    """How a board's annotation query is named among its cases (annotations have no panel)."""
    return f"annotation: {name}"


def board_cases(board: Board, *, time_from: str | None = None) -> list[QueryCase]:
    cases = []
    annotations = board.model.annotations.list_val if board.model.annotations else None
    for annotation in annotations or ():
        if isinstance(annotation.target, SqlAnnotationTarget):
            cases.append(QueryCase(board.uid, annotation_title(annotation.name), ANNOTATION_REF_ID,
                                   annotation.target.raw_sql, annotation.target.columns,
                                   time_from or board.default_from))
    for panel in _panels(board.model.panels):
        for target in panel.targets or ():
            if isinstance(target, SqlQuery):
                cases.append(QueryCase(
                    board.uid, panel.title or "", target.ref_id, target.raw_sql, target.columns,
                    time_from or board.default_from, panel.repeat,
                    int(panel.max_data_points) if panel.max_data_points else 1000,
                ))
    return cases


def rule_cases() -> list[QueryCase]:
    return [QueryCase("alerts", r.title, "A", r.target.build().raw_sql, r.target.build().columns, f"now-{r.window_s}s")
            for r in all_rules()]


@dataclass(frozen=True, slots=True)
class _QueryVariable:
    name: str
    query: str
    multi: bool
    include_all: bool
    current: str | None  # the value Grafana preselects when it is among the options


def _variable_queries(board: Board) -> list[_QueryVariable]:
    out = []
    templating = board.model.templating
    for v in (templating.list_val or []) if templating else []:
        if v.type_val == model.VariableType.QUERY and isinstance(v.query, str):
            current = v.current.value if v.current is not None and isinstance(v.current.value, str) else None
            out.append(_QueryVariable(v.name, v.query, bool(v.multi), bool(v.include_all), current))
    return out


def _column_values(conn: Connection, sql: str) -> tuple[str, ...]:
    cur = conn.execute(sql)
    names = [d.name for d in cur.description or ()]
    at = names.index("__value") if "__value" in names else 0  # Grafana's rule for value/text columns
    return tuple(str(r[at]) for r in cur.fetchall())


def sample_variables(conn: Connection, board: Board, time_range: TimeRange,
                     chosen: Mapping[str, str] | None = None) -> list[Variable]:
    """Each variable's value: the one chosen; else all options for include-all; else, of the values with data
    the board's ``VariableSample.prefer`` finds, Grafana's preselected one or the first; else Grafana's
    preselected value or the first option."""
    chosen = chosen or {}
    prefer = {s.name: s.prefer for s in board.variables if s.prefer}
    variables: list[Variable] = []
    for v in _variable_queries(board):
        name, multi, include_all = v.name, v.multi, v.include_all
        values = _column_values(conn, expand(v.query, time_range, variables=variables))
        if name in chosen:
            picked: tuple[str, ...] = (chosen[name],)
        elif not values:
            picked = ("",)  # Grafana's current value when the query returns nothing
        elif include_all:
            picked = values
        else:
            found = _column_values(conn, expand(prefer[name], time_range, variables=variables)) \
                if name in prefer else ()
            with_data = [value for value in found if value in values]
            candidates = with_data or list(values)
            picked = (v.current if v.current in candidates else candidates[0],)
        every = include_all and name not in chosen and bool(values)
        variables.append(Variable(name, picked, multi=multi, include_all=every))
    return variables


def run_case(conn: Connection, case: QueryCase, time_range: TimeRange, variables: Sequence[Variable],
             *, timescaledb: bool = False) -> list[QueryRun]:
    """Run the case once, or once per value of the variable its panel repeats over."""
    runs = []
    repeats: list[list[Variable]] = [list(variables)]
    if case.repeat:
        repeated = next((v for v in variables if v.name == case.repeat), None)
        if repeated is not None:
            repeats = [[v if v.name != case.repeat else Variable(v.name, (value,)) for v in variables]
                       for value in repeated.values]
    interval = interval_for(time_range, max_data_points=case.max_data_points)
    for these in repeats:
        sql = expand(case.sql, time_range, variables=these, interval=interval, timescaledb=timescaledb)
        started = time.perf_counter()
        cur = conn.execute(sql)
        rows = cur.fetchall()
        ms = (time.perf_counter() - started) * 1000
        columns = tuple(d.name for d in cur.description or ())
        runs.append(QueryRun(case, sql, columns, rows, ms, tuple(these)))
    return runs


def all_cases() -> list[tuple[Board | None, QueryCase]]:
    pairs: list[tuple[Board | None, QueryCase]] = []
    for board in all_boards():
        pairs.extend((board, case) for case in board_cases(board))
    pairs.extend((None, case) for case in rule_cases())
    return pairs
