"""The shape of the package (issue 7): no import cycles, web frameworks only under web/,
every table in models.py, one error table driving both edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "eventctl"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every eventctl module ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if not state.get(nxt) and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


def test_no_import_cycle_among_eventctl_modules():
    graph = _graph()
    assert "eventctl.models" in graph and "eventctl.db" in graph["eventctl.models"]  # the walker sees imports
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_only_web_imports_the_web_framework():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("eventctl.web"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{name}: {n}" for n in names if n.split(".")[0] in ("fastapi", "starlette", "uvicorn", "granian")
            ]
    assert offenders == []


def test_every_table_is_declared_in_models():
    from sqlmodel import SQLModel

    import eventctl.models  # noqa: F401

    tables = set(SQLModel.metadata.tables)
    assert {"events", "eventctl_state", "categories", "api_tokens"} <= tables
    for name, path in _modules().items():
        if name == "eventctl.models":
            continue
        assert "table=True" not in path.read_text(encoding="utf-8"), f"{name} declares a table"


def test_the_version_table_name_exists_once():
    holders = [n for n, p in _modules().items() if '"eventctl_alembic_version"' in p.read_text(encoding="utf-8")]
    assert holders == ["eventctl.migrate"]


@pytest.mark.parametrize("cls", sorted(__import__("eventctl.errors").errors.error_table(), key=lambda c: c.__name__))
def test_error_table_row_is_consistent(cls):
    """Each exception's exit code and HTTP status come from one row (SPEC §3 and §4)."""
    from eventctl import errors

    expected = {
        errors.EventctlError: (1, 500),
        errors.InvalidInput: (2, 422),
        errors.MalformedRoute: (2, 422),
        errors.MalformedPageHeader: (2, 400),
        errors.Unauthorized: (2, 401),
        errors.Conflict: (3, 409),
        errors.OverlapConflict: (3, 409),
        errors.NotFound: (4, 404),
        errors.DatabaseUnavailable: (5, 503),
        errors.SchemaNotAtHead: (5, 503),
        errors.DatabasePermissionDenied: (5, 503),
        errors.SchemaClash: (5, 503),
        errors.ServerUnavailable: (5, 503),
        errors.TokenRefused: (6, 401),
        errors.NotContract: (1, 502),
    }
    assert errors.error_table()[cls] == expected[cls]
    exc = cls("Something is wrong.", ["u1"]) if issubclass(cls, errors.Conflict) else cls("Something is wrong.")
    body = exc.http_body()
    if cls.http_status == 422:
        assert body["detail"][0]["msg"].startswith("Something is wrong.")
    elif cls.http_status == 503:
        assert body == {"detail": "The database is unavailable."}
    else:
        assert body["detail"].startswith("Something is wrong.")
    if issubclass(cls, errors.Conflict):
        assert body["conflicting_uids"] == ["u1"]


def test_create_app_is_short_and_routes_live_in_routers():
    import inspect

    from eventctl.web import app as web_app

    lines = inspect.getsource(web_app.create_app).splitlines()
    assert len(lines) <= 40, len(lines)
    source = inspect.getsource(web_app)
    assert "@api.get" not in source and "@api.post" not in source  # no route is a closure


def _instance(cls):
    from eventctl import errors

    if issubclass(cls, errors.Conflict):
        return cls("Something is wrong.", ["u1"], cause="driver said: host 10.9.9.9")
    return cls("Something is wrong.", cause="driver said: host 10.9.9.9")


@pytest.mark.parametrize("cls", sorted(__import__("eventctl.errors").errors.error_table(), key=lambda c: c.__name__))
def test_one_error_table_drives_both_edges(cls, tmp_path, monkeypatch):
    """The same exception from the core: the CLI exits with the row's code, HTTP answers its status and body."""
    from fastapi.testclient import TestClient

    from conftest import make_cli
    from eventctl import errors
    from eventctl import events as core
    from eventctl.config import Settings
    from eventctl.web.app import create_app

    url = f"sqlite:///{tmp_path / 'e.db'}"
    cli = make_cli(url)
    assert cli("db", "upgrade").exit_code == 0
    token = cli("token", "create", "t").stdout.strip()

    def refuse(*_args, **_kwargs):
        raise _instance(cls)

    monkeypatch.setattr(core, "get_event", refuse)
    r = cli("show", "12345678")
    assert r.exit_code == cls.exit_code, r.stderr
    assert r.stderr.startswith("Error: Something is wrong") and len(r.stderr.strip().splitlines()) == 1
    app = create_app(Settings(database_url=url))
    with TestClient(app) as client:
        answer = client.get("/api/v1/events/12345678", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == cls.http_status
    expected = _instance(cls)
    if isinstance(expected, errors.InvalidInput):  # get_event only reads the uid: the 422 points at the path
        expected.loc = ("path", "uid")
    assert answer.json() == expected.http_body()
    assert "10.9.9.9" not in answer.text  # the cause is for the operator's log only


def _calls(path: Path) -> list[tuple[str | None, str, int]]:
    """(enclosing function, called name as written — ``f`` or ``mod.f`` —, line) for every call in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node: ast.AST, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                f = child.func
                if isinstance(f, ast.Attribute):
                    name = f"{f.value.id}.{f.attr}" if isinstance(f.value, ast.Name) else f.attr
                else:
                    name = f.id if isinstance(f, ast.Name) else ""
                out.append((func, name, child.lineno))
            visit(child, func)

    visit(tree, None)
    return out


def test_every_writer_records_its_writes_through_one_function():
    """The audit entry, the change counter and NOTIFY are made by ``events.record_writes`` alone:
    no writer (CLI, HTTP, apply, cleanup) inserts audit entries or bumps the counter by hand."""
    callers = set()
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8").splitlines()
        for func, called, line in _calls(path):
            if called.rpartition(".")[2] in ("bump_version", "record") or called == "audit.insert":
                callers.add((name, func, called))
            if called.endswith("insert") and name != "eventctl.audit":
                assert "AuditEntry" not in text[line - 1], f"{name}:{line} writes audit entries by hand"
    assert callers == {
        ("eventctl.events", "record_writes", "audit.insert"),
        ("eventctl.events", "record_writes", "bump_version"),
    }
