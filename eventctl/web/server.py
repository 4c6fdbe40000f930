"""Running the app under an ASGI server (``eventctl serve``): the CLI's only door to the web stack.

Two servers are supported: granian (Rust HTTP, the default where it is installed: the
``serve`` extra installs it) and uvicorn (pure-Python wheels everywhere: the
``serve-uvicorn`` extra). Both run ``worker_app`` in each worker process, with the
settings resolved by the CLI handed over in the environment, eventctl's own access log
and prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from eventctl.config import SERVE_SETTINGS_VAR, Settings

SERVERS = ("granian", "uvicorn")
WORKER_APP = "eventctl.web.server:worker_app"
log = logging.getLogger("eventctl.web")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):  # a module entry blocked or half-imported
        return False


def available() -> bool:
    """The web app's libraries and at least one server are installed (checked without importing them)."""
    return all(_installed(name) for name in ("fastapi", "prometheus_client")) and any(map(_installed, SERVERS))


def installed_servers() -> list[str]:
    return [name for name in SERVERS if _installed(name)]


def pick(requested: str | None) -> str:
    """The server to run: the one asked for (``--server``/``EVENTCTL_SERVER``), else granian where it is
    installed, else uvicorn. Raises LookupError naming what to install when the one asked for is missing."""
    if requested is None:
        return "granian" if _installed("granian") else "uvicorn"
    if not _installed(requested):
        extra = "serve" if requested == "granian" else "serve-uvicorn"
        raise LookupError(f"The {requested} server is not installed: pip install 'eventctl[{extra}]'.")
    return requested


def worker_app() -> Any:
    """Each worker's app factory: the app as ``app_from_env`` builds it, with a log line once its
    lifespan has started and once its shutdown (the /current cache's ``stop()``, the engine's
    connections closed) has finished. Only the lifespan is wrapped: requests take no extra layer."""
    import os

    from eventctl.web.app import app_from_env

    app = app_from_env()
    router = app.fastapi.router
    inner = router.lifespan_context

    @asynccontextmanager
    async def logged(api: Any) -> AsyncIterator[Any]:
        async with inner(api) as state:
            log.info("worker %d ready", os.getpid())
            yield state
        log.info("worker %d stopped: /current cache stopped, database connections closed", os.getpid())

    router.lifespan_context = logged
    return app


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, and the message (or the access record)."""

    def format(self, record: Any) -> str:
        import json
        from datetime import UTC, datetime

        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        access = getattr(record, "access", None)
        data.update(access) if access else data.update(message=record.getMessage())
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def log_config(log_format: str, server: str = "uvicorn") -> dict[str, Any]:
    """The server's own logging plus eventctl's access log, all on stderr; with ``json`` every
    line the server or eventctl logs is one JSON object."""
    import copy

    if server == "granian":
        from granian.log import LOGGING_CONFIG as base
    else:
        from uvicorn.config import LOGGING_CONFIG as base
    config: dict[str, Any] = copy.deepcopy(base)
    config["formatters"]["eventctl"] = (
        {"()": "eventctl.web.server.JsonLineFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    for handler in config["handlers"].values():
        handler["stream"] = "ext://sys.stderr"
        if log_format == "json":
            handler["formatter"] = "eventctl"
    config["handlers"]["eventctl"] = {
        "class": "logging.StreamHandler",
        "formatter": "eventctl",
        "stream": "ext://sys.stderr",
    }
    # propagates: the root logger has no handler under either server (no double lines), and test captures see it
    config["loggers"]["eventctl"] = {"handlers": ["eventctl"], "level": "INFO", "propagate": True}
    return config


class StartFailed(Exception):
    """The server could not start (the address is taken, a worker died starting)."""


def run(settings: Settings, server: str) -> None:
    """Serve until stopped; worker processes take ``settings`` as resolved here (app_from_env).

    prometheus-client's multiprocess mode gets a fresh private directory, set before
    the workers start so each of them writes its samples there.
    """
    import os
    import shutil
    import tempfile

    from eventctl.web.metrics import MULTIPROC_VAR

    metrics_dir = tempfile.mkdtemp(prefix="eventctl-metrics-")
    os.environ[SERVE_SETTINGS_VAR] = settings.to_json()
    os.environ[MULTIPROC_VAR] = metrics_dir
    try:
        (_run_granian if server == "granian" else _run_uvicorn)(settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(MULTIPROC_VAR, None)
        os.environ.pop(SERVE_SETTINGS_VAR, None)


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    try:
        uvicorn.run(
            WORKER_APP,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            proxy_headers=False,
            server_header=False,
            access_log=False,  # eventctl's own access log (web.metrics.RequestMetricsAndLog)
            log_config=log_config(settings.log_format, "uvicorn"),
            log_level="info",
        )
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start
        if exc.code not in (0, None):
            raise StartFailed() from None


def _run_granian(settings: Settings) -> None:
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    if settings.port:  # granian binds with SO_REUSEPORT: a second server on a taken port would share it silently
        import socket

        try:
            socket.create_server((settings.host, settings.port)).close()
        except OSError as exc:
            logging.getLogger("eventctl.web").error("cannot bind %s:%s: %s", settings.host, settings.port, exc)
            raise StartFailed() from None
    server = Server(
        WORKER_APP,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,  # with the lifespan: the cache's start() and stop()
        workers=settings.workers,
        factory=True,
        websockets=False,
        log_level=LogLevels.info,
        log_dictconfig=log_config(settings.log_format, "granian"),
        log_access=False,  # eventctl's own access log
    )
    try:
        server.serve()
    except OSError:  # the address cannot be bound (taken, not local)
        raise StartFailed() from None
    except SystemExit as exc:  # granian exits 1 when a worker died (e.g. while starting)
        if exc.code not in (0, None):
            raise StartFailed() from None
