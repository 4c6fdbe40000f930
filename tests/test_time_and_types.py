"""Aware UTC everywhere: the column type, raw naive rows, time input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from eventctl.errors import InvalidInput
from eventctl.timeparse import get_zone, parse_duration, parse_time


def _raw_insert(engine, uid, *, start, end, page="/naive", dialect=None):
    dialect = engine.dialect.name
    key = uid.hex if dialect == "sqlite" else str(uid)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO events (uid, name, description, page_context, filters, "limit", is_active, '
                "start_date, end_date, created_by, created_at, updated_at) VALUES "
                "(:uid, 'raw', NULL, :page, '{}', 20, :active, :start, :end, 'sql', :created, :created)"
            ),
            {"uid": key, "page": page, "active": True, "start": start, "end": end, "created": "2030-01-01 00:00:00"},
        )


def test_naive_rows_read_back_aware_utc_and_resolve(engine):
    from eventctl import events as core
    from eventctl.db import read_session

    uid = uuid.uuid4()
    # naive text as another tool would write it: 'T' separator, no fraction
    _raw_insert(engine, uid, start="2030-01-01T10:00:00", end="2030-01-01 12:00:00")
    with read_session(engine) as session:
        ev = core.get_event(session, ref=str(uid))
        assert ev.start_date == datetime(2030, 1, 1, 10, tzinfo=UTC)
        assert ev.end_date.tzinfo is not None and ev.end_date.utcoffset() == timedelta(0)
        assert ev.created_at.tzinfo is not None
        at = datetime(2030, 1, 1, 10, tzinfo=UTC)
        assert core.resolve_current(session, route="/naive", at=at).uid == uid
        assert core.resolve_current(session, route="/naive", at=at - timedelta(milliseconds=1)) is None
        assert core.resolve_current(session, route="/naive", at=at + timedelta(hours=2)) is None
        assert core.resolve_current(session, route="/naive", at=at + timedelta(hours=2, milliseconds=-1)).uid == uid
        assert [e.uid for e in core.list_events(session, status="live", at=at)] == [uid]


def test_column_type_refuses_naive_on_write(engine):
    from eventctl.db import write_session
    from eventctl.models import Event

    with pytest.raises(sa.exc.StatementError, match="naive"):
        with write_session(engine) as session:
            session.add(
                Event(
                    name="n",
                    page_context="/n",
                    created_by="t",
                    created_at=datetime(2030, 1, 1),
                    updated_at=datetime(2030, 1, 1),
                )
            )
            session.flush()


def test_other_offsets_are_stored_as_the_same_instant(engine):
    from eventctl.db import read_session, write_session
    from eventctl.models import Event

    kolkata = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2030, 1, 1, 15, 30, tzinfo=kolkata)
    with write_session(engine) as session:
        ev = Event(name="o", page_context="/o", created_by="t", created_at=local, updated_at=local, start_date=local)
        session.add(ev)
    with read_session(engine) as session:
        back = session.get(Event, ev.uid)
        assert back.start_date == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
        assert back.start_date.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2030-01-01T09:00", "UTC", datetime(2030, 1, 1, 9, tzinfo=UTC)),
        ("2030-01-01T09:00", "Asia/Kolkata", datetime(2030, 1, 1, 3, 30, tzinfo=UTC)),
        ("2030-07-01T09:00", "America/New_York", datetime(2030, 7, 1, 13, tzinfo=UTC)),
        ("2030-01-01T09:00+02:00", "Asia/Kolkata", datetime(2030, 1, 1, 7, tzinfo=UTC)),
        ("2030-01-01T09:00Z", "America/New_York", datetime(2030, 1, 1, 9, tzinfo=UTC)),
    ],
)
def test_parse_time_zones(text, zone, expected):
    assert parse_time(text, zone=get_zone(zone)) == expected


def test_relative_times_and_now():
    now = datetime(2030, 1, 31, 12, tzinfo=UTC)
    assert parse_time("now", now=now) == now
    assert parse_time("+2h", now=now) == now + timedelta(hours=2)
    assert parse_time("-30m", now=now) == now - timedelta(minutes=30)
    assert parse_time("+7d", now=now) == now + timedelta(days=7)
    assert parse_time("+1w", now=now) == now + timedelta(weeks=1)
    assert parse_time("+2h", now=now).tzinfo == UTC


@pytest.mark.parametrize("text", ["2030-03-10T02:30", "2030-11-03T01:30"])
def test_dst_gap_and_fold_refused(text):
    with pytest.raises(InvalidInput, match="offset"):
        parse_time(text, zone=get_zone("America/New_York"))


@pytest.mark.parametrize("bad", ["Mars/Olympus", "../../etc/passwd", "UTC+5"])
def test_unknown_zones(bad):
    with pytest.raises(InvalidInput, match="time zone"):
        get_zone(bad)


def test_durations():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("7", "-1d", "d", "1y", ""):
        with pytest.raises(InvalidInput):
            parse_duration(bad)
