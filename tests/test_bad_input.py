"""Every flag with invalid values → exit 2, one sentence on stderr, nothing written."""

from __future__ import annotations

import pytest

from conftest import count_rows

GOOD = ["--name", "Ok", "--page", "/bad"]

CREATE_CASES = {
    "unknown filter key": ["--filters", '{"medya_type": ["audio"]}'],
    "bad enum in json": ["--filters", '{"media_type": ["gif"]}'],
    "scalar media_type in json": ["--filters", '{"media_type": "audio"}'],
    "scalar language in json": ["--filters", '{"language": "Telugu"}'],
    "string for a boolean": ["--filters", '{"lock": "yes"}'],
    "number for a boolean": ["--filters", '{"extration": 1}'],
    "old release rights": ["--filters", '{"release_rights": "family_or_friend"}'],
    "bad version": ["--version", "newest"],
    "long source label": ["--source-label", "s" * 201],
    "long model name": ["--model-name", "m" * 101],
    "control char in source label": ["--source-label", "a\x1b[2Jb"],
    "blank language": ["--language", "  "],
    "nul in language": ["--filters", '{"language": ["Te\\u0000lugu"]}'],
    "bad enum flag": ["--media-type", "gif"],
    "bad release rights": ["--release-rights", "stolen"],
    "bad extraction": ["--extraction-type", "magic"],
    "bad uuid": ["--category", "not-a-uuid"],
    "bad uuid in json": ["--filters", '{"category_ids": ["123"]}'],
    "category ids not a list": ["--filters", '{"category_ids": "x"}'],
    "filters not an object": ["--filters", '["media_type"]'],
    "malformed json": ["--filters", '{"media_type": '],
    "missing filters file": ["--filters", "@/nonexistent/filters.json"],
    "bad published date": ["--published-date", "2026-02-30"],
    "datetime as published date": ["--published-date", "2026-02-01T10:00"],
    "number as language": ["--filters", '{"language": [5]}'],
    "bad start": ["--start", "next tuesday"],
    "bad end": ["--end", "2026-13-01"],
    "end before start": ["--start", "2030-01-02T00:00Z", "--end", "2030-01-01T00:00Z"],
    "end equals start": ["--start", "2030-01-01T00:00Z", "--end", "2030-01-01T00:00Z"],
    "limit 0": ["--limit", "0"],
    "limit 101": ["--limit", "101"],
    "limit 501": ["--limit", "501"],
    "limit not a number": ["--limit", "ten"],
    "dst gap": ["--start", "2026-03-08T02:30", "--tz", "America/New_York"],
    "dst fold": ["--start", "2026-11-01T01:30", "--tz", "America/New_York"],
    "unknown zone": ["--start", "2030-01-01T09:00", "--tz", "Mars/Olympus"],
    "long description": ["--description", "x" * 2001],
}


@pytest.mark.parametrize("extra", CREATE_CASES.values(), ids=CREATE_CASES.keys())
def test_create_bad_input(cli, db_url, extra):
    before = count_rows(db_url)
    r = cli("create", *GOOD, *extra)
    _assert_refused(r)
    assert count_rows(db_url) == before


BAD_CORE = {
    "blank name": ["--name", "   ", "--page", "/x"],
    "long name": ["--name", "n" * 201, "--page", "/x"],
    "key with slash inside": ["--name", "A", "--page", "review/audio"],
    "key with space": ["--name", "A", "--page", "doc digitization"],
    "route with bad escape": ["--name", "A", "--page", "/review/%zz"],
    "route with non-utf8 escape": ["--name", "A", "--page", "/review/%ff"],
    "name with escape sequence": ["--name", "A\x1b]0;pwned\x07", "--page", "/x"],
    "name with newline": ["--name", "line1\nline2", "--page", "/x"],
    "description with nul": ["--name", "A", "--page", "/x", "--description", "a\x00b"],
    "start before year 1 in zone": [
        "--name",
        "A",
        "--page",
        "/x",
        "--start",
        "0001-01-01T00:00",
        "--tz",
        "Asia/Kolkata",
    ],
    "end past year 9999 in zone": [
        "--name",
        "A",
        "--page",
        "/x",
        "--end",
        "9999-12-31T23:59",
        "--tz",
        "America/New_York",
    ],
    "huge relative start": ["--name", "A", "--page", "/x", "--start", "+999999999w"],
    "route with space": ["--name", "A", "--page", "/review audio"],
    "route with control char": ["--name", "A", "--page", "/review\x07audio"],
    "route too long": ["--name", "A", "--page", "/" + "a" * 255],
    "blank route": ["--name", "A", "--page", "  "],
}


@pytest.mark.parametrize("args", BAD_CORE.values(), ids=BAD_CORE.keys())
def test_create_bad_core_fields(cli, db_url, args):
    r = cli("create", *args)
    _assert_refused(r)
    assert count_rows(db_url) == 0


def test_update_bad_input_changes_nothing(cli, db_url):
    r = cli("create", "--json", *GOOD, "--media-type", "audio")
    uid = r.json()["uid"]
    before = cli("show", uid, "--json").json()
    for extra in (*CREATE_CASES.values(), ["--name", ""], ["--start", "x", "--clear-start"], ["--page", "no pe"]):
        r = cli("update", uid, *extra)
        _assert_refused(r)
    assert cli("show", uid, "--json").json() == before


@pytest.mark.parametrize(
    "args",
    [
        ["current", "--page", "no slash"],
        ["current", "--page", "/x", "--at", "yesterday-ish"],
        ["current", "--page", "/x", "--at", "2026-03-29T02:30", "--tz", "Europe/Berlin"],
        ["list", "--status", "sleeping"],
        ["list", "--page", "bad route"],
        ["list", "--status", "\x1b[31mred"],
        ["show", "xyz"],
        ["show", "1234"],
    ],
    ids=[
        "current bad route",
        "current bad at",
        "current dst gap",
        "list bad status",
        "list bad page",
        "list escape in status",
        "show bad uid",
        "show short prefix",
    ],
)
def test_read_commands_bad_input(cli, args):
    _assert_refused(cli(*args))


def _assert_refused(r):
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert r.stdout == ""
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: ") and lines[0].endswith("."), r.stderr
    assert "Traceback" not in r.stderr


def test_bad_setting_in_environment_refuses_every_command(cli):
    """A bad EVENTCTL_* value stops each command at start, exit 2, naming the variable."""
    cases = {
        "EVENTCTL_TZ": "Mars/Olympus",
        "EVENTCTL_RETENTION": "abc",
        "EVENTCTL_PORT": "eighty",
        "EVENTCTL_WORKERS": "0",
        "EVENTCTL_POLL_INTERVAL": "nan",
        "EVENTCTL_CORS_ORIGINS": "not an origin",
        "EVENTCTL_METRICS_PUBLIC": "maybe",
    }
    commands = [["list"], ["current", "--page", "/x"], ["schema", "filters"], ["db", "current"], ["token", "list"]]
    for var, value in cases.items():
        for command in commands:
            r = cli(*command, env={var: value})
            assert r.exit_code == 2, (var, command, r.stderr)
            assert var in r.stderr and r.stdout == "", (var, command, r.stderr)


def test_flag_names_itself_in_its_error(cli):
    r = cli("cleanup", "--older-than", "abc", "--skip-events")
    assert r.exit_code == 2 and "--older-than" in r.stderr, r.stderr
    r = cli("cleanup", "--older-than", "999999999w", "--skip-events")
    assert r.exit_code == 2 and "range" in r.stderr, r.stderr
    r = cli("list", "--status", "live", env={"EVENTCTL_RETENTION": "2w"})
    assert r.exit_code == 0, r.stderr


def test_create_by_that_is_not_text_is_refused(cli, db_url):
    r = cli("create", *GOOD, "--created-by", "ad\udcffmin")
    _assert_refused(r)
    assert count_rows(db_url) == 0


def test_unknown_database_driver_is_usage_error_and_creates_nothing(tmp_path):
    from conftest import make_cli

    for url in (f"sqlite+nodriver:///{tmp_path / 'x.db'}", "postgresql+nodriver://x@localhost/db"):
        r = make_cli(url)("list")
        assert r.exit_code == 2, (url, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_long_name_is_counted_in_characters(cli, db_url):
    r = cli("create", "--name", "n" * 201, "--page", "/x")
    _assert_refused(r)
    assert "at most 200 characters" in r.stderr and "items" not in r.stderr, r.stderr
    r = cli("create", "--name", "x", "--page", "/x", "--description", "d" * 2001)
    assert "at most 2000 characters" in r.stderr, r.stderr


def test_an_empty_file_name_is_refused_in_one_clear_sentence(cli, db_url):
    for argv in (["apply", ""], ["apply", "  "], ["categories", "import", ""],
                 ["create", "--name", "x", "--page", "/x", "--filters", "@"]):  # fmt: skip
        r = cli(*argv)
        _assert_refused(r)
        assert "directory" not in r.stderr and "file name" in r.stderr, (argv, r.stderr)
    assert count_rows(db_url) == 0
