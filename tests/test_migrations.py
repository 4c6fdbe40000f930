"""Migrations are tested like code, on SQLite and PostgreSQL.

pytest-alembic's built-ins run in test_pytest_alembic.py; these add what they do
not check: the append-only list of released revisions, that `db check` fails on
drift, schema snapshots after each step down, sharing a database with another
Alembic app, and the `eventctl db` commands.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from conftest import BACKENDS, make_cli

# Released revisions, oldest first. History is append-only: add, never remove or reorder.
RELEASED = ["0001_events", "0002_api_tokens", "0003_categories"]
EVENTCTL_TABLES = {"events", "eventctl_state", "api_tokens", "categories", "eventctl_alembic_version"}


@pytest.fixture(params=BACKENDS)
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("pg_server").create()


def _schema(engine: sa.Engine) -> dict:
    insp = sa.inspect(engine)
    out = {}
    for table in sorted(insp.get_table_names()):
        cols = {c["name"]: (str(c["type"]), c["nullable"]) for c in insp.get_columns(table)}
        idx = sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table))
        out[table] = (cols, idx)
    return out


def test_single_head_and_append_only_history():
    from eventctl import migrate
    from eventctl.migrate import SCHEMA_HEAD

    history = [r["revision"] for r in reversed(migrate.history())]
    assert history[: len(RELEASED)] == RELEASED, "a released revision disappeared or moved"
    assert migrate.head_revision() == history[-1] == SCHEMA_HEAD
    downs = [r["down_revision"] for r in reversed(migrate.history())]
    assert downs == [None, *history[:-1]], "the chain must be linear"


def test_upgrade_models_match_ddl_and_check_detects_drift(fresh_url):
    from eventctl import migrate
    from eventctl.db import make_engine
    from eventctl.migrate import SCHEMA_HEAD, current_revision

    engine = make_engine(fresh_url)
    assert current_revision(engine) is None
    migrate.upgrade(engine, "head")
    assert current_revision(engine) == SCHEMA_HEAD
    assert EVENTCTL_TABLES <= set(sa.inspect(engine).get_table_names())
    assert migrate.check(engine) == []
    cli = make_cli(fresh_url)
    r = cli("db", "check")
    assert r.exit_code == 0, r.stderr
    # the check can fail: drift the database away from the models
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_events_page_context")
    assert migrate.check(engine)
    r = cli("db", "check")
    assert r.exit_code == 1 and "differ" in r.stderr
    engine.dispose()


def test_up_down_consistency(fresh_url):
    from eventctl import migrate
    from eventctl.db import make_engine
    from eventctl.migrate import current_revision

    engine = make_engine(fresh_url)
    snapshots = {}
    for rev in RELEASED:
        migrate.upgrade(engine, rev)
        assert current_revision(engine) == rev
        snapshots[rev] = _schema(engine)
    for prev, rev in reversed(list(zip([None, *RELEASED[:-1]], RELEASED, strict=True))):
        migrate.downgrade(engine, prev or "base")
        assert current_revision(engine) == prev
        if prev:
            assert _schema(engine) == snapshots[prev], f"downgrade from {rev} did not restore {prev}"
    assert set(sa.inspect(engine).get_table_names()) <= {"eventctl_alembic_version"}
    migrate.upgrade(engine, "head")
    assert _schema(engine) == snapshots[RELEASED[-1]]
    engine.dispose()


def test_db_commands(fresh_url):
    cli = make_cli(fresh_url)
    r = cli("db", "current")
    assert r.exit_code == 0 and "(none)" in r.stdout
    r = cli("list")
    assert r.exit_code == 5 and "eventctl db upgrade" in r.stderr  # never migrated implicitly
    r = cli("db", "upgrade", "0001_events")
    assert r.exit_code == 0, r.stderr
    r = cli("current", "--page", "/x")
    assert r.exit_code == 5 and "0001_events" in r.stderr and "eventctl db upgrade" in r.stderr
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "current", "--json").json() == {"revision": RELEASED[-1], "head": RELEASED[-1], "at_head": True}
    hist = cli("db", "history", "--json").json()
    assert [h["revision"] for h in hist][::-1][: len(RELEASED)] == RELEASED
    r = cli("db", "upgrade", "no_such_rev")
    assert r.exit_code == 2 and "no_such_rev" in r.stderr
    r = cli("db", "downgrade", "base")
    assert r.exit_code == 0, r.stderr
    assert cli("db", "current").stdout.strip() == "(none)"


def test_shares_a_database_with_another_alembic_app(fresh_url):
    """eventctl's own version table; the other app's version row and tables untouched."""
    from eventctl import migrate
    from eventctl.db import make_engine

    engine = make_engine(fresh_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('otherapp_0042')")
        conn.exec_driver_sql("CREATE TABLE other_users (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        conn.exec_driver_sql("INSERT INTO other_users VALUES (1, 'ada')")
    before = _schema(engine)
    migrate.upgrade(engine, "head")
    assert migrate.check(engine) == [], "autogenerate must not propose touching foreign tables"
    cli = make_cli(fresh_url)
    assert cli("create", "--name", "A", "--page", "/a").exit_code == 0
    migrate.downgrade(engine, "base")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("otherapp_0042",)]
        assert conn.exec_driver_sql("SELECT id, name FROM other_users").all() == [(1, "ada")]
    after = _schema(engine)
    after.pop("eventctl_alembic_version")
    assert after == before
    engine.dispose()


def test_unreachable_database_exits_5_quickly():
    import time

    cli = make_cli("postgresql+psycopg://nobody@127.0.0.1:1/none")
    start = time.monotonic()
    r = cli("list")
    assert r.exit_code == 5, r.stderr
    assert "unavailable" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 10


def test_database_url_password_is_never_printed():
    cli = make_cli("postgresql+psycopg://user:s3cret-pw@127.0.0.1:1/none")
    r = cli("list")
    assert r.exit_code == 5 and "s3cret-pw" not in r.stderr


def test_bad_database_url_is_usage_error():
    r = make_cli("mysql://x@localhost/db")("list")
    assert r.exit_code == 2 and "Unsupported database" in r.stderr
    r = make_cli("::::")("list")
    assert r.exit_code == 2


def test_default_sqlite_is_created_and_migrated_on_first_use(tmp_path):
    cli = make_cli(None)
    r = cli("create", "--name", "A", "--page", "/a", "--json")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "xdg-data" / "eventctl" / "eventctl.db").is_file()
    assert cli("current", "--page", "/a", "--json").json()["name"] == "A"


def test_db_upgrade_json(fresh_url):
    cli = make_cli(fresh_url)
    r = cli("db", "upgrade", "--json")
    assert r.exit_code == 0 and r.json() == {"from": None, "to": RELEASED[-1]}
    r = cli("db", "downgrade", "0001_events", "--json")
    assert r.json() == {"from": RELEASED[-1], "to": "0001_events"}
