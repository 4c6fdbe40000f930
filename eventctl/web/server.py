"""Running the app under uvicorn (``eventctl serve``): the CLI's only door to the web stack."""

from __future__ import annotations

import importlib.util

from eventctl.config import SERVE_SETTINGS_VAR, Settings


def available() -> bool:
    """The ``serve`` extra is installed (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("fastapi", "uvicorn"))
    except (ImportError, ValueError, AttributeError):  # a module entry blocked or half-imported
        return False


def run(settings: Settings) -> None:
    """Serve until stopped; worker processes take ``settings`` as resolved here (app_from_env)."""
    import os

    import uvicorn

    os.environ[SERVE_SETTINGS_VAR] = settings.to_json()
    uvicorn.run(
        "eventctl.web.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        proxy_headers=False,
        server_header=False,
        log_level="info",
    )
