"""Every flag with invalid values → exit 2, one sentence on stderr, nothing written."""

from __future__ import annotations

import pytest

from conftest import count_rows

GOOD = ["--name", "Ok", "--page", "/bad"]

CREATE_CASES = {
    "unknown filter key": ["--filters", '{"medya_type": "audio"}'],
    "bad enum in json": ["--filters", '{"media_type": "gif"}'],
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
    "bad language": ["--language", "english"],
    "bad start": ["--start", "next tuesday"],
    "bad end": ["--end", "2026-13-01"],
    "end before start": ["--start", "2030-01-02T00:00Z", "--end", "2030-01-01T00:00Z"],
    "end equals start": ["--start", "2030-01-01T00:00Z", "--end", "2030-01-01T00:00Z"],
    "limit 0": ["--limit", "0"],
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
    "route without slash": ["--name", "A", "--page", "review/audio"],
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
    for extra in (*CREATE_CASES.values(), ["--name", ""], ["--start", "x", "--clear-start"], ["--page", "nope"]):
        r = cli("update", uid, *extra)
        _assert_refused(r)
    assert cli("show", uid, "--json").json() == before


@pytest.mark.parametrize(
    "args",
    [
        ["current", "--page", "no-slash"],
        ["current", "--page", "/x", "--at", "yesterday-ish"],
        ["current", "--page", "/x", "--at", "2026-03-29T02:30", "--tz", "Europe/Berlin"],
        ["list", "--status", "sleeping"],
        ["list", "--page", "bad route"],
        ["show", "xyz"],
        ["show", "1234"],
    ],
    ids=[
        "current bad route",
        "current bad at",
        "current dst gap",
        "list bad status",
        "list bad page",
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
