"""Route normalization and RecordReviewFilters (SPEC §1)."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from eventctl.errors import InvalidInput, MalformedRoute
from eventctl.filters import RecordReviewFilters, filters_json_schema, parse_filters
from eventctl.routes import normalize_route


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("/", "/"),
        ("//", "/"),
        ("/?q=1", "/"),
        ("/review/audio", "/review/audio"),
        ("  /review/audio/  ", "/review/audio"),
        ("/review//audio///", "/review/audio"),
        ("/review/audio?x=1#frag", "/review/audio"),
        ("/review/audio#frag?x", "/review/audio"),
        ("/Review/Audio", "/Review/Audio"),
        ("doc_digitization", "doc_digitization"),
        ("  Doc-Review.v2:main  ", "Doc-Review.v2:main"),
        ("/review/%E0%B0%A4%E0%B1%86%E0%B0%B2%E0%B1%81%E0%B0%97%E0%B1%81", "/review/తెలుగు"),
        ("/review/తెలుగు/", "/review/తెలుగు"),
        (b"/review/\xe0\xb0\xa4\xe0\xb1\x86\xe0\xb0\xb2\xe0\xb1\x81\xe0\xb0\x97\xe0\xb1\x81", "/review/తెలుగు"),
        ("/a%2Fb", "/a/b"),
        ("/a%41", "/aA"),
    ],
)
def test_normalize(raw, expected):
    assert normalize_route(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "review/audio",
        "http://x/y",
        "/a b",
        "/a\tb",
        "/a\x00",
        "/a\x7f",
        "/" + "x" * 255,
        "k" * 256,
        "doc digitization",
        "doc\x1b",
        "/a%zz",
        "/a%4",
        "/a%ff",
        "/a%C3",
        "/a%20b",
        "/a%00",
        "/a%2525",
        "/a%3Fb",
        b"/a\xff",
        b"\xc3",
        "/a\ud800",
        "k\ud800",
    ],
)
def test_malformed_routes(raw):
    with pytest.raises(MalformedRoute):
        normalize_route(raw)


@given(st.text(alphabet=st.sampled_from("/abcAB-_.?#%2F3తె :\x00"), max_size=60))
def test_normalization_is_idempotent(raw):
    try:
        once = normalize_route(raw)
    except MalformedRoute:
        return
    assert normalize_route(once) == once
    if once is not None and once.startswith("/"):
        assert "//" not in once and (once == "/" or not once.endswith("/"))


@given(st.text(min_size=1, max_size=40).filter(lambda t: t == t.strip() and not set(t) & set("/%?#")))
def test_percent_encoded_and_raw_utf8_are_the_same_page(segment):
    from urllib.parse import quote

    try:
        raw = normalize_route("/review/" + segment)
    except MalformedRoute:
        return
    assert normalize_route(quote("/review/" + segment, safe="/")) == raw
    assert normalize_route(("/review/" + segment).encode("utf-8")) == raw


@given(
    st.one_of(
        st.text(max_size=80),
        st.from_regex(r"/[ -~]{0,40}", fullmatch=True),
        st.text(alphabet="/ab?#\n\t .", max_size=20),
    )
)
@example("/a?x\ny")
@example("/a b")
@example(" /a/ ")
def test_openapi_route_pattern_matches_the_normalizer(raw):
    import re

    from eventctl.routes import ROUTE_PATTERN

    try:
        normalize_route(raw)
        accepted = True
    except MalformedRoute:
        accepted = False
    if len(raw) <= 255 and re.match(ROUTE_PATTERN, raw):
        assert accepted, raw


uuids = st.uuids().map(str)
plain_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30).map(str.strip)
filters_strategy = st.fixed_dictionaries(
    {},
    optional={
        "language": st.lists(plain_text.filter(bool), max_size=3),
        "media_type": st.lists(st.sampled_from(["text", "audio", "video", "image", "document"]), max_size=5),
        "category_ids": st.lists(uuids, max_size=5),
        "source_label": plain_text,
        "release_rights": st.sampled_from(["creator", "others", "downloaded", "NA"]),
        "published_date": st.dates().map(lambda d: d.isoformat()),
        "is_fully_proofread": st.booleans(),
        "is_fully_validated": st.booleans(),
        "extraction_type": st.sampled_from(["ocr", "asr", "caption", "manual"]),
        "model_name": plain_text,
        "version": st.sampled_from(["initial", "latest"]),
        "lock": st.booleans(),
        "extration": st.booleans(),
    },
)


@given(filters_strategy)
def test_filters_round_trip_is_exact_and_json_safe(data):
    out = parse_filters(data).to_json()
    expected = dict(data)
    if "category_ids" in expected:
        expected["category_ids"] = list(dict.fromkeys(expected["category_ids"]))
    assert out == expected
    assert json.loads(json.dumps(out)) == out
    assert parse_filters(out).to_json() == out


def test_unset_keys_omitted_and_types():
    f = parse_filters({"category_ids": [str(uuid.UUID(int=1))], "published_date": "2026-01-02", "media_type": None})
    assert f.to_json() == {"category_ids": ["00000000-0000-0000-0000-000000000001"], "published_date": "2026-01-02"}
    assert RecordReviewFilters().to_json() == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"mediatype": ["audio"]},
        {"extraction": True},  # the platform spells it "extration"
        {"media_type": ["AUDIO"]},
        {"media_type": "audio"},
        {"language": "Telugu"},
        {"language": [5]},
        {"language": [""]},
        {"category_ids": ["x"]},
        {"category_ids": "00000000-0000-0000-0000-000000000001"},
        {"published_date": "01/02/2026"},
        {"published_date": 20260102},
        {"release_rights": "family_or_friend"},
        {"version": "v2"},
        {"lock": "yes"},
        {"lock": 1},
        {"is_fully_proofread": "true"},
        {"extration": None, "model_name": "m" * 101},
        {"source_label": "s" * 201},
        {"source_label": 5},
        {"model_name": "a\x00b"},
        [1],
        "audio",
    ],
)
def test_filters_rejected(bad):
    with pytest.raises(InvalidInput):
        parse_filters(bad)


def test_schema_command_prints_json_schema():
    from conftest import make_cli

    r = make_cli(None)("schema", "filters")
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert schema == filters_json_schema()
    assert schema["additionalProperties"] is False
    # the platform's RecordReviewFilters, key for key
    assert list(schema["properties"]) == [
        "language",
        "media_type",
        "category_ids",
        "source_label",
        "release_rights",
        "published_date",
        "is_fully_proofread",
        "is_fully_validated",
        "extraction_type",
        "model_name",
        "version",
        "lock",
        "extration",
    ]
    defs = schema["$defs"]
    assert defs["MediaType"]["enum"] == ["text", "audio", "video", "image", "document"]
    assert defs["ReleaseRights"]["enum"] == ["creator", "others", "downloaded", "NA"]
    assert defs["ExtractionType"]["enum"] == ["ocr", "asr", "caption", "manual"]
    assert schema["properties"]["language"]["anyOf"][0]["type"] == "array"
    assert schema["properties"]["media_type"]["anyOf"][0]["type"] == "array"


def test_languages_are_trimmed_and_order_kept():
    f = parse_filters({"language": [" Telugu ", "Hindi"], "category_ids": [str(uuid.UUID(int=2))] * 2})
    assert f.to_json() == {"language": ["Telugu", "Hindi"], "category_ids": [str(uuid.UUID(int=2))]}
