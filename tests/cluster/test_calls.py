"""Calls between agents connected to different nodes."""

from __future__ import annotations

from tests.calls.callwire import (
    ANSWER,
    HANGUP,
    call_ok,
    control,
    incoming,
    state,
    states,
    wait_offline,
)
from tests.hub.wire import login
from tests.hubproc import HubProcess


async def test_a_call_between_agents_on_two_nodes(nodes: list[HubProcess]) -> None:
    caller_node, callee_node, watch_node = nodes
    caller = await login(caller_node, caller_node.client_token("xc_caller"))
    callee = await login(callee_node, callee_node.client_token("xc_callee"))
    board = await login(watch_node, watch_node.client_token(
        "xc_board", subscribe=["ALL_CALL_STATUS"]))
    call = await call_ok(caller, "xc_callee")
    assert call["status"] == "Calling"
    call_id = call["callId"]
    assert (await incoming(callee, call_id))["fromDisplayName"] == "xc_caller"
    await state(callee, call_id, "Calling")
    assert (await control(callee, ANSWER, call_id))["r"] == 0
    await states(caller, call_id, "Calling", "Ringing", "Answered")
    assert (await control(caller, HANGUP, call_id))["r"] == 0
    ended = (await states(callee, call_id, "Ringing", "Answered", "Ended"))[-1]
    assert ended["endReason"] == "hangup"
    seen = [(m["message"]["userId"], m["message"]["newValue"])
            for m in await board.messages(8, "ALL_CALL_STATUS")]
    assert [v for _, v in seen] == ["Calling"] * 2 + ["Ringing"] * 2 + ["Answered"] * 2 \
        + ["Ended"] * 2
    assert sorted(u for u, _ in seen[-2:]) == ["xc_callee", "xc_caller"]
    with nodes[2].rest() as rest:
        assert rest.get("/v1/calls").json()["count"] == 0
    for wire in (caller, callee, board):
        await wire.close()


async def test_calling_an_agent_connected_nowhere_is_busy(nodes: list[HubProcess]) -> None:
    gone = await login(nodes[1], nodes[1].client_token("xb_gone"))
    await gone.close()
    # Once the caller's node has read the logout (a REST read there waits until it has).
    await wait_offline(nodes[0], "xb_gone")
    caller = await login(nodes[0], nodes[0].client_token("xb_caller"))
    call = await call_ok(caller, "xb_gone")
    assert call["status"] == "Ended" and call["endReason"] == "busy"
    await caller.close()
