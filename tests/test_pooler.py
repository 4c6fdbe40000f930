"""PostgreSQL through a transaction-mode pooler (PgBouncer, SPEC §11), and time rules that do not
depend on the session's TimeZone (no startup parameter sets it any more)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import count_rows, make_cli

POOLED = [pytest.param("pgbouncer", marks=pytest.mark.postgres)]


def _app(db_url):
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    return create_app(Settings(database_url=db_url, poll_interval=0.1))


@pytest.mark.parametrize("backend", POOLED)
def test_every_cli_command_through_the_pooler(cli, db_url, tmp_path):
    def ok(*args, input=None):
        r = cli(*args, input=input)
        assert r.exit_code == 0, (args, r.stderr)
        return r

    for sub in ("current", "check", "history"):
        ok("db", sub)
    made = ok("create", "--name", "A", "--page", "/review/audio", "--language", "Telugu", "--json").json()
    uid = made["uid"]
    ok("list", "--json")
    ok("list", "--status", "live")
    ok("show", uid[:8], "--json")
    ok("update", uid, "--limit", "50")
    assert ok("current", "--page", "/review/audio", "--json").json()["limit"] == 50
    assert len(ok("history", uid, "--json").json()) == 2
    exported = ok("export", "--format", "json").stdout
    (tmp_path / "e.json").write_text(exported)
    assert ok("apply", str(tmp_path / "e.json"), "--json").json()["unchanged"] == 1
    ok("apply", str(tmp_path / "e.json"), "--dry-run", "--prune")
    ok("timeline", "--json")
    ok("schema", "filters")
    cat = {"id": str(uuid.uuid4()), "name": "Books", "title": "Books"}
    (tmp_path / "cats.json").write_text(json.dumps([cat]))
    ok("categories", "import", str(tmp_path / "cats.json"))
    ok("categories", "list", "--json")
    token = ok("token", "create", "ci").stdout.strip()
    assert token and "ci" in ok("token", "list").stdout
    ok("token", "revoke", "ci")
    ok("create", "--name", "Old", "--page", "/old", "--start", "-30d", "--end", "-20d")
    assert ok("cleanup", "--json").json()["sources"]["events"]["removed"] == 1
    ok("delete", uid, "--yes")
    assert count_rows(db_url) == 0


@pytest.mark.postgres
def test_db_upgrade_of_a_new_database_through_the_pooler(pg_server, pgbouncer):
    url = pgbouncer.url(sa.engine.make_url(pg_server.create()).database)
    cli = make_cli(url)
    r = cli("list")
    assert r.exit_code == 5 and "db upgrade" in r.stderr, r.stderr  # never migrated implicitly
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "check").exit_code == 0
    assert "unsupported startup parameter" not in pgbouncer.log()


@pytest.mark.parametrize("backend", POOLED)
def test_admin_api_through_the_pooler(db_url, engine):
    from eventctl.db import write_session
    from eventctl.tokens import create_token

    with write_session(engine) as session:
        token = create_token(session, name="admin", now=datetime.now(UTC))
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(_app(db_url)) as client:
        made = client.post("/api/v1/events/", json={"name": "A", "page_context": "/a"}, headers=headers)
        assert made.status_code == 201, made.text
        uid = made.json()["uid"]
        for i in range(30):  # the same statements many times: none may be prepared on a server connection
            assert client.get("/api/v1/events/", headers=headers).status_code == 200
            assert client.put(f"/api/v1/events/{uid}", json={"limit": i + 1}, headers=headers).status_code == 200
            assert client.get(f"/api/v1/events/{uid}/history", headers=headers).status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.delete(f"/api/v1/events/{uid}", headers=headers).status_code == 204


@pytest.mark.parametrize("backend", ["postgresql"])
def test_no_server_side_prepared_statements(engine):
    """psycopg prepares a statement on the server after five runs; through a transaction pooler the next
    transaction may run on another server connection that never saw it. eventctl never prepares."""
    from eventctl import events as core
    from eventctl.db import read_session

    with read_session(engine) as session:
        for _ in range(12):
            core.list_events(session, at=datetime.now(UTC), page="/a")
        prepared = session.execute(sa.text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()
    assert prepared == 0


@pytest.mark.parametrize("backend", POOLED)
def test_the_pooler_restarted_mid_run(db_url, engine, pgbouncer):
    from eventctl.db import write_session
    from eventctl.tokens import create_token

    with write_session(engine) as session:
        token = create_token(session, name="admin", now=datetime.now(UTC))
    headers = {"Authorization": f"Bearer {token}"}
    cli = make_cli(db_url)
    assert cli("create", "--name", "A", "--page", "/a").exit_code == 0
    with TestClient(_app(db_url)) as client:
        assert client.get("/api/v1/events/", headers=headers).status_code == 200
        pgbouncer.stop()
        try:
            down = cli("list", "--json")
            assert down.exit_code == 5 and "unavailable" in down.stderr, down.stderr
            answer = client.get("/api/v1/events/", headers=headers)
            assert answer.status_code in (401, 503) and answer.status_code != 500
            assert answer.status_code == 503, answer.text  # the token check cannot read: unavailable
            assert client.get("/readyz").status_code == 503
        finally:
            pgbouncer.start()
        # back: the first request after the return succeeds (dead pooled connections are replaced)
        assert client.get("/api/v1/events/", headers=headers).status_code == 200
        assert client.get("/readyz").status_code == 200
    assert cli("list", "--json").exit_code == 0


BASE = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.mark.postgres
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/St_Johns"])
def test_time_rules_agree_whatever_the_session_time_zone(pg_server, sqlite_template, tmp_path, zone):
    """No startup parameter pins the session to UTC any more: a database whose default TimeZone is
    +14:00 or -03:30 answers every time rule (status, resolution, overlap, expiry) as SQLite does."""
    import shutil

    from eventctl import events as core
    from eventctl import maintenance, migrate
    from eventctl.db import make_engine, read_session, write_session
    from eventctl.errors import Conflict
    from eventctl.models import Event

    url = pg_server.create()
    admin = sa.create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE \"{sa.engine.make_url(url).database}\" SET TimeZone TO '{zone}'")
    admin.dispose()
    shutil.copyfile(sqlite_template, tmp_path / "t.db")
    engines = {"pg": make_engine(url), "sqlite": make_engine(f"sqlite:///{tmp_path / 't.db'}")}
    migrate.upgrade(engines["pg"], "head")
    try:
        with engines["pg"].connect() as conn:
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == zone
        windows = [(-3, 2), (2, 5), (None, -1), (5, None), (-1, 1)]
        uids = [uuid.uuid4() for _ in windows]
        for eng in engines.values():
            with write_session(eng) as session:
                for uid, (s, e) in zip(uids, windows, strict=True):
                    session.add(
                        Event(
                            uid=uid,
                            name=str(uid),
                            page_context=f"/p{uid.int % 2}",
                            start_date=None if s is None else BASE + timedelta(hours=s),
                            end_date=None if e is None else BASE + timedelta(hours=e),
                            created_by="t",
                            created_at=BASE,
                            updated_at=BASE,
                        )
                    )

        def answers(eng):
            out = []
            with read_session(eng) as session:
                for h in range(-4, 7):
                    at = BASE + timedelta(hours=h, microseconds=1 if h % 2 else 0)
                    for status in ("live", "scheduled", "expired"):
                        out.append(sorted(str(e.uid) for e in core.list_events(session, at=at, status=status)))
                    for page in ("/p0", "/p1"):
                        try:
                            found = core.resolve_current(session, route=page, at=at)
                            out.append(str(found.uid) if found else None)
                        except Conflict as exc:
                            out.append(sorted(exc.uids))
                        try:
                            core.check_overlap(
                                session, page=page, start=at, end=at + timedelta(hours=1), is_default=False,
                                exclude=None, now=at,
                            )  # fmt: skip
                            out.append("free")
                        except Conflict as exc:
                            out.append(sorted(exc.uids))
                    dialect = eng.dialect.name
                    out.append(
                        sorted(
                            str(u) for u in session.exec(sa.select(Event.uid).where(maintenance._expired(dialect, at)))
                        )
                    )
            return out

        assert answers(engines["pg"]) == answers(engines["sqlite"])
    finally:
        for eng in engines.values():
            eng.dispose()
