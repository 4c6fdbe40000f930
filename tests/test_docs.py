"""The README stays honest: every command and option documented, set-up commands real."""

from __future__ import annotations

import re
from pathlib import Path

from eventctl.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands():
    import typer.main

    group = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    yield from walk(group, [])


def _rows(path: list[str]) -> list[str]:
    """The README table rows whose first cell is this command (``| `eventctl db upgrade [REV]` | …``)."""
    head = f"| `eventctl {' '.join(path)}"
    return [line for line in README.splitlines() if line.startswith(head) and line[len(head)] in " `"]


def test_every_command_and_option_is_in_its_readme_row():
    """Each command has a row in a README table, and each of its options is named in that row."""
    filters_section = README[README.index("### Filters: the platform's") :]
    filters_table = filters_section[: filters_section.index("\n\n", filters_section.index("| key |"))]
    commands = {" ".join(path): cmd for path, cmd in _commands()}
    missing = []
    for name, cmd in commands.items():
        rows = _rows(name.split())
        if not rows:
            missing.append(f"{name} (no row)")
            continue
        # shared option groups a row may name instead of listing them: the filter flags (each in the
        # filter table's row of its key) and, for update, the options of create (in create's row)
        if any("[filter flags]" in row or "[options of create]" in row for row in rows):
            rows = [*rows, filters_table]
        if any("[options of create]" in row for row in rows):
            rows = [*rows, *_rows(["create"])]
        for param in cmd.params:
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("--") and not any(opt in row for row in rows):
                    missing.append(f"{name} {opt}")
    assert not missing, f"not in the command's README row: {missing}"


def test_every_env_var_is_in_the_readme():
    used = set()
    for path in (ROOT / "eventctl").rglob("*.py"):
        used |= set(re.findall(r"EVENTCTL_[A-Z_]+", path.read_text()))
        used |= {f"EVENTCTL_{m}" for m in re.findall(r'(?<![.\w])get\("([A-Z_]+)"\)', path.read_text())}
    missing = sorted(v for v in used if v not in README)
    assert not missing, f"undocumented env vars: {missing}"


def test_ci_runs_the_readme_setup_commands():
    blocks = re.findall(r"```sh\n(python3 -m venv .*?)\n```", README)
    assert len(blocks) == 2, blocks
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1] in ci, "CI must run the README's test command verbatim"
    install = blocks[0].split(" && .venv/bin/eventctl")[0]
    assert "pip install" in install and "apply examples/" in blocks[0] and "current --page" in blocks[0]


def test_the_setup_command_succeeds_every_time(tmp_path):
    """The README's first command, minus the install, run twice (and from a second checkout): exit 0 each time."""
    import os
    import shutil
    import subprocess
    import sys

    block = re.findall(r"```sh\n(python3 -m venv .*?)\n```", README)[0]
    run_part = " && ".join(p for p in block.split(" && ") if p.startswith(".venv/bin/eventctl"))
    script = run_part.replace(".venv/bin/eventctl", f"{sys.executable} -m eventctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the same user's default database for both checkouts
    for checkout in ("one", "one", "two"):
        where = tmp_path / checkout
        if not where.exists():
            shutil.copytree(ROOT / "examples", where / "examples")
        r = subprocess.run(["bash", "-c", script], cwd=where, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (checkout, r.stderr)
        assert '"name": "Audio review (standing)"' in r.stdout


def test_worked_example_runs_as_written(tmp_path):
    import os
    import subprocess
    import sys

    block = README[README.index("## A worked example") : README.index("## Command reference")]
    script = re.search(r"```sh\n(.*?)```", block, re.S).group(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env.update(PATH=f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}", XDG_DATA_HOME=str(tmp_path / "d"))
    import shutil

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    setup = "eventctl apply examples/campaigns.yaml >/dev/null\n"
    r = subprocess.run(
        ["bash", "-c", setup + script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert '"name": "Telugu audio sprint"' in r.stdout  # current --at inside the campaign
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "overlaps" in errors[0], r.stderr  # only the refusal the example shows


def test_the_documented_campaigns_are_still_ahead():
    """The README's worked example and examples/ show campaigns to come (the overlap refusal, the
    page default answering until the campaign starts): once a date passes, they show something
    else. This fails a year ahead, while there is time to move them."""
    from datetime import UTC, datetime, timedelta

    block = README[README.index("## A worked example") : README.index("## Command reference")]
    texts = [block, *(path.read_text() for path in sorted((ROOT / "examples").glob("*.y*ml")))]
    dates = [datetime.fromisoformat(d).replace(tzinfo=UTC) for t in texts for d in re.findall(r"\d{4}-\d\d-\d\d", t)]
    assert len(dates) >= 6, dates
    soon = datetime.now(UTC) + timedelta(days=365)
    assert min(dates) > soon, f"documented dates from {min(dates):%Y-%m-%d} on pass within a year: move them ahead"
