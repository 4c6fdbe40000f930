"""Fixtures: every storage test runs on SQLite and PostgreSQL.

PostgreSQL: a fresh database per test session (dropped afterwards), tables
emptied between tests. Set EVENTCTL_TEST_PG_URL to point elsewhere. When CI is
set (or EVENTCTL_REQUIRE_POSTGRES=1) an unreachable PostgreSQL fails the run
instead of skipping.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hypothesis
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

PG_ADMIN_URL = os.environ.get("EVENTCTL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = bool(os.environ.get("CI")) or os.environ.get("EVENTCTL_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
# PostgreSQL reached through PgBouncer in transaction mode (tests/pg_topology.py): modules that
# prove the pooler path opt in with ``pytest.mark.parametrize("backend", WITH_POOLER)``
WITH_POOLER = [*BACKENDS, pytest.param("pgbouncer", marks=pytest.mark.postgres)]


class PgServer:
    """Creates uniquely named databases on the test server and drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = sa.engine.make_url(admin_url)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        self.created: list[str] = []
        self.roles: list[str] = []

    def drop_role_later(self, role: str) -> None:
        """Roles are cluster-wide: dropped after the databases that grant them anything."""
        self.roles.append(role)

    def create(self) -> str:
        name = f"eventctl_t_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in self.roles:
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer(PG_ADMIN_URL)
    try:
        with server.admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (CI) but unreachable: {exc.orig}")
        pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_server: PgServer) -> str:
    from eventctl import migrate
    from eventctl.db import make_engine

    url = pg_server.create()
    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    engine.dispose()
    return url


def _empty_tables(url: str) -> None:
    from eventctl.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events")
        conn.exec_driver_sql("DELETE FROM eventctl_audit")
        conn.exec_driver_sql("DELETE FROM categories")
        conn.exec_driver_sql("DELETE FROM api_tokens")
        conn.exec_driver_sql("UPDATE eventctl_state SET version = 0")
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One migrated SQLite file per test session; each test gets a copy (migrating costs ~75 ms a test)."""
    from eventctl import migrate
    from eventctl.db import make_engine

    path = tmp_path_factory.mktemp("template") / "events.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "head")
    engine.dispose()
    return path


def _require(what: str, lacking: list[str]) -> None:
    if lacking:
        message = f"{what} needs {', '.join(lacking)} (Debian: apt-get install pgbouncer postgresql)"
        if REQUIRE_PG:
            pytest.fail(f"{message}; required here (CI)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PgServer) -> Iterator[Any]:
    """PgBouncer (transaction mode) in front of the test PostgreSQL, for this worker's session."""
    from pg_topology import PgBouncer, missing

    _require("PgBouncer", missing("pgbouncer"))
    bouncer = PgBouncer(pg_server.admin_url.port or 5432, host=pg_server.admin_url.host or "127.0.0.1")
    bouncer.start()
    yield bouncer
    bouncer.close()


@pytest.fixture(scope="session")
def replicated() -> Iterator[Any]:
    """A private primary and its hot-standby replica (pg_basebackup -R), for this worker's session."""
    from pg_topology import Replicated, missing

    _require("A replica", missing("initdb", "pg_ctl", "pg_basebackup"))
    pair = Replicated()
    yield pair
    pair.close()


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A migrated, empty database of the parametrized backend."""
    return database_for(backend, request, tmp_path)


def database_for(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A migrated, empty database: ``sqlite`` (a copy of the session's template), ``postgresql``
    (the session's database, emptied) or ``pgbouncer`` (the same, through the pooler)."""
    if backend == "pgbouncer":
        url = request.getfixturevalue("pg_migrated_url")
        _empty_tables(url)
        return request.getfixturevalue("pgbouncer").url(sa.engine.make_url(url).database)
    if backend == "sqlite":
        import shutil

        target = tmp_path / "events.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url = request.getfixturevalue("pg_migrated_url")
    _empty_tables(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    from eventctl.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test sees the developer's EVENTCTL_* variables, .env file or data dir."""
    for key in list(os.environ):
        if key.startswith("EVENTCTL_") and key not in ("EVENTCTL_TEST_PG_URL", "EVENTCTL_REQUIRE_POSTGRES"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def cli(db_url: str) -> Callable[..., Ran]:
    """Run the real CLI in-process against the test database."""
    return make_cli(db_url)


# Hypothesis' 200 ms per-example deadline measures the machine, not the code: one stall on a
# shared, loaded machine failed a run. Properties are proven by their examples; timings by bench/.
hypothesis.settings.register_profile("eventctl", deadline=None)
hypothesis.settings.load_profile("eventctl")


_COMMAND: list[Any] = []


def cli_command() -> Any:
    """eventctl's click command, built once (``typer.main.get_command``): typer's own test runner
    builds the whole tree again on every invoke (~40 ms, most of an in-process call)."""
    if not _COMMAND:
        import typer.main

        from eventctl.cli import app

        _COMMAND.append(typer.main.get_command(app))
    return _COMMAND[0]


def make_cli(db_url: str | None) -> Callable[..., Ran]:
    """Run the real CLI in-process: the runner's public ``isolation()`` (stdin, stdout, stderr, env),
    then the command's ``main()``, as ``CliRunner.invoke`` does after building the command."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
        argv = (["--database-url", db_url] if db_url else []) + list(args)
        with runner.isolation(input=input, env=env) as streams:
            try:
                cli_command().main(args=argv, prog_name="eventctl")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            stdout, stderr = streams[0].getvalue(), streams[1].getvalue()
        ran = Ran(code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))
        assert "Traceback" not in ran.stderr, ran.stderr
        return ran

    return run


def count_rows(db_url: str, table: str = "events") -> int:
    from eventctl.db import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        n = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(n)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many PostgreSQL and browser tests ran, so CI output shows they were not skipped."""
    counts: dict[str, dict[str, int]] = {"PostgreSQL": {}, "browser": {}}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup") or (
                outcome == "passed" and report.when != "call"
            ):
                continue
            keywords = getattr(report, "keywords", {})
            kind = (
                "PostgreSQL"
                if "postgres" in keywords or "postgresql" in report.nodeid
                else ("browser" if "browser" in keywords else None)
            )
            if kind:
                counts[kind][outcome] = counts[kind].get(outcome, 0) + 1
    for kind, c in counts.items():
        terminalreporter.write_line(
            f"{kind} tests: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
            f"{c.get('skipped', 0)} skipped, {c.get('error', 0)} errors"
        )


@pytest.fixture
def client(db_url):
    """The app (``webtools.make_app``) on the test's database, served in-process."""
    from starlette.testclient import TestClient
    from webtools import make_app

    with TestClient(make_app(db_url)) as c:
        yield c


@pytest.fixture
def token(engine):
    """An admin token on the test's database."""
    from eventctl.db import write_session
    from eventctl.tokens import create_token

    with write_session(engine) as session:
        return create_token(session, name="frontend-admin", now=datetime.now(UTC))
