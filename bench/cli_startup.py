"""CLI start-up cost against bare imports, measured side by side.

    python bench/cli_startup.py [--runs 21]

Runs each command in a fresh interpreter, interleaved round-robin so machine
noise hits all of them alike (after one warm-up run each, with bytecode caching
on, as on a user's machine), and prints the median wall time and the ratios:
`eventctl --help` against `python -c "import typer"` (target ≤ 2×) and
`eventctl current --page /x` and `eventctl list --limit 50` against
`python -c "import sqlmodel"` (target ≤ 1.3×).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
        # as on a user's machine: bytecode is cached after the first run (an editable install's own
        # modules are not compiled by pip, and PYTHONDONTWRITEBYTECODE would recompile them every run)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["EVENTCTL_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
        subprocess.run([py, "-m", "eventctl", "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [py, "-m", "eventctl", "create", "--name", "bench", "--page", "/x"],
            env=env,
            check=True,
            capture_output=True,
        )
        commands = {
            "import typer": [py, "-c", "import typer"],
            "eventctl --help": [py, "-m", "eventctl", "--help"],
            "import sqlmodel": [py, "-c", "import sqlmodel"],
            "eventctl current --page /x": [py, "-m", "eventctl", "current", "--page", "/x", "--json"],
            "eventctl list --limit 50": [py, "-m", "eventctl", "list", "--limit", "50"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # warm the OS file cache and .pyc files
            subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tmp)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                start = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tmp)
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(ts) * 1000 for name, ts in times.items()}
    for name, ms in med.items():
        print(f"{name:32s} median {ms:7.1f} ms  (n={args.runs})")
    help_ratio = med["eventctl --help"] / med["import typer"]
    current_ratio = med["eventctl current --page /x"] / med["import sqlmodel"]
    print(f"--help / import typer            {help_ratio:5.2f}x  (target <= 2.0x)")
    list_ratio = med["eventctl list --limit 50"] / med["import sqlmodel"]
    print(f"current / import sqlmodel        {current_ratio:5.2f}x  (target <= 1.3x)")
    print(f"list --limit 50 / import sqlmodel {list_ratio:5.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
