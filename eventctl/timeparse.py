"""Time input for the CLI, parsed with python-dateutil (SPEC §3).

Accepted: ISO 8601 with or without offset, ``now``, and relative offsets
``+2h``, ``-30m``, ``+7d``, ``+2w``, ``+90s``. Units are case-sensitive and only
these five: ``M`` is a month in ISO 8601 durations and in many schedulers, so
reading ``6M`` as six minutes would delete the wrong things; it is refused. A time without an offset is
local to the given zone; a local time that does not exist (DST gap) or is
ambiguous (DST fold) is refused. Every returned value is aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from eventctl.errors import InvalidInput
from eventctl.text import excerpt

# a number and any word: the unit is checked against _UNITS afterwards, so a wrong unit gets its own message
_RELATIVE = re.compile(r"([+-])\s*([0-9]{1,9})\s*([^\W\d_]+)", re.ASCII)
_DURATION = re.compile(r"([0-9]{1,9})\s*([^\W\d_]+)", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
UNITS_HELP = "units are s, m, h, d, w (seconds, minutes, hours, days, weeks; lower case: M is not minutes)"


def _unit(unit: str, text: str, what: str) -> str:
    if unit not in _UNITS:
        raise InvalidInput(f"Unknown unit {excerpt(unit)} in the {what} {excerpt(text)}; {UNITS_HELP}.")
    return _UNITS[unit]


def utcnow() -> datetime:
    return datetime.now(UTC)


def get_zone(name: str | None) -> tzinfo:
    """An IANA zone by name (None or blank → UTC); unknown names are invalid input."""
    if name is None or not name.strip():
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"Unknown time zone {excerpt(name)}; use an IANA name such as Europe/Berlin.") from None


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` → timedelta (positive)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InvalidInput(
            f"Invalid {what} {excerpt(text)}; use a number and a unit, e.g. 30m, 12h, 7d or 2w ({UNITS_HELP})."
        )
    unit = _unit(match.group(2), text, what)
    try:
        return timedelta(**{unit: int(match.group(1))})
    except OverflowError:
        raise InvalidInput(f"The {what} {excerpt(text)} is out of range.") from None


def parse_time(text: str, *, zone: tzinfo = UTC, now: datetime | None = None, what: str = "time") -> datetime:
    """Parse user input into an aware UTC datetime."""
    from dateutil import parser as dparser
    from dateutil import tz as dtz
    from dateutil.relativedelta import relativedelta

    raw = text.strip()
    now = now or utcnow()
    if raw.lower() == "now":
        return now.astimezone(UTC)
    rel = _RELATIVE.fullmatch(raw)
    if rel:
        sign = 1 if rel.group(1) == "+" else -1
        delta = relativedelta(**{_unit(rel.group(3), raw, what): sign * int(rel.group(2))})
        try:
            return (now + delta).astimezone(UTC)
        except (OverflowError, ValueError):
            raise InvalidInput(f"The {what} {excerpt(raw)} is out of range.") from None
    try:
        value = dparser.isoparse(raw)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"Invalid {what} {excerpt(text)}; use ISO 8601 (2026-12-01T09:00, optionally with an offset), "
            "'now' or +2h/-30m/+7d."
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
        try:
            dtz.datetime_exists(value)
            dtz.datetime_ambiguous(value)
        except (OverflowError, ValueError):
            raise InvalidInput(f"The {what} {excerpt(raw)} is out of range in {zone}.") from None
        if not dtz.datetime_exists(value):
            raise InvalidInput(
                f"The {what} {excerpt(raw)} does not exist in {zone} (a DST gap); give an explicit UTC offset."
            )
        if dtz.datetime_ambiguous(value):
            raise InvalidInput(
                f"The {what} {excerpt(raw)} is ambiguous in {zone} (a DST fold); give an explicit UTC offset."
            )
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"The {what} {excerpt(raw)} is out of range.") from None


def as_utc(value: datetime | None) -> datetime | None:
    """Aware UTC from a stored value; naive values are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """The one wire format for datetimes: ISO 8601 in UTC with a ``Z`` suffix."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]
