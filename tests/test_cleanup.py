"""eventctl cleanup on a real temporary tree (SPEC §5)."""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import count_rows, make_cli

DAY = 86400


def _file(path: Path, age_s: float, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(path, (t, t), follow_symlinks=False)
    return path


def _age(path: Path, age_s: float) -> None:
    t = time.time() - age_s
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
        now = datetime.now(UTC)
        cutoff_guess = now - timedelta(days=7)
        older = _insert_naive(engine, end=cutoff_guess - timedelta(seconds=1), name="older")
        _insert_naive(engine, end=cutoff_guess + timedelta(seconds=2), name="newer")
        _insert_naive(engine, end=now + timedelta(days=1), name="future")
        up = tmp_path / "u"
        _file(up / "older.bin", 7 * DAY + 1)
        _file(up / "newer.bin", 7 * DAY - 2)
        ch = tmp_path / "c"
        _file(ch / "older_upload" / "c0", 7 * DAY + 1)
        _age(ch / "older_upload", 7 * DAY + 1)
        _file(ch / "newer_upload" / "c0", 7 * DAY + 1)
        _file(ch / "newer_upload" / "c1", 7 * DAY - 2)
        _age(ch / "newer_upload", 7 * DAY + 1)
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

    def broken(session):
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
