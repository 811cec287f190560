"""Fields a client sends that the hub echoes back must still make valid frames."""

from __future__ import annotations

import json

from monitor.hub.ws import ws_frame
from monitor.protocol import Result, Service, encode, reply


def _payload(frame: bytes) -> dict:
    assert frame[0] == 0x81  # one final text frame
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4
    return json.loads(frame[start:].decode("utf-8"))


def test_a_lone_surrogate_is_sent_as_its_json_escape() -> None:
    frame = ws_frame(encode(Service.AUTHEN, reply(Service.AUTHEN, 1, Result.SUCCESS,
                                                  deviceId="dev-\ud800")))
    frame[2:].decode("utf-8")  # valid UTF-8 on the wire
    assert _payload(frame)["body"]["deviceId"] == "dev-\ud800"


def test_a_request_id_that_is_not_finite_is_not_echoed() -> None:
    for request_id in (float("nan"), float("inf"), float("-inf")):
        body = reply(Service.PING, request_id, Result.SUCCESS)
        assert "requestId" not in body
        assert _payload(ws_frame(encode(Service.PING, body)))["body"]["r"] == 0


def test_ordinary_request_ids_are_echoed() -> None:
    assert reply(Service.PING, 7, Result.SUCCESS)["requestId"] == 7
    assert reply(Service.PING, "abc", Result.SUCCESS)["requestId"] == "abc"
    assert reply(Service.PING, 1.5, Result.SUCCESS)["requestId"] == 1.5


def test_the_fast_success_reply_is_the_encoded_reply() -> None:
    from monitor.protocol import success_frame

    for request_id in (0, 7, -3, 2**40, "seven", 1.5, None, True):
        assert success_frame(Service.CHANGE_ATTRIBUTE, request_id) == encode(
            Service.CHANGE_ATTRIBUTE, reply(Service.CHANGE_ATTRIBUTE, request_id, Result.SUCCESS))
