"""Baselines for bench/current_http.py: the same fixed JSON body from a bare FastAPI
route, a bare Starlette route and a raw ASGI callable (uvicorn factories; body read from BENCH_BODY_FILE)."""

from __future__ import annotations

import json
import os
from pathlib import Path

PATH = "/api/v1/events/current"


def _body() -> bytes:
    return Path(os.environ["BENCH_BODY_FILE"]).read_bytes()


def fastapi_app():  # noqa: ANN201
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()
    body = _body()

    @app.get(PATH)
    async def current() -> Response:
        return Response(body, media_type="application/json")

    return app


def raw_asgi_app():  # noqa: ANN201
    """No framework: one ASGI callable answering every request with the same bytes (status, headers, body)."""
    body = _body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if os.environ.get("BENCH_HEADERS_FILE"):  # the very headers eventctl answered with (less date and server)
        pairs = json.loads(Path(os.environ["BENCH_HEADERS_FILE"]).read_text())
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    done = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http":
            return
        await send(start)
        await send(done)

    return app


def starlette_app():  # noqa: ANN201
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = _body()

    async def current(request):  # noqa: ANN001, ANN202
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route(PATH, current)])


def eventctl_without_metrics():  # noqa: ANN201
    """The shipped app with nothing counted per request (bench/metrics_overhead.py)."""
    from eventctl.web.app import app_from_env

    app = app_from_env()

    class Uncounted(dict):  # every increment lands nowhere
        def __setitem__(self, key, value):  # noqa: ANN001, ANN204
            pass

        def __missing__(self, key):  # noqa: ANN001, ANN204
            return 0

    metrics = app.fastapi.state.metrics
    metrics._pending = Uncounted()
    metrics.flush = lambda: None  # keeps the Uncounted in place
    return app
