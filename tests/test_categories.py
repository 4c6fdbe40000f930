"""categories import / list and the known-category rule (SPEC §6), on both databases."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx
import pytest
from platform_standin import PlatformStandIn

from conftest import count_rows, make_cli

FOLK = "0b7a6b0e-3c1a-4c55-9d22-123456789abc"
NEWS = "5f0c2a9d-0000-4000-8000-00000000000b"
UNKNOWN = "11111111-1111-4111-8111-111111111111"
POETRY = "22222222-2222-4222-8222-222222222222"
PLATFORM_EXPORT = [
    {"id": FOLK, "name": "folk", "title": "Folk songs", "description": "Songs", "published": True, "rank": 3},
    {"id": NEWS, "name": "news", "title": "News", "created_at": "2024-01-01T00:00:00Z"},
]


def _write(tmp_path, data, name="cats.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_platform_export_shape_and_idempotent_reimport(cli, db_url, tmp_path):
    path = _write(tmp_path, PLATFORM_EXPORT)
    r = cli("categories", "import", path, "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"created": 2, "updated": 0, "unchanged": 0, "dry_run": True}
    assert count_rows(db_url, "categories") == 0
    r = cli("categories", "import", path, "--json")
    assert r.json() == {"created": 2, "updated": 0, "unchanged": 0, "dry_run": False}
    r = cli("categories", "import", path, "--json")
    assert r.json() == {"created": 0, "updated": 0, "unchanged": 2, "dry_run": False}
    listed = cli("categories", "list", "--json").json()
    assert listed == [
        {"uid": FOLK, "name": "folk", "title": "Folk songs", "description": "Songs"},
        {"uid": NEWS, "name": "news", "title": "News", "description": None},
    ]


def test_own_shape_update_by_uid_and_stdin(cli, db_url, tmp_path):
    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT))
    own = [
        {"uid": FOLK, "name": "folk", "title": "Folk and ballads"},  # updated
        {"uid": NEWS, "name": "news", "title": "News", "description": None},  # unchanged
        {"uid": POETRY, "name": "poetry", "title": "Poetry"},  # new
    ]
    r = cli("categories", "import", "-", "--json", input=json.dumps(own))
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"created": 1, "updated": 1, "unchanged": 1, "dry_run": False}
    names = {c["name"]: c for c in cli("categories", "list", "--json").json()}
    assert names["folk"]["title"] == "Folk and ballads" and names["poetry"]["uid"] == POETRY
    assert count_rows(db_url, "categories") == 3
    # the list's own output reads back as an import that changes nothing
    r = cli("categories", "import", "-", "--json", input=cli("categories", "list", "--json").stdout)
    assert r.json() == {"created": 0, "updated": 0, "unchanged": 3, "dry_run": False}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"name": "x"}', "JSON array"),
        ('[{"id": "' + FOLK + '", "name": "a"}, {"id": "' + NEWS + '", "name": "a"}]', "twice"),
        ('[{"id": "' + FOLK + '", "name": "a"}, {"id": "' + FOLK + '", "name": "b"}]', "twice"),
        ('[{"id": "nope", "name": "a"}]', "invalid uid"),
        ('[{"id": "' + FOLK + '"}]', "name"),
        ('[{"id": "' + FOLK + '", "name": "a", "title": 5}]', "title"),
        ("[1]", "not a JSON object"),
        ('[{"id": "' + FOLK + '", "uid": "' + NEWS + '", "name": "a"}]', "differ"),
        ('[{"id": "' + FOLK + '", "name": "a\\u0000b"}]', "control characters"),
        ('[{"id": "' + FOLK + '", "name": "\\ud800"}]', "lone surrogate"),
        ('[{"id": "' + FOLK + '", "name": "a", "title": "x\\u001b[31m"}]', "control characters"),
        ('[{"id": "' + FOLK + '", "name": "a", "description": "\\udfff"}]', "lone surrogate"),
        ('[{"id": "' + FOLK + '", "name": "' + "n" * 201 + '"}]', "longer than 200"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
    ids=[
        "malformed",
        "not array",
        "dup names",
        "dup uids",
        "bad uid",
        "no name",
        "bad title",
        "not object",
        "uid and id differ",
        "NUL in name",
        "lone surrogate in name",
        "escape in title",
        "lone surrogate in description",
        "name too long",
        "too deep",
    ],
)
def test_bad_import_refused_nothing_written(cli, db_url, tmp_path, content, message):
    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT[:1], "seed.json"))
    r = cli("categories", "import", _write(tmp_path, content))
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert count_rows(db_url, "categories") == 1


def test_rename_clash_refused(cli, db_url, tmp_path):
    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT))
    r = cli("categories", "import", _write(tmp_path, [{"id": FOLK, "name": "news"}], "clash.json"))
    assert r.exit_code == 2 and "news" in r.stderr
    assert {c["name"] for c in cli("categories", "list", "--json").json()} == {"folk", "news"}


def test_missing_file(cli):
    r = cli("categories", "import", "/nonexistent/cats.json")
    assert r.exit_code == 2 and "Cannot read" in r.stderr


def test_any_category_allowed_until_one_is_known(cli):
    r = cli("create", "--name", "A", "--page", "/a", "--category", UNKNOWN)
    assert r.exit_code == 0, r.stderr


def test_known_categories_enforced_and_names_resolved(cli, db_url, tmp_path):
    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT))
    r = cli("create", "--json", "--name", "A", "--page", "/a", "--category", "folk", "--category", NEWS)
    assert r.exit_code == 0, r.stderr
    ev = r.json()
    assert ev["filters"]["category_ids"] == [FOLK, NEWS]
    before = count_rows(db_url)
    r = cli("create", "--name", "B", "--page", "/b", "--filters", json.dumps({"category_ids": [FOLK, UNKNOWN]}))
    assert r.exit_code == 2 and UNKNOWN in r.stderr and FOLK not in r.stderr
    r = cli("create", "--name", "B", "--page", "/b", "--category", "no-such-name")
    assert r.exit_code == 2 and "no-such-name" in r.stderr
    assert count_rows(db_url) == before
    r = cli("update", ev["uid"], "--category", UNKNOWN)
    assert r.exit_code == 2 and UNKNOWN in r.stderr
    r = cli("update", ev["uid"], "--filters", json.dumps({"category_ids": [UNKNOWN]}))
    assert r.exit_code == 2
    assert cli("show", ev["uid"], "--json").json()["filters"]["category_ids"] == [FOLK, NEWS]
    r = cli("update", ev["uid"], "--category", "news", "--json")
    assert r.exit_code == 0 and r.json()["filters"]["category_ids"] == [NEWS]


# --- ids are the platform's: entries without one are refused -------------------------------------

SEED = {
    "categories": [
        {"name": "folk", "title": "Folk songs", "description": "Songs", "published": True, "rank": 1},
        {"name": "news", "title": "News", "description": None, "published": False, "rank": 2},
    ]
}


@pytest.mark.parametrize(
    "content",
    [
        SEED,  # the platform's own seed file, wrapped
        SEED["categories"],  # … turned into an array
        [PLATFORM_EXPORT[0], {"name": "news", "title": "News"}],  # one entry without an id among good ones
        [PLATFORM_EXPORT[0], {"id": None, "name": "news"}, {"uid": "", "name": "poetry"}],
    ],
    ids=["seed file", "seed array", "one without id", "null and empty ids"],
)
def test_entries_without_ids_refused_nothing_written(cli, db_url, tmp_path, content):
    r = cli("categories", "import", _write(tmp_path, content))
    assert r.exit_code == 2, r.stderr
    message = r.stderr.strip()
    assert len(message.splitlines()) == 1 and "no id" in message and "nothing was imported" in message
    assert "GET /api/v1/categories/" in message and "eventctl categories pull" in message
    assert count_rows(db_url, "categories") == 0
    r = cli("categories", "import", _write(tmp_path, content), "--dry-run")
    assert r.exit_code == 2 and count_rows(db_url, "categories") == 0


def test_platform_export_wrapped_is_imported(cli, db_url, tmp_path):
    r = cli("categories", "import", _write(tmp_path, {"categories": PLATFORM_EXPORT}), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"created": 2, "updated": 0, "unchanged": 0, "dry_run": False}
    assert {c["uid"] for c in cli("categories", "list", "--json").json()} == {FOLK, NEWS}


def test_import_people_output_and_dry_run(cli, db_url, tmp_path):
    r = cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT), "--dry-run")
    assert r.exit_code == 0 and r.stdout == ""
    assert "2 created, 0 updated, 0 unchanged (2 in the file; dry run, nothing written)." in r.stderr
    assert count_rows(db_url, "categories") == 0


@pytest.mark.parametrize(
    ("source", "message"),
    [("/dev/zero", "larger than 16 MiB"), ("binary", "not UTF-8"), ("/nonexistent/cats.json", "Cannot read")],
)
def test_unreadable_files_refused(cli, db_url, tmp_path, source, message):
    if source == "binary":
        (tmp_path / "bin.json").write_bytes(b"[\xff\xfe]")
        source = str(tmp_path / "bin.json")
    r = cli("categories", "import", source)
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert count_rows(db_url, "categories") == 0


# --- pull and push against an in-process stand-in of the platform --------------------------------

API = "https://platform.example"
TOKEN = "admin-token"


@pytest.fixture
def platform(monkeypatch):
    """The platform's two category endpoints, in-process; every request eventctl makes goes here."""
    import eventctl.categories as core

    standin = PlatformStandIn()
    monkeypatch.setattr(core, "platform_transport", standin.transport)
    return standin


@pytest.fixture
def cli_no_db():
    """The CLI without --database-url: push must never need (or create) a database."""
    return make_cli(None)


def test_pull_upserts_by_id_and_is_idempotent(cli, db_url, platform):
    folk = platform.add("folk", "Folk songs", id=FOLK, description="Songs", published=True, rank=3)
    platform.add("news", "News", id=NEWS)
    r = cli("categories", "pull", "--api", API, "--token", TOKEN, "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"created": 2, "updated": 0, "unchanged": 0, "dry_run": True}
    assert count_rows(db_url, "categories") == 0
    r = cli("categories", "pull", "--api", API, "--token", TOKEN)
    assert r.exit_code == 0, r.stderr
    assert "2 created, 0 updated, 0 unchanged (2 on the platform)." in r.stderr
    assert cli("categories", "list", "--json").json() == [
        {"uid": FOLK, "name": "folk", "title": "Folk songs", "description": "Songs"},
        {"uid": NEWS, "name": "news", "title": "News", "description": None},
    ]
    r = cli("categories", "pull", "--api", API, "--token", TOKEN, "--json")
    assert r.json() == {"created": 0, "updated": 0, "unchanged": 2, "dry_run": False}
    folk["title"] = "Folk and ballads"
    platform.add("poetry", id=POETRY)
    r = cli("categories", "pull", "--api", API + "/api/v1/", "--token", TOKEN, "--json")
    assert r.json() == {"created": 1, "updated": 1, "unchanged": 1, "dry_run": False}
    assert count_rows(db_url, "categories") == 3
    # every request was GET <api>/api/v1/categories/ with the bearer token and a 30 s timeout
    assert {(q.method, str(q.url)) for q in platform.requests} == {("GET", API + "/api/v1/categories/")}
    assert {q.headers["authorization"] for q in platform.requests} == {f"Bearer {TOKEN}"}
    assert platform.requests[0].extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), 30.0)


def test_pull_token_read_from_the_environment_when_the_command_runs(cli, db_url, platform, monkeypatch):
    platform.add("folk", id=FOLK)
    r = cli("categories", "pull", "--api", API, env={"EVENTCTL_PLATFORM_TOKEN": TOKEN})
    assert r.exit_code == 0, r.stderr
    assert platform.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    # --token wins over the environment
    r = cli("categories", "pull", "--api", API, "--token", "other", env={"EVENTCTL_PLATFORM_TOKEN": TOKEN})
    assert r.exit_code == 2 and "HTTP 401" in r.stderr and "the token was refused" in r.stderr
    assert platform.requests[-1].headers["authorization"] == "Bearer other"


def test_pull_without_token_asks_for_one_when_the_platform_does(cli, db_url, platform):
    platform.add("folk", id=FOLK)
    r = cli("categories", "pull", "--api", API)
    assert r.exit_code == 2
    assert "HTTP 401" in r.stderr and "--token" in r.stderr and "EVENTCTL_PLATFORM_TOKEN" in r.stderr
    assert "authorization" not in platform.requests[0].headers
    assert count_rows(db_url, "categories") == 0


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        ((500, {"detail": "boom"}), 1, "HTTP 500"),
        ((404, {"detail": "Not Found"}), 1, "HTTP 404"),
        ((200, {"unexpected": True}), 1, "JSON array"),
        ((200, [{"name": "folk", "title": "Folk"}]), 1, "no id"),
        ((200, [{"id": FOLK, "name": "fo\u0000lk"}]), 1, "control characters"),
        ((200, {"data": [{"id": FOLK, "name": "folk", "title": "Folk"}]}), 0, "1 created"),
        ((200, {"categories": [{"id": FOLK, "name": "folk", "title": "Folk"}]}), 0, "1 created"),
    ],
    ids=["500", "404", "not a list", "without ids", "NUL", "data wrapper", "categories wrapper"],
)
def test_pull_refuses_unusable_answers_nothing_written(cli, db_url, platform, answer, code, message):
    platform.get_answer = answer
    r = cli("categories", "pull", "--api", API, "--token", TOKEN)
    assert r.exit_code == code and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert count_rows(db_url, "categories") == (1 if code == 0 else 0)


def test_pull_name_clash_with_a_stale_local_id_refused(cli, db_url, tmp_path, platform):
    cli("categories", "import", _write(tmp_path, [{"uid": UNKNOWN, "name": "folk", "title": "Folk"}]))
    platform.add("folk", id=FOLK)
    r = cli("categories", "pull", "--api", API, "--token", TOKEN)
    assert r.exit_code == 2 and UNKNOWN in r.stderr and FOLK in r.stderr and "nothing was written" in r.stderr
    assert [c["uid"] for c in cli("categories", "list", "--json").json()] == [UNKNOWN]


@pytest.mark.parametrize("api", ["ftp://platform.example", "platform.example", "https://u:p@platform.example", ""])
def test_bad_api_url_refused_before_any_request(cli_no_db, platform, api):
    r = cli_no_db("categories", "push", "-", "--api", api, "--token", TOKEN, input=json.dumps(SEED))
    assert r.exit_code == 2 and "--api" in r.stderr, r.stderr
    assert platform.requests == []


def test_push_creates_each_category_as_create_categories_py_does(cli_no_db, platform, tmp_path):
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API, "--token", TOKEN)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("Created category 'folk' (id ") and lines[1].startswith("Created category 'news'")
    assert lines[-1] == "Summary: 2 successful, 0 failed"
    assert platform.posted == SEED["categories"]  # each entry sent as written
    assert {(q.method, str(q.url), q.headers["authorization"]) for q in platform.requests} == {
        ("POST", API + "/api/v1/categories/", f"Bearer {TOKEN}")
    }
    assert platform.requests[0].headers["content-type"] == "application/json"
    assert platform.requests[0].extensions["timeout"]["read"] == 30.0
    assert not (tmp_path / "xdg-data").exists()  # push touches no database


def test_push_reports_400_detail_and_other_statuses_then_exits_1(cli_no_db, platform):
    platform.add("folk")
    platform.fail["boom"] = 500
    seed = [
        {"name": "folk", "title": "Folk"},  # 400: already there
        {"name": "boom", "title": "Boom"},  # 500
        {"name": "poetry", "title": "Poetry"},  # 201
        {"name": "untitled"},  # 422 from the platform: no title
    ]
    r = cli_no_db("categories", "push", "-", "--api", API, "--token", TOKEN, input=json.dumps(seed))
    assert r.exit_code == 1, r.stderr
    assert r.stdout.strip().splitlines() == [
        "Failed to create category 'folk': Category with this name already exists",
        "Failed to create category 'boom': HTTP 500",
        f"Created category 'poetry' (id {platform.categories[-1]['id']}).",
        "Failed to create category 'untitled': HTTP 422",
        "Summary: 1 successful, 3 failed",
    ]
    assert "Traceback" not in r.stderr


def test_push_json(cli_no_db, platform):
    platform.fail["boom"] = 503
    seed = {"categories": [{"name": "boom", "title": "B"}, {"uid": POETRY, "name": "poetry", "title": "P"}]}
    r = cli_no_db("categories", "push", "-", "--api", API, "--token", TOKEN, "--json", input=json.dumps(seed))
    assert r.exit_code == 1
    out = r.json()
    assert (out["successful"], out["failed"], out["dry_run"]) == (1, 1, False)
    assert out["results"][0] == {"name": "boom", "ok": False, "status": 503, "message": "HTTP 503", "id": None}
    # eventctl's uid is sent as the platform's id, so the platform keeps it
    assert out["results"][1]["id"] == POETRY and platform.posted[1]["id"] == POETRY


def test_push_without_token_refused_before_any_request(cli_no_db, platform, tmp_path):
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API)
    assert r.exit_code == 2
    assert "No platform token" in r.stderr and "--token" in r.stderr and "EVENTCTL_PLATFORM_TOKEN" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert platform.requests == []
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API, "--token", "bad token")
    assert r.exit_code == 2 and "bad token" not in r.stderr and platform.requests == []
    # the token is read when the command runs
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API, env={"EVENTCTL_PLATFORM_TOKEN": TOKEN})
    assert r.exit_code == 0, r.stdout + r.stderr
    assert len(platform.requests) == 2


def test_push_dry_run_sends_nothing(cli_no_db, platform, tmp_path):
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API, "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"Would POST 2 categories to {API}/api/v1/categories/:"
    assert '"name": "folk"' in r.stdout and "nothing was sent" in r.stderr and "No token" in r.stderr
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API, "--dry-run", "--token", TOKEN, "--json")
    assert r.json()["would_send"] == SEED["categories"] and r.json()["token"] is True
    assert platform.requests == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"categories": [{"title": "no name"}]}, "needs a name"),
        ([{"name": "a"}, {"name": "a"}], "twice"),
        ([{"name": "a\u0007"}], "control characters"),
        ({"other": []}, "JSON array"),
        ([{"name": "a", "id": "nope"}], "invalid uid"),
    ],
)
def test_push_bad_seed_file_refused_before_any_request(cli_no_db, platform, content, message):
    r = cli_no_db("categories", "push", "-", "--api", API, "--token", TOKEN, input=json.dumps(content))
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert platform.requests == []


def test_push_then_pull_brings_the_platform_ids_here(cli, db_url, platform, tmp_path):
    assert cli("categories", "push", _write(tmp_path, SEED), "--api", API, "--token", TOKEN).exit_code == 0
    assert cli("categories", "pull", "--api", API, "--token", TOKEN).exit_code == 0
    local = {c["name"]: c["uid"] for c in cli("categories", "list", "--json").json()}
    assert local == {c["name"]: c["id"] for c in platform.categories}
    r = cli("create", "--json", "--name", "A", "--page", "/a", "--category", "folk")
    assert r.exit_code == 0 and r.json()["filters"]["category_ids"] == [local["folk"]]


# --- the network failing --------------------------------------------------------------------------


def _refusing(monkeypatch, exc_type):
    import eventctl.categories as core

    def handler(request):
        raise exc_type("Connection refused", request=request)

    monkeypatch.setattr(core, "platform_transport", lambda: httpx.MockTransport(handler))


def test_pull_connection_error_is_one_sentence(cli, db_url, monkeypatch):
    _refusing(monkeypatch, httpx.ConnectError)
    r = cli("categories", "pull", "--api", API, "--token", TOKEN)
    assert r.exit_code == 1
    assert r.stderr.strip() == f"Error: Cannot reach the platform at {API}/api/v1/categories/ (Connection refused)."
    _refusing(monkeypatch, httpx.ReadTimeout)
    r = cli("categories", "pull", "--api", API, "--token", TOKEN)
    assert r.exit_code == 1 and "did not answer within 30 s" in r.stderr
    assert count_rows(db_url, "categories") == 0


def test_push_connection_error_fails_every_entry(cli_no_db, monkeypatch, tmp_path):
    _refusing(monkeypatch, httpx.ConnectError)
    r = cli_no_db("categories", "push", _write(tmp_path, SEED), "--api", API, "--token", TOKEN)
    assert r.exit_code == 1
    assert r.stdout.strip().splitlines() == [
        f"Failed to create category 'folk': Cannot reach the platform at {API}/api/v1/categories/ "
        "(Connection refused).",
        "Failed to create category 'news': not sent (the platform is unreachable)",
        "Summary: 0 successful, 2 failed",
    ]


def test_real_refused_connection(cli, db_url, monkeypatch, tmp_path):
    """httpx's own transport (no stand-in) against a closed port: one sentence, exit 1."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as sock:  # bound, never listening: refused, and no other server can take the port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        r = cli("categories", "pull", "--api", f"http://127.0.0.1:{port}", "--token", TOKEN)
        assert r.exit_code == 1 and r.stderr.startswith("Error: Cannot reach the platform at http://127.0.0.1:")
        assert len(r.stderr.strip().splitlines()) == 1
        seed = _write(tmp_path, SEED)
        r = cli("categories", "push", seed, "--api", f"http://127.0.0.1:{port}", "--token", TOKEN)
        assert r.exit_code == 1 and r.stdout.strip().endswith("Summary: 0 successful, 2 failed")


def test_the_cli_imports_httpx_only_when_talking_to_the_platform(tmp_path):
    code = (
        "import sys\n"
        "from eventctl.cli import app\n"
        "import eventctl.categories\n"
        "try: app(['categories', '--help'], prog_name='eventctl')\n"
        "except SystemExit: pass\n"
        "print('httpx' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


# --- renames that pass through each other's names -----------------------------------------------


def _names(cli):
    return {c["uid"]: c["name"] for c in cli("categories", "list", "--json").json()}


def test_swapping_two_names_works_and_the_dry_run_says_so(cli, db_url, tmp_path):
    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT))
    swap = _write(tmp_path, [{"id": FOLK, "name": "news"}, {"id": NEWS, "name": "folk"}], "swap.json")
    dry = cli("categories", "import", swap, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json() == {"created": 0, "updated": 2, "unchanged": 0, "dry_run": True}
    assert _names(cli) == {FOLK: "folk", NEWS: "news"}
    real = cli("categories", "import", swap, "--json")
    assert real.exit_code == 0, real.stderr
    assert real.json() == {**dry.json(), "dry_run": False}
    assert _names(cli) == {FOLK: "news", NEWS: "folk"}


def test_a_rotation_and_a_new_category_taking_a_freed_name(cli, db_url, tmp_path):
    cli("categories", "import", _write(tmp_path, [*PLATFORM_EXPORT, {"id": POETRY, "name": "poetry"}]))
    # folk → news → poetry → folk, and a new category takes nothing: every name moves at once
    rotate = [{"id": FOLK, "name": "news"}, {"id": NEWS, "name": "poetry"}, {"id": POETRY, "name": "folk"}]
    r = cli("categories", "import", _write(tmp_path, rotate, "rotate.json"), "--json")
    assert r.exit_code == 0, r.stderr
    assert _names(cli) == {FOLK: "news", NEWS: "poetry", POETRY: "folk"}
    # a rename frees "news", and a new category takes it in the same file
    freed = [{"id": FOLK, "name": "songs"}, {"id": UNKNOWN, "name": "news"}]
    dry = cli("categories", "import", _write(tmp_path, freed, "freed.json"), "--dry-run", "--json")
    assert dry.json() == {"created": 1, "updated": 1, "unchanged": 0, "dry_run": True}
    r = cli("categories", "import", _write(tmp_path, freed, "freed.json"), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == {**dry.json(), "dry_run": False}
    assert _names(cli) == {FOLK: "songs", NEWS: "poetry", POETRY: "folk", UNKNOWN: "news"}


def test_the_dry_run_makes_the_real_writes_and_undoes_them(cli, db_url, tmp_path, engine):
    """A rule only the database knows (here: an extra unique index on titles) refuses the dry run too."""
    import sqlalchemy as sa

    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE UNIQUE INDEX test_only_unique_title ON categories (title)"))
    try:
        same_title = _write(tmp_path, [{"id": FOLK, "name": "folk", "title": "News"}], "same.json")
        dry = cli("categories", "import", same_title, "--dry-run", "--json")
        real = cli("categories", "import", same_title, "--json")
        assert (dry.exit_code, real.exit_code) == (3, 3), (dry.stderr, real.stderr)
        assert dry.stdout == "" and len(dry.stderr.strip().splitlines()) == 1
        assert cli("categories", "list", "--json").json()[0]["title"] == "Folk songs"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX test_only_unique_title"))


def test_a_utf8_byte_order_mark_is_accepted_as_apply_and_http_accept_it(cli, db_url, tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(PLATFORM_EXPORT).encode())
    r = cli("categories", "import", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["created"] == 2
    r = cli("categories", "import", "-", "--json", input="\ufeff" + json.dumps(PLATFORM_EXPORT))
    assert r.exit_code == 0 and r.json()["unchanged"] == 2, r.stderr
    # only at the start: a BOM anywhere else is not JSON
    r = cli("categories", "import", "-", input=json.dumps(PLATFORM_EXPORT) + "\ufeff")
    assert r.exit_code == 2 and "not valid JSON" in r.stderr


def test_push_reads_a_seed_file_with_a_byte_order_mark(cli_no_db, platform, tmp_path):
    path = tmp_path / "seed.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"categories": [{"name": "folk", "title": "Folk"}]}).encode())
    r = cli_no_db("categories", "push", str(path), "--api", API, "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["would_send"] == [{"name": "folk", "title": "Folk"}]
