"""Remote mode against real servers: what a network does that a database does not (SPEC §10).

Credentials (never in argv, never printed, stored 0600), plain HTTP and TLS, 401/403 (exit 6),
5xx and timeouts (exit 5), answers that are not the API, retries only where safe, paging, and
an apply cut off mid-way that is safe to run again.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from platform_events_standin import PlatformEvents, ServedApp, create_app
from test_remote import run_cli

SECRET = "tok-Zq8VERYSECRETs3cr3t"


@pytest.fixture
def platform() -> Iterator[tuple[PlatformEvents, str]]:
    state = PlatformEvents()
    state.admins[SECRET] = str(uuid.uuid4())
    with ServedApp(create_app(state)) as served:
        yield state, served.url
        if state.knobs.hold is not None:
            state.knobs.hold.set()


def cli(url: str, *args: str, token: str | None = SECRET, **env: str) -> Any:
    base = {"EVENTCTL_API_URL": url, "EVENTCTL_API_RETRIES": "0", "COLUMNS": "200"}
    if token is not None:
        base["EVENTCTL_API_TOKEN"] = token
    return run_cli(*args, env={**base, **env})


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------- selecting remote mode


def test_database_options_are_refused_alongside_the_api(platform, tmp_path):
    _, url = platform
    both = run_cli("--api", url, "--database-url", f"sqlite:///{tmp_path}/x.db", "list")
    assert both.exit_code == 2
    assert "cannot be used together" in both.stderr and "--database-url" in both.stderr
    env_both = cli(url, "list", EVENTCTL_DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    assert env_both.exit_code == 2 and "cannot be used together" in env_both.stderr
    db = cli(url, "db", "upgrade")
    assert db.exit_code == 2 and "works on a database" in db.stderr
    assert not (tmp_path / "x.db").exists()


def test_the_kind_of_server_is_detected(platform, served):
    state, url = platform
    from eventctl.remote.client import ApiClient, Connection

    for where, token, kind in ((url, SECRET, "platform"), (served[0], served[1], "eventctl")):
        client = ApiClient(Connection(url=where, token=token, token_source="test"))
        try:
            assert client.kind() == kind
        finally:
            client.close()


@pytest.fixture
def served(tmp_path, request) -> Iterator[tuple[str, str, str]]:
    from test_remote import _token

    from conftest import database_for
    from eventctl.config import Settings
    from eventctl.web.app import create_app as eventctl_app

    db_url = database_for("sqlite", request, tmp_path)
    token = _token(db_url)
    with ServedApp(eventctl_app(Settings(database_url=db_url, poll_interval=0.1)), lifespan="on") as srv:
        yield srv.url, token, db_url


# ---------------------------------------------------------------- transport security


def test_plain_http_only_to_loopback_unless_insecure_http():
    refused = run_cli("--api", "http://events.example.org", "list", env={"EVENTCTL_API_TOKEN": SECRET})
    assert refused.exit_code == 2
    assert "plain http://" in refused.stderr and "--insecure-http" in refused.stderr
    # allowed with --insecure-http: it gets as far as the network (a TEST-NET address: nothing answers)
    allowed = run_cli(
        "--api", "http://192.0.2.1", "--insecure-http", "--connect-timeout", "0.2", "list",
        env={"EVENTCTL_API_TOKEN": SECRET, "EVENTCTL_API_RETRIES": "0"},
    )  # fmt: skip
    assert allowed.exit_code == 5, allowed.stderr
    assert "plain http" not in allowed.stderr
    creds = run_cli("--api", "https://user:pw@events.example.org", "list")
    assert creds.exit_code == 2 and "pw" not in creds.stderr


def _certificates(tmp_path) -> tuple[str, str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=eventctl test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return str(tmp_path / "ca.pem"), str(tmp_path / "server.pem"), str(tmp_path / "server.key")


def test_https_is_verified_and_ca_file_trusts_a_private_ca(tmp_path):
    ca, cert, key = _certificates(tmp_path)
    state = PlatformEvents()
    state.admins[SECRET] = str(uuid.uuid4())
    with ServedApp(create_app(state), ssl_certfile=cert, ssl_keyfile=key) as served:
        untrusted = cli(served.url, "list", "--json")
        assert untrusted.exit_code == 5, untrusted.stderr
        assert "not trusted" in untrusted.stderr and "--ca-file" in untrusted.stderr
        trusted = cli(served.url, "--ca-file", ca, "list", "--json")
        assert trusted.exit_code == 0, trusted.stderr
        assert trusted.json() == []
    missing = cli("https://127.0.0.1:1", "--ca-file", str(tmp_path / "nope.pem"), "list")
    assert missing.exit_code == 2 and "is not a file" in missing.stderr


# ---------------------------------------------------------------- credentials


def test_a_token_not_accepted_is_exit_6_and_never_shown(platform, served):
    _, url = platform
    for where in (url, served[0]):
        wrong = cli(where, "list", token="tok-WRONG-but-secret-987")
        assert wrong.exit_code == 6, wrong.stderr
        assert "not accepted" in wrong.stderr and "EVENTCTL_API_TOKEN" in wrong.stderr
        assert "tok-WRONG-but-secret-987" not in wrong.stdout + wrong.stderr
        none = cli(where, "list", token=None)
        assert none.exit_code == 6 and "no token was given" in none.stderr


def test_a_signed_in_non_admin_is_exit_6(platform):
    state, url = platform
    refused = cli(url, "create", "--name", "x", "--page", "/p", token="reviewer-token")
    assert refused.exit_code == 6, refused.stderr
    assert state.events == {}


def test_the_token_never_appears_in_output_or_errors(platform, tmp_path):
    state, url = platform
    outputs = []
    # every kind of failure, with the real token in play
    outputs.append(cli(url, "create", "--name", "A", "--page", "/p", "--json"))
    outputs.append(cli(url, "show", str(uuid.uuid4())))
    outputs.append(cli(url, "create", "--name", "A", "--page", "/p", "--limit", "500"))
    state.knobs.fail = {"GET": 500}
    outputs.append(cli(url, "list"))
    state.knobs.fail = {}
    state.knobs.html = True
    outputs.append(cli(url, "list"))
    state.knobs.html = False
    for bad in (SECRET + "\x1b[2J", SECRET + " x", SECRET + "é"):
        r = cli(url, "list", token=bad)
        assert r.exit_code == 2 and "not usable" in r.stderr, r.stderr
        outputs.append(r)
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    outputs.append(cli(url, "--token-file", str(token_file), "list", token=None))
    assert outputs[-1].exit_code == 0, outputs[-1].stderr
    for r in outputs:
        assert SECRET not in r.stdout + r.stderr
    from eventctl.config import load_settings
    from eventctl.remote.client import resolve_connection

    settings = load_settings({"EVENTCTL_API_URL": url, "EVENTCTL_API_TOKEN": SECRET})
    assert SECRET not in repr(settings) and SECRET not in settings.to_json()
    assert SECRET not in repr(resolve_connection(settings))


def test_login_stores_the_token_0600_and_logout_removes_it(platform, tmp_path, monkeypatch):
    _, url = platform
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    refused = run_cli("login", "--api", url, input="tok-not-known\n")
    assert refused.exit_code == 6, refused.stderr
    assert not (tmp_path / "config" / "eventctl" / "logins.json").exists()

    done = run_cli("login", "--api", url, "--name", "prod", input=SECRET + "\n")
    assert done.exit_code == 0, done.stderr
    assert "platform's events API" in done.stderr and SECRET not in done.stdout + done.stderr
    stored = tmp_path / "config" / "eventctl" / "logins.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert json.loads(stored.read_text())["logins"]["prod"] == {"url": url, "token": SECRET}

    by_url = run_cli("--api", url, "list", "--json")
    assert by_url.exit_code == 0, by_url.stderr
    by_name = run_cli("--profile", "prod", "list", "--json")
    assert by_name.exit_code == 0, by_name.stderr
    unknown = run_cli("--profile", "staging", "list")
    assert unknown.exit_code == 2 and "No stored login" in unknown.stderr

    out = run_cli("logout", "--name", "prod")
    assert out.exit_code == 0, out.stderr
    assert json.loads(stored.read_text())["logins"] == {}
    after = run_cli("--api", url, "list")
    assert after.exit_code == 6 and "no token was given" in after.stderr


# ---------------------------------------------------------------- a network is not a database


def test_a_failing_server_is_exit_5_with_its_detail_escaped(platform):
    state, url = platform
    state.knobs.status = 500
    state.knobs.detail = "disk \x1b[31mfull"
    failed = cli(url, "list")
    assert failed.exit_code == 5, failed.stderr
    assert "HTTP 500" in failed.stderr and "disk \\x1b[31mfull" in failed.stderr
    assert "\x1b" not in failed.stderr


def test_an_answer_that_is_not_the_api_is_one_sentence(platform):
    state, url = platform
    state.knobs.html = True
    html = cli(url, "list")
    assert html.exit_code == 1, html.stderr
    assert "text/html" in html.stderr and "not the events API" in html.stderr
    assert len(html.stderr.strip().splitlines()) == 1
    state.knobs.html = False
    state.knobs.list_answer = [{"id": 1, "title": "not an event"}]
    shape = cli(url, "list", "--json")
    assert shape.exit_code == 1, shape.stderr
    assert "not an event" in shape.stderr and shape.stdout == ""
    state.knobs.list_answer = {"items": []}
    assert cli(url, "list").exit_code == 1


def test_a_server_that_does_not_answer_times_out_with_exit_5(platform):
    state, url = platform
    state.knobs.hold = threading.Event()
    slow = cli(url, "--timeout", "0.3", "list")
    assert slow.exit_code == 5, slow.stderr
    assert "did not answer within 0.3 s" in slow.stderr


def test_idempotent_requests_are_retried_a_post_never_blindly(platform):
    state, url = platform
    state.knobs.fail = {"GET": 503}
    got = cli(url, "list", EVENTCTL_API_RETRIES="2")
    assert got.exit_code == 5, got.stderr
    assert [m for m, _ in state.knobs.requests].count("GET") == 3  # tried, then retried twice
    state.knobs.requests.clear()
    state.knobs.fail = {"POST": 503}
    posted = cli(url, "create", "--name", "A", "--page", "/p", EVENTCTL_API_RETRIES="2")
    assert posted.exit_code == 5, posted.stderr
    assert [m for m, _ in state.knobs.requests].count("POST") == 1
    state.knobs.fail = {}
    state.knobs.requests.clear()
    state.knobs.fail = {"PUT": 502}
    made = state.add(name="A", page_context="/p")
    put = cli(url, "update", str(made["uid"]), "--limit", "30", EVENTCTL_API_RETRIES="1")
    assert put.exit_code == 5
    assert [m for m, _ in state.knobs.requests].count("PUT") == 2


def test_lists_page_through_skip_and_limit(platform):
    state, url = platform
    base = datetime.now(UTC)
    for i in range(450):
        state.add(name=f"e{i}", page_context="/p", created_at=base + timedelta(seconds=i), is_active=i % 10 != 0)
    everything = cli(url, "list", "--json")
    assert everything.exit_code == 0, everything.stderr
    names = [e["name"] for e in everything.json()]
    assert names == [f"e{i}" for i in reversed(range(450))]
    skips = [m for m in state.knobs.requests if m[1] == "/api/v1/events/"]
    assert len(skips) == 3
    window = cli(url, "list", "--offset", "10", "--limit", "300", "--json").json()
    assert [e["name"] for e in window] == names[10:310]
    inactive = cli(url, "list", "--status", "inactive", "--offset", "2", "--limit", "3", "--json").json()
    assert [e["name"] for e in inactive] == [n for n in names if int(n[1:]) % 10 == 0][2:5]
    exported = cli(url, "export", "--format", "json")
    assert len(json.loads(exported.stdout)) == 450


def test_eventctl_serve_lists_page_through_too(served):
    from eventctl.db import make_engine, write_session
    from eventctl.events import create_event
    from eventctl.shapes import EventCreate

    url, token, db_url = served
    engine = make_engine(db_url)
    with write_session(engine) as session:
        for i in range(230):
            data = EventCreate(name=f"e{i}", page_context="/p")
            create_event(session, data=data, actor="t", via="cli", allow_overlap=True)
    engine.dispose()
    listed = cli(url, "list", "--json", token=token)
    assert listed.exit_code == 0, listed.stderr
    assert len({e["uid"] for e in listed.json()}) == 230


def test_apply_cut_off_mid_way_says_what_was_applied_and_runs_again(platform, tmp_path):
    state, url = platform
    doc = [
        {"name": f"E{i}", "page_context": "/a", "start_date": iso(timedelta(days=i + 1)),
         "end_date": iso(timedelta(days=i + 1, hours=12))}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "events.json"
    path.write_text(json.dumps(doc))
    state.knobs.writes_before_failure = 2
    cut = cli(url, "apply", str(path), EVENTCTL_API_RETRIES="2")
    assert cut.exit_code == 5, cut.stderr
    assert "Applied before the failure (2 of 3): create 'E0' on /a" in cut.stderr
    assert "Not applied: create 'E2' on /a" in cut.stderr and "can be applied again" in cut.stderr
    assert sorted(e["name"] for e in state.events.values()) == ["E0", "E1"]
    state.knobs.writes_before_failure = None
    again = cli(url, "apply", str(path), "--json")
    assert again.exit_code == 0, again.stderr
    assert (again.json()["created"], again.json()["unchanged"]) == (1, 2)
    third = cli(url, "apply", str(path), "--json")
    assert (third.json()["created"], third.json()["unchanged"]) == (0, 3)
    assert len(state.events) == 3


def test_platform_overlap_check_is_on_the_client_before_writing(platform):
    state, url = platform
    made = state.add(name="A", page_context="/p", start_date=datetime.now(UTC), end_date=None)
    refused = cli(url, "create", "--name", "B", "--page", "/p", "--start", "+1d")
    assert refused.exit_code == 3 and str(made["uid"]) in refused.stderr
    assert [m for m, _ in state.knobs.requests if m == "POST"] == []
    other = cli(url, "create", "--name", "C", "--page", "/q", "--start", "+1d", "--json")
    assert other.exit_code == 0, other.stderr
    moved = cli(url, "update", other.json()["uid"], "--page", "/p")
    assert moved.exit_code == 3, moved.stderr
    assert state.events[uuid.UUID(other.json()["uid"])]["page_context"] == "/q"


def test_uid_prefixes_work_against_the_platform(platform):
    state, url = platform
    made = state.add(name="A", page_context="/p")
    shown = cli(url, "show", str(made["uid"])[:8], "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["uid"] == str(made["uid"])


def test_apply_refuses_two_entries_matching_one_event(platform, tmp_path):
    state, url = platform
    made = state.add(name="A", page_context="/a")
    doc = [
        {"uid": str(made["uid"]), "name": "Renamed", "page_context": "/a"},
        {"name": "A", "page_context": "/a", "limit": 30},
    ]
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(doc))
    refused = cli(url, "apply", str(path))
    assert refused.exit_code == 2 and "both match" in refused.stderr, refused.stderr
    assert state.writes == 0


def test_category_names_need_a_local_table_so_remote_takes_uids(platform):
    state, url = platform
    named = cli(url, "create", "--name", "A", "--page", "/p", "--category", "poetry")
    assert named.exit_code == 2 and "is not a UUID" in named.stderr
    cat = str(uuid.uuid4())
    by_uid = cli(url, "create", "--name", "A", "--page", "/p", "--category", cat, "--json")
    assert by_uid.exit_code == 0, by_uid.stderr
    assert by_uid.json()["filters"] == {"category_ids": [cat]}
    assert len(state.events) == 1


def test_a_stored_token_goes_only_to_its_own_server(platform, tmp_path, monkeypatch):
    _, url = platform
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert run_cli("login", "--api", url, "--name", "prod", input=SECRET + "\n").exit_code == 0
    other = run_cli("--profile", "prod", "--api", "https://elsewhere.example.org", "list")
    assert other.exit_code == 2 and "is for" in other.stderr
    second = PlatformEvents()
    second.admins[SECRET] = "would-accept-it"
    with ServedApp(create_app(second)) as served:
        unknown_server = run_cli("--api", served.url, "list")
    assert unknown_server.exit_code == 6 and "no token was given" in unknown_server.stderr


def test_login_at_a_terminal_asks_without_echo(platform, tmp_path, monkeypatch):
    import typer

    from eventctl.cli import login as login_cli

    _, url = platform
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    asked: list[dict[str, Any]] = []

    def prompt(text: str, **kwargs: Any) -> str:
        asked.append(kwargs)
        return SECRET

    monkeypatch.setattr(login_cli, "_interactive", lambda: True)
    monkeypatch.setattr(typer, "prompt", prompt)
    done = run_cli("login", "--api", url)
    assert done.exit_code == 0, done.stderr
    assert asked == [{"hide_input": True, "err": True}]
    assert run_cli("--api", url, "list", "--json").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--api", "https://x\x1b[2J.example.org", "list"],
        ["--api", "ftp://x.example.org", "list"],
        ["--api", "https://", "list"],
        ["--api", "https://x.example.org", "--timeout", "nan", "list"],
        ["--api", "https://x.example.org", "--timeout", "abc", "list"],
        ["--api", "https://x.example.org", "--connect-timeout", "-1", "list"],
        ["--api", "https://x.example.org", "--token-file", "/nonexistent/token", "list"],
    ],
)
def test_hostile_remote_options_are_one_sentence(args):
    r = run_cli(*args, env={"EVENTCTL_API_RETRIES": "0"})
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "\x1b" not in r.stderr


def test_an_answer_larger_than_the_api_ever_gives_is_refused(platform, monkeypatch):
    from eventctl.remote import client

    state, url = platform
    for i in range(20):
        state.add(name=f"event number {i}", page_context="/p")
    monkeypatch.setattr(client, "MAX_ANSWER_BYTES", 2000)
    big = cli(url, "list", "--json")
    assert big.exit_code == 1, big.stderr
    assert "more than" in big.stderr and big.stdout == ""


def test_the_history_route_refuses_bad_queries_with_422(served):
    import httpx

    url, token, _ = served
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers) as client:
        assert client.get("/api/v1/events/history").json() == []
        for query in ("since=2030-01-01T00:00:00", "since=nonsense", "limit=0", "limit=201", "skip=-1"):
            r = client.get(f"/api/v1/events/history?{query}")
            assert r.status_code == 422, (query, r.text)
        assert client.get("/api/v1/events/history").status_code == 200
        assert httpx.get(f"{url}/api/v1/events/history").status_code == 401
