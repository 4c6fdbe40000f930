"""The web app speaks the platform's language, on SQLite and PostgreSQL.

The platform's full RecordReviewFilters round-trip; page keys (bare keys, UTF-8
routes sent percent-encoded or as raw bytes); page defaults; the admin list's
skip/limit/is_active; HEAD /current; refusals that write nothing; 503 bodies that
say nothing about the database.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient
from webtools import API, CURRENT, auth, cur, make_app, post

from conftest import count_rows, make_cli

TELUGU = "/review/తెలుగు"


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def raw_current(client: TestClient, route: bytes, method: str = "GET") -> tuple[int, bytes]:
    """/current with the header's exact bytes (httpx would re-encode bytes that are not UTF-8)."""
    messages: list[dict] = []

    async def call() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            messages.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": CURRENT,
            "raw_path": CURRENT.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"x-page-route", route)],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        await client.app(scope, receive, send)

    client.portal.call(call)
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


# ------------------------------------------------------------------ the platform's filters


def full_filters(i: int) -> dict:
    """Every key of RecordReviewFilters; over i = 0..3 every enum value appears."""
    from eventctl.filters import ExtractionType, MediaType, ReleaseRights

    return {
        "language": ["Telugu", "Hindi", "English"],
        "media_type": [m.value for m in MediaType],
        "category_ids": [str(uuid.uuid4()), str(uuid.uuid4())],
        "source_label": f"source {i}",
        "release_rights": list(ReleaseRights)[i].value,
        "published_date": f"2025-0{i + 1}-1{i}",
        "is_fully_proofread": i % 2 == 0,
        "is_fully_validated": i % 2 == 1,
        "extraction_type": list(ExtractionType)[i].value,
        "model_name": f"model-{i}",
        "version": ("initial", "latest")[i % 2],
        "lock": i % 2 == 0,
        "extration": i % 2 == 1,
    }


def test_full_platform_filters_read_back_identically_everywhere(client, token, db_url):
    from eventctl.filters import RecordReviewFilters

    cli = make_cli(db_url)
    assert set(full_filters(0)) == set(RecordReviewFilters.model_fields)
    for i in range(4):
        filters = full_filters(i)
        page = f"page_{i}" if i % 2 else f"/review/p{i}"
        r = post(client, token, {"name": f"E{i}", "page_context": page, "limit": 100, "filters": filters})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["filters"] == filters
        by_uid = client.get(f"{API}{created['uid']}", headers=auth(token))
        assert by_uid.status_code == 200 and by_uid.json() == created
        assert cur(client, page).json() == created
        shown = cli("show", created["uid"], "--json")
        assert shown.exit_code == 0, shown.stderr
        assert shown.json() == created
        RecordReviewFilters.model_validate(created["filters"])  # the platform accepts what we send


# ------------------------------------------------------------------ /current


def test_current_for_bare_keys_windows_and_conflicts(client, token):
    page = "doc_digitization"
    assert cur(client).json() is None
    assert cur(client, page).json() is None
    future = post(client, token, {"name": "later", "page_context": page, "start_date": iso(timedelta(days=1))})
    past = {"name": "gone", "page_context": page, "start_date": iso(-timedelta(days=2))}
    expired = post(client, token, {**past, "end_date": iso(-timedelta(days=1))})
    assert future.status_code == expired.status_code == 201
    assert cur(client, page).json() is None  # future and expired are ignored
    live = post(client, token, {"name": "now", "page_context": page, "end_date": iso(timedelta(hours=12))})
    assert live.status_code == 201, live.text
    r = cur(client, page)
    assert r.status_code == 200 and r.json()["uid"] == live.json()["uid"]
    assert cur(client).json() is None  # no header: null
    assert cur(client, "Doc_Digitization").json() is None  # bare keys match exactly
    other = post(client, token, {"name": "also now", "page_context": page, "end_date": iso(timedelta(hours=1))})
    assert other.status_code == 409 and other.json()["conflicting_uids"] == [live.json()["uid"]]
    assert "?allow_overlap=true" in other.json()["detail"]
    other = post(client, token, {"name": "also now", "page_context": page}, allow_overlap="true")
    assert other.status_code == 201
    r = cur(client, page)
    assert r.status_code == 409
    assert sorted(r.json()["conflicting_uids"]) == sorted([live.json()["uid"], other.json()["uid"]])


def test_page_default(client, token):
    page = "/review/audio"
    default = post(client, token, {"name": "standing", "page_context": page, "is_default": True})
    assert default.status_code == 201, default.text
    assert cur(client, page).json()["uid"] == default.json()["uid"]  # default alone
    campaign = post(client, token, {"name": "audio week", "page_context": page, "end_date": iso(timedelta(days=7))})
    assert campaign.status_code == 201, campaign.text  # a default does not count against campaigns
    assert cur(client, page).json()["uid"] == campaign.json()["uid"]  # the live campaign wins
    second = {"name": "another default", "page_context": page, "is_default": True}
    r = post(client, token, second)
    assert r.status_code == 409 and r.json()["conflicting_uids"] == [default.json()["uid"]]
    assert post(client, token, second, allow_overlap="true").status_code == 201
    assert cur(client, page).json()["uid"] == campaign.json()["uid"]
    r = client.put(f"{API}{campaign.json()['uid']}", json={"is_active": False}, headers=auth(token))
    assert r.status_code == 200
    r = cur(client, page)  # no campaign: two defaults are a conflict
    assert r.status_code == 409 and len(r.json()["conflicting_uids"]) == 2


def test_utf8_route_served_to_percent_encoded_and_raw_headers(client, token):
    r = post(client, token, {"name": "Telugu", "page_context": quote(TELUGU)})
    assert r.status_code == 201, r.text
    assert r.json()["page_context"] == TELUGU  # stored decoded
    encoded, raw = cur(client, quote(TELUGU)), cur(client, TELUGU.encode("utf-8"))
    assert encoded.status_code == raw.status_code == 200
    assert encoded.json()["uid"] == raw.json()["uid"] == r.json()["uid"]
    assert encoded.headers["etag"] == raw.headers["etag"]
    assert cur(client, quote(TELUGU) + "/?from=menu").json()["uid"] == r.json()["uid"]
    assert raw_current(client, TELUGU.encode("utf-8")) == (200, raw.content)
    for malformed in (b"/a%zz", b"/review/%ff", b"/review/%E0%B0", TELUGU.encode("utf-8")[:-1], b"/review/\xff\xfe"):
        for method in ("GET", "HEAD"):
            status, body = raw_current(client, malformed, method)
            assert status == 400, (malformed, body)
            assert body == b"" if method == "HEAD" else isinstance(json.loads(body)["detail"], str)


# ------------------------------------------------------------------ HEAD


def _same_answer(client, **headers):
    get = client.get(CURRENT, headers=headers)
    head = client.head(CURRENT, headers=headers)
    assert head.status_code == get.status_code
    assert dict(head.headers) == dict(get.headers)
    assert head.content == b""
    return get


def test_head_current_answers_like_get(client, token):
    post(client, token, {"name": "A", "page_context": "/h"})
    ok = _same_answer(client, **{"X-Page-Route": "/h", "Origin": "http://allowed.example"})
    assert ok.status_code == 200 and ok.headers["etag"] and ok.headers["cache-control"].startswith("public, max-age=")
    assert ok.headers["vary"] == "X-Page-Route, Origin" and int(ok.headers["content-length"]) == len(ok.content)
    not_modified = _same_answer(client, **{"X-Page-Route": "/h", "If-None-Match": ok.headers["etag"]})
    assert not_modified.status_code == 304
    assert _same_answer(client).json() is None
    assert _same_answer(client, **{"X-Page-Route": "/a%zz"}).status_code == 400
    post(client, token, {"name": "B", "page_context": "/h"}, allow_overlap="true")
    assert _same_answer(client, **{"X-Page-Route": "/h"}).status_code == 409
    r = client.put(CURRENT, headers=auth(token))
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_documented_routes_answer_as_the_fast_path(db_url, token):
    """app.fastapi alone (no CurrentFastPath) answers /current through the same code."""
    assert make_cli(db_url)("create", "--name", "A", "--page", "doc_digitization").exit_code == 0
    # two apps: one app's service belongs to one event loop (each TestClient runs its own)
    with TestClient(make_app(db_url)) as fast, TestClient(make_app(db_url).fastapi) as routed:
        for headers in ({"X-Page-Route": "doc_digitization"}, {"X-Page-Route": TELUGU.encode()}, {}):
            for method in ("GET", "HEAD"):
                a, b = fast.request(method, CURRENT, headers=headers), routed.request(method, CURRENT, headers=headers)
                assert (a.status_code, a.content) == (b.status_code, b.content), (method, headers)
                vary = {"vary"}  # CORS (around the fast path only) adds ", Origin"
                assert {k: v for k, v in a.headers.items() if k not in vary} == {
                    k: v for k, v in b.headers.items() if k not in vary
                }
        assert routed.get(CURRENT, headers={"X-Page-Route": "/a%zz"}).status_code == 400


# ------------------------------------------------------------------ the admin list


def test_list_skip_limit_is_active_newest_first(client, token, engine):
    from eventctl import events as core
    from eventctl.db import write_session
    from eventctl.events import MAX_ROWS
    from eventctl.shapes import EventCreate

    start = datetime(2030, 1, 1, tzinfo=UTC)
    with write_session(engine) as session:
        for i in range(53):
            data = EventCreate(name=f"E{i:02}", page_context=f"/l/{i}", is_active=i % 3 != 0)
            core.create_event(session, data=data, actor="t", via="cli", now=start + timedelta(minutes=i))
    names = [f"E{i:02}" for i in reversed(range(53))]  # newest first

    def listed(**params):
        r = client.get(API, headers=auth(token), params=params)
        assert r.status_code == 200, (params, r.text)
        return [e["name"] for e in r.json()]

    assert listed() == names[:50]  # default limit 50
    assert listed(limit=200) == names
    assert listed(limit=2) == names[:2]
    assert listed(skip=2, limit=3) == names[2:5]
    assert listed(skip=52) == names[52:]
    assert listed(skip=53) == [] == listed(skip=MAX_ROWS)
    inactive = [n for n in names if int(n[1:]) % 3 == 0]
    assert listed(is_active="false", limit=200) == inactive
    assert listed(is_active="true", limit=200) == [n for n in names if n not in inactive]
    assert listed(is_active="false", skip=1, limit=2) == inactive[1:3]
    assert listed(status="inactive", limit=200) == inactive
    assert listed(page_context="/l/7") == ["E07"]
    for bad in (
        {"limit": 0},
        {"limit": 201},
        {"skip": -1},
        {"skip": MAX_ROWS + 1},
        {"limit": "ten"},
        {"is_active": "maybe"},
    ):
        r = client.get(API, headers=auth(token), params=bad)
        assert r.status_code == 422, (bad, r.text)
        assert isinstance(r.json()["detail"], list)


# ------------------------------------------------------------------ refusals write nothing


def test_put_without_changes_is_422_and_changes_nothing(client, token):
    ev = post(client, token, {"name": "A", "page_context": "/p"}).json()
    r = client.put(f"{API}{ev['uid']}", json={}, headers=auth(token))
    assert r.status_code == 422 and "Nothing to update" in r.text
    assert isinstance(r.json()["detail"], list)
    assert client.get(f"{API}{ev['uid']}", headers=auth(token)).json() == ev


@pytest.mark.parametrize(
    "filters",
    [
        {"lock": "yes"},
        {"extration": 1},
        {"media_type": "audio"},
        {"language": "Telugu"},
        {"media_type": ["gif"]},
        {"release_rights": "family_or_friend"},
        {"extraction_type": "magic"},
        {"version": "newest"},
        {"category_ids": "x"},
        {"category_ids": ["123"]},
        {"category_ids": [{}]},
        {"published_date": "2026-02-30"},
        {"published_date": 20260201},
        {"medya_type": ["audio"]},
    ],
    ids=repr,
)
def test_wrong_filter_types_are_422_and_write_nothing(client, token, db_url, filters):
    ev = post(client, token, {"name": "A", "page_context": "/f", "filters": {"lock": True}}).json()
    r = post(client, token, {"name": "B", "page_context": "/g", "filters": filters})
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], list)
    r = client.put(f"{API}{ev['uid']}", json={"filters": filters}, headers=auth(token))
    assert r.status_code == 422, r.text
    assert count_rows(db_url) == 1
    assert client.get(f"{API}{ev['uid']}", headers=auth(token)).json() == ev


def test_errors_quote_only_a_short_excerpt_and_big_bodies_are_413(client, token, db_url):
    huge = "x" * 100_000
    for body in ({"name": huge, "page_context": "/x"}, {"name": "A", "page_context": "/x", huge: 1}):
        r = post(client, token, body)
        assert r.status_code == 422 and len(r.content) < 2000, len(r.content)
    r = client.post(
        API,
        content=b'{"name": "' + b"x" * (1024 * 1024) + b'"}',
        headers={**auth(token), "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert count_rows(db_url) == 0


def test_uid_path_pattern(client, token):
    assert client.get(f"{API}abc", headers=auth(token)).status_code == 422  # too short for a prefix
    assert client.get(f"{API}{uuid.uuid4()}", headers=auth(token)).status_code == 404
    assert client.get(f"{API}current", headers=auth(token)).json() is None  # /current, never a uid


# ------------------------------------------------------------------ 503


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://nobody:hunter2@127.0.0.1:1/secretdb", "sqlite:////nonexistent-dir/sub/events.db"],
    ids=["postgresql", "sqlite"],
)
def test_503_bodies_say_nothing_about_the_database(url, caplog):
    caplog.set_level(logging.WARNING, logger="eventctl.web")
    bearer = {"Authorization": "Bearer evt_00000000_" + "A" * 43}
    with TestClient(make_app(url)) as client:
        answers = [
            client.get(CURRENT, headers={"X-Page-Route": "/x"}),
            client.head(CURRENT, headers={"X-Page-Route": "/x"}),
            client.get("/readyz"),
            client.get(API, headers=bearer),
        ]
    for r in answers:
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        if r.request.method != "HEAD":
            assert r.json() == {"detail": "The database is unavailable."}
    assert answers[1].content == b""
    assert caplog.records, "the cause goes to the server log"


# ------------------------------------------------------------------ shutdown


def test_stop_waits_for_a_poll_in_flight(db_url, monkeypatch):
    """The lifespan disposes the engine after stop(): no poll may still hold a connection then."""
    import asyncio
    import threading
    import time

    import sqlalchemy as sa

    from eventctl.config import Settings
    from eventctl.db import make_engine
    from eventctl.web.current import CurrentService

    engine = make_engine(Settings(database_url=db_url).resolved_database_url())
    service = CurrentService(engine, cache_ttl=1, stale_grace=1, poll_interval=0.05, max_pages=100)
    slow: list[str] = []

    def slow_counter(_conn, _cursor, statement, *_args) -> None:
        if "eventctl_state" in statement and threading.current_thread() is not threading.main_thread():
            slow.append("queried")  # the poll's thread, its connection held
            time.sleep(0.3)

    sa.event.listen(engine, "after_cursor_execute", slow_counter)

    async def scenario() -> int:
        service.start()
        while not slow:
            await asyncio.sleep(0.01)
        await service.stop()
        return engine.pool.checkedout()

    try:
        assert asyncio.run(scenario()) == 0
        assert service.snapshot is not None  # the poll finished before stop() returned
    finally:
        engine.dispose()
