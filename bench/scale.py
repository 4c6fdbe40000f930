"""/current at scale: start-up, memory, throughput, write-to-visible latency, list.

    python bench/scale.py [--events 100000] [--pages 10000] [--small 10000] [--duration 60] [--cold PAGES]
                          [--connections 16] [--writes 200] [--sqlite-writes 50]
                          [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Makes two fresh PostgreSQL databases: a big one (``--events`` over ``--pages`` pages) and
a small one (``--small`` events, same events per page). Per page: one live event, the
rest alternately expired and upcoming. Starts ``eventctl serve`` exactly as a user does
(one worker, default settings) on each, both at once, and prints side by side:

* start-up: spawn to /healthz, and the first /current answer's latency after that;
* worker RSS after start, and after the load;
* cold: every page (or ``--cold`` pages) requested once each (all cache misses), req/s and p99;
* then /current throughput and p50/p99 under a keep-alive asyncio client (``--connections``,
  requests spread uniformly over every page), ``--duration`` seconds on each server in
  ``--rounds`` alternating slices (both servers run side by side; noise hits both);
* ``eventctl list --json`` of every event in its own process: time, size, peak RSS;
* write-to-visible latency: creates through the CLI (in-process, timed from the
  command's return, i.e. after its commit) and through HTTP (POST to the first
  instance), polled on two ``serve`` instances until both answer them — on the big
  PostgreSQL database (LISTEN/NOTIFY) and on an SQLite file of the small shape (polling).

The load client runs on the same machine as the server: on a small machine the
throughput figures are bounded by it as much as by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

CURRENT = "/api/v1/events/current"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_key(i: int) -> str:
    return f"/review/page-{i}"


def make_database(admin_url: str, events: int, pages: int) -> str:
    import sqlalchemy as sa

    from eventctl import migrate
    from eventctl.db import make_engine

    name = f"eventctl_scale_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    now = datetime.now(UTC)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        columns = (
            'uid, name, description, page_context, filters, "limit", is_active, is_default, start_date, end_date, '
            "created_by, created_at, updated_at"
        )
        with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for n in range(events):
                p, k = n % pages, n // pages
                if k == 0:
                    start, end = now - timedelta(hours=1), now + timedelta(days=30)
                elif k % 2:
                    start, end = now - timedelta(days=10 + k), now - timedelta(days=9 + k)  # expired
                else:
                    start, end = now + timedelta(days=30 + k), now + timedelta(days=31 + k)  # upcoming
                created = now - timedelta(seconds=events - n)
                copy.write_row(
                    (uuid.uuid4(), f"campaign {n}", None, page_key(p), "{}", 20, True, False,
                     start, end, "bench", created, created)
                )  # fmt: skip
        raw.commit()
        cur.execute("ANALYZE events")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()
    return url


def drop_database(admin_url: str, url: str) -> None:
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def rss_mib(pid: int) -> float:
    """RSS of a process and its children (uvicorn may fork a worker)."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(p) for p in out]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def get(port: int, route: str | None = None, path: str = CURRENT) -> tuple[int, bytes]:
    headers = {"X-Page-Route": route} if route else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, url: str, **settings: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
        env.update(EVENTCTL_DATABASE_URL=url, **settings)
        self.started = time.perf_counter()
        self.log = open(os.devnull, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventctl", "serve", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        while True:
            try:
                if get(self.port, path="/healthz")[0] == 200:
                    break
            except OSError:
                if self.proc.poll() is not None or time.perf_counter() - self.started > 120:
                    raise SystemExit("serve did not start") from None
                time.sleep(0.02)
        self.up = time.perf_counter() - self.started
        t = time.perf_counter()
        status, _ = get(self.port, page_key(0))
        self.first = time.perf_counter() - t
        assert status == 200, status

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


async def _load(
    port: int, pages: int, duration: float, connections: int, sweep: bool = False
) -> tuple[int, list[float]]:
    """Random pages for ``duration`` seconds; ``sweep``: every page once instead (cold cache)."""
    end = time.perf_counter() + duration
    todo = list(range(pages))
    latencies: list[float] = []
    count = 0
    length = re.compile(rb"content-length: *(\d+)", re.I)

    async def worker() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rnd = random.Random()
        try:
            while todo if sweep else time.perf_counter() < end:
                route = page_key(todo.pop() if sweep else rnd.randrange(pages))
                t = time.perf_counter()
                writer.write(f"GET {CURRENT} HTTP/1.1\r\nHost: b\r\nX-Page-Route: {route}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                m = length.search(head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                latencies.append(time.perf_counter() - t)
                count += 1
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return count, latencies


def load(port: int, pages: int, duration: float, connections: int, sweep: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    count, lat = asyncio.run(_load(port, pages, duration, connections, sweep))
    duration = time.perf_counter() - started if sweep else duration
    return summary(count, duration, lat)


def summary(count: int, seconds: float, latencies: list[float]) -> dict[str, Any]:
    lat = sorted(latencies)
    return {"rps": count / seconds, "p50": lat[len(lat) // 2] * 1000, "p99": lat[int(len(lat) * 0.99)] * 1000}


def interleaved(servers: dict[str, tuple[Server, int]], duration: float, rounds: int, connections: int) -> dict:
    """``duration`` seconds of load on each server, in ``rounds`` alternating slices (noise hits both)."""
    totals: dict[str, list[Any]] = {label: [0, []] for label in servers}
    for _ in range(rounds):
        for label, (server, pages) in servers.items():
            count, lat = asyncio.run(_load(server.port, pages, duration / rounds, connections))
            totals[label][0] += count
            totals[label][1] += lat
    return {label: summary(count, duration, lat) for label, (count, lat) in totals.items()}


def write_latency(url: str, ports: list[int], writes: int, via: str = "cli") -> dict[int, list[float]]:
    """``writes`` creates through the CLI (in-process) or HTTP (``POST`` to the first instance),
    each timed from the write's return (after its commit) until every instance answers it."""
    from typer.testing import CliRunner

    from eventctl.cli import app

    runner = CliRunner()
    token = ""
    if via == "http":
        r = runner.invoke(app, ["--database-url", url, "token", "create", f"bench-{uuid.uuid4().hex[:6]}"])
        assert r.exit_code == 0, r.output
        token = r.stdout.strip()
    seen: dict[int, list[float]] = {p: [] for p in ports}
    for i in range(writes):
        route = f"/latency/{uuid.uuid4().hex[:8]}"
        for port in ports:  # held in the cache first: the write must invalidate it
            assert get(port, route)[1] == b"null"
        if via == "http":
            body = json.dumps({"name": f"w{i}", "page_context": route}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{ports[0]}/api/v1/events/", data=body, method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 201
        else:
            r = runner.invoke(app, ["--database-url", url, "create", "--name", f"w{i}", "--page", route])
            assert r.exit_code == 0, r.output
        committed = time.perf_counter()
        waiting = set(ports)
        while waiting:
            for port in list(waiting):
                if get(port, route)[1] != b"null":
                    seen[port].append((time.perf_counter() - committed) * 1000)
                    waiting.discard(port)
            if time.perf_counter() - committed > 10:
                raise SystemExit(f"write {i} not seen within 10 s by {waiting}")
            time.sleep(0.001)
    return seen


# the peak RSS of this process image (VmHWM): getrusage's ru_maxrss would also count the bench's
# own memory at the fork, which Linux carries across exec
MEASURED = """\
import sys
from eventctl.cli import main
try:
    main()
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("\\nMAXRSS_KB %s\\n" % peak)
"""


def list_json(url: str) -> dict[str, float]:
    """``eventctl list --json`` of every event, in its own process: seconds, bytes printed, peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", MEASURED, "--database-url", url, "list", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    printed = 0
    while chunk := proc.stdout.read(1 << 20):
        printed += len(chunk)
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait() == 0, err[-2000:]
    peak_kb = int(err.rsplit("MAXRSS_KB", 1)[1].split()[0])
    return {"seconds": time.perf_counter() - started, "mb": printed / 1e6, "peak_mib": peak_kb / 1024}


def make_sqlite(path: str, events: int, pages: int) -> str:
    """The same shape on SQLite (rows copied in through the ORM's table, one transaction)."""
    import sqlalchemy as sa

    from eventctl import migrate
    from eventctl.db import make_engine
    from eventctl.models import Event

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    now = datetime.now(UTC)
    rows = []
    for n in range(events):
        p, k = n % pages, n // pages
        start, end = now - timedelta(hours=1), now + timedelta(days=30)
        if k:
            start, end = now + timedelta(days=30 + k), now + timedelta(days=31 + k)
        rows.append(
            {"uid": uuid.uuid4(), "name": f"campaign {n}", "description": None, "page_context": page_key(p),
             "filters": {}, "limit": 20, "is_active": True, "is_default": False, "start_date": start,
             "end_date": end, "created_by": "bench", "created_at": now, "updated_at": now}
        )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.insert(Event.__table__), rows)  # type: ignore[attr-defined]
    engine.dispose()
    return url


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--pages", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument(
        "--cache-pages", type=int, default=None, help="EVENTCTL_CACHE_PAGES for the servers (default: theirs)"
    )
    ap.add_argument(
        "--cold", type=int, default=None, help="pages requested once, cold, before the load (default: every page)"
    )
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6, help="alternating slices of the load (small, big, small, ...)")
    ap.add_argument("--writes", type=int, default=200, help="creates per way on PostgreSQL (CLI, HTTP); 0: skip")
    ap.add_argument("--list", action=argparse.BooleanOptionalAction, default=True, help="time list --json")
    ap.add_argument("--sqlite-writes", type=int, default=50, help="the same on SQLite (each waits for a poll); 0: skip")
    ap.add_argument(
        "--pg", default=os.environ.get("EVENTCTL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    args = ap.parse_args()
    per_page = max(1, args.events // args.pages)
    sizes = {"small": (args.small, max(1, args.small // per_page)), "big": (args.events, args.pages)}
    urls: dict[str, str] = {}
    results: dict[str, dict[str, float]] = {}
    try:
        for label, (events, pages) in sizes.items():
            t = time.perf_counter()
            urls[label] = make_database(args.pg, events, pages)
            print(f"filled {label}: {events:,} events / {pages:,} pages in {time.perf_counter() - t:.1f} s", flush=True)
        cache = {"EVENTCTL_CACHE_PAGES": str(args.cache_pages)} if args.cache_pages else {}
        servers: dict[str, tuple[Server, int]] = {}
        try:
            for label, (_events, pages) in sizes.items():
                server = Server(urls[label], **cache)
                servers[label] = (server, pages)
                results[label] = {"up": server.up, "first": server.first * 1000, "rss0": rss_mib(server.proc.pid)}
            for label, (server, pages) in servers.items():
                cold = load(server.port, min(pages, args.cold or pages), 0, args.connections, sweep=True)  # all misses
                results[label].update(cold_rps=cold["rps"], cold_p99=cold["p99"])
            for label, got in interleaved(servers, args.duration, args.rounds, args.connections).items():
                results[label].update(got, rss1=rss_mib(servers[label][0].proc.pid))
        finally:
            for server, _pages in servers.values():
                server.stop()
        seen: dict[str, dict[int, list[float]]] = {}
        if args.writes:
            one, two = Server(urls["big"]), Server(urls["big"])
            try:
                seen["PostgreSQL, CLI"] = write_latency(urls["big"], [one.port, two.port], args.writes)
                seen["PostgreSQL, HTTP"] = write_latency(urls["big"], [one.port, two.port], args.writes, via="http")
            finally:
                one.stop()
                two.stop()
        if args.sqlite_writes:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                lite = make_sqlite(f"{tmp}/scale.db", args.small, max(1, args.small // per_page))
                one, two = Server(lite), Server(lite)  # default settings: polling every second
                try:
                    seen["SQLite, CLI"] = write_latency(lite, [one.port, two.port], args.sqlite_writes)
                    seen["SQLite, HTTP"] = write_latency(lite, [one.port, two.port], args.sqlite_writes, via="http")
                finally:
                    one.stop()
                    two.stop()
        listed = {label: list_json(urls[label]) for label in sizes} if args.list else {}
    finally:
        for url in urls.values():
            drop_database(args.pg, url)

    out = io.StringIO()
    out.write(f"\n{'':34}{'small':>18}{'big':>18}{'big/small':>11}\n")
    (se, sp), (be, bp) = sizes["small"], sizes["big"]
    out.write(f"{'events / pages':34}{f'{se:,}/{sp:,}':>18}{f'{be:,}/{bp:,}':>18}\n")
    rows = [
        ("spawn to /healthz (s)", "up", "{:.2f}"),
        ("first /current after that (ms)", "first", "{:.1f}"),
        ("RSS after start (MiB)", "rss0", "{:.0f}"),
        ("cold: every page once, req/s", "cold_rps", "{:,.0f}"),
        ("cold: p99 (ms)", "cold_p99", "{:.2f}"),
        (f"/current req/s ({args.connections} conns)", "rps", "{:,.0f}"),
        ("/current p50 (ms)", "p50", "{:.2f}"),
        ("/current p99 (ms)", "p99", "{:.2f}"),
        ("RSS after load (MiB)", "rss1", "{:.0f}"),
    ]
    for name, key, fmt in rows:
        a, b = results["small"][key], results["big"][key]
        out.write(f"{name:34}{fmt.format(a):>18}{fmt.format(b):>18}{b / a if a else float('nan'):>10.2f}x\n")
    for name, key, fmt in (("list --json: seconds", "seconds", "{:.1f}"), ("list --json: MB printed", "mb", "{:.0f}"),
                           ("list --json: peak RSS (MiB)", "peak_mib", "{:.0f}")):  # fmt: skip
        if not listed:
            break
        a, b = listed["small"][key], listed["big"][key]
        out.write(f"{name:34}{fmt.format(a):>18}{fmt.format(b):>18}{b / a if a else float('nan'):>10.2f}x\n")
    if seen:
        out.write(f"\nwrite-to-visible, seen by two `serve` instances (ms; both = the later; {args.writes} creates")
        out.write(f" each on PostgreSQL, {args.sqlite_writes} on SQLite):\n")
    latency = {}
    for how, by_port in seen.items():
        both = [max(a, b) for a, b in zip(*by_port.values(), strict=True)]
        got = latency[how] = {"p50": statistics.median(both), "p99": pct(both, 0.99), "max": max(both)}
        out.write(f"  {how:18} p50 {got['p50']:7.1f}  p99 {got['p99']:7.1f}  max {got['max']:7.1f}\n")
    print(out.getvalue())
    print(json.dumps({"results": results, "list": listed, "latency": latency, "args": vars(args)}))


if __name__ == "__main__":
    main()
