"""The ASGI adapters: ``CurrentFastPath`` (answers /current before FastAPI's routing, the hot
path) and ``send_current`` (the documented route answers through it), both over ``respond``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from eventctl.web.current.service import CurrentService

EVENTS_PREFIX = "/api/v1/events"
CURRENT_PATH = f"{EVENTS_PREFIX}/current"
# Under CORSMiddleware (cross-origin requests, see create_app) it appends ", Origin" to Vary;
# the outermost fast path answers the other requests with Vary as CORSMiddleware would write it.
VARY_ORIGIN = (b"vary", b"X-Page-Route, Origin")


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


async def send_current(service: CurrentService, scope: Scope, send: Send) -> None:
    """Answer GET or HEAD /current on ``send`` (under CORS, which completes Vary). HEAD gets GET's
    status and headers, no body."""
    route, inm, _cross = _request_headers(scope)
    status, headers, body = await service.respond(route, inm)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


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
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
                return
        await self.app(scope, receive, send)
