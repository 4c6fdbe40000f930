"""The overlap guard holds under concurrent writers (SPEC §2), on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import WITH_POOLER, count_rows

WRITERS = 6
# the guard holds directly and through a transaction-mode pooler (advisory locks are transaction-scoped)
pytestmark = pytest.mark.parametrize("backend", WITH_POOLER)


def test_concurrent_cli_processes_only_one_wins(db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["EVENTCTL_DATABASE_URL"] = db_url
    go = tmp_path / "go"
    # Each process waits for the same start signal so they hit the database together.
    script = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "from eventctl.cli import main\n"
        "sys.argv = ['eventctl', 'create', '--name', 'race', '--page', '/race', '--start', '2030-01-01T00:00Z']\n"
        "main()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(WRITERS)
    ]
    time.sleep(1.5)  # let every interpreter import eventctl and wait at the line
    go.touch()
    results = [(p.returncode, p.communicate(timeout=120)[1]) for p in procs]
    results = [(p.returncode, err) for p, (_, err) in zip(procs, results, strict=True)]
    codes = sorted(code for code, _ in results)
    assert codes == [0] + [3] * (WRITERS - 1), results
    assert count_rows(db_url) == 1


def test_concurrent_threads_with_a_widened_race_window(db_url, monkeypatch):
    """Each writer sleeps between check and insert: without the lock all would pass."""
    from eventctl import events as core
    from eventctl.db import make_engine, write_session
    from eventctl.errors import Conflict
    from eventctl.shapes import EventCreate

    original = core.check_overlap

    def slow_check(*args, **kwargs):
        original(*args, **kwargs)
        time.sleep(0.3)

    monkeypatch.setattr(core, "check_overlap", slow_check)
    barrier = threading.Barrier(WRITERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        engine = make_engine(db_url)
        data = EventCreate(name=f"w{i}", page_context="/race")
        barrier.wait()
        try:
            with write_session(engine) as session:
                core.create_event(session, data=data, actor="t", via="cli")
            result = "ok"
        except Conflict:
            result = "conflict"
        except Exception as exc:  # noqa: BLE001
            result = f"error {exc!r}"
        finally:
            engine.dispose()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["conflict"] * (WRITERS - 1) + ["ok"], outcomes
    assert count_rows(db_url) == 1


def test_allow_overlap_writers_all_succeed_at_once(db_url):
    """Concurrent writers that each pass --allow-overlap all succeed (the lock serializes, never refuses)."""
    from eventctl import events as core
    from eventctl.db import make_engine, write_session
    from eventctl.shapes import EventCreate

    barrier = threading.Barrier(WRITERS)
    outcomes: list[str] = []

    def writer(i: int) -> None:
        engine = make_engine(db_url)
        try:
            barrier.wait()
            with write_session(engine) as session:
                data = EventCreate(name=f"a{i}", page_context="/p")
                core.create_event(session, data=data, actor="t", via="cli", allow_overlap=True)
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            outcomes.append(repr(exc))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes == ["ok"] * WRITERS
    assert count_rows(db_url) == WRITERS


def _processes(db_url: str, tmp_path, argvs: list[list[str]]) -> list[tuple[int, str]]:
    """Run eventctl commands as real processes released together; (exit code, stderr) of each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["EVENTCTL_DATABASE_URL"] = db_url
    go = tmp_path / f"go-{time.monotonic_ns()}"
    ready = []
    procs = []
    for i, argv in enumerate(argvs):
        flag = tmp_path / f"ready-{go.name}-{i}"
        ready.append(flag)
        script = (
            "import os, sys, time\n"
            "from eventctl.cli import main\n"
            "import eventctl.declarative, eventctl.events, eventctl.db, sqlalchemy, psycopg\n"
            f"open({str(flag)!r}, 'w').close()\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.002)\n"
            f"sys.argv = ['eventctl', *{argv!r}]\n"
            "main()\n"
        )
        procs.append(
            subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    deadline = time.monotonic() + 60
    while not all(f.exists() for f in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    out = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        out.append((p.returncode, err.decode()))
    return out


@pytest.mark.slow
def test_two_applies_and_a_create_on_one_page_at_once(db_url, tmp_path):
    """Two files that each fit alone but overlap each other, and a create overlapping both, at once, many
    rounds: exactly one writer wins each round, the others are refused (exit 3) and change nothing."""
    import json

    for round_ in range(4):
        page = f"/race/{round_}"
        files = []
        for who in ("a", "b"):
            path = tmp_path / f"{who}{round_}.json"
            path.write_text(json.dumps([{"name": who, "page_context": page, "start_date": "2031-01-01T00:00:00Z"}]))
            files.append(["apply", str(path)])
        results = _processes(db_url, tmp_path, [*files, ["create", "--name", "c", "--page", page]])
        codes = sorted(code for code, _ in results)
        assert codes == [0, 3, 3], results
        assert count_rows(db_url) == round_ + 1
