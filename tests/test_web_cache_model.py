"""The /current cache against a model of what it may answer (SPEC §2 and §4), on both databases.

Hypothesis drives random writes (creates, renames, page moves, deactivations, deletes, overlaps
allowed), notifications delivered late, out of order, twice or never, polls, clock steps across
window boundaries, and outages (the service's database calls fail). After every step, each page
whose writes have all been taken as seen (a notification delivered, or a poll since) must answer
exactly what SPEC §2 resolves on the database's rows at the service's clock; a page with a write
not yet seen may lag, no more. During an outage a page answers 503, or its last good data marked
stale (windows re-applied against the clock, so still what SPEC §2 says for a page seen), and 503
once the grace is over.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from conftest import _empty_tables

PAGES = ("/a", "/b", "/c")
OFFSETS = st.none() | st.integers(-100, 500)  # a start (or an end) relative to the start of the run, seconds
HORIZON = 550  # the clock stays below MAX_ENTRY_AGE after the run's start: no reload by age


def _reference(engine, page: str, at: datetime) -> tuple[int, object]:
    """SPEC §2 on the database's rows: (200, (uid, name) or None) or (409, conflicting uids)."""
    from eventctl import events as core
    from eventctl.db import read_session
    from eventctl.errors import Conflict

    with read_session(engine) as session:
        try:
            event = core.resolve_current(session, route=page, at=at)
        except Conflict as exc:
            return 409, sorted(exc.uids)
    return 200, None if event is None else (str(event.uid), event.name)


def _answered(status: int, body: bytes) -> tuple[int, object]:
    doc = json.loads(body)
    if status == 409:
        return 409, sorted(doc["conflicting_uids"])
    return status, None if doc is None else (doc["uid"], doc["name"])


def test_the_cache_answers_as_the_database_does(db_url):
    from eventctl import events as core
    from eventctl.db import make_engine, write_session
    from eventctl.shapes import EventCreate, EventUpdate
    from eventctl.web.current import CurrentService

    engine = make_engine(db_url)

    class CacheModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            _empty_tables(db_url)
            self.t0 = float(int(time.time()))
            self.now = self.t0
            self.loop = asyncio.new_event_loop()
            # every page held: answers come from the cache between writes
            self.service = CurrentService(
                engine, cache_ttl=30, stale_grace=300, poll_interval=3600, listen=False,
                clock=lambda: self.now, max_pages=len(PAGES),
            )  # fmt: skip
            self.loop.run_until_complete(self._start())
            self.uids: list[str] = []
            self.pending: list[tuple[int, frozenset[str], int]] = []  # (write, pages, counter) not delivered
            self.unseen: dict[str, set[int]] = {page: set() for page in PAGES}  # writes a page has not seen
            self.writes = 0
            self.down = False
            self.real_reads = (self.service.loader.read, self.service.feed.read_changes)

        async def _start(self) -> None:
            self.service.start()
            await self.service.refresh()

        def _at(self, offset: int | None) -> datetime | None:
            return None if offset is None else datetime.fromtimestamp(self.t0 + offset, UTC)

        def _write(self, action) -> None:
            with write_session(engine) as session:
                pages = action(session)
                session.flush()
                version = int(session.execute(sa.text("SELECT version FROM eventctl_state WHERE id = 1")).scalar())
            self.writes += 1
            self.pending.append((self.writes, frozenset(pages), version))
            for page in pages:
                self.unseen[page].add(self.writes)

        @rule(page=st.sampled_from(PAGES), start=OFFSETS, length=st.none() | st.integers(1, 400), default=st.booleans())
        def create(self, page, start, length, default):
            end = None if length is None else (start or 0) + length

            def action(session):
                data = EventCreate(
                    name=f"E{self.writes}", page_context=page, start_date=self._at(start), end_date=self._at(end),
                    is_default=default,
                )  # fmt: skip
                self.uids.append(
                    str(core.create_event(session, data=data, actor="m", via="cli", allow_overlap=True).uid)
                )
                return {page}

            self._write(action)

        @precondition(lambda self: self.uids)
        @rule(
            data=st.data(),
            page=st.none() | st.sampled_from(PAGES),
            name=st.booleans(),
            active=st.none() | st.booleans(),
        )
        def update(self, data, page, name, active):
            uid = data.draw(st.sampled_from(self.uids))
            name = name or (page is None and active is None)  # an update changes something

            def action(session):
                before = core.get_event(session, ref=uid).page_context
                fields = {"page_context": page, "name": f"R{self.writes}" if name else None, "is_active": active}
                changes = EventUpdate(**{key: value for key, value in fields.items() if value is not None})
                event = core.update_event(session, ref=uid, changes=changes, actor="m", via="cli", allow_overlap=True)
                return {before, event.page_context}

            self._write(action)

        @precondition(lambda self: self.uids)
        @rule(data=st.data())
        def delete(self, data):
            uid = data.draw(st.sampled_from(self.uids))
            self.uids.remove(uid)
            self._write(lambda session: {core.delete_event(session, ref=uid, actor="m", via="cli").page_context})

        @precondition(lambda self: self.pending)
        @rule(data=st.data(), again=st.booleans())
        def deliver(self, data, again):
            """A notification arrives (any of those pending: late, out of order); maybe again later."""
            index = data.draw(st.integers(0, len(self.pending) - 1))
            write, pages, version = self.pending[index] if again else self.pending.pop(index)

            async def notify() -> None:
                self.service.invalidate(pages, "notify", version=version)

            self.loop.run_until_complete(notify())
            for page in pages:
                self.unseen[page].discard(write)

        @precondition(lambda self: self.pending)
        @rule(data=st.data())
        def lose(self, data):
            """A notification that never arrives."""
            self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))

        @rule()
        def poll(self):
            self.loop.run_until_complete(self.service.refresh())
            if not self.down:  # a poll that failed took nothing as seen
                for page in PAGES:
                    self.unseen[page].clear()

        @precondition(lambda self: self.now < self.t0 + HORIZON - 120)
        @rule(seconds=st.sampled_from([0.5, 1, 7, 30, 99, 120]))
        def step(self, seconds):
            self.now += seconds

        @precondition(lambda self: not self.down)
        @rule()
        def outage(self):
            def unreachable(*_args):
                raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))

            self.service.loader.read = self.service.feed.read_changes = unreachable
            self.down = True
            self.loop.run_until_complete(self.service.refresh())  # the poller finds it out
            assert self.service.failing

        @precondition(lambda self: self.down)
        @rule()
        def recover(self):
            self.service.loader.read, self.service.feed.read_changes = self.real_reads
            self.down = False
            self.poll()  # the poller finds the database back, and takes every write since as seen
            assert not self.service.failing

        @invariant()
        def seen_pages_answer_as_the_database(self):
            at = datetime.fromtimestamp(self.now, UTC)
            for page in PAGES:
                status, headers, body = self.loop.run_until_complete(self.service.respond(page.encode(), None))
                if self.down:
                    last = self.service.last_success
                    if last is None or self.now - last > 300:  # the grace is over
                        assert status == 503, (page, status)
                    if status == 503:
                        continue
                    assert status == 409 or (b"x-eventctl-stale", b"true") in headers
                if self.unseen[page]:
                    continue  # a write not yet seen: it may lag
                assert _answered(status, body) == _reference(engine, page, at), (page, self.now - self.t0)

        def teardown(self) -> None:
            self.loop.run_until_complete(self.service.stop())
            self.loop.close()

    try:
        run_state_machine_as_test(
            CacheModel,
            settings=settings(
                max_examples=20, stateful_step_count=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )  # fmt: skip
    finally:
        engine.dispose()
