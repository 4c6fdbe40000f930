"""/current throughput with per-request metrics on (as shipped) and off (counting made a no-op), side by side.

    python bench/metrics_overhead.py [--pages 1000] [--duration 5] [--rounds 3] [--connections 16]

One PostgreSQL database (one live event per page), two uvicorn servers (one worker
each, the same app factory but for the middleware), loaded in interleaved rounds by
bench/scale.py's keep-alive asyncio client over every page; prints medians and the
on/off ratios (issue 9: throughput unchanged within noise with metrics on).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    url = scale.make_database(args.pg, args.pages, args.pages)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["EVENTCTL_DATABASE_URL"] = url
    uv = [sys.executable, "-m", "uvicorn", "--factory", "--workers", "1", "--no-access-log", "--log-level", "warning",
          "--host", "127.0.0.1", "--app-dir", str(HERE)]  # fmt: skip
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for name, factory in (("metrics on (shipped)", "eventctl.web.app:app_from_env"),
                              ("metrics off", "baseline_apps:eventctl_without_metrics")):  # fmt: skip
            port = scale.free_port()
            servers[name] = (port, subprocess.Popen([*uv, "--port", str(port), factory], env=env))
        for port, proc in servers.values():
            deadline = time.monotonic() + 60
            while True:
                try:
                    if scale.get(port, None, "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "a server did not start"
                time.sleep(0.2)
            scale.load(port, args.pages, 2, args.connections)  # warm every cache
        results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, (port, _proc) in servers.items():
                results[name].append(scale.load(port, args.pages, args.duration, args.connections))
    finally:
        for _port, proc in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
        scale.drop_database(args.pg, url)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")} for n, rs in results.items()}
    for name, m in med.items():
        print(f"{name:<22} {m['rps']:>9,.0f} req/s  p50 {m['p50']:.2f} ms  p99 {m['p99']:.2f} ms")
    on, off = med["metrics on (shipped)"], med["metrics off"]
    print(f"on/off: throughput {on['rps'] / off['rps']:.2f}x, p99 {on['p99'] / off['p99']:.2f}x "
          f"({args.rounds} interleaved rounds of {args.duration:g} s, {args.connections} connections)")  # fmt: skip


if __name__ == "__main__":
    main()
