"""The optional ASGI app (SPEC §4): ``create_app(settings)``; served by ``eventctl serve``.

The routes live in ``web/routers/`` (one router per resource) and reach the app's
state through ``web/deps.py``; errors are answered in ``web/errors.py`` from the
table in ``eventctl/errors.py``. Around FastAPI: ``AdminAuth`` (401 before any
body is read), ``CurrentFastPath`` (the hot path), the metrics and access log, CORS,
and outermost the fast path again for /current requests without ``Origin``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from eventctl import __version__
from eventctl.config import Settings, load_settings
from eventctl.db import make_engine
from eventctl.web.auth import AdminAuth
from eventctl.web.current import CurrentFastPath, CurrentService
from eventctl.web.errors import install_error_handlers
from eventctl.web.metrics import Metrics, RequestMetricsAndLog
from eventctl.web.routers import ROUTERS

MAX_BODY_BYTES = 1024 * 1024  # larger bodies: 413 before they are read whole


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    api.state.current.start()
    yield
    await api.state.current.stop()
    api.state.engine.dispose()
    if api.state.current.read_engine is not api.state.engine:
        api.state.current.read_engine.dispose()


def listen_url(raw: str | None, variable: str = "EVENTCTL_LISTEN_URL") -> Any:
    """``EVENTCTL_LISTEN_URL`` (or ``EVENTCTL_READ_DATABASE_URL``) as a PostgreSQL URL on psycopg's driver:
    LISTEN and hot-standby replicas are PostgreSQL's; anything else is refused at start (exit 2)."""
    if raw is None:
        return None
    from sqlalchemy.engine import make_url

    from eventctl.errors import InvalidInput

    try:
        url = make_url(raw)
    except Exception:  # noqa: BLE001
        raise InvalidInput(f"{variable} could not be parsed.") from None
    if url.get_backend_name() != "postgresql":
        raise InvalidInput(f"{variable} must be a PostgreSQL URL (postgresql+psycopg://…).")
    return url.set(drivername="postgresql+psycopg")


def create_app(settings: Settings | None = None) -> EventctlApp:
    """Build the ASGI app. Nothing connects to the database until a request or the poller does."""
    settings = settings or load_settings()
    engine = make_engine(settings.resolved_database_url())
    read_url = listen_url(settings.read_database_url, "EVENTCTL_READ_DATABASE_URL")
    read_engine = make_engine(read_url.render_as_string(hide_password=False)) if read_url is not None else None
    metrics = Metrics()
    service = CurrentService(
        engine,
        cache_ttl=settings.cache_ttl,
        stale_grace=settings.stale_grace,
        poll_interval=settings.poll_interval,
        max_pages=settings.cache_pages,
        metrics=metrics,
        listen_url=listen_url(settings.listen_url),
        read_engine=read_engine,
    )
    api = FastAPI(
        title="eventctl",
        version=__version__,
        summary="Page-scoped, time-bound review campaigns.",
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    api.state.settings, api.state.engine, api.state.current, api.state.metrics = settings, engine, service, metrics
    install_error_handlers(api)
    for router in ROUTERS:
        api.include_router(router)
    return EventctlApp(api, build_stack(api, settings=settings, engine=engine, service=service, metrics=metrics))


class EventctlApp(CurrentFastPath):
    """The ASGI app ``eventctl serve`` runs: outermost, the /current fast path for same-origin requests
    (nothing in between on the hot path), over the middleware stack that ``build_stack`` assembles;
    the FastAPI app inside it is ``fastapi`` (routes, OpenAPI, state)."""

    def __init__(self, api: FastAPI, stack: ASGIApp) -> None:
        super().__init__(stack, api.state.current, outermost=True)
        self.fastapi = api


def build_stack(
    api: FastAPI, *, settings: Settings, engine: Engine, service: CurrentService, metrics: Metrics
) -> ASGIApp:
    """The one place the middleware order is decided (as Starlette's ``build_middleware_stack``),
    innermost first: FastAPI; ``AdminAuth`` (401 before any body is read); ``CurrentFastPath`` for
    cross-origin /current (answered under CORS, past FastAPI's routing); ``RequestMetricsAndLog``;
    ``CORSMiddleware`` (deny by default). ``EventctlApp`` wraps it all."""
    layers: list[tuple[Any, dict[str, Any]]] = [
        (AdminAuth, {"engine": engine, "metrics_public": settings.metrics_public}),
        (CurrentFastPath, {"service": service}),
        (RequestMetricsAndLog, {"metrics": metrics}),
        (
            CORSMiddleware,
            {
                "allow_origins": list(settings.cors_origins),
                "allow_methods": ["GET", "HEAD", "POST", "PUT", "DELETE"],
                "allow_headers": ["X-Page-Route", "If-None-Match", "Authorization", "Content-Type"],
                "expose_headers": ["ETag", "X-Eventctl-Stale"],
                "allow_credentials": False,
                "max_age": 600,
            },
        ),
    ]
    app: ASGIApp = api
    for layer, options in layers:
        app = layer(app, **options)
    return app


def app_from_env() -> EventctlApp:
    """uvicorn factory: settings resolved now, in each worker (``eventctl serve``)."""
    import gc
    import os

    from eventctl.config import SERVE_SETTINGS_VAR

    handed = os.environ.get(SERVE_SETTINGS_VAR)
    app = create_app(Settings.from_json(handed) if handed else load_settings())
    # what import and start-up made lives as long as the worker: frozen, the collector never
    # walks it again, only what requests make (CPython's advice for long-running servers)
    gc.collect()
    gc.freeze()
    return app
