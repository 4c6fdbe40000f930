"""`eventctl cleanup --dry-run` scan time against `find -mmin`, side by side.

    python bench/cleanup_scan.py [--dirs 10000] [--files-per-dir 10] [--runs 5]

Builds a chunk tree (default 100,000 files in 10,000 upload directories; half
the uploads old, a quarter with one fresh chunk), then runs, interleaved:
  baseline  find DIR -mmin +N             (lists old entries; no per-upload logic)
  eventctl  eventctl cleanup --dry-run --json --skip-events --chunks-dir DIR --older-than Nm
and prints medians and the ratio (target <= 3x find).

    python bench/cleanup_scan.py --events 200000 [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Creates a scratch PostgreSQL database on that server, fills it with that many
expired events (INSERT … SELECT generate_series), runs `eventctl cleanup --json`
once in its own process and prints its wall time and peak RSS (next to a run
over 1 event), then drops the database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def build(root: str, dirs: int, files: int) -> None:
    now = time.time()
    old = now - 3 * 86400
    for d in range(dirs):
        path = os.path.join(root, f"upload-{d:05d}")
        os.mkdir(path)
        for f in range(files):
            fp = os.path.join(path, f"chunk-{f:03d}")
            with open(fp, "wb") as fh:
                fh.write(b"c" * 64)
            fresh = d % 4 == 1 and f == files - 1  # one fresh chunk keeps the upload
            if d % 2 == 0 or (d % 4 == 1 and not fresh):
                os.utime(fp, (old, old))
        if d % 2 == 0 or d % 4 == 1:
            os.utime(path, (old, old))


MEASURED = """\
import resource, sys
from eventctl.cli import main
try:
    main()
finally:
    sys.stderr.write("\\nMAXRSS_KB %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def events_bench(n: int, pg_url: str) -> None:
    import uuid

    import sqlalchemy as sa

    from eventctl import migrate
    from eventctl.db import make_engine

    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"eventctl_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    try:
        engine = make_engine(url)
        migrate.upgrade(engine, "head")
        for count in (1, n):
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, is_default, '
                        "start_date, end_date, created_by, created_at, updated_at) "
                        "SELECT gen_random_uuid(), 'old ' || i, '/bulk/' || mod(i, 997), "
                        '\'{"media_type": "audio", "category_ids": []}\'::jsonb, 20, true, false, '
                        "now() - interval '60 days', now() - interval '30 days', 'seed', "
                        "now() - interval '60 days', now() - interval '60 days' FROM generate_series(1, :n) AS i"
                    ),
                    {"n": count},
                )
            seeded = time.perf_counter() - start
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", MEASURED, "--database-url", url, "cleanup", "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            took = time.perf_counter() - start
            peak = int(out.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
            report = json.loads(out.stdout)["sources"]["events"] if out.stdout else {}
            print(
                f"{count:>9,} events: seeded in {seeded:5.1f}s; cleanup exit {out.returncode} in {took:6.1f}s, "
                f"removed {report.get('removed', 0):,}, errors {report.get('errors')}, peak RSS {peak / 1024:.0f} MiB"
            )
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirs", type=int, default=10_000)
    parser.add_argument("--files-per-dir", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=0, help="benchmark deleting this many expired events instead")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if args.events:
        events_bench(args.events, args.pg_url)
        return
    find = shutil.which("find")
    if not find:
        sys.exit("find is not installed")
    eventctl = [sys.executable, "-m", "eventctl"]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "chunks")
        os.mkdir(root)
        t0 = time.perf_counter()
        build(root, args.dirs, args.files_per_dir)
        took = time.perf_counter() - t0
        print(f"built {args.dirs * args.files_per_dir:,} files in {args.dirs:,} dirs in {took:.1f}s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
        env["XDG_DATA_HOME"] = os.path.join(tmp, "data")
        commands = {
            "find -mmin +1440": [find, root, "-mmin", "+1440"],
            "eventctl cleanup --dry-run": [
                *eventctl,
                "cleanup",
                "--dry-run",
                "--json",
                "--skip-events",
                "--chunks-dir",
                root,
                "--older-than",
                "1440m",
            ],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        plan = None
        for cmd in commands.values():  # warm the page cache
            subprocess.run(cmd, env=env, check=True, capture_output=True)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                start = time.perf_counter()
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                times[name].append(time.perf_counter() - start)
                if name.startswith("eventctl"):
                    plan = json.loads(out.stdout)["sources"]["chunks"]
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, sec in med.items():
        print(f"{name:30s} median {sec * 1000:8.1f} ms  (n={args.runs})")
    assert plan is not None
    print(f"plan: scanned {plan['scanned']:,} uploads, would remove {plan['removed']:,}")
    ratio = med["eventctl cleanup --dry-run"] / med["find -mmin +1440"]
    print(f"eventctl / find                {ratio:5.2f}x  (target <= 3.0x)")


if __name__ == "__main__":
    main()
