"""Text from the wire, made safe to put on a terminal. Pure.

Anything the hub sends (attribute values, names, user ids, topics, call parties, error
messages) may hold characters a terminal acts on instead of showing: ESC starts a
sequence that can retitle the window, write the clipboard (OSC 52), leave or clear the
alternate screen; the other C0 and C1 controls move the cursor or ring; U+2028/2029 break
lines; bidi overrides and other format characters reorder or hide what is shown; a lone
surrogate cannot even be encoded. The hub refuses some of these, not all, and an older
or compromised hub none: the monitor does not rely on it.

:func:`safe_text` shows each such character visibly, as the escape Python would write
(``\\x1b``, ``\\u202e``, ``\\U000e0041``), so nothing is written raw and the operator
still sees that something odd was sent. Everything else (letters of any script, emoji,
spaces, a backslash) is left as it is. The monitor applies it to every feed event before
the model sees it (:func:`safe_data`) and again where text is drawn.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import lru_cache

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Controls (C0, DEL, C1), format characters (bidi overrides, zero-width ones, tags),
lone surrogates, and the line and paragraph separators."""
MAX_DEPTH = 16
"""Nesting kept by :func:`safe_data`; deeper data is shown as ``…`` (values are small)."""
_SCALARS = (int, float, bool, type(None))


@lru_cache(maxsize=4096)
def _shown(char: str) -> str:
    """How one character is shown: itself, or its escape when a terminal would act on it."""
    if unicodedata.category(char) not in UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(value: object) -> str:
    """``value`` as text fit for a terminal: every control, format character, line or
    paragraph separator and lone surrogate replaced by its visible escape. Idempotent."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # nearly always: no work, no copy
        return text
    return "".join(map(_shown, text))


def safe_data(value: object, _depth: int = 0) -> object:
    """A copy of JSON-like data (dicts, lists, strings, numbers) with every string, keys
    included, passed through :func:`safe_text`; the very same object when nothing
    needed it (a snapshot of thousands of clean values is not copied)."""
    if isinstance(value, str):
        return safe_text(value)
    if type(value) in _SCALARS:
        return value
    if _depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return "…"
    if isinstance(value, Mapping):
        for k, v in value.items():  # the common case, checked without a call per field
            if (type(k) is str and not k.isprintable()) or not (
                    (type(v) is str and v.isprintable()) or type(v) in _SCALARS):
                break
        else:
            return value
        items = [(safe_text(k) if isinstance(k, str) else k, safe_data(v, _depth + 1))
                 for k, v in value.items()]
        if all(new_k is k and new_v is v
               for (new_k, new_v), (k, v) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        cleaned = [safe_data(v, _depth + 1) for v in value]
        if all(new is old for new, old in zip(cleaned, value, strict=True)):
            return value
        return cleaned if isinstance(value, list) else tuple(cleaned)
    return value
