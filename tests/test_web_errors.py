"""Every domain exception answers over HTTP with its own status and body shape, its cause never sent."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from eventctl.errors import Conflict, DatabaseUnavailable, EventctlError, InvalidInput, Unauthorized, error_table

CAUSE = "connection to server at 10.0.0.7 (user 'svc'), psycopg said: secret"


def _make(cls: type[EventctlError]) -> EventctlError:
    if issubclass(cls, Conflict):
        return cls("Two live events.", ["u1", "u2"], cause=CAUSE)
    return cls("It went wrong.", cause=CAUSE)


@pytest.mark.parametrize("cls", sorted(error_table(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_each_domain_error_answers_with_its_status_and_body(cls, caplog):
    from eventctl.web.errors import install_error_handlers

    api = FastAPI()
    install_error_handlers(api)

    @api.get("/boom")
    def boom() -> None:
        raise _make(cls)

    caplog.set_level(logging.WARNING, logger="eventctl.web")
    with TestClient(api) as client:
        r = client.get("/boom")
    assert r.status_code == cls.http_status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body == _make(cls).http_body()
    if issubclass(cls, InvalidInput) and cls.http_status == 422:
        assert isinstance(body["detail"], list) and body["detail"][0]["msg"]  # FastAPI's own 422 shape
    elif issubclass(cls, Conflict):
        assert set(body) == {"detail", "conflicting_uids"} and body["conflicting_uids"] == ["u1", "u2"]
    else:
        assert set(body) == {"detail"} and isinstance(body["detail"], str)
    if issubclass(cls, DatabaseUnavailable):
        assert body == {"detail": "The database is unavailable."} and r.headers["retry-after"] == "1"
    if issubclass(cls, Unauthorized):
        assert r.headers["www-authenticate"] == "Bearer"
    assert "10.0.0.7" not in r.text and "secret" not in r.text
    assert CAUSE in caplog.text  # for the operator, in the server log


def test_database_errors_are_converted_once():
    import sqlalchemy as sa

    from eventctl.web.errors import install_error_handlers

    api = FastAPI()
    install_error_handlers(api)

    @api.get("/down")
    def down() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("could not connect to 10.0.0.7 as svc"))

    with TestClient(api) as client:
        r = client.get("/down")
    assert r.status_code == 503 and r.json() == {"detail": "The database is unavailable."}
    assert "10.0.0.7" not in r.text
