"""Prometheus metrics for the web app (``GET /metrics``), through prometheus-client.

uvicorn workers are processes, so ``eventctl serve`` runs prometheus-client in its
**multiprocess mode**: it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh private
directory before the workers start, each worker writes its samples there, and
whichever worker answers ``/metrics`` aggregates every worker's files — one set
of numbers for the whole server, with no per-worker label to sum by hand. An app
made in-process without that variable (tests, other ASGI servers with one
process) keeps its own registry.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("eventctl.web")
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
CURRENT_ROUTE = "/api/v1/events/current"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
CURRENT_OUTCOMES = ("event", "null", "conflict", "bad_request", "not_modified", "stale", "unavailable")
_ROUTES = (
    (re.compile(r"^/api/v1/events/current$"), "/api/v1/events/current"),
    (re.compile(r"^/api/v1/events/?$"), "/api/v1/events/"),
    (re.compile(r"^/api/v1/events/[0-9a-fA-F-]{1,36}/history$"), "/api/v1/events/{uid}/history"),
    (re.compile(r"^/api/v1/events/[0-9a-fA-F-]{1,36}$"), "/api/v1/events/{uid}"),
    (re.compile(r"^/(healthz|readyz|metrics|openapi\.json|docs|redoc)$"), None),
)


def route_label(path: str) -> str:
    """The route template of a path: a bounded set of labels, whatever clients send."""
    for pattern, label in _ROUTES:
        if pattern.match(path):
            return label or path
    return "other"


class Metrics:
    """Every metric the app exports; the service and the middleware call the methods below."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_VAR))
        # multiprocess: samples go to files and are collected at scrape time, not from a registry
        registry = None if self.multiprocess else CollectorRegistry()
        self.registry = registry
        self.requests = Counter(
            "eventctl_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=registry,
        )  # fmt: skip
        self.current_answers = Counter(
            "eventctl_current_answers", "/current answers by outcome", ["outcome"], registry=registry
        )
        self.cache_lookups = Counter(
            "eventctl_current_cache_lookups", "/current cache lookups, by result (hit, miss)", ["result"],
            registry=registry,
        )  # fmt: skip
        self.loads = Counter("eventctl_current_loads", "Loads from the database for /current", registry=registry)
        self.load_seconds = Histogram(
            "eventctl_current_load_seconds", "Time to load /current data from the database", registry=registry
        )
        self.invalidations = Counter(
            "eventctl_current_invalidations", "Cache entries dropped because of a write, by source",
            ["source"], registry=registry,
        )  # fmt: skip
        self.stale_answers = Counter(
            "eventctl_current_stale_answers", "/current answers served from last good data during an outage",
            registry=registry,
        )  # fmt: skip
        self.db_errors = Counter(
            "eventctl_database_errors", "Database errors met while answering or refreshing", ["where"],
            registry=registry,
        )  # fmt: skip
        self.cache_age = Gauge(
            "eventctl_current_data_age_seconds", "Age of the oldest data /current answers from (worst worker)",
            registry=registry, multiprocess_mode="max",
        )  # fmt: skip
        self.cache_entries = Gauge(
            "eventctl_current_cache_entries", "Pages held in the /current cache (all workers)",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.replica_fallbacks = Counter(
            "eventctl_current_replica_fallbacks",
            "/current loads read from the primary because the replica was behind a known write or down",
            registry=registry,
        )
        self.freshness_mode = Gauge(
            "eventctl_freshness_mode", "How writes reach this worker: listen (LISTEN/NOTIFY) or poll (1 = current)",
            ["mode"], registry=registry, multiprocess_mode="liveall",
        )  # fmt: skip
        # per-request counts wait in a Counter (event loop thread only) until flush(), keyed by the
        # tuple of label children one event increments: one dict increment instead of prometheus-
        # client's locked write to its multiprocess file for each
        self._pending: collections.Counter[tuple[Any, ...]] = collections.Counter()
        self._flush_failed = False
        hit, miss = self.cache_lookups.labels("hit"), self.cache_lookups.labels("miss")
        answers = {o: self.current_answers.labels(o) for o in CURRENT_OUTCOMES}
        self._answer_keys = {o: (child,) for o, child in answers.items()}
        self._hit_answer_keys = {o: (hit, child) for o, child in answers.items()}
        self._hit_key, self._miss_key = (hit,), (miss,)
        self._request_keys: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._hit_request_keys: dict[tuple[str, str], tuple[Any, ...]] = {}

    def flush(self) -> None:
        """Hand the per-request counts to prometheus-client (event loop thread: the poll loop, /metrics)."""
        pending, self._pending = self._pending, collections.Counter()
        try:
            for children, count in pending.items():
                for child in children:
                    child.inc(count)
        except Exception as exc:  # noqa: BLE001 - counts lost, never an answer (flush runs on the request path too)
            if not self._flush_failed:
                log.warning("could not record metrics (%s); counts are dropped until it works again", exc)
            self._flush_failed = True
        else:
            self._flush_failed = False

    def replica_fallback(self) -> None:
        """From a load's thread: prometheus-client's counters take a lock of their own."""
        self.replica_fallbacks.inc()

    def freshness(self, mode: str) -> None:
        for name in ("listen", "poll"):
            self.freshness_mode.labels(name).set(1 if name == mode else 0)

    # ---- called by the /current service (pre-bound label children, counted in _pending)
    def current_answer(self, outcome: str) -> None:
        self._pending[self._answer_keys[outcome]] += 1

    def cache_hit_answer(self, outcome: str) -> None:
        """A cache hit answered with ``outcome``: both counters, one increment (the hot path)."""
        self._pending[self._hit_answer_keys[outcome]] += 1

    def cache_hit_request(self, outcome: str, method: str) -> None:
        """A cache hit answered 200 with ``outcome`` to a ``method`` request: the three counters
        of the outermost fast path, one increment."""
        key = self._hit_request_keys.get((outcome, method))
        if key is None:
            request = self._request_children(CURRENT_ROUTE, method, 200)
            key = self._hit_request_keys[(outcome, method)] = (*self._hit_answer_keys[outcome], *request)
        self._pending[key] += 1

    def cache_hit(self) -> None:
        self._pending[self._hit_key] += 1

    def cache_miss(self) -> None:
        self._pending[self._miss_key] += 1

    def loaded(self, seconds: float) -> None:
        self.loads.inc()
        self.load_seconds.observe(seconds)

    def invalidated(self, count: int, source: str) -> None:
        if count:
            self.invalidations.labels(source).inc(count)

    def stale_answer(self) -> None:
        self.stale_answers.inc()

    def db_error(self, where: str) -> None:
        self.db_errors.labels(where).inc()

    def data_age(self, seconds: float, entries: int) -> None:
        self.cache_age.set(seconds)
        self.cache_entries.set(entries)

    # ---- called by the request middleware (the hot path: one dict lookup per request)
    def request(self, path: str, method: str, status: int) -> None:
        self._pending[self._request_children(path, method, status)] += 1

    def _request_children(self, path: str, method: str, status: int) -> tuple[Any, ...]:
        route = CURRENT_ROUTE if path == CURRENT_ROUTE else route_label(path)
        key = (route, method if method in _METHODS else "OTHER", status)
        children = self._request_keys.get(key)
        if children is None:  # bounded: route templates × known methods × statuses
            children = self._request_keys[key] = (self.requests.labels(key[0], key[1], str(status)),)
        return children

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetricsAndLog:
    """ASGI middleware: count every answer by route and status, and write the access log.

    The log (one line per request, text or JSON: time, method, route template, path,
    status, duration — never headers, tokens or bodies) covers every admin and ops
    request, and /current answers that are not 200/304: a page-load endpoint logged
    per hit costs more than it answers (see README); /metrics counts every hit.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path, method = scope.get("path", ""), scope.get("method", "")
            self.metrics.request(path, method, status)
            if not (status in (200, 304) and path == CURRENT_ROUTE):
                access_log(method, path, status, time.perf_counter() - started)


def access_log(method: str, path: str, status: int, seconds: float) -> None:
    """One access line (text or JSON): never headers, tokens or bodies."""
    import logging

    from eventctl.text import for_terminal

    shown = for_terminal(path[:300])
    record = {"method": method, "route": route_label(path), "path": shown, "status": status,
              "ms": round(seconds * 1000, 2)}  # fmt: skip
    # the JSON formatter (web.server.JsonLineFormatter) writes ``access`` as the line's fields
    logging.getLogger("eventctl.access").info(
        '"%s %s" %s %.1fms', method, shown, status, seconds * 1000, extra={"access": record}
    )
