"""``GET``/``HEAD /api/v1/events/current``: per-page cache, pushed freshness, outage-tolerant.

The cache's unit is the page. A miss loads that page's live and upcoming active
events with one indexed query (``events.load_snapshot``; misses queued together
share a query, ``LOAD_BATCH`` pages at a time); answers are resolved from them in
memory with the core's own rules (``resolve_in_memory``) and kept until the page's
next start/end boundary. A page is held as one bytes record (``_HEAD``: its answer
now; its events' windows; their bodies deflated against a preset dictionary), about
0.5 KB with its key: ``max_pages`` (default 100,000) pages fit in a worker. Least
recently used pages are dropped first; nothing is loaded at start-up.

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
Each page is also reloaded once it is ``MAX_ENTRY_AGE`` seconds old, in case a
notification was lost (or rows were changed by hand): in the background, answered
from memory meanwhile, unless it is ``WAIT_AGE`` old (then the request waits).

A load holds the events live then or starting within ``horizon`` seconds
(``WAIT_AGE`` + the larger of ``stale_grace`` and ``cache_ttl``): later
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
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from eventctl.errors import Conflict, DatabaseUnavailable, EventctlError, MalformedPageHeader, MalformedRoute
from eventctl.text import for_terminal
from eventctl.web.errors import JSON_TYPE, RawHeaders, dumps, render_error

if TYPE_CHECKING:
    from eventctl.web.metrics import Metrics

log = logging.getLogger("eventctl.web")
EVENTS_PREFIX = "/api/v1/events"
CURRENT_PATH = f"{EVENTS_PREFIX}/current"
DEFAULT_MAX_PAGES = 100_000  # pages held per worker (the setting: cache_pages / EVENTCTL_CACHE_PAGES)
# a page is reloaded at least this often: rows changed by hand with SQL (no notification, no
# counter) are seen then. Writes through eventctl are pushed; this is only the safety net, and
# it costs a reload per held page per period (100,000 pages: ~170 a second in the background)
MAX_ENTRY_AGE = 600.0
# a page older than MAX_ENTRY_AGE is reloaded in the background, answered from memory meanwhile;
# older than this (not asked for a while), a request waits for its reload
WAIT_AGE = 2 * MAX_ENTRY_AGE
RELOAD_LIMIT = 1_000  # unknown change: reload up to this many held pages, else drop them all
AUDIT_BATCH = 5_000  # SQLite: more new audit entries than this in one poll: drop everything
LISTEN_BACKOFF = (0.1, 5.0)  # first and longest wait between LISTEN reconnections (seconds)
LISTEN_WAKE = 0.25  # the listener checks for stop() this often
# threads loading pages at once: enough to keep the database busy; each thread of a process
# gets its own malloc arena, and 40 of them (anyio's default) fragmented the worker's memory
LOAD_THREADS = 4
LOAD_BATCH = 64  # pages read by one query when misses queue up (a cold cache under load)
MAX_ALIASES = 4_096  # headers remembered that are not a page key as sent (bounded: anyone can send them)
MAX_ALIAS_BYTES = 1_024  # longer headers are not remembered (a header may be ~64 KB: 4,096 of them would be 256 MB)
_LAST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
# Under CORSMiddleware (cross-origin requests, see create_app) it appends ", Origin" to Vary;
# the outermost fast path answers the other requests with Vary as CORSMiddleware would write it.
VARY = (b"vary", b"X-Page-Route")
VARY_ORIGIN = (b"vary", b"X-Page-Route, Origin")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """One held event, unpacked: the fields the core's rules read (``status_at``,
    ``pick_current``, ``next_boundary``) and its answer while live, encoded.

    Pages are held packed (``_pack_events``); events are unpacked only when a page's answer
    changes (a start or end passes) and for tools and tests (``CurrentService.snapshot``).
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


# A held page is one bytes object: _HEAD (its answer now), then _COUNT and one _EVENT per event,
# then the events' bodies, deflated. About 0.4 KB a page where objects (events, answer, headers,
# datetimes) took 1.4 KB: 100,000 pages fit in a worker's memory.
_HEAD = struct.Struct("<dd34sIIB")  # loaded_at, until, etag (quoted), body offset, body size, kind
_COUNT = struct.Struct("<I?")  # events, bodies deflated
_EVENT = struct.Struct("<qqBI")  # start, end (µs since the epoch; _NONE: none), flags, deflated body size
_NONE = -(2**63)
_ACTIVE, _DEFAULT = 1, 2
# the answer: an event's body deflated, as is, null, or OTHER: computed on the slow path (conflict, not yet computed)
# BROKEN: a row of the page is not a readable event (changed by hand): 503 until reloaded
KIND_EVENT, KIND_PLAIN, KIND_NULL, KIND_OTHER, KIND_BROKEN = 0, 1, 2, 3, 4
# while the cache holds fewer pages than this, pages are loaded with their bodies as they are
# (no inflating per request: a few thousand pages cost a few MB); past it, deflated
PLAIN_PAGES = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _etag(body: bytes) -> bytes:
    """A strong ETag: the body's hash (quoted), 34 bytes (_HEAD keeps it as is)."""
    return b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'


_NULL_ETAG = _etag(b"null")


def _micros(value: datetime | None) -> int:
    if value is None:
        return _NONE
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds  # exact, any year


def _datetime(micros: int) -> datetime | None:
    return None if micros == _NONE else _EPOCH + timedelta(microseconds=micros)


_WBITS = -11  # raw deflate, 2 KiB window (the dictionary and a body): 0.7 µs to inflate, 32 KiB took 1.2


class Deflater:
    """Raw deflate against a preset dictionary: an answer's field names and this year's dates.

    An answer of ~400 bytes is held in ~120; inflating it again takes about a microsecond (zlib).
    """

    def __init__(self, now: datetime) -> None:
        from eventctl.filters import FILTER_KEYS
        from eventctl.timeparse import isoformat

        stamp = isoformat(now)
        template = {
            "uid": "", "name": "", "description": None, "page_context": "/",
            "filters": dict.fromkeys(FILTER_KEYS, ""), "limit": 20, "is_active": True, "is_default": False,
            "start_date": stamp, "end_date": stamp, "created_by": "", "created_at": stamp, "updated_at": stamp,
            "status": "live",
        }  # fmt: skip
        self.zdict = dumps(template)

    def deflate(self, body: bytes) -> bytes:
        packer = zlib.compressobj(6, zlib.DEFLATED, _WBITS, 8, zlib.Z_DEFAULT_STRATEGY, self.zdict)
        return packer.compress(body) + packer.flush()

    def inflate(self, data: bytes) -> bytes:
        return zlib.decompressobj(_WBITS, self.zdict).decompress(data)


def _pack_events(events: list[HeldEvent], deflater: Deflater, deflate: bool = True) -> bytes:
    """A page's events, packed (the part of a held page after _HEAD)."""
    bodies = [deflater.deflate(e.body) for e in events] if deflate else [e.body for e in events]
    parts = [_COUNT.pack(len(events), deflate)]
    for event, body in zip(events, bodies, strict=True):
        flags = (_ACTIVE if event.is_active else 0) | (_DEFAULT if event.is_default else 0)
        parts.append(_EVENT.pack(_micros(event.start_date), _micros(event.end_date), flags, len(body)))
    return b"".join(parts + bodies)


def _body_offsets(record: bytes) -> tuple[int, list[tuple[int, int, int, int]], bool]:
    """Where the bodies start, each event's packed fields, and whether the bodies are deflated."""
    count, deflated = _COUNT.unpack_from(record, _HEAD.size)
    at = _HEAD.size + _COUNT.size
    fields = [_EVENT.unpack_from(record, at + i * _EVENT.size) for i in range(count)]
    return at + count * _EVENT.size, fields, deflated


def _unpack_events(record: bytes, deflater: Deflater) -> list[HeldEvent]:
    offset, fields, deflated = _body_offsets(record)
    events = []
    for start, end, flags, size in fields:
        body = record[offset : offset + size]
        if deflated:
            body = deflater.inflate(body)
        offset += size
        active, default = bool(flags & _ACTIVE), bool(flags & _DEFAULT)
        events.append(HeldEvent(json.loads(body)["uid"], active, default, _datetime(start), _datetime(end), body))
    return events


def _unanswered(loaded_at: float, events: bytes) -> bytes:
    """A page as loaded: its answer is computed at its first request."""
    return _HEAD.pack(loaded_at, -math.inf, b"", 0, 0, KIND_OTHER) + events


def _record(loaded_at: float, events: bytes | None) -> bytes:
    """A page as loaded; None: a page whose rows could not all be read (answers 503, holds nothing)."""
    if events is None:
        return _HEAD.pack(loaded_at, math.inf, b"", 0, 0, KIND_BROKEN) + _COUNT.pack(0, False)
    return _unanswered(loaded_at, events)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    etag: bytes | None  # set on cacheable (200) answers
    until: float  # epoch seconds: the answer may change then (next boundary); inf if never
    headers: RawHeaders  # content-type, content-length, and the etag or (errors) what render_error adds

    @classmethod
    def ok(cls, body: bytes, until: float, etag: bytes | None = None) -> Answer:
        if etag is None:
            etag = _etag(body)
        return cls(200, body, etag, until, [*_entity_headers(body), (b"etag", etag)])

    @classmethod
    def error(cls, exc: EventctlError, until: float) -> Answer:
        status, extra, body = render_error(exc)
        return cls(status, body, None, until, [*_entity_headers(body), _NO_STORE, *extra])


@functools.lru_cache(maxsize=4096)
def _content_length(size: int) -> tuple[bytes, bytes]:
    return (b"content-length", str(size).encode("ascii"))  # one tuple per size, shared by every answer


def _entity_headers(body: bytes) -> RawHeaders:
    return [JSON_TYPE, _content_length(len(body))]


@dataclass
class _PollResult:
    pages: set[str] | None = None  # pages to drop (known change)
    everything: bool = False  # drop every page (unknown change, too many to reload)
    reloaded: dict[str, bytes | None] | None = None  # unknown change: the held pages, reloaded (packed)
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
        # (until WAIT_AGE while it reloads, then stale for stale_grace) or cached downstream
        # (cache_ttl); later campaigns cost no memory
        self.horizon = WAIT_AGE + max(stale_grace, cache_ttl)
        self.poll_interval = poll_interval
        self.clock = clock
        self.max_pages = max(1, max_pages)
        self.postgres = engine.dialect.name == "postgresql"
        self.listen = listen and self.postgres
        self.last_success: float | None = None
        self.failing = False
        # held pages by their key's UTF-8 bytes (an X-Page-Route header as sent, most often)
        self._pages: OrderedDict[bytes, bytes] = OrderedDict()
        # headers that are not a page key as sent: the key they normalize to, or their answer
        self._aliases: OrderedDict[bytes | None, bytes | Answer] = OrderedDict()
        self.deflater = Deflater(datetime.fromtimestamp(clock(), UTC))
        # invalidation sequence: a load started at seq s is stored only if its page was not invalidated after s
        self._seq = 0
        self._all_seq = 0
        self._invalidated_at: dict[str, int] = {}
        self._loads_in_flight = 0
        # page loads: a miss waits on its page's future; up to LOAD_THREADS batches of LOAD_BATCH
        # queued pages each are read at once, one query a batch
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._queue: list[str] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._loaders = 0  # batch tasks still taking work from the queue
        self._loading: dict[str, asyncio.Future[bytes]] = {}  # pages being read now, and their waiters
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
        """The pages held and their events, least recently used first (for tools and tests)."""
        return {_route(key): _unpack_events(record, self.deflater) for key, record in self._pages.items()}

    def _store(self, route: str, record: bytes) -> None:
        key = _key(route)
        self._pages[key] = record
        self._pages.move_to_end(key)
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
            self._invalidated_at.clear()
            for route in list(self._loading):
                self._detach(route)
        else:
            count = 0
            for route in pages:
                if self._pages.pop(_key(route), None) is not None:
                    count += 1
                if self._loads_in_flight:
                    self._invalidated_at[route] = self._seq
                if route in self._loading:
                    self._detach(route)
            if len(self._invalidated_at) > 100_000:  # far more than ever in flight: be coarse
                self._all_seq = self._seq
                self._invalidated_at.clear()
        self.metrics.invalidated(count, source)
        self.metrics.data_age(0.0, len(self._pages))

    def _detach(self, route: str) -> None:
        """A page written while it loads: requests from now on wait for a new load, not that one
        (its waiters, which came before the write, still get it)."""
        if self._pending.get(route) is self._loading[route]:
            del self._pending[route]

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

    def _read_pages(self, routes: list[str], now: float) -> dict[str, bytes | None]:
        """The pages' events live at ``now`` or starting within the horizon, packed (one indexed
        query per ``PAGES_PER_QUERY`` pages); a page without any is packed empty, and a page with
        a row that cannot be read as an event (changed by hand) is None: its neighbours are fine."""
        from eventctl.db import read_session
        from eventctl.events import load_snapshot

        at = datetime.fromtimestamp(now, UTC)
        # a horizon past the calendar (a grace meant as "for ever") is no horizon
        horizon = datetime.fromtimestamp(now + self.horizon, UTC) if now + self.horizon < _LAST_TIMESTAMP else None
        with read_session(self.engine) as session:
            found = load_snapshot(session, at=at, pages=routes, horizon=horizon)
        deflate = len(self._pages) >= PLAIN_PAGES  # read in a thread: a page or two either way is no matter
        packed: dict[str, bytes | None] = {}
        for route in routes:
            try:
                events = [HeldEvent.of(row) for row in found.get(route, [])]
                packed[route] = _pack_events(events, self.deflater, deflate)
            except Exception as exc:  # noqa: BLE001 - one page's bad row: that page answers 503
                log.warning("page %s has a row that is not an event: %s", for_terminal(route), for_terminal(exc))
                packed[route] = None
        return packed

    def _load_sync(self, routes: list[str]) -> tuple[dict[str, bytes | None], float]:
        now = self.clock()
        started = time.perf_counter()
        found = self._read_pages(routes, now)
        self.metrics.loaded(time.perf_counter() - started)
        return found, now

    async def _load_page(self, route: str) -> bytes:
        """The page from the database; concurrent misses of one page share its load, and misses
        of different pages share queries (batches)."""
        return await asyncio.shield(self._request_load(route))

    def _request_load(self, route: str) -> asyncio.Future[bytes]:
        future = self._pending.get(route)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[route] = loop.create_future()
            future.add_done_callback(_retrieve)
            self._queue.append(route)
            if self._loaders < LOAD_THREADS:
                self._loaders += 1  # counted down by the task itself as it stops taking work
                task = loop.create_task(self._load_batches())
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        return future

    async def _load_batches(self) -> None:
        """Load queued pages, LOAD_BATCH at a time, until the queue is empty."""
        try:
            while self._queue:
                routes, self._queue = self._queue[:LOAD_BATCH], self._queue[LOAD_BATCH:]
                await self._load_batch({route: self._pending[route] for route in routes})
        finally:
            self._loaders -= 1  # in the same step as the empty queue was seen: no miss is left unserved

    async def _load_batch(self, waiting: dict[str, asyncio.Future[bytes]]) -> None:
        import anyio
        from anyio import to_thread

        routes = list(waiting)
        self._loading.update(waiting)
        seq = self._load_started()
        try:
            try:
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(LOAD_THREADS)
                found, loaded_at = await to_thread.run_sync(self._load_sync, routes, limiter=self._limiter)
            except BaseException as exc:
                for route, future in waiting.items():
                    self._settle(route, future, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            self.last_success = max(self.last_success or 0.0, loaded_at)
            for route, future in waiting.items():
                record = _record(loaded_at, found[route])
                # checked before _load_done() forgets what was invalidated meanwhile: a page
                # invalidated while it loaded answers its waiters from this load, and is not kept
                if self._valid_since(route, seq):
                    self._store(route, record)
                self._settle(route, future, record)
        finally:
            self._load_done()
            for route, future in waiting.items():
                if self._loading.get(route) is future:
                    del self._loading[route]

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
            if self._stopping:  # cancelled by stop() before this thread got here: the engine may be gone
                return result
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
                    result = await to_thread.run_sync(self._poll_sync, [_route(k) for k in self._pages], self.listening)
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
                key = _key(route)
                if key in self._pages:
                    count += 1
                    if self._valid_since(route, seq):
                        self._pages[key] = _record(result.loaded_at, result.reloaded[route])
                    else:
                        del self._pages[key]
            # Pages loaded while this poll ran (not in its list) may have been read before the
            # counter it read: the writes it now takes as seen would never reach them. They are
            # dropped; the next request loads them again.
            listed = set(result.held)
            for key in [key for key in self._pages if _route(key) not in listed]:
                del self._pages[key]
                count += 1
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
            self._task.add_done_callback(self._poller_ended)
        if self.listen and (self._listener is None or not self._listener.is_alive()):
            self._stop_listening.clear()
            self._listener = threading.Thread(target=self._listen_forever, name="eventctl-listen", daemon=True)
            self._listener.start()

    def _poller_ended(self, task: asyncio.Task[None]) -> None:
        """The poll loop ends only in stop(); if anything else ended it, the next request starts it
        again (the fast path trusts a running poller for freshness)."""
        if self._stopping or self._task is not task:
            return
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("the poller stopped (%s); it starts again with the next request", for_terminal(task.exception()))

    async def stop(self) -> None:
        """Stop polling and listening; returns once no poll, load or LISTEN holds a connection."""
        from anyio import to_thread

        self._stop_listening.set()
        self._stopping = True
        tasks = [t for t in (self._task, *self._batches) if t is not None]
        for task in tasks:
            # a cancel can be lost (3.11's asyncio.wait_for, or any code that swallows it): the task
            # would carry on, so cancel again until it has ended
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
            if not task.cancelled():
                task.exception()  # retrieved: a failed poll or load is of no interest now
        self._task = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._queue.clear()
        self.metrics.flush()
        listener, self._listener = self._listener, None
        if listener is not None:
            await to_thread.run_sync(listener.join)
        await to_thread.run_sync(self._wait_for_poll)

    def _wait_for_poll(self) -> None:
        with self._polling:
            pass

    # ------------------------------------------------------------ answers

    async def respond(
        self,
        raw_route: bytes | None,
        if_none_match: bytes | None,
        vary: tuple[bytes, bytes] = VARY,
        method: str | None = None,
    ) -> tuple[int, RawHeaders, bytes]:
        """Status, headers and body for one request. The only code path for /current.

        ``method``: the request is also counted here (the outermost fast path), by method and status.
        """
        now = self.clock()
        if now - self._flushed_at >= self.poll_interval:  # also while a poll hangs on a dead database
            self._flushed_at = now
            self.metrics.flush()
        record = self._pages.get(raw_route) if raw_route else None  # type: ignore[arg-type]
        # the common case, without a detour: the page held, fresh, its answer computed and still
        # right, no If-None-Match, database fine
        if record is not None and if_none_match is None and not self.failing and self._task is not None:
            loaded_at, until, etag, offset, size, kind = _HEAD.unpack_from(record)
            if now < until and now - loaded_at < MAX_ENTRY_AGE and kind <= KIND_NULL:  # an answer kept
                self._pages.move_to_end(raw_route)  # type: ignore[arg-type]
                body = self._kept_body(record, offset, size, kind)
                outcome = "null" if kind == KIND_NULL else "event"
                if method is None:
                    self.metrics.cache_hit_answer(outcome)
                else:
                    self.metrics.cache_hit_request(outcome, method)
                cache_control = (b"cache-control", self._cache_control(until, now, False))
                return 200, [JSON_TYPE, _content_length(len(body)), (b"etag", etag), vary, cache_control], body
        status, headers, body = await self._respond(raw_route, if_none_match, vary, now)
        self.metrics.current_answer(_outcome(status, body, headers))
        if method is not None:
            self.metrics.request(CURRENT_PATH, method, status)
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
        answer = await self._answer(raw_route, now)
        if answer is self._unavailable or self._beyond_grace(now):
            return self._unavailable.status, [*self._unavailable.headers, vary], self._unavailable.body
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

    def _page_key(self, raw: bytes | None) -> bytes | Answer:
        """The held page's key for a header: itself if it is a page key as sent, else what it
        normalizes to, or its answer (no page named: null; malformed: 400). Remembered (bounded)."""
        from eventctl.routes import normalize_route

        if raw and raw in self._pages:
            return raw
        alias = self._aliases.get(raw)
        if alias is None:
            try:
                route = normalize_route(raw)  # the header's bytes, read as UTF-8
            except MalformedRoute as exc:
                alias = Answer.error(MalformedPageHeader(exc.message), math.inf)
            else:
                alias = Answer.ok(b"null", math.inf, _NULL_ETAG) if route is None else _key(route)
            if alias != raw and (raw is None or len(raw) <= MAX_ALIAS_BYTES):
                self._aliases[raw] = alias
                while len(self._aliases) > MAX_ALIASES:
                    self._aliases.popitem(last=False)
        else:
            self._aliases.move_to_end(raw)
        return alias

    async def _answer(self, raw: bytes | None, now: float) -> Answer:
        """The answer for a header, through the cache (loading its page on a miss)."""
        known = raw in self._aliases
        key = self._page_key(raw)
        if isinstance(key, Answer):  # no page, or a malformed header: counted like a page
            self.metrics.cache_hit() if known else self.metrics.cache_miss()
            return key
        record = self._pages.get(key)
        age = now - _HEAD.unpack_from(record)[0] if record is not None else math.inf
        if record is None or (not self.failing and age >= WAIT_AGE):
            self.metrics.cache_miss()
            if self.failing:  # do not wait on a dead database per request: the poller finds it back
                if record is None:
                    return self._unavailable
            else:
                try:
                    record = await self._load_page(_route(key))
                except Exception as exc:  # noqa: BLE001 - an outage: the page held, if any, within grace
                    self._mark_failing(exc)
                    record = self._pages.get(key)
                    if record is None:
                        return self._unavailable
        else:
            self.metrics.cache_hit()
            self._pages.move_to_end(key)
            if age >= MAX_ENTRY_AGE and not self.failing:
                self._request_load(_route(key))  # in the background: answered from memory meanwhile
        loaded_at, until, etag, offset, size, kind = _HEAD.unpack_from(record)
        if kind == KIND_BROKEN:
            return self._unavailable
        if now < until and kind != KIND_OTHER:  # computed, and still right
            return Answer.ok(self._kept_body(record, offset, size, kind), until, etag)
        return self._recompute(key, record, loaded_at, now)

    def _kept_body(self, record: bytes, offset: int, size: int, kind: int) -> bytes:
        """The body of the answer a record keeps (its kind is EVENT, PLAIN or NULL)."""
        if kind == KIND_PLAIN:
            return record[offset : offset + size]
        if kind == KIND_EVENT:
            return self.deflater.inflate(record[offset : offset + size])
        return b"null"

    def _recompute(self, key: bytes, record: bytes, loaded_at: float, now: float) -> Answer:
        """The page's answer at ``now`` from its events (the core's rules); kept in the record."""
        from eventctl.events import next_boundary, resolve_in_memory

        complete_until = loaded_at + self.horizon  # what starts later was not loaded
        if now >= complete_until:
            return self._unavailable  # only while failing: a fresh page is reloaded long before
        events = _unpack_events(record, self.deflater)
        at = datetime.fromtimestamp(now, UTC)
        boundary = next_boundary(events, at=at)
        until = min(boundary.timestamp(), complete_until) if boundary is not None else complete_until
        try:
            event = resolve_in_memory(events, route=_route(key), at=at)
        except Conflict as exc:
            return Answer.error(exc, until)  # computed again each time: a conflict is rare and loud
        if event is None:
            answer, head = Answer.ok(b"null", until, _NULL_ETAG), (_NULL_ETAG, 0, 0, KIND_NULL)
        else:
            answer = Answer.ok(event.body, until)
            offset, fields, deflated = _body_offsets(record)
            index = events.index(event)
            offset += sum(size for *_, size in fields[:index])
            kind = KIND_EVENT if deflated else KIND_PLAIN
            head = (answer.etag or b"", offset, fields[index][3], kind)
        if self._pages.get(key) is record:  # still held, not reloaded meanwhile
            self._pages[key] = _HEAD.pack(loaded_at, until, *head) + record[_HEAD.size :]
        return answer

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


def _key(route: str) -> bytes:
    return route.encode("utf-8", "surrogatepass")


def _route(key: bytes) -> str:
    return key.decode("utf-8", "surrogatepass")


def _retrieve(future: asyncio.Future[bytes]) -> None:
    """A load's failure is handed to its waiters; with none left (they went away), it is of no interest."""
    if not future.cancelled():
        future.exception()


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
            if not cross:  # answered here, in one frame: this is the hot path
                started, method, status = time.perf_counter(), scope["method"], 500
                try:
                    status, headers, body = await self.service.respond(route, inm, VARY_ORIGIN, method)  # counted
                except BaseException:
                    self.service.metrics.request(CURRENT_PATH, method, 500)
                    raise
                finally:
                    if status not in (200, 304):
                        from eventctl.web.metrics import access_log

                        access_log(method, CURRENT_PATH, status, time.perf_counter() - started)
                # _send's two messages, inline: one coroutine less per request on the hot path
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
                return
        await self.app(scope, receive, send)
