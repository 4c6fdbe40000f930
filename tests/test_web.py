"""The ASGI app (SPEC §4), in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from webtools import ALLOWED, API, CURRENT, auth, cur, make_app, post, settle

from conftest import count_rows, make_cli


def max_age(response) -> int:
    return int(re.search(r"max-age=(\d+)", response.headers["cache-control"]).group(1))


# ------------------------------------------------------------------ /current


def test_current_null_event_bad_route_and_conflict(client, token):
    assert cur(client).json() is None
    assert cur(client, "   ").json() is None
    for malformed, says in (("no slash", "whitespace"), ("/a%zz", "percent-escape"), ("review/audio", "neither")):
        r = cur(client, malformed)
        assert r.status_code == 400 and says in r.json()["detail"], (malformed, r.text)
        assert r.headers["cache-control"] == "no-store"
    assert cur(client, "/review/audio").json() is None
    a = post(client, token, {"name": "A", "page_context": "/review/audio", "filters": {"media_type": ["audio"]}})
    assert a.status_code == 201, a.text
    r = cur(client, "/review//audio/?x=1")
    assert r.status_code == 200 and r.json()["uid"] == a.json()["uid"]
    assert r.json()["filters"] == {"media_type": ["audio"]}
    b = post(client, token, {"name": "B", "page_context": "/review/audio"}, allow_overlap="true")
    assert b.status_code == 201, b.text
    r = cur(client, "/review/audio")
    assert r.status_code == 409
    assert sorted(r.json()["conflicting_uids"]) == sorted([a.json()["uid"], b.json()["uid"]])
    assert r.headers["cache-control"] == "no-store"


def test_etag_and_if_none_match(client, token):
    post(client, token, {"name": "A", "page_context": "/e"})
    r = cur(client, "/e")
    etag = r.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert r.headers["vary"] == "X-Page-Route, Origin"
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        r304 = cur(client, "/e", **{"If-None-Match": inm})
        assert r304.status_code == 304, inm
        assert r304.content == b"" and r304.headers["etag"] == etag
    assert cur(client, "/e", **{"If-None-Match": '"other"'}).status_code == 200
    # a different body gives a different ETag
    assert cur(client, "/other").headers["etag"] != etag


def test_max_age_never_past_the_next_boundary(db_url, token):
    with TestClient(make_app(db_url, cache_ttl=30)) as client:
        now = datetime.now(UTC)
        post(
            client,
            token,
            {"name": "ending", "page_context": "/end", "end_date": (now + timedelta(seconds=20)).isoformat()},
        )
        post(
            client,
            token,
            {"name": "starting", "page_context": "/start", "start_date": (now + timedelta(seconds=10)).isoformat()},
        )
        r = cur(client, "/end")
        assert r.json()["name"] == "ending"
        assert 0 <= max_age(r) <= 20
        r = cur(client, "/start")
        assert r.json() is None and 0 <= max_age(r) <= 10
        r = cur(client, "/nothing")
        assert max_age(r) == 30
    with TestClient(make_app(db_url, cache_ttl=5)) as client:
        assert max_age(cur(client, "/nothing")) == 5


def test_answer_changes_exactly_at_the_boundary(db_url, token, monkeypatch):
    """The cached answer is dropped at the boundary: an event stops being served on time."""
    app = make_app(db_url)
    service = app.fastapi.state.current
    now = [time.time()]
    service.clock = lambda: now[0]
    with TestClient(app) as client:
        end = datetime.fromtimestamp(now[0], UTC) + timedelta(seconds=20)
        post(client, token, {"name": "E", "page_context": "/b", "end_date": end.isoformat()})
        assert cur(client, "/b").json()["name"] == "E"
        now[0] = end.timestamp() - 0.001
        assert cur(client, "/b").json()["name"] == "E"
        now[0] = end.timestamp()
        assert cur(client, "/b").json() is None


def test_write_through_the_app_invalidates_the_cache(db_url, token):
    with TestClient(make_app(db_url, poll_interval=3600)) as client:  # no help from the poller
        assert cur(client, "/w").json() is None
        ev = post(client, token, {"name": "W", "page_context": "/w"}).json()
        assert cur(client, "/w").json()["uid"] == ev["uid"]
        r = client.put(f"{API}{ev['uid']}", json={"name": "W2"}, headers=auth(token))
        assert r.status_code == 200
        assert cur(client, "/w").json()["name"] == "W2"
        assert client.delete(f"{API}{ev['uid']}", headers=auth(token)).status_code == 204
        assert cur(client, "/w").json() is None


def test_write_by_the_cli_is_seen_within_two_seconds(db_url):
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    app = create_app(Settings(database_url=db_url))  # default poll interval (1 s)
    committed: list[float] = []

    def stamp(_session) -> None:
        committed.append(time.monotonic())

    with TestClient(app) as client:
        assert cur(client, "/cli").json() is None
        # timed from the write's commit: the in-process CLI's own start is not the app's delay
        sa.event.listen(sa.orm.Session, "after_commit", stamp)
        try:
            r = make_cli(db_url)("create", "--name", "from cli", "--page", "/cli")
        finally:
            sa.event.remove(sa.orm.Session, "after_commit", stamp)
        assert r.exit_code == 0, r.stderr
        assert committed, "the CLI committed nothing"
        start = committed[-1]
        seen = None
        while time.monotonic() - start < 5:
            body = cur(client, "/cli").json()
            if body is not None:
                seen = time.monotonic() - start
                break
            time.sleep(0.05)
        assert seen is not None and seen <= 2.0, seen


def test_current_does_not_query_the_database_per_request(db_url):
    # written before the app starts: a write through the app would also come back as its own
    # NOTIFY, at any later moment, and drop /q again while the requests below are counted
    assert make_cli(db_url)("create", "--name", "A", "--page", "/q").exit_code == 0
    app = make_app(db_url, poll_interval=3600)
    engine = app.fastapi.state.engine
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a, **k: statements.append(a[2]))
    with TestClient(app) as client:
        settle(client)  # the start-up resync reads the pages held: not counted below
        assert cur(client, "/q").json()["name"] == "A"
        statements.clear()
        for i in range(100):  # a page's first request loads that page: one indexed query
            assert cur(client, f"/other/{i}").status_code == 200
        assert len([s for s in statements if "FROM events" in s]) <= 100
        statements.clear()
        for i in range(200):  # from then on, memory only
            assert cur(client, "/q" if i % 2 else f"/other/{i // 2}").status_code == 200
    # the poller may still read its change counter once (a wake-up queued before the wait ended)
    assert [s for s in statements if s != "SELECT version FROM eventctl_state WHERE id = 1"] == []


# ------------------------------------------------------------------ admin CRUD


def test_admin_crud(client, token, db_url):
    r = post(
        client,
        token,
        {
            "name": "A",
            "page_context": "/a",
            "limit": 25,
            "start_date": "2030-01-01T09:00:00+05:30",
            "filters": {"language": ["te"]},
        },
    )
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["created_by"] == "frontend-admin"
    assert ev["start_date"] == "2030-01-01T03:30:00Z" and ev["status"] == "scheduled"
    uid = ev["uid"]
    assert client.get(f"{API}{uid}", headers=auth(token)).json() == ev
    assert client.get(f"{API}{uid[:8]}", headers=auth(token)).json()["uid"] == uid
    assert client.get(f"{API}{uuid.uuid4()}", headers=auth(token)).status_code == 404
    post(client, token, {"name": "B", "page_context": "/b"})
    rows = client.get(API, headers=auth(token), params={"page_context": "/a"}).json()
    assert [x["uid"] for x in rows] == [uid]
    assert [x["name"] for x in client.get(API, headers=auth(token), params={"status": "live"}).json()] == ["B"]
    assert client.get(API, headers=auth(token), params={"status": "bogus"}).status_code == 422
    for bad_page in ("no slash", "/a b", "   ", "/a%zz", "review/audio"):
        r = client.get(API, headers=auth(token), params={"page_context": bad_page})
        assert r.status_code == 422, (bad_page, r.text)
    r = client.put(f"{API}{uid}", json={"limit": 50}, headers=auth(token))
    assert r.status_code == 200
    assert r.json()["limit"] == 50 and r.json()["name"] == "A" and r.json()["filters"] == {"language": ["te"]}
    assert datetime.fromisoformat(r.json()["updated_at"]) > datetime.fromisoformat(ev["updated_at"])  # not as text
    r = client.put(f"{API}{uid}", json={"start_date": None}, headers=auth(token))
    assert r.json()["start_date"] is None and r.json()["status"] == "live"
    assert client.put(f"{API}{uuid.uuid4()}", json={"limit": 5}, headers=auth(token)).status_code == 404
    assert client.delete(f"{API}{uid}", headers=auth(token)).status_code == 204
    assert client.delete(f"{API}{uid}", headers=auth(token)).status_code == 404
    assert count_rows(db_url) == 1


def test_admin_overlap_and_validation(client, token, db_url):
    a = post(client, token, {"name": "A", "page_context": "/o"}).json()
    r = post(client, token, {"name": "B", "page_context": "/o"})
    assert r.status_code == 409 and r.json()["conflicting_uids"] == [a["uid"]]
    b = post(client, token, {"name": "B", "page_context": "/o2"}).json()
    r = client.put(f"{API}{b['uid']}", json={"page_context": "/o"}, headers=auth(token))
    assert r.status_code == 409
    before = count_rows(db_url)
    bad_bodies = [
        {"name": "x", "page_context": "/v", "filters": {"medya_type": ["audio"]}},
        {"name": "x", "page_context": "/v", "filters": {"media_type": ["gif"]}},
        {"name": "x", "page_context": "/v", "filters": {"media_type": "audio"}},
        {"name": "x", "page_context": "/v", "filters": {"release_rights": "family_or_friend"}},
        {"name": "x", "page_context": "/v", "filters": {"lock": "yes"}},
        {"name": "x", "page_context": "no slash"},
        {"name": "x", "page_context": "review/audio"},
        {"name": " ", "page_context": "/v"},
        {"name": "x", "page_context": "/v", "limit": 0},
        {"name": "x", "page_context": "/v", "limit": 101},
        {"name": "x", "page_context": "/v", "limit": 500},
        {"name": "x", "page_context": "/v", "start_date": "2030-01-01T00:00:00"},  # naive
        {"name": "x", "page_context": "/v", "start_date": "2030-01-02T00:00:00Z", "end_date": "2030-01-01T00:00:00Z"},
        {"name": "x", "page_context": "/v", "unknown": 1},
        {"page_context": "/v"},
    ]
    for body in bad_bodies:
        r = post(client, token, body)
        assert r.status_code == 422, (body, r.text)
        assert isinstance(r.json()["detail"], list)
    r = client.post(API, content=b"{not json", headers={**auth(token), "content-type": "application/json"})
    assert r.status_code == 422
    r = client.put(
        f"{API}{b['uid']}",
        json={"end_date": "2000-01-01T00:00:00Z", "start_date": "2001-01-01T00:00:00Z"},
        headers=auth(token),
    )
    assert r.status_code == 422
    r = client.put(f"{API}{b['uid']}", json={"name": None}, headers=auth(token))
    assert r.status_code == 422
    assert count_rows(db_url) == before


def test_unknown_category_is_422_once_categories_exist(client, token, db_url, tmp_path):
    known = "0b7a6b0e-3c1a-4c55-9d22-123456789abc"
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"id": known, "name": "folk", "title": "Folk"}]))
    assert make_cli(db_url)("categories", "import", str(path)).exit_code == 0
    unknown = str(uuid.uuid4())
    r = post(client, token, {"name": "x", "page_context": "/c", "filters": {"category_ids": [known, unknown]}})
    assert r.status_code == 422 and unknown in r.text
    ok = post(client, token, {"name": "x", "page_context": "/c", "filters": {"category_ids": [known]}})
    assert ok.status_code == 201
    r = client.put(f"{API}{ok.json()['uid']}", json={"filters": {"category_ids": [unknown]}}, headers=auth(token))
    assert r.status_code == 422


# ------------------------------------------------------------------ security


def test_admin_routes_need_a_valid_token(client, token, engine, db_url):
    from eventctl.db import write_session
    from eventctl.tokens import create_token, revoke_token

    with write_session(engine) as session:
        revoked = create_token(session, name="old", now=datetime.now(UTC))
        revoke_token(session, name="old", now=datetime.now(UTC))
    bad = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Token {token}"},
        {"Authorization": "Bearer evt_00000000_" + "A" * 43},
        {"Authorization": f"Bearer {token[:-1]}B" if token[-1] != "B" else f"Bearer {token[:-1]}C"},
        {"Authorization": f"Bearer {revoked}"},
        {"Authorization": "Bearer évil".encode()},
        {"Authorization": ("Bearer " + token + "\u00ff").encode("latin-1")},
        {"Authorization": f"Bearer {token}", "Origin": ALLOWED} if False else {"Origin": ALLOWED},
    ]
    routes = [
        ("get", API),
        ("post", API),
        ("get", f"{API}{uuid.uuid4()}"),
        ("put", f"{API}{uuid.uuid4()}"),
        ("delete", f"{API}{uuid.uuid4()}"),
    ]
    for headers in bad:
        for method, url in routes:
            kwargs = {"json": {"name": "x", "page_context": "/x"}} if method in ("post", "put") else {}
            r = client.request(method.upper(), url, headers=headers, **kwargs)
            assert r.status_code == 401, (headers, method, url, r.status_code, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"
    assert count_rows(db_url) == 0
    assert client.get(API, headers=auth(token)).status_code == 200


def test_token_never_stored_logged_or_listed(client, token, engine, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    assert client.get(API, headers=auth(token)).status_code == 200
    secret = token.split("_", 2)[2]
    with engine.connect() as conn:
        for table in ("api_tokens", "events", "categories", "eventctl_state"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert secret not in " ".join(map(str, row)) and token not in " ".join(map(str, row))
    assert token not in caplog.text and secret not in caplog.text
    for args in (["token", "list"], ["token", "list", "--json"]):
        r = make_cli(db_url)(*args)
        assert r.exit_code == 0 and "frontend-admin" in r.stdout
        assert secret not in r.stdout + r.stderr
    listed = make_cli(db_url)("token", "list", "--json").json()
    assert listed[0]["last_used_at"] is not None and listed[0]["prefix"] == token[:12]


def test_token_cli(db_url):
    cli = make_cli(db_url)
    r = cli("token", "create", "ci")
    assert r.exit_code == 0
    assert re.fullmatch(r"evt_[0-9a-f]{8}_[A-Za-z0-9_-]{43}\n", r.stdout), r.stdout  # the token alone
    assert "only its hash" in r.stderr
    assert cli("token", "create", "ci").exit_code == 3
    assert cli("token", "create", "bad name!").exit_code == 2
    assert cli("token", "revoke", "nobody").exit_code == 4
    r = cli("token", "revoke", "ci", "--json")
    assert r.exit_code == 0 and r.json()["name"] == "ci" and r.json()["revoked_at"] is not None
    assert cli("token", "list", "--json").json()[0]["revoked_at"] is not None
    assert cli("token", "create", "ci").exit_code == 0  # a revoked name can be reused


# ------------------------------------------------------------------ CORS, health, docs


def test_cors_preflight_and_simple_requests(client, token):
    pre = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-page-route, if-none-match"}
    r = client.options(CURRENT, headers={"Origin": ALLOWED, **pre})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    allowed_headers = r.headers["access-control-allow-headers"].lower()
    assert "x-page-route" in allowed_headers and "if-none-match" in allowed_headers
    r = client.options(CURRENT, headers={"Origin": "http://evil.example", **pre})
    assert "access-control-allow-origin" not in r.headers
    post(client, token, {"name": "A", "page_context": "/cors"})
    r = cur(client, "/cors", Origin=ALLOWED)
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "etag" in r.headers["access-control-expose-headers"].lower()
    r = cur(client, "/cors", Origin="http://evil.example")
    assert "access-control-allow-origin" not in r.headers and r.headers["vary"] == "X-Page-Route, Origin"


def test_cors_is_deny_by_default(db_url):
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    with TestClient(create_app(Settings(database_url=db_url))) as client:
        r = client.options(
            CURRENT,
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-page-route",
            },
        )
        assert r.status_code == 400  # Starlette refuses a preflight from an origin not allowed
        assert "access-control-allow-origin" not in r.headers


def test_health_ready_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["freshness"] in ("listen", "poll") and ready["freshness_note"] is None
    spec = client.get("/openapi.json").json()
    assert "RecordReviewFilters" in spec["components"]["schemas"]
    assert set(spec["components"]["schemas"]["RecordReviewFilters"]["properties"]) >= {"media_type", "category_ids"}
    for path in (CURRENT, API, "/api/v1/events/{uid}", "/healthz", "/readyz"):
        assert path in spec["paths"]


# ------------------------------------------------------------------ faults


@pytest.fixture
def unmigrated_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'later.db'}"
    server = request.getfixturevalue("pg_server")
    name = f"eventctl_t_{uuid.uuid4().hex[:12]}"
    server.created.append(name)  # dropped at the end of the session
    return server.admin_url.set(database=name).render_as_string(hide_password=False)


def test_starts_with_database_down_and_recovers(unmigrated_url, backend, request):
    from eventctl import migrate
    from eventctl.db import make_engine

    with TestClient(make_app(unmigrated_url)) as client:
        assert client.get("/healthz").status_code == 200
        assert cur(client, "/x").status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get(API, headers={"Authorization": "Bearer evt_00000000_" + "A" * 43}).status_code == 503
        # the database comes back
        if backend == "postgresql":
            server = request.getfixturevalue("pg_server")
            with server.admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{sa.engine.make_url(unmigrated_url).database}"')
        engine = make_engine(unmigrated_url)
        migrate.upgrade(engine, "head")
        engine.dispose()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cur(client, "/x").status_code != 200:
            time.sleep(0.05)
        assert cur(client, "/x").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_unreachable_server_is_503_never_500():
    with TestClient(make_app("postgresql+psycopg://nobody@127.0.0.1:1/none")) as client:
        assert client.get("/healthz").status_code == 200
        assert cur(client, "/x").status_code == 503
        assert client.get("/readyz").status_code == 503
        token = "evt_00000000_" + "A" * 43
        assert client.get(API, headers={"Authorization": f"Bearer {token}"}).status_code == 503


class TcpProxy:
    """A loopback TCP proxy we can cut, to take PostgreSQL away from the app mid-run."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.running = True
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.running:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                if not self.running:  # cut() ran while we connected: it will not see these two
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            self.running = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # fails if a pipe thread already shut it down
            except OSError:
                pass
            s.close()  # always: a socket left to the garbage collector is a ResourceWarning


@pytest.mark.postgres
def test_postgres_goes_away_mid_run(pg_migrated_url):
    from conftest import _empty_tables

    _empty_tables(pg_migrated_url)
    token = make_cli(pg_migrated_url)("token", "create", "outage").stdout.strip()
    url = sa.engine.make_url(pg_migrated_url)
    proxy = TcpProxy(url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = make_app(proxied, stale_grace=6, poll_interval=0.2)
    service = app.fastapi.state.current
    # the service's clock stands still until the test moves it: the outage's timeline (the end
    # passing, the grace running out) is stepped, not raced against a loaded machine
    base, offset = float(round(time.time()) + 30), [0.0]  # a whole second: the end is exact
    service.clock = lambda: base + offset[0]
    end = datetime.fromtimestamp(base + 5, UTC)
    with TestClient(app) as client:
        listening_by = time.monotonic() + 10
        while not service.listening and time.monotonic() < listening_by:  # notifications then land at once
            time.sleep(0.01)
        cli = make_cli(pg_migrated_url)
        assert cli("create", "--name", "ends soon", "--page", "/soon", "--end", end.isoformat()).exit_code == 0
        assert cli("create", "--name", "stays", "--page", "/stay").exit_code == 0
        service.invalidate()
        # both pages held before the cut: a notification of the writes above landing while a page
        # loads rightly leaves that load unkept (a loaded machine delays it), so ask until they stay
        deadline = time.monotonic() + 10
        while {b"/soon", b"/stay"} - set(service.cache.pages) and time.monotonic() < deadline:
            assert cur(client, "/soon").json()["name"] == "ends soon"
            assert cur(client, "/stay").json()["name"] == "stays"
            time.sleep(0.2)
        assert {b"/soon", b"/stay"} <= set(service.cache.pages)
        assert service.last_success == base and not service.failing
        proxy.cut()
        failing_by = time.monotonic() + 10
        while not service.failing and time.monotonic() < failing_by:  # the poller notices
            time.sleep(0.01)
        assert service.failing
        offset[0] = 0.5
        r = cur(client, "/stay")
        assert r.status_code == 200 and r.json()["name"] == "stays"
        assert r.headers["x-eventctl-stale"] == "true"
        assert r.headers["cache-control"] == "public, max-age=0, stale-if-error=5"  # 5.5 s of grace left
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        assert client.get(API, headers=auth(token)).status_code == 503
        # the event whose end passes during the outage is served up to its end, then no more
        for at, name in ((0.5, "ends soon"), (4.999, "ends soon"), (5.0, None), (5.5, None)):
            offset[0] = at
            r = cur(client, "/soon")
            assert r.status_code == 200 and (r.json() or {}).get("name") == name, (at, r.json())
            assert r.headers["x-eventctl-stale"] == "true"
        r = cur(client, "/stay")
        assert r.status_code == 200 and r.json()["name"] == "stays"
        # the grace (6 s from the last good poll) runs out: 503
        offset[0] = 6.001
        assert cur(client, "/stay").status_code == 503
        assert cur(client, "/soon").status_code == 503


# ------------------------------------------------------------------ serve wiring


def _record_runs(monkeypatch) -> list:
    from eventctl.web import server

    calls: list = []
    monkeypatch.setattr(server, "run", lambda settings, chosen: calls.append((settings, chosen)))
    return calls


def test_serve_wiring(monkeypatch, db_url):
    calls = _record_runs(monkeypatch)
    r = make_cli(db_url)("serve", "--port", "9123", "--workers", "2")
    assert r.exit_code == 0, r.stderr
    ((settings, chosen),) = calls
    assert (settings.host, settings.port, settings.workers, chosen) == ("127.0.0.1", 9123, 2, "granian")
    r = make_cli(db_url)("serve", "--port", "70000")
    assert r.exit_code == 2


def test_serve_picks_the_server_by_flag_env_and_what_is_installed(monkeypatch, db_url):
    from eventctl.web import server

    calls = _record_runs(monkeypatch)
    assert make_cli(db_url)("serve", "--server", "uvicorn").exit_code == 0
    assert make_cli(db_url)("serve", env={"EVENTCTL_SERVER": "uvicorn"}).exit_code == 0
    assert make_cli(db_url)("serve", "--server", "granian", env={"EVENTCTL_SERVER": "uvicorn"}).exit_code == 0
    r = make_cli(db_url)("serve", env={"EVENTCTL_SERVER": "gunicorn"})
    assert r.exit_code == 2 and "EVENTCTL_SERVER" in r.stderr
    real = server._installed
    monkeypatch.setattr(server, "_installed", lambda name: name != "granian" and real(name))
    assert make_cli(db_url)("serve").exit_code == 0  # granian missing: uvicorn
    r = make_cli(db_url)("serve", "--server", "granian")
    assert r.exit_code == 2 and "pip install 'eventctl[serve]'" in r.stderr
    assert [chosen for _, chosen in calls] == ["uvicorn", "uvicorn", "granian", "uvicorn"]


def test_serve_without_the_extra(monkeypatch, db_url):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)
    r = make_cli(db_url)("serve")
    assert r.exit_code == 2 and "pip install 'eventctl[serve]'" in r.stderr


def test_serve_starts_even_when_the_database_is_not_ready(tmp_path, monkeypatch):
    calls = _record_runs(monkeypatch)
    for url in (f"sqlite:///{tmp_path / 'empty.db'}", "postgresql+psycopg://nobody@127.0.0.1:1/none"):
        r = make_cli(url)("serve")
        assert r.exit_code == 0, r.stderr
        assert "Warning:" in r.stderr and "/readyz" in r.stderr
    assert len(calls) == 2


def test_serve_reads_env_and_refuses_bad_settings(monkeypatch, db_url):
    calls = _record_runs(monkeypatch)
    r = make_cli(db_url)("serve", env={"EVENTCTL_PORT": "9444", "EVENTCTL_HOST": "0.0.0.0", "EVENTCTL_WORKERS": "3"})
    assert r.exit_code == 0, r.stderr
    settings = calls[0][0]
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9444, 3)
    for env in (
        {"EVENTCTL_PORT": "http"},
        {"EVENTCTL_PORT": "70000"},
        {"EVENTCTL_WORKERS": "0"},
        {"EVENTCTL_CACHE_TTL": "soon"},
        {"EVENTCTL_STALE_GRACE": "-1"},
        {"EVENTCTL_POLL_INTERVAL": "0"},
        {"EVENTCTL_CACHE_TTL": "nan"},
    ):
        r = make_cli(db_url)("serve", env=env)
        assert r.exit_code == 2, (env, r.stderr)
        assert next(iter(env)) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert len(calls) == 1


def test_bad_env_file_setting_is_a_usage_error(db_url, tmp_path):
    r = make_cli(db_url)("list", env={"EVENTCTL_ENV_FILE": str(tmp_path / "missing.env")})
    assert r.exit_code == 2 and "EVENTCTL_ENV_FILE" in r.stderr
    r = make_cli(db_url)(
        "create", "--name", "x", "--page", "/x", "--start", "2030-01-01T09:00", env={"EVENTCTL_TZ": "Mars/Olympus"}
    )
    assert r.exit_code == 2 and "Mars/Olympus" in r.stderr


def test_fresh_without_a_lifespan(db_url):
    """Served with no lifespan (uvicorn --lifespan off, a mounted app), CLI writes still arrive."""
    import asyncio

    import httpx

    from eventctl.config import Settings
    from eventctl.web.app import create_app

    app = create_app(Settings(database_url=db_url, poll_interval=0.1))

    async def scenario() -> float | None:
        transport = httpx.ASGITransport(app=app)  # runs no lifespan
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.get(CURRENT, headers={"X-Page-Route": "/nolife"})
                assert r.status_code == 200 and r.json() is None
                assert make_cli(db_url)("create", "--name", "N", "--page", "/nolife").exit_code == 0
                start = time.monotonic()
                while time.monotonic() - start < 5:
                    r = await client.get(CURRENT, headers={"X-Page-Route": "/nolife"})
                    if r.json() is not None:
                        return time.monotonic() - start
                    await asyncio.sleep(0.05)
                return None
        finally:
            await app.fastapi.state.current.stop()
            app.fastapi.state.engine.dispose()

    seen = asyncio.run(scenario())
    assert seen is not None and seen < 2.0, seen


def test_fast_path_answers_as_the_cors_stack_does(client, token):
    """Same-origin /current is answered before CORS and the access log; a cross-origin request
    goes through them. Apart from CORS's own headers, both answer byte for byte alike."""
    assert post(client, token, {"name": "A", "page_context": "/one"}).status_code == 201
    assert post(client, token, {"name": "B", "page_context": "/two", "is_default": True}).status_code == 201
    r = post(client, token, {"name": "C", "page_context": "/two", "is_default": True}, allow_overlap=True)
    assert r.status_code == 201
    etag = cur(client, "/one").headers["etag"]
    cases = [("GET", "/one", {}), ("HEAD", "/one", {}), ("GET", "/none", {}), ("GET", "/%zz", {}),
             ("GET", "/two", {}), ("GET", "/one", {"If-None-Match": etag}), ("GET", None, {})]  # fmt: skip
    statuses = set()
    for method, route, extra in cases:
        headers = {**({"X-Page-Route": route} if route else {}), **extra}
        plain = client.request(method, CURRENT, headers=headers)
        crossed = client.request(method, CURRENT, headers={**headers, "Origin": "http://evil.example"})
        allowed = client.request(method, CURRENT, headers={**headers, "Origin": ALLOWED})
        assert plain.status_code == crossed.status_code == allowed.status_code, (method, route)
        assert plain.content == crossed.content == allowed.content

        def own(r):  # what CORS adds for any Origin (access-control-*) apart
            return {k: v for k, v in r.headers.items() if k != "date" and not k.startswith("access-control-")}

        assert own(plain) == own(crossed) == own(allowed), (method, route)
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "access-control-allow-origin" not in plain.headers
        statuses.add(plain.status_code)
    assert statuses == {200, 304, 400, 409}


def test_a_read_transaction_that_cannot_end_is_one_warning_line(client, token, monkeypatch, caplog):
    """A database restart between the answer and the end of its read transaction (the ROLLBACK
    fails after the 200 went out): one warning line, no traceback from the ASGI server."""
    from contextlib import contextmanager

    from eventctl.db import read_session
    from eventctl.web import deps

    @contextmanager
    def ending_badly(engine):
        with read_session(engine) as session:
            yield session
        raise sa.exc.OperationalError("ROLLBACK", {}, Exception("server closed the connection unexpectedly\nmore"))

    monkeypatch.setattr(deps, "read_session", ending_badly)
    caplog.set_level(logging.WARNING)
    r = client.get(API, headers=auth(token))  # the test client raises what the app did not handle
    assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert [rec.getMessage() for rec in lines] == [
        "a read transaction could not be ended: server closed the connection unexpectedly"
    ]
    assert all(rec.exc_info is None for rec in lines)


def test_serve_hands_the_listen_and_replica_urls_to_its_workers(monkeypatch, db_url):
    calls = _record_runs(monkeypatch)
    direct, replica = "postgresql://u@primary:5432/db", "postgresql+psycopg://u@replica:5432/db"
    r = make_cli(db_url)("serve", "--listen-url", direct, env={"EVENTCTL_READ_DATABASE_URL": replica})
    assert r.exit_code == 0, r.stderr
    settings = calls[0][0]
    assert (settings.listen_url, settings.read_database_url) == (direct, replica)
    from eventctl.config import Settings

    assert Settings.from_json(settings.to_json()).listen_url == direct  # what the workers read back
    for args, variable in (
        (["--listen-url", "sqlite:///x.db"], "EVENTCTL_LISTEN_URL"),
        (["--listen-url", "::not a url"], "EVENTCTL_LISTEN_URL"),
        (["--read-database-url", "sqlite:///x.db"], "EVENTCTL_READ_DATABASE_URL"),
        (["--read-database-url", "::not a url"], "EVENTCTL_READ_DATABASE_URL"),
    ):
        r = make_cli(db_url)("serve", *args)
        assert r.exit_code == 2 and variable in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(calls) == 1
