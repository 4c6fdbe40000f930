"""Helpers shared by the web tests: the app, requests, and waits (the ``client`` and ``token``
fixtures are in ``conftest.py``)."""

from __future__ import annotations

import socket
import time

ALLOWED = "http://allowed.example"
CURRENT = "/api/v1/events/current"
API = "/api/v1/events/"
DEADLINE = 10.0  # how long to wait before failing, not a bound: bench/scale.py measures latency


def make_app(db_url, **overrides):
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    settings = Settings(**{"database_url": db_url, "cors_origins": (ALLOWED,), "poll_interval": 0.1, **overrides})
    return create_app(settings)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def post(client, token, body, **params):
    return client.post(API, json=body, headers=auth(token), params=params)


def cur(client, route=None, **headers):
    if route is not None:
        headers["X-Page-Route"] = route
    return client.get(CURRENT, headers=headers)


def free_port() -> int:
    """A port nobody listens on now (another process may take it before the caller binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_of(client):
    return client.app.fastapi.state.current


def wait_for(predicate, deadline: float = DEADLINE, step: float = 0.005) -> float | None:
    """Seconds until ``predicate()`` held, or None if it never did within ``deadline``."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def wait_listening(service, connects: int = 1) -> None:
    assert wait_for(lambda: service.listening and service.listen_connects >= connects, 10), "never listened"


def settle(client) -> None:
    """Wait for LISTEN (PostgreSQL) and one whole poll after it: no start-up resync is left to land later."""
    service = service_of(client)
    if service.listen:
        wait_listening(service)
    client.portal.call(service.refresh)
