"""The /current service: composes the cache, the loader, the change feed and the freshness rules,
and answers one request (``respond``) — the only code path for ``/current``.

A miss loads its page (the loader); the answer is resolved from the page's events in memory
with the core's own rules and kept in the record until the page's next boundary. Changes
from the feed, and writes made in this process (``invalidate``), reach the cache with the
change counter they reflect; the cache decides what may be kept. A page is reloaded in the
background once it is ``MAX_ENTRY_AGE`` old (rows changed by hand), before the answer once
it is ``WAIT_AGE`` old.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, Engine

from eventctl.web.current.cache import PageCache, key_of, route_of
from eventctl.web.current.feed import Change, ChangeFeed
from eventctl.web.current.freshness import MAX_ENTRY_AGE, WAIT_AGE, Freshness
from eventctl.web.current.keys import PageKeys
from eventctl.web.current.loader import Loader, ReadSide, read_counter
from eventctl.web.current.record import (
    HEAD,
    KIND_BROKEN,
    KIND_NULL,
    KIND_OTHER,
    PLAIN_PAGES,
    Answer,
    Deflater,
    HeldEvent,
    answer_at,
    content_length,
    kept_body,
    loaded_at_of,
    matches,
    outcome_of,
    unpack_events,
)
from eventctl.web.errors import JSON_TYPE, RawHeaders

if TYPE_CHECKING:
    from eventctl.web.metrics import Metrics

RELOAD_LIMIT = 1_000  # a change the feed cannot name: reload up to this many held pages, else drop them all
VARY = (b"vary", b"X-Page-Route")


class CurrentService:
    def __init__(
        self,
        engine: Engine,
        *,
        cache_ttl: float,
        stale_grace: float,
        poll_interval: float,
        max_pages: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        listen: bool = True,
        listen_url: URL | None = None,
        read_engine: Engine | None = None,
    ) -> None:
        """``listen_url``: where LISTEN connects (default: the engine's URL); ``read_engine``: where
        pages are loaded from (default: the engine). A replica's counter lags the primary's, so a
        load from it is kept only once it has caught up with the changes the cache was told of."""
        from eventctl.web.metrics import Metrics

        self.metrics = metrics or Metrics()
        self.engine = engine
        self.clock = clock
        self.poll_interval = poll_interval
        clock_now = lambda: self.clock()  # noqa: E731 - one clock, replaceable (tests step it)
        self.freshness = Freshness(cache_ttl=cache_ttl, stale_grace=stale_grace, clock=clock_now, metrics=self.metrics)
        self.cache = PageCache(max_pages)
        self._pages = self.cache.pages  # the cache's own dict, read directly on the hot path
        self.keys = PageKeys()
        self.deflater = Deflater(datetime.fromtimestamp(clock(), UTC))
        self.read_engine = read_engine or engine
        side = ReadSide(self.read_engine, engine if read_engine is not None else None)
        self.loader = Loader(
            self.read_engine,
            horizon=self.freshness.horizon,
            deflater=self.deflater,
            deflate=lambda: len(self.cache) >= PLAIN_PAGES,  # read in a thread: a page either way is no matter
            clock=clock_now,
            on_loaded=self._loaded,
            on_idle=self.cache.forget_floors,
            observe=self.metrics.loaded,
            side=side,
            wanted=self.cache.floor_for,
            fell_back=self.metrics.replica_fallback,
        )
        self.feed = ChangeFeed(
            self.read_engine,  # the counter is polled where pages are read (a replica: as it replays)
            poll_interval=poll_interval,
            listen=listen,
            apply=self._apply,
            notified=self._notified,
            succeeded=self._polled,
            failed=self._failed,
            listen_url=listen_url or engine.url,  # LISTEN on the primary (a replica cannot)
            side=side,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._flushed_at = 0.0  # clock time of the last hand-over of per-request counts
        self._tasks: set[asyncio.Task[None]] = set()

    # the state tools and tests read, owned by the parts
    @property
    def listen(self) -> bool:
        return self.feed.listen

    @listen.setter
    def listen(self, value: bool) -> None:
        self.feed.listen = value and self.feed.postgres

    @property
    def listening(self) -> bool:
        return self.feed.listener.listening

    @property
    def freshness_mode(self) -> str:
        """``listen`` while a LISTEN connection pushes writes here, else ``poll`` (SQLite, a pooler or
        standby without EVENTCTL_LISTEN_URL, or LISTEN reconnecting)."""
        return "listen" if self.feed.listen and self.feed.listener.listening else "poll"

    @property
    def freshness_note(self) -> str | None:
        """Why LISTEN cannot work over the URL it was given (None: it can, or it is not asked for)."""
        return self.feed.listener.impossible if self.feed.listen else None

    @property
    def listen_connects(self) -> int:
        return self.feed.listener.connects

    @property
    def failing(self) -> bool:
        return self.freshness.failing

    @property
    def last_success(self) -> float | None:
        return self.freshness.last_success

    @property
    def snapshot(self) -> dict[str, list[HeldEvent]]:
        """The pages held and their events, least recently used first (for tools and tests)."""
        return {route_of(key): unpack_events(self.cache.pages[key], self.deflater) for key in self.cache}

    # ------------------------------------------------------------ changes

    def _loaded(self, route: str, record: bytes) -> None:
        self.freshness.succeeded(loaded_at_of(record))
        self.cache.store(key_of(route), record)

    def _failed(self, exc: BaseException) -> None:
        self.freshness.failed(exc, len(self.cache))

    def _polled(self) -> None:
        self.freshness.recovered()
        self.metrics.freshness(self.freshness_mode)
        self.metrics.flush()  # the per-request counts reach prometheus-client once a poll
        self.metrics.data_age(0.0, len(self.cache))

    def _notified(self, change: Change) -> None:
        self._invalidate(change, "notify")

    async def _apply(self, change: Change) -> None:
        """A change from a poll; one the feed cannot name reloads the pages held (a few) or drops them."""
        if change.pages is not None:
            self._invalidate(change, "poll")
            return
        held = [route_of(key) for key in self.cache]
        # read after the poll's counter: each reloaded record is at least as new as the change
        records = await self.loader.read_now(held) if 0 < len(held) <= RELOAD_LIMIT else {}
        self._invalidate(change, "poll")
        for route, record in records.items():
            self.cache.store(key_of(route), record)

    def _invalidate(self, change: Change, source: str) -> None:
        if change.pages is None:
            count = self.cache.invalidate_all(change.version)
            self.loader.detach(None)
        else:
            count = self.cache.invalidate([key_of(page) for page in change.pages], change.version)
            self.loader.detach(list(change.pages))
        self.metrics.invalidated(count, source)
        self.metrics.data_age(0.0, len(self.cache))

    def invalidate(self, pages: Iterable[str] | None = None, source: str = "write", version: int | None = None) -> None:
        """Pages written in this process (None: any page), up to change counter ``version``
        (None: read now — call it after the write committed, from the thread that wrote).

        The cache belongs to the event loop: the change is handed to it, ahead of the response
        the calling thread is about to send.
        """
        if version is None:
            if self._loop is not None and threading.get_ident() == self._loop_thread:
                raise RuntimeError("invalidate() without a version reads the database: call it from a thread")
            try:
                with self.engine.connect() as conn:
                    version = read_counter(conn)
            except Exception:  # noqa: BLE001 - the feed takes the next change as unnamed
                self.feed.request_resync()
                return
        change = Change(None if pages is None else frozenset(pages), version)
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._invalidate(change, source)
        else:
            self.feed.call_in_loop(self._invalidate, change, source)

    async def refresh(self) -> None:
        """One whole poll, its change applied."""
        await self.feed.poll()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self.feed.start()

    async def stop(self) -> None:
        """Stop polling and listening; returns once no poll, load or LISTEN holds a connection."""
        await self.feed.stop()
        await self.loader.close()
        self.metrics.flush()

    # ------------------------------------------------------------ answers

    async def respond(
        self,
        raw_route: bytes | None,
        if_none_match: bytes | None,
        vary: tuple[bytes, bytes] = VARY,
        method: str | None = None,
    ) -> tuple[int, RawHeaders, bytes]:
        """Status, headers and body for one request.

        ``method``: the request is also counted here (the outermost fast path), by method and status.
        """
        now = self.clock()
        if now - self._flushed_at >= self.poll_interval:  # also while a poll hangs on a dead database
            self._flushed_at = now
            self.metrics.flush()
        fresh = self.freshness
        record = self._pages.get(raw_route) if raw_route else None  # type: ignore[arg-type]
        # the common case, without a detour: the page held, fresh, its answer computed and still
        # right, no If-None-Match, database fine
        if record is not None and if_none_match is None and not fresh.failing and self.feed.running:
            loaded_at, until, _stamp, etag, offset, size, kind = HEAD.unpack_from(record)
            if now < until and now - loaded_at < MAX_ENTRY_AGE and kind <= KIND_NULL:  # an answer kept
                self._pages.move_to_end(raw_route)  # type: ignore[arg-type]
                body = kept_body(record, offset, size, kind, self.deflater)
                outcome = "null" if kind == KIND_NULL else "event"
                if method is None:
                    self.metrics.cache_hit_answer(outcome)
                else:
                    self.metrics.cache_hit_request(outcome, method)
                cache_control = (b"cache-control", fresh.cache_control(until, now, False))
                return 200, [JSON_TYPE, content_length(len(body)), (b"etag", etag), vary, cache_control], body
        if not self.feed.running:
            self.start()  # also when the server runs no lifespan (uvicorn --lifespan off, mounted apps)
        answer = await self._answer(raw_route, now)
        if answer is fresh.unavailable or fresh.beyond_grace(now):
            status, headers, body = fresh.unavailable.status, [*fresh.unavailable.headers, vary], fresh.unavailable.body
        elif answer.etag is None:
            status, headers, body = answer.status, [*answer.headers, vary], answer.body
        else:
            stale = fresh.failing
            headers = [vary, (b"cache-control", fresh.cache_control(answer.until, now, stale))]
            if stale:
                self.metrics.stale_answer()
                headers.append((b"x-eventctl-stale", b"true"))
            if if_none_match is not None and matches(if_none_match, answer.etag):
                status, headers, body = 304, [(b"etag", answer.etag), *headers], b""
            else:
                status, headers, body = 200, answer.headers + headers, answer.body
        self.metrics.current_answer(outcome_of(status, body, headers))
        if method is not None:
            self.metrics.request("/api/v1/events/current", method, status)
        return status, headers, body

    async def _answer(self, raw: bytes | None, now: float) -> Answer:
        """The answer for a header, through the cache (loading its page on a miss)."""
        fresh = self.freshness
        if fresh.beyond_grace(now):
            return fresh.unavailable
        known = raw in self.keys
        key = self.keys.key(raw, self.cache.pages)
        if isinstance(key, Answer):  # no page, or a malformed header: counted like a page
            self.metrics.cache_hit() if known else self.metrics.cache_miss()
            return key
        record = self.cache.get(key)
        age = now - loaded_at_of(record) if record is not None else float("inf")
        if record is None or (not fresh.failing and age >= WAIT_AGE):
            self.metrics.cache_miss()
            if fresh.failing:  # do not wait on a dead database per request: the poller finds it back
                if record is None:
                    return fresh.unavailable
            else:
                try:
                    record = await self.loader.load(route_of(key))
                except Exception as exc:  # noqa: BLE001 - an outage: the page held, if any, within grace
                    self._failed(exc)
                    record = self.cache.get(key)
                    if record is None:
                        return fresh.unavailable
        else:
            self.metrics.cache_hit()
            self.cache.touch(key)
            if age >= MAX_ENTRY_AGE and not fresh.failing:
                self.loader.request(route_of(key))  # in the background: answered from memory meanwhile
        loaded_at, until, _stamp, etag, offset, size, kind = HEAD.unpack_from(record)
        if kind == KIND_BROKEN:
            return fresh.unavailable
        if now < until and kind != KIND_OTHER:  # computed, and still right
            return Answer.ok(kept_body(record, offset, size, kind, self.deflater), until, etag)
        return self._recompute(key, record, loaded_at, now)

    def _recompute(self, key: bytes, record: bytes, loaded_at: float, now: float) -> Answer:
        """The page's answer at ``now`` from its events (the core's rules); kept in the record."""
        complete_until = loaded_at + self.freshness.horizon  # what starts later was not loaded
        if now >= complete_until:
            return self.freshness.unavailable  # only while failing: a fresh page is reloaded long before
        answer, kept = answer_at(record, route_of(key), now, complete_until, self.deflater)
        if kept is not None:
            self.cache.replace(key, record, kept)
        return answer
