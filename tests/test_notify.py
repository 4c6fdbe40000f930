"""PostgreSQL NOTIFY: every write names the pages it touched, delivered only on commit (SPEC §4)."""

from __future__ import annotations

import json

import pytest

from conftest import make_cli

pytestmark = pytest.mark.postgres


@pytest.fixture
def listener(pg_migrated_url):
    import psycopg
    import sqlalchemy as sa

    from conftest import _empty_tables

    _empty_tables(pg_migrated_url)
    url = sa.engine.make_url(pg_migrated_url)
    kwargs = {"host": url.host, "port": url.port, "user": url.username, "dbname": url.database, "autocommit": True}
    with psycopg.connect(**kwargs) as conn, psycopg.connect(**kwargs) as marker:
        conn.execute("LISTEN eventctl_events")
        yield conn, marker


MARK = "\x00mark"  # no page key holds a NUL


def _pages(listener) -> set[str]:
    """The pages notified since the last call: read up to a marker sent now from another
    connection (PostgreSQL delivers in commit order), so nothing late is missed or counted twice."""
    conn, marker = listener
    marker.execute("SELECT pg_notify('eventctl_events', %s)", (json.dumps([MARK]),))
    pages: set[str] = set()
    for note in conn.notifies(timeout=30):
        got = set(json.loads(note.payload))
        if MARK in got:
            return pages | (got - {MARK})
        pages |= got
    raise AssertionError(f"the marker never arrived (pages so far: {pages})")


def test_writes_notify_their_pages_on_commit_only(listener, pg_migrated_url):
    cli = make_cli(pg_migrated_url)
    ev = cli("create", "--json", "--name", "A", "--page", "/review/తెలుగు").json()
    assert _pages(listener) == {"/review/తెలుగు"}
    r = cli("create", "--name", "B", "--page", "/review/తెలుగు")  # refused by the guard: rolled back
    assert r.exit_code == 3
    assert _pages(listener) == set()
    assert cli("update", ev["uid"], "--page", "doc_digitization").exit_code == 0
    assert _pages(listener) == {"/review/తెలుగు", "doc_digitization"}  # the old page and the new
    assert cli("delete", ev["uid"], "--yes").exit_code == 0
    assert _pages(listener) == {"doc_digitization"}


def test_large_page_sets_are_split_under_the_payload_limit():
    from eventctl.events import _notify_payloads

    pages = [f"/{'p' * 250}{i}" for i in range(100)]
    payloads = _notify_payloads(pages)
    assert len(payloads) > 1 and all(len(p.encode()) < 8000 for p in payloads)
    assert [page for p in payloads for page in json.loads(p)] == pages


def test_cleanup_notifies_the_pages_it_cleaned(listener, pg_migrated_url):
    cli = make_cli(pg_migrated_url)
    for page in ("/old/a", "/old/b"):
        assert cli("create", "--name", "Old", "--page", page, "--start", "-30d", "--end", "-20d").exit_code == 0
    assert cli("create", "--name", "New", "--page", "/new").exit_code == 0
    _pages(listener)
    r = cli("cleanup", "--older-than", "7d", "--json")
    assert r.exit_code == 0, r.stderr
    assert _pages(listener) == {"/old/a", "/old/b"}
