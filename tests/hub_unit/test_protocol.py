"""monitor.protocol: decoding frames, encoding them, replies, name and value checks."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.protocol import (
    MAX_VALUE_BYTES,
    MESSAGES,
    FrameError,
    RequestError,
    Result,
    Service,
    decode,
    encode,
    is_attribute_name,
    is_topic_name,
    is_valid_value,
    reply,
)

# -- decode -----------------------------------------------------------------------------------


def test_decode_a_request() -> None:
    assert decode('{"service":103,"body":{"attribute":"a","value":1,"requestId":4}}') == (
        103, {"attribute": "a", "value": 1, "requestId": 4})


def test_decode_bytes() -> None:
    assert decode('{"service":2,"body":{"x":"é"}}'.encode()) == (2, {"x": "é"})


@pytest.mark.parametrize("text", ['{"service":1}', '{"service":1,"body":null}'])
def test_missing_or_null_body_is_empty(text: str) -> None:
    assert decode(text) == (1, {})


def test_unknown_service_numbers_are_decoded() -> None:
    # Unknown services are answered r = 21 by the endpoint, not refused here.
    assert decode('{"service":-7,"body":{}}') == (-7, {})
    assert decode('{"service":99999999999999999999,"body":{}}')[0] == 99999999999999999999


def test_extra_keys_are_ignored() -> None:
    assert decode('{"service":1,"body":{},"extra":[1]}') == (1, {})


@pytest.mark.parametrize("text", [
    "", " ", "not json", "{", '{"service":1,', "[1,2]", '"a string"', "42", "null", "true",
    "{'service': 1}", b"\xff\xfe\x00", b"\x80abc", "[" * 100_000 + "]" * 100_000,
])
def test_frame_error_for_anything_but_a_json_object(text: str | bytes) -> None:
    with pytest.raises(FrameError):
        decode(text)


def test_frame_error_for_deep_nesting_inside_an_object() -> None:
    with pytest.raises(FrameError):
        decode('{"service":1,"body":' + '{"a":' * 100_000 + "1" + "}" * 100_001)


@pytest.mark.parametrize("text", [
    "{}", '{"body":{}}', '{"service":"1","body":{}}', '{"service":1.0,"body":{}}',
    '{"service":1.5,"body":{}}', '{"service":true,"body":{}}', '{"service":null,"body":{}}',
    '{"service":[1],"body":{}}', '{"service":{},"body":{}}',
    '{"service":1,"body":[]}', '{"service":1,"body":"x"}', '{"service":1,"body":5}',
    '{"service":1,"body":false}',
])
def test_request_error_for_an_object_that_is_not_a_request(text: str) -> None:
    with pytest.raises(RequestError):
        decode(text)


def test_frame_and_request_errors_are_value_errors_but_distinct() -> None:
    assert issubclass(FrameError, ValueError) and issubclass(RequestError, ValueError)
    assert not issubclass(FrameError, RequestError)
    assert not issubclass(RequestError, FrameError)


# -- encode and replies --------------------------------------------------------------------------


def test_encode_is_compact_and_keeps_unicode() -> None:
    assert encode(Service.PING, {}) == '{"service":1,"body":{}}'
    assert encode(Service.CHANGE_ATTRIBUTE, {"v": "é✓", "n": [1, 2]}) == \
        '{"service":103,"body":{"v":"é✓","n":[1,2]}}'


def test_encode_writes_the_service_as_a_plain_number() -> None:
    assert json.loads(encode(Service.TOPIC_SNAPSHOT, {}))["service"] == 1001
    assert '"service":1001' in encode(Service.TOPIC_SNAPSHOT, {})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10)


@settings(max_examples=60, deadline=None)
@given(service=st.integers(min_value=-(2**63), max_value=2**63),
       body=st.dictionaries(st.text(), JSON, max_size=6))
def test_encode_decode_round_trip(service: int, body: dict[str, Any]) -> None:
    assert decode(encode(service, body)) == (service, body)
    assert decode(encode(service, body).encode("utf-8")) == (service, body)


def test_reply_body() -> None:
    assert reply(Service.CHANGE_ATTRIBUTE, 7, Result.SUCCESS) == {
        "r": 0, "message": "SUCCESS", "requestId": 7}
    assert reply(Service.TOPIC_SNAPSHOT, 1, Result.TOPIC_NOT_GRANTED, "no", topic="t") == {
        "r": 24, "message": "no", "requestId": 1, "topic": "t"}
    assert reply(Service.PING, None, Result.INVALID_REQUEST) == {
        "r": 21, "message": "invalid request"}
    assert reply(Service.PING, 0, Result.SUCCESS)["requestId"] == 0


def test_reply_result_is_a_plain_int() -> None:
    assert type(reply(Service.PING, 1, Result.RATE_LIMITED)["r"]) is int


def test_every_result_has_a_message() -> None:
    assert set(MESSAGES) == set(Result)
    assert all(MESSAGES[r] for r in Result)


def test_result_codes_are_those_of_the_spec() -> None:
    # and the hub's own (docs/protocol.md): 11, a supervisor logged the user out
    assert {r.name: int(r) for r in Result} == {
        "SUCCESS": 0, "TOKEN_MISSING": 1, "TOKEN_UNDECODABLE": 2, "TOKEN_FORMAT": 3,
        "TOKEN_ALGORITHM": 4, "KEY_NOT_FOUND": 5, "TOKEN_EXPIRED": 6, "TOKEN_PAYLOAD": 7,
        "AUTH_OTHER": 9, "TOKEN_SIGNATURE": 10, "LOGGED_OUT": 11, "NOT_AUTHENTICATED": 20,
        "INVALID_REQUEST": 21, "READ_ONLY_ATTRIBUTE": 22, "INVALID_ATTRIBUTE": 23,
        "TOPIC_NOT_GRANTED": 24, "USER_NOT_FOUND": 25, "RATE_LIMITED": 26,
        "INVALID_CALL": 27, "INTERNAL_ERROR": 29}
    assert {s.name: int(s) for s in Service if s < 1010} == {
        "PING": 1, "AUTHEN": 2, "SUBSCRIBE_FROM_SERVER": 102, "CHANGE_ATTRIBUTE": 103,
        "OTHER_DEVICE_AUTHEN": 104, "TOPIC_SNAPSHOT": 1001}


# -- is_valid_value --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 0.0, -0.0, 1.5, 1e308, -1e308,
    5e-324, "", "x", "x" * MAX_VALUE_BYTES, "é" * 512, "€" * 341 + "x", "\U0001f600" * 256,
    "tab\u200dzwj \U0001f469\u200d\U0001f4bb",  # format characters make emoji: kept
])
def test_valid_values(value: object) -> None:
    assert is_valid_value(value)


@pytest.mark.parametrize("value", [
    math.nan, -math.nan, math.inf, -math.inf, float("nan"),
    "x" * (MAX_VALUE_BYTES + 1), "é" * 512 + "x", "€" * 342, "\U0001f600" * 256 + "x",
    "é" * 1000,  # 1000 characters but 2000 bytes
    "\ud800", "a\udfffb", "\ud83d",  # lone surrogates are not UTF-8
    b"bytes", [], {}, [1], {"a": 1}, (1,), {1}, object(), 1j,
    # integers beyond 64 bits (a 4,000-digit number would be stored and echoed)
    2**63, -(2**63) - 1, 10**300, -(10**300), int("9" * 4000),
    # control characters: a terminal would act on them (ESC, C1 CSI, BEL...)
    "\x00", "a\nb", "tab\t", "busy\x1b]0;TITLE\x1b\\", "\x1b[2J", "c1\x9b2J", "del\x7f",
    "bell\x07", "line\u2028sep", "para\u2029sep", "\x85next line",
])
def test_invalid_values(value: object) -> None:
    assert not is_valid_value(value)


def test_value_limit_counts_bytes_not_characters() -> None:
    two_byte = "é" * 512
    assert len(two_byte) == 512 and len(two_byte.encode()) == 1024
    assert is_valid_value(two_byte) and not is_valid_value(two_byte + "é")
    three_byte = "€" * 341 + "x"
    assert len(three_byte.encode()) == 1024 and is_valid_value(three_byte)
    assert not is_valid_value("€" * 341 + "é")  # 1025 bytes


def test_bool_is_valid_even_though_it_is_an_int() -> None:
    assert is_valid_value(True) and is_valid_value(False)


@given(st.text(max_size=1100))
def test_valid_value_iff_it_fits_in_1024_utf8_bytes_without_controls(text: str) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        assert not is_valid_value(text)
    else:
        controls = any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029"
                       for ch in text)
        assert is_valid_value(text) is (size <= MAX_VALUE_BYTES and not controls)


@given(st.floats())
def test_float_valid_iff_finite(value: float) -> None:
    assert is_valid_value(value) is math.isfinite(value)


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "a", "A", "0", "online_status_GRDHG0HI", "ALL_CALL_STATUS", "a.b-c:d_e", ":", "-", ".",
    "x" * 128,
])
def test_valid_topic_names(name: str) -> None:
    assert is_topic_name(name)


@pytest.mark.parametrize("name", [
    "", "x" * 129, "a b", "a,b", "a/b", "é", "١", "a\n", "\na", "a\x00", "*", "#", "a+b",
    None, 1, b"topic", ["t"],
])
def test_invalid_topic_names(name: object) -> None:
    assert not is_topic_name(name)


@pytest.mark.parametrize("name", ["a", "onlineStatus", "call", "a.b-c_d", "x" * 64, "0"])
def test_valid_attribute_names(name: str) -> None:
    assert is_attribute_name(name)


@pytest.mark.parametrize("name", [
    "", "x" * 65, "a:b", "a b", "é", "a\n", "a$", None, 5, b"a",
])
def test_invalid_attribute_names(name: object) -> None:
    assert not is_attribute_name(name)
