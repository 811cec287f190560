"""Calls across hub crashes and clean stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.calls.callwire import (
    ALL_CALL_STATUS,
    ANSWER,
    HANGUP,
    LIST_CALLS,
    RINGING,
    agent,
    call_messages,
    call_ok,
    control,
    put_call,
    rest_calls,
    rest_user,
    state,
    states,
    supervisor,
)
from tests.hub.wire import Closed, Wire, hub_with, login
from tests.hubproc import HubProcess

CUSTOMER = "+84901234567"
CRASHED = ("alice", "bob", "carol", "dave")
STOPPED = ("gina", "hank", "ivan", "judy")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub for this module's crash and clean stop, each with users of its own."""
    process = hub_with(tmp_path_factory.mktemp("restart"), offline_grace_ms=0)
    try:
        yield process
    finally:
        process.kill()


async def replay(hub: HubProcess) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every ALL_CALL_STATUS message of this hub's life (the epoch it started with),
    read back through resume from seq 0, and the topic's snapshot values."""
    token = hub.client_token("replayer", subscribe=(ALL_CALL_STATUS,))
    first = await login(hub, token)
    position = first.authen["topics"][ALL_CALL_STATUS]
    snapshot = await first.snapshot(ALL_CALL_STATUS)
    await first.close()
    assert snapshot["r"] == 0 and snapshot["seq"] == position["seq"]
    again = await login(hub, token, resume={ALL_CALL_STATUS: {"epoch": position["epoch"],
                                                              "seq": 0}})
    try:
        assert again.authen["recovered"] == {ALL_CALL_STATUS: True}
        messages = await again.messages(position["seq"], ALL_CALL_STATUS)
        assert [m["seq"] for m in messages] == list(range(1, position["seq"] + 1))
        return [m["message"] for m in messages], snapshot["values"]
    finally:
        await again.close()


async def gone(*wires: Wire) -> None:
    """Wait for each connection to be dropped by a dead hub."""
    for wire in wires:
        with contextlib.suppress(Closed):
            await wire.closed(timeout=5)
        await wire.close()


async def test_calls_in_progress_at_a_crash_end_with_hub_restart(hub: HubProcess) -> None:
    a = await agent(hub, "alice", call_topic="call_alice")
    b = await agent(hub, "bob", device="bob-phone")
    c = await agent(hub, "carol")
    d = await agent(hub, "dave")
    answered = await call_ok(a, "bob")
    assert (await control(b, ANSWER, answered["callId"]))["r"] == 0
    ringing = await call_ok(c, "dave")
    assert (await control(d, RINGING, ringing["callId"]))["r"] == 0
    with hub.rest() as rest:
        response = put_call(rest, "pbx-1", "Answered", from_=CUSTOMER, to="erin")
        assert response.status_code == 200
        response = put_call(rest, "pbx-2", "Ringing", from_=CUSTOMER, to="frank")
        assert response.status_code == 200
    assert len(rest_calls(hub)) == 4
    assert rest_user(hub, "alice")["call"] == "Answered"

    hub.kill()
    await gone(a, b, c, d)
    hub.start()

    assert rest_calls(hub) == []
    for user in CRASHED:
        assert rest_user(hub, user) == {"onlineStatus": "offline", "call": "Ended"}
    # erin and frank never connected: no users, so no attribute to end.
    messages, values = await replay(hub)
    ended = {(m["userId"], m["callId"]): m for m in messages}
    assert set(ended) == {("alice", answered["callId"]), ("bob", answered["callId"]),
                          ("carol", ringing["callId"]), ("dave", ringing["callId"])}
    for (_, call_id), message in ended.items():
        call = answered if call_id == answered["callId"] else ringing
        assert message["attribute"] == "call" and message["newValue"] == "Ended"
        assert message["oldValue"] == ("Answered" if call is answered else "Ringing")
        assert message["endReason"] == "hub restart" and message["callEnded"] is True
        assert (message["from"], message["to"]) == (call["from"], call["to"])
    snap = {v["userId"]: (v["value"], v["callEnded"]) for v in values if v["userId"] in CRASHED}
    assert snap == {user: ("Ended", True) for user in CRASHED}

    # The parties come back to no calls; the ended ones cannot be touched.
    a = await agent(hub, "alice")
    try:
        assert (await a.request(LIST_CALLS))["calls"] == []
        assert (await control(a, HANGUP, answered["callId"]))["r"] == 27
    finally:
        await a.close()
    # That they end only once is seen by the clean stop below: its hub's next life
    # publishes nothing at all.


async def test_a_clean_stop_ends_calls_before_closing_connections(hub: HubProcess) -> None:
    gina, hank, ivan, judy = STOPPED
    sup = await supervisor(hub, "sup")
    a = await agent(hub, gina)
    phone = await agent(hub, hank, device="phone")
    desk = await agent(hub, hank, device="desk")
    c = await agent(hub, ivan)
    d = await agent(hub, judy)
    answered = await call_ok(a, hank)
    assert (await control(desk, ANSWER, answered["callId"]))["r"] == 0
    calling = await call_ok(c, judy)
    await states(a, answered["callId"], "Calling", "Ringing", "Answered")
    for wire in (phone, desk):
        await states(wire, answered["callId"], "Calling", "Ringing", "Answered")
    await state(c, calling["callId"], "Calling")
    await state(d, calling["callId"], "Calling")
    await call_messages(sup, ALL_CALL_STATUS, answered["callId"], 6)
    await call_messages(sup, ALL_CALL_STATUS, calling["callId"], 2)

    code = await asyncio.to_thread(hub.stop)
    assert code == 0, hub.log()

    # Every party hears its call end, then the close frame of a hub going away.
    for wire, call in ((a, answered), (phone, answered), (desk, answered),
                       (c, calling), (d, calling)):
        ended = await state(wire, call["callId"], "Ended")
        assert ended["endReason"] == "hub shutdown"
        assert ended["startedAt"] == call["startedAt"]
        assert await wire.closed() == 1001
    seen = await call_messages(sup, ALL_CALL_STATUS, answered["callId"], 2)
    seen += await call_messages(sup, ALL_CALL_STATUS, calling["callId"], 2)
    assert {m["message"]["userId"] for m in seen} == set(STOPPED)
    assert all(m["message"]["endReason"] == "hub shutdown" and m["message"]["callEnded"]
               for m in seen)
    assert await sup.closed() == 1001
    for wire in (sup, a, phone, desk, c, d):
        await wire.close()

    # Back up: nothing left to end (nor anything a crash before left), every party's
    # call is Ended.
    hub.start()
    assert rest_calls(hub) == []
    for user in STOPPED:
        assert rest_user(hub, user)["call"] == "Ended"
    messages, _ = await replay(hub)
    assert messages == []
