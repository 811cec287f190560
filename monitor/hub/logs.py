"""Structured logs: one ``key=value`` line per event, level from the config.

Every string a log line carries as an argument (``log.info("event=x user=%s", user)``)
may have come from outside: a user id, a reason, an SSH user name. The formatter writes
each one as a single field, so that none can forge a line or a field: a plain word as it
is, anything else in double quotes with quotes, backslashes, spaces' lookalikes, line and
paragraph separators and every control character escaped. Log with arguments, never by
formatting user input into the message text.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

# What a field may hold unquoted: one word that cannot be read as two fields.
_PLAIN = re.compile(r"[A-Za-z0-9_.,:;/@+\-\[\]()<>#%*!?~^|$&]+")


def log_field(value: str) -> str:
    """``value`` as one field of a ``key=value`` log line."""
    if _PLAIN.fullmatch(value):
        return value
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == " " or ch.isprintable():  # not Cc, Cf, Cs, Co, Cn, Zl, Zp, other Zs
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


class _Field:
    """A log argument that formats as one escaped field with ``%s`` and ``%r`` alike."""

    __slots__ = ("text",)

    def __init__(self, value: Any) -> None:
        self.text = log_field(value if isinstance(value, str) else str(value))

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) or value is None


class FieldFormatter(logging.Formatter):
    """A formatter that escapes every argument that is not a number (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return super().format(record)
        record.args = tuple(a if _is_number(a) else _Field(a) for a in args)
        try:
            return super().format(record)
        finally:
            record.args = args


def setup_logging(level: str) -> None:
    """Send the hub's logs to stderr as ``time level logger key=value...`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldFormatter(
        "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger("monitor")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # uvicorn's own access log would print a line per request: keep its errors only.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
