"""eventctl timeline (SPEC §9): bars on a time axis at a fixed clock and width, SVG, JSON, refusals.

The axis used throughout: 2030-01-01 → 2030-01-11 (UTC) on 100 columns, so one day is
10 columns and one column is 2.4 hours; the clock is 2030-01-01T06:00Z (column 2).
"""

from __future__ import annotations

import functools
import io
import json
import os
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.style import Style

from conftest import make_cli
from eventctl.cli import timeline as cli_tl
from eventctl.timeline import bars, build, column, columns, now_column, ticks

FROM = datetime(2030, 1, 1, tzinfo=UTC)
TO = datetime(2030, 1, 11, tzinfo=UTC)
NOW = datetime(2030, 1, 1, 6, tzinfo=UTC)
WIDTH = 100
LABELS = 19  # "● " + the longest name (Fallback) + " " + the 8-char uid prefix
TOTAL = LABELS + 1 + WIDTH  # the label column, one space, 100 axis columns


def uid(n: int) -> uuid.UUID:
    """A fixed uid whose 8-char prefix is unique: 00000001-…, 00000002-…"""
    return uuid.UUID(f"{n:08x}-0000-4000-8000-{n:012x}")


def t(day: int, hour: int = 0, month: int = 1, year: int = 2030) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# name: (page, start, end, is_default, is_active)
EVENTS: dict[str, tuple[str, datetime | None, datetime | None, bool, bool]] = {
    "Fallback": ("/p", None, None, True, True),  # the page default, open both ways
    "Clipped": ("/p", t(25, month=12, year=2029), t(1, 12), False, True),  # live at NOW, starts before the axis
    "Audio": ("/p", t(2), t(4), False, True),  # columns 10-30
    "Video": ("/p", t(3), t(6), False, True),  # columns 20-50, overlaps Audio on 20-30
    "Short": ("/p", t(7, 3), t(7, 9), False, True),  # mid-cell: 61.25 → 63.75 = columns 61-64
    "Open": ("/p", t(9), None, False, True),  # open end: to the right edge
    "Off": ("/p", t(2), t(5), False, False),  # inactive: left out
    "Past": ("/p", t(1, month=12, year=2029), t(31, month=12, year=2029), False, True),  # before the axis
    "Touching": ("/p", t(31, month=12, year=2029), t(1), False, True),  # ends exactly at --from: out
    "Later": ("/p", t(11), t(12), False, True),  # starts exactly at --to: out
    "Def1": ("/q", t(1), t(5), True, True),  # two defaults of /q overlap on days 4-5
    "Def2": ("/q", t(4), None, True, True),
    "Camp": ("/q", t(4), t(6), False, True),  # a campaign over the defaults: not a conflict
}
SHOWN_P = ["Fallback", "Clipped", "Audio", "Video", "Short", "Open"]
SHOWN_Q = ["Def1", "Def2", "Camp"]


def make_events():
    from eventctl.models import Event

    out = {}
    for i, (name, (page, start, end, default, active)) in enumerate(EVENTS.items()):
        out[name] = Event(
            uid=uid(i + 1),
            name=name,
            page_context=page,
            filters={},
            is_active=active,
            is_default=default,
            start_date=start,
            end_date=end,
            created_by="test",
            created_at=t(1, month=1, year=2029) + timedelta(minutes=i),
            updated_at=t(1, month=1, year=2029),
        )
    return out


@pytest.fixture
def events():
    return make_events()


@pytest.fixture
def picture(events):
    return build(list(events.values()), start=FROM, end=TO, now=NOW)


def by_name(tl):
    return {iv.name: iv for lane in tl.pages for iv in lane.intervals}


# ---------------------------------------------------------------- columns (core)


def test_columns_are_exact_and_clipped():
    assert column(FROM, start=FROM, end=TO, width=WIDTH) == 0
    assert column(TO - timedelta(microseconds=1), start=FROM, end=TO, width=WIDTH) == 99
    assert column(TO + timedelta(days=5), start=FROM, end=TO, width=WIDTH) == 99  # clipped
    assert column(FROM - timedelta(days=5), start=FROM, end=TO, width=WIDTH) == 0
    assert columns(t(2), t(4), start=FROM, end=TO, width=WIDTH) == (10, 30)
    assert columns(t(7, 3), t(7, 9), start=FROM, end=TO, width=WIDTH) == (61, 64)  # every cell touched
    assert columns(t(5), t(5) + timedelta(seconds=1), start=FROM, end=TO, width=WIDTH) == (40, 41)  # at least one
    assert now_column(NOW, start=FROM, end=TO, width=WIDTH) == 2
    assert now_column(TO, start=FROM, end=TO, width=WIDTH) is None  # the axis end is exclusive
    assert now_column(FROM - timedelta(seconds=1), start=FROM, end=TO, width=WIDTH) is None


def test_bars_columns_overlaps_default_and_live(picture):
    lanes = dict(bars(picture, width=WIDTH))
    assert list(lanes) == ["/p", "/q"]
    cols = {b.interval.name: (b.col_start, b.col_end, b.conflict_cols) for lane in lanes.values() for b in lane}
    assert cols == {
        "Fallback": (0, 100, ()),  # open both ways: edge to edge, not in conflict with campaigns
        "Clipped": (0, 5, ()),
        "Audio": (10, 30, ((20, 30),)),
        "Video": (20, 50, ((20, 30),)),
        "Short": (61, 64, ()),
        "Open": (80, 100, ()),
        "Def1": (0, 40, ((30, 40),)),
        "Def2": (30, 100, ((30, 40),)),
        "Camp": (30, 50, ()),
    }
    # the default first, then by start
    assert [b.interval.name for b in lanes["/p"]] == SHOWN_P
    ivs = by_name(picture)
    # what `current` answers: on /p the live campaign wins over the default; on /q the default is alone
    assert [n for n, iv in ivs.items() if iv.current] == ["Clipped", "Def1"]
    assert ivs["Fallback"].status == "live" and not ivs["Fallback"].current
    assert ivs["Audio"].overlaps == (str(uid(4)),) and ivs["Video"].overlaps == (str(uid(3)),)


def test_current_is_none_when_campaigns_conflict_at_now(events):
    events["Audio"].start_date = t(1)  # now Audio and Clipped are both live at NOW
    ivs = by_name(build(list(events.values()), start=FROM, end=TO, now=NOW))
    assert not any(iv.current for iv in ivs.values() if iv.page_context == "/p")
    assert ivs["Audio"].overlaps == (str(events["Clipped"].uid), str(events["Video"].uid))


def test_current_is_right_when_now_is_off_the_axis(events):
    later = build(list(events.values()), start=t(2), end=t(3), now=NOW)
    assert [iv.name for iv in later.pages[0].intervals] == ["Fallback", "Audio"]
    assert not any(iv.current for iv in later.pages[0].intervals)  # Clipped is current but not drawn
    assert now_column(NOW, start=t(2), end=t(3), width=WIDTH) is None


def test_pages_asked_for_come_in_that_order_even_empty(events):
    tl = build(list(events.values()), start=FROM, end=TO, now=NOW, pages=["/q", "/nothing", "/p"])
    assert [(lane.page_context, len(lane.intervals)) for lane in tl.pages] == [("/q", 3), ("/nothing", 0), ("/p", 6)]


def test_ticks_fall_on_local_midnights_and_are_deterministic():
    got = ticks(start=FROM, end=TO, width=WIDTH, zone=UTC)
    assert got == [(i * 10, f"01-{i + 1:02d}") for i in range(10)]
    from zoneinfo import ZoneInfo

    kolkata = ticks(start=FROM, end=TO, width=WIDTH, zone=ZoneInfo("Asia/Kolkata"))
    # local midnight in Kolkata is 18:30 UTC the day before: 7.7 columns into each UTC day
    assert kolkata[0] == (7, "01-02") and kolkata == ticks(
        start=FROM, end=TO, width=WIDTH, zone=ZoneInfo("Asia/Kolkata")
    )
    assert ticks(start=datetime(1, 1, 1, tzinfo=UTC), end=datetime(9999, 12, 31, tzinfo=UTC), width=WIDTH)


def _local_ticks(zone_name, wall_from, wall_to, width):
    """ticks() on the axis between two local wall times of the zone (both real)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name)
    start = wall_from.replace(tzinfo=zone).astimezone(UTC)
    end = wall_to.replace(tzinfo=zone).astimezone(UTC)
    at = lambda instant: column(instant, start=start, end=end, width=width)  # noqa: E731
    return ticks(start=start, end=end, width=width, zone=zone), at


def test_ticks_skip_the_hour_that_clocks_jump_over():
    got, at = _local_ticks("America/New_York", datetime(2030, 3, 10, 1), datetime(2030, 3, 10, 5), 60)
    # 02:00-02:59 never shows on a New York clock that day: 01:30 EST is followed by 03:00 EDT
    assert got == [
        (at(datetime(2030, 3, 10, 6, tzinfo=UTC)), "01:00"),
        (at(datetime(2030, 3, 10, 6, 30, tzinfo=UTC)), "01:30"),
        (at(datetime(2030, 3, 10, 7, tzinfo=UTC)), "03:00"),
        (at(datetime(2030, 3, 10, 7, 30, tzinfo=UTC)), "03:30"),
        (at(datetime(2030, 3, 10, 8, tzinfo=UTC)), "04:00"),
        (at(datetime(2030, 3, 10, 8, 30, tzinfo=UTC)), "04:30"),
    ]


def test_ticks_show_an_hour_that_clocks_show_twice_twice():
    got, at = _local_ticks("America/New_York", datetime(2030, 11, 3, 0), datetime(2030, 11, 3, 4), 60)
    assert got == [
        (0, "11-03"),
        (at(datetime(2030, 11, 3, 5, tzinfo=UTC)), "01:00"),  # EDT
        (at(datetime(2030, 11, 3, 6, tzinfo=UTC)), "01:00"),  # EST, an hour later
        (at(datetime(2030, 11, 3, 7, tzinfo=UTC)), "02:00"),
        (at(datetime(2030, 11, 3, 8, tzinfo=UTC)), "03:00"),
    ]


def test_ticks_leave_out_a_day_the_zone_skipped():
    got, at = _local_ticks("Pacific/Apia", datetime(2011, 12, 28), datetime(2012, 1, 2), 60)
    # Samoa went from 2011-12-29 23:59:59 (-10) to 2011-12-31 00:00 (+14): there was no 12-30
    labels = [label for _, label in got]
    assert "12-30" not in labels
    assert labels == ["12-28", "12:00", "12-29", "12:00", "12-31", "12:00", "01-01", "12:00"]
    assert {label: c for c, label in got}["12-31"] == at(datetime(2011, 12, 30, 10, tzinfo=UTC))


def test_a_day_whose_midnight_never_happened_starts_where_its_clocks_start():
    got, at = _local_ticks("America/Sao_Paulo", datetime(2018, 11, 3), datetime(2018, 11, 6), 60)
    # 2018-11-04 began at 01:00 -02 (clocks went from 23:59:59 -03 to 01:00 -02)
    assert (at(datetime(2018, 11, 4, 3, tzinfo=UTC)), "11-04") in got


ODD_ZONES = [
    "America/New_York",
    "Pacific/Apia",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",  # half-hour DST
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Kiritimati",  # skipped 1994-12-31
    "Antarctica/Troll",  # +2 h DST
    "Europe/London",
    "Asia/Gaza",  # DST at midnight
]


def _says(label, instant, zone):
    """Whether ``label`` is what the zone's clocks show at ``instant`` (a date: its first instant)."""
    wall = instant.astimezone(zone)
    before = (instant - timedelta(microseconds=1)).astimezone(zone)
    if ":" in label:
        return label == f"{wall:%H:%M}" and (wall.second, wall.microsecond) == (0, 0)
    starts_day = before.date() != wall.date()
    if len(label) == 5:
        return starts_day and label == f"{wall:%m-%d}"
    if len(label) == 7:
        return starts_day and wall.day == 1 and label == f"{wall.year:04d}-{wall.month:02d}"
    return starts_day and (wall.month, wall.day) == (1, 1) and label == f"{wall.year:04d}"


@functools.cache
def _transitions(zone_name):
    """The instants (UTC, to the second) at which the zone's offset changed, 1990-2035."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name)
    found = []
    day = datetime(1990, 1, 1, tzinfo=UTC)
    while day < datetime(2035, 1, 1, tzinfo=UTC):
        nxt = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = 0, 86_400
            while hi - lo > 1:
                mid = (lo + hi) // 2
                same = (day + timedelta(seconds=mid)).astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset()
                lo, hi = (mid, hi) if same else (lo, mid)
            found.append(day + timedelta(seconds=hi))
        day = nxt
    return found


@st.composite
def _axis(draw, *, max_span):
    """(zone, start, span): half the time a window around one of the zone's offset changes."""
    name = draw(st.sampled_from(ODD_ZONES))
    changes = _transitions(name)
    if changes and draw(st.booleans()):
        start = draw(st.sampled_from(changes)) - draw(st.timedeltas(timedelta(0), timedelta(days=2)))
    else:
        start = draw(
            st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
        )
    return name, start, draw(st.timedeltas(min_value=timedelta(minutes=30), max_value=max_span))


@given(axis=_axis(max_span=timedelta(days=800)), width=st.integers(min_value=10, max_value=200))
@settings(max_examples=400)
def test_every_tick_label_is_a_time_the_zone_really_shows(axis, width):
    from zoneinfo import ZoneInfo

    from eventctl.timeline import tick_times

    zone_name, start, span = axis
    zone = ZoneInfo(zone_name)
    got = tick_times(start=start, end=start + span, width=width, zone=zone)
    assert [at for at, _ in got] == sorted({at for at, _ in got})
    for at, label in got:
        assert start <= at < start + span
        assert _says(label, at, zone), (label, at, at.astimezone(zone))


@given(axis=_axis(max_span=timedelta(days=12)))
@settings(max_examples=200)
def test_every_real_local_day_on_a_day_axis_gets_its_tick(axis):
    from zoneinfo import ZoneInfo

    from eventctl.timeline import tick_times

    zone_name, start, span = axis
    zone = ZoneInfo(zone_name)
    days = max(1, span.days)
    end = start + timedelta(days=days)
    got = tick_times(start=start, end=end, width=7 * days, zone=zone)  # one tick a day fits, no finer
    dates = {at.astimezone(zone).date() for at, label in got if len(label) == 5}
    # a local date begins at a midnight (each of these zones has its midnights on a quarter hour of
    # UTC) or at an offset change: every such instant on the axis whose date is not the one before it
    quarter = timedelta(minutes=15)
    grid = start + (datetime.min.replace(tzinfo=UTC) - start) % quarter
    candidates = [grid + quarter * i for i in range((end - grid) // quarter + 1)]
    candidates += [t for t in _transitions(zone_name) if start <= t < end]
    expected = set()
    for at in candidates:
        wall = at.astimezone(zone)
        if start <= at < end and (at - timedelta(microseconds=1)).astimezone(zone).date() < wall.date():
            expected.add(wall.date())
    assert dates == expected


# ---------------------------------------------------------------- the picture (Rich)


def recorder(width: int = TOTAL) -> Console:
    return Console(
        record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor", no_color=False
    )


def uid8(i: int) -> str:
    return str(uid(i))[:8]


NAMES = {name: uid8(i + 1) for i, name in enumerate(EVENTS)}


def rows(lines):
    """{uid prefix: line} for the bar rows (the label column ends with the uid prefix)."""
    out = {}
    for line in lines:
        label = line.plain[:LABELS].rstrip()
        if label[-8:] in NAMES.values():
            out[label[-8:]] = line
    return out


def test_render_columns_now_mark_overlap_default_and_live(picture):
    console = recorder()
    assert cli_tl.axis_width(picture, TOTAL) == (LABELS, WIDTH)
    lines = cli_tl.render(picture, total=TOTAL, zone=UTC)
    axis = LABELS + 1  # the axis starts after the label column and one space
    by_uid = rows(lines)
    assert set(by_uid) == {NAMES[n] for n in SHOWN_P + SHOWN_Q}

    def cells(name):
        return by_uid[NAMES[name]].plain[axis:]

    def style(name, col):
        return console.get_style(by_uid[NAMES[name]].get_style_at_offset(console, axis + col))

    red, green = Style.parse(cli_tl.STYLE_CONFLICT), Style.parse(cli_tl.STYLE_LIVE)
    # bars: the exact columns
    assert cells("Audio") == "  │" + " " * 7 + "█" * 10 + "▓" * 10 + " " * 70
    assert cells("Video") == "  │" + " " * 17 + "▓" * 10 + "█" * 20 + " " * 50
    assert cells("Short") == "  │" + " " * 58 + "█" * 3 + " " * 36
    assert cells("Open") == "  │" + " " * 77 + "█" * 20
    assert cells("Clipped") == "█" * 5 + " " * 95
    # the default: a thin band, edge to edge
    assert cells("Fallback") == "▁" * 100
    assert style("Fallback", 50).color == Style.parse(cli_tl.STYLE_DEFAULT).color
    # overlaps in the conflict colour, the rest of the bar not
    for col in range(20, 30):
        assert style("Audio", col).color == red.color and style("Audio", col).bold
        assert style("Video", col).color == red.color
    assert style("Audio", 15).color == Style.parse(cli_tl.STYLE_BAR).color
    assert red.color.name == "red"
    # two defaults in conflict: still a thin band, red where they overlap; a campaign over them is not red
    assert cells("Def1") == "▁" * 40 + " " * 60 and style("Def1", 35).color == red.color
    assert style("Def1", 5).color != red.color
    assert cells("Camp")[30:50] == "█" * 20 and style("Camp", 40).color != red.color
    # the live event highlighted: green bold bar and a ● in its label
    assert all(style("Clipped", col).color == green.color and style("Clipped", col).bold for col in range(5))
    assert by_uid[NAMES["Clipped"]].plain.startswith("● Clipped")
    assert green.color.name == "green" and style("Audio", 15).color != green.color
    # a live default (nothing else live on /q) is marked too, and stays a band
    assert by_uid[NAMES["Def1"]].plain.startswith("● Def1") and style("Def1", 5).bold
    assert not by_uid[NAMES["Audio"]].plain.startswith("●")
    # the now mark: ▼ on the axis line at column 2, │ in rows that leave it empty
    axis_line = next(line for line in lines if "┬" in line.plain)
    assert axis_line.plain[axis:].index("▼") == 2
    assert console.get_style(axis_line.get_style_at_offset(console, axis + 2)).color.name == "magenta"
    assert cells("Audio")[2] == "│" and style("Audio", 2).color.name == "magenta"
    # day ticks with their labels
    assert [i for i, c in enumerate(axis_line.plain[axis:]) if c == "┬"] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    # every line fits the width; the styled export carries the conflict colour
    for line in lines:
        console.print(line, no_wrap=True, overflow="ellipsis")
    exported = console.export_text(styles=True)
    assert "\x1b[1;31m" + "▓" * 10 in exported
    assert all(cell_len(line) <= TOTAL for line in console.export_text().splitlines())


@pytest.mark.parametrize("total", [40, 60, 80, 200])
def test_the_picture_fits_any_width(picture, total):
    lines = cli_tl.render(picture, total=total, zone=UTC)
    console = recorder(total)
    for line in lines:
        console.print(line, no_wrap=True, overflow="ellipsis")
    text = console.export_text()
    assert all(cell_len(line) <= total for line in text.splitlines())
    again = cli_tl.render(picture, total=total, zone=UTC)  # deterministic for a width and a clock
    assert [(x.plain, x.spans) for x in again] == [(x.plain, x.spans) for x in lines]


# ---------------------------------------------------------------- the command, on both databases


@pytest.fixture
def fixed_clock(monkeypatch):
    import eventctl.timeparse

    monkeypatch.setattr(eventctl.timeparse, "utcnow", lambda: NOW)


def seed(engine):
    from sqlmodel import Session

    with Session(engine) as session:
        for event in make_events().values():
            session.add(event)
        session.commit()


AXIS = ("--from", "2030-01-01T00:00:00Z", "--to", "2030-01-11T00:00:00Z")


def expected_json():
    u = {name: str(uid(i + 1)) for i, name in enumerate(EVENTS)}

    def ev(name, status, vis, overlaps=(), current=False):
        _, start, end, default, _ = EVENTS[name]
        iso = lambda d: None if d is None else d.isoformat().replace("+00:00", "Z")  # noqa: E731
        return {
            "uid": u[name],
            "name": name,
            "is_default": default,
            "status": status,
            "current": current,
            "start": iso(start),
            "end": iso(end),
            "visible_start": iso(vis[0]),
            "visible_end": iso(vis[1]),
            "overlaps": [u[o] for o in overlaps],
        }

    return {
        "from": "2030-01-01T00:00:00Z",
        "to": "2030-01-11T00:00:00Z",
        "now": "2030-01-01T06:00:00Z",
        "tz": "UTC",
        "pages": [
            {
                "page_context": "/p",
                "events": [
                    ev("Fallback", "live", (FROM, TO)),
                    ev("Clipped", "live", (FROM, t(1, 12)), current=True),
                    ev("Audio", "scheduled", (t(2), t(4)), ["Video"]),
                    ev("Video", "scheduled", (t(3), t(6)), ["Audio"]),
                    ev("Short", "scheduled", (t(7, 3), t(7, 9))),
                    ev("Open", "scheduled", (t(9), TO)),
                ],
            },
            {
                "page_context": "/q",
                "events": [
                    ev("Def1", "live", (FROM, t(5)), ["Def2"], current=True),
                    ev("Def2", "scheduled", (t(4), TO), ["Def1"]),
                    ev("Camp", "scheduled", (t(4), t(6))),
                ],
            },
        ],
    }


def test_json_intervals_are_exact(cli, engine, fixed_clock):
    seed(engine)
    r = cli("timeline", *AXIS, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == expected_json()
    # --page: normalized, repeatable, in the order given; a page without events is listed empty
    r = cli("timeline", *AXIS, "--page", "//q/", "--page", "/none", "--page", "/q?x=1", "--json")
    assert r.exit_code == 0, r.stderr
    assert [(p["page_context"], len(p["events"])) for p in r.json()["pages"]] == [("/q", 3), ("/none", 0)]
    # defaults: from now, 30 days
    r = cli("timeline", "--json")
    assert (r.json()["from"], r.json()["to"]) == ("2030-01-01T06:00:00Z", "2030-01-31T06:00:00Z")
    # --tz reads local times; the JSON stays UTC
    r = cli("timeline", "--from", "2030-01-01T05:30", "--to", "2030-01-11T05:30", "--tz", "Asia/Kolkata", "--json")
    assert (r.json()["from"], r.json()["tz"]) == ("2030-01-01T00:00:00Z", "Asia/Kolkata")
    assert r.json()["pages"] == expected_json()["pages"]


def test_the_picture_on_both_databases_matches_the_core(cli, engine, fixed_clock, events):
    seed(engine)
    r = cli("timeline", *AXIS, env={"COLUMNS": str(TOTAL)})
    assert r.exit_code == 0, r.stderr
    expected = [line.plain for line in cli_tl.render(build(list(events.values()), start=FROM, end=TO, now=NOW),
                                                      total=TOTAL, zone=UTC)]  # fmt: skip
    assert [line.rstrip() for line in r.stdout.splitlines()] == [line.rstrip() for line in expected]
    assert "Off" not in r.stdout and "Past" not in r.stdout and "Later" not in r.stdout
    for columns_ in ("60", "200"):
        out = cli("timeline", *AXIS, env={"COLUMNS": columns_}).stdout
        assert all(cell_len(line) <= int(columns_) for line in out.splitlines())


def test_svg_has_the_event_names(cli, engine, fixed_clock, tmp_path):
    seed(engine)
    out = tmp_path / "timeline.svg"
    r = cli("timeline", *AXIS, "--svg", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and "timeline.svg" in r.stderr
    document = out.read_text(encoding="utf-8")
    root = ET.fromstring(document)  # well-formed
    assert root.tag.endswith("svg")
    drawn = "".join(root.itertext()).replace("\xa0", " ")
    for name in SHOWN_P + SHOWN_Q:
        assert name in document and name in drawn
    assert "Off" not in drawn
    from rich.color import Color
    from rich.terminal_theme import SVG_EXPORT_THEME

    assert Color.parse("red").get_truecolor(SVG_EXPORT_THEME).hex in document  # the conflict colour is drawn
    # --svg with --json: the JSON on stdout, the SVG in the file
    out.unlink()
    r = cli("timeline", *AXIS, "--svg", str(out), "--json")
    assert r.exit_code == 0 and r.json() == expected_json() and out.is_file()
    # --svg -: the SVG on stdout
    r = cli("timeline", *AXIS, "--svg", "-")
    assert r.exit_code == 0 and r.stdout.startswith("<svg") and "Audio" in r.stdout


def test_hostile_names_never_reach_the_terminal_raw(cli, engine, fixed_clock, tmp_path):
    from sqlmodel import Session

    from eventctl.models import Event

    name = "evil\x1b[2J\x07\nforged line \x9b<b>&"
    with Session(engine) as session:  # stored by someone else, past eventctl's own checks
        session.add(
            Event(
                uid=uuid.uuid4(),
                name=name,
                page_context="/h",
                filters={},
                is_active=True,
                start_date=t(2),
                end_date=t(3),
                created_by="x",
                created_at=NOW,
                updated_at=NOW,
            )  # fmt: skip
        )
        session.commit()
    r = cli("timeline", *AXIS, env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.stderr
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in r.stdout
    assert "evil\\x1b[2J\\x07\\nforged" in r.stdout
    assert not any(line.startswith("forged") for line in r.stdout.splitlines())
    out = tmp_path / "h.svg"
    assert cli("timeline", *AXIS, "--svg", str(out)).exit_code == 0
    document = out.read_text(encoding="utf-8")
    ET.fromstring(document)  # still well-formed XML: no raw control characters, < and & escaped
    assert "\x1b" not in document and "&lt;b&gt;&amp;" in document
    assert json.loads(cli("timeline", *AXIS, "--json").stdout)["pages"][0]["events"][0]["name"] == name


def test_the_drawn_axis_labels_only_times_new_york_clocks_showed(cli, engine, fixed_clock, tmp_path):
    """The terminal and the SVG: on 2030-03-10 New York clocks went from 01:59 EST to 03:00 EDT."""
    window = ("--tz", "America/New_York", "--from", "2030-03-10T00:00", "--to", "2030-03-10T05:00")
    r = cli("timeline", *window, env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.stderr
    labels = r.stdout.splitlines()[1].split()
    assert labels[:2] == ["03-10", "00:30"] and "03:00" in labels, labels
    assert not [label for label in labels if label.startswith("02:")], labels
    out = tmp_path / "ny.svg"
    assert cli("timeline", *window, "--svg", str(out), env={"COLUMNS": "120"}).exit_code == 0
    root = ET.fromstring(out.read_text(encoding="utf-8"))
    drawn = ["".join(node.itertext()).replace("\xa0", " ") for node in root.iter() if node.tag.endswith("text")]
    axis = " ".join(drawn)
    assert "03:00" in axis and "01:30" in axis and "02:00" not in axis and "02:30" not in axis


def test_fetch_events_asks_only_for_what_matters(engine):
    from eventctl.db import read_session
    from eventctl.timeline import fetch_events

    seed(engine)
    with read_session(engine) as session:
        got = {e.name for e in fetch_events(session, pages=None, start=FROM, end=TO, now=NOW)}
        assert got == set(SHOWN_P + SHOWN_Q)
        got = {e.name for e in fetch_events(session, pages=["/q"], start=t(5), end=t(6), now=t(5))}
        assert got == {"Def2", "Camp"}
        # those live at now come along even when now is off the axis ("current" needs them)
        got = {e.name for e in fetch_events(session, pages=["/p"], start=t(8), end=t(9), now=NOW)}
        assert got == {"Fallback", "Clipped"}


# ---------------------------------------------------------------- refusals


def one_sentence(r) -> str:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith("."), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "2030-01-02T00:00Z", "--to", "2030-01-01T00:00Z"), "--to must be after --from"),
        (("--from", "2030-01-02T00:00Z", "--to", "2030-01-02T00:00Z"), "--to must be after --from"),
        (("--to", "-1d"), "--to must be after --from"),
        (("--tz", "Mars/Olympus"), "Unknown time zone"),
        (("--from", "next tuesday"), "Invalid --from"),
        (("--from", "9999-12-31T00:00Z"), "--to as well"),
        (("--page", "bad key"), "page key"),
        (("--page", "  "), "page key is required"),
        (("--svg", ""), "--svg needs a file name"),
        (("--svg", "-", "--json"), "stdout"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(cli, args, says):
    assert says.lower() in one_sentence(cli("timeline", *args)).lower()


def test_unwritable_svg_is_refused_before_the_database(cli, tmp_path):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    for target, says in (
        (tmp_path / "missing" / "x.svg", "does not exist"),
        (tmp_path, "is a directory"),
        (a_file / "x.svg", "does not exist"),
    ):
        assert says in one_sentence(cli("timeline", "--svg", str(target)))
    assert not (tmp_path / "missing").exists()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "permission denied" in one_sentence(cli("timeline", "--svg", str(locked / "x.svg")))


def test_refusals_come_before_any_database_work(tmp_path):
    missing = tmp_path / "nowhere" / "events.db"
    run = make_cli(f"sqlite:///{missing}")
    one_sentence(run("timeline", "--to", "-1d"))
    one_sentence(run("timeline", "--svg", str(tmp_path / "no" / "x.svg")))
    assert not missing.parent.exists()
    assert run("timeline").exit_code == 5  # a good command on a missing database: exit 5, nothing created
    assert not missing.parent.exists()
