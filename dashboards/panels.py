"""Small pieces every board uses: colours for device states, thresholds, SQL variables, the board type."""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.sql import datasource_ref

__all__ = [
    "GREY",
    "HAZARD_STATUSES",
    "INCIDENT_STATES",
    "TIMEZONE",
    "Board",
    "VariableSample",
    "board_frame",
    "device_link",
    "hazard_status_mappings",
    "incident_state_mappings",
    "kind_variable",
    "line_panel",
    "severity_mappings",
    "sql_variable",
    "state_mappings",
    "steps",
    "table_panel",
    "tile_panel",
    "zone_link",
]

# Da Nang's operators read local time whatever their browser says.
TIMEZONE = "Asia/Ho_Chi_Minh"

STATE_COLOURS = {"reporting": "green", "late": "orange", "silent": "red", "never_seen": "text"}

# Grey is the colour of "we cannot see": never green, never a warning colour (docs/operations.md).
GREY = "#8e8e8e"
# Hazard statuses as operators say them (docs/operations.md), with the colours of the city map's legend.
HAZARD_STATUSES = {
    "normal": ("bình thường · normal", "green"),
    "watch": ("theo dõi · watch", "yellow"),
    "alert": ("cảnh báo · alert", "orange"),
    "danger": ("nguy hiểm · danger", "red"),
    "unknown": ("không rõ · unknown", GREY),
}
SEVERITY_COLOURS = {"info": "blue", "minor": "yellow", "major": "orange", "critical": "red"}
INCIDENT_STATES = {
    "new": ("mới · new", "red"),
    "acknowledged": ("đã tiếp nhận · acknowledged", "orange"),
    "in_progress": ("đang xử lý · in progress", "yellow"),
    "resolved": ("đã xử lý xong · resolved", "green"),
    "closed": ("đã đóng · closed", "text"),
}


@dataclass(frozen=True, slots=True)
class VariableSample:
    """How a check without Grafana (``ioc dashboards check``, tests, benchmarks) picks this variable's value.

    ``prefer`` is SQL (with the board's macros and the variables before this one) whose rows are values with
    data, best first: of those among the variable's options, Grafana's preselected value wins if it is one,
    else the first. Without it, or when none of its rows is an option, the check takes what Grafana would.
    """

    name: str
    multi: bool = False
    include_all: bool = False
    prefer: str = ""


@dataclass(frozen=True, slots=True)
class Board:
    """A built dashboard and what is needed to exercise it without Grafana."""

    uid: str
    title: str
    model: model.Dashboard
    variables: tuple[VariableSample, ...] = field(default=())
    default_from: str = "now-6h"


def sql_variable(name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False,
                 hide: model.VariableHide = model.VariableHide.DONT_HIDE) -> dash.QueryVariable:
    """A query variable on our datasource, refreshed when the time range changes (device lists grow)."""
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(datasource_ref())
        .query(query.strip())
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(multi)
        .include_all(include_all)
        .hide(hide)
    )
    return variable


def state_mappings() -> list[model.ValueMapping]:
    return [model.ValueMap(options={
        state: model.ValueMappingResult(text=state.replace("_", " "), color=colour, index=i)
        for i, (state, colour) in enumerate(STATE_COLOURS.items())
    })]


def hazard_status_mappings() -> list[model.ValueMapping]:
    """Status codes as bilingual text in their colours, so a colour is never the only signal."""
    return _mappings(HAZARD_STATUSES)


def incident_state_mappings() -> list[model.ValueMapping]:
    return _mappings(INCIDENT_STATES)


def severity_mappings() -> list[model.ValueMapping]:
    return [model.ValueMap(options={
        severity: model.ValueMappingResult(color=colour, index=i)
        for i, (severity, colour) in enumerate(SEVERITY_COLOURS.items())
    })]


def _mappings(texts: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    return [model.ValueMap(options={
        code: model.ValueMappingResult(text=text, color=colour, index=i)
        for i, (code, (text, colour)) in enumerate(texts.items())
    })]


def steps(*pairs: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first pair's value is None (the base colour)."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=colour) for value, colour in pairs])
    )


def tile_panel(title: str, description: str) -> stat.Panel:
    """One tile per row of a table query (one per zone), titled by the row's text column."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .reduce_options(common_builders.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields(""))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .orientation(common.VizOrientation.HORIZONTAL)
    )


def table_panel(title: str, description: str) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .filterable(True)
    )


def device_link() -> list[cogbuilder.Builder[model.DashboardLink]]:
    """Data link from a row (with a dev_eui column) to the device board, keeping the time range."""
    return [
        dash.DashboardLink("Open device board")
        .type(model.DashboardLinkType.LINK)
        .url("/d/ioc-device/ioc-device?var-device=${__data.fields.dev_eui}&${__url_time_range}")
    ]


def zone_link() -> list[cogbuilder.Builder[model.DashboardLink]]:
    """Data link from a row (with a zone_code column) to the zone board, keeping the time range."""
    return [
        dash.DashboardLink("Open zone board")
        .type(model.DashboardLinkType.LINK)
        .url("/d/ioc-zone/ioc-zone?var-zone=${__data.fields.zone_code}&${__url_time_range}")
    ]


def board_frame(title: str, uid: str, description: str, tag: str, *, time_from: str, refresh: str) -> dash.Dashboard:
    """What every IOC board shares: the title prefix, tags, Da Nang time, a shared crosshair, editable."""
    return (
        dash.Dashboard(f"IOC Đà Nẵng · {title}")
        .uid(uid)
        .description(description)
        .tags(["ioc", tag])
        .timezone(TIMEZONE)
        .time(time_from, "now")
        .refresh(refresh)
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )


def line_panel(title: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .fill_opacity(8)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
    )


def kind_variable(*, mapped_only: bool = False) -> dash.QueryVariable:
    """The device kind, water level stations first selected; ``mapped_only``: kinds the city map can colour."""
    where = " WHERE primary_metric IS NOT NULL" if mapped_only else ""
    return sql_variable(
        "kind", "Kind", f"SELECT kind AS __value, title AS __text FROM device_kinds{where} ORDER BY kind",
    ).current(model.VariableOption(selected=True, text="water level station", value="water_level"))
