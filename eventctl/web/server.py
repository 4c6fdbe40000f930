"""Running the app under uvicorn (``eventctl serve``): the CLI's only door to the web stack."""

from __future__ import annotations

import importlib.util
from typing import Any

from eventctl.config import SERVE_SETTINGS_VAR, Settings


def available() -> bool:
    """The ``serve`` extra is installed (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("fastapi", "uvicorn", "prometheus_client"))
    except (ImportError, ValueError, AttributeError):  # a module entry blocked or half-imported
        return False


def log_config(log_format: str) -> dict[str, Any]:
    """uvicorn's own logging, plus eventctl's access log (text or one JSON object per line)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "formatters": dict(LOGGING_CONFIG["formatters"])}
    config["handlers"] = dict(LOGGING_CONFIG["handlers"])
    config["loggers"] = dict(LOGGING_CONFIG["loggers"])
    config["formatters"]["eventctl"] = (
        {"()": "eventctl.web.server.JsonLineFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    config["handlers"]["eventctl"] = {
        "class": "logging.StreamHandler",
        "formatter": "eventctl",
        "stream": "ext://sys.stderr",
    }
    # propagates: the root logger has no handler under uvicorn (no double lines), and test captures see it
    config["loggers"]["eventctl"] = {"handlers": ["eventctl"], "level": "INFO", "propagate": True}
    return config


class JsonLineFormatter:
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
        message = record.getMessage()
        access = getattr(record, "access", None)
        data.update(access) if access else data.update(message=message)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def run(settings: Settings) -> None:
    """Serve until stopped; worker processes take ``settings`` as resolved here (app_from_env).

    prometheus-client's multiprocess mode gets a fresh private directory, set before
    the workers start so each of them writes its samples there.
    """
    import os
    import shutil
    import tempfile

    import uvicorn

    from eventctl.web.metrics import MULTIPROC_VAR

    metrics_dir = tempfile.mkdtemp(prefix="eventctl-metrics-")
    os.environ[SERVE_SETTINGS_VAR] = settings.to_json()
    os.environ[MULTIPROC_VAR] = metrics_dir
    try:
        uvicorn.run(
            "eventctl.web.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            proxy_headers=False,
            server_header=False,
            access_log=False,  # eventctl's own access log (web.metrics.RequestMetricsAndLog)
            log_config=log_config(settings.log_format),
            log_level="info",
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(MULTIPROC_VAR, None)
