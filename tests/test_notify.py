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
        data = json.loads(note.payload)
        got = set(data["p"] if isinstance(data, dict) else data)
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
    payloads = _notify_payloads(pages, version=2**62)
    assert len(payloads) > 1 and all(len(p.encode()) < 8000 for p in payloads)
    assert [page for p in payloads for page in json.loads(p)["p"]] == pages
    assert {json.loads(p)["v"] for p in payloads} == {2**62}


def test_each_notification_carries_the_counter_its_write_set(listener, pg_migrated_url):
    """A listener (or a worker reading a replica) learns from the notification itself which counter
    reflects the write: no read of the counter, which a later write may already have moved."""
    import sqlalchemy as sa

    conn, _ = listener
    cli = make_cli(pg_migrated_url)
    for name in ("A", "B", "C"):
        assert cli("create", "--name", name, "--page", f"/{name}").exit_code == 0
    notes = [json.loads(n.payload) for _, n in zip(range(3), conn.notifies(timeout=30), strict=False)]
    from eventctl.db import make_engine

    engine = make_engine(pg_migrated_url)
    with engine.connect() as c:
        now = c.execute(sa.text("SELECT version FROM eventctl_state")).scalar_one()
    engine.dispose()
    assert [(n["v"], n["p"]) for n in notes] == [(now - 2, ["/A"]), (now - 1, ["/B"]), (now, ["/C"])]


def test_notifications_of_an_earlier_release_and_garbage_are_read_safely():
    from eventctl.web.current.feed import parse_notification

    assert parse_notification('["/a", "/b"]') == (["/a", "/b"], None)  # a writer not yet upgraded
    assert parse_notification('{"v": 7, "p": ["/a"]}') == (["/a"], 7)
    hostile = ("[" * 5000 + "]" * 5000, '{"v": 1000000000000000000000000000000, "p": []}')  # anyone may NOTIFY
    for bad in (
        '{"v": "7", "p": []}',
        '{"v": true, "p": []}',
        '{"v": -1, "p": []}',
        '{"p": [1]}',
        "[1]",
        "{}",
        *hostile,
    ):
        with pytest.raises(ValueError):
            parse_notification(bad)


def test_cleanup_notifies_the_pages_it_cleaned(listener, pg_migrated_url):
    cli = make_cli(pg_migrated_url)
    for page in ("/old/a", "/old/b"):
        assert cli("create", "--name", "Old", "--page", page, "--start", "-30d", "--end", "-20d").exit_code == 0
    assert cli("create", "--name", "New", "--page", "/new").exit_code == 0
    _pages(listener)
    r = cli("cleanup", "--older-than", "7d", "--json")
    assert r.exit_code == 0, r.stderr
    assert _pages(listener) == {"/old/a", "/old/b"}
