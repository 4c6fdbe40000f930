"""The timeline (SPEC §9): which events fall in a window, where they overlap, which columns they cover.

Pure computation apart from ``fetch_events``: given the events, the axis window
``[start, end)``, the clock (``now``) and a width in columns, everything here is
deterministic, so the picture can be tested at a fixed clock and width. Drawing
(Rich) is the CLI's job (``eventctl.cli.timeline``).

Decisions where the spec is silent:
- only **active** events are drawn (an inactive event is never live, so it
  cannot conflict nor be answered; ``eventctl list --status inactive`` shows them);
- an event is drawn when its window ``[start, end)`` intersects the axis window;
- **overlaps** are judged as the overlap guard and ``current`` judge them:
  two campaigns (non-default) of the same page, or two defaults of the same
  page; a default never conflicts with a campaign;
- the **current** event is what ``eventctl current`` answers at ``now`` (a
  campaign wins over the page default; none when several are live).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select

from eventctl.db import time_expr, time_param
from eventctl.errors import Conflict
from eventctl.events import pick_current
from eventctl.models import Event, status_at
from eventctl.timeparse import as_utc, isoformat

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_SPAN = timedelta(days=30)


# ---------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """One event as the timeline sees it. ``start``/``end``: its own window (None = open);
    ``visible_*``: that window clipped to the axis; ``overlap_spans``: where it conflicts, clipped."""

    uid: str
    name: str
    page_context: str
    is_default: bool
    status: str
    current: bool
    start: datetime | None
    end: datetime | None
    visible_start: datetime
    visible_end: datetime
    overlaps: tuple[str, ...]
    overlap_spans: tuple[tuple[datetime, datetime], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "name": self.name,
            "is_default": self.is_default,
            "status": self.status,
            "current": self.current,
            "start": isoformat(self.start),
            "end": isoformat(self.end),
            "visible_start": isoformat(self.visible_start),
            "visible_end": isoformat(self.visible_end),
            "overlaps": list(self.overlaps),
        }


@dataclass(frozen=True)
class PageLane:
    page_context: str
    intervals: tuple[Interval, ...]

    def to_json(self) -> dict[str, Any]:
        return {"page_context": self.page_context, "events": [i.to_json() for i in self.intervals]}


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    now: datetime
    pages: tuple[PageLane, ...]

    def to_json(self, zone: tzinfo = UTC) -> dict[str, Any]:
        return {
            "from": isoformat(self.start),
            "to": isoformat(self.end),
            "now": isoformat(self.now),
            "tz": zone_name(zone),
            "pages": [p.to_json() for p in self.pages],
        }


def zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def _window(event: Event) -> tuple[datetime | None, datetime | None]:
    return as_utc(event.start_date), as_utc(event.end_date)


def _intersects(s1: datetime | None, e1: datetime | None, s2: datetime | None, e2: datetime | None) -> bool:
    """Half-open windows ``[s, e)`` (None = open) share at least one instant."""
    return (e2 is None or s1 is None or s1 < e2) and (e1 is None or s2 is None or s2 < e1)


def _clip(s: datetime | None, e: datetime | None, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    return (start if s is None or s < start else s), (end if e is None or e > end else e)


def _sort_key(event: Event) -> tuple[Any, ...]:
    s, e = _window(event)
    lowest = datetime.min.replace(tzinfo=UTC)
    highest = datetime.max.replace(tzinfo=UTC)
    created = as_utc(event.created_at) or lowest
    return (not event.is_default, s or lowest, e or highest, created, str(event.uid))


def build(
    events: list[Event],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    pages: list[str] | None = None,
) -> Timeline:
    """The timeline of ``events`` on the axis ``[start, end)`` at the clock ``now``.

    ``events`` may hold more than is drawn (``fetch_events`` adds those live at ``now``
    so that "current" is right even when ``now`` is off the axis); inactive events and
    events outside the axis are left out. ``pages``: the pages asked for, in that order,
    shown even when empty; None = every page with an event on the axis, sorted.
    """
    active = [e for e in events if e.is_active]
    by_page: dict[str, list[Event]] = {}
    for event in active:
        by_page.setdefault(event.page_context, []).append(event)
    order = list(dict.fromkeys(pages)) if pages is not None else sorted(by_page)
    lanes = []
    for page in order:
        page_events = by_page.get(page, [])
        try:
            current = pick_current([e for e in page_events if status_at(e, now) == "live"], page)
        except Conflict:
            current = None
        shown = sorted((e for e in page_events if _intersects(*_window(e), start, end)), key=_sort_key)
        if pages is None and not shown:
            continue
        lanes.append(PageLane(page, tuple(_interval(e, shown, start, end, now, current) for e in shown)))
    return Timeline(start=start, end=end, now=now, pages=tuple(lanes))


def _interval(
    event: Event, shown: list[Event], start: datetime, end: datetime, now: datetime, current: Event | None
) -> Interval:
    s, e = _window(event)
    overlaps: list[str] = []
    spans: list[tuple[datetime, datetime]] = []
    for other in shown:
        if other.uid == event.uid or bool(other.is_default) != bool(event.is_default):
            continue
        os_, oe = _window(other)
        if _intersects(s, e, os_, oe):
            overlaps.append(str(other.uid))
            lo = max((t for t in (s, os_) if t is not None), default=None)
            hi = min((t for t in (e, oe) if t is not None), default=None)
            spans.append(_clip(lo, hi, start, end))
    vs, ve = _clip(s, e, start, end)
    return Interval(
        uid=str(event.uid),
        name=event.name,
        page_context=event.page_context,
        is_default=bool(event.is_default),
        status=status_at(event, now),
        current=current is not None and current.uid == event.uid,
        start=s,
        end=e,
        visible_start=vs,
        visible_end=ve,
        overlaps=tuple(overlaps),
        overlap_spans=tuple(_merge(spans)),
    )


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


# ---------------------------------------------------------------- the query


def fetch_events(
    session: Session, *, pages: list[str] | None, start: datetime, end: datetime, now: datetime
) -> list[Event]:
    """Active events whose window intersects ``[start, end)``, and those live at ``now``.

    One query, by page (indexed ``page_context``) when pages are named; timestamps
    compared through ``time_expr``/``time_param`` so it reads the same on SQLite and PostgreSQL.
    """
    dialect = session.get_bind().dialect.name
    ev_start, ev_end = time_expr(Event.start_date, dialect), time_expr(Event.end_date, dialect)

    def starts_before(t: datetime, *, inclusive: bool = False) -> Any:
        bound = time_param(t, dialect)
        return sa.or_(col(Event.start_date).is_(None), ev_start <= bound if inclusive else ev_start < bound)

    def ends_after(t: datetime) -> Any:
        return sa.or_(col(Event.end_date).is_(None), ev_end > time_param(t, dialect))

    on_axis = sa.and_(starts_before(end), ends_after(start))
    live_now = sa.and_(starts_before(now, inclusive=True), ends_after(now))
    query = select(Event).where(col(Event.is_active).is_(True), sa.or_(on_axis, live_now))
    if pages is not None:
        query = query.where(col(Event.page_context).in_(pages))
    query = query.order_by(col(Event.page_context), col(Event.created_at), col(Event.uid))
    return list(session.exec(query).all())


# ---------------------------------------------------------------- columns


@dataclass(frozen=True)
class Bar:
    """An interval on an axis ``width`` columns wide: cells ``[col_start, col_end)``,
    conflict cells ``[a, b)`` for each span in ``conflict_cols``."""

    interval: Interval
    col_start: int
    col_end: int
    conflict_cols: tuple[tuple[int, int], ...]


def _offset(t: datetime, start: datetime, end: datetime, width: int) -> tuple[int, int]:
    """``(t - start) * width`` and the span, as whole microseconds (exact)."""
    span = (end - start) // timedelta(microseconds=1)
    return ((t - start) // timedelta(microseconds=1)) * width, span


def column(t: datetime, *, start: datetime, end: datetime, width: int) -> int:
    """The cell that holds instant ``t`` (0 … width-1), clipped at the axis ends."""
    num, span = _offset(t, start, end, width)
    return min(max(num // span, 0), width - 1)


def columns(lo: datetime, hi: datetime, *, start: datetime, end: datetime, width: int) -> tuple[int, int]:
    """Cells ``[a, b)`` touched by ``[lo, hi)`` (clipped to the axis): every cell the window
    reaches, at least one."""
    a_num, span = _offset(max(lo, start), start, end, width)
    b_num, _ = _offset(min(hi, end), start, end, width)
    a = min(max(a_num // span, 0), width - 1)
    b = min(max(-(-b_num // span), a + 1), width)
    return a, b


def now_column(now: datetime, *, start: datetime, end: datetime, width: int) -> int | None:
    """The cell of ``now``, or None when ``now`` is off the axis."""
    return column(now, start=start, end=end, width=width) if start <= now < end else None


def bars(timeline: Timeline, *, width: int) -> list[tuple[str, list[Bar]]]:
    """Every page's bars on an axis ``width`` columns wide (an open or clipped end reaches the edge)."""
    if width < 1:
        raise ValueError("the axis needs at least one column")
    s, e = timeline.start, timeline.end
    out = []
    for lane in timeline.pages:
        lane_bars = []
        for iv in lane.intervals:
            a, b = columns(iv.visible_start, iv.visible_end, start=s, end=e, width=width)
            conflict = tuple(columns(lo, hi, start=s, end=e, width=width) for lo, hi in iv.overlap_spans)
            lane_bars.append(Bar(iv, a, b, conflict))
        out.append((lane.page_context, lane_bars))
    return out


# ---------------------------------------------------------------- axis ticks

# (unit, step, rough length): tried in order, the first that leaves room for its labels wins
_STEPS: tuple[tuple[str, int, timedelta], ...] = (
    *(("minute", n, timedelta(minutes=n)) for n in (1, 5, 15, 30)),
    *(("hour", n, timedelta(hours=n)) for n in (1, 2, 3, 6, 12)),
    ("day", 1, timedelta(days=1)),
    ("day", 2, timedelta(days=2)),
    ("week", 1, timedelta(weeks=1)),
    ("week", 2, timedelta(weeks=2)),
    *(("month", n, timedelta(days=30 * n)) for n in (1, 3, 6)),
    *(("year", n, timedelta(days=365 * n)) for n in (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500)),
)
_LABEL = {"minute": 5, "hour": 5, "day": 5, "week": 5, "month": 7, "year": 4}


def local(t: datetime, zone: tzinfo) -> datetime:
    """``t`` in ``zone``; in UTC when the zone would leave the calendar (year 1, year 9999)."""
    try:
        return t.astimezone(zone)
    except (OverflowError, ValueError):
        return t.astimezone(UTC)


def _floor(t: datetime, unit: str, step: int) -> datetime:
    """The local wall-clock boundary at or before ``t`` (naive)."""
    if unit == "minute":
        return t.replace(minute=t.minute - t.minute % step, second=0, microsecond=0)
    if unit == "hour":
        return t.replace(hour=t.hour - t.hour % step, minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1, month=t.month - (t.month - 1) % step)
    year = t.year - t.year % step
    return day.replace(day=1, month=1, year=year if year >= 1 else step)


def _next(t: datetime, unit: str, step: int) -> datetime:
    if unit == "minute":
        return t + timedelta(minutes=step)
    if unit == "hour":
        return t + timedelta(hours=step)
    if unit in ("day", "week"):
        return t + timedelta(days=step * (7 if unit == "week" else 1))
    if unit == "month":
        months = t.year * 12 + t.month - 1 + step
        return t.replace(year=months // 12, month=months % 12 + 1)
    return t.replace(year=t.year + step)


def _label(t: datetime, unit: str) -> str:
    if unit in ("minute", "hour"):
        return t.strftime("%m-%d") if (t.hour, t.minute) == (0, 0) else t.strftime("%H:%M")
    if unit in ("day", "week"):
        return t.strftime("%m-%d")
    if unit == "month":
        return f"{t.year:04d}-{t.month:02d}"
    return f"{t.year:04d}"


def _instants(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The real instants (UTC) at which the clocks of ``zone`` read the naive ``wall``: none in a
    gap (a spring-forward hour, a skipped day), two in a fold (a fall-back hour), else one."""
    out: list[datetime] = []
    for fold in (0, 1):
        try:
            at = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
            back = at.astimezone(zone).replace(tzinfo=None, fold=0)
        except (OverflowError, ValueError):
            continue
        if back == wall.replace(fold=0) and at not in out:
            out.append(at)
    return sorted(out)


def _day_start(midnight: datetime, zone: tzinfo) -> datetime | None:
    """The first real instant (UTC) of the local date of the naive ``midnight``; None when the zone
    skips that date (Pacific/Apia, 2011-12-30). A midnight that falls in a gap (clocks going from
    23:59 to 01:00) starts its day where the gap ends."""
    found = _instants(midnight, zone)
    if found:
        return found[0]
    try:
        past_gap = midnight.replace(tzinfo=zone, fold=0).astimezone(UTC)  # PEP 495: maps past the gap
        if past_gap.astimezone(zone).date() != midnight.date():
            return None
        lo, hi = 0, 86_400  # seconds before past_gap: the day's first instant is within a day of it
        while hi - lo > 1:  # the largest offset still on this date; transitions fall on whole seconds
            mid = (lo + hi) // 2
            if (past_gap - timedelta(seconds=mid)).astimezone(zone).date() >= midnight.date():
                lo = mid
            else:
                hi = mid
        return past_gap - timedelta(seconds=lo)
    except (OverflowError, ValueError):
        return None


def _begins_date(at: datetime, zone: tzinfo) -> bool:
    """Whether the local date of ``zone`` moves forward at ``at``."""
    try:
        return (at - timedelta(microseconds=1)).astimezone(zone).date() < at.astimezone(zone).date()
    except (OverflowError, ValueError):
        return True


def tick_times(*, start: datetime, end: datetime, width: int, zone: tzinfo = UTC) -> list[tuple[datetime, str]]:
    """Axis ticks ``(instant, label)`` at round local times of ``zone`` (midnights, Mondays, months…),
    as many as fit with their labels. Only times the zone's clocks really show are labelled: a time
    in a gap gets no tick, a time shown twice (fall back) gets two, a date is labelled where it
    begins (its midnight, or the end of a gap that swallowed its midnight; a skipped date nowhere)."""
    span = end - start
    choice = None
    for unit, step, length in _STEPS:
        if span / length <= max(1, width // (_LABEL[unit] + 2)):
            choice = (unit, step)
            break
    if choice is None:
        return []
    unit, step = choice
    lz = local(start, zone)
    zone_used = lz.tzinfo or UTC
    wall = _floor(lz.replace(tzinfo=None, fold=0), unit, step)
    out: list[tuple[datetime, str]] = []
    for _ in range(width + 2):
        found: list[tuple[datetime, str]] = []
        if (wall.hour, wall.minute) == (0, 0):
            # a date is labelled where it begins: its first instant, or again where clocks step
            # forward onto it after falling back across midnight (St. John's fell back from 00:01);
            # a midnight that does not begin its date (a fold within the day) is only a time
            first = _day_start(wall, zone_used)
            for at in sorted({*([first] if first else []), *_instants(wall, zone_used)}):
                if _begins_date(at, zone_used):
                    found.append((at, _label(wall, unit)))
                elif unit in ("minute", "hour"):
                    found.append((at, f"{wall:%H:%M}"))
        else:
            found = [(at, _label(wall, unit)) for at in _instants(wall, zone_used)]
        if found and found[0][0] >= end:
            break
        for at, text in found:
            if start <= at < end and not (out and out[-1][0] >= at):  # a day that starts at 01:00: one tick
                out.append((at, text))
        try:
            wall = _next(wall, unit, step)
        except (OverflowError, ValueError):
            break
    return out


def ticks(*, start: datetime, end: datetime, width: int, zone: tzinfo = UTC) -> list[tuple[int, str]]:
    """Axis ticks ``(column, label)`` (see ``tick_times``); deterministic for a given window, width and
    zone. Of two ticks that fall in one column, the first is kept."""
    out: list[tuple[int, str]] = []
    seen: set[int] = set()
    for at, text in tick_times(start=start, end=end, width=width, zone=zone):
        c = column(at, start=start, end=end, width=width)
        if c not in seen:
            seen.add(c)
            out.append((c, text))
    return out
