"""Baselines for bench/current_http.py: the same fixed JSON body from a bare FastAPI
route and a bare Starlette route (uvicorn factories; body read from BENCH_BODY_FILE)."""

from __future__ import annotations

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


def starlette_app():  # noqa: ANN201
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = _body()

    async def current(request):  # noqa: ANN001, ANN202
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route(PATH, current)])


def eventctl_without_metrics():  # noqa: ANN201
    """The shipped app with its request-metrics/access-log middleware taken out (bench/metrics_overhead.py)."""
    from eventctl.web.app import app_from_env
    from eventctl.web.metrics import RequestMetricsAndLog

    app = app_from_env()
    assert isinstance(app.app, RequestMetricsAndLog)  # CORS(RequestMetricsAndLog(fast path ...))
    fastapi = app.fastapi
    app.app = app.app.app
    app.fastapi = fastapi
    return app
