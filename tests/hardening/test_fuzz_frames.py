"""Fuzzing a real hub over the socket: any frame, any service, any body.

Each example is one frame on a long-lived authenticated connection, followed by a
sentinel TOPIC_SNAPSHOT: the pipeline releases replies in order, so when the sentinel's
reply arrives every answer to the fuzzed frame has arrived before it. Every JSON object
under 64 KiB gets exactly one reply with a documented ``r`` and never closes the
connection; anything else closes it with its documented code. Meanwhile a bystander of
the same project and a watcher of another project must notice nothing they should not,
and the hub must never log an error.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from monitor.protocol import is_valid_request_id
from tests.hub.wire import hub_with, user_of
from tests.hubproc import HubProcess

PING, AUTHEN, MESSAGE, CHANGE, OTHER_DEVICE, SNAPSHOT = 1, 2, 102, 103, 104, 1001
CALL_SERVICES = range(1010, 1020)
FUZZER = "fz_fuzzer"
BYSTANDER = "fz_bystander"
CALLEE = "fz_callee"
GRANTED = ["fz_team", "fz_team.b", "fz:q-1"]
SENTINEL_TOPIC = "fz_sentinel"
# The r each service may answer after AUTHEN (docs/protocol.md, spec section 6).
ALLOWED_R: dict[int, set[int]] = {
    0: {21}, PING: {0}, AUTHEN: {21}, CHANGE: {0, 21, 22, 23}, SNAPSHOT: {0, 21, 24},
    1010: {0, 21, 25}, 1012: {0, 21, 27}, 1013: {0, 21, 27}, 1014: {0, 21, 27},
    1015: {0, 21, 27}, 1017: {0},
}
CLOSE_CODES = {1003, 1007, 1009}
AUTHEN_R = {1, 2, 3, 4, 5, 6, 7, 9, 10}


# -- a synchronous client ------------------------------------------------------------------


class Conn:
    """One WebSocket connection, read synchronously; frames kept in arrival order."""

    def __init__(self, hub: HubProcess) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(connect(
            hub.ws_url, max_size=None, compression=None, open_timeout=5, close_timeout=2,
            max_queue=None))
        self.seen: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.ws.send(text)

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = json.loads(self.ws.recv(timeout))
        assert isinstance(frame, dict) and set(frame) == {"service", "body"}, frame
        assert isinstance(frame["body"], dict), frame
        self.seen.append(frame)
        return frame

    def authen(self, token: str) -> dict[str, Any]:
        self.send(json.dumps({"service": AUTHEN, "body": {"accesstoken": token,
                                                          "requestId": "auth"}}))
        while True:
            frame = self.recv()
            if frame["service"] == AUTHEN:
                return frame["body"]

    def close_code(self) -> int | None:
        """Read until the hub closes; the code it sent."""
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while True:
                self.recv(5)
        return self.ws.protocol.close_rcvd.code if self.ws.protocol.close_rcvd else None

    def close(self) -> None:
        self._stack.close()


_sentinels = itertools.count()


def exchange(conn: Conn, text: str) -> list[dict[str, Any]]:
    """Send one frame and a sentinel; every frame that came before the sentinel's reply."""
    sentinel = f"sentinel-{next(_sentinels)}"
    conn.send(text)
    conn.send(json.dumps({"service": SNAPSHOT, "body": {"topic": SENTINEL_TOPIC,
                                                        "requestId": sentinel}}))
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while True:
        frame = conn.recv(max(0.1, deadline - time.monotonic()))
        if frame["service"] == SNAPSHOT and frame["body"].get("requestId") == sentinel:
            assert frame["body"]["r"] == 0, frame
            return frames
        frames.append(frame)


def as_strict_json(value: object) -> object:
    """``value`` as the hub echoes it: NaN and infinities inside it become null, since
    they are not JSON and the Web SDK's ``JSON.parse`` would refuse the whole frame."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [as_strict_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_strict_json(v) for k, v in value.items()}
    return value


def same_json(echoed: object, sent: object) -> bool:
    """``echoed`` is what the hub makes of ``sent`` in strict JSON."""
    return (json.dumps(echoed, sort_keys=True, allow_nan=False)
            == json.dumps(as_strict_json(sent), sort_keys=True, allow_nan=False))


# -- strategies ----------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats() | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
good_names = st.sampled_from(["note", "manual_status", "skill.level", "x" * 64])
names = good_names | good_names | st.sampled_from([
    "onlineStatus", "call", "OnlineStatus", "bad name", "a,b", "a/b", "ｎote", "note\u200b", "",
    "x" * 65, "note\x00", "ALL_CALL_STATUS"]) | st.text(max_size=12)
topics = st.sampled_from(GRANTED) | st.sampled_from([
    "fz_not_granted", "ALL_CALL_STATUS", "a,b", "*", "#", "fz_team/x", "ＡＬＬ", "", "t" * 129,
]) | st.text(max_size=12)
values = (json_scalars | json_scalars | json_values | st.text(min_size=1000, max_size=1100)
          | st.sampled_from(["é" * 512, "é" * 513, "\ud800", "online", "offline", "Ended"]))
body_fields: dict[str, st.SearchStrategy[Any]] = {
    "requestId": st.integers(min_value=0, max_value=2**40) | json_values,
    "attribute": names, "value": values, "topic": topics,
    "callId": st.sampled_from(["call-0000", ""]) | json_values,
    "to": st.sampled_from([CALLEE, FUZZER, "nobody", BYSTANDER + "_x"]) | json_values,
    "accesstoken": st.text(max_size=40) | json_values,
    "resume": st.dictionaries(topics, json_values, max_size=3) | json_values,
    "deviceId": st.text(max_size=20) | json_values,
}
# The fields each service reads, mostly present, plus anything else.
SERVICE_FIELDS: dict[int, list[str]] = {
    CHANGE: ["attribute", "value"], SNAPSHOT: ["topic"], 1010: ["to"], 1012: ["callId"],
    1013: ["callId"], 1014: ["callId"], 1015: ["callId"], AUTHEN: ["accesstoken", "resume"],
}
known_services = st.sampled_from([0, PING, AUTHEN, MESSAGE, CHANGE, CHANGE, CHANGE, CHANGE,
                                  OTHER_DEVICE, SNAPSHOT, SNAPSHOT, *CALL_SERVICES])
services = st.integers(0, 9).flatmap(  # one in ten any integer
    lambda i: known_services if i else st.integers(min_value=-2**63, max_value=2**64))


@st.composite
def request_bodies(draw: st.DrawFn, service: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in SERVICE_FIELDS.get(service, []):
        if draw(st.integers(0, 9)) > 0:
            body[name] = draw(body_fields[name])
    if draw(st.integers(0, 9)) > 0:
        body["requestId"] = draw(body_fields["requestId"])
    body.update(draw(st.fixed_dictionaries({}, optional=body_fields)
                     | st.dictionaries(st.text(max_size=8), json_values, max_size=2)
                     | st.just({})))
    return body


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, dict[str, Any] | None]:
    """A JSON object frame; the request body when it is a well-formed request."""
    shape = draw(st.sampled_from(["request", "request", "request", "request", "odd"]))
    if shape == "request":
        service = draw(services)
        body = draw(request_bodies(service))
        return json.dumps({"service": service, "body": body}), body
    odd = draw(st.dictionaries(st.sampled_from(["service", "body", "x"]), json_values,
                               max_size=3))
    service, body = odd.get("service"), odd.get("body")
    well_formed = isinstance(service, int) and not isinstance(service, bool) and \
        (body is None or isinstance(body, dict))
    return json.dumps(odd), (body or {}) if well_formed else None


# -- the hub and its witnesses ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = hub_with(tmp_path_factory.mktemp("fuzz"), offline_grace_ms=0,
                   ping_after_ms=600_000, auth_burst_per_ip=100_000,
                   auth_rate_per_ip=100_000)
    try:
        yield hub
    finally:
        hub.kill()


def fuzzer_token(hub: HubProcess) -> str:
    return hub.client_token(FUZZER, subscribe=[*GRANTED, SENTINEL_TOPIC],
                            attributes=[("note", "fz_team"), ("manual_status", "fz_team.b"),
                                        ("onlineStatus", "fz_team"), ("call", "fz:q-1")])


def _check_answers(service: int | None, body: dict[str, Any] | None,
                   answers: list[dict[str, Any]]) -> None:
    replies = [f for f in answers if "r" in f["body"]]
    if body is None:  # not a request: a service-0 reply with r = 21
        assert [(f["service"], f["body"]["r"]) for f in replies] == [(0, 21)], answers
        return
    assert service is not None
    assert len(replies) == 1, answers
    reply = replies[0]
    assert reply["service"] == service, (service, reply)  # the request's, whatever it is
    if not is_valid_request_id(body.get("requestId")):
        # Refused before the request is looked at: nothing changed, nothing echoed.
        event("requestId not echoable: r = 21")
        assert reply["body"]["r"] == 21 and "requestId" not in reply["body"], reply
        assert [f for f in answers if f is not reply] == [], answers
        return
    event(f"service {service if service in ALLOWED_R else 'other'}: r = {reply['body']['r']}")
    assert reply["body"]["r"] in ALLOWED_R.get(service, {21}), (service, body, reply)
    assert isinstance(reply["body"].get("message"), str), reply
    request_id = body.get("requestId")
    if request_id is None or (isinstance(request_id, float) and not math.isfinite(request_id)):
        assert "requestId" not in reply["body"], reply  # NaN would not be JSON
    else:
        assert same_json(reply["body"]["requestId"], body["requestId"]), reply
    for frame in answers:
        if frame is reply:
            continue
        # Besides the reply: topic messages of granted topics, call notices.
        assert frame["service"] in (MESSAGE, 1011, 1016), frame
        if frame["service"] == MESSAGE:
            assert frame["body"]["topic"] in GRANTED, frame


def test_fuzzed_requests_get_documented_answers_and_harm_nobody(fuzz_hub: HubProcess) -> None:
    hub = fuzz_hub
    # Witnesses: a bystander of the same project on the fuzzer's topics, a watcher of
    # another project subscribed to the same names (and a user of the same id there).
    callee = Conn(hub)
    assert callee.authen(hub.client_token(CALLEE))["r"] == 0
    callee.close()
    bystander = Conn(hub)
    assert bystander.authen(hub.client_token(
        BYSTANDER, subscribe=GRANTED, attributes=[("note", "fz_bystander_t")]))["r"] == 0
    other = Conn(hub)
    assert other.authen(hub.client_token(FUZZER, subscribe=[*GRANTED, "ALL_CALL_STATUS"],
                                         other_project=True))["r"] == 0
    rest = httpx.Client(base_url=hub.api_url, timeout=10,
                        headers={"X-STRINGEE-AUTH": hub.rest_token()})
    assert rest.put(f"/v1/users/{BYSTANDER}/attributes",
                    json=[{"attribute": "note", "value": "before"}]).status_code == 200
    conn_box = [Conn(hub)]
    assert conn_box[0].authen(fuzzer_token(hub))["r"] == 0

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(frames())
    @example(('{"service": 103, "body": {"attribute": "onlineStatus", "value": "offline", '
              '"requestId": 1}}', {"attribute": "onlineStatus", "value": "offline",
                                   "requestId": 1}))
    @example(('{"service": 1001, "body": {"topic": "fz_not_granted", "requestId": 2}}',
              {"topic": "fz_not_granted", "requestId": 2}))
    @example(('{"service": 103, "body": {"attribute": "n", "value": 1, "requestId": '
              + "[" * 950 + "]" * 950 + "}}", {"attribute": "n", "value": 1,
                                                "requestId": [[]]}))
    @example(('{"service": 1e400, "body": {}}', None))
    @example(('{"service": 1, "body": {"requestId": NaN}}', {"requestId": float("nan")}))
    @example(('{"service": 103, "body": {"attribute": "note", "value": NaN}}',
              {"attribute": "note", "value": float("nan")}))
    def run(case: tuple[str, dict[str, Any] | None]) -> None:
        text, body = case
        conn = conn_box[0]
        service = json.loads(text).get("service") if body is not None else None
        answers = exchange(conn, text)
        if body is not None and body.get("requestId") is not None and \
                isinstance(body["requestId"], list):
            body = {**body, "requestId": json.loads(text)["body"]["requestId"]}
        _check_answers(service, body, answers)

    try:
        run()
    finally:
        conn_box[0].close()

    # The fuzzer went offline when its connection closed (and not before: it could not
    # set onlineStatus); `call` only moved through calls (a busy callee ends them at once).
    values = user_of(rest.get(f"/v1/users/{FUZZER}").json())
    assert values["onlineStatus"] == "offline"  # its only connection closed, no grace
    assert values["call"] in (None, "Ended")
    # The bystander's value is untouched, its connection works, and every message it
    # got is a well-formed message of a topic it subscribes to, in seq order.
    assert user_of(rest.get(f"/v1/users/{BYSTANDER}").json())["note"] == "before"
    bystander.send(json.dumps({"service": PING, "body": {"requestId": "by"}}))
    while True:
        frame = bystander.recv()
        if frame["service"] == PING:
            assert frame["body"]["r"] == 0
            break
    last: dict[str, int] = {t: bystander.seen[0]["body"]["topics"][t]["seq"] for t in GRANTED}
    for frame in bystander.seen[1:]:
        if frame["service"] != MESSAGE:
            continue
        topic, seq = frame["body"]["topic"], frame["body"]["seq"]
        assert topic in GRANTED, frame
        assert seq == last[topic] + 1, (frame, last)
        last[topic] = seq
        message = frame["body"]["message"]
        assert message["userId"] in (FUZZER, BYSTANDER, CALLEE), message
        assert message["projectId"] == 25
    # The other project heard nothing, and its user of the same id is untouched.
    other.send(json.dumps({"service": PING, "body": {"requestId": "o"}}))
    while other.recv()["service"] != PING:
        pass
    assert not [f for f in other.seen if f["service"] == MESSAGE], other.seen
    other_rest = {"X-STRINGEE-AUTH": hub.rest_token(other_project=True)}
    other_values = user_of(rest.get(f"/v1/users/{FUZZER}", headers=other_rest).json())
    assert set(other_values) == {"onlineStatus", "call"}
    assert other_values["onlineStatus"] == "online"
    # No store failure, no error, no traceback.
    assert rest.get("/healthz").json()["storeFailures"] == 0
    log = hub.log()
    assert "Traceback" not in log and "level=ERROR" not in log, log[-3000:]
    bystander.close()
    other.close()
    rest.close()


def test_fuzzed_frames_that_are_not_requests_close_with_their_code(
        fuzz_hub: HubProcess) -> None:
    """Text that is not a JSON object closes the connection with 1007, before and after
    AUTHEN; a bystander carries on."""
    hub = fuzz_hub
    bystander = Conn(hub)
    assert bystander.authen(hub.client_token("fz_by2"))["r"] == 0

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.text(max_size=200) | json_values.filter(lambda v: not isinstance(v, dict))
           .map(json.dumps), st.booleans())
    @example("{", True)
    @example("[]", False)
    @example("", True)
    def run(text: str, authenticated: bool) -> None:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return
        conn = Conn(hub)
        try:
            if authenticated:
                assert conn.authen(hub.client_token("fz_closer"))["r"] == 0
            conn.send(text)
            assert conn.close_code() == 1007
        finally:
            conn.close()

    run()
    bystander.send(json.dumps({"service": CHANGE, "body": {"attribute": "note", "value": 1,
                                                           "requestId": 5}}))
    while (frame := bystander.recv())["service"] != CHANGE:
        pass
    assert frame["body"]["r"] == 0
    bystander.close()
    log = hub.log()
    assert "Traceback" not in log and "level=ERROR" not in log, log[-3000:]


def test_fuzzed_requests_before_authen(fuzz_hub: HubProcess, tmp_path: Path) -> None:
    """Before AUTHEN: r = 20 for every service but PING (r = 0) and AUTHEN (an AUTHEN
    code, then close 4001)."""
    hub = fuzz_hub

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(frames(), min_size=1, max_size=4))
    def run(cases: list[tuple[str, dict[str, Any] | None]]) -> None:
        conn = Conn(hub)
        try:
            for text, body in cases:
                conn.send(text)
                service = json.loads(text).get("service") if body is not None else None
                if body is None:
                    frame = conn.recv()
                    assert (frame["service"], frame["body"]["r"]) == (0, 21), frame
                    continue
                frame = conn.recv()
                assert frame["service"] == service, frame
                if not is_valid_request_id(body.get("requestId")):
                    assert frame["body"]["r"] == 21, frame
                elif service == PING:
                    assert frame["body"]["r"] == 0
                elif service == AUTHEN:
                    assert frame["body"]["r"] in AUTHEN_R, frame
                    assert conn.close_code() == 4001
                    return
                else:
                    assert frame["body"]["r"] == 20, frame
        finally:
            conn.close()

    run()
    log = hub.log()
    assert "Traceback" not in log and "level=ERROR" not in log, log[-3000:]
