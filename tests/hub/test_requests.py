"""Requests after AUTHEN: every result code of section 6 the socket can reach, frames
that close the connection (and harm nothing else), same-value changes, and PING."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from websockets.frames import Close, Opcode
from websockets.frames import Frame as WsFrame

from tests.hub.conftest import HubFactory
from tests.hub.wire import (
    AUTHEN,
    CHANGE_ATTRIBUTE,
    PING,
    SUBSCRIBE_FROM_SERVER,
    Wire,
    login,
    open_wire,
    user_of,
)
from tests.hubproc import HubProcess

CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_PING_TIMEOUT = 4003


async def test_unknown_service_is_21_with_the_same_service(module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token("req_unknown"))
    for service in (0, 3, 102, 104, 999, 5000):
        reply = await wire.request(service, {"x": 1})
        assert reply["r"] == 21, (service, reply)
        assert reply["requestId"] == wire.next_request
    await wire.close()


@pytest.mark.parametrize(("body", "why"), [
    ({}, "nothing"),
    ({"attribute": "note"}, "no value"),
    ({"value": "x"}, "no attribute"),
    ({"attribute": 42, "value": "x"}, "attribute not a string"),
    ({"attribute": "note", "value": {"a": 1}}, "object value"),
    ({"attribute": "note", "value": [1, 2]}, "array value"),
])
async def test_malformed_change_is_21(module_hub: HubProcess, body: dict[str, object],
                                      why: str) -> None:
    wire = await login(module_hub, module_hub.client_token(
        "req_malformed", subscribe=["req_malformed_t"],
        attributes=[("note", "req_malformed_t")]))
    reply = await wire.request(CHANGE_ATTRIBUTE, body)
    assert reply["r"] == 21, (why, reply)
    assert reply["requestId"] == wire.next_request
    await wire.quiet(0.1)  # nothing published
    await wire.close()


async def test_frame_without_service_or_object_body_is_21(module_hub: HubProcess) -> None:
    """The documented choice: a service-0 reply with r = 21, connection kept."""
    wire = await login(module_hub, module_hub.client_token("req_shape"))
    for frame in ({"body": {"requestId": 1}}, {"service": "103", "body": {}},
                  {"service": True, "body": {}}, {"service": 103, "body": "text"},
                  {"service": 103, "body": [1]}):
        await wire.send_raw(json.dumps(frame))
        reply = await wire.recv()
        assert reply["service"] == 0 and reply["body"]["r"] == 21, (frame, reply)
    assert (await wire.change("note", "alive"))["r"] == 0
    await wire.close()


@pytest.mark.parametrize("name", ["onlineStatus", "call"])
async def test_builtin_attribute_is_read_only_22(module_hub: HubProcess, name: str) -> None:
    wire = await login(module_hub, module_hub.client_token(
        "req_builtin", subscribe=["req_builtin_t"], attributes=[(name, "req_builtin_t")]))
    reply = await wire.change(name, "offline" if name == "onlineStatus" else "Answered")
    assert reply["r"] == 22, reply
    await wire.quiet(0.1)
    with module_hub.rest() as rest:
        put = rest.put("/v1/users/req_builtin/attributes",
                       json=[{"attribute": name, "value": "x"}])
        assert put.status_code == 400 and put.json()["r"] == 22, put.text
        values = user_of(rest.get("/v1/users/req_builtin").json())
    assert values["onlineStatus"] == "online"
    assert values["call"] is None
    await wire.close()


@pytest.mark.parametrize(("attribute", "value"), [
    ("bad name", "x"),
    ("", "x"),
    ("a" * 65, "x"),
    ("emoji😀", "x"),
    ("note", "x" * 1025),
    ("note", "é" * 513),  # 1026 bytes in UTF-8
])
async def test_invalid_name_or_value_is_23(module_hub: HubProcess, attribute: str,
                                           value: str) -> None:
    wire = await login(module_hub, module_hub.client_token("req_invalid"))
    reply = await wire.change(attribute, value)
    assert reply["r"] == 23, reply
    with module_hub.rest() as rest:
        values = user_of(rest.get("/v1/users/req_invalid").json())
    assert attribute not in values
    assert values.get("note") != value
    await wire.close()


async def test_limits_are_inclusive(module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token("req_limits"))
    for attribute, value in (("a" * 64, "x" * 1024), ("note", "é" * 512), ("n.a-m_e", 1.5),
                             ("flag", True), ("nothing", None), ("count", 7)):
        assert (await wire.change(attribute, value))["r"] == 0, attribute
    with module_hub.rest() as rest:
        values = user_of(rest.get("/v1/users/req_limits").json())
    assert values["a" * 64] == "x" * 1024
    assert values["note"] == "é" * 512
    assert (values["n.a-m_e"], values["flag"], values["count"]) == (1.5, True, 7)
    assert "nothing" in values and values["nothing"] is None
    await wire.close()


async def test_snapshot_of_a_topic_not_granted_is_24(module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token("req_snap",
                                                           subscribe=["req_snap_mine"]))
    assert (await wire.snapshot("req_snap_other"))["r"] == 24
    assert (await wire.snapshot("not a topic"))["r"] == 21
    assert (await wire.snapshot("req_snap_mine"))["r"] == 0
    await wire.close()


async def test_same_value_twice_is_acknowledged_and_publishes_nothing(
        module_hub: HubProcess) -> None:
    topic = "req_same_t"
    watcher = await login(module_hub, module_hub.client_token("req_same_w",
                                                              subscribe=[topic]))
    agent = await login(module_hub, module_hub.client_token(
        "req_same_a", attributes=[("manual_status", topic)]))
    assert (await agent.change("manual_status", "Available"))["r"] == 0
    first = await watcher.message(topic)
    for _ in range(3):
        assert (await agent.change("manual_status", "Available"))["r"] == 0
    await watcher.quiet(0.3)
    # A value of another type is a change.
    assert (await agent.change("manual_status", 1))["r"] == 0
    assert (await agent.change("manual_status", True))["r"] == 0
    assert (await agent.change("manual_status", "Break"))["r"] == 0
    seen = await watcher.messages(3, topic)
    assert [m["seq"] for m in seen] == [first["seq"] + 1, first["seq"] + 2, first["seq"] + 3]
    assert [m["message"]["newValue"] for m in seen] == [1, True, "Break"]
    await agent.close()
    await watcher.close()


async def test_client_ping_is_answered(module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token("req_ping"))
    for _ in range(3):
        reply = await wire.request(PING, {})
        assert reply["r"] == 0
        assert reply["requestId"] == wire.next_request
    await wire.send(PING, {})
    frame = await wire.recv()
    assert frame["service"] == PING and frame["body"]["r"] == 0
    await wire.close()


# -- frames that close the connection ----------------------------------------------------


async def _bystander_and_victim(hub: HubProcess, tag: str) -> tuple[Wire, Wire, str]:
    topic = f"req_{tag}_t"
    bystander = await login(hub, hub.client_token(f"req_{tag}_by", subscribe=[topic]))
    victim = await login(hub, hub.client_token(f"req_{tag}_victim",
                                               attributes=[("note", topic)]))
    assert (await victim.change("note", "before"))["r"] == 0
    assert (await bystander.message(topic))["message"]["newValue"] == "before"
    return bystander, victim, topic


async def _unharmed(hub: HubProcess, bystander: Wire, victim_id: str, topic: str) -> None:
    """The other connection still works and the victim's stored value did not change."""
    assert (await bystander.change("note", "after"))["r"] == 0
    assert (await bystander.request(PING, {}))["r"] == 0
    with hub.rest() as rest:
        assert user_of(rest.get(f"/v1/users/{victim_id}").json())["note"] == "before"
        assert rest.get("/healthz").status_code == 200
    # The victim's only later message is going offline.
    await bystander.quiet(0.2)
    fresh = await login(hub, hub.client_token(f"{victim_id}_again", subscribe=[topic]))
    assert fresh.authen["r"] == 0
    await fresh.close()


CLOSING_FRAMES = [
    ("not JSON", '{"service":103,"body":{"attribute":"note","value":"after"', CLOSE_INVALID_DATA),
    ("JSON array", '[103, {"attribute": "note", "value": "after"}]', CLOSE_INVALID_DATA),
    ("JSON string", '"hello"', CLOSE_INVALID_DATA),
    ("JSON number", "103", CLOSE_INVALID_DATA),
    ("over 64 KiB", json.dumps({"service": 103, "body": {
        "attribute": "note", "value": "after", "pad": "x" * 70_000}}), CLOSE_TOO_BIG),
    ("binary", json.dumps({"service": 103, "body": {
        "attribute": "note", "value": "after"}}).encode(), CLOSE_UNSUPPORTED),
]


@pytest.mark.parametrize(("tag", "data", "code"),
                         [(f"after{i}", d, c) for i, (_, d, c) in enumerate(CLOSING_FRAMES)],
                         ids=[n for n, _, _ in CLOSING_FRAMES])
async def test_bad_frame_after_authen_closes_only_that_connection(
        quick_hub: HubProcess, tag: str, data: str | bytes, code: int) -> None:
    bystander, victim, topic = await _bystander_and_victim(quick_hub, tag)
    await victim.send_raw(data)
    assert await victim.closed() == code
    await _unharmed(quick_hub, bystander, f"req_{tag}_victim", topic)
    await bystander.close()


@pytest.mark.parametrize(("data", "code"), [(d, c) for _, d, c in CLOSING_FRAMES],
                         ids=[n for n, _, _ in CLOSING_FRAMES])
async def test_bad_frame_before_authen_closes_the_connection(
        quick_hub: HubProcess, data: str | bytes, code: int) -> None:
    other = await login(quick_hub, quick_hub.client_token("req_before_by"))
    wire = await open_wire(quick_hub)
    await wire.send_raw(data)
    assert await wire.closed() == code
    assert (await other.change("note", "fine"))["r"] == 0
    await other.close()


async def test_frame_of_exactly_64_kib_is_read(module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token("req_64k"))
    frame = {"service": CHANGE_ATTRIBUTE, "body": {"attribute": "note", "value": "ok",
                                                   "requestId": 7, "pad": ""}}
    frame["body"]["pad"] = "x" * (64 * 1024 - len(json.dumps(frame)))
    text = json.dumps(frame)
    assert len(text.encode()) == 64 * 1024
    await wire.send_raw(text)
    reply = await wire.until(CHANGE_ATTRIBUTE)
    assert reply["body"] == {"r": 0, "message": "SUCCESS", "requestId": 7}
    await wire.close()


# -- the hub's PINGs ----------------------------------------------------------------------


async def test_hub_pings_and_closes_a_silent_connection(make_hub: HubFactory) -> None:
    hub = make_hub(ping_after_ms=300, ping_timeout_extra_ms=300)
    silent = await login(hub, hub.client_token("req_silent"))
    assert silent.authen["ping_after_ms"] == 300
    started = time.monotonic()
    code = await silent.closed(timeout=5)
    elapsed = time.monotonic() - started
    assert code == CLOSE_PING_TIMEOUT
    assert 0.55 <= elapsed < 2.0, elapsed
    pings = [f for f in silent.backlog if f["service"] == PING]
    assert pings and all(f["body"] == {} for f in pings)
    assert len(pings) <= 3


async def test_answering_the_hubs_ping_keeps_the_connection_without_ping_pong(
        make_hub: HubFactory) -> None:
    hub = make_hub(ping_after_ms=300, ping_timeout_extra_ms=300)
    watcher = await login(hub, hub.client_token("req_pong_w", subscribe=["req_pong_t"]))
    wire = await login(hub, hub.client_token("req_pong"))
    deadline = time.monotonic() + 2.0
    pings: list[float] = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frame = await wire.recv(timeout=remaining)
        except TimeoutError:
            break
        assert frame["service"] == PING, frame
        assert frame["body"] == {}, "the hub answered our answer (ping-pong)"
        pings.append(time.monotonic())
        await wire.send(PING, {})  # the answer, as Stringee's SDK sends it
    # Still open after more than twice the silence limit, pinged at the hub's pace.
    assert 4 <= len(pings) <= 2.0 / 0.3 + 1, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert min(gaps) >= 0.25, gaps
    assert (await wire.change("note", "alive"))["r"] == 0
    # The watcher never answered: it was closed, the answering client was not.
    assert await watcher.closed(timeout=1) == CLOSE_PING_TIMEOUT
    await wire.close()


async def test_authen_reply_is_the_answer_to_authen(module_hub: HubProcess) -> None:
    wire = await open_wire(module_hub)
    await wire.send(AUTHEN, {"accesstoken": module_hub.client_token("req_first"),
                             "requestId": 99})
    frame = await wire.recv()
    assert frame["service"] == AUTHEN and frame["body"]["requestId"] == 99
    assert frame["body"]["r"] == 0
    await wire.quiet(0.1, services=(SUBSCRIBE_FROM_SERVER, PING))
    await wire.close()


# -- several frames in one TCP segment ------------------------------------------------------


def _masked(opcode: Opcode, payload: bytes) -> bytes:
    return WsFrame(opcode, payload).serialize(mask=True)


def _change(value: str) -> bytes:
    body = {"attribute": "manual_status", "value": value, "requestId": 1}
    return json.dumps({"service": CHANGE_ATTRIBUTE, "body": body}).encode()


def _status_of(hub: HubProcess, user: str) -> object:
    with hub.rest() as rest:
        return user_of(rest.get(f"/v1/users/{user}").json()).get("manual_status")


async def test_a_request_and_a_close_in_one_segment_are_both_handled(
        module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token(
        "seg_close", attributes=[("manual_status", "seg_t")]))
    # Written under the client library: the request, then a close, in one write.
    wire.ws.transport.write(_masked(Opcode.TEXT, _change("lunch"))
                            + _masked(Opcode.CLOSE, Close(1000, "bye").serialize()))
    deadline = time.monotonic() + 5
    while _status_of(module_hub, "seg_close") != "lunch":
        assert time.monotonic() < deadline, "the request before the close was dropped"
        await asyncio.sleep(0.05)


async def test_a_request_behind_a_frame_that_is_not_utf8_is_not_handled(
        module_hub: HubProcess) -> None:
    wire = await login(module_hub, module_hub.client_token(
        "seg_utf8", attributes=[("manual_status", "seg_t")]))
    assert (await wire.change("manual_status", "before"))["r"] == 0
    wire.ws.transport.write(_masked(Opcode.TEXT, b'{"service": 1, "body": "\xff"}')
                            + _masked(Opcode.TEXT, _change("after")))
    assert await wire.closed() == CLOSE_INVALID_DATA
    await asyncio.sleep(0.3)
    assert _status_of(module_hub, "seg_utf8") == "before"
