"""The PostgreSQL datasource's query, as a foundation-SDK dataquery: the SDK ships no builder for it.

The JSON is the ``SQLQuery`` of Grafana's SQL datasources (``public/app/features/plugins/sql/types.ts``):
``rawSql`` in code mode, ``format`` ``time_series`` or ``table``. Besides the JSON, a query carries the
columns its panel needs, so tests can run it against a real database and check them.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

__all__ = [
    "ANNOTATION_REF_ID",
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "SqlAnnotation",
    "SqlAnnotationTarget",
    "SqlQuery",
    "SqlTarget",
    "datasource_ref",
    "register",
]

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "ioc-postgres"

Format = Literal["time_series", "table"]
# The refId Grafana's query editor gives an annotation's query.
ANNOTATION_REF_ID = "Anno"


def datasource_ref() -> dashboard.DataSourceRef:
    return dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class SqlQuery(cogvariants.Dataquery):
    """One SQL target of a panel, a variable or an alert rule."""

    def __init__(self, ref_id: str = "A", raw_sql: str = "", format_val: Format = "table",
                 columns: tuple[str, ...] = (), hide: bool | None = None) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val: Format = format_val
        self.columns = columns
        """Columns the panel reads; not part of Grafana's JSON."""
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorMode": "code",
            "format": self.format_val,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        fmt = data.get("format", "table")
        return cls(
            ref_id=str(data.get("refId", "A")),
            raw_sql=str(data.get("rawSql", "")),
            format_val="time_series" if fmt == "time_series" else "table",
            hide=data.get("hide"),
        )


class SqlTarget(cogbuilder.Builder[SqlQuery]):
    """Builder in the SDK's style, so panels take it through ``with_target``."""

    def __init__(self, raw_sql: str, *, columns: tuple[str, ...], ref_id: str = "A",
                 format_val: Format = "table") -> None:
        self._internal = SqlQuery(ref_id=ref_id, raw_sql=_tidy(raw_sql), format_val=format_val, columns=columns)

    def build(self) -> SqlQuery:
        return self._internal


class SqlAnnotationTarget(dashboard.AnnotationTarget):
    """An annotation's SQL query: the SDK types an annotation's ``target`` after Grafana's built-in datasource
    (limit, tags), but a SQL datasource's annotation carries its query there, as a panel target does, and reads
    the columns ``time``, ``timeend``, ``text`` and ``tags`` (a comma-separated string) from its rows."""

    def __init__(self, raw_sql: str, columns: tuple[str, ...]) -> None:
        super().__init__()
        self.raw_sql = _tidy(raw_sql)
        self.columns = columns

    def to_json(self) -> dict[str, object]:
        return {"editorMode": "code", "format": "table", "rawQuery": True, "rawSql": self.raw_sql,
                "refId": ANNOTATION_REF_ID}


class SqlAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """An annotation query on our datasource, enabled, shown on every time-series panel of its board."""

    def __init__(self, name: str, raw_sql: str, *, colour: str,
                 columns: tuple[str, ...] = ("time", "text", "tags")) -> None:
        self._internal = dashboard.AnnotationQuery(
            name=name, datasource=datasource_ref(), enable=True, hide=False, icon_color=colour,
            target=SqlAnnotationTarget(raw_sql, columns), built_in=0)

    def build(self) -> dashboard.AnnotationQuery:
        return self._internal


def register() -> None:
    """Teach the SDK's JSON loader our dataquery, so ``Dashboard.from_json`` reads our targets back."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=SqlQuery.from_json)
    )


def _tidy(text: str) -> str:
    """Strip the common indentation of a triple-quoted query, so the JSON and Grafana's editor read well."""
    lines = text.strip("\n").splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:].rstrip() for line in lines)
