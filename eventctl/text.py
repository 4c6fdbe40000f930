"""Text from outside: what may be stored, and how it is shown to people (SPEC §1 Text)."""

from __future__ import annotations

import re

# Characters that act on the terminal instead of being shown: the bidirectional controls
# (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069: U+202E shows "gpj.exe" as "exe.jpg") and the
# line and paragraph separators U+2028/9 (a line break in many terminals and editors).
UNSHOWN = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# C0 controls, DEL, C1 controls and the above; lone surrogates cannot be stored as UTF-8 at all
CONTROL_CHARS = "\x00-\x1f\x7f-\x9f" + UNSHOWN
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")
_CONTROL_EXCEPT_LAYOUT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{UNSHOWN}]")
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
