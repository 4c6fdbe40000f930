"""cleanup of 200,000 expired events on PostgreSQL succeeds, in bounded memory (issue 8, item 3).

The old cleanup bound every expired uid into one IN list: past 65,535 PostgreSQL
refused it ("number of parameters must be between 0 and 65535") and nothing was
removed. Events now go in batches of 1,000, and the names removed spill to a
temporary file, so the process's peak memory does not grow with the number of events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

MANY = 200_000
# peak RSS of the 200,000-event run over a 1-event run. Loading the expired rows at
# once (as the old code did, before it failed) costs far more than this; batches
# stay within a few MB of the small run.
MAX_GROWTH_KB = 60 * 1024

MEASURED = """\
import resource, sys
from eventctl.cli import main
try:
    main()
finally:
    sys.stderr.write("\\nMAXRSS_KB %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def seed(url: str, n: int) -> None:
    from eventctl.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, is_default, '
                    "start_date, end_date, created_by, created_at, updated_at) "
                    "SELECT gen_random_uuid(), 'old ' || i, '/bulk/' || mod(i, 997), "
                    '\'{"media_type": "audio", "category_ids": []}\'::jsonb, 20, true, false, '
                    "now() - interval '60 days', now() - interval '30 days' - i * interval '1 second', 'seed', "
                    "now() - interval '60 days', now() - interval '60 days' FROM generate_series(1, :n) AS i"
                ),
                {"n": n},
            )
            conn.execute(  # one live event that must stay
                sa.text(
                    'INSERT INTO events (uid, name, page_context, filters, "limit", is_active, is_default, '
                    "start_date, end_date, created_by, created_at, updated_at) VALUES (gen_random_uuid(), 'live', "
                    "'/bulk/live', '{}'::jsonb, 20, true, false, NULL, now() + interval '30 days', 'seed', now(), "
                    "now())"
                )
            )
    finally:
        engine.dispose()


def cleanup(url: str) -> tuple[dict, int, float]:
    """Run `eventctl cleanup --json` in its own process: (report, peak RSS in KiB, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["EVENTCTL_ACTOR"] = "ops"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", MEASURED, "--database-url", url, "cleanup", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    peak = int(proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
    return json.loads(proc.stdout), peak, took


@pytest.mark.postgres
@pytest.mark.slow
def test_cleanup_of_200000_expired_events_on_postgresql_in_bounded_memory(pg_server):
    from eventctl import migrate
    from eventctl.db import make_engine

    url = pg_server.create()  # its own database: the shared one keeps no 200,000 audit entries
    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    engine.dispose()

    seed(url, 1)
    small, small_peak, _ = cleanup(url)
    assert small["sources"]["events"]["removed"] == 1

    seed(url, MANY)
    doc, peak, took = cleanup(url)
    events = doc["sources"]["events"]
    assert events["errors"] == 0
    assert events["removed"] == MANY and len(events["items"]) == MANY == len(set(events["items"]))
    assert events["scanned"] == MANY + 2  # the live event of each seed
    assert events["items"] == sorted(events["items"])

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 2
            entries, distinct, vias = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT uid), string_agg(DISTINCT via || '/' || actor, ',') "
                    "FROM eventctl_audit WHERE action = 'delete'"
                )
            ).one()
            assert (entries, distinct, vias) == (MANY + 1, MANY + 1, "cleanup/ops")
            # one bump of the change counter per batch (1 + 200 batches)
            assert conn.execute(sa.text("SELECT version FROM eventctl_state")).scalar_one() == 1 + MANY // 1000
    finally:
        engine.dispose()
    growth = peak - small_peak
    sys.stderr.write(
        f"\n200k cleanup: {took:.1f}s, peak RSS {peak / 1024:.0f} MiB (1 event: {small_peak / 1024:.0f} MiB)\n"
    )
    assert growth < MAX_GROWTH_KB, f"peak RSS grew by {growth / 1024:.0f} MiB for {MANY:,} events"
