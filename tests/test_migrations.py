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
RELEASED = [
    "0001_events",
    "0002_api_tokens",
    "0003_categories",
    "0004_platform_filters",
    "0005_audit",
    "0006_current_indexes",
    "0007_drop_page_context_index",
]
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
        conn.exec_driver_sql("DROP INDEX ix_events_current")
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
    if fresh_url.startswith("sqlite"):  # no file yet: nothing to read, and nothing is created
        assert r.exit_code == 5 and "no database" in r.stderr, r.stderr
    else:
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
    r = cli("db", "downgrade", "base", "--yes")
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
    assert r.exit_code == 0 and r.json() == {"from": None, "to": RELEASED[-1], "notes": []}
    r = cli("db", "downgrade", "0001_events", "--json", "--yes")
    assert r.json()["from"] == RELEASED[-1] and r.json()["to"] == "0001_events" and r.json()["notes"] == []
    assert [step["revision"] for step in r.json()["steps"]] == RELEASED[:0:-1]


OLD_ROWS = [
    # (name, filters as the 0003 release stored them, limit)
    ("scalar", {"media_type": "audio", "language": "te", "release_rights": "family_or_friend"}, 20),
    ("capped", {"category_ids": ["0b7a6b0e-3c1a-4c55-9d22-123456789abc"], "extraction_type": "ocr"}, 500),
    ("empty", {}, 100),
    ("rights", {"release_rights": "creator", "published_date": "2026-01-02"}, 101),
]


def _insert_old_rows(engine: sa.Engine) -> dict[str, str]:
    import json
    import uuid

    uids = {}
    with engine.begin() as conn:
        for i, (name, filters, limit) in enumerate(OLD_ROWS):
            uid = uuid.UUID(int=i + 1)
            uids[name] = str(uid)
            conn.execute(
                sa.text(
                    'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, created_by, '
                    "created_at, updated_at) VALUES (:uid, :name, '/old', :filters, :limit, true, 'old', "
                    ":at, :at)"
                ),
                {
                    "uid": uid.hex if engine.dialect.name == "sqlite" else uid,
                    "name": name,
                    "filters": json.dumps(filters),
                    "limit": limit,
                    "at": "2026-01-01 00:00:00.000000",
                },
            )
    return uids


def test_old_filters_are_converted_to_the_platform_shape(fresh_url):
    """A database at the previous head with old-shape rows upgrades; every row then validates."""
    from eventctl import migrate
    from eventctl.db import make_engine
    from eventctl.filters import RecordReviewFilters

    engine = make_engine(fresh_url)
    migrate.upgrade(engine, "0003_categories")
    uids = _insert_old_rows(engine)
    r = make_cli(fresh_url)("db", "upgrade", "--json")
    assert r.exit_code == 0, r.stderr
    notes = r.json()["notes"]
    assert len(notes) == 2 and any(uids["capped"] in n and "500" in n for n in notes), notes
    assert any(uids["rights"] in n and "101" in n for n in notes), notes
    events = {e["name"]: e for e in make_cli(fresh_url)("list", "--json").json()}
    for event in events.values():
        RecordReviewFilters.model_validate(event["filters"])  # strict: the platform accepts it
        assert event["limit"] <= 100 and event["is_default"] is False
    assert events["scalar"]["filters"] == {"media_type": ["audio"], "language": ["te"], "release_rights": "others"}
    assert events["capped"]["limit"] == 100 and events["rights"]["limit"] == 100 and events["empty"]["limit"] == 100
    assert events["rights"]["filters"] == {"release_rights": "creator", "published_date": "2026-01-02"}

    # the downgrade converts back what the old shape can hold ...
    migrate.downgrade(engine, "0003_categories")
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT name, filters FROM events")).all())
    import json

    scalar = rows["scalar"] if isinstance(rows["scalar"], dict) else json.loads(rows["scalar"])
    assert scalar == {"media_type": "audio", "language": "te", "release_rights": "family_or_friend"}
    engine.dispose()


def test_downgrade_refuses_what_the_old_shape_cannot_hold(fresh_url):
    from eventctl import migrate
    from eventctl.db import make_engine
    from eventctl.migrate import current_revision

    engine = make_engine(fresh_url)
    migrate.upgrade(engine, "head")
    cli = make_cli(fresh_url)
    made = cli("create", "--json", "--name", "Two", "--page", "/n", "--media-type", "audio", "--media-type", "text")
    assert made.exit_code == 0, made.stderr
    r = cli("db", "downgrade", "0003_categories", "--yes")
    assert r.exit_code == 2, r.stderr
    assert made.json()["uid"] in r.stderr and "2 values of media_type" in r.stderr
    assert current_revision(engine) == RELEASED[-1]  # nothing changed
    assert cli("show", made.json()["uid"], "--json").json()["filters"]["media_type"] == ["audio", "text"]
    cli("delete", made.json()["uid"], "--yes")
    assert cli("create", "--name", "D", "--page", "/n", "--default").exit_code == 0
    r = cli("db", "downgrade", "0003_categories", "--yes")
    assert r.exit_code == 2 and "is_default" in r.stderr, r.stderr
    engine.dispose()


def test_read_command_on_a_mistyped_sqlite_path_creates_nothing(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "events.db"
    cli = make_cli(f"sqlite:///{target}")
    for args in (["show", "00000000"], ["list"], ["current", "--page", "/x"], ["db", "current"], ["token", "list"]):
        r = cli(*args)
        assert r.exit_code == 5, (args, r.stderr)
        assert "db upgrade" in r.stderr
    assert not (tmp_path / "no").exists()
    assert cli("db", "upgrade").exit_code == 0 and target.is_file()  # the one command that creates it


def test_default_database_is_private(tmp_path):
    import stat

    cli = make_cli(None)
    assert cli("list").exit_code == 0
    db = tmp_path / "xdg-data" / "eventctl" / "eventctl.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_first_use_by_several_processes_at_once(tmp_path):
    """Six processes using the default database for the first time together all succeed (5 rounds)."""
    import os
    import subprocess
    import sys

    for round_ in range(5):
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / f"round{round_}"), "NO_COLOR": "1"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "eventctl", "list", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert out.strip() == "[]"


def test_another_apps_events_table_is_named_not_dumped(fresh_url):
    from eventctl.db import make_engine

    engine = make_engine(fresh_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (id INTEGER PRIMARY KEY, title VARCHAR(10))")
    engine.dispose()
    r = make_cli(fresh_url)("db", "upgrade")
    assert r.exit_code == 5, r.stderr
    assert "already exists" in r.stderr and "not made by eventctl" in r.stderr
    assert "CREATE TABLE" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
def test_no_rights_on_the_tables_says_permission_denied(pg_server):
    """A database user without SELECT on eventctl's tables: 'permission denied', not 'not migrated'."""
    from eventctl import migrate
    from eventctl.db import make_engine

    url = pg_server.create()
    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    role = "eventctl_noaccess"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    try:
        limited = sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)
        for args in (["list"], ["db", "upgrade"]):
            r = make_cli(limited)(*args)
            assert r.exit_code == 5, (args, r.stderr)
            assert "Permission denied" in r.stderr and "Traceback" not in r.stderr, r.stderr
            assert "db upgrade" not in r.stderr or args == ["db", "upgrade"]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        engine.dispose()
        pg_server.drop_role_later(role)


# ---------------------------------------------------------------- downgrade: said, asked, then done


def _seed_everything(cli, tmp_path):
    """2 events (one updated: 3 audit entries), 1 API token, 2 categories."""
    import json

    a = cli("create", "--json", "--name", "A", "--page", "/a").json()
    cli("create", "--name", "B", "--page", "/b")
    assert cli("update", a["uid"], "--name", "A2").exit_code == 0
    assert cli("token", "create", "ci").exit_code == 0
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps([{"id": "0b7a6b0e-3c1a-4c55-9d22-123456789abc", "name": "folk"},
                                {"id": "5f0c2a9d-0000-4000-8000-00000000000b", "name": "news"}]))  # fmt: skip
    assert cli("categories", "import", str(cats)).exit_code == 0


def _counts(engine, tables=("events", "eventctl_audit", "api_tokens", "categories")):
    present = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables if t in present}


def test_downgrade_says_what_it_removes_and_asks_first(fresh_url, tmp_path, monkeypatch):
    from eventctl import migrate
    from eventctl.cli import _common
    from eventctl.db import make_engine
    from eventctl.migrate import current_revision

    engine = make_engine(fresh_url)
    migrate.upgrade(engine, "head")
    cli = make_cli(fresh_url)
    _seed_everything(cli, tmp_path)
    before = _counts(engine)
    assert before == {"events": 2, "eventctl_audit": 3, "api_tokens": 1, "categories": 2}

    # a script without --yes: refused (exit 2), saying what it would remove; nothing changed
    r = cli("db", "downgrade", "0003_categories")
    assert r.exit_code == 2 and "--yes" in r.stderr and "3 audit entries" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert current_revision(engine) == RELEASED[-1] and _counts(engine) == before

    # a person at a terminal sees each step, and may decline
    monkeypatch.setattr(_common, "can_ask", lambda: True)
    r = cli("db", "downgrade", "0003_categories", input="n\n")
    assert r.exit_code == 0 and "Not downgraded" in r.stderr, r.stderr
    assert "0005_audit -> 0004_platform_filters: removes 3 audit entries" in r.stderr
    assert "0006_current_indexes -> 0005_audit: removes no rows" in r.stderr
    assert current_revision(engine) == RELEASED[-1] and _counts(engine) == before
    r = cli("db", "downgrade", "0003_categories", input="y\n")
    assert r.exit_code == 0, r.stderr
    assert "This removes 3 audit entries for good" in r.stderr and "Downgrade?" in r.stderr
    assert current_revision(engine) == "0003_categories"

    # down to base: every kind of row it drops is counted before the question
    monkeypatch.setattr(_common, "can_ask", lambda: False)
    r = cli("db", "downgrade", "base")
    assert r.exit_code == 2, r.stderr
    for said in ("2 categories", "1 API token", "2 events"):
        assert said in r.stderr, r.stderr
    assert current_revision(engine) == "0003_categories"
    r = cli("db", "downgrade", "base", "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    assert [(s["revision"], s["removes"]) for s in r.json()["steps"]] == [
        ("0003_categories", {"categories": 2}),
        ("0002_api_tokens", {"api_tokens": 1}),
        ("0001_events", {"events": 2}),
    ]
    assert "2 events" in r.stderr  # --yes still says it, on stderr
    assert current_revision(engine) is None
    r = cli("db", "downgrade", "base")  # nothing left to remove: nothing to ask
    assert r.exit_code == 0 and "Nothing to downgrade" in r.stderr, r.stderr
    engine.dispose()


def test_every_table_a_downgrade_drops_is_announced(fresh_url):
    """The announcement's table (migrate.DOWNGRADE_DROPS) against what each downgrade really drops."""
    from eventctl import migrate
    from eventctl.db import make_engine

    engine = make_engine(fresh_url)
    migrate.upgrade(engine, "head")
    for prev, rev in reversed(list(zip([None, *RELEASED[:-1]], RELEASED, strict=True))):
        tables = set(sa.inspect(engine).get_table_names())
        [step] = migrate.downgrade_plan(engine, prev or "base")
        assert (step.revision, step.down_to) == (rev, prev)
        migrate.downgrade(engine, prev or "base", announced=[step])
        dropped = tables - set(sa.inspect(engine).get_table_names()) - {"eventctl_alembic_version"}
        assert dropped == {table for table, _ in migrate.DOWNGRADE_DROPS.get(rev, ())}, rev
    engine.dispose()


def test_a_write_after_the_announcement_stops_the_downgrade(fresh_url):
    from eventctl import migrate
    from eventctl.db import make_engine
    from eventctl.errors import Conflict
    from eventctl.migrate import current_revision

    engine = make_engine(fresh_url)
    migrate.upgrade(engine, "head")
    cli = make_cli(fresh_url)
    plan = migrate.downgrade_plan(engine, "base")
    assert cli("create", "--name", "Late", "--page", "/late").exit_code == 0  # after the question was answered
    with pytest.raises(Conflict, match="nothing was removed"):
        migrate.downgrade(engine, "base", announced=plan)
    assert current_revision(engine) == RELEASED[-1] and _counts(engine)["events"] == 1
    migrate.downgrade(engine, "base", announced=migrate.downgrade_plan(engine, "base"))
    assert current_revision(engine) is None
    engine.dispose()


def test_downgrade_to_a_revision_that_is_not_below_refused(fresh_url):
    from eventctl import migrate
    from eventctl.db import make_engine

    engine = make_engine(fresh_url)
    migrate.upgrade(engine, "0003_categories")
    cli = make_cli(fresh_url)
    for target in ("0005_audit", "no_such_rev"):
        r = cli("db", "downgrade", target, "--yes")
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    engine.dispose()
