"""cleanup under concurrency (SPEC §5, issue 8 items 1 and 8), with real connections and processes.

- An event revived (its end moved to 2099) between a batch's SELECT and its DELETE
  is never deleted: the DELETE re-checks its condition in SQL.
- Two cleanups at once both exit 0 and together delete each event once (one audit
  entry each).

Rounds: the hook race 25 rounds x 3 batches (75 revives mid-batch), the free-running
race 15 rounds x 40 events per database, the two processes 3 rounds per database (and
3 on files). Both revive races have a twin that swaps the DELETE's re-check for
``true`` (the old DELETE) and asserts the same harness catches it: they fail with
the fix reverted (the hook race loses every revived event, the free-running one
lost 23 in 15 rounds when tried).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from conftest import count_rows

pytestmark = pytest.mark.slow
PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgres)]
REVIVED_END = datetime(2099, 1, 1, tzinfo=UTC)
HOOK_ROUNDS = 25  # rounds of the deterministic race (PostgreSQL), 3 batches each
THREAD_ROUNDS = 15  # rounds of the free-running race, per database
PROCESS_ROUNDS = 3  # rounds of two cleanup processes at once, per database


def insert_expired(engine: sa.Engine, n: int, *, tag: str = "e", days_ago: int = 30) -> list[str]:
    """n expired events, each on its own page (a revived one overlaps nothing), in one statement."""
    end = (datetime.now(UTC) - timedelta(days=days_ago)).replace(tzinfo=None).isoformat(sep=" ")
    sqlite = engine.dialect.name == "sqlite"
    uids = [uuid.uuid4() for _ in range(n)]
    rows = [
        {"u": u.hex if sqlite else str(u), "n": f"{tag}{i}", "p": f"/race/{tag}/{u.hex[:12]}", "e": end}
        for i, u in enumerate(uids)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, is_default, start_date, '
                "end_date, created_by, created_at, updated_at) "
                "VALUES (:u, :n, :p, '{}', 20, true, false, NULL, :e, 'seed', '2020-01-01 00:00:00', "
                "'2020-01-01 00:00:00')"
            ),
            rows,
        )
    return [str(u) for u in uids]


def existing(engine: sa.Engine) -> set[str]:
    from eventctl.db import read_session
    from eventctl.models import Event

    with read_session(engine) as session:
        return {str(uid) for uid in session.execute(sa.select(Event.uid)).scalars()}


def audit_deletes(engine: sa.Engine, uids: list[str]) -> list[tuple[str, str]]:
    """(uid, via) of every delete entry about these events."""
    from eventctl.db import read_session
    from eventctl.models import AuditEntry

    wanted = {uuid.UUID(u) for u in uids}
    with read_session(engine) as session:
        rows = session.execute(sa.select(AuditEntry.uid, AuditEntry.via).where(AuditEntry.action == "delete")).all()
    return [(str(uid), via) for uid, via in rows if uid in wanted]


def revive(engine: sa.Engine, uid: str) -> bool:
    """Move the event's end to 2099 through the core (as `update` and PUT do); False if it is gone."""
    from eventctl.db import write_session
    from eventctl.errors import NotFound
    from eventctl.events import update_event
    from eventctl.shapes import EventUpdate

    try:
        with write_session(engine) as session:
            update_event(session, ref=uid, changes=EventUpdate(end_date=REVIVED_END), actor="reviver", via="cli")
        return True
    except NotFound:
        return False


def run_cleanup(engine: sa.Engine, *, batch_size: int):
    from eventctl.maintenance import cleanup_events

    report = cleanup_events(
        engine, cutoff=datetime.now(UTC) - timedelta(days=7), dry_run=False, actor="cleaner", batch_size=batch_size
    )
    try:
        return report.removed, report.errors, report.error_messages, list(report.items)
    finally:
        report.close()


# ---------------------------------------------------------------- revived between SELECT and DELETE


def _uids_of(parameters: object) -> list[uuid.UUID]:
    values = parameters.values() if isinstance(parameters, dict) else parameters or ()
    out = []
    for value in values:  # type: ignore[union-attr]
        try:
            out.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            continue  # the cutoff
    return out


@contextmanager
def before_cleanup_deletes(fn: Callable[[list[uuid.UUID]], object]) -> Iterator[None]:
    """Run ``fn(planned uids)`` between a cleanup batch's SELECT and its DELETE, through SQLAlchemy's
    public event API on every engine (no test hook in the product)."""

    def listener(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM EVENTS"):
            fn(_uids_of(parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listener)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listener)


def hook_race(db_url: str, monkeypatch: pytest.MonkeyPatch, rounds: int) -> list[str]:
    """Each batch: between cleanup's SELECT and DELETE, another connection revives one planned
    event and commits. Returns the revived events that cleanup deleted (must be none)."""
    from eventctl.db import make_engine

    cleaner, other = make_engine(db_url), make_engine(db_url)
    lost: list[str] = []
    try:
        for _ in range(rounds):
            uids = insert_expired(cleaner, 9)
            revived: list[str] = []

            def between(planned: list[uuid.UUID], revived: list[str] = revived) -> None:
                target = str(random.choice(planned))
                assert revive(other, target)  # committed by another connection, mid-batch
                revived.append(target)

            with before_cleanup_deletes(between):
                removed, errors, messages, items = run_cleanup(cleaner, batch_size=3)
            assert errors == 0, messages
            assert len(revived) == 3
            left = existing(cleaner)
            lost += [u for u in revived if u not in left]
            if not lost:
                assert left == set(revived)
                assert removed == 6 and sorted(items) == sorted(set(uids) - set(revived))
                assert sorted(u for u, _ in audit_deletes(cleaner, uids)) == sorted(items)
            monkeypatch.undo()
            with cleaner.begin() as conn:
                conn.exec_driver_sql("DELETE FROM events")
    finally:
        cleaner.dispose()
        other.dispose()
    return lost


@pytest.mark.parametrize("backend", PG_ONLY)
def test_event_revived_between_select_and_delete_is_kept(db_url, monkeypatch):
    with monkeypatch.context() as m:  # the harness undoes its patches: not the test's isolation
        assert hook_race(db_url, m, HOOK_ROUNDS) == []


@pytest.mark.parametrize("backend", PG_ONLY)
def test_hook_race_catches_a_delete_without_recheck(db_url, monkeypatch):
    """The same harness with the re-check removed (the old code's DELETE): every revived event is lost."""
    from eventctl import maintenance

    monkeypatch.setattr(maintenance, "_recheck", lambda dialect, cutoff: sa.true())
    with monkeypatch.context() as m:
        lost = hook_race(db_url, m, 2)
    assert len(lost) == 6


def _revive_all(
    engine: sa.Engine, order: list[str], revived: list[str], failures: list[BaseException], start: threading.Barrier
) -> None:
    try:
        start.wait()
        for uid in order:
            if revive(engine, uid):
                revived.append(uid)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
        failures.append(exc)


def thread_race(db_url: str, monkeypatch: pytest.MonkeyPatch, rounds: int) -> tuple[list[str], int]:
    """A reviver thread revives every event, in random order, while cleanup runs (its window
    between SELECT and DELETE widened by 3 ms). Returns (revived events that were deleted,
    how many revives committed)."""
    from eventctl.db import make_engine

    cleaner, other = make_engine(db_url), make_engine(db_url)
    lost: list[str] = []
    revives = 0
    try:
        for _ in range(rounds):
            uids = insert_expired(cleaner, 40)
            order = random.sample(uids, len(uids))
            revived: list[str] = []
            failures: list[BaseException] = []
            start = threading.Barrier(2)
            thread = threading.Thread(target=_revive_all, args=(other, order, revived, failures, start))
            thread.start()
            start.wait()
            with before_cleanup_deletes(lambda planned: time.sleep(0.003)):
                removed, errors, messages, items = run_cleanup(cleaner, batch_size=4)
            thread.join(60)
            assert not failures, failures
            assert errors == 0, messages
            left = existing(cleaner)
            lost += [u for u in revived if u not in left]
            revives += len(revived)
            # every event is either revived (and kept) or deleted once, with its one audit entry
            assert len(left) + removed == len(uids)
            deletes = audit_deletes(cleaner, uids)
            assert sorted(u for u, _ in deletes) == sorted(items) == sorted(set(uids) - left)
            with cleaner.begin() as conn:
                conn.exec_driver_sql("DELETE FROM events")
    finally:
        cleaner.dispose()
        other.dispose()
    return lost, revives


def test_event_revived_while_cleanup_runs_is_kept(db_url, monkeypatch):
    lost, revives = thread_race(db_url, monkeypatch, THREAD_ROUNDS)
    assert lost == []
    assert revives > 0  # the two really ran at the same time


@pytest.mark.parametrize("backend", PG_ONLY)
def test_thread_race_catches_a_delete_without_recheck(db_url, monkeypatch):
    from eventctl import maintenance

    monkeypatch.setattr(maintenance, "_recheck", lambda dialect, cutoff: sa.true())
    lost, _ = thread_race(db_url, monkeypatch, THREAD_ROUNDS)
    assert lost, "the free-running race did not catch a cleanup without the re-check"


# ---------------------------------------------------------------- two cleanup processes


CLEANUP_PROCESS = """\
import os, sys, time
from eventctl import maintenance
maintenance.EVENT_BATCH = 250
import sqlalchemy
sqlalchemy.event.listen(  # keep the two runs overlapping: a pause before each batch's DELETE
    sqlalchemy.engine.Engine, "before_cursor_execute",
    lambda conn, cur, statement, *rest: statement.startswith("DELETE FROM events") and time.sleep(0.02),
)
_lock = maintenance._try_lock
maintenance._try_lock = lambda fd: time.sleep(0.001) or _lock(fd)  # each file and directory, too
from eventctl.cli import main  # everything imported before the signal: the two start together
import eventctl.db, eventctl.models, sqlalchemy, psycopg, rich.progress
go, ready = sys.argv[1], sys.argv[2]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
sys.argv = ["eventctl", "cleanup", "--json", *sys.argv[3:]]
began = time.time()
try:
    main()
finally:
    sys.stderr.write(f"\\nSPAN {began} {time.time()}\\n")
"""


def two_cleanups(go, env: dict[str, str], *args: str) -> list[dict]:
    """Two `eventctl cleanup --json ARGS` processes started at once; both must exit 0 and overlap."""
    ready = [go.with_name(f"{go.name}.ready{i}") for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLEANUP_PROCESS, str(go), str(flag), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)  # both interpreters have imported eventctl and wait for the signal
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "changed during cleanup" not in err and "Traceback" not in err
    spans = [[float(x) for x in err.rsplit("SPAN", 1)[1].split()] for _, err in outs]
    assert max(b for b, _ in spans) < min(e for _, e in spans), "the two cleanups did not overlap"
    return [json.loads(out)["sources"] for out, _ in outs]


def test_two_cleanups_at_once_both_succeed_and_remove_each_event_once(db_url, engine, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["EVENTCTL_DATABASE_URL"] = db_url
    env["EVENTCTL_ACTOR"] = "ops"
    for round_ in range(PROCESS_ROUNDS):
        uids = insert_expired(engine, 2000, tag=f"r{round_}")
        docs = two_cleanups(tmp_path / f"go{round_}", env)
        removed = [doc["events"]["removed"] for doc in docs]
        items = [u for doc in docs for u in doc["events"]["items"]]
        assert sum(removed) == len(uids) and sorted(items) == sorted(uids), removed
        deletes = audit_deletes(engine, uids)
        assert sorted(u for u, _ in deletes) == sorted(uids)  # exactly one entry per event
        assert {via for _, via in deletes} == {"cleanup"}
        assert count_rows(db_url) == 0


def test_two_cleanups_at_once_remove_each_file_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    old = time.time() - 30 * 86400
    for round_ in range(PROCESS_ROUNDS):
        up, ch = tmp_path / f"up{round_}", tmp_path / f"ch{round_}"
        files, uploads = [], []
        for d in range(30):
            for f in range(10):
                path = up / f"d{d:02d}" / f"f{f}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"u" * 10)
                os.utime(path, (old, old))
                files.append(f"d{d:02d}/f{f}.bin")
        for u in range(100):
            for c in range(3):
                path = ch / f"upload{u:03d}" / f"chunk{c}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"c" * 100)
                os.utime(path, (old, old))
            os.utime(path.parent, (old, old))
            uploads.append(f"upload{u:03d}")
        for d in up.iterdir():
            os.utime(d, (old, old))
        docs = two_cleanups(
            tmp_path / f"go{round_}", env, "--skip-events", "--uploads-dir", str(up), "--chunks-dir", str(ch)
        )
        for source, expected, size in (("uploads", files, 10), ("chunks", uploads, 300)):
            items = [i for doc in docs for i in doc[source]["items"]]
            assert sorted(items) == sorted(expected), source  # each once, between the two
            assert sum(doc[source]["removed"] for doc in docs) == len(expected)
            assert sum(doc[source]["bytes_freed"] for doc in docs) == size * len(expected)
            assert sum(doc[source]["errors"] for doc in docs) == 0
        assert list(up.iterdir()) == [] and list(ch.iterdir()) == []
