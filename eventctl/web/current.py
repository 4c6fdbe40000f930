"""``GET``/``HEAD /api/v1/events/current``: resolved from memory, cache-friendly, outage-tolerant.

The database is off the hot path: a poller reads the change counter
(``eventctl_state.version``, bumped in the same transaction as every write made
by the CLI or the app) at most every ``poll_interval`` seconds and reloads a
snapshot of the active, not-yet-expired events when it moved. Requests are
answered from that snapshot with the core's own rules (``resolve_in_memory``),
each answer encoded once and reused until the page's next start/end boundary.

If the database becomes unreachable, answers keep coming from the last good
snapshot (windows re-applied against the clock) for ``stale_grace`` seconds,
marked ``X-Eventctl-Stale: true``; then 503.

``CurrentFastPath`` answers before FastAPI's routing (the hot path); the documented
route (``routers/current.py``) answers through the same ``send_current``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
FULL_RELOAD_SECONDS = 60.0
MAX_CACHED_ANSWERS = 20_000
# CORSMiddleware (always outermost, see create_app) appends ", Origin" to every Vary.
_VARY = (b"vary", b"X-Page-Route")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    etag: bytes | None  # set on cacheable (200) answers
    until: float  # epoch seconds: the answer may change then (next boundary); inf if never
    headers: RawHeaders  # content-type, content-length and, for errors, what render_error adds

    @classmethod
    def ok(cls, body: bytes, until: float) -> Answer:
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
        return cls(200, body, etag, until, _entity_headers(body))

    @classmethod
    def error(cls, exc: EventctlError, until: float) -> Answer:
        status, extra, body = render_error(exc)
        return cls(status, body, None, until, [*_entity_headers(body), _NO_STORE, _VARY, *extra])


def _entity_headers(body: bytes) -> RawHeaders:
    return [JSON_TYPE, (b"content-length", str(len(body)).encode("ascii"))]


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
    ) -> None:
        from eventctl.web.metrics import Metrics

        self.metrics = metrics or Metrics()
        self.engine = engine
        self.cache_ttl = cache_ttl
        self.stale_grace = stale_grace
        self.poll_interval = poll_interval
        self.clock = clock
        self.snapshot: dict[str, list[Any]] | None = None
        self.version: int | None = None
        self.loaded_at = 0.0
        self.last_success: float | None = None
        self.failing = False
        self._answers: dict[bytes | None, Answer] = {}
        self._task: asyncio.Task[None] | None = None
        self._refresh_lock: asyncio.Lock | None = None
        # held by the worker thread while it polls: a cancelled refresh leaves its thread running
        self._polling = threading.Lock()
        # the cause is logged once by refresh(), not on every request
        self._unavailable = Answer.error(DatabaseUnavailable("The database is unavailable."), math.inf)

    # ------------------------------------------------------------ freshness

    def _poll_sync(self) -> None:
        """In a worker thread: read the counter; reload the snapshot if it moved."""
        import sqlalchemy as sa

        from eventctl.db import read_session
        from eventctl.events import load_snapshot

        with self._polling:
            now = self.clock()
            with self.engine.connect() as conn:
                version = conn.execute(sa.text("SELECT version FROM eventctl_state WHERE id = 1")).scalar()
            stale_snapshot = now - self.loaded_at >= FULL_RELOAD_SECONDS
            if self.snapshot is None or version != self.version or stale_snapshot:
                started = time.perf_counter()
                with read_session(self.engine) as session:
                    snapshot = load_snapshot(session, at=datetime.fromtimestamp(now, UTC))
                self.metrics.loaded(time.perf_counter() - started)
                self.metrics.invalidated(len(self._answers), "poll")
                self.snapshot, self.version, self.loaded_at = snapshot, version, now
                self._answers = {}
            self.last_success, self.failing = self.clock(), False
            self.metrics.data_age(0.0, len(self._answers))

    async def refresh(self) -> None:
        from anyio import to_thread

        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            try:
                await to_thread.run_sync(self._poll_sync)
            except Exception as exc:  # noqa: BLE001 - an outage: keep the last good data
                self.metrics.db_error("current")
                if self.last_success is not None:
                    self.metrics.data_age(self.clock() - self.last_success, len(self._answers))
                if not self.failing:
                    log.warning("database unavailable, serving last good data: %s", str(exc).splitlines()[0])
                self.failing = True

    async def _poll_loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.poll_interval)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def stop(self) -> None:
        """Stop polling; returns once no poll holds a connection (the engine may be disposed then)."""
        from anyio import to_thread

        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        await to_thread.run_sync(self._wait_for_poll)

    def _wait_for_poll(self) -> None:
        with self._polling:
            pass

    def invalidate(self) -> None:
        """After a write in this process: reload on the next request, not a poll later."""
        self.metrics.invalidated(len(self._answers), "write")
        self.version = None
        self._answers = {}

    # ------------------------------------------------------------ answers

    def _compute(self, raw: bytes | None, now: float) -> Answer:
        from eventctl.events import next_boundary, resolve_in_memory
        from eventctl.models import event_to_json
        from eventctl.routes import normalize_route

        assert self.snapshot is not None
        try:
            route = normalize_route(raw)  # the header's bytes, read as UTF-8
        except MalformedRoute as exc:
            return Answer.error(MalformedPageHeader(exc.message), math.inf)
        if route is None:
            return Answer.ok(b"null", math.inf)
        events = self.snapshot.get(route, [])
        at = datetime.fromtimestamp(now, UTC)
        boundary = next_boundary(events, at=at)
        until = boundary.timestamp() if boundary is not None else math.inf
        try:
            event = resolve_in_memory(events, route=route, at=at)
        except Conflict as exc:
            return Answer.error(exc, until)
        return Answer.ok(b"null" if event is None else dumps(event_to_json(event, at)), until)

    async def respond(self, raw_route: bytes | None, if_none_match: bytes | None) -> tuple[int, RawHeaders, bytes]:
        """Status, headers and body for one request. The only code path for /current."""
        status, headers, body = await self._respond(raw_route, if_none_match)
        self.metrics.current_answer(_outcome(status, body, headers))
        return status, headers, body

    async def _respond(self, raw_route: bytes | None, if_none_match: bytes | None) -> tuple[int, RawHeaders, bytes]:
        if self._task is None:
            self.start()  # also when the server runs no lifespan (uvicorn --lifespan off, mounted apps)
        if self.snapshot is None and not self.failing:
            await self.refresh()  # first requests wait for the first load (it may be in flight)
        now = self.clock()
        stale = self.failing
        if self.snapshot is None or (
            stale and (self.last_success is None or now - self.last_success > self.stale_grace)
        ):
            return self._unavailable.status, list(self._unavailable.headers), self._unavailable.body
        if self.version is None and not stale:
            await self.refresh()
        answer = self._answers.get(raw_route)
        if answer is None or now >= answer.until:
            self.metrics.cache_miss()
            answer = self._compute(raw_route, now)
            if len(self._answers) >= MAX_CACHED_ANSWERS:
                self._answers = {}
            self._answers[raw_route] = answer
        else:
            self.metrics.cache_hit()
        if answer.etag is None:
            return answer.status, list(answer.headers), answer.body
        headers = [(b"etag", answer.etag), _VARY, (b"cache-control", self._cache_control(answer, now, stale))]
        if stale:
            self.metrics.stale_answer()
            headers.append((b"x-eventctl-stale", b"true"))
        if if_none_match is not None and _matches(if_none_match, answer.etag):
            return 304, headers, b""
        return 200, answer.headers + headers, answer.body

    def _cache_control(self, answer: Answer, now: float, stale: bool) -> bytes:
        """max-age ≤ TTL and ≤ the next boundary; stale-if-error never reaches past it either.

        Stale answers (database down) get max-age=0, so caches come back to us, and
        stale-if-error for what is left of the grace period.
        """
        until_boundary = answer.until - now
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


async def send_current(service: CurrentService, scope: Scope, send: Send) -> None:
    """Answer GET or HEAD /current on ``send``: HEAD gets GET's status and headers, no body."""
    route = inm = None
    for name, value in scope["headers"]:
        if name == b"x-page-route":
            route = value  # raw bytes: normalize_route reads them as UTF-8
        elif name == b"if-none-match":
            inm = value
    status, headers, body = await service.respond(route, inm)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class CurrentFastPath:
    """ASGI middleware answering GET/HEAD /current before FastAPI's routing (the hot path)."""

    def __init__(self, app: ASGIApp, service: CurrentService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CURRENT_PATH and scope["method"] in ("GET", "HEAD"):
            await send_current(self.service, scope, send)
            return
        await self.app(scope, receive, send)
