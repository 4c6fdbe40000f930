"""The /current cache (SPEC §4): per page, bounded, versioned by the database, pushed freshness, several instances."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from webtools import API, auth, cur, make_app, post, service_of, settle, wait_for, wait_listening

from conftest import _empty_tables, make_cli


def _held(service) -> dict[str, bytes]:
    """The pages held (least recently used first) and their records."""
    return {key.decode(): record for key, record in service.cache.pages.items()}


def test_a_write_drops_only_the_pages_it_touched(db_url):
    with TestClient(make_app(db_url, poll_interval=0.05)) as client:
        service = service_of(client)
        settle(client)  # no start-up resync left to reload every held page later
        for page in ("/a", "/b", "/c"):
            assert cur(client, page).json() is None
        held = _held(service)
        assert set(held) == {"/a", "/b", "/c"}
        assert make_cli(db_url)("create", "--name", "A", "--page", "/a").exit_code == 0
        seen = wait_for(lambda: (cur(client, "/a").json() or {}).get("name") == "A")
        assert seen is not None
        print(f"CLI write seen after {seen * 1000:.0f} ms ({service.engine.dialect.name})")
        # the other pages were never dropped: same objects, no reload
        now = _held(service)
        assert now["/b"] is held["/b"] and now["/c"] is held["/c"]
        assert now["/a"] is not held["/a"]


def test_a_moved_event_leaves_its_old_page_at_once(db_url):
    token = make_cli(db_url)("token", "create", "mover").stdout.strip()
    with TestClient(make_app(db_url, poll_interval=3600)) as client:  # no help from the poller
        ev = post(client, token, {"name": "M", "page_context": "/old"}).json()
        assert cur(client, "/old").json()["uid"] == ev["uid"]
        assert cur(client, "/new").json() is None
        r = client.put(f"{API}{ev['uid']}", json={"page_context": "/new"}, headers=auth(token))
        assert r.status_code == 200
        assert cur(client, "/old").json() is None
        assert cur(client, "/new").json()["uid"] == ev["uid"]


def test_a_move_by_the_cli_leaves_both_pages_fresh(db_url):
    cli = make_cli(db_url)
    r = cli("create", "--name", "M", "--page", "/from", "--json")
    uid = json.loads(r.stdout)["uid"]
    with TestClient(make_app(db_url, poll_interval=0.05)) as client:
        service = service_of(client)
        if service.listen:
            wait_listening(service)
        assert cur(client, "/from").json()["uid"] == uid
        assert cur(client, "/to").json() is None
        assert cli("update", uid, "--page", "/to").exit_code == 0
        assert wait_for(lambda: cur(client, "/from").json() is None) is not None
        assert cur(client, "/to").json()["uid"] == uid


def test_the_cache_is_bounded(db_url):
    cli = make_cli(db_url)
    for i in range(3):
        assert cli("create", "--name", f"E{i}", "--page", f"/p/{i}").exit_code == 0
    app = make_app(db_url, cache_pages=5)
    bounded = app.fastapi.state.current
    with TestClient(app) as client:
        settle(client)  # the start-up poll drops pages loaded while it ran
        for i in range(40):
            assert cur(client, f"/p/{i}").status_code == 200
            assert len(bounded.cache) <= 5
        assert list(_held(bounded)) == [f"/p/{i}" for i in range(35, 40)]  # the most recent
        assert cur(client, "/p/0").json()["name"] == "E0"  # evicted, loaded again


def test_the_first_request_loads_only_its_page(db_url):
    cli = make_cli(db_url)
    for i in range(5):
        assert cli("create", "--name", f"E{i}", "--page", f"/s/{i}").exit_code == 0
    with TestClient(make_app(db_url)) as client:
        settle(client)  # the start-up poll drops pages loaded while it ran
        assert cur(client, "/s/3").json()["name"] == "E3"
        assert set(_held(service_of(client))) == {"/s/3"}


def test_the_page_query_uses_the_index(engine):
    """A miss is one query on ix_events_current (EXPLAIN), whatever the size of the table."""
    from datetime import UTC, datetime

    from eventctl.db import read_session
    from eventctl.events import load_page

    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    with read_session(engine) as session:
        load_page(session, page="/x", at=datetime.now(UTC))
    sa.event.remove(engine, "before_cursor_execute", capture)
    queries = [(s, p) for s, p in statements if "FROM events" in s]
    assert len(queries) == 1
    statement, parameters = queries[0]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table would be scanned anyway
            plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    text = "\n".join(str(row) for row in plan)
    print(text)
    assert "ix_events_current" in text, text
    assert "Seq Scan" not in text and "SCAN events" not in text, text


@pytest.mark.postgres
def test_listen_killed_polling_keeps_fresh_then_listening_resumes(pg_migrated_url, monkeypatch):
    from eventctl.web.current import listener

    _empty_tables(pg_migrated_url)
    cli = make_cli(pg_migrated_url)
    monkeypatch.setattr(listener, "LISTEN_BACKOFF", (3600.0, 3600.0))  # reconnects when the test says
    with TestClient(make_app(pg_migrated_url, poll_interval=0.1)) as client:
        service = service_of(client)
        wait_listening(service)
        assert cur(client, "/k").json() is None
        admin = sa.create_engine(pg_migrated_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            pid = service.feed.listener.pid
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        admin.dispose()
        assert wait_for(lambda: not service.listening) is not None
        assert cli("create", "--name", "while polling", "--page", "/k").exit_code == 0
        seen = wait_for(lambda: (cur(client, "/k").json() or {}).get("name") == "while polling")
        assert seen is not None and not service.listening  # only polling could have helped
        print(f"seen by polling after {seen * 1000:.0f} ms")
        service.feed.listener.retry()
        wait_listening(service, connects=2)
        assert cli("create", "--name", "pushed", "--page", "/k2").exit_code == 0
        seen = wait_for(lambda: (cur(client, "/k2").json() or {}).get("name") == "pushed")
        assert seen is not None
        print(f"seen by LISTEN after {seen * 1000:.0f} ms")


@pytest.mark.postgres
def test_two_instances_see_a_cli_write(pg_migrated_url):
    _empty_tables(pg_migrated_url)
    cli = make_cli(pg_migrated_url)
    # a long poll interval: what arrives within the bound was pushed
    with (
        TestClient(make_app(pg_migrated_url, poll_interval=30)) as one,
        TestClient(make_app(pg_migrated_url, poll_interval=30)) as two,
    ):
        for client in (one, two):
            wait_listening(service_of(client))
            assert cur(client, "/both").json() is None
        latencies = []
        for i in range(5):
            assert cli("create", "--name", f"W{i}", "--page", "/both", "--allow-overlap").exit_code == 0
            for client in (one, two):
                seen = wait_for(lambda c=client, n=i: len(_names(c)) == n + 1 or _conflict(c, n + 1))
                assert seen is not None
                latencies.append(seen)
        print("two instances, CLI write to visible (ms):", [round(x * 1000) for x in latencies])


def _names(client) -> list[str]:
    body = cur(client, "/both").json()
    return [body["name"]] if isinstance(body, dict) and "name" in body else []


def _conflict(client, n: int) -> bool:
    r = cur(client, "/both")
    return r.status_code == 409 and len(r.json()["conflicting_uids"]) == n


@pytest.mark.postgres
def test_stop_closes_the_listen_connection(pg_migrated_url):
    _empty_tables(pg_migrated_url)
    app = make_app(pg_migrated_url)
    with TestClient(app) as client:
        service = service_of(client)
        wait_listening(service)
        pid = service.feed.listener.pid
    assert pid is not None and not service.feed.listener.alive and not service.listening  # stop() joined it
    # the server forgets a closed session shortly after the client closed it: ask until it has
    admin = sa.create_engine(pg_migrated_url, isolation_level="AUTOCOMMIT")
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
    try:
        with admin.connect() as conn:
            gone = wait_for(lambda: conn.execute(query, {"p": pid}).scalar() == 0, 10)
    finally:
        admin.dispose()
    assert gone is not None, "the LISTEN connection outlived stop()"


def test_a_page_holds_only_its_horizon_and_says_503_past_it(db_url):
    """A held page keeps the events live now or starting within WAIT_AGE + stale_grace;
    during an outage its windows are re-applied against the clock up to that horizon, and
    past it the answer is 503 (a later campaign was never loaded), not a guess."""
    from datetime import UTC, datetime

    from eventctl.db import make_engine
    from eventctl.web.current import CurrentService
    from eventctl.web.current.freshness import WAIT_AGE

    t0 = time.time()
    iso = lambda s: datetime.fromtimestamp(t0 + s, UTC).isoformat()  # noqa: E731
    cli = make_cli(db_url)
    grace = 120.0
    horizon = WAIT_AGE + grace  # 240 s
    a = cli("create", "--json", "--name", "A", "--page", "/h", "--start", iso(-3600), "--end", iso(100)).json()
    b = cli("create", "--json", "--name", "B", "--page", "/h", "--start", iso(150), "--end", iso(170)).json()
    c = cli("create", "--json", "--name", "C", "--page", "/h", "--start", iso(horizon + 20)).json()
    engine = make_engine(db_url)
    now = [t0]
    service = CurrentService(
        engine, cache_ttl=30, stale_grace=grace, poll_interval=3600, listen=False, clock=lambda: now[0], max_pages=10
    )

    async def answer(at: float) -> tuple[int, bytes]:
        now[0] = t0 + at
        status, _headers, body = await service.respond(b"/h", None)
        return status, body

    async def scenario() -> list[tuple[int, bytes]]:
        await _started(service)
        seen = [await answer(0)]
        held = {e.uid for e in service.snapshot["/h"]}
        assert held == {a["uid"], b["uid"]}, "C starts past the horizon: not held"
        service.freshness.failing, service.freshness.last_success = (
            True,
            t0 + 100,
        )  # an outage; the last good call at t0+100
        for at in (120, 160, 175, horizon + 1):
            seen.append(await answer(at))
        await service.stop()
        return seen

    seen = _run(engine, scenario)
    (s0, b0), (s1, b1), (s2, b2), (s3, b3), (s4, _b4) = seen
    assert s0 == 200 and json.loads(b0)["name"] == "A"
    assert (s1, b1) == (200, b"null")  # A ended during the outage
    assert s2 == 200 and json.loads(b2)["name"] == "B"  # B started during the outage
    assert (s3, b3) == (200, b"null")  # B ended
    assert s4 == 503  # within the grace, but past what was loaded: C may be live
    assert c["uid"] not in {e.uid for e in service.snapshot.get("/h", [])}


def test_stop_ends_a_poll_loop_that_swallowed_its_cancel(db_url):
    """Python 3.11's asyncio.wait_for loses a cancel that lands as its future completes (the
    listener waking the poller as it stops did exactly that): stop() hung for ever. It now
    cancels until the task has ended, and the poll loop also checks a stop flag."""
    from eventctl.db import make_engine
    from eventctl.web.current import CurrentService

    engine = make_engine(db_url)
    service = CurrentService(engine, cache_ttl=1, stale_grace=1, poll_interval=0.01, listen=False, max_pages=10)
    swallowed = []
    real_refresh = service.feed.poll

    async def refresh_losing_one_cancel() -> None:
        try:
            await real_refresh()
            await asyncio.sleep(1)  # where stop()'s cancel lands
        except asyncio.CancelledError:
            if not swallowed:
                swallowed.append(True)
                asyncio.current_task().uncancel()  # as wait_for did: the cancel is gone
                return
            raise

    service.feed.poll = refresh_losing_one_cancel

    async def scenario() -> float:
        service.start()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.wait_for(service.stop(), 5)
        return time.monotonic() - started

    took = _run(engine, scenario)
    assert took < 5


def _run(engine, scenario):
    """Run ``scenario()`` in a fresh event loop; the engine is disposed whatever happens."""
    try:
        return asyncio.run(scenario())
    finally:
        engine.dispose()


def _spy_reads(service) -> list[list[str]]:
    """Every batch of pages the service reads from the database, in order."""
    reads: list[list[str]] = []
    real_read = service.loader.read
    service.loader.read = lambda routes, now: reads.append(list(routes)) or real_read(routes, now)
    return reads


async def _started(service) -> None:
    """Start the poller and wait until its start-up poll (a resync) is applied: it drops a page
    loaded while it ran (that page may have been read before the counter it took as seen)."""
    service.start()
    await service.refresh()  # after the start-up poll (they take turns): its resync is applied


def _direct_service(db_url, **overrides):
    from eventctl.db import make_engine
    from eventctl.web.current import CurrentService

    engine = make_engine(db_url)
    settings = {"cache_ttl": 30, "stale_grace": 300, "poll_interval": 3600, "listen": False, "max_pages": 100}
    settings.update(overrides)
    return engine, CurrentService(engine, **settings)


def test_misses_of_many_pages_share_queries(db_url):
    """A cold cache under load: misses queued together are read by one query (a batch), not one each."""
    from eventctl.web.current.loader import LOAD_BATCH

    cli = make_cli(db_url)
    for i in range(3):
        assert cli("create", "--name", f"E{i}", "--page", f"/m/{i}").exit_code == 0
    engine, service = _direct_service(db_url)
    reads = _spy_reads(service)
    pages = [f"/m/{i}" for i in range(LOAD_BATCH + 36)]

    async def scenario():
        await _started(service)  # its resync would read again what is held by then
        answers = await asyncio.gather(*(service.respond(p.encode(), None) for p in pages))
        await service.stop()
        return answers

    answers = _run(engine, scenario)
    assert [json.loads(body)["name"] if body != b"null" else None for _s, _h, body in answers] == [
        "E0", "E1", "E2", *[None] * (len(pages) - 3)
    ]  # fmt: skip
    assert sorted(r for batch in reads for r in batch) == sorted(pages)  # each page read once
    batches = [batch for batch in reads if batch]  # the poller's start-up resync reads no page
    assert max(len(batch) for batch in batches) == LOAD_BATCH and len(batches) == 2, [len(b) for b in reads]


def test_a_failed_batch_fails_its_waiters_and_the_next_request_loads_again(db_url):
    assert make_cli(db_url)("create", "--name", "E", "--page", "/f").exit_code == 0
    engine, service = _direct_service(db_url)
    real_read = service.loader.read
    failures = [True]

    def flaky(routes, now):
        if failures and "/f" in routes:  # a page load, not the poller's start-up resync
            failures.pop()
            raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))
        return real_read(routes, now)

    service.loader.read = flaky

    async def scenario():
        first = await asyncio.gather(*(service.respond(b"/f", None) for _ in range(3)))
        service.freshness.failing = False  # the poller would find the database back
        again = await service.respond(b"/f", None)
        await service.stop()
        return first, again

    first, again = _run(engine, scenario)
    assert [status for status, _h, _b in first] == [503] * 3  # nothing held yet: 503, not 500
    assert again[0] == 200 and json.loads(again[2])["name"] == "E"
    assert service.loader.idle


@pytest.mark.parametrize("deflated", [False, True])
def test_a_held_page_is_packed_and_unpacks_exactly(db_url, monkeypatch, deflated):
    """A page is held as one packed record: with few pages held its body as it is (nothing to
    inflate per request), past PLAIN_PAGES deflated, smaller than the answer itself (~0.5 KB a
    page with its key, README: 100,000 pages fit a worker). Unpacked, either gives back the very
    events (times to the microsecond)."""
    from eventctl.web.current import service

    if deflated:
        monkeypatch.setattr(service, "PLAIN_PAGES", 0)
    token = make_cli(db_url)("token", "create", "t").stdout.strip()
    with TestClient(make_app(db_url)) as client:
        settle(client)  # the start-up poll drops pages loaded while it ran
        filters = {"language": ["Telugu"], "media_type": ["audio"]}
        r = post(client, token, {"name": "Telugu audio week", "page_context": "/pk", "filters": filters,
                                 "start_date": "2000-02-29T12:34:56.789012Z",
                                 "end_date": "9999-12-31T23:59:59.999999Z"})  # fmt: skip
        assert r.status_code == 201, r.text
        ev = r.json()
        r = cur(client, "/pk")
        assert r.json()["uid"] == ev["uid"]
        assert cur(client, "/pk").content == r.content  # and again, from the record (the fast path)
        service = service_of(client)
        record = _held(service)["/pk"]
        if deflated:
            assert len(record) < len(r.content), (len(record), len(r.content))
        else:
            assert r.content in record
        (held,) = service.snapshot["/pk"]
        assert held.uid == ev["uid"] and held.body == r.content
        assert held.end_date is not None and held.end_date.isoformat() == "9999-12-31T23:59:59.999999+00:00"
        assert held.start_date is not None and held.start_date.isoformat().replace("+00:00", "Z") == ev["start_date"]


def test_a_header_as_sent_and_its_normal_form_answer_alike_and_are_dropped_together(db_url):
    from eventctl.web.current.keys import MAX_ALIAS_BYTES, MAX_ALIASES

    token = make_cli(db_url)("token", "create", "t").stdout.strip()
    with TestClient(make_app(db_url)) as client:
        settle(client)  # the start-up poll drops pages loaded while it ran
        assert cur(client, "/al").json() is None
        for variant in ("/al/", "//al", "/al?x=1", "/%61l"):
            assert cur(client, variant).json() is None
        ev = post(client, token, {"name": "A", "page_context": "/al"}).json()
        for variant in ("/al", "/al/", "//al", "/al?x=1", "/%61l"):
            assert cur(client, variant).json()["uid"] == ev["uid"], variant
        service = service_of(client)
        assert set(_held(service)) == {"/al"}  # one page held, whatever the spelling

        async def spray():
            for i in range(MAX_ALIASES + 200):
                await service.respond(f"/x/{i}%zz".encode(), None)  # malformed, each different

        client.portal.call(spray)
        assert len(service.keys.aliases) <= MAX_ALIASES
        long = "/" + "a" * 300  # too long a page key, and longer than any key held: answered, not remembered
        assert cur(client, long).status_code == 400 and cur(client, long + "/").status_code == 400
        assert len(cur(client, "/x" + "%zz" * 2000).content) < 600
        assert all(raw is None or len(raw) <= MAX_ALIAS_BYTES for raw in service.keys.aliases)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.datetimes(timezones=st.just(UTC)),
            st.none() | st.datetimes(timezones=st.just(UTC)),
            st.booleans(),
            st.booleans(),
            st.text(max_size=300),
        ),
        max_size=5,
    )
)
def test_packed_events_unpack_to_the_same_events(events):
    """Any windows (year 1 to 9999, to the microsecond, open ends), flags and bodies survive packing."""
    from eventctl.web.current.record import Deflater, HeldEvent, make_record, pack_events, unpack_events

    deflater = Deflater(datetime(2026, 11, 26, tzinfo=UTC))
    held = [
        HeldEvent(f"uid-{i}", active, default, start, end, json.dumps({"uid": f"uid-{i}", "name": name}).encode())
        for i, (start, end, active, default, name) in enumerate(events)
    ]
    for deflate in (True, False):
        assert unpack_events(make_record(0.0, 0, pack_events(held, deflater, deflate)), deflater) == held


def test_an_old_page_is_reloaded_in_the_background_and_a_very_old_one_first(db_url):
    """Rows changed by hand (no notification) are seen once a page is MAX_ENTRY_AGE old: the
    request that finds it so is answered from memory at once and the page reloads behind it;
    a page not asked for WAIT_AGE is reloaded before the answer."""
    from eventctl.web.current.freshness import MAX_ENTRY_AGE, WAIT_AGE

    assert make_cli(db_url)("create", "--name", "before", "--page", "/o").exit_code == 0
    t0 = time.time()
    now = [t0]
    engine, service = _direct_service(db_url, clock=lambda: now[0])
    reads = _spy_reads(service)

    def rename(name: str) -> None:  # by hand: no counter, no NOTIFY
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE events SET name = :n WHERE page_context = '/o'"), {"n": name})

    async def name_at(at: float) -> str:
        now[0] = t0 + at
        _status, _headers, body = await service.respond(b"/o", None)
        return json.loads(body)["name"]

    async def scenario() -> list[str]:
        await _started(service)
        seen = [await name_at(0)]
        rename("by hand")
        seen.append(await name_at(MAX_ENTRY_AGE - 1))  # fresh: from memory, no load
        # reads of this page only: the poller's start-up resync reads the held pages (none, or
        # this one) in its own thread, whenever its connection is ready
        loads = sum("/o" in batch for batch in reads)
        seen.append(await name_at(MAX_ENTRY_AGE + 1))  # old: from memory, a reload started
        for _ in range(1000):
            if service.loader.idle:
                break
            await asyncio.sleep(0.01)
        assert service.loader.idle, "the background reload never ended"
        seen.append(await name_at(MAX_ENTRY_AGE + 2))  # the reload landed
        seen.append(str(sum("/o" in batch for batch in reads) - loads))
        rename("much later")
        seen.append(await name_at(MAX_ENTRY_AGE + 1 + WAIT_AGE + 1))  # very old: reloaded first
        await service.stop()
        return seen

    seen = _run(engine, scenario)
    assert seen == ["before", "before", "before", "by hand", "1", "much later"]


def test_a_write_during_a_page_load_is_not_lost(db_url):
    """The load started before the write: its waiters may get the old page, but it is not kept,
    and a request after the write's invalidation waits for a new load, not that one."""
    import threading

    engine, service = _direct_service(db_url)
    reading, release = threading.Event(), threading.Event()
    real_read = service.loader.read

    def slow_read(routes, now):
        found = real_read(routes, now)
        if "/w" in routes and not release.is_set():
            reading.set()
            release.wait(10)  # the write lands while this load is in flight
        return found

    service.loader.read = slow_read

    async def scenario():
        from anyio import to_thread

        before = asyncio.create_task(service.respond(b"/w", None))
        while not reading.is_set():
            await asyncio.sleep(0.005)
        assert make_cli(db_url)("create", "--name", "NEW", "--page", "/w").exit_code == 0
        await to_thread.run_sync(service.invalidate, ["/w"])  # as the route that wrote would, in its thread
        after = asyncio.create_task(service.respond(b"/w", None))
        await asyncio.sleep(0.05)
        release.set()
        answers = [await before, await after, await service.respond(b"/w", None)]
        await service.stop()
        return [json.loads(body)["name"] if body != b"null" else None for _s, _h, body in answers]

    old, after, held = _run(engine, scenario)
    assert old is None  # asked before the write: the old page is a right answer
    assert after == "NEW" and held == "NEW"


def test_a_miss_queued_as_every_loader_stops_is_still_loaded(db_url):
    """Loader tasks count themselves out as they see the queue empty, not one loop step later
    (a miss queued in between had no loader and its request waited for ever)."""
    from anyio import to_thread

    from eventctl.web.current.loader import LOAD_BATCH, LOAD_THREADS

    engine, service = _direct_service(db_url)

    async def scenario():
        service.start()
        gate = asyncio.get_running_loop().create_future()
        real = to_thread.run_sync

        async def gated(func, *args, **kwargs):  # every thread's result is reported in one loop step
            await gate
            return func(*args)

        to_thread.run_sync = gated
        try:
            burst = [
                asyncio.create_task(service.respond(f"/b{i}".encode(), None)) for i in range(LOAD_THREADS * LOAD_BATCH)
            ]
            await asyncio.sleep(0.01)
            assert service.loader.loaders == LOAD_THREADS

            async def late():
                await gate  # its first step runs in the same loop step, after the loaders' last ones
                return await service.respond(b"/late", None)

            late_answer = asyncio.create_task(late())
            await asyncio.sleep(0.01)
            gate.set_result(None)
            await asyncio.gather(*burst)
        finally:
            to_thread.run_sync = real
        status = (await asyncio.wait_for(late_answer, 5))[0]
        await service.stop()
        return status

    assert _run(engine, scenario) == 200


def test_one_unreadable_row_fails_only_its_page(db_url):
    """A row changed by hand into something that is not an event: its page answers 503 (and is
    held as such, not re-read per request); the pages read in the same query are answered."""
    cli = make_cli(db_url)
    assert cli("create", "--name", "GOOD", "--page", "/good").exit_code == 0
    assert cli("create", "--name", "BAD", "--page", "/bad").exit_code == 0
    engine, service = _direct_service(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET filters = '[1]' WHERE page_context = '/bad'"))
    reads = _spy_reads(service)

    async def scenario():
        await _started(service)
        answers = await asyncio.gather(*(service.respond(p, None) for p in (b"/good", b"/bad", b"/other")))
        again = await service.respond(b"/bad", None)
        await service.stop()
        return answers, again

    answers, again = _run(engine, scenario)
    assert [status for status, _h, _b in answers] == [200, 503, 200]
    assert json.loads(answers[0][2])["name"] == "GOOD" and answers[2][2] == b"null"
    assert again[0] == 503 and not service.failing  # the database is fine
    assert sum("/bad" in batch for batch in reads) == 1  # held: not read again per request


def test_a_poller_that_died_is_started_again_by_the_next_request(db_url, caplog):
    engine, service = _direct_service(db_url, poll_interval=0.01)
    real_refresh, broken = service.feed.poll, [True]

    async def refresh_once_broken():
        if broken:
            broken.pop()
            raise RuntimeError("something unforeseen")
        await real_refresh()

    service.feed.poll = refresh_once_broken

    async def scenario():
        service.start()
        for _ in range(200):
            if not service.feed.running:
                break
            await asyncio.sleep(0.01)
        died = not service.feed.running
        assert (await service.respond(b"/p", None))[0] == 200
        restarted = service.feed.running
        await service.stop()
        return died, restarted

    assert _run(engine, scenario) == (True, True)
    assert "the poller stopped (something unforeseen)" in caplog.text


def test_metrics_that_cannot_be_recorded_never_cost_an_answer(db_url, caplog):
    engine, service = _direct_service(db_url, poll_interval=0.0)  # counts handed over on every request
    child = service.metrics.cache_lookups.labels("hit")
    child.inc = lambda amount=1: (_ for _ in ()).throw(OSError("metrics directory gone"))

    async def scenario():
        statuses = [(await service.respond(b"/m", None))[0] for _ in range(5)]
        await service.stop()
        return statuses

    assert _run(engine, scenario) == [200] * 5
    assert caplog.text.count("could not record metrics (metrics directory gone)") == 1


def _write(engine, *, page: str, name: str) -> int:
    """Create an event through the core; the change counter its write set."""
    from eventctl import events as core
    from eventctl.db import write_session
    from eventctl.shapes import EventCreate

    with write_session(engine) as session:
        core.create_event(session, data=EventCreate(name=name, page_context=page), actor="t", via="cli")
        session.flush()
        return int(session.execute(sa.text("SELECT version FROM eventctl_state WHERE id = 1")).scalar() or 0)


@pytest.mark.parametrize("named", [True, False], ids=["named-change", "resync"])
def test_a_load_running_while_its_page_changes_is_answered_but_never_kept(db_url, named):
    """A load reads the counter and its rows, then (a slow thread) lands only after a write to
    its page was taken as seen — named by a poll, or by a resync that reloads what it holds and
    drops the rest. Its waiter gets what it read (it asked before the write); the cache refuses
    the record (older than the change), and the next request loads the write."""
    from anyio import to_thread

    engine, service = _direct_service(db_url)
    read_done, release = threading.Event(), threading.Event()
    real_read = service.loader.read

    def held_read(routes, now):
        found = real_read(routes, now)
        if "/x" in routes and not release.is_set():
            read_done.set()
            assert release.wait(10)  # the write and the poll happen now
        return found

    service.loader.read = held_read

    async def scenario():
        await _started(service)
        assert (await service.respond(b"/held", None))[2] == b"null"  # a page the resync reloads
        before = asyncio.create_task(service.respond(b"/x", None))
        assert await to_thread.run_sync(read_done.wait, 10)
        await to_thread.run_sync(lambda: _write(engine, page="/x", name="W"))
        if not named:
            service.feed.request_resync()  # as a LISTEN reconnect would
        await service.refresh()  # the write taken as seen (SQLite: named by the audit; PostgreSQL: resync)
        release.set()
        first = await before
        after = await service.respond(b"/x", None)
        await service.stop()
        return first, after

    first, after = _run(engine, scenario)
    assert first[2] == b"null"  # read before the write: a right answer for a request made before it
    assert after[0] == 200 and json.loads(after[2])["name"] == "W", after[2]


def test_the_cache_keeps_a_record_only_if_it_is_as_new_as_every_change_it_was_told():
    """The one rule, alone: a page's floor and the global floor; a late or repeated change drops
    nothing newer; per-page floors are forgotten once no load is running."""
    from eventctl.web.current.cache import PageCache
    from eventctl.web.current.record import make_record, stamp_of

    cache = PageCache(max_pages=10)
    rec = lambda stamp: make_record(0.0, stamp, b"")  # noqa: E731
    assert cache.store(b"/a", rec(5)) and stamp_of(cache.get(b"/a")) == 5
    assert cache.invalidate([b"/a"], 3) == 0 and cache.get(b"/a") is not None  # late: read after it
    assert cache.invalidate([b"/a"], 5) == 0  # the very change the record read
    assert cache.invalidate([b"/a"], 6) == 1 and cache.get(b"/a") is None
    assert not cache.store(b"/a", rec(5))  # a load that read before the change, landing after it
    assert cache.store(b"/b", rec(5))  # another page: its own floor
    assert cache.store(b"/a", rec(6))
    assert cache.invalidate_all(7) == 2 and len(cache) == 0
    assert not cache.store(b"/c", rec(6)) and cache.store(b"/c", rec(7))
    cache.invalidate([b"/d"], 9)
    cache.forget_floors()  # no load running: any later load reads 9 or more
    assert cache.store(b"/d", rec(8))  # (only a load begun before the change could read 8)


def test_stop_waits_for_every_load_before_it_returns(db_url):
    """A page load whose thread is still reading when stop() is called: stop() returns only after
    that thread is done, so nothing touches the engine once the lifespan disposes it."""
    engine, service = _direct_service(db_url)
    reading, release = threading.Event(), threading.Event()
    order: list[str] = []
    real_read = service.loader.read

    def held_read(routes, now):
        try:
            reading.set()
            assert release.wait(10)
            return real_read(routes, now)
        finally:
            order.append("load ended")

    service.loader.read = held_read

    async def scenario():
        from anyio import to_thread

        service.start()
        request = asyncio.create_task(service.respond(b"/s", None))
        background = asyncio.create_task(service.respond(b"/bg", None))
        assert await to_thread.run_sync(reading.wait, 10)
        request.cancel()  # the client went away: its load carries on
        stopping = asyncio.create_task(service.stop())
        await asyncio.sleep(0.2)  # a stop() that did not wait would be done by now
        release.set()
        await stopping
        order.append("stop returned")
        background.cancel()
        return engine.pool.checkedout()

    assert _run(engine, scenario) == 0
    assert order[-1] == "stop returned" and "load ended" in order, order


def test_a_poll_thread_late_for_stop_opens_no_connection(db_url):
    """stop() waits for a poll that holds the poll lock; a poll thread that starts only after
    stop() returned (not scheduled for a while) must not connect: the engine is disposed."""
    engine, service = _direct_service(db_url)
    entered, go, finished = threading.Event(), threading.Event(), threading.Event()
    real_read = service.feed.read_changes

    def late_read():
        entered.set()
        go.wait(10)
        try:
            return real_read()
        finally:
            finished.set()

    service.feed.read_changes = late_read
    connects: list[int] = []
    sa.event.listen(engine, "connect", lambda *_a: connects.append(1))

    async def scenario():
        from anyio import to_thread

        service.start()
        assert await to_thread.run_sync(entered.wait, 10)
        await service.stop()

    _run(engine, scenario)  # stopped, and the engine disposed
    go.set()
    assert finished.wait(10)
    assert connects == [], "a poll connected after stop()"


@pytest.mark.postgres
def test_a_listener_gone_silent_is_noticed_and_a_write_seen_within_a_second(pg_migrated_url):
    """The listening backend stopped (SIGSTOP: as a NAT forgetting an idle connection, no reset):
    the connection stays open and silent. The poller sees the counter move with no notification
    to explain it, hands the change over and the listener reconnects; the write is visible
    within a second of its commit."""
    import os
    import signal

    _empty_tables(pg_migrated_url)
    committed: list[float] = []
    with TestClient(make_app(pg_migrated_url, poll_interval=0.1)) as client:
        service = service_of(client)
        settle(client)
        assert cur(client, "/silent").json() is None
        pid = service.feed.listener.pid
        admin = sa.create_engine(pg_migrated_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # the backend runs on this machine: the test may stop it
            assert conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()
        os.kill(pid, signal.SIGSTOP)
        try:

            def stamp(_session) -> None:
                committed.append(time.monotonic())

            sa.event.listen(sa.orm.Session, "after_commit", stamp)
            try:
                assert make_cli(pg_migrated_url)("create", "--name", "S", "--page", "/silent").exit_code == 0
            finally:
                sa.event.remove(sa.orm.Session, "after_commit", stamp)
            seen = wait_for(lambda: (cur(client, "/silent").json() or {}).get("name") == "S")
            assert seen is not None, "the write was never seen"
            took = time.monotonic() - committed[-1]
            print(f"write seen {took * 1000:.0f} ms after its commit with the listener stopped")
            assert took <= 1.0, took
            wait_listening(service, connects=2)  # a new connection, another backend
            assert service.feed.listener.pid != pid
        finally:
            os.kill(pid, signal.SIGCONT)
            admin.dispose()


@pytest.mark.postgres
def test_the_listen_connection_sends_tcp_keepalives(pg_migrated_url, monkeypatch):
    """A connection dropped without a reset (a NAT, a load balancer) is found dead by TCP itself,
    within minutes rather than the system's default two hours before the first probe."""
    import socket

    import psycopg

    from eventctl.web.current.listener import KEEPALIVES

    _empty_tables(pg_migrated_url)
    keepalive: list[tuple[int, int]] = []
    real_connect = psycopg.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        if kwargs.get("autocommit"):  # the listener's own connection (the engine's are not)
            with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
                on = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                keepalive.append((on, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)))
        return conn

    monkeypatch.setattr(psycopg, "connect", connect)
    with TestClient(make_app(pg_migrated_url)) as client:
        wait_listening(service_of(client))
    assert keepalive and all(k == (1, KEEPALIVES["keepalives_idle"]) for k in keepalive), keepalive


def test_the_page_bound_has_one_default():
    """EVENTCTL_CACHE_PAGES's default lives in the settings alone: the service takes it from them."""
    import inspect

    from eventctl.config import Settings
    from eventctl.web.current import CurrentService

    assert inspect.signature(CurrentService).parameters["max_pages"].default is inspect.Parameter.empty
    app = make_app("sqlite:////nonexistent/never-opened.db")
    assert app.fastapi.state.current.cache.max_pages == Settings().cache_pages


@pytest.mark.parametrize("others_first", [False, True])
def test_a_replica_behind_a_told_write_is_never_kept_after_other_loads_end(tmp_path, monkeypatch, others_first):
    """A page written (counter 101, told by NOTIFY) and a replica still at 100: the page's load reads the
    primary, even after other loads ended and the per-page floors were forgotten."""
    import asyncio
    import json

    import sqlalchemy as sa

    from eventctl import events as core
    from eventctl import migrate
    from eventctl.db import make_engine, write_session
    from eventctl.shapes import EventCreate
    from eventctl.web.current import loader as loader_module
    from eventctl.web.current.feed import Change
    from eventctl.web.current.record import stamp_of
    from eventctl.web.current.service import CurrentService

    monkeypatch.setattr(loader_module, "REPLICA_WAIT", 0.1)

    def database(name: str, holds: str, version: int):
        engine = make_engine(f"sqlite:///{tmp_path / name}")
        migrate.upgrade(engine, "head")
        with write_session(engine) as session:
            core.create_event(session, data=EventCreate(name=holds, page_context="/p"), actor="t", via="cli")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE eventctl_state SET version = :v WHERE id = 1"), {"v": version})
        return engine

    primary, replica = database("primary.db", "new", 101), database("replica.db", "old", 100)

    async def run():
        service = CurrentService(
            primary, cache_ttl=5, stale_grace=60, poll_interval=1, max_pages=100, read_engine=replica, listen=False
        )
        service._notified(Change(frozenset({"/p"}), 101))
        if others_first:
            await service.loader.load("/q")  # ends: the loader is idle, the per-page floors forgotten
        await service.loader.load("/p")
        held = service.cache.get(b"/p")
        names = [json.loads(e.body)["name"] for e in service.snapshot["/p"]]
        await service.loader.close()
        return stamp_of(held), names

    try:
        assert asyncio.run(run()) == (101, ["new"])
    finally:
        primary.dispose()
        replica.dispose()
