"""DICOM attribute matching (PS3.4 C.2.2.2) as SQLAlchemy conditions."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import ColumnElement, and_, func, true
from sqlalchemy.sql.elements import ColumnElement as Col


class InvalidQuery(ValueError):
    """A query value breaks its VR or the matching rules; answered with a failure status."""


def has_wildcards(value: str) -> bool:
    return "*" in value or "?" in value


def like_pattern(value: str) -> str:
    """PS3.4 C.2.2.2.4 wild card matching as a LIKE pattern, SQL metacharacters escaped."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def match_string(column: Col, value: str, upper: bool = False) -> ColumnElement[bool]:
    """Single value or wild card matching of one string column (C.2.2.2.1, C.2.2.2.4)."""
    target = func.upper(column) if upper else column
    value = value.upper() if upper else value
    if has_wildcards(value):
        if value.strip("*") == "":
            return true()  # "*" alone matches everything, including empty values
        return target.like(like_pattern(value), escape="\\")
    return target == value


def parse_da(value: str) -> datetime:
    """A DA value (YYYYMMDD) as midnight of that day; InvalidQuery when it is not one."""
    try:
        if len(value) != 8:
            raise ValueError
        return datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise InvalidQuery(f"{value!r} is not a valid DA value") from None


def parse_tm(value: str) -> time:
    """A TM value (HH[MM[SS[.F]]], with or without colons) as a time."""
    text = value.replace(":", "").split(".", 1)[0]
    try:
        if len(text) not in (2, 4, 6):
            raise ValueError
        hour, minute, second = int(text[0:2]), int(text[2:4] or 0), int(text[4:6] or 0)
        return time(hour, minute, min(second, 59))
    except ValueError:
        raise InvalidQuery(f"{value!r} is not a valid TM value") from None


def split_range(value: str) -> tuple[str, str] | None:
    """The two ends of a range value (either may be empty), or None for a single value."""
    if "-" not in value:
        return None
    low, high = value.split("-", 1)
    return low.strip(), high.strip()


def date_time_bounds(date_value: str, time_value: str) -> tuple[datetime | None, datetime | None]:
    """Start-time bounds from a DA and TM key (C.2.2.2.5: combined when both are present).

    The upper bound is exclusive. Empty values mean no bound.
    """
    low: datetime | None = None
    high: datetime | None = None
    if date_value:
        rng = split_range(date_value) or (date_value, date_value)
        low = parse_da(rng[0]) if rng[0] else None
        high = parse_da(rng[1]) + timedelta(days=1) if rng[1] else None
        if time_value:
            t_rng = split_range(time_value) or (time_value, time_value)
            if t_rng[0] and low is not None:
                low = datetime.combine(low.date(), parse_tm(t_rng[0]))
            if t_rng[1] and high is not None:
                end = parse_tm(t_rng[1])
                high = datetime.combine(high.date() - timedelta(days=1), end) + _resolution(t_rng[1])
    return low, high


def _resolution(tm: str) -> timedelta:
    """How long a TM value spans: '10' is the whole hour, '1030' the whole minute."""
    digits = len(tm.replace(":", "").split(".", 1)[0])
    return {2: timedelta(hours=1), 4: timedelta(minutes=1)}.get(digits, timedelta(seconds=1))


def match_datetime_range(column: Col, low: datetime | None, high: datetime | None) -> ColumnElement[bool]:
    """low <= column < high, either end open."""
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    return and_(*conditions) if conditions else true()
