"""apply files as an adversary writes them: matching decided once, strict documents, bounds before work."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import count_rows
from eventctl import declarative
from eventctl.documents import MAX_NODES, load
from eventctl.errors import InvalidInput


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def snapshot(db_url: str) -> tuple[int, int, list]:
    from eventctl.db import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = sorted(
            tuple(str(v) for v in r)
            for r in conn.execute(sa.text('SELECT uid, name, page_context, "limit", is_active FROM events'))
        )
    engine.dispose()
    return count_rows(db_url, "events"), count_rows(db_url, "eventctl_audit"), rows


# ---------------------------------------------------------------- matching (two entries, one event)


def test_an_event_matched_by_uid_and_by_page_and_name_is_refused(cli, db_url, tmp_path):
    made = cli("create", "--name", "A", "--page", "/p", "--json").json()
    # entry 1 renames the event by uid; entry 2 (no uid) matches the same event by its current page and name
    doc = [{"uid": made["uid"], "name": "Renamed", "page_context": "/p"}, {"name": "A", "page_context": "/p"}]
    before = snapshot(db_url)
    for extra in ((), ("--dry-run",)):
        r = cli("apply", write(tmp_path, "f.json", json.dumps(doc)), *extra)
        assert r.exit_code == 2, r.stdout + r.stderr
        assert "Entries 1 (by uid) and 2 (by page and name) both describe event" in r.stderr, r.stderr
    assert snapshot(db_url) == before


def test_an_entry_without_uid_sharing_another_entrys_page_and_name_is_refused(cli, db_url, tmp_path):
    doc = [{"name": "A", "page_context": "/p"}, {"uid": str(uuid.uuid4()), "name": "A", "page_context": "/p"}]
    r = cli("apply", write(tmp_path, "f.json", json.dumps(doc)))
    assert r.exit_code == 2 and "entries 1 and 2" in r.stderr and "entry 1 has no uid" in r.stderr, r.stderr
    assert count_rows(db_url) == 0


def test_entries_with_uids_may_share_a_page_and_name(cli, db_url, tmp_path):
    doc = [{"uid": str(uuid.uuid4()), "name": "A", "page_context": "/p"} for _ in range(2)]
    path = write(tmp_path, "f.json", json.dumps(doc))
    assert cli("apply", path, "--allow-overlap", "--json").json()["created"] == 2
    assert cli("apply", path, "--allow-overlap", "--json").json()["unchanged"] == 2


PAGES, NAMES, UIDS = ["/a", "/b"], ["A", "B", "C"], [uuid.UUID(int=i + 1) for i in range(3)]
entry = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES), "page_context": st.sampled_from(PAGES)},
    optional={
        "uid": st.sampled_from(UIDS).map(str),
        "limit": st.integers(1, 3),
        "is_active": st.booleans(),
        "start_date": st.sampled_from(["2031-01-01T00:00:00Z", "2031-01-03T00:00:00Z"]),
    },
)
files = st.lists(entry, max_size=5)


def _run(engine, doc, *, dry_run, prune, allow_overlap):
    from eventctl.db import write_session

    entries = declarative.validate_entries(doc, source="f")
    with write_session(engine) as session:
        plan = declarative.apply(
            session, entries=entries, prune=prune, dry_run=dry_run, actor="t", allow_overlap=allow_overlap
        )
        if dry_run:
            session.rollback()
    return plan.to_json()


def _outcome(engine, doc, **kw):
    try:
        return _run(engine, doc, **kw)
    except InvalidInput as exc:  # refused: the same sentence from the dry run and the real run
        return ("refused", exc.message)
    except Exception as exc:  # noqa: BLE001 - the overlap guard (a Conflict)
        return ("refused", getattr(exc, "message", repr(exc)))


def _state(engine):
    with engine.connect() as conn:
        return sorted(
            tuple(str(v) for v in r)
            for r in conn.execute(sa.text('SELECT uid, name, page_context, "limit", is_active, start_date FROM events'))
        )


def _without_new_uids(plan):
    if isinstance(plan, tuple):
        return plan
    changes = [{**c, "uid": c["uid"] if c["action"] != "create" else None} for c in plan["changes"]]
    return {**plan, "dry_run": None, "changes": changes}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=files, doc=files, prune=st.booleans(), allow_overlap=st.booleans())
def test_generated_files_plan_as_they_run_and_apply_once(engine, initial, doc, prune, allow_overlap):
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events")
    _outcome(engine, initial, dry_run=False, prune=False, allow_overlap=True)
    before = _state(engine)
    dry = _outcome(engine, doc, dry_run=True, prune=prune, allow_overlap=allow_overlap)
    assert _state(engine) == before  # a dry run changes nothing
    real = _outcome(engine, doc, dry_run=False, prune=prune, allow_overlap=allow_overlap)
    assert _without_new_uids(dry) == _without_new_uids(real)  # the plan (or the refusal) is the run's
    if isinstance(real, tuple):
        assert _state(engine) == before  # refused: nothing changed
        return
    after = _state(engine)
    again = _outcome(engine, doc, dry_run=False, prune=prune, allow_overlap=allow_overlap)
    assert (again["created"], again["updated"], again["deleted"]) == (0, 0, 0), again
    assert _state(engine) == after
    # the database holds one event per entry, as the entry says
    assert again["unchanged"] == len(doc) and len({c["uid"] for c in again["changes"]}) == len(doc)


# ---------------------------------------------------------------- strict documents


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: !!binary G1sySg==\n  page_context: /p\n", "YAML tag '!!binary'"),  # ESC [ 2 J as bytes
        ("- name: A\n  page_context: !!binary L3Agcw==\n", "YAML tag '!!binary'"),  # "/p s"
        ("- name: !!set {a, b}\n  page_context: /p\n", "YAML tag '!!set'"),
        ("- name: !custom x\n  page_context: /p\n", "YAML tag '!custom'"),
        ("- name: !!timestamp 2030-01-01\n  page_context: /p\n", "YAML tag '!!timestamp'"),
        ("- name: A\n  page_context: /p\n  is_active: false\n  is_active: true\n", "key 'is_active' is given twice"),
        ("- name: A\n  page_context: /p\n  filters: {lock: true, lock: false}\n", "key 'lock' is given twice"),
        ('[{"name": "A", "page_context": "/p", "is_active": false, "is_active": true}]', "key 'is_active' twice"),
        ('[{"name": "A", "page_context": "/p", "filters": {"lock": true, "lock": false}}]', "key 'lock' twice"),
        ('[{"name": "A", "page_context": "/p", "limit": NaN}]', "not valid JSON"),
        ('[{"name": "A", "page_context": "/p", "limit": 1e999}]', "out of range"),
        ("- name: 12\n  page_context: /p\n", "valid string"),
        ("- name: A\n  page_context: 7\n", "valid string"),
        ("- &a [*a]\n", "contains it"),
    ],
)
def test_only_plain_types_and_single_keys_are_read(cli, db_url, tmp_path, text, message):
    r = cli("apply", write(tmp_path, "f.yaml" if not text.startswith("[") else "f.json", text))
    assert r.exit_code == 2, r.stdout + r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert count_rows(db_url) == 0


def test_filters_json_with_a_duplicate_key_is_refused(cli, db_url):
    r = cli("create", "--name", "A", "--page", "/p", "--filters", '{"lock": true, "lock": false}')
    assert r.exit_code == 2 and "'lock' twice" in r.stderr, r.stderr
    assert count_rows(db_url) == 0


@pytest.mark.parametrize("suffix", [".json", ".txt"])
def test_json_is_read_as_json(cli, db_url, tmp_path, suffix):
    doc = [{"name": "Emoji \U0001f600 \uffff", "page_context": "/p", "description": "tab\tand newline\n"}]
    text = json.dumps(doc, indent="\t")  # surrogate-pair escapes and tab indentation, as json.dumps writes them
    assert "\\ud83d\\ude00" in text and "\t{" in text
    r = cli("apply", write(tmp_path, "f" + suffix, text), "--json")
    assert r.exit_code == 0, r.stderr
    shown = cli("list", "--json").json()[0]
    assert shown["name"] == "Emoji \U0001f600 \uffff"
    # export --format json reads back as the same event
    exported = write(tmp_path, "export" + suffix, cli("export", "--format", "json").stdout)
    assert cli("apply", exported, "--json").json()["unchanged"] == 1


def test_a_bom_is_accepted(cli, db_url, tmp_path):
    for name, text in (
        ("f.yaml", "- name: A\n  page_context: /p\n"),
        ("g.json", '[{"name": "B", "page_context": "/q"}]'),
    ):
        r = cli("apply", write(tmp_path, name, b"\xef\xbb\xbf" + text.encode()))
        assert r.exit_code == 0, r.stderr
    assert count_rows(db_url) == 2


# ---------------------------------------------------------------- bounds before work


def _bomb(depth: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join(lines) + f"\nevents:\n- name: A\n  page_context: /p\n  uid: *a{depth}\n"


@pytest.mark.parametrize("depth", [8, 9, 20])
def test_an_alias_bomb_is_refused_before_it_expands(depth):
    text = _bomb(depth)
    assert len(text) < 2000
    with pytest.raises(InvalidInput, match="aliases counted"):
        load(text, source="f")


def test_depth_is_bounded_through_aliases_met_before():
    """Anchors each wrapping the previous one a little deeper, then used in reverse order: every node
    is counted once, and its depth where it is met again still counts."""

    def wrap(value: str, n: int) -> str:
        for _ in range(n):
            value = f"[{value}]"
        return value

    items = ["- &a0 " + wrap("x", 28)] + [f"- &a{i} " + wrap(f"*a{i - 1}", 28) for i in range(1, 40)]
    items += [f"- *a{i}" for i in reversed(range(40))]
    with pytest.raises(InvalidInput, match="levels deep"):
        load("\n".join(items) + "\n", source="f")


def test_aliases_within_the_bound_are_read():
    data = load("base: &b {lock: true}\nevents:\n- {name: A, page_context: /p, filters: *b}\n", source="f")
    assert data["events"][0]["filters"] == {"lock": True}
    assert MAX_NODES >= 2_500_000  # room for 100,000 events of ~25 values


def test_aliases_cannot_multiply_filters_past_their_bound(cli, db_url, tmp_path):
    langs = ", ".join(f"l{i:04d}" for i in range(600))
    text = f"x: &l [{langs}]\ny: &m [*l, *l, *l, *l, *l, *l, *l, *l]\nevents:\n- name: A\n  page_context: /p\n"
    text += "  filters: {language: *l, model_name: m}\n"
    assert cli("apply", write(tmp_path, "ok.yaml", text)).exit_code == 2  # a nested list is no language
    big = ", ".join(f"language-number-{i:05d}-{'x' * 70}" for i in range(800))  # ~80 KB serialized
    r = cli("apply", write(tmp_path, "big.yaml", f"- name: A\n  page_context: /p\n  filters: {{language: [{big}]}}\n"))
    assert r.exit_code == 2 and "at most 64 KiB" in r.stderr, r.stderr
    assert count_rows(db_url) == 0


def test_filters_are_bounded_on_every_input_path(cli, db_url, tmp_path):
    big = {"language": [f"language-number-{i:05d}-{'x' * 70}" for i in range(800)]}
    r = cli("create", "--name", "A", "--page", "/p", "--filters", "@" + write(tmp_path, "f.json", json.dumps(big)))
    assert r.exit_code == 2, r.stderr  # the file is over the --filters size bound
    flags = [a for lang in big["language"] for a in ("--language", lang)]
    r = cli("create", "--name", "A", "--page", "/p", *flags)
    assert r.exit_code == 2 and "at most 64 KiB" in r.stderr, r.stderr
    assert count_rows(db_url) == 0


def test_a_deep_json_document_is_refused(cli, db_url, tmp_path):
    for text in ("[" * 100 + "]" * 100, "[" * 100_000 + "]" * 100_000):
        r = cli("apply", write(tmp_path, "deep.json", text))
        assert r.exit_code == 2 and "levels deep" in r.stderr, r.stderr


# ---------------------------------------------------------------- export -> apply -> export


def test_export_apply_export_is_byte_identical_and_keeps_an_allowed_overlap(cli, db_url, tmp_path, backend, request):
    from conftest import make_cli

    runs = [
        ("create", "--name", "B", "--page", "/p", "--start", "2031-01-02T00:00Z", "--end", "2031-01-05T00:00Z"),
        ("create", "--name", "A", "--page", "/p", "--start", "2031-01-01T00:00Z", "--end", "2031-01-03T00:00Z",
         "--allow-overlap"),
        ("create", "--name", "Z", "--page", "/p", "--inactive"),  # no start: first among /p
        ("create", "--name", "C", "--page", "/a", "--default"),
    ]  # fmt: skip
    for args in runs:
        assert cli(*args).exit_code == 0
    first = cli("export").stdout
    assert first.count("allow_overlap: true") == 2, first  # A and B overlap (Z is inactive)
    names = [line.split(": ", 1)[1] for line in first.splitlines() if line.startswith("  name: ")]
    assert names == ["C", "Z", "A", "B"]  # page, then start (none first), then name
    for fmt in ("yaml", "json"):
        path = tmp_path / f"export.{fmt}"
        path.write_text(cli("export", "--format", fmt).stdout)
        other = make_cli(_fresh_url(backend, request, tmp_path / fmt))
        r = other("apply", str(path))  # no --allow-overlap: the file says where it is meant
        assert r.exit_code == 0, r.stderr
        assert other("export", "--format", fmt).stdout == path.read_text()


def _fresh_url(backend, request, where):
    import shutil

    if backend == "sqlite":
        where.mkdir()
        shutil.copyfile(request.getfixturevalue("sqlite_template"), where / "e.db")
        return f"sqlite:///{where / 'e.db'}"
    from eventctl import migrate
    from eventctl.db import make_engine

    url = request.getfixturevalue("pg_server").create()
    engine = make_engine(url)
    migrate.upgrade(engine, "head")
    engine.dispose()
    return url


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_allow_overlap_in_a_file_is_a_boolean(cli, db_url, tmp_path, value):
    doc = [{"name": "A", "page_context": "/p", "allow_overlap": value}]
    r = cli("apply", write(tmp_path, "f.json", json.dumps(doc)))
    assert r.exit_code == 2 and "allow_overlap must be true or false" in r.stderr, r.stderr


def test_an_entry_without_allow_overlap_is_still_guarded(cli, db_url, tmp_path):
    doc = [
        {"name": "A", "page_context": "/p", "allow_overlap": True},
        {"name": "B", "page_context": "/p"},
    ]
    r = cli("apply", write(tmp_path, "f.json", json.dumps(doc)))
    assert r.exit_code == 3 and "Entry 2 ('B')" in r.stderr and "entry 1 ('A')" in r.stderr, r.stderr
    assert count_rows(db_url) == 0
