"""Text from outside: what may be stored, and how it is shown to people (SPEC §1 Text)."""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; lone surrogates cannot be stored as UTF-8 at all
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_text(value: str, *, what: str, layout: bool = False) -> str:
    """``value`` unchanged, or ValueError: no control characters (``layout`` allows \\n, \\r, \\t)."""
    if _SURROGATE.search(value):
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate)")
    if (_CONTROL_EXCEPT_LAYOUT if layout else _CONTROL).search(value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def for_terminal(value: object) -> str:
    """Text for people: control characters (ESC, BEL, CR, LF, …) shown as escapes, never sent raw."""
    text = str(value)
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def excerpt(value: object, limit: int = 60) -> str:
    """A short, quoted, terminal-safe excerpt of user input for an error message."""
    text = str(value).strip()
    short = text[:limit] + ("…" if len(text) > limit else "")
    return repr(short)
