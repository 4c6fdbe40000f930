"""eventctl cleanup on a real temporary tree (SPEC §5)."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import count_rows, make_cli

DAY = 86400


def _file(path: Path, age_s: float, size: int = 10, now: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    _age(path, age_s, now)
    return path


def _age(path: Path, age_s: float, now: float | None = None) -> None:
    t = (time.time() if now is None else now) - age_s
    os.utime(path, (t, t), follow_symlinks=False)


def _snapshot(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


@pytest.fixture
def tree(tmp_path):
    """uploads/ and chunks/ with every case the issue names, plus outside/ that must survive."""
    up, ch, out = tmp_path / "uploads", tmp_path / "chunks", tmp_path / "outside"
    _file(out / "victim_old.txt", 30 * DAY)
    _file(out / "dir" / "deep_old.txt", 30 * DAY)
    _file(up / "old.txt", 10 * DAY, size=100)
    _file(up / "new.txt", 1 * DAY)
    _file(up / "nested" / "deep" / "old2.bin", 10 * DAY, size=1000)
    _file(up / "mixed" / "old3.bin", 10 * DAY, size=7)
    _file(up / "mixed" / "new3.bin", 60)
    (up / "link_to_outside_old").symlink_to(out / "victim_old.txt")
    os.utime(up / "link_to_outside_old", (time.time() - 30 * DAY,) * 2, follow_symlinks=False)
    (up / "linked_dir").symlink_to(out / "dir", target_is_directory=True)
    _file(up / "locked" / "old_locked.bin", 10 * DAY)
    # chunk uploads
    for i in range(3):
        _file(ch / "all_old" / f"chunk{i}", 10 * DAY, size=50)
    _age(ch / "all_old", 10 * DAY)
    _file(ch / "one_fresh" / "chunk0", 10 * DAY, size=50)
    _file(ch / "one_fresh" / "chunk1", 30)
    _age(ch / "one_fresh", 10 * DAY)
    _file(ch / "locked_upload" / "chunk0", 10 * DAY)
    _age(ch / "locked_upload", 10 * DAY)
    (ch / "linked_upload").symlink_to(out / "dir", target_is_directory=True)
    _file(ch / "stray_file", 10 * DAY)
    # directory mtimes last (creating entries refreshed them)
    for d in (up / "nested" / "deep", up / "nested", up / "mixed", up / "locked"):
        _age(d, 10 * DAY)
    return up, ch, out


def _hold_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def run(*args: str):
    return make_cli(None)("cleanup", "--skip-events", *args)


EXPECTED_UPLOADS = ["mixed/old3.bin", "nested/deep/old2.bin", "old.txt"]


def test_exact_set_removed_and_dry_run_lists_it_first(tree):
    up, ch, out = tree
    locks = [_hold_lock(up / "locked"), _hold_lock(ch / "locked_upload")]
    try:
        before = _snapshot(up.parent)
        dry = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--dry-run", "--json")
        assert dry.exit_code == 0, dry.stderr
        assert _snapshot(up.parent) == before, "a dry run removed something"
        plan = dry.json()
        assert plan["dry_run"] is True
        assert plan["sources"]["uploads"]["items"] == EXPECTED_UPLOADS
        assert plan["sources"]["chunks"]["items"] == ["all_old"]
        assert plan["sources"]["events"]["skipped"] is True

        real = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--json")
        assert real.exit_code == 0, real.stderr
        done = real.json()
        for source in ("uploads", "chunks"):
            assert done["sources"][source]["items"] == plan["sources"][source]["items"]
            assert done["sources"][source]["removed"] == plan["sources"][source]["removed"]
            assert done["sources"][source]["bytes_freed"] == plan["sources"][source]["bytes_freed"]
        assert done["sources"]["uploads"]["bytes_freed"] == 100 + 1000 + 7
        assert done["sources"]["chunks"]["bytes_freed"] == 150
        assert done["sources"]["chunks"]["scanned"] == 3  # all_old, one_fresh, locked_upload (links skipped)
    finally:
        for fd in locks:
            os.close(fd)
    after = _snapshot(up.parent)
    removed = before - after
    assert removed == {
        "uploads/old.txt",
        "uploads/mixed/old3.bin",
        "uploads/nested",
        "uploads/nested/deep",
        "uploads/nested/deep/old2.bin",
        "chunks/all_old",
        "chunks/all_old/chunk0",
        "chunks/all_old/chunk1",
        "chunks/all_old/chunk2",
    }
    assert (out / "victim_old.txt").exists() and (out / "dir" / "deep_old.txt").exists()
    assert (up / "link_to_outside_old").is_symlink() and (up / "linked_dir").is_symlink()
    assert (up / "locked" / "old_locked.bin").exists() and (ch / "locked_upload" / "chunk0").exists()
    assert (ch / "one_fresh" / "chunk0").exists() and (ch / "stray_file").exists()


def test_human_output_has_summary_table(tree):
    up, ch, _ = tree
    r = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "would remove uploads: old.txt" in r.stdout
    for word in ("source", "scanned", "bytes freed", "errors", "uploads", "chunks", "events"):
        assert word in r.stdout


def test_directory_swapped_for_symlink_mid_run_is_not_followed(tree, monkeypatch):
    up, _, out = tree
    real_open = os.open
    swapped = []

    def swapping_open(path, flags, mode=0o777, *, dir_fd=None):
        if path == "nested" and dir_fd is not None and not swapped:
            os.rename(up / "nested", up / "nested_real")
            os.symlink(out / "dir", up / "nested")
            swapped.append(True)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", swapping_open)
    r = run("--uploads-dir", str(up), "--json")
    assert r.exit_code == 0, r.stderr
    assert swapped
    assert (out / "dir" / "deep_old.txt").exists()
    assert "nested/deep/old2.bin" not in r.json()["sources"]["uploads"]["items"]


def test_unremovable_file_is_reported_rest_processed_exit_1(tree, monkeypatch):
    up, ch, _ = tree
    real_unlink = os.unlink

    def failing_unlink(path, *, dir_fd=None):
        if path == "old.txt":
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", failing_unlink)
    r = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--json")
    assert r.exit_code == 1
    assert "old.txt" in r.stderr and "Permission denied" in r.stderr
    doc = r.json()
    assert doc["sources"]["uploads"]["errors"] == 1
    assert doc["sources"]["uploads"]["items"] == ["locked/old_locked.bin", "mixed/old3.bin", "nested/deep/old2.bin"]
    assert (up / "old.txt").exists() and not (up / "mixed" / "old3.bin").exists()
    assert doc["sources"]["chunks"]["items"] == ["all_old", "locked_upload"]  # no lock held here


@pytest.mark.parametrize(
    "args, message",
    [
        (["--older-than", "soon"], "--older-than"),
        (["--older-than", "-1d"], "--older-than"),
        (["--older-than", "999999999w"], "--older-than"),
        (["--uploads-dir", "/nonexistent/uploads"], "does not exist"),
        (["--chunks-dir", "/etc/hostname"], "not a directory"),
    ],
)
def test_bad_cleanup_input(tmp_path, args, message):
    r = run(*args)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_configured_symlinked_root_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    r = run("--uploads-dir", str(tmp_path / "link"))
    assert r.exit_code == 2 and "symbolic link" in r.stderr


def test_env_configures_directories_and_retention(tree):
    up, ch, _ = tree
    r = make_cli(None)(
        "cleanup",
        "--skip-events",
        "--dry-run",
        "--json",
        env={"EVENTCTL_UPLOADS_DIR": str(up), "EVENTCTL_RETENTION": "20d"},
    )
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["sources"]["uploads"]["items"] == []  # nothing is 20 days old
    assert doc["sources"]["chunks"]["skipped"] is True


# ---------------------------------------------------------------- boundaries + events


def _insert_naive(engine, *, end: datetime, name: str) -> str:
    uid = uuid.uuid4()
    key = uid.hex if engine.dialect.name == "sqlite" else str(uid)
    naive = end.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, start_date, end_date, '
                "created_by, created_at, updated_at) VALUES (:u, :n, :p, '{}', 20, true, NULL, :e, 'sql', :c, :c)"
            ),
            {"u": key, "n": name, "p": f"/{name}", "e": naive, "c": "2020-01-01 00:00:00"},
        )
    return str(uid)


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "America/New_York"])
def test_cutoff_boundaries_same_under_every_tz(tz, db_url, engine, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        # the CLI's clock is this test's: the margins can be 10 ms, not seconds of slack a loaded
        # machine could eat between here and the CLI reading its clock
        now = datetime.now(UTC)
        monkeypatch.setattr("eventctl.timeparse.utcnow", lambda: now)
        cutoff, at, eps = now - timedelta(days=7), now.timestamp(), 0.01
        older = _insert_naive(engine, end=cutoff - timedelta(seconds=eps), name="older")
        _insert_naive(engine, end=cutoff + timedelta(seconds=eps), name="newer")
        _insert_naive(engine, end=now + timedelta(days=1), name="future")
        up = tmp_path / "u"
        _file(up / "older.bin", 7 * DAY + eps, now=at)
        _file(up / "newer.bin", 7 * DAY - eps, now=at)
        ch = tmp_path / "c"
        _file(ch / "older_upload" / "c0", 7 * DAY + eps, now=at)
        _age(ch / "older_upload", 7 * DAY + eps, now=at)
        _file(ch / "newer_upload" / "c0", 7 * DAY + eps, now=at)
        _file(ch / "newer_upload" / "c1", 7 * DAY - eps, now=at)
        _age(ch / "newer_upload", 7 * DAY + eps, now=at)
        cli = make_cli(db_url)
        r = cli("cleanup", "--older-than", "7d", "--uploads-dir", str(up), "--chunks-dir", str(ch), "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert doc["sources"]["events"]["items"] == [older]
        assert doc["sources"]["events"]["scanned"] == 3
        assert doc["sources"]["uploads"]["items"] == ["older.bin"]
        assert doc["sources"]["chunks"]["items"] == ["older_upload"]
        assert count_rows(db_url) == 2
        assert doc["cutoff"].endswith("Z")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_database_failure_while_deleting_rolls_back(db_url, engine, monkeypatch):
    from eventctl import events as core

    old = datetime.now(UTC) - timedelta(days=30)
    _insert_naive(engine, end=old, name="a")
    _insert_naive(engine, end=old, name="b")

    def broken(session, pages=frozenset()):
        raise sa.exc.OperationalError("UPDATE eventctl_state", {}, Exception("server closed the connection"))

    monkeypatch.setattr(core, "bump_version", broken)
    r = make_cli(db_url)("cleanup", "--json")
    assert r.exit_code == 1
    doc = r.json()
    assert doc["sources"]["events"]["errors"] == 1 and doc["sources"]["events"]["removed"] == 0
    assert "unavailable" in r.stderr
    assert count_rows(db_url) == 2


def test_cleanup_events_bumps_change_counter(db_url, engine):
    _insert_naive(engine, end=datetime.now(UTC) - timedelta(days=30), name="a")
    with engine.connect() as conn:
        before = conn.exec_driver_sql("SELECT version FROM eventctl_state").scalar_one()
    assert make_cli(db_url)("cleanup").exit_code == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM eventctl_state").scalar_one() == before + 1
    assert count_rows(db_url) == 0


# ---------------------------------------------------------------- events: batches, audit, counter


def _insert_many(engine, n: int, *, days_ago: int = 30) -> list[str]:
    """n expired events (each on its own page) in one executemany."""
    end = (datetime.now(UTC) - timedelta(days=days_ago)).replace(tzinfo=None).isoformat(sep=" ")
    sqlite = engine.dialect.name == "sqlite"
    uids = sorted(uuid.uuid4() for _ in range(n))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, is_default, start_date, '
                'end_date, created_by, created_at, updated_at) VALUES (:u, :n, :p, \'{"media_type": "audio"}\', '
                "20, true, false, '2020-01-01 00:00:00', :e, 'sql', '2020-01-01 00:00:00', '2020-01-01 00:00:00')"
            ),
            [
                {"u": u.hex if sqlite else str(u), "n": f"e{i}", "p": f"/many/{u.hex[:10]}", "e": end}
                for i, u in enumerate(uids)
            ],
        )
    return [str(u) for u in uids]


def _version(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT version FROM eventctl_state").scalar_one()


def _cleanup_entries(engine, uids: list[str]) -> list:
    from eventctl import audit
    from eventctl.db import read_session

    wanted = set(uids)
    with read_session(engine) as session:
        return [audit.entry_to_json(e) for e in audit.iter_history(session) if str(e.uid) in wanted]


def test_more_expired_events_than_one_batch_all_go_in_batches(db_url, engine):
    """2,500 events: three batches, three bumps of the change counter, every uid listed once."""
    uids = _insert_many(engine, 2500)
    live = _insert_naive(engine, end=datetime.now(UTC) + timedelta(days=3), name="live")
    before = _version(engine)
    r = make_cli(db_url)("cleanup", "--json")
    assert r.exit_code == 0, r.stderr
    events = r.json()["sources"]["events"]
    assert (events["scanned"], events["removed"], events["errors"]) == (2501, 2500, 0)
    assert events["items"] == uids  # uid order
    assert count_rows(db_url) == 1 and live not in events["items"]
    assert _version(engine) == before + 3


def test_every_deleted_event_has_its_audit_entry(db_url, engine):
    uids = _insert_many(engine, 3)
    r = make_cli(db_url)("cleanup", env={"EVENTCTL_ACTOR": "ops-bot"})
    assert r.exit_code == 0, r.stderr
    entries = _cleanup_entries(engine, uids)
    assert sorted(e["uid"] for e in entries) == uids
    for e in entries:
        assert (e["action"], e["via"], e["actor"], e["after"]) == ("delete", "cleanup", "ops-bot", None)
        assert e["before"]["uid"] == e["uid"] and e["before"]["page_context"] == e["page_context"]
        assert e["before"]["filters"] == {"media_type": "audio"}
        assert e["before"]["start_date"] == "2020-01-01T00:00:00Z" and e["before"]["end_date"].endswith("Z")
        assert set(e["before"]) == {
            "uid", "name", "description", "page_context", "filters", "limit", "is_active", "is_default",
            "start_date", "end_date",
        }  # fmt: skip


def test_audit_entry_is_the_one_a_plain_delete_writes(db_url, engine):
    """cleanup writes the same entry (fields, JSON) as `eventctl delete` of the same event."""
    a, b = _insert_many(engine, 2)
    cli = make_cli(db_url)
    assert cli("delete", a, "--yes", env={"EVENTCTL_ACTOR": "ops"}).exit_code == 0
    assert cli("cleanup", env={"EVENTCTL_ACTOR": "ops"}).exit_code == 0
    by_uid = {e["uid"]: e for e in _cleanup_entries(engine, [a, b])}
    one, other = by_uid[a], by_uid[b]
    assert one["via"] == "cli" and other["via"] == "cleanup"
    for key in ("actor", "action", "after"):
        assert one[key] == other[key]
    skip = {"uid", "name", "page_context"}
    assert {k: v for k, v in one["before"].items() if k not in skip} == {
        k: v for k, v in other["before"].items() if k not in skip
    }


def test_actor_defaults_to_the_os_user(db_url, engine, monkeypatch):
    uids = _insert_many(engine, 1)
    monkeypatch.setenv("LOGNAME", "night-shift")
    assert make_cli(db_url)("cleanup").exit_code == 0
    assert [e["actor"] for e in _cleanup_entries(engine, uids)] == ["night-shift"]


def test_a_batch_is_one_transaction_with_its_audit_entries(db_url, engine, monkeypatch):
    """The audit write of the second batch fails: that batch's deletes roll back with it,
    the first batch stays (deleted, audited, counted), and the report says so (exit 1)."""
    from eventctl import audit, maintenance

    uids = _insert_many(engine, 5)
    monkeypatch.setattr(maintenance, "EVENT_BATCH", 2)
    real, calls = audit.insert, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise sa.exc.OperationalError("INSERT INTO eventctl_audit", {}, Exception("server closed the connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(audit, "insert", failing)
    before = _version(engine)
    r = make_cli(db_url)("cleanup", "--json")
    assert r.exit_code == 1
    events = r.json()["sources"]["events"]
    assert (events["removed"], events["errors"], events["items"]) == (2, 1, uids[:2])
    assert "unavailable" in r.stderr and "Unexpected failure" not in r.stderr
    assert count_rows(db_url) == 3
    assert sorted(e["uid"] for e in _cleanup_entries(engine, uids)) == uids[:2]
    assert _version(engine) == before + 1


def test_dry_run_plans_events_and_changes_nothing(db_url, engine):
    uids = _insert_many(engine, 3)
    before = _version(engine)
    r = make_cli(db_url)("cleanup", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("would remove")] == [
        f"would remove events: {u}" for u in uids
    ]
    assert count_rows(db_url) == 3 and _version(engine) == before
    assert _cleanup_entries(engine, uids) == []


# ---------------------------------------------------------------- hostile file names


HOSTILE = "a\x1b[2Jb\x07\nforged: would remove uploads: passwd"


def test_control_characters_in_file_names_are_escaped_for_people(tmp_path):
    up = tmp_path / "up"
    _file(up / HOSTILE, 10 * DAY)
    _file(up / "plain.txt", 10 * DAY)
    r = run("--uploads-dir", str(up), "--dry-run")
    assert r.exit_code == 0, r.stderr
    for raw in ("\x1b", "\x07"):
        assert raw not in r.stdout
    lines = r.stdout.splitlines()
    assert "forged: would remove" not in [line[:21] for line in lines]
    assert not any(line.startswith("forged") for line in lines)
    assert "would remove uploads: a\\x1b[2Jb\\x07\\nforged: would remove uploads: passwd" in lines
    assert "would remove uploads: plain.txt" in lines
    # --json keeps the exact name (JSON escapes it)
    doc = run("--uploads-dir", str(up), "--dry-run", "--json").json()
    assert doc["sources"]["uploads"]["items"] == [HOSTILE, "plain.txt"]


def test_control_characters_in_error_lines_are_escaped(tmp_path, monkeypatch):
    up = tmp_path / "up"
    _file(up / HOSTILE, 10 * DAY)
    real_unlink = os.unlink

    def failing_unlink(path, *, dir_fd=None):
        if path == HOSTILE:
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", failing_unlink)
    r = run("--uploads-dir", str(up))
    assert r.exit_code == 1
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert not any(line.startswith("forged") for line in r.stderr.splitlines())
    assert "Error: uploads: cannot remove a\\x1b[2Jb\\x07\\nforged" in r.stderr
    assert "bytes freed" in r.stdout  # the summary is printed all the same


def test_file_name_that_is_not_utf8(tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    raw = os.path.join(os.fsencode(up), b"caf\xe9-\xff.bin")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    os.utime(raw, (time.time() - 10 * DAY,) * 2)
    people = run("--uploads-dir", str(up), "--dry-run")
    assert people.exit_code == 0, people.stderr
    assert "would remove uploads: caf\\udce9-\\udcff.bin" in people.stdout.splitlines()
    r = run("--uploads-dir", str(up), "--json")
    assert r.exit_code == 0, r.stderr
    (item,) = r.json()["sources"]["uploads"]["items"]
    assert os.fsencode(item) == b"caf\xe9-\xff.bin"  # round-trips through surrogate escapes
    assert not os.path.exists(raw)


# ---------------------------------------------------------------- unreadable and too deep


def test_unreadable_directories_are_errors_of_their_source_rest_processed(tree, monkeypatch):
    up, ch, _ = tree
    _file(ch / "bad_upload" / "sub" / "c0", 10 * DAY)
    _age(ch / "bad_upload" / "sub", 10 * DAY)
    _age(ch / "bad_upload", 10 * DAY)
    _file(up / "closed" / "old.bin", 10 * DAY)
    _age(up / "closed", 10 * DAY)
    real = os.scandir
    targets = {str(ch / "bad_upload" / "sub"), str(up / "closed")}

    def scandir(path="."):
        if isinstance(path, int) and os.readlink(f"/proc/self/fd/{path}") in targets:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    r = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--json")
    assert r.exit_code == 1, r.stderr
    assert "Unexpected failure" not in r.stderr
    doc = r.json()
    assert doc["sources"]["uploads"]["errors"] == 1 and doc["sources"]["chunks"]["errors"] == 1
    assert doc["sources"]["uploads"]["items"] == ["locked/old_locked.bin", *EXPECTED_UPLOADS]
    assert doc["sources"]["chunks"]["items"] == ["all_old", "locked_upload"]
    assert "Error: uploads: cannot read closed: Permission denied." in r.stderr
    assert "Error: chunks: cannot read bad_upload/sub: Permission denied." in r.stderr
    assert (ch / "bad_upload" / "sub" / "c0").exists() and (up / "closed" / "old.bin").exists()
    assert "2 item(s) could not be read or removed" in r.stderr


def _deep_chain(root: Path, levels: int) -> None:
    """root/d/d/…/d (levels deep) with an old file at the bottom, all of it old; built through dir fds
    (one open at a time: path lookups of 1,100 components would make it quadratic)."""
    old = (time.time() - 10 * DAY,) * 2
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.utime(fd, old)  # its content is final now
            os.close(fd)
            fd = sub
        leaf = os.open("old.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.close(leaf)
        os.utime("old.bin", old, dir_fd=fd)
        os.utime(fd, old)
    finally:
        os.close(fd)


def _remove_chain(root: Path) -> None:
    """Down by chdir, then up removing each level: every step is one short, relative path."""
    home = os.getcwd()
    depth = 0
    try:
        os.chdir(root)
        while os.path.isdir("d"):
            os.chdir("d")
            depth += 1
        for name in os.listdir("."):
            os.unlink(name)
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(home)


def test_tree_too_deep_is_an_error_of_its_source_rest_processed(tree):
    """1,100 levels: the old recursive walk died with RecursionError ("Unexpected failure", no report)."""
    from eventctl.maintenance import MAX_DEPTH

    up, ch, _ = tree
    levels = 1100
    _deep_chain(up / "deep", levels)
    _deep_chain(ch / "deep_upload", levels)
    try:
        r = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--json")
        assert r.exit_code == 1, r.stderr
        assert "Unexpected failure" not in r.stderr
        doc = r.json()
        assert doc["sources"]["uploads"]["errors"] == 1 and doc["sources"]["chunks"]["errors"] == 1
        assert doc["sources"]["uploads"]["items"] == ["locked/old_locked.bin", *EXPECTED_UPLOADS]
        assert doc["sources"]["chunks"]["items"] == ["all_old", "locked_upload"]
        deep = "/".join(["deep", *["d"] * MAX_DEPTH])
        assert f"Error: uploads: cannot enter {deep}: more than {MAX_DEPTH} directory levels deep" in r.stderr
        assert "Error: chunks: cannot enter deep_upload/" in r.stderr
        assert os.path.exists(os.path.join(up, "deep", *["d"] * levels, "old.bin"))
        assert os.path.exists(os.path.join(ch, "deep_upload", *["d"] * levels, "old.bin"))
    finally:
        _remove_chain(up / "deep")
        _remove_chain(ch / "deep_upload")


def test_tree_within_the_depth_limit_is_processed_whole(tmp_path):
    from eventctl.maintenance import MAX_DEPTH

    up, ch = tmp_path / "up", tmp_path / "ch"
    _deep_chain(up, MAX_DEPTH)
    _deep_chain(ch / "upload", MAX_DEPTH - 1)
    r = run("--uploads-dir", str(up), "--chunks-dir", str(ch), "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["sources"]["uploads"]["items"] == ["/".join([*["d"] * MAX_DEPTH, "old.bin"])]
    assert doc["sources"]["chunks"]["items"] == ["upload"]
    assert os.listdir(up) == [] and os.listdir(ch) == []


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX only")
def test_unreadable_directories_for_real_without_dac_override(tmp_path):
    """chmod 000 / 644 for real: run as an unprivileged user (setpriv when the tests run as root)."""
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile

    as_root = os.geteuid() == 0
    setpriv = shutil.which("setpriv")
    if as_root and not setpriv:
        pytest.skip("running as root without setpriv: cannot drop DAC override")
    nobody = pwd.getpwnam("nobody") if as_root else None
    base = Path(tempfile.mkdtemp(prefix="eventctl-perm-"))  # outside root's 0700 pytest dir
    try:
        up, ch = base / "up", base / "ch"
        _file(up / "old.txt", 10 * DAY)
        _file(up / "closed" / "inside.bin", 10 * DAY)
        _file(up / "noexec" / "inside.bin", 10 * DAY)
        _file(ch / "good" / "c0", 10 * DAY)
        _file(ch / "bad" / "sub" / "c0", 10 * DAY)
        _file(ch / "shut" / "c0", 10 * DAY)
        for d in (up / "closed", up / "noexec", ch / "good", ch / "bad" / "sub", ch / "bad", ch / "shut"):
            _age(d, 10 * DAY)
        if nobody:
            for dirpath, dirnames, filenames in os.walk(base):
                for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                    os.chown(n, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
        os.chmod(base, 0o755)
        os.chmod(up / "closed", 0o000)
        os.chmod(up / "noexec", 0o644)
        os.chmod(ch / "bad" / "sub", 0o644)
        os.chmod(ch / "shut", 0o000)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
        env["XDG_DATA_HOME"] = str(base / "xdg")
        argv = [sys.executable, "-m", "eventctl", "cleanup", "--skip-events", "--json"]
        argv += ["--uploads-dir", str(up), "--chunks-dir", str(ch)]
        if nobody:
            argv = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *argv]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=base)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "Unexpected failure" not in proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["sources"]["uploads"]["items"] == ["old.txt"]
        assert doc["sources"]["chunks"]["items"] == ["good"]
        assert doc["sources"]["uploads"]["errors"] >= 2 and doc["sources"]["chunks"]["errors"] >= 2
        for what in ("uploads: cannot open closed", "uploads: cannot read noexec/inside.bin",
                     "chunks: cannot read bad/sub/c0", "chunks: cannot open shut"):  # fmt: skip
            assert f"Error: {what}: Permission denied." in proc.stderr, proc.stderr
        assert not (up / "old.txt").exists() and not (ch / "good").exists()
    finally:
        for d in (up / "closed", up / "noexec", ch / "bad" / "sub", ch / "shut"):
            if d.exists():
                os.chmod(d, 0o755)
        shutil.rmtree(base)


def test_upload_removed_by_another_cleanup_meanwhile_is_not_counted(tmp_path, monkeypatch):
    """Another cleanup removes the upload after we judged it old: it is that run's item, not ours."""
    import shutil

    from eventctl import maintenance

    ch = tmp_path / "ch"
    _file(ch / "u1" / "c0", 10 * DAY)
    _age(ch / "u1", 10 * DAY)
    real = maintenance._old_tree_size

    def other_cleanup_meanwhile(*args, **kwargs):
        size = real(*args, **kwargs)
        shutil.rmtree(ch / "u1")
        return size

    monkeypatch.setattr(maintenance, "_old_tree_size", other_cleanup_meanwhile)
    r = run("--chunks-dir", str(ch), "--json")
    assert r.exit_code == 0, r.stderr
    chunks = r.json()["sources"]["chunks"]
    assert (chunks["scanned"], chunks["removed"], chunks["items"], chunks["errors"]) == (1, 0, [], 0)
