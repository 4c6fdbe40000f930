"""SPEC §11 on the real parts: the web app behind a transaction-mode pooler (polling, or LISTEN on a
direct URL), and reading /current from a hot-standby replica (never older than a known write)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import make_cli

pytestmark = pytest.mark.postgres
CURRENT = "/api/v1/events/current"


def _app(**settings):
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    return create_app(Settings(poll_interval=0.1, **settings))


def _until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within the time allowed")
        time.sleep(0.02)


def _name(client, page: str):
    r = client.get(CURRENT, headers={"X-Page-Route": page})
    assert r.status_code == 200, r.text
    return None if r.json() is None else r.json()["name"]


def _direct(pooled_url: str, pg_server) -> str:
    return pg_server.admin_url.set(database=sa.engine.make_url(pooled_url).database).render_as_string(
        hide_password=False
    )


@pytest.mark.parametrize("backend", ["pgbouncer"])
def test_behind_a_pooler_without_a_listen_url_the_app_polls_and_says_so(db_url, caplog):
    with TestClient(_app(database_url=db_url, metrics_public=True)) as client:
        service = client.app.fastapi.state.current
        _until(lambda: service.freshness_note, timeout=60.0)  # the probe waits 5 s for its round trip
        assert "transaction-mode pooler" in service.freshness_note
        ready = client.get("/readyz").json()
        assert ready["freshness"] == "poll" and "pooler" in ready["freshness_note"], ready
        assert sum("EVENTCTL_LISTEN_URL" in r.getMessage() for r in caplog.records) == 1  # said once
        assert _name(client, "/p") is None
        assert make_cli(db_url)("create", "--name", "A", "--page", "/p").exit_code == 0
        _until(lambda: _name(client, "/p") == "A")  # seen by polling
        metrics = client.get("/metrics").text
        assert 'eventctl_freshness_mode{mode="poll"} 1.0' in metrics, metrics[-2000:]


@pytest.mark.parametrize("backend", ["pgbouncer"])
def test_behind_a_pooler_with_a_direct_listen_url_writes_are_pushed(db_url, pg_server):
    with TestClient(_app(database_url=db_url, listen_url=_direct(db_url, pg_server))) as client:
        service = client.app.fastapi.state.current
        _until(lambda: service.listening)
        assert service.freshness_note is None and client.get("/readyz").json()["freshness"] == "listen"
        assert _name(client, "/p") is None
        service.feed.poll_interval = 3600.0  # no poll can explain what follows: only a notification
        started = time.monotonic()
        assert make_cli(db_url)("create", "--name", "A", "--page", "/p").exit_code == 0
        _until(lambda: _name(client, "/p") == "A", timeout=5.0)
        assert time.monotonic() - started < 5.0


def test_a_hot_standby_cannot_listen_and_the_app_says_why(replicated):
    from eventctl import migrate
    from eventctl.db import make_engine

    engine = make_engine(replicated.primary.url())
    migrate.upgrade(engine, "head")
    engine.dispose()
    app = _app(database_url=replicated.primary.url(), listen_url=replicated.replica.url())
    with TestClient(app) as client:
        service = client.app.fastapi.state.current
        _until(lambda: service.freshness_note, timeout=60.0)
        assert "hot standby" in service.freshness_note
        assert client.get("/readyz").json()["freshness"] == "poll"


@pytest.fixture
def primary_and_replica(replicated):
    """A migrated, empty schema on the private primary, replayed on its replica."""
    from eventctl import migrate
    from eventctl.db import make_engine

    engine = make_engine(replicated.primary.url())
    migrate.upgrade(engine, "head")
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events")
    engine.dispose()
    yield replicated.primary.url(), replicated.replica.url(), replicated
    replica = sa.create_engine(replicated.replica.url(), isolation_level="AUTOCOMMIT")
    with replica.connect() as conn:
        conn.exec_driver_sql("SELECT pg_wal_replay_resume()")
    replica.dispose()


def _fallbacks(client) -> float:
    text = client.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("eventctl_current_replica_fallbacks_total"))
    return float(line.split()[-1])


def test_current_reads_the_replica_and_never_keeps_an_answer_older_than_a_known_write(primary_and_replica):
    primary, replica_url, _ = primary_and_replica
    cli = make_cli(primary)
    with TestClient(_app(database_url=primary, read_database_url=replica_url, metrics_public=True)) as client:
        service = client.app.fastapi.state.current
        _until(lambda: service.listening)
        assert service.read_engine.url.port != service.engine.url.port
        assert cli("create", "--name", "A", "--page", "/p").exit_code == 0
        _until(lambda: _name(client, "/p") == "A")  # through the replica, once it replayed the write
        before = _fallbacks(client)
        replica = sa.create_engine(replica_url, isolation_level="AUTOCOMMIT")
        with replica.connect() as conn:
            conn.exec_driver_sql("SELECT pg_wal_replay_pause()")
        try:
            assert cli("create", "--name", "B", "--page", "/q").exit_code == 0
            # the replica never replays it now: the notified write is read from the primary, not missed
            _until(lambda: _name(client, "/q") == "B")
            assert _fallbacks(client) > before
        finally:
            with replica.connect() as conn:
                conn.exec_driver_sql("SELECT pg_wal_replay_resume()")
            replica.dispose()


def test_a_replica_that_is_down_degrades_to_the_primary(primary_and_replica):
    primary, replica_url, pair = primary_and_replica
    cli = make_cli(primary)
    with TestClient(_app(database_url=primary, read_database_url=replica_url, metrics_public=True)) as client:
        service = client.app.fastapi.state.current
        _until(lambda: service.listening)
        pair.replica.stop()
        try:
            assert cli("create", "--name", "C", "--page", "/r").exit_code == 0
            _until(lambda: _name(client, "/r") == "C")  # no 500, no 503: the primary answered
        finally:
            pair.replica.start()
        assert cli("update", service_uid(primary, "/r"), "--name", "D").exit_code == 0
        _until(lambda: _name(client, "/r") == "D", timeout=15.0)


def service_uid(url: str, page: str) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        uid = conn.execute(sa.text("SELECT uid FROM events WHERE page_context = :p"), {"p": page}).scalar_one()
    engine.dispose()
    return str(uid)


def test_settings_for_the_shapes_are_checked_when_the_app_starts():
    from eventctl.errors import InvalidInput
    from eventctl.web.app import listen_url

    assert listen_url(None) is None
    assert listen_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    for bad in ("sqlite:///x.db", "not a url ::"):
        with pytest.raises(InvalidInput):
            listen_url(bad)
    assert datetime.now(UTC)  # the module's clock is aware
