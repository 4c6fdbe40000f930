"""A held page and its answers: what one page of the cache is, in bytes, and how an answer is encoded.

A page is one bytes object (``HEAD``: when it was loaded, the change counter it read,
its answer now; then its events' windows and bodies, deflated past ``PLAIN_PAGES``
held pages). ``HeldEvent`` is the unpacked form the core's rules read; ``Answer`` is a
status, body and headers made once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventctl.errors import EventctlError
from eventctl.web.errors import JSON_TYPE, RawHeaders, dumps, render_error

# loaded_at, until, stamp (the change counter the load read), etag (quoted), body offset, body size, kind
HEAD = struct.Struct("<ddq34sIIB")
_COUNT = struct.Struct("<I?")  # events, bodies deflated
_EVENT = struct.Struct("<qqBI")  # start, end (µs since the epoch; _NONE: none), flags, body size
_NONE = -(2**63)
_ACTIVE, _DEFAULT = 1, 2
# the answer: an event's body deflated, as is, null, or OTHER: computed on the slow path (conflict, not yet computed)
# BROKEN: a row of the page is not a readable event (changed by hand): 503 until reloaded
KIND_EVENT, KIND_PLAIN, KIND_NULL, KIND_OTHER, KIND_BROKEN = 0, 1, 2, 3, 4
# while the cache holds fewer pages than this, bodies are held as they are (no inflating per
# request: a few thousand pages cost a few MB); past it, deflated
PLAIN_PAGES = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WBITS = -11  # raw deflate, 2 KiB window (the dictionary and a body): 0.7 µs to inflate, 32 KiB took 1.2


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """One held event, unpacked: the fields the core's rules read (``status_at``,
    ``pick_current``, ``next_boundary``) and its answer while live, encoded."""

    uid: str
    is_active: bool
    is_default: bool
    start_date: datetime | None
    end_date: datetime | None
    body: bytes  # the /current answer while the event is live

    @classmethod
    def of(cls, row: Any) -> HeldEvent:
        from eventctl.models import event_to_json
        from eventctl.timeparse import as_utc

        doc = event_to_json(row, None)
        doc["status"] = "live"  # it is only ever answered while live
        start, end = as_utc(row.start_date), as_utc(row.end_date)
        return cls(str(row.uid), bool(row.is_active), bool(row.is_default), start, end, dumps(doc))


def etag_of(body: bytes) -> bytes:
    """A strong ETag: the body's hash (quoted), 34 bytes (HEAD keeps it as is)."""
    return b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'


NULL_ETAG = etag_of(b"null")


def _micros(value: datetime | None) -> int:
    if value is None:
        return _NONE
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds  # exact, any year


def _datetime(micros: int) -> datetime | None:
    return None if micros == _NONE else _EPOCH + timedelta(microseconds=micros)


class Deflater:
    """Raw deflate against a preset dictionary: an answer's field names and this year's dates.

    An answer of ~400 bytes is held in ~120; inflating it again takes about a microsecond (zlib).
    """

    def __init__(self, now: datetime) -> None:
        from eventctl.filters import FILTER_KEYS
        from eventctl.timeparse import isoformat

        stamp = isoformat(now)
        template = {
            "uid": "", "name": "", "description": None, "page_context": "/",
            "filters": dict.fromkeys(FILTER_KEYS, ""), "limit": 20, "is_active": True, "is_default": False,
            "start_date": stamp, "end_date": stamp, "created_by": "", "created_at": stamp, "updated_at": stamp,
            "status": "live",
        }  # fmt: skip
        self.zdict = dumps(template)

    def deflate(self, body: bytes) -> bytes:
        packer = zlib.compressobj(6, zlib.DEFLATED, _WBITS, 8, zlib.Z_DEFAULT_STRATEGY, self.zdict)
        return packer.compress(body) + packer.flush()

    def inflate(self, data: bytes) -> bytes:
        return zlib.decompressobj(_WBITS, self.zdict).decompress(data)


def pack_events(events: list[HeldEvent], deflater: Deflater, deflate: bool = True) -> bytes:
    """A page's events, packed (the part of a held page after HEAD)."""
    bodies = [deflater.deflate(e.body) for e in events] if deflate else [e.body for e in events]
    parts = [_COUNT.pack(len(events), deflate)]
    for event, body in zip(events, bodies, strict=True):
        flags = (_ACTIVE if event.is_active else 0) | (_DEFAULT if event.is_default else 0)
        parts.append(_EVENT.pack(_micros(event.start_date), _micros(event.end_date), flags, len(body)))
    return b"".join(parts + bodies)


def _body_offsets(record: bytes) -> tuple[int, list[tuple[int, int, int, int]], bool]:
    """Where the bodies start, each event's packed fields, and whether the bodies are deflated."""
    count, deflated = _COUNT.unpack_from(record, HEAD.size)
    at = HEAD.size + _COUNT.size
    fields = [_EVENT.unpack_from(record, at + i * _EVENT.size) for i in range(count)]
    return at + count * _EVENT.size, fields, deflated


def unpack_events(record: bytes, deflater: Deflater) -> list[HeldEvent]:
    offset, fields, deflated = _body_offsets(record)
    events = []
    for start, end, flags, size in fields:
        body = record[offset : offset + size]
        if deflated:
            body = deflater.inflate(body)
        offset += size
        active, default = bool(flags & _ACTIVE), bool(flags & _DEFAULT)
        events.append(HeldEvent(json.loads(body)["uid"], active, default, _datetime(start), _datetime(end), body))
    return events


def make_record(loaded_at: float, stamp: int, events: bytes | None) -> bytes:
    """A page as loaded (its answer is computed at its first request), stamped with the change
    counter its load read; ``events`` None: a page whose rows could not all be read (answers 503)."""
    if events is None:
        return HEAD.pack(loaded_at, math.inf, stamp, b"", 0, 0, KIND_BROKEN) + _COUNT.pack(0, False)
    return HEAD.pack(loaded_at, -math.inf, stamp, b"", 0, 0, KIND_OTHER) + events


def stamp_of(record: bytes) -> int:
    return int(HEAD.unpack_from(record)[2])


def loaded_at_of(record: bytes) -> float:
    return float(HEAD.unpack_from(record)[0])


def with_answer(record: bytes, until: float, answer: Answer, event: HeldEvent | None, events: list[HeldEvent]) -> bytes:
    """The record keeping ``answer`` (null or ``event``'s body, in place) until ``until``."""
    loaded_at, _until, stamp, *_ = HEAD.unpack_from(record)
    if event is None:
        head = (NULL_ETAG, 0, 0, KIND_NULL)
    else:
        offset, fields, deflated = _body_offsets(record)
        index = events.index(event)
        offset += sum(size for *_, size in fields[:index])
        head = (answer.etag or b"", offset, fields[index][3], KIND_EVENT if deflated else KIND_PLAIN)
    return HEAD.pack(loaded_at, until, stamp, *head) + record[HEAD.size :]


def answer_at(
    record: bytes, route: str, now: float, complete_until: float, deflater: Deflater
) -> tuple[Answer, bytes | None]:
    """The page's answer at ``now`` by the core's rules (``resolve_in_memory``), valid until its
    next boundary, and the record keeping it (None: a conflict, computed again each time)."""
    from eventctl.errors import Conflict
    from eventctl.events import next_boundary, resolve_in_memory

    events = unpack_events(record, deflater)
    at = datetime.fromtimestamp(now, UTC)
    boundary = next_boundary(events, at=at)
    until = min(boundary.timestamp(), complete_until) if boundary is not None else complete_until
    try:
        event = resolve_in_memory(events, route=route, at=at)
    except Conflict as exc:
        return Answer.error(exc, until), None  # a conflict is rare and loud
    answer = Answer.ok(b"null", until, NULL_ETAG) if event is None else Answer.ok(event.body, until)
    return answer, with_answer(record, until, answer, event, events)


def kept_body(record: bytes, offset: int, size: int, kind: int, deflater: Deflater) -> bytes:
    """The body of the answer a record keeps (its kind is EVENT, PLAIN or NULL)."""
    if kind == KIND_PLAIN:
        return record[offset : offset + size]
    if kind == KIND_EVENT:
        return deflater.inflate(record[offset : offset + size])
    return b"null"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    etag: bytes | None  # set on cacheable (200) answers
    until: float  # epoch seconds: the answer may change then (next boundary); inf if never
    headers: RawHeaders  # content-type, content-length, and the etag or (errors) what render_error adds

    @classmethod
    def ok(cls, body: bytes, until: float, etag: bytes | None = None) -> Answer:
        if etag is None:
            etag = etag_of(body)
        return cls(200, body, etag, until, [*entity_headers(body), (b"etag", etag)])

    @classmethod
    def error(cls, exc: EventctlError, until: float) -> Answer:
        status, extra, body = render_error(exc)
        return cls(status, body, None, until, [*entity_headers(body), NO_STORE, *extra])


NO_STORE = (b"cache-control", b"no-store")


@functools.lru_cache(maxsize=4096)
def content_length(size: int) -> tuple[bytes, bytes]:
    return (b"content-length", str(size).encode("ascii"))  # one tuple per size, shared by every answer


def entity_headers(body: bytes) -> RawHeaders:
    return [JSON_TYPE, content_length(len(body))]


_OUTCOME_BY_STATUS = {304: "not_modified", 400: "bad_request", 409: "conflict", 503: "unavailable"}


def outcome_of(status: int, body: bytes, headers: RawHeaders) -> str:
    """How a /current answer is counted in the metrics (stale answers apart)."""
    if status in _OUTCOME_BY_STATUS:
        return _OUTCOME_BY_STATUS[status]
    if (b"x-eventctl-stale", b"true") in headers:
        return "stale"
    return "null" if body == b"null" else "event"


def matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 weak comparison for If-None-Match (werkzeug's parser)."""
    from werkzeug.http import parse_etags

    return parse_etags(if_none_match.decode("latin-1")).contains_weak(etag.decode("ascii").strip('"'))
