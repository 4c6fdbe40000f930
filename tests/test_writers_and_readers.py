"""A long writer blocks no reader (SQLite WAL, the token check a read); bulk writers need one lock slot."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime

import psycopg.errors
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import count_rows, make_cli


def _app(db_url):
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    return create_app(Settings(database_url=db_url, poll_interval=0.1))


def _token(engine) -> str:
    from eventctl.db import write_session
    from eventctl.tokens import create_token

    with write_session(engine) as session:
        return create_token(session, name="admin", now=datetime.now(UTC))


def _last_used(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT last_used_at FROM api_tokens")).scalar_one()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readers_and_admin_reads_do_not_wait_for_a_writer_holding_sqlite(db_url, engine):
    token = _token(engine)
    cli = make_cli(db_url)
    assert cli("create", "--name", "A", "--page", "/a").exit_code == 0
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as probe:
        assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with TestClient(_app(db_url)) as client:
        writer = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            # the strongest lock a writer takes (a large apply spilling its cache, or committing)
            writer.execute("BEGIN EXCLUSIVE")
            writer.execute("UPDATE events SET name = 'B'")
            read = make_cli(db_url)("list", "--json", env={})
            assert read.exit_code == 0 and read.json()[0]["name"] == "A", read.stderr
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(3):  # the first records the token's use (given up at once while the writer holds)
                r = client.get("/api/v1/events/", headers=headers)
                assert r.status_code == 200 and r.json()[0]["name"] == "A", r.text
            assert client.get("/readyz").status_code == 200
        finally:
            writer.execute("ROLLBACK")
            writer.close()


def test_the_token_check_writes_at_most_once_a_minute(db_url, engine, monkeypatch):
    from eventctl.web import auth

    token = _token(engine)
    touches = []
    real = auth._touch
    monkeypatch.setattr(auth, "_touch", lambda *a: (touches.append(a[1]), real(*a)))
    with TestClient(_app(db_url)) as client:
        for _ in range(5):
            assert client.get("/api/v1/events/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert touches == ["admin"]  # recorded once, not a write transaction on every request
    assert _last_used(engine) is not None


@pytest.mark.parametrize("backend", ["postgresql"])
def test_apply_holds_one_advisory_lock_however_many_pages(db_url, engine):
    from eventctl import declarative
    from eventctl.db import write_session

    doc = [{"name": f"E{i}", "page_context": f"/p/{i}"} for i in range(300)]
    entries = declarative.validate_entries(doc, source="f")
    for dry_run in (True, False):
        with write_session(engine) as session:
            declarative.apply(session, entries=entries, prune=True, dry_run=dry_run, actor="t")
            held = session.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
            ).scalar_one()
            assert held == 1, held
    assert count_rows(db_url) == 300


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])
def test_apply_of_more_pages_than_the_servers_lock_slots(db_url, tmp_path):
    # default max_locks_per_transaction (64) x max_connections (100): ~6,400 slots shared by the server
    doc = [{"name": "E", "page_context": f"/p/{i}"} for i in range(15_000)]
    (tmp_path / "big.json").write_text(json.dumps(doc))
    cli = make_cli(db_url)
    for args in (("--dry-run",), ()):
        r = cli("apply", str(tmp_path / "big.json"), "--json", *args)
        assert r.exit_code == 0, r.stderr
        assert r.json()["created"] == 15_000
    assert count_rows(db_url) == 15_000


def test_a_server_out_of_lock_slots_is_named():
    from eventctl.errors import DatabaseUnavailable, convert_db_error

    exc = sa.exc.OperationalError(
        "SELECT pg_advisory_xact_lock(1, 2)", {}, psycopg.errors.OutOfMemory("out of shared memory")
    )
    error = convert_db_error(exc)
    assert isinstance(error, DatabaseUnavailable) and error.exit_code == 5
    assert "max_locks_per_transaction" in error.message and "nothing was written" in error.message


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_single_writer_waits_for_a_bulk_writer(db_url, engine):
    """The bulk lock and the per-page locks exclude each other: a create on a page of a running apply
    waits for it, then sees its events (and the overlap guard judges them)."""
    from eventctl import events as core
    from eventctl.db import write_session

    cli = make_cli(db_url)
    done = []
    with write_session(engine) as session:
        core.lock_all_pages(session)

        def create():
            done.append(cli("create", "--name", "X", "--page", "/a", "--json"))

        t = threading.Thread(target=create)
        t.start()
        t.join(1.0)
        assert t.is_alive() and not done  # waiting for the bulk writer
        session.execute(
            sa.text(
                'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, is_default, '
                "created_by, created_at, updated_at) VALUES "
                "(gen_random_uuid(), 'bulk', '/a', '{}', 20, true, false, 't', now(), now())"
            )
        )
    t.join(30)
    assert done and done[0].exit_code == 3, done[0].stderr  # it saw the bulk writer's event: an overlap
