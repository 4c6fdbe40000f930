"""The loader: pages from the database, stamped with the change counter they were read at.

A page's load reads the counter and then its rows in one transaction (``read_pages``), so
its record says which database state it holds at least. Misses queued together share a
query (``LOAD_BATCH`` pages), at most ``LOAD_THREADS`` at once; concurrent misses of one
page share its load. Each finished load is handed to ``on_loaded`` (the service keeps it
if the cache's rule lets it) before its waiters are answered. ``close`` waits for every
load still running: none touches the engine once it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from eventctl.text import for_terminal
from eventctl.web.current.record import Deflater, HeldEvent, make_record, pack_events

log = logging.getLogger("eventctl.web")
# threads loading pages at once: enough to keep the database busy; each thread of a process
# gets its own malloc arena, and 40 of them (anyio's default) fragmented the worker's memory
LOAD_THREADS = 4
LOAD_BATCH = 64  # pages read by one query when misses queue up (a cold cache under load)
# a replica behind a write the cache was told of: waited for this long, then the load reads the primary
REPLICA_WAIT = 1.0
REPLICA_RECHECK = 0.005  # the replica's counter is read again this often while waiting
REPLICA_RETRY = 5.0  # a replica that could not be read is tried again after this long
COUNTER = sa.text("SELECT version FROM eventctl_state WHERE id = 1")
_LAST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=UTC).timestamp()

Read = Callable[[list[str], float], tuple[int, dict[str, bytes]]]


def read_counter(conn: Any) -> int:
    return int(conn.execute(COUNTER).scalar() or 0)


class ReadSide:
    """Where /current reads: a hot-standby replica, with the primary behind it (SPEC §11); or the
    primary alone. A replica that cannot be read is left alone for REPLICA_RETRY (no connect timeout
    paid on every load or poll meanwhile); the loader and the feed share one."""

    def __init__(self, engine: Engine, primary: Engine | None = None) -> None:
        self.engine, self.primary = engine, primary
        self._down_until = 0.0  # monotonic

    @property
    def replica_usable(self) -> bool:
        return self.primary is not None and time.monotonic() >= self._down_until

    def down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + REPLICA_RETRY
        log.warning(
            "the replica cannot be read (%s); reading the primary for %.0f s",
            str(exc).splitlines()[0][:200],
            REPLICA_RETRY,
        )

    def connect(self) -> Any:
        """A connection to the replica when it is usable and answers, else to the primary."""
        if self.primary is None:
            return self.engine.connect()
        if self.replica_usable:
            try:
                return self.engine.connect()
            except sa.exc.SQLAlchemyError as exc:
                self.down(exc)
        return self.primary.connect()


class Loader:
    def __init__(
        self,
        engine: Engine,
        *,
        horizon: float,
        deflater: Deflater,
        deflate: Callable[[], bool],
        clock: Callable[[], float],
        on_loaded: Callable[[str, bytes], None],
        on_idle: Callable[[], None],
        observe: Callable[[float], None],
        side: ReadSide | None = None,
        wanted: Callable[[list[str]], int] = lambda routes: 0,
        fell_back: Callable[[], None] = lambda: None,
    ) -> None:
        """``side``: where pages are read (a replica, with the primary for a load the replica has not
        replayed up to ``wanted(routes)`` within REPLICA_WAIT, or cannot answer)."""
        self.engine = engine
        self.side = side or ReadSide(engine)
        self.wanted, self.fell_back = wanted, fell_back
        self.horizon = horizon
        self.deflater = deflater
        self.deflate = deflate
        self.clock = clock
        self.on_loaded, self.on_idle, self.observe = on_loaded, on_idle, observe
        self.read: Read = self.read_pages  # in a worker thread; a seam for tests
        self._pending: dict[str, asyncio.Future[bytes]] = {}  # pages asked for, not yet loaded
        self._queue: list[str] = []
        self._reading: dict[str, asyncio.Future[bytes]] = {}  # pages being read now, and their waiters
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loaders = 0  # batch tasks still taking work from the queue
        self._in_flight = 0  # loads between their start and their result handed over
        self._limiter: Any = None  # made in the running loop (anyio)

    @property
    def idle(self) -> bool:
        return self._in_flight == 0 and not self._pending

    def read_pages(self, routes: list[str], now: float) -> tuple[int, dict[str, bytes]]:
        """The counter, then the pages' events live at ``now`` or starting within the horizon, in
        one transaction: packed records stamped with that counter. A page with a row that is not
        an event (changed by hand) is a broken record; its neighbours are fine."""
        from eventctl.db import read_session
        from eventctl.events import load_snapshot

        at = datetime.fromtimestamp(now, UTC)
        # a horizon past the calendar (a grace meant as "for ever") is no horizon
        end = now + self.horizon
        horizon = datetime.fromtimestamp(end, UTC) if end < _LAST_TIMESTAMP else None
        started = time.perf_counter()
        engine = self._caught_up(routes)
        try:
            with read_session(engine) as session:
                stamp = read_counter(session)  # before the rows: they are at least as new as it says
                found = load_snapshot(session, at=at, pages=routes, horizon=horizon)
        except sa.exc.SQLAlchemyError as exc:
            side = self.side
            if side.primary is None or engine is side.primary:
                raise
            side.down(exc)  # the replica failed mid-read (a recovery conflict, a crash): the primary answers
            self.fell_back()
            with read_session(side.primary) as session:
                stamp = read_counter(session)
                found = load_snapshot(session, at=at, pages=routes, horizon=horizon)
        deflate = self.deflate()
        records: dict[str, bytes] = {}
        for route in routes:
            try:
                events = [HeldEvent.of(row) for row in found.get(route, [])]
                packed: bytes | None = pack_events(events, self.deflater, deflate)
            except Exception as exc:  # noqa: BLE001 - one page's bad row: that page answers 503
                log.warning("page %s has a row that is not an event: %s", for_terminal(route), for_terminal(exc))
                packed = None
            records[route] = make_record(now, stamp, packed)
        self.observe(time.perf_counter() - started)
        return stamp, records

    def _caught_up(self, routes: list[str]) -> Engine:
        """The engine to read these pages from: the replica once its counter has reached every change the
        cache was told of for them (never an answer older than a known write kept as fresh), waiting
        at most REPLICA_WAIT; else, or when the replica cannot be read, the primary."""
        side = self.side
        if side.primary is None:
            return side.engine
        if side.replica_usable:
            wanted = self.wanted(routes)
            deadline = time.monotonic() + REPLICA_WAIT
            try:
                with side.engine.connect() as conn:
                    while read_counter(conn) < wanted:
                        conn.rollback()  # a new snapshot for the next look
                        if time.monotonic() >= deadline:
                            break
                        time.sleep(REPLICA_RECHECK)
                    else:
                        return side.engine
            except sa.exc.SQLAlchemyError as exc:
                side.down(exc)
        self.fell_back()
        return side.primary

    async def _run(self, routes: list[str]) -> tuple[int, dict[str, bytes]]:
        import anyio
        from anyio import to_thread

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(LOAD_THREADS)
        # not abandoned on cancel: a cancelled load still ends before its task does (close() joins it)
        return await to_thread.run_sync(self.read, routes, self.clock(), limiter=self._limiter)

    def _begin(self) -> None:
        self._in_flight += 1

    def _end(self) -> None:
        self._in_flight -= 1
        if self.idle:
            self.on_idle()

    async def read_now(self, routes: list[str]) -> dict[str, bytes]:
        """Read these pages at once (a resync), counted as a load; the caller keeps them. In a task
        of its own: a caller cancelled meanwhile leaves it to end, and close() waits for it."""

        async def read() -> dict[str, bytes]:
            self._begin()
            try:
                return (await self._run(routes))[1]
            finally:
                self._end()

        return await asyncio.shield(self._spawn(read()))

    async def load(self, route: str) -> bytes:
        """The page's record; a cancelled request does not cancel the load others share."""
        return await asyncio.shield(self.request(route))

    def request(self, route: str) -> asyncio.Future[bytes]:
        future = self._pending.get(route)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[route] = loop.create_future()
            future.add_done_callback(_retrieve)
            self._queue.append(route)
            if self.loaders < LOAD_THREADS:
                self.loaders += 1  # counted down by the task itself as it stops taking work
                self._spawn(self._load_batches())
        return future

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def detach(self, routes: list[str] | None) -> None:
        """These pages (None: any) were written: requests from now on wait for a new load, not one
        already running (its waiters, which came before the write, still get it)."""
        for route in list(self._reading) if routes is None else routes:
            future = self._pending.get(route)
            if future is not None and self._reading.get(route) is future:  # a queued one reads later: fine
                del self._pending[route]

    async def _load_batches(self) -> None:
        try:
            while self._queue:
                routes, self._queue = self._queue[:LOAD_BATCH], self._queue[LOAD_BATCH:]
                await self._load_batch({route: self._pending[route] for route in routes})
        finally:
            self.loaders -= 1  # in the same step as the empty queue was seen: no miss is left unserved

    async def _load_batch(self, waiting: dict[str, asyncio.Future[bytes]]) -> None:
        self._begin()
        self._reading.update(waiting)
        try:
            try:
                _stamp, records = await self._run(list(waiting))
            except BaseException as exc:
                for route, future in waiting.items():
                    self._settle(route, future, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            for route, future in waiting.items():
                self.on_loaded(route, records[route])  # kept or refused by the cache, before any waiter runs
                self._settle(route, future, records[route])
        finally:
            for route, future in waiting.items():
                if self._reading.get(route) is future:
                    del self._reading[route]
            self._end()

    def _settle(self, route: str, future: asyncio.Future[bytes], outcome: bytes | BaseException) -> None:
        if self._pending.get(route) is future:  # not when a write detached it (a newer load has the page)
            del self._pending[route]
        if future.done():
            return
        if isinstance(outcome, bytes):
            future.set_result(outcome)
        elif isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(outcome)

    async def close(self) -> None:
        """Wait for every load still running (their threads included), then fail what is left."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))  # not cancelled: a thread cannot be, and its task ends with it
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._queue.clear()
        self._limiter = None  # anyio's limiter belongs to one loop: a service started again makes another


def _retrieve(future: asyncio.Future[bytes]) -> None:
    """A load's failure is handed to its waiters; with none left (they went away), it is of no interest."""
    if not future.cancelled():
        future.exception()
