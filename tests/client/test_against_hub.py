"""The client SDK against a real hub process (``monitor hub``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from monitor.client import (
    AsyncRestClient,
    AuthenticationError,
    Backoff,
    HubClient,
    NotFoundError,
    RefusedError,
    RestClient,
)
from tests.client.conftest import Recorder
from tests.client.fakehub import eventually
from tests.client.netproxy import TcpProxy
from tests.hubproc import KEY_SECRET, KEY_SID, HubProcess

_topics = itertools.count(1)


@pytest.fixture
def topic() -> str:
    """A topic no other test of the module uses."""
    return f"team_{next(_topics)}"


@pytest.fixture
async def proxy(module_hub: HubProcess) -> AsyncIterator[TcpProxy]:
    """A cuttable TCP path to the module's hub."""
    p = await TcpProxy("127.0.0.1", module_hub.ws_port).start()
    try:
        yield p
    finally:
        await p.close()


def agent_token(hub: HubProcess, user: str, topic: str, **options: Any) -> str:
    return hub.client_token(user, attributes=[("manual_status", topic)], **options)


def watcher_token(hub: HubProcess, topic: str, user: str = "sup") -> str:
    return hub.client_token(user, subscribe=[topic])


def values_of(events: Recorder) -> list[Any]:
    return [p["message"]["newValue"] for p in events.of("messagefromtopic")]


# -- events, requests, errors -----------------------------------------------------------


async def test_handlers_and_iterator_receive_messagefromtopic(module_hub, make_client, topic):
    watcher = make_client(module_hub.ws_url, watcher_token(module_hub, topic))
    events = Recorder(watcher)
    seen_async: list[int] = []

    async def on_async(body: dict[str, Any]) -> None:
        seen_async.append(body["seq"])

    watcher.on("messagefromtopic", on_async)
    stream = watcher.messages()
    reply = await watcher.connect()
    assert reply["userId"] == "sup" and reply["subscribe"] == [topic]
    assert reply["topics"][topic]["seq"] == 0
    agent = make_client(module_hub.ws_url, agent_token(module_hub, "agent_1", topic))
    await agent.connect()
    for value in ("ready", "busy", "away"):
        assert (await agent.change_attribute("manual_status", value))["r"] == 0
    await events.wait("messagefromtopic", 3)
    body = events.of("messagefromtopic")[0]
    assert body["topic"] == topic and body["seq"] == 1
    message = body["message"]
    assert (message["attribute"], message["newValue"], message["oldValue"]) == (
        "manual_status", "ready", None)
    assert message["userId"] == "agent_1" and message["projectId"] == 25
    assert isinstance(message["timestamp"], int) and message["callEnded"] is True
    assert values_of(events) == ["ready", "busy", "away"]
    assert [(await anext(stream))["seq"] for _ in range(3)] == [1, 2, 3]
    await eventually(lambda: seen_async == [1, 2, 3])
    assert events.names()[:2] == ["connect", "authen"]


async def test_errors_carry_r_and_message(module_hub, make_client, topic):
    agent = make_client(module_hub.ws_url, agent_token(module_hub, "agent_2", topic))
    await agent.connect()
    with pytest.raises(RefusedError) as read_only:
        await agent.change_attribute("onlineStatus", "offline")
    assert read_only.value.r == 22 and read_only.value.message
    with pytest.raises(RefusedError) as bad_name:
        await agent.change_attribute("no spaces allowed", "x")
    assert bad_name.value.r == 23
    with pytest.raises(RefusedError) as too_long:
        await agent.change_attribute("manual_status", "x" * 1025)
    assert too_long.value.r == 23
    with pytest.raises(RefusedError) as not_granted:
        await agent.snapshot(topic)
    assert not_granted.value.r == 24
    with pytest.raises(RefusedError) as unknown:
        await agent.request(4242, {})
    assert unknown.value.r == 21
    assert agent.connected

    forged = HubClient(module_hub.ws_url, module_hub.client_token("x", other_project=True)
                       .rsplit(".", 1)[0] + ".c2lnbmF0dXJl")
    with pytest.raises(AuthenticationError) as refused:
        await forged.connect()
    assert refused.value.r == 10 and "signature" in refused.value.message
    await forged.close()


async def test_expired_token_at_connect_is_replaced_by_the_provider(module_hub, make_client,
                                                                   topic):
    expired = agent_token(module_hub, "agent_3", topic, ttl_s=-120)
    alone = make_client(module_hub.ws_url, expired)
    with pytest.raises(AuthenticationError) as refused:
        await alone.connect()
    assert refused.value.r == 6
    fresh = agent_token(module_hub, "agent_3", topic)
    client = make_client(module_hub.ws_url, expired, token_provider=lambda: fresh)
    assert (await client.connect())["userId"] == "agent_3"
    assert client.token == fresh


async def test_snapshot_and_otherdeviceauthen(module_hub, make_client, topic):
    agent = make_client(module_hub.ws_url, agent_token(module_hub, "agent_4", topic))
    events = Recorder(agent)
    await agent.connect()
    await agent.change_attribute("manual_status", "ready")
    watcher = make_client(module_hub.ws_url, watcher_token(module_hub, topic))
    await watcher.connect()
    snap = await watcher.snapshot(topic)
    assert snap["topic"] == topic and snap["seq"] == 1 and isinstance(snap["epoch"], str)
    assert [(v["userId"], v["attribute"], v["value"]) for v in snap["values"]] == [
        ("agent_4", "manual_status", "ready")]
    second = make_client(module_hub.ws_url, agent_token(module_hub, "agent_4", topic))
    await second.connect()
    other = (await events.wait("otherdeviceauthen"))[0]
    assert other["userId"] == "agent_4" and other["status"] == "connected"


# -- resume ----------------------------------------------------------------------------


async def test_resume_after_a_network_drop_replays_what_was_missed(
        module_hub, make_client, proxy, topic):
    watcher = make_client(proxy.url, watcher_token(module_hub, topic))
    events = Recorder(watcher)
    await watcher.connect()
    agent = make_client(module_hub.ws_url, agent_token(module_hub, "agent_5", topic))
    await agent.connect()
    await agent.change_attribute("manual_status", "a")
    await events.wait("messagefromtopic")
    proxy.go_down()
    await eventually(lambda: not watcher.connected)
    for value in ("b", "c", "d"):
        await agent.change_attribute("manual_status", value)
    proxy.come_back()
    await events.wait("authen", 2)
    await agent.change_attribute("manual_status", "e")
    await events.wait("messagefromtopic", 5)
    assert events.of("authen")[1]["recovered"] == {topic: True}
    assert values_of(events) == ["a", "b", "c", "d", "e"]
    assert [p["seq"] for p in events.of("messagefromtopic")] == [1, 2, 3, 4, 5]
    assert events.of("resync") == [] and watcher.stats.reconnects == 1


async def test_drop_connection_cuts_the_socket_and_the_client_resumes(
        module_hub, make_client, topic):
    watcher = make_client(module_hub.ws_url, watcher_token(module_hub, topic))
    events = Recorder(watcher)
    assert watcher.drop_connection() is False  # nothing to cut yet
    await watcher.connect()
    agent = make_client(module_hub.ws_url, agent_token(module_hub, "agent_drop", topic))
    await agent.connect()
    await agent.change_attribute("manual_status", "a")
    await events.wait("messagefromtopic")
    assert watcher.drop_connection() is True
    await events.wait("disconnect")
    await agent.change_attribute("manual_status", "b")
    await events.wait("authen", 2)
    await events.wait("messagefromtopic", 2)
    assert values_of(events) == ["a", "b"]
    assert watcher.stats.reconnects == 1 and events.of("resync") == []


async def test_resume_beyond_the_hubs_history_resyncs_from_a_snapshot(tmp_path, make_client):
    hub = HubProcess(tmp_path, extra_hub="history_size = 2").start()
    proxy = await TcpProxy("127.0.0.1", hub.ws_port).start()
    try:
        topic = "team_gap"
        watcher = make_client(proxy.url, watcher_token(hub, topic))
        events = Recorder(watcher)
        await watcher.connect()
        agent = make_client(hub.ws_url, agent_token(hub, "agent_6", topic))
        await agent.connect()
        await agent.change_attribute("manual_status", "a")
        await events.wait("messagefromtopic")
        proxy.go_down()
        await eventually(lambda: not watcher.connected)
        for value in ("b", "c", "d", "e"):  # more than the hub keeps
            await agent.change_attribute("manual_status", value)
        proxy.come_back()
        resync = (await events.wait("resync"))[0]
        assert events.of("authen")[1]["recovered"] == {topic: False}
        assert resync["reason"] == "not_recovered" and resync["lastSeq"] == 1
        assert resync["snapshot"]["seq"] == 5
        assert [v["value"] for v in resync["snapshot"]["values"]] == ["e"]
        await agent.change_attribute("manual_status", "f")
        await events.wait("messagefromtopic", 2)
        assert values_of(events) == ["a", "f"]  # b-e are in the snapshot, not re-sent
        assert [p["seq"] for p in events.of("messagefromtopic")] == [1, 6]
    finally:
        await proxy.close()
        hub.kill()


async def test_hub_restart_loses_no_acknowledged_change_and_duplicates_nothing(
        hub, make_client):
    topic = "team_restart"
    watcher = make_client(hub.ws_url, watcher_token(hub, topic), request_timeout=15)
    events = Recorder(watcher)
    await watcher.connect()
    agent = make_client(hub.ws_url, agent_token(hub, "agent_7", topic), request_timeout=15)
    await agent.connect()
    acknowledged: list[str] = []

    async def change(value: str) -> None:
        assert (await agent.change_attribute("manual_status", value))["r"] == 0
        acknowledged.append(value)

    for i in range(6):
        await change(f"v{i}")
    restarting = asyncio.create_task(asyncio.to_thread(hub.restart))
    await eventually(lambda: not agent.connected, timeout=10)
    await change("v6")  # waits for the reconnect, then is applied by the new hub
    await restarting
    for i in range(7, 10):
        await change(f"v{i}")
    await eventually(lambda: values_of(events)[-1:] == ["v9"], timeout=10)

    names = [n for n in events.names() if n in ("messagefromtopic", "resync")]
    split = names.index("resync")
    assert names.count("resync") == 1
    before = values_of(events)[:split]
    after = values_of(events)[split:]
    resync = events.of("resync")[0]
    assert resync["reason"] == "not_recovered"  # a new hub process, a new epoch
    snapshot_value = resync["snapshot"]["values"][0]["value"]
    # every change acknowledged before the restart reached the watcher, once, in order
    assert before == acknowledged[:6]
    # the snapshot holds the durable state: the last change before the restart or later
    assert snapshot_value in ("v5", "v6")
    # after it, exactly the later changes, each once
    assert after == acknowledged[acknowledged.index(snapshot_value) + 1:]
    seqs = [p["seq"] for p in events.of("messagefromtopic")]
    assert seqs[:split] == list(range(1, 7))
    assert seqs[split:] == list(range(seqs[split], seqs[split] + len(after)))
    assert watcher.positions()[topic].epoch == resync["snapshot"]["epoch"]
    assert agent.stats.reconnects == 1 and watcher.stats.reconnects == 1
    with RestClient(hub.api_url, hub.rest_token()) as rest:
        user = rest.get_user("agent_7")
    assert {"attribute": "manual_status", "value": "v9"} in user["attributes"]


# -- tokens ----------------------------------------------------------------------------


async def test_token_is_refreshed_before_exp_and_used_on_reconnect(
        module_hub, make_client, proxy, topic):
    issued: list[str] = []

    def provider() -> str:
        issued.append(watcher_token(module_hub, topic))
        return issued[-1]

    short = module_hub.client_token("sup", subscribe=[topic], ttl_s=40)
    client = make_client(proxy.url, short, token_provider=provider, refresh_before=39.5)
    events = Recorder(client)
    await client.connect()
    await eventually(lambda: len(issued) == 1, timeout=3, message="a token refresh")
    assert client.token == issued[0]
    proxy.cut()
    await events.wait("authen", 2)
    assert [a["r"] for a in events.of("authen")] == [0, 0] and client.connected


async def test_expired_token_on_reconnect_asks_for_a_new_one(
        module_hub, make_client, proxy, topic):
    client = make_client(proxy.url, watcher_token(module_hub, topic), refresh_before=None)
    events = Recorder(client)
    fresh = watcher_token(module_hub, topic)
    client.on("requestnewtoken", lambda payload: fresh)
    await client.connect()
    client.set_token(module_hub.client_token("sup", subscribe=[topic], ttl_s=-120))
    proxy.cut()
    await events.wait("authen", 3)
    assert [a["r"] for a in events.of("authen")] == [0, 6, 0]
    assert events.of("requestnewtoken")[0]["reason"] == "expired"
    assert client.connected and client.token == fresh


# -- liveness --------------------------------------------------------------------------


async def test_answers_hub_pings_and_detects_a_frozen_hub(tmp_path, make_client):
    hub = HubProcess(tmp_path, extra_hub="ping_after_ms = 100\nping_timeout_extra_ms = 700"
                     ).start()
    try:
        client = make_client(hub.ws_url, hub.client_token("sup"), silence_timeout=0.8,
                             open_timeout=0.3, backoff=Backoff(base=0.05, cap=0.1))
        events = Recorder(client)
        await client.connect()
        await asyncio.sleep(2.0)  # 2.5 times the hub's silence limit (0.8 s)
        assert client.connected and client.stats.authenticated == 1, hub.log()[-2000:]
        os.kill(hub.proc.pid, signal.SIGSTOP)
        try:
            disconnect = (await events.wait("disconnect", timeout=3))[0]
        finally:
            os.kill(hub.proc.pid, signal.SIGCONT)
        assert disconnect["reason"].startswith("hub silent") and disconnect["reconnecting"]
        assert client.stats.silent_hub == 1
        await events.wait("authen", 2, timeout=5)
        assert client.connected
    finally:
        hub.kill()


async def test_own_pings_keep_a_quiet_connection_alive(module_hub, make_client, topic):
    # the hub PINGs every 15 s; the client, 1 s of silence allowed, PINGs on its own
    client = make_client(module_hub.ws_url, watcher_token(module_hub, topic),
                         silence_timeout=1.0)
    events = Recorder(client)
    await client.connect()
    await asyncio.sleep(2.5)
    assert client.connected and client.stats.silent_hub == 0
    assert events.of("disconnect") == [] and client.stats.authenticated == 1


# -- many clients, REST ----------------------------------------------------------------


async def test_many_clients_in_one_process(module_hub, make_client, topic):
    watchers = [make_client(module_hub.ws_url, watcher_token(module_hub, topic, f"sup_{i}"))
                for i in range(100)]
    recorders = [Recorder(w) for w in watchers]
    await asyncio.gather(*(w.connect() for w in watchers))
    agents = [make_client(module_hub.ws_url, agent_token(module_hub, f"many_{i}", topic))
              for i in range(20)]
    await asyncio.gather(*(a.connect() for a in agents))
    await asyncio.gather(*(a.change_attribute("manual_status", "ready") for a in agents))
    for recorder in recorders:
        await recorder.wait("messagefromtopic", 20)
        assert [p["seq"] for p in recorder.of("messagefromtopic")] == list(range(1, 21))
    assert all(w.stats.duplicates == 0 and w.stats.resyncs == 0 for w in watchers)


async def test_rest_client_against_the_hub(module_hub, make_client, topic):
    watcher = make_client(module_hub.ws_url, watcher_token(module_hub, topic))
    events = Recorder(watcher)
    await watcher.connect()
    agents = [make_client(module_hub.ws_url, agent_token(module_hub, f"rest_{i}", topic),
                          stop_on_close_codes={4005})
              for i in range(5)]
    agent_events = Recorder(agents[0])
    await asyncio.gather(*(a.connect() for a in agents))
    with RestClient(module_hub.api_url, key=(KEY_SID, KEY_SECRET)) as rest:
        user = rest.get_user("rest_0")
        assert user["userId"] == "rest_0"
        assert {"attribute": "onlineStatus", "value": "online"} in user["attributes"]
        changed = rest.change_attributes("rest_0", {"manual_status": "away"})
        assert {"attribute": "manual_status", "value": "away"} in changed["attributes"]
        message = (await events.wait("messagefromtopic"))[0]["message"]
        assert (message["userId"], message["newValue"]) == ("rest_0", "away")
        online = [u["userId"] for u in rest.list_users(page_size=2)]
        assert {f"rest_{i}" for i in range(5)} <= set(online)
        assert len(online) == len(set(online))
        away = [u["userId"] for u in rest.list_users(attribute="manual_status", value="away")]
        assert away == ["rest_0"]
        with pytest.raises(NotFoundError) as missing:
            rest.get_user("nobody_at_all")
        assert (missing.value.r, missing.value.status) == (25, 404)
        with pytest.raises(RefusedError) as read_only:
            rest.change_attributes("rest_0", {"onlineStatus": "offline"})
        assert (read_only.value.r, read_only.value.status) == (22, 400)
        assert rest.disconnect_user("rest_0")["closed"] == 1
    disconnect = (await agent_events.wait("disconnect"))[0]
    assert disconnect["code"] == 4005 and disconnect["reconnecting"] is False
    assert not agents[0].running and agents[1].connected

    with RestClient(module_hub.api_url, agent_token(module_hub, "rest_1", topic)) as rest, \
            pytest.raises(AuthenticationError) as not_rest:
        rest.get_user("rest_1")
    assert (not_rest.value.r, not_rest.value.status) == (9, 401)

    async with AsyncRestClient(module_hub.api_url, module_hub.rest_token()) as arest:
        everyone = [u["userId"] async for u in arest.list_users(include_offline=True,
                                                                page_size=3)]
        assert "rest_0" in everyone and len(everyone) == len(set(everyone))
        call = await arest.report_call("pbx-1", "Ringing", from_="+84900000001", to="rest_1")
        assert call["callId"] == "pbx-1" and call["status"] == "Ringing"
        assert [c["callId"] for c in await arest.list_calls()] == ["pbx-1"]
        await arest.report_call("pbx-1", "Ended")
        assert await arest.list_calls() == []

