"""Nothing happens at import; --help stays light."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import eventctl


def _run(code: str, cwd, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTCTL_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_help_imports_no_sqlalchemy_sqlmodel_or_fastapi(tmp_path):
    code = (
        "import sys, io, contextlib\n"
        "from eventctl.cli import app\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try: app(['--help'], prog_name='eventctl')\n"
        "    except SystemExit: pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'sqlmodel', 'fastapi', 'alembic', "
        "'pydantic', 'starlette', 'uvicorn', 'granian', 'psycopg', 'httpx'})\n"
        "print(heavy)\n"
    )
    r = _run(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_importing_every_module_reads_no_env_file_and_changes_nothing(tmp_path):
    (tmp_path / ".env").write_text("EVENTCTL_DATABASE_URL=sqlite:////nonexistent/x.db\nINJECTED=1\n")
    modules = [m.name for m in pkgutil.walk_packages(eventctl.__path__, "eventctl.") if ".__main__" not in m.name]
    modules = [m for m in modules if not m.startswith("eventctl._migrations")]
    code = (
        "import os, sys, json, builtins, importlib, io\n"
        "before = dict(os.environ)\n"
        "opened = []\n"
        "real_open = io.open\n"
        "def spy(file, *a, **k):\n"
        "    opened.append(str(file)); return real_open(file, *a, **k)\n"
        "builtins.open = spy; io.open = spy\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "builtins.open = real_open; io.open = real_open\n"
        "print(json.dumps({'env_changed': dict(os.environ) != before, 'env_file_opened': [f for f in opened if "
        "f.endswith('.env')], 'files': os.listdir('.')}))\n"
    )
    r = _run(code, tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"env_changed": False, "env_file_opened": [], "files": [".env"]}
    assert len(modules) >= 10


def test_dotenv_is_read_when_the_cli_starts(tmp_path):
    (tmp_path / ".env").write_text(f"EVENTCTL_DATABASE_URL=sqlite:///{tmp_path / 'from-dotenv.db'}\n")
    code = "from eventctl.cli import main\nimport sys\nsys.argv=['eventctl','db','upgrade']\nmain()\n"
    r = _run(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "from-dotenv.db").is_file()
    # the real environment wins over .env
    r = _run(code, tmp_path, {"EVENTCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'from-env.db'}"})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "from-env.db").is_file()


def test_the_entry_point_builds_only_the_command_it_runs():
    """typer converts every registered command before it runs one: main() builds an app with the
    named command's registrar only; help, options first, unknown names get the whole app."""
    import typer.main

    from eventctl.cli import REGISTRARS, _command_name, build_app

    for args, command in (
        (["list", "--limit", "50"], "list"),
        (["--database-url", "sqlite://", "current", "--page", "/x"], "current"),
        (["--database-url=sqlite://", "history", "u"], "history"),
        (["--api", "https://x", "--insecure-http", "--token-file", "t", "--timeout=3", "show", "u"], "show"),
        (["--profile", "prod", "--ca-file", "ca.pem", "--connect-timeout", "2", "export"], "export"),
        (["db", "upgrade"], "db"),
    ):
        assert _command_name(args) == command, args
        built = typer.main.get_command(build_app(command)).commands  # type: ignore[attr-defined]
        names = next(names for names, _ in REGISTRARS if command in names)
        assert sorted(built) == sorted(names), (command, sorted(built))
    for args in ([], ["--help"], ["-h", "list"], ["lsit"], ["--install-completion"], ["--database-url"]):
        assert _command_name(args) is None, args
    everything = typer.main.get_command(build_app()).commands  # type: ignore[attr-defined]
    assert sorted(everything) == sorted(n for names, _ in REGISTRARS for n in names)


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--limit", "5"],
        ["list", "--json"],
        ["current", "--page", "/x", "--json"],
        ["list", "--help"],
        ["db", "--help"],
        ["db", "current"],
        ["token", "list"],
        ["create", "--name", "no page"],
        ["list", "--bogus"],
        ["lsit"],
        ["--help"],
    ],
)
def test_a_command_answers_alike_from_the_lean_app(db_url, args):
    from typer.testing import CliRunner

    from eventctl.cli import _command_name, app, build_app

    runner = CliRunner()
    argv = ["--database-url", db_url, *args]
    assert runner.invoke(app, [*argv[:2], "create", "--name", "E", "--page", "/x"]).exit_code == 0
    full = runner.invoke(app, argv, prog_name="eventctl")
    lean = runner.invoke(build_app(_command_name(argv)), argv, prog_name="eventctl")
    assert (lean.exit_code, lean.stdout, lean.stderr) == (full.exit_code, full.stdout, full.stderr)
