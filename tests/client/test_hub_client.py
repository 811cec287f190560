"""HubClient against the in-test fake hub: events, requests, errors, PING, streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.client import (
    AuthenticationError,
    Backoff,
    ConnectionLostError,
    HubClient,
    HubUnreachableError,
    RefusedError,
    RequestTimeoutError,
)
from monitor.protocol import Result, Service
from monitor.tokens import mint_client_token
from tests.client.conftest import Recorder
from tests.client.fakehub import FakeHub, eventually, token
from tests.hubproc import KEY_SID, free_port

TEAM = "team_a"


def agent_token(user: str) -> str:
    return token(user, subscribe=[TEAM], attributes=[("manual_status", TEAM)])


async def test_connect_emits_connect_then_authen_and_returns_the_reply(fake, make_client):
    client = make_client(fake.url, agent_token("agent_1"), device_id="dev-1")
    events = Recorder(client)
    reply = await client.connect()
    assert reply["r"] == 0 and reply["userId"] == "agent_1"
    assert client.connected and client.user_id == "agent_1"
    await events.wait("authen")
    assert events.names() == ["connect", "authen"]
    assert events.of("authen")[0]["subscribe"] == [TEAM]
    sent = fake.authens[0]
    assert sent["deviceId"] == "dev-1" and sent["accesstoken"] == client.token
    assert "resume" not in sent  # nothing to resume on a first connect
    assert client.positions()[TEAM].epoch == fake.epoch


async def test_sync_and_async_handlers_see_messages_in_order(fake, make_client):
    watcher = make_client(fake.url, token("sup", subscribe=[TEAM]))
    seen_sync: list[int] = []
    seen_async: list[int] = []

    @watcher.on("messagefromtopic")
    def on_sync(body: dict[str, Any]) -> None:
        seen_sync.append(body["seq"])

    async def on_async(body: dict[str, Any]) -> None:
        await asyncio.sleep(0.001 * (5 - body["seq"]))  # slower first: order must hold
        seen_async.append(body["seq"])

    watcher.on("messagefromtopic", on_async)
    await watcher.connect()
    agent = make_client(fake.url, agent_token("agent_1"))
    await agent.connect()
    for status in ("ready", "busy", "away", "ready"):
        await agent.change_attribute("manual_status", status)
    await eventually(lambda: len(seen_async) == 4)
    assert seen_sync == seen_async == [1, 2, 3, 4]


async def test_off_removes_a_handler_and_a_failing_handler_does_not_stop_others(
        fake, make_client):
    client = make_client(fake.url, token("sup", subscribe=[TEAM]))
    seen: list[int] = []

    def broken(body: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    def removed(body: dict[str, Any]) -> None:
        seen.append(-1)

    client.on("messagefromtopic", broken)
    client.on("messagefromtopic", removed)
    client.on("messagefromtopic", lambda body: seen.append(body["seq"]))
    client.off("messagefromtopic", removed)
    await client.connect()
    await fake.publish(TEAM, "agent_1", "manual_status", "ready")
    await fake.publish(TEAM, "agent_1", "manual_status", "away")
    await eventually(lambda: seen == [1, 2])
    with pytest.raises(ValueError):
        client.on("nosuchevent", print)  # type: ignore[arg-type]


async def test_change_attribute_returns_the_reply_and_publishes(fake, make_client):
    watcher = make_client(fake.url, token("sup", subscribe=[TEAM]))
    events = Recorder(watcher)
    await watcher.connect()
    agent = make_client(fake.url, agent_token("agent_1"))
    await agent.connect()
    reply = await agent.change_attribute("manual_status", "ready")
    assert reply["r"] == 0 and isinstance(reply["requestId"], int)
    message = (await events.wait("messagefromtopic"))[0]
    assert message["topic"] == TEAM and message["message"]["newValue"] == "ready"
    assert message["message"]["userId"] == "agent_1"


async def test_refusals_raise_typed_errors_carrying_r_and_message(fake, make_client):
    client = make_client(fake.url, agent_token("agent_1"))
    await client.connect()
    with pytest.raises(RefusedError) as read_only:
        await client.change_attribute("onlineStatus", "offline")
    assert read_only.value.r == Result.READ_ONLY_ATTRIBUTE == 22
    assert read_only.value.message == "attribute is read-only"
    assert read_only.value.status is None
    with pytest.raises(RefusedError) as not_granted:
        await client.snapshot("someone_elses_topic")
    assert not_granted.value.r == 24 and not_granted.value.result is Result.TOPIC_NOT_GRANTED
    with pytest.raises(RefusedError) as unknown:
        await client.request(4242, {})
    assert unknown.value.r == 21
    assert client.connected  # a refusal is not a connection problem


async def test_snapshot_returns_epoch_seq_and_values(fake, make_client):
    await fake.publish(TEAM, "agent_1", "manual_status", "ready")
    await fake.publish(TEAM, "agent_2", "manual_status", "away")
    client = make_client(fake.url, token("sup", subscribe=[TEAM]))
    await client.connect()
    snap = await client.snapshot(TEAM)
    assert snap["epoch"] == fake.epoch and snap["seq"] == 2
    assert {(v["userId"], v["value"]) for v in snap["values"]} == {
        ("agent_1", "ready"), ("agent_2", "away")}


async def test_refused_token_raises_authentication_error_and_emits_authen(fake, make_client):
    bad = mint_client_token(KEY_SID, "not-the-secret-but-just-as-long-0123456789", "agent_1")
    client = make_client(fake.url, bad)
    events = Recorder(client)
    with pytest.raises(AuthenticationError) as refused:
        await client.connect()
    assert refused.value.r == Result.TOKEN_SIGNATURE == 10
    assert refused.value.message == "invalid signature"
    await events.wait("authen")
    assert events.of("authen")[0]["r"] == 10
    assert not client.connected and not client.running


async def test_unreachable_hub_raises_and_retry_waits_for_it(make_client):
    port = free_port()
    client = make_client(f"ws://127.0.0.1:{port}/", agent_token("agent_1"))
    with pytest.raises(HubUnreachableError):
        await client.connect()
    hub = FakeHub()
    hub.port = port
    connecting = asyncio.create_task(client.connect(retry=True))
    await asyncio.sleep(0.1)
    assert not connecting.done()
    await hub.start()
    try:
        reply = await asyncio.wait_for(connecting, 3)
        assert reply["userId"] == "agent_1"
    finally:
        await client.close()
        await hub.stop()


async def test_close_stops_a_retrying_connect(make_client):
    client = make_client(f"ws://127.0.0.1:{free_port()}/", agent_token("agent_1"),
                         backoff=Backoff(base=5.0, cap=5.0))
    connecting = asyncio.create_task(client.connect(retry=True))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(connecting, 1)  # not after the 5 s backoff
    assert not client.running


async def test_messages_iterator_yields_messages_and_ends_on_close(fake, make_client):
    client = make_client(fake.url, token("sup", subscribe=[TEAM]))
    await client.connect()
    stream = client.messages()
    received: list[dict[str, Any]] = []

    async def consume() -> None:
        async for body in stream:
            received.append(body)

    consumer = asyncio.create_task(consume())
    for value in ("ready", "busy"):
        await fake.publish(TEAM, "agent_1", "manual_status", value)
    await eventually(lambda: len(received) == 2)
    await client.close()
    await asyncio.wait_for(consumer, 2)  # iteration ended without an error
    assert [b["message"]["newValue"] for b in received] == ["ready", "busy"]


async def test_request_before_connect_raises_connection_lost(make_client):
    client = make_client("ws://127.0.0.1:9/", agent_token("agent_1"))
    with pytest.raises(ConnectionLostError):
        await client.change_attribute("manual_status", "ready")


async def test_request_without_reply_times_out(fake, make_client):
    client = make_client(fake.url, agent_token("agent_1"))
    await client.connect()
    fake.conns[0].hold_replies = True
    with pytest.raises(RequestTimeoutError):
        await client.change_attribute("manual_status", "ready", timeout=0.2)


async def test_answers_the_hubs_ping_and_ignores_bad_frames(fake, make_client):
    client = make_client(fake.url, agent_token("agent_1"))
    await client.connect()
    conn = fake.conns[0]
    await conn.ws.send("this is not json")
    await conn.ws.send("[1, 2]")
    await conn.send(Service.PING, {})
    await eventually(lambda: (Service.PING, {}) in conn.frames, message="PING answer")
    assert client.connected and client.stats.authenticated == 1
    # a PING that answers something (r present) is not answered back
    await conn.send(Service.PING, {"r": 0})
    await asyncio.sleep(0.05)
    assert conn.frames.count((Service.PING, {})) == 1


async def test_otherdeviceauthen_reaches_the_users_other_connections(fake, make_client):
    first = make_client(fake.url, agent_token("agent_1"))
    events = Recorder(first)
    await first.connect()
    second = make_client(fake.url, agent_token("agent_1"))
    await second.connect()
    body = (await events.wait("otherdeviceauthen"))[0]
    assert body["userId"] == "agent_1"


async def test_async_with_connects_and_closes(fake):
    async with HubClient(fake.url, agent_token("agent_1")) as client:
        assert client.connected
        events = Recorder(client)
    assert not client.connected and not client.running
    assert events.of("disconnect") == [
        {"code": 1000, "reason": "client closed", "reconnecting": False}]


async def test_many_clients_in_one_process(fake, make_client):
    watchers = [make_client(fake.url, token(f"sup_{i}", subscribe=[TEAM])) for i in range(40)]
    recorders = [Recorder(w) for w in watchers]
    await asyncio.gather(*(w.connect() for w in watchers))
    agents = [make_client(fake.url, agent_token(f"agent_{i}")) for i in range(10)]
    await asyncio.gather(*(a.connect() for a in agents))
    await asyncio.gather(*(a.change_attribute("manual_status", "ready") for a in agents))
    for recorder in recorders:
        await recorder.wait("messagefromtopic", 10)
        assert recorder.seqs() == list(range(1, 11))
    assert {m["message"]["userId"] for m in recorders[0].of("messagefromtopic")} == {
        f"agent_{i}" for i in range(10)}


async def test_hub_close_code_in_stop_list_ends_the_client(fake, make_client):
    client = make_client(fake.url, agent_token("agent_1"), stop_on_close_codes={4001})
    events = Recorder(client)
    stream = client.messages()
    await client.connect()
    await fake.conns[0].ws.close(4001, "disconnected by a supervisor")
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(client.wait_closed(), 2)
    assert events.of("disconnect")[-1] == {
        "code": 4001, "reason": "disconnected by a supervisor", "reconnecting": False}
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(anext(stream), 1)
    assert len(fake.authens) == 1


def test_needs_a_token_or_a_provider():
    with pytest.raises(ValueError):
        HubClient("ws://127.0.0.1:1/")

