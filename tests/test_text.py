"""Text from outside (SPEC §1 Text): what is refused on input, and how stored text reaches people.

Bidirectional controls reorder what a terminal shows (U+202E turns "exe.txt" into "txt.exe"),
and the line/paragraph separators break lines in many terminals and editors: they are control
characters, refused where control characters are refused and escaped in output for people.
"""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from conftest import count_rows
from eventctl.text import check_text, excerpt, for_terminal
from test_web import auth, make_app

# every bidirectional control (Unicode's Bidi_Control property) and the two separators
UNSHOWN = {
    "ARABIC LETTER MARK": "\u061c",
    "LEFT-TO-RIGHT MARK": "\u200e",
    "RIGHT-TO-LEFT MARK": "\u200f",
    "LINE SEPARATOR": "\u2028",
    "PARAGRAPH SEPARATOR": "\u2029",
    "LEFT-TO-RIGHT EMBEDDING": "\u202a",
    "RIGHT-TO-LEFT EMBEDDING": "\u202b",
    "POP DIRECTIONAL FORMATTING": "\u202c",
    "LEFT-TO-RIGHT OVERRIDE": "\u202d",
    "RIGHT-TO-LEFT OVERRIDE": "\u202e",
    "LEFT-TO-RIGHT ISOLATE": "\u2066",
    "RIGHT-TO-LEFT ISOLATE": "\u2067",
    "FIRST STRONG ISOLATE": "\u2068",
    "POP DIRECTIONAL ISOLATE": "\u2069",
}
CHARS = pytest.mark.parametrize("char", UNSHOWN.values(), ids=UNSHOWN.keys())


def test_the_list_is_unicodes_own():
    import unicodedata

    assert all(unicodedata.name(c) == name for name, c in UNSHOWN.items())
    # every Bidi_Control character (UAX #9) is in the list; Python has no property lookup, so by class
    controls = {chr(i) for i in range(0x10000) if unicodedata.bidirectional(chr(i)) in {
        "LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"}}  # fmt: skip
    assert controls | {"\u061c", "\u200e", "\u200f"} <= set(UNSHOWN.values())


@CHARS
def test_refused_where_control_characters_are_refused(char):
    for layout in (False, True):  # a description may hold \n and \t, not these
        with pytest.raises(ValueError, match="control characters"):
            check_text(f"a{char}b", what="the name", layout=layout)


@CHARS
def test_escaped_for_people(char):
    shown = for_terminal(f"evil{char}gpj.exe")
    assert char not in shown and f"\\u{ord(char):04x}" in shown
    assert char not in excerpt(f"evil{char}")


def test_text_that_is_only_foreign_is_kept():
    for text in ("తెలుగు", "עברית", "العربية", "👩‍👩‍👧", "e\u0301"):  # scripts, ZWJ emoji, combining marks
        assert check_text(text, what="x") == text and for_terminal(text) == text


@CHARS
def test_the_cli_refuses_them_in_names_pages_and_filters(cli, db_url, char):
    for args in (
        ["--name", f"a{char}b", "--page", "/x"],
        ["--name", "A", "--page", "/x", "--description", f"a{char}b"],
        ["--name", "A", "--page", f"/x{char}y"],
        ["--name", "A", "--page", f"key{char}x"],
        ["--name", "A", "--page", "/x", "--source-label", f"a{char}b"],
        ["--name", "A", "--page", "/x", "--language", f"Te{char}lugu"],
    ):
        r = cli("create", *args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert char not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert count_rows(db_url) == 0


@CHARS
def test_categories_import_refuses_them(cli, db_url, tmp_path, char):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps([{"id": str(uuid.uuid4()), "name": f"folk{char}"}]))
    r = cli("categories", "import", str(path))
    assert r.exit_code == 2 and "control characters" in r.stderr, r.stderr
    assert count_rows(db_url, "categories") == 0


@pytest.fixture
def admin(db_url, engine):
    from datetime import UTC, datetime

    from eventctl.db import write_session
    from eventctl.tokens import create_token

    with write_session(engine) as session:
        token = create_token(session, name="t", now=datetime.now(UTC))
    with TestClient(make_app(db_url)) as client:
        yield client, auth(token)


def test_http_refuses_them_in_names_and_pages(db_url, admin):
    client, headers = admin
    for char in UNSHOWN.values():
        for body in ({"name": f"a{char}b", "page_context": "/x"}, {"name": "A", "page_context": f"/x{char}y"}):
            r = client.post("/api/v1/events/", json=body, headers=headers)
            assert r.status_code == 422, (body, r.text)
        r = client.get("/api/v1/events/current", headers={"X-Page-Route": f"/x{char}y".encode()})
        assert r.status_code == 400, r.text
    assert count_rows(db_url) == 0


def test_stored_ones_reach_people_escaped(cli, db_url, engine):
    made = cli("create", "--json", "--name", "Plain", "--page", "/t").json()
    hostile = "invoice\u202egpj.exe\u2028forged\u2066"
    with engine.begin() as conn:  # written by something other than eventctl
        conn.execute(sa.text("UPDATE events SET name = :n"), {"n": hostile})
    for args in (["show", made["uid"]], ["list"], ["current", "--page", "/t"], ["history"],
                 ["timeline", "--page", "/t"]):  # fmt: skip
        r = cli(*args, env={"COLUMNS": "200"})
        assert r.exit_code == 0, (args, r.stderr)
        for char in ("\u202e", "\u2028", "\u2066"):
            assert char not in r.stdout, (args, r.stdout)
    assert "\\u202e" in cli("show", made["uid"]).stdout
    # leading and trailing separators are whitespace, trimmed like any other
    r = cli("create", "--json", "--name", "\u2028Trimmed\u2029", "--page", "/u")
    assert r.exit_code == 0 and r.json()["name"] == "Trimmed", r.stderr
    assert cli("show", made["uid"], "--json").json()["name"] == hostile  # JSON keeps the stored value
