"""``GET``/``HEAD /api/v1/events/current``: per-page cache, pushed freshness, outage-tolerant.

The cache's unit is the page. A miss loads that page's live and upcoming active
events with one indexed query (``events.load_page``); answers are resolved from
them in memory with the core's own rules (``resolve_in_memory``), encoded once
and reused until the page's next start/end boundary. At most ``max_pages`` pages
are held (least recently used dropped first); nothing is loaded at start-up.

Freshness: every write bumps the change counter and, on PostgreSQL, NOTIFYs the
pages it touched (``events.bump_version``).

* PostgreSQL: each worker LISTENs on its own connection (a thread) and drops the
  named pages as the notification arrives. While it cannot listen (reconnecting
  with backoff) the poller reads the counter every ``poll_interval`` and, when it
  moved, reloads (or, above ``RELOAD_LIMIT`` pages, drops) every held page. Each
  (re)connection resynchronizes the same way, since notifications sent while
  nobody listened are lost.
* SQLite: the poller reads the counter; when it moved, the pages come from the
  audit log (``id > last seen``: SQLite commits one writer at a time, so ids are
  in commit order; a move names its old and new page), and only those are dropped.

A load racing with an invalidation of its page is not stored (sequence numbers).
Each entry is also reloaded after ``MAX_ENTRY_AGE`` seconds, in case a
notification was lost.

A load holds the events live then or starting within ``horizon`` seconds
(``MAX_ENTRY_AGE`` + the larger of ``stale_grace`` and ``cache_ttl``): later
campaigns cost no memory, and a page is never answered past its load + horizon.

If the database becomes unreachable, answers keep coming from the pages held
(windows re-applied against the clock) for ``stale_grace`` seconds after the last
successful database call, marked ``X-Eventctl-Stale: true``; then 503, and 503 at
once for a page not held or past its horizon.

``CurrentFastPath`` answers before FastAPI's routing (the hot path); the documented
route (``routers/current.py``) answers through the same ``send_current``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from eventctl.errors import Conflict, DatabaseUnavailable, EventctlError, MalformedPageHeader, MalformedRoute
from eventctl.web.errors import JSON_TYPE, RawHeaders, dumps, render_error

if TYPE_CHECKING:
    from eventctl.web.metrics import Metrics

log = logging.getLogger("eventctl.web")
EVENTS_PREFIX = "/api/v1/events"
CURRENT_PATH = f"{EVENTS_PREFIX}/current"
DEFAULT_MAX_PAGES = 10_000  # pages held per worker (suggested setting: cache_pages / EVENTCTL_CACHE_PAGES)
MAX_ENTRY_AGE = 60.0  # a page is reloaded at least this often (a lost notification heals)
RELOAD_LIMIT = 1_000  # unknown change: reload up to this many held pages, else drop them all
AUDIT_BATCH = 5_000  # SQLite: more new audit entries than this in one poll: drop everything
LISTEN_BACKOFF = (0.1, 5.0)  # first and longest wait between LISTEN reconnections (seconds)
LISTEN_WAKE = 0.25  # the listener checks for stop() this often
# threads loading pages at once: enough to keep the database busy; each thread of a process
# gets its own malloc arena, and 40 of them (anyio's default) fragmented the worker's memory
LOAD_THREADS = 8
_LAST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
# Under CORSMiddleware (cross-origin requests, see create_app) it appends ", Origin" to Vary;
# the outermost fast path answers the other requests with Vary as CORSMiddleware would write it.
VARY = (b"vary", b"X-Page-Route")
VARY_ORIGIN = (b"vary", b"X-Page-Route, Origin")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """What a held page keeps of one event: the fields the core's rules read (``status_at``,
    ``pick_current``, ``next_boundary``) and its answer, encoded once.

    Nothing of SQLAlchemy's is kept: a ``Row`` holds on to its result's metadata, statement
    and cache key, about 20 KB a page; this is about 0.7 KB an event.
    """

    uid: str
    is_active: bool
    is_default: bool
    start_date: datetime | None
    end_date: datetime | None
    body: bytes  # the /current answer while the event is live

    @classmethod
    def of(cls, row: Any) -> HeldEvent:
        from eventctl.models import event_to_json
        from eventctl.timeparse import as_utc

        doc = event_to_json(row, None)
        doc["status"] = "live"  # it is only ever answered while live
        start, end = as_utc(row.start_date), as_utc(row.end_date)
        return cls(str(row.uid), bool(row.is_active), bool(row.is_default), start, end, dumps(doc))


def _held(found: dict[str, list[Any]]) -> dict[str, list[HeldEvent]]:
    return {route: [HeldEvent.of(row) for row in rows] for route, rows in found.items()}


@dataclass(eq=False, slots=True)
class PageData:
    """One page's active events live at ``loaded_at`` (epoch seconds) or starting within the horizon."""

    events: list[HeldEvent]
    loaded_at: float


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    etag: bytes | None  # set on cacheable (200) answers
    until: float  # epoch seconds: the answer may change then (next boundary); inf if never
    headers: RawHeaders  # content-type, content-length, and the etag or (errors) what render_error adds
    page: PageData | None = field(default=None)  # what it was computed from (valid while still held)
    route: str | None = None
    outcome: str = ""  # how a 200 is counted (event, null)

    @classmethod
    def ok(cls, body: bytes, until: float, page: PageData | None = None, route: str | None = None) -> Answer:
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
        outcome = "null" if body == b"null" else "event"
        return cls(200, body, etag, until, [*_entity_headers(body), (b"etag", etag)], page, route, outcome)

    @classmethod
    def error(cls, exc: EventctlError, until: float, page: PageData | None = None, route: str | None = None) -> Answer:
        status, extra, body = render_error(exc)
        return cls(status, body, None, until, [*_entity_headers(body), _NO_STORE, *extra], page, route)


@functools.lru_cache(maxsize=4096)
def _content_length(size: int) -> tuple[bytes, bytes]:
    return (b"content-length", str(size).encode("ascii"))  # one tuple per size, shared by every answer


def _entity_headers(body: bytes) -> RawHeaders:
    return [JSON_TYPE, _content_length(len(body))]


@dataclass
class _PollResult:
    pages: set[str] | None = None  # pages to drop (known change)
    everything: bool = False  # drop every page (unknown change, too many to reload)
    reloaded: dict[str, list[HeldEvent]] | None = None  # unknown change: the held pages, reloaded
    held: list[str] = field(default_factory=list)
    loaded_at: float = 0.0


class CurrentService:
    def __init__(
        self,
        engine: Engine,
        *,
        cache_ttl: float,
        stale_grace: float,
        poll_interval: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        max_pages: int = DEFAULT_MAX_PAGES,
        listen: bool = True,
    ) -> None:
        from eventctl.web.metrics import Metrics

        self.metrics = metrics or Metrics()
        self.engine = engine
        self.cache_ttl = cache_ttl
        self.stale_grace = stale_grace
        # a page holds what starts before loaded_at + horizon: the longest it is ever answered from
        # (fresh for MAX_ENTRY_AGE, then stale for stale_grace) or cached downstream (cache_ttl);
        # later campaigns cost no memory
        self.horizon = MAX_ENTRY_AGE + max(stale_grace, cache_ttl)
        self.poll_interval = poll_interval
        self.clock = clock
        self.max_pages = max(1, max_pages)
        self.postgres = engine.dialect.name == "postgresql"
        self.listen = listen and self.postgres
        self.last_success: float | None = None
        self.failing = False
        self._pages: OrderedDict[str, PageData] = OrderedDict()
        self._answers: OrderedDict[bytes | None, Answer] = OrderedDict()
        # invalidation sequence: a load started at seq s is stored only if its page was not invalidated after s
        self._seq = 0
        self._all_seq = 0
        self._invalidated_at: dict[str, int] = {}
        self._loads_in_flight = 0
        self._pending: dict[str, asyncio.Task[PageData]] = {}
        self._limiter: Any = None  # page loads in at most LOAD_THREADS threads (made in the loop)
        # poller state (poll thread only, under _polling)
        self.version: int | None = None
        self._audit_id: int | None = None
        self._resync = True  # the next poll treats any change as unknown (start, LISTEN (re)connected or lost)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._flushed_at = 0.0  # clock time of the last hand-over of per-request counts
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._refresh_lock: asyncio.Lock | None = None
        # held by the worker thread while it polls: a cancelled refresh leaves its thread running
        self._polling = threading.Lock()
        # LISTEN (PostgreSQL)
        self.listening = False
        self.listen_connects = 0
        self._listener: threading.Thread | None = None
        self._stop_listening = threading.Event()
        self._listen_pid: int | None = None
        # the cause is logged once, not on every request
        self._unavailable = Answer.error(DatabaseUnavailable("The database is unavailable."), math.inf)
        # a boundary further off than both: the same Cache-Control every time, made once
        self._far = max(cache_ttl, stale_grace) + 1.0
        self._far_cache_control = self._cache_control_value(self._far, 0.0, False)

    # ------------------------------------------------------------ the cache

    @property
    def snapshot(self) -> dict[str, list[HeldEvent]]:
        """The pages held and their events (for tools and tests)."""
        return {route: page.events for route, page in self._pages.items()}

    def _store(self, route: str, page: PageData) -> None:
        self._pages[route] = page
        self._pages.move_to_end(route)
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)

    def _valid_since(self, route: str, seq: int) -> bool:
        return self._all_seq <= seq and self._invalidated_at.get(route, -1) <= seq

    def _load_started(self) -> int:
        self._loads_in_flight += 1
        return self._seq

    def _load_done(self) -> None:
        self._loads_in_flight -= 1
        if self._loads_in_flight == 0:
            self._invalidated_at.clear()

    def invalidate(self, pages: Iterable[str] | None = None, source: str = "write") -> None:
        """Drop these pages (None: every page); called after a write in this process and by the listener.

        The cache belongs to the event loop: called from another thread (a sync route), the
        work is handed to the loop, ahead of the response that thread is about to send.
        """
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._call_in_loop(self.invalidate, None if pages is None else list(pages), source)
            return
        self._seq += 1
        if pages is None:
            self._all_seq = self._seq
            count = len(self._pages)
            self._pages.clear()
            self._answers.clear()
            self._invalidated_at.clear()
        else:
            count = 0
            for route in pages:
                if self._pages.pop(route, None) is not None:
                    count += 1
                if self._loads_in_flight:
                    self._invalidated_at[route] = self._seq
            if len(self._invalidated_at) > 100_000:  # far more than ever in flight: be coarse
                self._all_seq = self._seq
                self._invalidated_at.clear()
        # answers computed from a dropped page are no longer used (Answer.page is not held)
        self.metrics.invalidated(count, source)
        self.metrics.data_age(0.0, len(self._pages))

    def _on_notify(self, payload: str) -> None:
        """In the event loop: a NOTIFY from a write, naming the pages it touched."""
        try:
            pages = json.loads(payload)
            if not isinstance(pages, list) or not all(isinstance(p, str) for p in pages):
                raise ValueError(payload[:80])
        except ValueError:
            log.warning("unreadable notification on the events channel; dropping every page")
            self.invalidate(None, "notify")
            return
        self.invalidate(pages, "notify")

    # ------------------------------------------------------------ loading

    def _read_pages(self, routes: list[str], now: float) -> dict[str, list[HeldEvent]]:
        """The pages' events live at ``now`` or starting within the horizon (one indexed query)."""
        from eventctl.db import read_session
        from eventctl.events import load_snapshot

        at = datetime.fromtimestamp(now, UTC)
        # a horizon past the calendar (a grace meant as "for ever") is no horizon
        horizon = datetime.fromtimestamp(now + self.horizon, UTC) if now + self.horizon < _LAST_TIMESTAMP else None
        with read_session(self.engine) as session:
            return _held(load_snapshot(session, at=at, pages=routes, horizon=horizon))

    def _load_sync(self, routes: list[str]) -> tuple[dict[str, list[HeldEvent]], float]:
        now = self.clock()
        started = time.perf_counter()
        found = self._read_pages(routes, now)
        self.metrics.loaded(time.perf_counter() - started)
        return found, now

    async def _fetch(self, route: str) -> PageData:
        import anyio
        from anyio import to_thread

        page: PageData | None = None
        for _attempt in range(3):
            seq = self._load_started()
            try:
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(LOAD_THREADS)
                found, loaded_at = await to_thread.run_sync(self._load_sync, [route], limiter=self._limiter)
                page = PageData(found.get(route, []), loaded_at)
                self.last_success = max(self.last_success or 0.0, loaded_at)
                if self._valid_since(route, seq):
                    self._store(route, page)
                    return page
            finally:
                self._load_done()
        assert page is not None
        return page  # invalidated during every attempt: answer from the newest load, uncached

    async def _load_page(self, route: str) -> PageData:
        """The page's data from the database; concurrent misses of one page share one query."""
        task = self._pending.get(route)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(route))
            self._pending[route] = task
            task.add_done_callback(functools.partial(self._fetched, route))
        return await asyncio.shield(task)

    def _fetched(self, route: str, task: asyncio.Task[PageData]) -> None:
        if self._pending.get(route) is task:
            del self._pending[route]
        if not task.cancelled():
            task.exception()  # retrieved: waiters (if any) get it through shield

    def _mark_failing(self, exc: BaseException) -> None:
        self.metrics.db_error("current")
        if self.last_success is not None:
            self.metrics.data_age(self.clock() - self.last_success, len(self._pages))
        if not self.failing:
            log.warning("database unavailable, serving last good data: %s", str(exc).splitlines()[0][:300])
        self.failing = True

    # ------------------------------------------------------------ polling

    def _poll_sync(self, held: list[str], listening: bool) -> _PollResult:
        """In a worker thread: read the counter (SQLite: and the pages written since); reload if unknown."""
        import sqlalchemy as sa

        result = _PollResult()
        with self._polling:
            resync, self._resync = self._resync, False
            try:
                with self.engine.connect() as conn, conn.begin():  # one snapshot: counter and audit agree
                    version = int(
                        conn.execute(sa.text("SELECT version FROM eventctl_state WHERE id = 1")).scalar() or 0
                    )
                    pages, audit_id = None, self._audit_id
                    if not self.postgres:
                        if audit_id is None or resync:
                            audit_id = conn.execute(sa.text("SELECT max(id) FROM eventctl_audit")).scalar() or 0
                        elif version != self.version:
                            pages, audit_id = self._pages_written(conn, version)
            except BaseException:
                self._resync = self._resync or resync
                raise
            moved = version != self.version
            self.version, self._audit_id = version, audit_id
            if resync or (moved and pages is None and not listening):
                if len(held) <= RELOAD_LIMIT:
                    now = self.clock()
                    result.reloaded = self._read_pages(held, now)
                    result.held, result.loaded_at = held, now
                else:
                    result.everything = True
            elif moved and pages is not None:
                result.pages = pages
            # else: nothing moved, or PostgreSQL while listening (the listener hands the pages over)
        return result

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
            return None, conn.execute(sa.text("SELECT max(id) FROM eventctl_audit")).scalar() or 0
        pages: set[str] = set()
        for _id, page, before, after in rows:
            pages.add(page)
            for side in (before, after):
                if isinstance(side, str):
                    side = json.loads(side)
                if isinstance(side, dict) and isinstance(side.get("page_context"), str):
                    pages.add(side["page_context"])
        return pages, rows[-1][0] if rows else (self._audit_id or 0)

    async def refresh(self) -> None:
        from anyio import to_thread

        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            seq = self._load_started()
            try:
                try:
                    result = await to_thread.run_sync(self._poll_sync, list(self._pages), self.listening)
                except Exception as exc:  # noqa: BLE001 - an outage: keep the last good data
                    self._mark_failing(exc)
                    return
                self._apply(result, seq)
            finally:
                self._load_done()
            self.last_success, self.failing = self.clock(), False
            self.metrics.data_age(0.0, len(self._pages))

    def _apply(self, result: _PollResult, seq: int) -> None:
        if result.everything:
            self.invalidate(None, "poll")
        elif result.reloaded is not None:
            count = 0
            for route in result.held:
                if route in self._pages:
                    count += 1
                    if self._valid_since(route, seq):
                        self._pages[route] = PageData(result.reloaded.get(route, []), result.loaded_at)
                    else:
                        del self._pages[route]
            self.metrics.invalidated(count, "poll")
        elif result.pages:
            self.invalidate(result.pages, "poll")

    async def _poll_loop(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            await self.refresh()
            self.metrics.flush()  # the per-request counts reach prometheus-client once a poll
            try:  # not asyncio.wait_for: in 3.11 it loses a cancel that lands as the wake-up does
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    def _wake_poller(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------ LISTEN (PostgreSQL)

    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody to tell
            pass

    def _listen_forever(self) -> None:
        import psycopg

        from eventctl.events import NOTIFY_CHANNEL

        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        cparams = {**cparams, "autocommit": True, "connect_timeout": 5}
        wait, logged = LISTEN_BACKOFF[0], False
        while not self._stop_listening.is_set():
            try:
                with psycopg.connect(*cargs, **cparams) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listen_pid = conn.info.backend_pid
                    self._resync = True  # what was written while nobody listened (set before `listening`)
                    self.listening, wait, logged = True, LISTEN_BACKOFF[0], False
                    self.listen_connects += 1
                    self._call_in_loop(self._wake_poller)
                    while not self._stop_listening.is_set():
                        for note in conn.notifies(timeout=LISTEN_WAKE):
                            self._call_in_loop(self._on_notify, note.payload)
            except Exception as exc:  # noqa: BLE001 - poll meanwhile, reconnect with backoff
                if not logged and not self._stop_listening.is_set():
                    log.warning("not listening for changes (polling meanwhile): %s", str(exc).splitlines()[0][:300])
                    logged = True
            finally:
                if self.listening:
                    self.listening = False
                    self._resync = True  # notifications not yet read are lost
                    self._call_in_loop(self._wake_poller)
                self._listen_pid = None
            if self._stop_listening.wait(wait):
                break
            wait = min(wait * 2, LISTEN_BACKOFF[1])

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._loop, self._loop_thread = loop, threading.get_ident()
            self._wake = asyncio.Event()
            # asyncio primitives belong to one loop: a service started again (another loop) makes new ones
            self._refresh_lock, self._limiter = None, None
            self._stopping = False
            self._resync = True
            self._task = loop.create_task(self._poll_loop())
        if self.listen and (self._listener is None or not self._listener.is_alive()):
            self._stop_listening.clear()
            self._listener = threading.Thread(target=self._listen_forever, name="eventctl-listen", daemon=True)
            self._listener.start()

    async def stop(self) -> None:
        """Stop polling and listening; returns once no poll, load or LISTEN holds a connection."""
        from anyio import to_thread

        self._stop_listening.set()
        self._stopping = True
        tasks = [t for t in (self._task, *self._pending.values()) if t is not None]
        for task in tasks:
            # a cancel can be lost (3.11's asyncio.wait_for, or any code that swallows it): the task
            # would carry on, so cancel again until it has ended
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
            if not task.cancelled():
                task.exception()  # retrieved: a failed poll or load is of no interest now
        self._task = None
        self.metrics.flush()
        listener, self._listener = self._listener, None
        if listener is not None:
            await to_thread.run_sync(listener.join)
        await to_thread.run_sync(self._wait_for_poll)

    def _wait_for_poll(self) -> None:
        with self._polling:
            pass

    # ------------------------------------------------------------ answers

    def _usable(self, answer: Answer, now: float, stale: bool) -> bool:
        if now >= answer.until:
            return False
        page = answer.page
        if page is None:
            return True
        return self._pages.get(answer.route) is page and (stale or now - page.loaded_at < MAX_ENTRY_AGE)  # type: ignore[arg-type]

    async def _compute(self, raw: bytes | None, now: float) -> Answer:
        from eventctl.events import next_boundary, resolve_in_memory
        from eventctl.routes import normalize_route

        try:
            route = normalize_route(raw)  # the header's bytes, read as UTF-8
        except MalformedRoute as exc:
            return Answer.error(MalformedPageHeader(exc.message), math.inf)
        if route is None:
            return Answer.ok(b"null", math.inf)
        page = self._pages.get(route)
        if page is None or (not self.failing and now - page.loaded_at >= MAX_ENTRY_AGE):
            if self.failing:  # do not wait on a dead database per request: the poller finds it back
                if page is None:
                    return self._unavailable
            else:
                try:
                    page = await self._load_page(route)
                except Exception as exc:  # noqa: BLE001 - an outage: the page held, if any, within grace
                    self._mark_failing(exc)
                    page = self._pages.get(route)
                    if page is None:
                        return self._unavailable
        else:
            self._pages.move_to_end(route)
        complete_until = page.loaded_at + self.horizon  # what starts later was not loaded
        if now >= complete_until:
            return self._unavailable  # only while failing: a fresh page is reloaded long before
        at = datetime.fromtimestamp(now, UTC)
        boundary = next_boundary(page.events, at=at)
        until = min(boundary.timestamp(), complete_until) if boundary is not None else complete_until
        try:
            event = resolve_in_memory(page.events, route=route, at=at)
        except Conflict as exc:
            return Answer.error(exc, until, page, route)
        return Answer.ok(b"null" if event is None else event.body, until, page, route)

    async def respond(
        self, raw_route: bytes | None, if_none_match: bytes | None, vary: tuple[bytes, bytes] = VARY
    ) -> tuple[int, RawHeaders, bytes]:
        """Status, headers and body for one request. The only code path for /current."""
        now = self.clock()
        answer = self._answers.get(raw_route)
        if now - self._flushed_at >= self.poll_interval:  # also while a poll hangs on a dead database
            self._flushed_at = now
            self.metrics.flush()
        if (  # the common case, without a detour: a fresh 200 held, no If-None-Match, database fine
            answer is not None
            and answer.etag is not None
            and if_none_match is None
            and not self.failing
            and self._task is not None
            and self._usable(answer, now, False)
        ):
            self.metrics.cache_hit_answer(answer.outcome)
            self._answers.move_to_end(raw_route)
            if answer.route is not None:
                self._pages.move_to_end(answer.route)
            cache_control = (b"cache-control", self._cache_control(answer.until, now, False))
            return 200, [*answer.headers, vary, cache_control], answer.body
        status, headers, body = await self._respond(raw_route, if_none_match, vary, now)
        self.metrics.current_answer(_outcome(status, body, headers))
        return status, headers, body

    def _beyond_grace(self, now: float) -> bool:
        return self.failing and (self.last_success is None or now - self.last_success > self.stale_grace)

    async def _respond(
        self, raw_route: bytes | None, if_none_match: bytes | None, vary: tuple[bytes, bytes], now: float
    ) -> tuple[int, RawHeaders, bytes]:
        if self._task is None:
            self.start()  # also when the server runs no lifespan (uvicorn --lifespan off, mounted apps)
        if self._beyond_grace(now):
            return self._unavailable.status, [*self._unavailable.headers, vary], self._unavailable.body
        answer = self._answers.get(raw_route)
        if answer is not None and self._usable(answer, now, self.failing):
            self.metrics.cache_hit()
            self._answers.move_to_end(raw_route)
            if answer.route is not None:
                self._pages.move_to_end(answer.route)
        else:
            self.metrics.cache_miss()
            answer = await self._compute(raw_route, now)
            if answer is self._unavailable or self._beyond_grace(now):
                return self._unavailable.status, [*self._unavailable.headers, vary], self._unavailable.body
            self._answers[raw_route] = answer
            self._answers.move_to_end(raw_route)
            while len(self._answers) > 2 * self.max_pages:
                self._answers.popitem(last=False)
        stale = self.failing
        if answer.etag is None:
            return answer.status, [*answer.headers, vary], answer.body
        headers = [vary, (b"cache-control", self._cache_control(answer.until, now, stale))]
        if stale:
            self.metrics.stale_answer()
            headers.append((b"x-eventctl-stale", b"true"))
        if if_none_match is not None and _matches(if_none_match, answer.etag):
            return 304, [(b"etag", answer.etag), *headers], b""
        return 200, answer.headers + headers, answer.body

    def _cache_control(self, until: float, now: float, stale: bool) -> bytes:
        """max-age ≤ TTL and ≤ the next boundary; stale-if-error never reaches past it either.

        Stale answers (database down) get max-age=0, so caches come back to us, and
        stale-if-error for what is left of the grace period.
        """
        if not stale and until - now >= self._far:
            return self._far_cache_control
        return self._cache_control_value(until - now, now, stale)

    def _cache_control_value(self, until_boundary: float, now: float, stale: bool) -> bytes:
        if stale:
            max_age = 0
            grace_left = self.stale_grace - (now - (self.last_success or now))
            stale_if_error = math.floor(min(grace_left, until_boundary))
        else:
            max_age = max(0, math.floor(min(self.cache_ttl, until_boundary)))
            stale_if_error = math.floor(min(self.stale_grace, until_boundary)) - max_age
        value = f"public, max-age={max_age}"
        if stale_if_error > 0:
            value += f", stale-if-error={stale_if_error}"
        return value.encode("ascii")


_OUTCOME_BY_STATUS = {304: "not_modified", 400: "bad_request", 409: "conflict", 503: "unavailable"}


def _outcome(status: int, body: bytes, headers: RawHeaders) -> str:
    """How a /current answer is counted in the metrics (stale answers apart)."""
    if status in _OUTCOME_BY_STATUS:
        return _OUTCOME_BY_STATUS[status]
    if (b"x-eventctl-stale", b"true") in headers:
        return "stale"
    return "null" if body == b"null" else "event"


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 weak comparison for If-None-Match (werkzeug's parser)."""
    from werkzeug.http import parse_etags

    return parse_etags(if_none_match.decode("latin-1")).contains_weak(etag.decode("ascii").strip('"'))


def _request_headers(scope: Scope) -> tuple[bytes | None, bytes | None, bool]:
    """X-Page-Route and If-None-Match as raw bytes (normalize_route reads the route as UTF-8),
    and whether the request names an Origin (a cross-origin request)."""
    route = inm = None
    cross = False
    for name, value in scope["headers"]:
        if name == b"x-page-route":
            route = value
        elif name == b"if-none-match":
            inm = value
        elif name == b"origin":
            cross = True
    return route, inm, cross


async def _send(scope: Scope, send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    """HEAD gets GET's status and headers, no body."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def send_current(service: CurrentService, scope: Scope, send: Send) -> None:
    """Answer GET or HEAD /current on ``send`` (under CORS, which completes Vary)."""
    route, inm, _cross = _request_headers(scope)
    await _send(scope, send, *await service.respond(route, inm))


class CurrentFastPath:
    """ASGI middleware answering GET/HEAD /current before anything else (the hot path).

    Outermost (``create_app``), it answers requests that carry no ``Origin`` header —
    Vary as CORSMiddleware would write it, counted and logged as ``RequestMetricsAndLog``
    would — and hands cross-origin ones to the stack, where an inner instance
    (``outermost=False``) answers them under CORS.
    """

    def __init__(self, app: ASGIApp, service: CurrentService, *, outermost: bool = False) -> None:
        self.app = app
        self.service = service
        self.outermost = outermost

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CURRENT_PATH and scope["method"] in ("GET", "HEAD"):
            if not self.outermost:
                await send_current(self.service, scope, send)
                return
            route, inm, cross = _request_headers(scope)
            if not cross:
                await self._answer(scope, send, route, inm)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, route: bytes | None, inm: bytes | None) -> None:
        started, status = time.perf_counter(), 500
        try:
            status, headers, body = await self.service.respond(route, inm, VARY_ORIGIN)
            await _send(scope, send, status, headers, body)
        finally:
            self.service.metrics.request(CURRENT_PATH, scope["method"], status)
            if status not in (200, 304):
                from eventctl.web.metrics import access_log

                access_log(scope["method"], CURRENT_PATH, status, time.perf_counter() - started)
