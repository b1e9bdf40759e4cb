"""A query's time range in UTC, refused with 422 naming the parameter when it leaves Python's calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ioc_core.errors import Invalid

__all__ = ["utc_range"]


def utc_range(start: datetime | None, end: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    """Both ends in UTC ('to' defaults to now, 'from' to ``default`` before 'to'); times without an offset are UTC,
    as everywhere in the API. A time whose UTC value, or whose default 'from', falls outside years 1 to 9999
    is Invalid (``0001-01-01T00:00:00+14:00`` is still in year 0 in UTC), so stepping through the range later
    never leaves the calendar."""
    end = _utc(end, "to") or datetime.now(UTC)
    try:
        return _utc(start, "from") or end - default, end
    except OverflowError as err:
        raise Invalid("'to' is too early for the default range; give 'from'", field="to") from err


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as err:
        raise Invalid(f"'{name}' is out of range in UTC", field=name) from err
