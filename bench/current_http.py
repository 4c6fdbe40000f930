"""Throughput and latency of GET /api/v1/events/current on both servers, against bare baselines.

    python bench/current_http.py [--duration 10] [--rounds 3] [--connections 32] [--workers 1]

Fills a fresh SQLite database with 10,000 events across 2,000 pages (one live
event per page, four scheduled), starts `eventctl serve` on each server
(`--server granian`, `--server uvicorn`) and baselines returning the same bytes:
a raw ASGI callable under uvicorn and under granian (each with the options
eventctl.web.server passes it) and a bare FastAPI route under uvicorn, and loads
each in turn, rounds interleaved, with wrk (requests spread over the 2,000 pages
via X-Page-Route; a Python load generator is used when wrk is missing). Prints
requests/s, p50 and p99 for each (medians over rounds) and the ratios.
`eventctl serve` is started exactly as a user starts it (`eventctl serve --port
N`, default settings, its access log and metrics on). Targets (README, "Which server"):
`eventctl serve` as shipped >= 1.15x the raw app under uvicorn and >= 0.85x the
raw app under granian, p99 no worse than eventctl under uvicorn.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

PAGES, PER_PAGE = 2000, 5
HERE = Path(__file__).resolve().parent
LUA = """
local pages = {}
for i = 0, %d do pages[i + 1] = "/review/page-" .. i end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/v1/events/current", {["X-Page-Route"] = pages[math.random(#pages)]})
end
"""


def fill(url: str) -> None:
    from eventctl import migrate
    from eventctl.db import make_engine, write_session
    from eventctl.events import bump_version
    from eventctl.models import Event

    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    now = datetime.now(UTC)
    with write_session(engine) as session:
        for p in range(PAGES):
            for k in range(PER_PAGE):
                start = now - timedelta(hours=1) if k == 0 else now + timedelta(days=30 + k)
                end = now + timedelta(days=30) if k == 0 else now + timedelta(days=31 + k)
                session.add(
                    Event(
                        uid=uuid.uuid4(),
                        name=f"Campaign {p}-{k}",
                        page_context=f"/review/page-{p}",
                        filters={"media_type": "audio", "language": "te"},
                        limit=25,
                        start_date=start,
                        end_date=end,
                        created_by="bench",
                        created_at=now,
                        updated_at=now,
                    )
                )
        bump_version(session)
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/api/v1/events/current", timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.args}") from None
            time.sleep(0.1)
    raise SystemExit(f"server did not start: {proc.args}")


def get_current(base: str, route: str) -> bytes:
    req = urllib.request.Request(base + "/api/v1/events/current", headers={"X-Page-Route": route})
    with urllib.request.urlopen(req) as r:
        return r.read()


def run_wrk(base: str, script: str, duration: int, connections: int) -> tuple[float, float, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {base}:\n{out}")
    return rps, pct("50"), pct("99")


def run_python(base: str, duration: int, connections: int) -> tuple[float, float, float]:
    """Fallback load generator: keep-alive connections in threads (much weaker than wrk)."""
    import http.client
    import random
    import threading

    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port))
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            conn.request(
                "GET", "/api/v1/events/current", headers={"X-Page-Route": f"/review/page-{random.randrange(PAGES)}"}
            )
            conn.getresponse().read()
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(min(connections, 8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return len(latencies) / duration, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


SERVERS = (
    "eventctl serve (granian)",
    "eventctl serve (uvicorn)",
    "raw ASGI, granian",
    "raw ASGI, uvicorn",
    "bare FastAPI",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of every server")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        fill(url)
        print(f"filled {PAGES * PER_PAGE:,} events across {PAGES:,} pages in {time.perf_counter() - t0:.1f}s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
        env["EVENTCTL_DATABASE_URL"] = url
        ports = {name: free_port() for name in SERVERS}
        servers: dict[str, subprocess.Popen] = {}
        logs = Path(tmp) / "logs"
        logs.mkdir()
        # exactly as a user starts it: default settings, its own access log and metrics
        serve_log = open(logs / "serve.log", "w")  # noqa: SIM115 - closed below
        for kind in ("granian", "uvicorn"):
            name = f"eventctl serve ({kind})"
            servers[name] = subprocess.Popen(
                [py, "-m", "eventctl", "serve", "--port", str(ports[name]), "--server", kind,
                 "--workers", str(args.workers)],
                env=env, stdout=serve_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            wait_up(f"http://127.0.0.1:{ports[name]}", servers[name])
        base0 = f"http://127.0.0.1:{ports['eventctl serve (granian)']}"
        req = urllib.request.Request(base0 + "/api/v1/events/current", headers={"X-Page-Route": "/review/page-7"})
        with urllib.request.urlopen(req) as r:
            body = r.read()
            answered = [(k, v) for k, v in r.getheaders() if k.lower() not in ("date", "server", "connection")]
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        env["BENCH_BODY_FILE"] = str(body_file)
        headers_file = Path(tmp) / "headers.json"
        headers_file.write_text(json.dumps(answered))
        env["BENCH_HEADERS_FILE"] = str(headers_file)
        # the baselines under the same uvicorn, with the options eventctl.web.server.run passes
        uv = [py, "-m", "uvicorn", "--factory", "--workers", str(args.workers), "--no-access-log"]
        uv += ["--no-server-header", "--no-proxy-headers", "--log-level", "warning", "--host", "127.0.0.1"]
        uv += ["--app-dir", str(HERE)]
        gr = [py, "-m", "granian", "--interface", "asgi", "--factory", "--workers", str(args.workers), "--no-ws"]
        gr += ["--log-level", "warning", "--host", "127.0.0.1", "--working-dir", str(HERE)]
        for name, argv, factory in (
            ("raw ASGI, uvicorn", uv, "baseline_apps:raw_asgi_app"),
            ("raw ASGI, granian", gr, "baseline_apps:raw_asgi_app"),
            ("bare FastAPI", uv, "baseline_apps:fastapi_app"),
        ):
            servers[name] = subprocess.Popen([*argv, "--port", str(ports[name]), factory], env=env)
            wait_up(f"http://127.0.0.1:{ports[name]}", servers[name])
        print(
            f"body {len(body)} bytes; load: {'wrk' if wrk else 'python threads (wrk not found)'}, "
            f"{args.connections} connections, {args.duration}s x {args.rounds} rounds per server, interleaved"
        )
        script = Path(tmp) / "pages.lua"
        script.write_text(LUA % (PAGES - 1))
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ports}
        try:
            for page in range(PAGES):  # every page once: /current's cache holds them all
                get_current(base0, f"/review/page-{page}")
            for port in ports.values():  # warm up
                base = f"http://127.0.0.1:{port}"
                run_wrk(base, str(script), 3, args.connections) if wrk else run_python(base, 3, args.connections)
            for _ in range(args.rounds):
                for name, port in ports.items():
                    base = f"http://127.0.0.1:{port}"
                    results[name].append(
                        run_wrk(base, str(script), args.duration, args.connections)
                        if wrk
                        else run_python(base, args.duration, args.connections)
                    )
        finally:
            for proc in servers.values():
                proc.terminate()
                proc.wait(timeout=10)
            serve_log.close()
        logged = (logs / "serve.log").read_text(errors="replace").count("/api/v1/events/current")
    med = {name: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for name, rs in results.items()}
    print(f"{args.workers} worker(s) per server")
    print(f"{'server':26s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s}   (rounds: req/s, p99 ms)")
    for name, (rps, p50, p99) in med.items():
        rounds = ", ".join(f"{r[0]:.0f}/{r[2]:.2f}" for r in results[name])
        print(f"{name:26s} {rps:10.0f} {p50:8.2f} {p99:8.2f}   ({rounds})")
    cur, cur_uv = med["eventctl serve (granian)"], med["eventctl serve (uvicorn)"]
    raw_uv, raw_gr, fa = med["raw ASGI, uvicorn"], med["raw ASGI, granian"], med["bare FastAPI"]
    print(f"eventctl serve (granian) vs raw ASGI under uvicorn: {cur[0] / raw_uv[0]:.2f}x (target >= 1.15)")
    print(f"eventctl serve (granian) vs raw ASGI under granian: {cur[0] / raw_gr[0]:.2f}x (target >= 0.85)")
    print(f"eventctl serve, granian vs uvicorn: {cur[0] / cur_uv[0]:.2f}x, p99 {cur[2] / cur_uv[2]:.2f}x")
    print(f"eventctl serve (uvicorn) vs raw ASGI under uvicorn: {cur_uv[0] / raw_uv[0]:.2f}x")
    print(f"eventctl serve (granian) vs bare FastAPI: {cur[0] / fa[0]:.2f}x")
    print(f"/current lines in serve's log: {logged}")


if __name__ == "__main__":
    main()
