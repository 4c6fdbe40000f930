"""``eventctl cleanup``: expired events, old uploads, abandoned chunk uploads (SPEC §5).

Every age comparison goes through :func:`is_older` with aware UTC values:
naive database timestamps are UTC, file mtimes are converted from the epoch as
UTC (:func:`mtime_utc`). Directory walks are file-descriptor relative with
``O_NOFOLLOW``: a symlink is never followed, a directory swapped for a symlink
mid-run cannot be entered, and nothing outside the configured roots is touched.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventctl.errors import EventctlError, InvalidInput
from eventctl.timeparse import as_utc

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Progress = Callable[[str, int], None]


def mtime_utc(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)


def is_older(when: datetime, cutoff: datetime) -> bool:
    """Strictly before the cutoff; naive values are taken as UTC. The one comparison."""
    return as_utc(when) < cutoff  # type: ignore[operator]


def cutoff_for(older_than: timedelta, now: datetime) -> datetime:
    try:
        return now.astimezone(UTC) - older_than
    except OverflowError:
        from eventctl.errors import InvalidInput

        raise InvalidInput("The --older-than age reaches before the year 1; give a shorter one.") from None


@dataclass
class SourceReport:
    skipped: bool = False
    scanned: int = 0
    removed: int = 0
    bytes_freed: int = 0
    errors: int = 0
    items: list[str] = field(default_factory=list)
    error_messages: list[str] = field(default_factory=list)

    def error(self, what: str, exc: BaseException | str) -> None:
        self.errors += 1
        reason = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        self.error_messages.append(f"{what}: {reason}")

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "scanned": self.scanned,
            "removed": self.removed,
            "bytes_freed": self.bytes_freed,
            "errors": self.errors,
            "items": sorted(self.items),
        }


def check_dir(path: str | None, option: str) -> Path | None:
    """A configured directory must exist and be a real directory (exit 2 otherwise)."""
    if path is None or not str(path).strip():
        return None
    p = Path(path).expanduser()
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise InvalidInput(f"{option} {str(p)!r} does not exist.") from None
    except OSError as exc:
        raise InvalidInput(f"{option} {str(p)!r} cannot be read: {exc.strerror}.") from None
    if stat.S_ISLNK(st.st_mode):
        raise InvalidInput(f"{option} {str(p)!r} is a symbolic link; give the real directory.")
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"{option} {str(p)!r} is not a directory.")
    return p


def _try_lock(fd: int) -> bool:
    """Take a non-blocking exclusive flock; False when a writer holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True  # file systems without flock: nothing to respect


# ------------------------------------------------------------------ events


def cleanup_events(engine: Any, *, cutoff: datetime, dry_run: bool) -> SourceReport:
    """Delete events whose end is before the cutoff, in one transaction."""
    import sqlalchemy as sa
    from sqlmodel import col, select

    from eventctl.db import time_expr, time_param, write_session
    from eventctl.errors import convert_db_error
    from eventctl.events import bump_version
    from eventctl.models import Event

    report = SourceReport()
    try:
        with write_session(engine) as session:
            dialect = session.get_bind().dialect.name
            report.scanned = session.exec(select(sa.func.count()).select_from(Event)).one()
            old = sa.and_(
                col(Event.end_date).is_not(None),
                time_expr(Event.end_date, dialect) < time_param(cutoff, dialect),
            )
            # SQL narrows the candidates; is_older (the one comparison) decides
            rows = session.exec(select(Event.uid, Event.end_date).where(old)).all()
            uids = [uid for uid, end in rows if end is not None and is_older(end, cutoff)]
            report.items = [str(u) for u in uids]
            if uids and not dry_run:
                result = session.execute(sa.delete(Event).where(col(Event.uid).in_(uids)))
                bump_version(session)
                if result.rowcount != len(uids):  # type: ignore[attr-defined]
                    raise EventctlError("The events changed during cleanup; nothing was deleted.")
            report.removed = len(uids)
    except Exception as exc:  # noqa: BLE001 - reported as this source's error; the rest goes on
        converted = convert_db_error(exc) if not isinstance(exc, EventctlError) else exc
        report.removed, report.items = 0, []
        report.error("events", converted.message if converted else f"{type(exc).__name__}: {exc}")
    return report


# ------------------------------------------------------------------ uploads


def cleanup_uploads(root: Path, *, cutoff: datetime, dry_run: bool, progress: Progress | None = None) -> SourceReport:
    """Regular files older than the cutoff, then directories left empty."""
    report = SourceReport()
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        report.error(str(root), exc)
        return report
    try:
        _walk_uploads(fd, "", cutoff=cutoff, dry_run=dry_run, report=report, progress=progress)
    finally:
        os.close(fd)
    return report


def _walk_uploads(
    dfd: int,
    rel: str,
    *,
    cutoff: datetime,
    dry_run: bool,
    report: SourceReport,
    progress: Progress | None,
) -> bool:
    """Process one directory (already open as dfd).

    Returns True when it is (or in a dry run would be) left empty by this run, or
    is empty and itself older than the cutoff; a fresh empty directory is kept.
    """
    own_old = is_older(mtime_utc(os.fstat(dfd)), cutoff)
    remaining = removed_here = 0
    with os.scandir(dfd) as it:
        entries = list(it)
    for entry in entries:
        name = entry.name
        path = f"{rel}/{name}" if rel else name
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.error(path, exc)
            remaining += 1
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as exc:  # swapped for a symlink (ELOOP) or unreadable
                if exc.errno not in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):
                    report.error(path, exc)
                remaining += 1
                continue
            try:
                if not _try_lock(sub):
                    remaining += 1  # a writer holds it: skip the whole directory
                    continue
                empty = _walk_uploads(sub, path, cutoff=cutoff, dry_run=dry_run, report=report, progress=progress)
            finally:
                os.close(sub)
            if empty and _remove_dir(dfd, name, path, dry_run=dry_run, report=report):
                removed_here += 1
                continue
            remaining += 1
            continue
        if not stat.S_ISREG(st.st_mode):
            remaining += 1  # symlinks, sockets, fifos: never touched
            continue
        report.scanned += 1
        if progress:
            progress("uploads", 1)
        if is_older(mtime_utc(st), cutoff) and _remove_file(dfd, name, path, st, dry_run, report):
            removed_here += 1
        else:
            remaining += 1
    return remaining == 0 and (removed_here > 0 or own_old)


def _remove_file(dfd: int, name: str, path: str, st: os.stat_result, dry_run: bool, report: SourceReport) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except FileNotFoundError:
        return True
    except OSError as exc:
        report.error(path, exc)
        return False
    try:
        check = os.fstat(fd)
        if (check.st_ino, check.st_dev) != (st.st_ino, st.st_dev) or not _try_lock(fd):
            return False  # replaced since the scan, or a writer holds it
        if not dry_run:
            os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        return True
    except OSError as exc:
        report.error(path, exc)
        return False
    finally:
        os.close(fd)
    report.removed += 1
    report.bytes_freed += st.st_size
    report.items.append(path)
    return True


def _remove_dir(dfd: int, name: str, path: str, *, dry_run: bool, report: SourceReport) -> bool:
    if dry_run:
        return True
    try:
        os.rmdir(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:  # a writer added a file meanwhile: keep it quietly
            report.error(path + "/", exc)
        return False


# ------------------------------------------------------------------ chunks


def cleanup_chunks(
    root: Path,
    *,
    cutoff: datetime,
    dry_run: bool,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> SourceReport:
    """Remove a chunk upload (a direct subdirectory) only when it and all it holds are old."""
    report = SourceReport()
    try:
        rfd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        report.error(str(root), exc)
        return report
    try:
        with os.scandir(rfd) as it:
            dirs = [e for e in it if e.is_dir(follow_symlinks=False)]
        if total:
            total(len(dirs))
        for entry in dirs:
            report.scanned += 1
            if progress:
                progress("chunks", 1)
            _one_upload(rfd, entry.name, cutoff=cutoff, dry_run=dry_run, report=report)
    finally:
        os.close(rfd)
    return report


def _one_upload(rfd: int, name: str, *, cutoff: datetime, dry_run: bool, report: SourceReport) -> None:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=rfd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):
            report.error(name, exc)
        return
    try:
        if not _try_lock(fd):
            return  # an upload in progress holds it
        st = os.fstat(fd)
        if not is_older(mtime_utc(st), cutoff):
            return
        size = _all_older(fd, cutoff)
        if size is None:
            return
        if not dry_run:
            failed = _remove_tree(fd, name, report)
            if failed:
                return
            try:
                os.rmdir(name, dir_fd=rfd)
            except OSError as exc:
                report.error(name + "/", exc)
                return
    finally:
        os.close(fd)
    report.removed += 1
    report.bytes_freed += size
    report.items.append(name)


def _all_older(dfd: int, cutoff: datetime) -> int | None:
    """Total size if every entry below (not following links) is older than cutoff, else None."""
    total = 0
    with os.scandir(dfd) as it:
        for entry in it:
            st = entry.stat(follow_symlinks=False)
            if not is_older(mtime_utc(st), cutoff):
                return None
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dfd)
                except OSError:
                    return None
                try:
                    size = _all_older(sub, cutoff)
                finally:
                    os.close(sub)
                if size is None:
                    return None
                total += size
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _remove_tree(dfd: int, rel: str, report: SourceReport) -> int:
    """Remove everything inside dfd (links are unlinked, never followed). Returns failures."""
    failures = 0
    with os.scandir(dfd) as it:
        entries = list(it)
    for entry in entries:
        path = f"{rel}/{entry.name}"
        try:
            if entry.is_dir(follow_symlinks=False):
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    failures += _remove_tree(sub, path, report)
                finally:
                    os.close(sub)
                os.rmdir(entry.name, dir_fd=dfd)
            else:
                os.unlink(entry.name, dir_fd=dfd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failures += 1
            report.error(path, exc)
    return failures
