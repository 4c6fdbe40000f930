"""categories import / list and the known-category rule (SPEC §6), on both databases."""

from __future__ import annotations

import json

import pytest

from conftest import count_rows

FOLK = "0b7a6b0e-3c1a-4c55-9d22-123456789abc"
NEWS = "5f0c2a9d-0000-4000-8000-00000000000b"
UNKNOWN = "11111111-1111-4111-8111-111111111111"
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


def test_own_shape_update_by_uid_then_name_and_stdin(cli, db_url, tmp_path):
    cli("categories", "import", _write(tmp_path, PLATFORM_EXPORT))
    own = [
        {"uid": FOLK, "name": "folk", "title": "Folk and ballads"},  # by uid: updated
        {"name": "news", "title": "News", "description": None},  # by name: unchanged
        {"name": "poetry", "title": "Poetry"},  # new, uid generated
    ]
    r = cli("categories", "import", "-", "--json", input=json.dumps(own))
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"created": 1, "updated": 1, "unchanged": 1, "dry_run": False}
    names = {c["name"]: c for c in cli("categories", "list", "--json").json()}
    assert names["folk"]["title"] == "Folk and ballads" and names["news"]["uid"] == NEWS
    assert count_rows(db_url, "categories") == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"name": "x"}', "JSON array"),
        ('[{"id": "' + FOLK + '", "name": "a"}, {"id": "' + NEWS + '", "name": "a"}]', "twice"),
        ('[{"id": "' + FOLK + '", "name": "a"}, {"id": "' + FOLK + '", "name": "b"}]', "twice"),
        ('[{"id": "nope", "name": "a"}]', "invalid uid"),
        ('[{"id": "' + FOLK + '"}]', "name"),
        ('[{"name": "a", "title": 5}]', "title"),
        ("[1]", "not a JSON object"),
    ],
    ids=["malformed", "not array", "dup names", "dup uids", "bad uid", "no name", "bad title", "not object"],
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
