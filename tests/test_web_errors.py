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


@pytest.fixture
def admin(db_url, engine):
    from datetime import UTC, datetime

    from eventctl.db import write_session
    from eventctl.tokens import create_token
    from test_web import auth, make_app

    with write_session(engine) as session:
        token = create_token(session, name="t", now=datetime.now(UTC))
    with TestClient(make_app(db_url)) as client:
        yield client, auth(token)


def _loc(response) -> list[list]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


def test_a_422_names_where_the_bad_value_was(admin):
    client, headers = admin
    api = "/api/v1/events/"
    assert _loc(client.get(api, params={"status": "bogus"}, headers=headers)) == [["query", "status"]]
    assert _loc(client.get(api, params={"page_context": "no good"}, headers=headers)) == [["query", "page_context"]]
    assert _loc(client.get(api, params={"skip": "-1"}, headers=headers)) == [["query", "skip"]]  # FastAPI's own
    made = client.post(api, json={"name": "E", "page_context": "/p"}, headers=headers).json()
    for bad in ("--------", "abcd----"):  # no hex digits; fewer than 8 (both pass the path's pattern)
        for method, path in (("GET", f"{api}{bad}"), ("GET", f"{api}{bad}/history"), ("DELETE", f"{api}{bad}"),
                             ("PUT", f"{api}{bad}")):  # fmt: skip
            r = client.request(method, path, json={"name": "x"}, headers=headers)
            assert _loc(r) == [["path", "uid"]], (method, path)
    # what is wrong with the body is still the body's
    r = client.post(api, json={"name": "A", "page_context": "/x", "start_date": "2030-01-02T00:00:00Z",
                               "end_date": "2030-01-01T00:00:00Z"}, headers=headers)  # fmt: skip
    assert _loc(r)[0][0] == "body"
    r = client.put(f"{api}{made['uid']}", json={"page_context": "no good"}, headers=headers)
    assert _loc(r)[0][0] == "body"
