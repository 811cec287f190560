"""safe_text: every character a terminal would act on is shown escaped, nothing else."""

from __future__ import annotations

import unicodedata

import pytest

from monitor.tui.feed import Link, Session, Snapshot, TopicMessage, safe_event
from monitor.tui.model import value_text
from monitor.tui.text import UNSAFE_CATEGORIES, safe_data, safe_text
from tests.tui.hostile_hub import REVIEW_VALUE, REVIEW_VISIBLE


def is_safe(text: str) -> bool:
    return all(unicodedata.category(ch) not in UNSAFE_CATEGORIES for ch in text)


def test_the_review_value_is_shown_with_every_escape_visible() -> None:
    shown = safe_text(REVIEW_VALUE)
    assert shown == REVIEW_VISIBLE
    assert "\x1b" not in shown and is_safe(shown)


@pytest.mark.parametrize("code", [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])
def test_every_c0_c1_control_and_del_is_escaped(code: int) -> None:
    assert safe_text(f"a{chr(code)}b") == f"a\\x{code:02x}b"


@pytest.mark.parametrize(("char", "shown"), [
    ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),              # line, paragraph separator
    ("\u202a", "\\u202a"), ("\u202e", "\\u202e"),              # bidi embedding, override
    ("\u2066", "\\u2066"), ("\u2069", "\\u2069"),              # bidi isolates
    ("\u200b", "\\u200b"), ("\u200e", "\\u200e"), ("\u200f", "\\u200f"),
    ("\u00ad", "\\xad"), ("\ufeff", "\\ufeff"), ("\u061c", "\\u061c"),
    ("\U000e0041", "\\U000e0041"),                            # a tag character
    ("\ud800", "\\ud800"), ("\udfff", "\\udfff"),              # lone surrogates
])
def test_format_characters_separators_and_lone_surrogates_are_escaped(char: str,
                                                                      shown: str) -> None:
    assert safe_text(f"x{char}y") == f"x{shown}y"
    safe_text(f"x{char}y").encode("utf-8")  # a lone surrogate could not even be written


def test_no_character_of_unicode_comes_out_unsafe() -> None:
    every = "".join(chr(code) for code in range(0x110000))
    shown = safe_text(every)
    assert is_safe(shown)
    shown.encode("utf-8")
    # and everything that is not unsafe is kept as it is
    kept = "".join(ch for ch in every if unicodedata.category(ch) not in UNSAFE_CATEGORIES)
    assert "".join(ch for ch in shown if not ch.isascii()) == \
        "".join(ch for ch in kept if not ch.isascii())


@pytest.mark.parametrize("text", ["available", "Chloé Durand", "日本語の名前", "👍🏽 ok",
                                  "a b\u00a0c", r"DOMAIN\user \x1b", "[bold red]x[/]", ""])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert safe_text(text) == text


def test_it_is_idempotent_and_takes_any_value() -> None:
    once = safe_text(REVIEW_VALUE + "\u202e\ud800")
    assert safe_text(once) == once
    assert safe_text(42) == "42" and safe_text(1.5) == "1.5"
    assert value_text("a\x1bb") == "a\\x1bb"
    assert value_text({"k": "a\x1b"}) == "{'k': 'a\\x1b'}"


def test_safe_data_cleans_keys_and_nested_values_and_keeps_clean_data_as_it_is() -> None:
    clean = {"userId": "agent_1", "value": ["a", 1, None, {"b": True}]}
    assert safe_data(clean) is clean
    dirty = {"user\x1b": ["a\x07", {"b": "\x9b2J"}], "n": 3}
    assert safe_data(dirty) == {"user\\x1b": ["a\\x07", {"b": "\\x9b2J"}], "n": 3}
    deep: object = "x"
    for _ in range(50):
        deep = [deep]
    flattened = safe_data(deep)
    for _ in range(16):
        assert isinstance(flattened, list)
        flattened = flattened[0]
    assert flattened == "…"


def test_every_feed_event_is_made_safe() -> None:
    message = TopicMessage("team\x1b", {"userId": "a\x1b", "newValue": REVIEW_VALUE,
                                        "from": "\u202e1", "displayName": "B\x07"}, 3)
    cleaned = safe_event(message)
    assert isinstance(cleaned, TopicMessage) and cleaned.seq == 3
    assert cleaned.topic == "team\\x1b"
    assert cleaned.message == {"userId": "a\\x1b", "newValue": REVIEW_VISIBLE,
                               "from": "\\u202e1", "displayName": "B\\x07"}
    snapshot = safe_event(Snapshot("t", [{"userId": "a", "value": "\x1b[2J"}], 4, "e"))
    assert isinstance(snapshot, Snapshot)
    assert snapshot.values == [{"userId": "a", "value": "\\x1b[2J"}] and snapshot.seq == 4
    session = safe_event(Session("u\x1b", ("t\x1b",), {"a\x1b": ("t\x1b",)}, "N\x1b"))
    assert session == Session("u\\x1b", ("t\\x1b",), {"a\\x1b": ("t\\x1b",)}, "N\\x1b")
    link = safe_event(Link("offline", None, "refused: \x1b]0;x\x07"))
    assert isinstance(link, Link) and link.detail == "refused: \\x1b]0;x\\x07"
    ordinary = TopicMessage("t", {"userId": "a", "newValue": "break"}, 5)
    assert safe_event(ordinary) is ordinary
