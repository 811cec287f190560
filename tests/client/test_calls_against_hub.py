"""HubClient call control against a real hub: make, incoming, ring, answer, hang up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.client import HubClient, RefusedError
from tests.hubproc import HubProcess


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.02)


async def test_a_call_between_two_clients_from_ring_to_hangup(module_hub: HubProcess) -> None:
    caller = HubClient(module_hub.ws_url, module_hub.client_token(
        "cc_caller", attributes=[("call", "calls_cc")]))
    callee = HubClient(module_hub.ws_url, module_hub.client_token("cc_callee"))
    incoming: list[dict[str, Any]] = []
    states: dict[str, list[str]] = {"caller": [], "callee": []}
    callee.on("incomingcall", incoming.append)
    caller.on("callstate", lambda body: states["caller"].append(body["call"]["status"]))
    callee.on("callstate", lambda body: states["callee"].append(body["call"]["status"]))
    await caller.connect()
    await callee.connect()
    try:
        made = await caller.make_call("cc_callee")
        call_id = made["call"]["callId"]
        assert made["call"]["status"] == "Calling"
        await _until(lambda: incoming)
        assert incoming[0]["call"]["callId"] == call_id
        assert incoming[0]["call"]["from"] == "cc_caller"

        assert (await callee.ringing(call_id))["call"]["status"] == "Ringing"
        answered = await callee.answer(call_id)
        assert answered["call"]["status"] == "Answered"
        assert [c["callId"] for c in await caller.list_calls()] == [call_id]

        with pytest.raises(RefusedError) as refused:
            await callee.answer(call_id)  # already answered
        assert refused.value.r == 27

        ended = await caller.hangup(call_id)
        assert ended["call"]["status"] == "Ended"
        assert ended["call"]["endReason"] == "hangup"
        expected = ["Calling", "Ringing", "Answered", "Ended"]
        await _until(lambda: states["caller"] == expected and states["callee"] == expected)
        assert await caller.list_calls() == []
    finally:
        await caller.close()
        await callee.close()


async def test_reject_and_calling_nobody(module_hub: HubProcess) -> None:
    caller = HubClient(module_hub.ws_url, module_hub.client_token("cr_caller"))
    callee = HubClient(module_hub.ws_url, module_hub.client_token("cr_callee"))
    incoming: list[dict[str, Any]] = []
    callee.on("incomingcall", incoming.append)
    await caller.connect()
    await callee.connect()
    try:
        call_id = (await caller.make_call("cr_callee"))["call"]["callId"]
        await _until(lambda: incoming)
        rejected = await callee.reject(call_id)
        assert rejected["call"]["endReason"] == "rejected"
        with pytest.raises(RefusedError) as unknown:
            await caller.make_call("nobody_at_all")
        assert unknown.value.r == 25
    finally:
        await caller.close()
        await callee.close()
