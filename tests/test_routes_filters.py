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
    ],
)
def test_normalize(raw, expected):
    assert normalize_route(raw) == expected


@pytest.mark.parametrize("raw", ["review", "http://x/y", "/a b", "/a\tb", "/a\x00", "/a\x7f", "/" + "x" * 255])
def test_malformed_routes(raw):
    with pytest.raises(MalformedRoute):
        normalize_route(raw)


@given(st.text(alphabet=st.sampled_from("/abcAB-_.?#"), max_size=60))
def test_normalization_is_idempotent(raw):
    try:
        once = normalize_route(raw)
    except MalformedRoute:
        return
    assert normalize_route(once) == once
    if once is not None:
        assert once.startswith("/") and "//" not in once and (once == "/" or not once.endswith("/"))


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
filters_strategy = st.fixed_dictionaries(
    {},
    optional={
        "category_ids": st.lists(uuids, max_size=5),
        "media_type": st.sampled_from(["text", "audio", "video", "image"]),
        "release_rights": st.sampled_from(["creator", "family_or_friend", "downloaded"]),
        "extraction_type": st.sampled_from(["manual", "ocr", "asr"]),
        "published_date": st.dates().map(lambda d: d.isoformat()),
        "language": st.sampled_from(["te", "en", "hin"]),
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
        {"mediatype": "audio"},
        {"media_type": "AUDIO"},
        {"category_ids": ["x"]},
        {"published_date": "01/02/2026"},
        {"language": "e"},
        {"language": 5},
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
    assert set(schema["properties"]) == {
        "category_ids",
        "media_type",
        "release_rights",
        "extraction_type",
        "published_date",
        "language",
    }
