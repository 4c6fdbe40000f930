"""`eventctl apply` at 1k / 10k / 100k entries: time and peak RSS, against its own dry run.

    python bench/apply_scale.py [--sizes 1000,10000,100000] [--postgres URL] [--format json|yaml]

For each size it writes a file of that many campaigns (four a page, windows that do not
overlap), then runs, each in a fresh process on a fresh database: `apply --dry-run`
(the baseline: parsing, validation, matching and every check, no writes), `apply`
(everything, written), and `apply` again (the same file: nothing changes). It prints
wall time, peak RSS (the child's own ru_maxrss, from wait4) and two ratios: the run
against its dry run (target ≤ 3×) and seconds per 1,000 entries against the smallest
size (1.0 = linear). `--postgres URL` (an admin URL) also runs on a database it
creates there and drops afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa


def campaigns(n: int) -> list[dict]:
    return [
        {
            "name": f"Campaign {i}",
            "page_context": f"/review/p{i // 4}",
            "description": "A generated campaign",
            "filters": {"media_type": ["audio"], "language": ["Telugu"], "lock": True},
            "limit": 25,
            "is_active": True,
            "is_default": False,
            "start_date": f"2031-01-0{i % 4 + 1}T00:00:00Z",
            "end_date": f"2031-01-0{i % 4 + 2}T00:00:00Z",
        }
        for i in range(n)
    ]


def peak(env: dict[str, str], *args: str) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MiB) and the --json answer of one eventctl process, timed from a fresh
    helper process so that RUSAGE_CHILDREN is this one run's peak alone."""
    code = (
        "import json,sys,subprocess,time,resource;t=time.perf_counter();"
        "p=subprocess.run(sys.argv[1:],capture_output=True);"
        "d=time.perf_counter()-t;"
        "print(json.dumps([d,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,p.returncode,"
        "p.stdout.decode(),p.stderr.decode()[:300]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "eventctl", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    took, rss, rc, stdout, stderr = json.loads(out.stdout)
    if rc != 0:
        raise SystemExit(f"eventctl {' '.join(args)} failed: {stderr}")
    return took, rss, json.loads(stdout)


def bench(label: str, url: str, path: Path, n: int, env: dict[str, str]) -> dict[str, tuple[float, float]]:
    env = {**env, "EVENTCTL_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "eventctl", "db", "upgrade"], env=env, check=True, capture_output=True)
    out = {}
    for step, extra, expect in (
        ("dry run", ("--dry-run",), "created"),
        ("apply", (), "created"),
        ("re-apply", (), "unchanged"),
    ):
        took, rss, doc = peak(env, "apply", str(path), "--json", *extra)
        assert doc[expect] == n, doc
        out[step] = (took, rss)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server to also run on")
    parser.add_argument("--format", choices=("json", "yaml"), default="json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in sizes:
            path = Path(tmp) / f"campaigns-{n}.{args.format}"
            doc = campaigns(n)
            if args.format == "json":
                path.write_text(json.dumps(doc))
            else:
                import yaml

                path.write_text(yaml.safe_dump(doc, sort_keys=False))
            backends = [("sqlite", f"sqlite:///{tmp}/bench-{n}.db")]
            admin = None
            if args.postgres:
                admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
                name = f"eventctl_bench_{uuid.uuid4().hex[:8]}"
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                backends.append(("postgresql", admin.url.set(database=name).render_as_string(hide_password=False)))
            try:
                for label, url in backends:
                    rows.append((label, n, bench(label, url, path, n, env)))
            finally:
                if admin is not None:
                    with admin.connect() as conn:
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    admin.dispose()
    base = {label: r["apply"][0] / n * 1000 for label, n, r in rows if n == sizes[0]}
    print(
        f"{'backend':<11} {'entries':>8} {'dry run':>16} {'apply':>16} {'re-apply':>16} "
        f"{'apply/dry':>9} {'s/1k vs smallest':>16}"
    )
    for label, n, r in rows:
        cells = [f"{r[k][0]:7.2f}s {r[k][1]:5.0f}MiB" for k in ("dry run", "apply", "re-apply")]
        per_k = r["apply"][0] / n * 1000
        print(
            f"{label:<11} {n:>8} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} "
            f"{r['apply'][0] / r['dry run'][0]:8.2f}x {per_k / base[label]:15.2f}x"
        )


if __name__ == "__main__":
    main()
