"""Worklist query matching (PS3.4 C.2.2.2) as SQLAlchemy conditions.

This is attribute matching of a C-FIND identifier; patient reconciliation lives in broker/matching.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import Boolean, ColumnElement, and_, bindparam, extract, func, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement as Col

STATUS_IDENTIFIER_MISMATCH = 0xA900  # PS3.4 K.4.1.1.4: identifier does not match SOP Class
STATUS_UNABLE_TO_PROCESS = 0xC000    # PS3.4 K.4.1.1.4: unable to process (0xCxxx)


class InvalidQuery(ValueError):
    """A query value breaks its VR or the matching rules; answered with a failure status.

    Messages name the key and the rule, never the value: query values can be patient data.
    """

    def __init__(self, message: str, status: int = STATUS_UNABLE_TO_PROCESS) -> None:
        super().__init__(message)
        self.status = status


def has_wildcards(value: str) -> bool:
    return "*" in value or "?" in value


def like_pattern(value: str) -> str:
    """PS3.4 C.2.2.2.4 wild card matching as a LIKE pattern, SQL metacharacters escaped."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


class WildcardMatch(ColumnElement[bool]):
    """Case-sensitive wild card matching (C.2.2.2.4): LIKE on PostgreSQL, GLOB on SQLite,
    whose LIKE ignores ASCII case and would make 'a*' find 'A1'."""
    inherit_cache = True
    type = Boolean()
    # A comparison in itself: without this SQLAlchemy renders "(...) = 1" on SQLite, which no
    # index can serve.
    _is_implicitly_boolean = True

    def __init__(self, column: Col, value: str) -> None:
        self.column = column
        self.value = value


@compiles(WildcardMatch)
def _like(element: WildcardMatch, compiler, **kw) -> str:
    pattern = bindparam(None, like_pattern(element.value), unique=True)
    return (f"{compiler.process(element.column, **kw)} LIKE {compiler.process(pattern, **kw)}"
            " ESCAPE '\\'")


@compiles(WildcardMatch, "sqlite")
def _glob(element: WildcardMatch, compiler, **kw) -> str:
    pattern = bindparam(None, element.value.replace("[", "[[]"), unique=True)
    return f"{compiler.process(element.column, **kw)} GLOB {compiler.process(pattern, **kw)}"


def literal_prefix(value: str) -> str:
    """The characters before the first wild card."""
    for index, char in enumerate(value):
        if char in "*?":
            return value[:index]
    return value


class PrefixRange(ColumnElement[bool]):
    """prefix <= column < next(prefix) on SQLite, so a plain B-tree index serves 'ABC*'.

    SQLite uses an index for LIKE/GLOB only in narrow cases; on its BINARY collation the range
    is exactly the rows starting with the prefix. Other databases get TRUE here: under a
    linguistic collation the range is not the same set (PostgreSQL uses its text_pattern_ops
    index for the LIKE instead).
    """
    inherit_cache = True
    type = Boolean()
    # A comparison in itself: without this SQLAlchemy renders "(...) = 1" on SQLite, which no
    # index can serve.
    _is_implicitly_boolean = True

    def __init__(self, column: Col, prefix: str) -> None:
        self.column = column
        self.prefix = prefix


@compiles(PrefixRange)
def _no_range(element: PrefixRange, compiler, **kw) -> str:
    return "1 = 1"


@compiles(PrefixRange, "sqlite")
def _range(element: PrefixRange, compiler, **kw) -> str:
    column = compiler.process(element.column, **kw)
    low = compiler.process(bindparam(None, element.prefix, unique=True), **kw)
    last = element.prefix[-1]
    if ord(last) >= 0x10FFFF:
        return f"{column} >= {low}"
    high = compiler.process(bindparam(None, element.prefix[:-1] + chr(ord(last) + 1),
                                      unique=True), **kw)
    return f"({column} >= {low} AND {column} < {high})"


def match_string(column: Col, value: str, upper: bool = False,
                 index_prefix: bool = False) -> ColumnElement[bool]:
    """Single value or wild card matching of one string column (C.2.2.2.1, C.2.2.2.4).

    With `upper` the column is taken to hold (or is compared as) upper case, and so is the value.
    """
    value = value.upper() if upper else value
    if has_wildcards(value):
        if value.strip("*") == "":
            return true()  # "*" alone matches everything, including empty values
        condition: ColumnElement[bool] = WildcardMatch(column, value)
        prefix = literal_prefix(value)
        if index_prefix and prefix:
            condition = and_(PrefixRange(column, prefix), condition)
        return condition
    return column == value


def match_any(column: Col, values: list[str], upper: bool = False) -> ColumnElement[bool]:
    """Any-of matching: list of UID matching (C.2.2.2.2) and a CS list read as alternatives."""
    values = [v.upper() if upper else v for v in values]
    if len(values) == 1:
        return match_string(column, values[0])
    if any(has_wildcards(v) for v in values):
        return or_(*(match_string(column, v) for v in values))
    return column.in_(values)


def parse_da(value: str) -> datetime:
    """A DA value (YYYYMMDD, or the old YYYY.MM.DD) as midnight of that day."""
    text = value.replace(".", "") if len(value) == 10 else value
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise InvalidQuery("not a valid DA value") from None


def parse_tm(value: str) -> time:
    """A TM value (HH[MM[SS[.F]]], with or without colons) as a time."""
    text = value.replace(":", "").split(".", 1)[0]
    try:
        if len(text) not in (2, 4, 6) or not text.isdigit():
            raise ValueError
        hour, minute, second = int(text[0:2]), int(text[2:4] or 0), int(text[4:6] or 0)
        return time(hour, minute, min(second, 59))
    except ValueError:
        raise InvalidQuery("not a valid TM value") from None


def parse_dt(value: str) -> tuple[datetime, timedelta]:
    """A DT value (YYYY[MM[DD[HH[MM[SS[.F]]]]]], offset ignored) and the span it covers."""
    text = value.split("+", 1)[0].split(".", 1)[0]
    if len(text) > 4 and "-" in text[4:]:
        text = text[:4] + text[4:].split("-", 1)[0]
    formats = {4: ("%Y", None), 6: ("%Y%m", None), 8: ("%Y%m%d", timedelta(days=1)),
               10: ("%Y%m%d%H", timedelta(hours=1)), 12: ("%Y%m%d%H%M", timedelta(minutes=1)),
               14: ("%Y%m%d%H%M%S", timedelta(seconds=1))}
    try:
        fmt, span = formats[len(text)]
        start = datetime.strptime(text, fmt)
    except (KeyError, ValueError):
        raise InvalidQuery("not a valid DT value") from None
    if span is None:  # a year or a month: up to the start of the next one
        end = (start.replace(year=start.year + 1) if len(text) == 4 else
               (start.replace(day=28) + timedelta(days=4)).replace(day=1))
        span = end - start
    return start, span


def split_range(value: str) -> tuple[str, str] | None:
    """The two ends of a range value (either may be empty), or None for a single value."""
    if "-" not in value:
        return None
    low, high = value.split("-", 1)
    return low.strip(), high.strip()


def dt_bounds(value: str) -> tuple[datetime | None, datetime | None]:
    """DT range matching (C.2.2.2.5), upper bound exclusive; a DT's own '-' offset is not a range."""
    parts = value.split("-")
    if len(parts) == 2 and (not parts[0] or not parts[1] or len(parts[1]) >= 4):
        low_text, high_text = parts
    elif len(parts) == 1:
        low_text = high_text = value
    else:
        raise InvalidQuery("not a valid DT range")
    low = parse_dt(low_text)[0] if low_text else None
    high = sum(parse_dt(high_text), timedelta()) if high_text else None
    return low, high


def date_bounds(value: str) -> tuple[str | None, str | None]:
    """A DA single value or range (C.2.2.2.5) as inclusive YYYYMMDD string bounds."""
    rng = split_range(value) or (value, value)
    if not rng[0] and not rng[1]:
        raise InvalidQuery("not a valid DA range")
    low = parse_da(rng[0]).strftime("%Y%m%d") if rng[0] else None
    high = parse_da(rng[1]).strftime("%Y%m%d") if rng[1] else None
    return low, high


def match_date_string(column: Col, value: str) -> ColumnElement[bool]:
    """DA matching of a column holding YYYYMMDD text (string order is date order)."""
    low, high = date_bounds(value)
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column <= high)
    return and_(*conditions)


def date_time_bounds(date_value: str, time_value: str) -> tuple[datetime | None, datetime | None]:
    """Start-time bounds from a DA and TM key (C.2.2.2.5: combined when both are present).

    The upper bound is exclusive. Empty values mean no bound.
    """
    low: datetime | None = None
    high: datetime | None = None
    if date_value:
        rng = split_range(date_value) or (date_value, date_value)
        if not rng[0] and not rng[1]:
            raise InvalidQuery("not a valid DA range")
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


def match_time_of_day(column: Col, time_value: str) -> ColumnElement[bool]:
    """TM matching without a date (C.2.2.2.5): the time of day on any date, upper bound inclusive."""
    rng = split_range(time_value) or (time_value, time_value)
    if not rng[0] and not rng[1]:
        raise InvalidQuery("not a valid TM range")
    seconds = (extract("hour", column) * 3600 + extract("minute", column) * 60
               + func.floor(extract("second", column)))
    conditions = []
    if rng[0]:
        start = parse_tm(rng[0])
        conditions.append(seconds >= start.hour * 3600 + start.minute * 60 + start.second)
    if rng[1]:
        end = datetime.combine(datetime.min, parse_tm(rng[1])) + _resolution(rng[1])
        conditions.append(seconds < (end - datetime.min).total_seconds())
    return and_(*conditions)


def match_datetime_range(column: Col, low: datetime | None, high: datetime | None) -> ColumnElement[bool]:
    """low <= column < high, either end open."""
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    return and_(*conditions) if conditions else true()
