"""Page-route normalization: one function, used on write and on lookup (SPEC §1)."""

from __future__ import annotations

import re

from eventctl.errors import MalformedRoute

MAX_ROUTE_LENGTH = 255
_SLASHES = re.compile(r"/{2,}")
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# For the OpenAPI document: what a client should send as X-Page-Route (printable ASCII,
# as HTTP header values carry; empty = no route). Every match is accepted by
# normalize_route, which also tolerates surrounding whitespace.
ROUTE_PATTERN = r"^(?:/[\x21\x22\x24-\x3e\x40-\x7e]*(?:[?#][\x20-\x7e]*)?)?$"


def normalize_route(raw: str | None) -> str | None:
    """Return the normalized route, None for a missing/blank one; raise MalformedRoute.

    Trim whitespace, drop query string and fragment, collapse repeated ``/``,
    drop a trailing ``/`` (except the root). Case is kept.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    for sep in ("#", "?"):
        text = text.split(sep, 1)[0]
    if not text.startswith("/"):
        raise MalformedRoute(f"Page route {raw.strip()[:80]!r} must start with '/'.")
    if _BAD_CHARS.search(text):
        raise MalformedRoute("Page route must not contain whitespace or control characters.")
    text = _SLASHES.sub("/", text)
    if len(text) > 1:
        text = text.rstrip("/") or "/"
    if len(text) > MAX_ROUTE_LENGTH:
        raise MalformedRoute(f"Page route is longer than {MAX_ROUTE_LENGTH} characters.")
    return text


def require_route(raw: str | None) -> str:
    """Like normalize_route, but a blank route is invalid (used when writing)."""
    route = normalize_route(raw)
    if route is None:
        raise MalformedRoute("Page route is required.")
    return route
