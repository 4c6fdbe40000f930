"""The README's remote-mode example runs as written: a real ``eventctl serve``, a login, then the
worked example unchanged, over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _block(start: str, end: str) -> str:
    section = README[README.index(start) : README.index(end)]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_worked_example_runs_remotely_as_written(tmp_path):
    remote = _block("## Remote mode", "## Maintenance")
    example = _block("## A worked example", "## Command reference")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = (
        "trap 'kill %1 2>/dev/null; wait' EXIT\n"
        + remote.replace("8000", str(port))
        + "eventctl db current\n"
        + example
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env.update(
        PATH=f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}",
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert '"name": "Telugu audio sprint"' in r.stdout  # current --at inside the campaign, over HTTP
    assert "resolved here" in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2, r.stderr  # the refusal the example shows, and db current refused remotely
    assert any("overlaps" in e for e in errors), r.stderr
    assert any("does not run over --api" in e for e in errors), r.stderr
    token = (tmp_path / "laptop.token").read_text().strip()
    assert token and token not in r.stdout + r.stderr
