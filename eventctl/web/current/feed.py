"""The change feed: what was written, and the change counter that reflects it.

It alone owns the feed's state (the counter last read, the audit position, whether the
next poll must resync, the LISTEN connection) and hands ``Change``s to the service:

* PostgreSQL: a LISTEN connection (a thread; TCP keepalives) reads each NOTIFY, then the
  counter, and hands over its pages with that counter. The poller reads the counter every
  ``poll_interval``; while nobody listens, a move is a change it cannot name (``pages``
  None: the service reloads or drops every page). A move that no notification explains
  within ``EXPLAIN_BOUND`` means the listener has gone silent (a backend stopped, a NAT
  that forgot the connection): the poller hands the change over and the listener reconnects.
* SQLite: the poller reads the counter and the audit entries since the last one seen, in
  one snapshot (SQLite commits one writer at a time, so ids are in commit order).

Every (re)connection, and the start, resynchronize: notifications sent while nobody
listened are lost. ``listen_url`` is where LISTEN connects (the engine's URL unless given:
a pooler in transaction mode cannot carry LISTEN).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL, Engine

from eventctl.web.current.listener import Listener
from eventctl.web.current.loader import ReadSide, read_counter

log = logging.getLogger("eventctl.web")
AUDIT_BATCH = 5_000  # SQLite: more new audit entries than this in one poll: a change it cannot name
EXPLAIN_BOUND = 0.25  # a counter move no notification explains after this long: the listener is silent


@dataclass(frozen=True, slots=True)
class Change:
    """Pages written (None: any page may have been) by writes up to change counter ``version``."""

    pages: frozenset[str] | None
    version: int


class ChangeFeed:
    def __init__(
        self,
        engine: Engine,
        *,
        poll_interval: float,
        listen: bool,
        apply: Callable[[Change], Awaitable[None]],
        notified: Callable[[Change], None],
        succeeded: Callable[[], None],
        failed: Callable[[BaseException], None],
        listen_url: URL | None = None,
        side: ReadSide | None = None,
    ) -> None:
        self.engine = engine
        self.side = side or ReadSide(engine)  # the counter is read where pages are (a replica, or the primary)
        self.poll_interval = poll_interval
        self.postgres = engine.dialect.name == "postgresql"
        self.listen = listen and self.postgres
        self._apply, self._notified, self._succeeded, self._failed = apply, notified, succeeded, failed
        self.version: int | None = None  # the counter last read by a poll
        self._audit_id: int | None = None
        self._state = threading.Lock()  # guards _resync: set by the listener, the loop, the poller
        self._resync = True
        self._polling = threading.Lock()  # held by the poll thread while it reads
        self.heard = 0  # the highest counter read after a notification (written by the listener thread)
        self._explained = 0  # the highest counter a poll handed over itself (poll thread only)
        self._suspect: tuple[int, float] | None = None  # a move not yet explained: (counter, when seen)
        self.listener = Listener(
            engine,
            listen_url or engine.url,
            heard=self._heard_note,
            connected=self.request_resync,
            lost=self.request_resync,
        )
        self.listener.poll_hint = poll_interval
        self.read_changes = self._read_changes  # in a worker thread; a seam for tests
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.running = False  # the poll loop runs (read per request by the fast path: a plain attribute)
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self.stopping = False

    # ------------------------------------------------------------ shared state

    def request_resync(self) -> None:
        """The next poll takes any change as one it cannot name (thread-safe)."""
        with self._state:
            self._resync = True
        self.call_in_loop(self.wake)

    def _take_resync(self) -> bool:
        with self._state:
            resync, self._resync = self._resync, False
            return resync

    @property
    def resync_pending(self) -> bool:
        return self._resync

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody to tell
            pass

    # ------------------------------------------------------------ polling

    async def poll(self) -> None:
        """One poll, its change applied (for tests: "one whole poll")."""
        from anyio import to_thread

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                change = await to_thread.run_sync(self.read_changes)
                if change is not None:
                    try:
                        await self._apply(change)
                    except Exception:
                        self.request_resync()  # not applied: the next poll takes it as unnamed
                        raise
            except Exception as exc:  # noqa: BLE001 - an outage: keep the last good data
                self._failed(exc)
                return
            self._succeeded()

    def _read_changes(self) -> Change | None:
        """In a worker thread: read the counter (SQLite: and the pages written since)."""
        with self._polling:
            if self.stopping:  # cancelled by stop() before this thread got here: the engine may be gone
                return None
            resync = self._take_resync()
            try:
                with self.side.connect() as conn, conn.begin():  # one snapshot: counter and audit agree
                    version = read_counter(conn)
                    pages, audit_id = None, self._audit_id
                    if not self.postgres:
                        if audit_id is None or resync:
                            audit_id = _last_audit_id(conn)
                        elif version != self.version:
                            pages, audit_id = self._pages_written(conn, version)
            except BaseException:
                if resync:
                    self.request_resync()
                raise
            previous, self.version, self._audit_id = self.version, version, audit_id
            if resync or previous is None:
                self._explained = version
                return Change(None, version)
            if self.postgres and self.listener.listening:
                return self._unexplained(version)
            if version == previous:
                return None
            self._explained = version  # the poll hands this change over itself
            return Change(None if pages is None else frozenset(pages), version)

    def _unexplained(self, version: int) -> Change | None:
        """Listening: a move no notification explains within EXPLAIN_BOUND means a silent listener."""
        now, explained = time.monotonic(), max(self.heard, self._explained)
        if self._suspect is not None and explained >= self._suspect[0]:
            self._suspect = None
        if version <= explained:
            return None
        if self._suspect is None:
            self._suspect = (version, now)
            return None
        if now - self._suspect[1] < EXPLAIN_BOUND:
            return None
        log.warning("no notification for a change seen %.1f s ago: reconnecting LISTEN", now - self._suspect[1])
        self._suspect, self._explained = None, version
        self.listener.reconnect()
        return Change(None, version)

    def _pages_written(self, conn: Any, version: int) -> tuple[set[str] | None, int]:
        """SQLite: the pages of the audit entries after the last one seen (None: cannot tell), and the last id."""
        import sqlalchemy as sa

        rows = conn.execute(
            sa.text("SELECT id, page_context, before, after FROM eventctl_audit WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": self._audit_id, "n": AUDIT_BATCH + 1},
        ).all()
        writes = version - (self.version or 0)
        # every write adds one audit entry or more in its transaction: fewer means some were pruned
        if len(rows) > AUDIT_BATCH or len(rows) < writes:
            return None, _last_audit_id(conn)
        pages: set[str] = set()
        for _id, page, before, after in rows:
            pages.add(page)
            for side in (before, after):
                if isinstance(side, str):
                    side = json.loads(side)
                if isinstance(side, dict) and isinstance(side.get("page_context"), str):
                    pages.add(side["page_context"])
        return pages, rows[-1][0] if rows else (self._audit_id or 0)

    async def _poll_loop(self) -> None:
        assert self._wake is not None
        while not self.stopping:
            await self.poll()
            # a move to explain: look again soon rather than a whole interval later
            wait = self.poll_interval if self._suspect is None else min(self.poll_interval, EXPLAIN_BOUND)
            try:  # not asyncio.wait_for: in 3.11 it loses a cancel that lands as the wake-up does
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    # ------------------------------------------------------------ LISTEN (PostgreSQL)

    def _heard_note(self, payload: str) -> None:
        """In the listener thread: a NOTIFY naming the pages a write touched; then the counter,
        which reflects that write (it committed before its notification was sent)."""
        try:
            pages, version = parse_notification(payload)
        except ValueError:
            log.warning("unreadable notification on the events channel; reloading every page")
            self.request_resync()
            return
        if version is None:  # a writer of an earlier release (a list of pages): the counter now reflects it
            try:
                with (self.side.primary or self.engine).connect() as conn:  # not a replica: it may lag
                    version = read_counter(conn)
            except Exception:  # noqa: BLE001 - the poller finds the database back and resyncs
                self.request_resync()
                return
        self.heard = max(self.heard, version)
        self.call_in_loop(self._notified, Change(frozenset(pages), version))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._loop = loop
            # asyncio primitives belong to one loop: a feed started again (another loop) makes new ones
            self._wake, self._lock = asyncio.Event(), None
            self.stopping = False
            self.request_resync()
            self._task = loop.create_task(self._poll_loop())
            self._task.add_done_callback(self._poller_ended)
            self.running = True
        if self.listen:
            self.listener.start()

    def _poller_ended(self, task: asyncio.Task[None]) -> None:
        """The poll loop ends only in stop(); if anything else ended it, the next request starts it
        again (the fast path trusts a running poller for freshness)."""
        if self.stopping or self._task is not task:
            return
        self._task, self.running = None, False
        if not task.cancelled() and task.exception() is not None:
            from eventctl.text import for_terminal

            log.error("the poller stopped (%s); it starts again with the next request", for_terminal(task.exception()))

    async def stop(self) -> None:
        """Stop polling and listening; returns once no poll or LISTEN holds a connection."""
        from anyio import to_thread

        self.stopping = True
        task, self._task, self.running = self._task, None, False
        if task is not None:
            # a cancel can be lost (3.11's asyncio.wait_for, or any code that swallows it): the task
            # would carry on, so cancel again until it has ended
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
            if not task.cancelled():
                task.exception()  # retrieved: a failed poll is of no interest now
        await to_thread.run_sync(self.listener.stop)
        await to_thread.run_sync(self._wait_for_poll)

    def _wait_for_poll(self) -> None:
        with self._polling:
            pass


def parse_notification(payload: str) -> tuple[list[str], int | None]:
    """A NOTIFY payload: ``{"v": counter, "p": [pages]}`` (the counter the write set), or an earlier
    release's plain list of pages (no counter). ValueError for anything else."""
    try:
        data = json.loads(payload)
    except RecursionError:  # anyone who may connect may NOTIFY: a nested payload is no change of ours
        raise ValueError(payload[:80]) from None
    version = None
    if isinstance(data, dict):
        version, data = data.get("v"), data.get("p")
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**63:
            raise ValueError(payload[:80])
    if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
        raise ValueError(payload[:80])
    return data, version


def _last_audit_id(conn: Any) -> int:
    import sqlalchemy as sa

    return int(conn.execute(sa.text("SELECT max(id) FROM eventctl_audit")).scalar() or 0)
