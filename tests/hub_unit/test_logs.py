"""Log fields: whatever a user sends, one field of one line."""

from __future__ import annotations

import io
import logging

import pytest

from monitor.hub.logs import FieldFormatter, log_field


@pytest.mark.parametrize(("value", "written"), [
    ("agent_1", "agent_1"),
    ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("", '""'),
    ("eve project=2 event=kicked", '"eve project=2 event=kicked"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nbreak", '"line\\u000abreak"'),
    ("sep\u2028arator", '"sep\\u2028arator"'),
    ("para\u2029graph", '"para\\u2029graph"'),
    ("esc\x1b[2J", '"esc\\u001b[2J"'),
    ("c1\x9b", '"c1\\u009b"'),
    ("rtl\u202eevil", '"rtl\\u202eevil"'),
    ("nbsp\u00a0x", '"nbsp\\u00a0x"'),
    ("Ana Berg", '"Ana Berg"'),
    ("Zoë", '"Zoë"'),
])
def test_log_field(value: str, written: str) -> None:
    assert log_field(value) == written


def _format(message: str, *args: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FieldFormatter("%(message)s"))
    logger = logging.getLogger("monitor.test_logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info(message, *args)
    return stream.getvalue()


def test_every_argument_but_numbers_is_one_field_with_s_and_r_alike() -> None:
    line = _format("event=x user=%s reason=%r code=%d took=%.1f none=%s", "a b\nc",
                   "it's", 4001, 1.25, None)
    assert line == 'event=x user="a b\\u000ac" reason="it\'s" code=4001 took=1.2 none=None\n'


def test_objects_are_written_as_their_text() -> None:
    assert _format("error=%s", ValueError("x=1 y")) == 'error="x=1 y"\n'
    assert _format("plain") == "plain\n"
