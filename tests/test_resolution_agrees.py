"""The CLI resolves in SQL, the web app in memory: both must give the same answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE = datetime(2030, 1, 1, tzinfo=UTC)
offsets = st.one_of(st.none(), st.integers(min_value=-5, max_value=5))
windows = st.lists(st.tuples(st.booleans(), offsets, offsets), min_size=0, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=windows, at=st.integers(min_value=-6, max_value=6))
def test_sql_and_memory_resolution_agree(engine, windows, at):
    from eventctl import events as core
    from eventctl.db import read_session, write_session
    from eventctl.errors import Conflict
    from eventctl.models import Event

    with write_session(engine) as session:
        session.execute(sa.delete(Event))
        for i, (active, s, e) in enumerate(windows):
            start = BASE + timedelta(seconds=s) if s is not None else None
            end = BASE + timedelta(seconds=e) if e is not None else None
            if start is not None and end is not None and end <= start:
                end = start + timedelta(seconds=1)
            session.add(
                Event(
                    name=f"e{i}",
                    page_context="/p",
                    is_active=active,
                    start_date=start,
                    end_date=end,
                    created_by="t",
                    created_at=BASE,
                    updated_at=BASE,
                )
            )
    when = BASE + timedelta(seconds=at)

    def answer(fn):
        try:
            found = fn()
            return None if found is None else found.uid
        except Conflict as exc:
            return ("conflict", sorted(exc.uids))

    with read_session(engine) as session:
        sql = answer(lambda: core.resolve_current(session, route="/p", at=when))
        snapshot = core.load_snapshot(session, at=BASE - timedelta(seconds=10))
    memory = answer(lambda: core.resolve_in_memory(snapshot.get("/p", []), route="/p", at=when))
    assert sql == memory
