"""The cluster arbitrates: calls are decided in Redis, timers and presence span nodes.

Three nodes on one real redis-server. Each rule of docs/scaling.md's "Calls on several
nodes" has a test here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import Redis

from tests.calls.callwire import (
    ANSWER,
    CALL_STATE,
    HANGUP,
    LIST_CALLS,
    agent,
    call_ok,
    control,
    incoming,
    state,
    states,
    supervisor,
    uid,
)
from tests.cluster.conftest import NodeFactory, RedisServer
from tests.hub.wire import Wire
from tests.hubproc import HubProcess

OTHER_DEVICE_AUTHEN = 104


PAUSE_MS = 2000  # long enough for both proposals to be made on a loaded machine
# Nodes whose lease outlasts the pause: held writes hold their renewals too, and a lease
# that ran out meanwhile gets a node swept by another (its calls ended, "party
# disconnected") depending on which of the held writes Redis runs first.
STEADY = {"node_lease_ms": 4 * PAUSE_MS}


def paused_writes(redis: RedisServer, ms: int = PAUSE_MS) -> None:
    """Hold every write to Redis for ``ms``: proposals made meanwhile race."""
    with Redis.from_url(redis.url) as client:
        client.client_pause(ms, all=False)


@pytest.fixture
def steady_nodes(make_node: NodeFactory) -> list[HubProcess]:
    """Three hub nodes on one redis-server, none swept while writes are held."""
    return [make_node(**STEADY) for _ in range(3)]


async def answered_call(nodes: list[HubProcess]) -> tuple[str, Wire, Wire, Wire, str]:
    """A call from a caller on node 0 to a callee with one device on node 1 and one on
    node 2, ringing: (call id, caller, device on node 1, device on node 2, callee)."""
    caller_id, callee_id = uid("arb_caller"), uid("arb_callee")
    callee_1 = await agent(nodes[1], callee_id, device="desk")
    callee_2 = await agent(nodes[2], callee_id, device="phone")
    caller = await agent(nodes[0], caller_id)
    call_id = str((await call_ok(caller, callee_id))["callId"])
    for device in (callee_1, callee_2):
        await incoming(device, call_id)
        await state(device, call_id, "Calling")
    return call_id, caller, callee_1, callee_2, callee_id


async def test_two_nodes_answering_one_call_at_once_exactly_one_wins(
        steady_nodes: list[HubProcess], redis_server: RedisServer) -> None:
    nodes = steady_nodes
    call_id, caller, desk, phone, _ = await answered_call(nodes)
    board = await supervisor(nodes[0])
    # Both nodes decide from the same view (Calling) while Redis holds their writes; it
    # then runs both proposals, one after the other: the second must be refused.
    paused_writes(redis_server)
    replies = await asyncio.gather(control(desk, ANSWER, call_id),
                                   control(phone, ANSWER, call_id))
    results = sorted(r["r"] for r in replies)
    assert results == [0, 27], replies
    loser = replies[0] if replies[0]["r"] else replies[1]
    assert "changed meanwhile" in loser["message"]
    # Everyone sees one Ringing and one Answered, by the winner.
    await states(caller, call_id, "Calling", "Ringing", "Answered")
    winner = desk if replies[0]["r"] == 0 else phone
    answered = (await states(winner, call_id, "Ringing", "Answered"))[-1]
    assert answered["answeredBy"] == ("desk" if winner is desk else "phone")
    await caller.quiet(1.0, services=(CALL_STATE,))
    seen = [m["message"]["newValue"] for m in await board.messages(4, "ALL_CALL_STATUS")]
    assert seen == ["Ringing", "Ringing", "Answered", "Answered"]
    await board.quiet(0.5)
    assert (await control(caller, HANGUP, call_id))["r"] == 0
    for wire in (caller, desk, phone, board):
        await wire.close()


async def test_a_call_changed_by_two_nodes_rest_reports_one_and_refuses_the_other(
        steady_nodes: list[HubProcess], redis_server: RedisServer) -> None:
    nodes = steady_nodes
    call_id = uid("pstn")
    agent_id = uid("arb_agent")
    watcher = await agent(nodes[0], agent_id)
    with nodes[1].rest() as rest:
        assert rest.put(f"/v1/calls/{call_id}", json={
            "from": "+4420123", "to": agent_id, "status": "Ringing"}).status_code == 200
    paused_writes(redis_server)

    def report(node: HubProcess, status: str) -> Any:
        with node.rest() as rest:
            return rest.put(f"/v1/calls/{call_id}", json={"status": status})

    answered, ended = await asyncio.gather(
        asyncio.to_thread(report, nodes[1], "Answered"),
        asyncio.to_thread(report, nodes[2], "Ended"))
    codes = sorted([answered.status_code, ended.status_code])
    assert codes[0] == 200 and codes[1] != 200, (answered.text, ended.text)
    loser = answered if answered.status_code != 200 else ended
    assert loser.json()["r"] == 27 and "changed meanwhile" in loser.json()["message"]
    winner = "Answered" if answered.status_code == 200 else "Ended"
    # The agent's connection is told of the winner only.
    await states(watcher, call_id, "Ringing", winner)
    await watcher.quiet(1.0, services=(CALL_STATE,))
    await watcher.close()


async def test_the_no_answer_timer_fires_when_the_callers_node_dies(
        make_node: NodeFactory) -> None:
    # The lease is long: the caller's node is swept only after the timer ran out.
    settings = {"call_no_answer_ms": 2500, "node_lease_ms": 20000}
    nodes = [make_node(**settings) for _ in range(3)]
    caller_id, callee_id = uid("nt_caller"), uid("nt_callee")
    callee = await agent(nodes[1], callee_id)
    board = await supervisor(nodes[2])
    caller = await agent(nodes[0], caller_id)
    call_id = str((await call_ok(caller, callee_id))["callId"])
    await state(callee, call_id, "Calling")
    assert (await control(callee, 1012, call_id))["r"] == 0  # RINGING
    await state(callee, call_id, "Ringing")
    nodes[0].kill()
    ended = await state(callee, call_id, "Ended", timeout=8)
    assert ended["endReason"] == "no answer"
    # Ended once, though two live nodes timed the call.
    messages = [m["message"] for m in await board.messages(6, "ALL_CALL_STATUS")]
    assert [m["newValue"] for m in messages] == ["Calling"] * 2 + ["Ringing"] * 2 \
        + ["Ended"] * 2
    await board.quiet(1.5)
    await callee.quiet(0.5, services=(CALL_STATE,))
    for wire in (callee, board):
        await wire.close()


async def test_a_partys_calls_end_only_when_its_last_connection_on_any_node_closes(
        nodes: list[HubProcess]) -> None:
    a_id, b_id = uid("pg_a"), uid("pg_b")
    a_here = await agent(nodes[0], a_id, device="desk")
    a_there = await agent(nodes[1], a_id, device="phone")
    b = await agent(nodes[2], b_id)
    call_id = str((await call_ok(b, a_id))["callId"])
    await incoming(a_here, call_id)
    assert (await control(a_here, ANSWER, call_id))["r"] == 0
    await states(b, call_id, "Calling", "Ringing", "Answered")
    await a_here.close()
    # Still connected on node 1: the call goes on.
    await b.quiet(1.5, services=(CALL_STATE,))
    listed = await b.request(LIST_CALLS, {})
    assert [c["status"] for c in listed["calls"]] == ["Answered"]
    await a_there.close()
    ended = await state(b, call_id, "Ended")
    assert ended["endReason"] == "party disconnected"
    await b.quiet(1.0, services=(CALL_STATE,))  # ended once, though every node saw it
    await b.close()


def client_ids(body: dict[str, Any]) -> list[str]:
    return sorted(str(c["clientId"]) for c in body["clients"])


async def test_clients_and_other_device_notices_cover_every_node(
        nodes: list[HubProcess]) -> None:
    user_id = uid("dev")
    first = await agent(nodes[0], user_id, device="desk")
    second = await agent(nodes[1], user_id, device="phone")
    assert second.authen is not None
    assert client_ids(second.authen) == ["desk", "phone"]
    connected = (await first.until(OTHER_DEVICE_AUTHEN))["body"]
    assert connected["status"] == "connected" and connected["clientId"] == "phone"
    assert client_ids(connected) == ["desk", "phone"]
    third = await agent(nodes[2], user_id, device="tablet")
    assert third.authen is not None
    assert client_ids(third.authen) == ["desk", "phone", "tablet"]
    for wire in (first, second):
        body = (await wire.until(OTHER_DEVICE_AUTHEN))["body"]
        assert body["clientId"] == "tablet" and len(body["clients"]) == 3
    await second.close()
    for wire in (first, third):
        body = (await wire.until(OTHER_DEVICE_AUTHEN))["body"]
        assert body["status"] == "disconnected" and body["clientId"] == "phone"
        assert client_ids(body) == ["desk", "tablet"]
    for wire in (first, third):
        await wire.close()


async def test_connections_swept_from_a_dead_node_are_announced_to_other_devices(
        nodes: list[HubProcess]) -> None:
    user_id = uid("swept")
    doomed = await agent(nodes[0], user_id, device="desk")
    survivor = await agent(nodes[1], user_id, device="phone")
    await doomed.until(OTHER_DEVICE_AUTHEN)
    nodes[0].kill()
    # Swept within node_lease_ms × 1.5 (1.5 s here) and a sweep period.
    body = (await survivor.until(OTHER_DEVICE_AUTHEN, timeout=6))["body"]
    assert body["status"] == "disconnected" and body["clientId"] == "desk"
    assert body["userId"] == user_id and client_ids(body) == ["phone"]
    assert doomed.authen is not None
    assert body["connectionId"] == doomed.authen["connectionId"]
    await survivor.close()


async def test_a_node_stopping_cleanly_leaves_its_users_calls_to_the_other_nodes(
        nodes: list[HubProcess]) -> None:
    leaving_id, staying_id = uid("stop_a"), uid("stop_b")
    leaving = await agent(nodes[0], leaving_id)
    staying = await agent(nodes[1], staying_id)
    call_id = str((await call_ok(staying, leaving_id))["callId"])
    await incoming(leaving, call_id)
    assert (await control(leaving, ANSWER, call_id))["r"] == 0
    await states(staying, call_id, "Calling", "Ringing", "Answered")
    assert nodes[0].stop() == 0
    ended = await state(staying, call_id, "Ended")
    assert ended["endReason"] == "party disconnected"
    await staying.close()
