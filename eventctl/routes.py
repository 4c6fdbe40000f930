"""Page keys: one normalization, used on write and on lookup (SPEC §1 Page keys).

A page key is either a **route** (starts with ``/``: trimmed, query string and
fragment dropped, percent-decoded as UTF-8, repeated ``/`` collapsed, trailing
``/`` dropped except for the root; case kept) or a **bare key** such as
``doc_digitization`` (letters, digits and ``_ - . :``, matched exactly).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from eventctl.errors import MalformedRoute
from eventctl.text import CONTROL_CHARS

MAX_ROUTE_LENGTH = 255
_SLASHES = re.compile(r"/{2,}")
# whitespace, control characters (C0/C1, DEL, bidirectional controls), lone surrogates
_BAD_CHARS = re.compile(f"[\\s{CONTROL_CHARS}\ud800-\udfff]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BARE_KEY = re.compile(r"[A-Za-z0-9_.:-]+")
# For the OpenAPI document: what a client sends as X-Page-Route — a route in printable
# ASCII, percent-encoded as window.location.pathname gives it (escapes of letters of the
# common scripts), or a bare key; empty = none. Every match is accepted by normalize_route
# (tests check that); the header is also read as raw UTF-8, which no pattern can say.
_HEX_CONT = "%[89ABab][0-9A-Fa-f]"
_ESCAPE = (
    f"%(?:[Cc][3-9A-Fa-f]|[Dd][0-9A-Fa-f]){_HEX_CONT}"  # U+00C0-U+07FF
    f"|%[Ee]0%[ABab][0-9A-Fa-f]{_HEX_CONT}"  # U+0800-U+0FFF (Indic scripts)
    f"|%[Ee][4-9A-Ca-c]{_HEX_CONT}{_HEX_CONT}"  # U+4000-U+CFFF
)
ROUTE_PATTERN = (
    rf"^(?:/(?:[\x21\x22\x24\x26-\x3e\x40-\x7e]|{_ESCAPE})*(?:[?#][\x21-\x7e]*)?|[A-Za-z0-9_.:-]{{1,255}})?$"
)


def _excerpt(raw: str) -> str:
    return repr(raw.strip()[:60]) + ("…" if len(raw.strip()) > 60 else "")


def normalize_route(raw: str | bytes | None) -> str | None:
    """The normalized page key, None for a missing/blank one; MalformedRoute otherwise.

    ``bytes`` (an HTTP header) are read as UTF-8.
    """
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedRoute("The page key is not valid UTF-8.") from None
    text = raw.strip()
    if not text:
        return None
    if _BAD_CHARS.search(text):
        raise MalformedRoute("A page key must not contain whitespace or control characters.")
    if not text.startswith("/"):
        if not _BARE_KEY.fullmatch(text):
            raise MalformedRoute(
                f"Page key {_excerpt(text)} is neither a route (starting with '/') "
                "nor a key of letters, digits and '_ - . :'."
            )
        if len(text) > MAX_ROUTE_LENGTH:
            raise MalformedRoute(f"A page key is at most {MAX_ROUTE_LENGTH} characters.")
        return text
    for sep in ("#", "?"):
        text = text.split(sep, 1)[0]
    if _BAD_ESCAPE.search(text):
        raise MalformedRoute(f"Page route {_excerpt(text)} has a malformed percent-escape.")
    try:
        text = unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise MalformedRoute(f"Page route {_excerpt(text)} percent-encodes bytes that are not UTF-8.") from None
    if _BAD_CHARS.search(text) or any(c in text for c in "%?#"):
        # decoded '%', '?' or '#' would read differently when normalized again: refuse them
        raise MalformedRoute("A page route must not encode whitespace, control characters, '%', '?' or '#'.")
    text = _SLASHES.sub("/", text)
    if len(text) > 1:
        text = text.rstrip("/") or "/"
    if len(text) > MAX_ROUTE_LENGTH:
        raise MalformedRoute(f"A page key is at most {MAX_ROUTE_LENGTH} characters.")
    return text


def require_route(raw: str | None) -> str:
    """Like normalize_route, but a blank page key is invalid (writes and filters)."""
    route = normalize_route(raw)
    if route is None:
        raise MalformedRoute("A page key is required.")
    return route
