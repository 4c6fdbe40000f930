"""``eventctl cleanup``: expired events, old uploads, abandoned chunk uploads (SPEC §5).

Every age comparison goes through :func:`is_older` with aware UTC values:
naive database timestamps are UTC, file mtimes are converted from the epoch as
UTC (:func:`mtime_utc`). Directory walks are file-descriptor relative with
``O_NOFOLLOW``: a symlink is never followed, a directory swapped for a symlink
mid-run cannot be entered, and nothing outside the configured roots is touched.
Walks are iterative (no Python recursion) and stop at :data:`MAX_DEPTH` levels:
a deeper directory is reported as an error of its source and left alone.

Events go in batches of at most :data:`EVENT_BATCH` uids, one transaction each
(the delete, one audit entry per deleted event, one bump of the change counter).
Each batch's DELETE re-checks in SQL that the row is still expired
(:func:`_recheck`), so an event revived between the batch's SELECT and its DELETE
stays; the audit entry records the row as the DELETE removed it (``RETURNING``).

A source never raises: whatever goes wrong is counted and reported as that
source's error, and the other sources still run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from eventctl.errors import EventctlError, InvalidInput
from eventctl.timeparse import as_utc

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# open() errors that mean "not a directory any more" (swapped for a link, removed): skipped quietly
_GONE = (errno.ELOOP, errno.ENOENT, errno.ENOTDIR)
Progress = Callable[[str, int], None]

MAX_DEPTH = 256  # directory levels below a configured root (or a chunk upload) that are entered
EVENT_BATCH = 1000  # uids per DELETE: far below every bound-parameter limit, on either database
MAX_ERROR_MESSAGES = 50  # error lines kept per source; the count is always complete
_ITEMS_IN_MEMORY = 10_000  # names kept in memory per source before they go to a temporary file
_RETRIES = 5  # a batch that hits a deadlock or serialization failure is re-planned and retried


def mtime_utc(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)


def is_older(when: datetime, cutoff: datetime) -> bool:
    """Strictly before the cutoff; naive values are taken as UTC. The one comparison."""
    return as_utc(when) < cutoff  # type: ignore[operator]


def cutoff_for(older_than: timedelta, now: datetime) -> datetime:
    try:
        return now.astimezone(UTC) - older_than
    except OverflowError:
        raise InvalidInput("The --older-than age reaches before the year 1; give a shorter one.") from None


class ItemLog:
    """The names a source removed (or would remove), in the order found.

    The first names stay in memory; past :data:`_ITEMS_IN_MEMORY` they all go to an
    anonymous temporary file, one JSON string a line (ASCII-escaped, so newlines and
    undecodable file names survive), so memory stays bounded however many there are.
    """

    def __init__(self, limit: int = _ITEMS_IN_MEMORY) -> None:
        self._memory: list[str] = []
        self._file: IO[str] | None = None
        self._count = 0
        self._limit = limit

    def append(self, item: str) -> None:
        self._count += 1
        if self._file is None:
            if len(self._memory) < self._limit:
                self._memory.append(item)
                return
            self._file = tempfile.TemporaryFile("w+", encoding="ascii")
            self._file.writelines(json.dumps(m) + "\n" for m in self._memory)
            self._memory = []
        self._file.write(json.dumps(item) + "\n")

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        if self._file is None:
            yield from list(self._memory)
            return
        self._file.flush()
        self._file.seek(0)
        try:
            for line in self._file:
                yield json.loads(line)
        finally:
            self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._memory, self._count = [], 0


@dataclass
class SourceReport:
    skipped: bool = False
    scanned: int = 0
    removed: int = 0
    bytes_freed: int = 0
    errors: int = 0
    items: ItemLog = field(default_factory=ItemLog)
    error_messages: list[str] = field(default_factory=list)

    def error(self, what: str, exc: BaseException | str, *, doing: str = "remove") -> None:
        """Count one error; keep its message (``cannot <doing> <what>: <reason>``) among the first few."""
        self.errors += 1
        if len(self.error_messages) < MAX_ERROR_MESSAGES:
            self.error_messages.append(f"cannot {doing} {what}: {_reason(exc)}")

    def summary(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "scanned": self.scanned,
            "removed": self.removed,
            "bytes_freed": self.bytes_freed,
            "errors": self.errors,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "items": list(self.items)}

    def close(self) -> None:
        self.items.close()


def _reason(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


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


def _listing(fd: int) -> list[os.DirEntry[str]]:
    """A directory's entries by name (os.scandir works on a duplicate of fd and closes it)."""
    with os.scandir(fd) as it:
        return sorted(it, key=lambda e: e.name)


def _too_deep() -> str:
    return f"more than {MAX_DEPTH} directory levels deep; not entered"


# ------------------------------------------------------------------ events


def _expired(dialect: str, cutoff: datetime) -> Any:
    """SQL: the event's end is before the cutoff."""
    import sqlalchemy as sa
    from sqlmodel import col

    from eventctl.db import time_expr, time_param
    from eventctl.models import Event

    return sa.and_(col(Event.end_date).is_not(None), time_expr(Event.end_date, dialect) < time_param(cutoff, dialect))


def _recheck(dialect: str, cutoff: datetime) -> Any:
    """The DELETE's own condition: the row is still expired when it is deleted.

    On PostgreSQL (READ COMMITTED) the DELETE re-evaluates this on the newest version
    of a row another transaction changed, so an event revived after the batch was
    planned is kept; on SQLite the batch holds the write lock from its SELECT on.
    """
    return _expired(dialect, cutoff)


def _retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL): the batch can simply run again."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40P01", "40001")


def cleanup_events(
    engine: Any,
    *,
    cutoff: datetime,
    dry_run: bool,
    actor: str = "unknown",
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> SourceReport:
    """Delete events whose end is before the cutoff: bounded batches, one transaction each.

    ``removed``/``items`` count what was committed; a failure stops the source with the
    batches before it kept (each is whole: deletes, audit entries, change counter).
    """
    import sqlalchemy as sa
    from sqlmodel import select

    from eventctl.db import read_session
    from eventctl.errors import convert_db_error
    from eventctl.models import Event

    report = SourceReport()
    batch_size = batch_size or EVENT_BATCH
    try:
        with read_session(engine) as session:
            report.scanned = session.exec(select(sa.func.count()).select_from(Event)).one()
        after: uuid.UUID | None = None
        while True:
            for attempt in range(_RETRIES):
                try:
                    last, gone = _event_batch(
                        engine, cutoff=cutoff, after=after, dry_run=dry_run, actor=actor, batch_size=batch_size
                    )
                    break
                except sa.exc.DBAPIError as exc:
                    if not _retryable(exc) or attempt == _RETRIES - 1:
                        raise
            if last is None:
                break
            after = last
            for uid in gone:
                report.items.append(str(uid))
            report.removed += len(gone)
            if progress:
                progress("events", len(gone))
    except Exception as exc:  # noqa: BLE001 - reported as this source's error; the rest goes on
        if isinstance(exc, EventctlError):
            reason = exc.cli_message()
        elif isinstance(exc, sa.exc.SQLAlchemyError):
            reason = convert_db_error(exc).cli_message()
        else:
            reason = f"unexpected failure: {_reason(exc)}"
        report.error("events", reason, doing="read" if dry_run else "delete")
    return report


def _event_batch(
    engine: Any, *, cutoff: datetime, after: uuid.UUID | None, dry_run: bool, actor: str, batch_size: int
) -> tuple[uuid.UUID | None, list[uuid.UUID]]:
    """Plan (and unless dry_run, delete) the next batch after uid ``after``, in one transaction.

    Returns the last uid planned (None: no expired events left) and, in uid order,
    the uids removed (in a dry run: that would be).
    """
    import sqlalchemy as sa
    from sqlmodel import col, select

    from eventctl import events as core
    from eventctl.audit import Write
    from eventctl.db import read_session, write_session
    from eventctl.models import Event, event_fields
    from eventctl.timeparse import utcnow

    with (read_session if dry_run else write_session)(engine) as session:
        dialect = session.get_bind().dialect.name
        query = select(Event.uid, Event.end_date).where(_expired(dialect, cutoff))
        if after is not None:
            query = query.where(col(Event.uid) > after)
        rows = session.exec(query.order_by(col(Event.uid)).limit(batch_size)).all()
        if not rows:
            return None, []
        # SQL narrows the candidates; is_older (the one comparison) decides
        planned = [uid for uid, end in rows if end is not None and is_older(end, cutoff)]
        if dry_run or not planned:
            return rows[-1][0], planned
        core.lock_pages(session)  # shared with every writer: never inside a running apply's plan
        table: sa.Table = Event.__table__  # type: ignore[attr-defined]
        gone = session.execute(
            sa.delete(table).where(table.c.uid.in_(planned), _recheck(dialect, cutoff)).returning(*table.c)
        ).all()
        if gone:
            # the rows as the DELETE removed them (Row has the attributes event_fields reads)
            writes = [Write("delete", row.uid, event_fields(row), None) for row in gone]  # type: ignore[arg-type]
            core.record_writes(session, writes, actor=actor, via="cleanup", at=utcnow())
        return rows[-1][0], sorted(row.uid for row in gone)


# ------------------------------------------------------------------ uploads


@dataclass
class _Dir:
    """One open directory of a walk: its fd, path, entries still to visit, and what became of them."""

    fd: int
    rel: str
    name: str
    entries: list[os.DirEntry[str]]
    own_old: bool = False
    pos: int = 0
    remaining: int = 0
    removed: int = 0


def _open_dir(
    parent_fd: int | None, name: str, rel: str, *, cutoff: datetime | None, lock: bool, report: SourceReport
) -> _Dir | None:
    """Open and list one directory (never through a link); None when skipped (errors reported).

    ``lock``: skip it while a writer holds an flock on it; ``cutoff``: note whether it is itself old."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if parent_fd is None or exc.errno not in _GONE:
            report.error(rel or name, exc, doing="open")
        return None
    try:
        if lock and not _try_lock(fd):
            os.close(fd)
            return None  # a writer holds it: skip the whole directory
        own_old = cutoff is not None and is_older(mtime_utc(os.fstat(fd)), cutoff)
        entries = _listing(fd)
    except OSError as exc:
        os.close(fd)
        report.error(rel or name, exc, doing="read")
        return None
    except BaseException:
        os.close(fd)
        raise
    return _Dir(fd=fd, rel=rel, name=name, entries=entries, own_old=own_old)


class _Stop(Exception):
    """Raised by a walk's callback to end the walk early (its directories are closed)."""


def _walk(
    top: _Dir,
    report: SourceReport,
    *,
    on_entry: Callable[[_Dir, os.DirEntry[str], str, os.stat_result], _Dir | None],
    on_leave: Callable[[_Dir, _Dir], None] = lambda parent, child: None,
) -> None:
    """The one directory walk of cleanup: depth first below ``top`` (already open; left open), through
    directory fds so a path swapped for a link mid-run is never followed, at most MAX_DEPTH levels.

    ``on_entry(dir, entry, path, lstat)`` sees every entry; it returns the opened child ``_Dir``
    to descend into (``_open_dir``), or None. ``on_leave(parent, child)`` runs once a child's
    entries are done and its fd closed. Entries that vanish are passed over; one that cannot be
    read or is too deep is an error of the report (counted as ``remaining`` of its directory).
    A callback ends the walk early by raising ``_Stop``.
    """
    stack = [top]
    try:
        while stack:
            here = stack[-1]
            if here.pos == len(here.entries):
                stack.pop()
                if stack:
                    os.close(here.fd)
                    on_leave(stack[-1], here)
                continue
            entry = here.entries[here.pos]
            here.pos += 1
            path = f"{here.rel}/{entry.name}" if here.rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.error(path, exc, doing="read")
                here.remaining += 1
                continue
            if stat.S_ISDIR(st.st_mode) and len(stack) > MAX_DEPTH:
                report.error(path, _too_deep(), doing="enter")
                here.remaining += 1
                continue
            sub = on_entry(here, entry, path, st)
            if sub is not None:
                stack.append(sub)
    except _Stop:
        pass
    finally:
        for d in stack[1:]:
            os.close(d.fd)


def cleanup_uploads(root: Path, *, cutoff: datetime, dry_run: bool, progress: Progress | None = None) -> SourceReport:
    """Regular files older than the cutoff, then directories left empty.

    A directory goes when this run left it empty (in a dry run: would), or when it is
    empty and itself older than the cutoff; a fresh empty directory is kept.
    """
    report = SourceReport()
    top = _open_dir(None, str(root), "", cutoff=cutoff, lock=False, report=report)
    if top is None:
        return report

    def on_entry(here: _Dir, entry: os.DirEntry[str], path: str, st: os.stat_result) -> _Dir | None:
        if stat.S_ISDIR(st.st_mode):
            sub = _open_dir(here.fd, entry.name, path, cutoff=cutoff, lock=True, report=report)
            if sub is None:
                here.remaining += 1
            return sub
        if not stat.S_ISREG(st.st_mode):
            here.remaining += 1  # symlinks, sockets, fifos: never touched
            return None
        report.scanned += 1
        if progress:
            progress("uploads", 1)
        if is_older(mtime_utc(st), cutoff) and _remove_file(here.fd, entry.name, path, st, dry_run, report):
            here.removed += 1
        else:
            here.remaining += 1
        return None

    def on_leave(parent: _Dir, child: _Dir) -> None:
        empty = child.remaining == 0 and (child.removed > 0 or child.own_old)
        if empty and _remove_dir(parent.fd, child.name, child.rel, dry_run=dry_run, report=report):
            parent.removed += 1
        else:
            parent.remaining += 1

    try:
        _walk(top, report, on_entry=on_entry, on_leave=on_leave)
    except Exception as exc:  # noqa: BLE001 - never lose the report of what was already removed
        report.error(str(root), exc, doing="process")
    finally:
        os.close(top.fd)
    return report


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
        report.error(str(root), exc, doing="open")
        return report
    try:
        names: list[str] = []
        with os.scandir(rfd) as it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        names.append(entry.name)
                except OSError as exc:
                    report.error(entry.name, exc, doing="read")
        names.sort()
        if total:
            total(len(names))
        for name in names:
            report.scanned += 1
            if progress:
                progress("chunks", 1)
            try:
                _one_upload(rfd, name, cutoff=cutoff, dry_run=dry_run, report=report)
            except Exception as exc:  # noqa: BLE001 - one upload's failure is its own; the rest go on
                report.error(name, exc, doing="process")
    except Exception as exc:  # noqa: BLE001 - never lose the report of what was already removed
        report.error(str(root), exc, doing="read")
    finally:
        os.close(rfd)
    return report


def _one_upload(rfd: int, name: str, *, cutoff: datetime, dry_run: bool, report: SourceReport) -> None:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=rfd)
    except OSError as exc:
        if exc.errno not in _GONE:
            report.error(name, exc, doing="open")
        return
    try:
        if not _try_lock(fd):
            return  # an upload in progress holds it
        st = os.fstat(fd)
        if not is_older(mtime_utc(st), cutoff):
            return
        size = _old_tree_size(fd, name, cutoff, report)
        if size is None:
            return
        if not dry_run:
            if _remove_tree(fd, name, report):
                return
            try:
                os.rmdir(name, dir_fd=rfd)
            except FileNotFoundError:
                return  # another cleanup removed it first: its item, not ours
            except OSError as exc:
                report.error(name + "/", exc)
                return
    finally:
        os.close(fd)
    report.removed += 1
    report.bytes_freed += size
    report.items.append(name)


def _old_tree_size(fd: int, rel: str, cutoff: datetime, report: SourceReport) -> int | None:
    """Total size of the regular files below fd when every entry (links not followed) is old.

    None keeps the upload: one entry is fresh, or a part cannot be read or is too deep
    to judge (reported as an error), or changed under us (judged next run).
    """
    top = _open_dir(fd, ".", rel, cutoff=cutoff, lock=False, report=report)
    if top is None:
        return None
    errors, total, keep = report.errors, 0, False

    def on_entry(here: _Dir, entry: os.DirEntry[str], path: str, st: os.stat_result) -> _Dir | None:
        nonlocal total, keep
        if not is_older(mtime_utc(st), cutoff):
            keep = True
            raise _Stop
        if stat.S_ISDIR(st.st_mode):
            sub = _open_dir(here.fd, entry.name, path, cutoff=cutoff, lock=False, report=report)
            if sub is None:
                keep = True
                raise _Stop
            return sub
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
        return None

    try:
        _walk(top, report, on_entry=on_entry)
    finally:
        os.close(top.fd)
    return None if keep or report.errors > errors else total


def _remove_tree(fd: int, rel: str, report: SourceReport) -> int:
    """Remove everything inside fd (links are unlinked, never followed). Returns failures."""
    top = _open_dir(fd, ".", rel, cutoff=None, lock=False, report=report)
    if top is None:
        return 1
    errors = report.errors

    def on_entry(here: _Dir, entry: os.DirEntry[str], path: str, st: os.stat_result) -> _Dir | None:
        if stat.S_ISDIR(st.st_mode):
            return _open_dir(here.fd, entry.name, path, cutoff=None, lock=False, report=report)
        try:
            os.unlink(entry.name, dir_fd=here.fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            report.error(path, exc)
        return None

    def on_leave(parent: _Dir, child: _Dir) -> None:
        try:
            os.rmdir(child.name, dir_fd=parent.fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            report.error(child.rel + "/", exc)

    try:
        _walk(top, report, on_entry=on_entry, on_leave=on_leave)
    finally:
        os.close(top.fd)
    return report.errors - errors
