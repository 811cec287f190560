"""Client call control (services 1010-1017) against a real hub over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.calls.callwire import (
    ANSWER,
    CALL_STATE,
    HANGUP,
    INCOMING_CALL,
    LIST_CALLS,
    MAKE_CALL,
    REJECT,
    RINGING,
    Users,
    agent,
    call_frames,
    call_ok,
    control,
    incoming,
    make_call,
    now_ms,
    put_call,
    rest_calls,
    rest_user,
    state,
    states,
    uid,
    wait_offline,
)
from tests.hub.wire import Wire
from tests.hubproc import HubProcess


async def list_calls(wire: Wire) -> list[dict[str, object]]:
    reply = await wire.request(LIST_CALLS)
    assert reply["r"] == 0, reply
    return reply["calls"]


# -- making a call --------------------------------------------------------------------


async def test_a_call_rings_every_device_of_the_callee(users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice, display_name="Alice Caller")
    phone = await open_(bob, device="bob-phone")
    desk = await open_(bob, device="bob-desk")
    before = now_ms()
    reply = await make_call(a, bob)
    assert reply["r"] == 0 and reply["message"] == "SUCCESS", reply
    call = reply["call"]
    assert call["from"] == alice and call["to"] == bob
    assert call["status"] == "Calling" and call["direction"] == "internal"
    assert isinstance(call["callId"], str) and call["callId"]
    assert before <= call["startedAt"] == call["updatedAt"] <= now_ms()
    assert not {"ringingAt", "answeredAt", "endedAt", "endReason", "answeredBy"} & set(call)
    # The caller was told by CALL_STATE before the reply came.
    assert [f["service"] for f in call_frames(a, call["callId"])] == [CALL_STATE]
    assert (await state(a, call["callId"], "Calling")) == call
    for device in (phone, desk):
        notice = await incoming(device, call["callId"])
        assert notice == {"call": call, "fromDisplayName": "Alice Caller"}
        assert (await state(device, call["callId"], "Calling")) == call


async def test_ringing_then_the_first_device_to_answer_wins(
        call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice)
    phone = await open_(bob, device="bob-phone")
    desk = await open_(bob, device="bob-desk")
    call_id = (await call_ok(a, bob))["callId"]
    for wire in (a, phone, desk):
        await state(wire, call_id, "Calling")

    rang = await control(phone, RINGING, call_id)
    assert rang["r"] == 0, rang
    assert rang["call"]["status"] == "Ringing"
    assert rang["call"]["ringingAt"] == rang["call"]["updatedAt"]
    for wire in (a, phone, desk):
        assert (await state(wire, call_id, "Ringing")) == rang["call"]

    won = await control(desk, ANSWER, call_id)
    assert won["r"] == 0, won
    assert won["call"]["status"] == "Answered"
    assert won["call"]["answeredBy"] == "bob-desk"
    assert won["call"]["ringingAt"] == rang["call"]["ringingAt"]
    assert won["call"]["answeredAt"] >= won["call"]["ringingAt"]
    lost = await control(phone, ANSWER, call_id)
    assert lost["r"] == 27, lost
    assert "call" not in lost
    for wire in (a, phone, desk):
        seen = await state(wire, call_id, "Answered")
        assert seen["answeredBy"] == "bob-desk"
        assert seen == won["call"]
    # A refused ANSWER changes nothing: no second CALL_STATE.
    await phone.quiet(0.2, services=(CALL_STATE,))
    assert [c["status"] for c in await list_calls(phone)] == ["Answered"]

    ended = await control(a, HANGUP, call_id)
    assert ended["r"] == 0, ended
    assert ended["call"]["status"] == "Ended" and ended["call"]["endReason"] == "hangup"
    assert ended["call"]["endedAt"] == ended["call"]["updatedAt"]
    assert ended["call"]["answeredBy"] == "bob-desk"
    for wire in (a, phone, desk):
        assert (await state(wire, call_id, "Ended")) == ended["call"]
    assert await list_calls(a) == [] and await list_calls(desk) == []


async def test_two_devices_answering_at_once_one_wins(users: Users) -> None:
    alice, bob = uid("alice"), uid("bob")
    a = await users(alice)
    phone = await users(bob, device="bob-phone")
    desk = await users(bob, device="bob-desk")
    call_id = (await call_ok(a, bob))["callId"]
    # Both answers leave before either reply comes back.
    replies = await asyncio.gather(control(phone, ANSWER, call_id),
                                   control(desk, ANSWER, call_id))
    assert sorted(r["r"] for r in replies) == [0, 27], replies
    winner = "bob-phone" if replies[0]["r"] == 0 else "bob-desk"
    for wire in (a, phone, desk):
        seen = await states(wire, call_id, "Calling", "Ringing", "Answered")
        assert seen[-1]["answeredBy"] == winner
    await a.quiet(0.1, services=(CALL_STATE,))
    assert (await control(a, HANGUP, call_id))["r"] == 0


async def test_a_hang_up_and_an_answer_crossing_end_the_call(users: Users) -> None:
    alice, bob = uid("alice"), uid("bob")
    a = await users(alice)
    b = await users(bob)
    call_id = (await call_ok(a, bob))["callId"]
    hung, answered = await asyncio.gather(control(a, HANGUP, call_id),
                                          control(b, ANSWER, call_id))
    assert hung["r"] == 0, hung  # the caller can always hang up a call in progress
    assert hung["call"]["endReason"] == "hangup"
    path = ["Calling", "Ringing", "Answered", "Ended"] if answered["r"] == 0 \
        else ["Calling", "Ended"]
    assert answered["r"] in (0, 27)
    for wire in (a, b):
        assert (await states(wire, call_id, *path))[-1] == hung["call"]
    assert await list_calls(a) == [] and await list_calls(b) == []


async def test_answering_a_call_still_calling_passes_through_ringing(
        call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice)
    b = await open_(bob)  # no deviceId: the connection id is its clientId
    call_id = (await call_ok(a, bob))["callId"]
    answered = await control(b, ANSWER, call_id)
    assert answered["r"] == 0, answered
    assert answered["call"]["answeredBy"] == b.authen["connectionId"]
    assert answered["call"]["ringingAt"] <= answered["call"]["answeredAt"]
    # Both transitions were published, and came before the reply.
    assert [f["body"]["call"]["status"] for f in call_frames(b, call_id)
            if f["service"] == CALL_STATE] == ["Calling", "Ringing", "Answered"]
    seen = await states(a, call_id, "Calling", "Ringing", "Answered")
    assert seen[-1] == answered["call"]
    # The callee hangs up as well as the caller can.
    hung = await control(b, HANGUP, call_id)
    assert hung["r"] == 0 and hung["call"]["endReason"] == "hangup"
    assert (await state(a, call_id, "Ended"))["endReason"] == "hangup"
    await states(b, call_id, "Calling", "Ringing", "Answered", "Ended")


async def test_the_callee_rejects(call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice)
    b = await open_(bob)
    call_id = (await call_ok(a, bob))["callId"]
    assert (await control(b, RINGING, call_id))["r"] == 0
    rejected = await control(b, REJECT, call_id)
    assert rejected["r"] == 0, rejected
    assert rejected["call"]["status"] == "Ended"
    assert rejected["call"]["endReason"] == "rejected"
    assert "answeredAt" not in rejected["call"]
    seen = await states(a, call_id, "Calling", "Ringing", "Ended")
    assert seen[-1] == rejected["call"]
    # An ended call is gone: nothing more can happen to it.
    for wire, service in ((a, HANGUP), (b, ANSWER), (b, REJECT), (b, RINGING)):
        assert (await control(wire, service, call_id))["r"] == 27


async def test_the_caller_hangs_up_before_an_answer(call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice)
    b = await open_(bob)
    call_id = (await call_ok(a, bob))["callId"]
    await incoming(b, call_id)
    hung = await control(a, HANGUP, call_id)
    assert hung["r"] == 0 and hung["call"]["endReason"] == "hangup"
    ended = (await states(b, call_id, "Calling", "Ended"))[-1]
    assert ended["endReason"] == "hangup" and "ringingAt" not in ended
    assert (await control(b, ANSWER, call_id))["r"] == 27


async def test_only_the_callee_rings_answers_or_rejects(call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    a = await open_(alice)
    b = await open_(bob)
    c = await open_(carol)
    call_id = (await call_ok(a, bob))["callId"]
    for service in (RINGING, ANSWER, REJECT):
        refused = await control(a, service, call_id)
        assert refused["r"] == 27, (service, refused)
    # Someone who is not a party cannot touch the call at all, nor see it.
    for service in (RINGING, ANSWER, REJECT, HANGUP):
        refused = await control(c, service, call_id)
        assert refused["r"] == 27, (service, refused)
    assert await list_calls(c) == []
    await c.quiet(0.1, services=(CALL_STATE, INCOMING_CALL))
    # Nothing happened to the call.
    assert [(x["callId"], x["status"]) for x in await list_calls(b)] == [(call_id, "Calling")]
    assert [f["body"]["call"]["status"] for f in call_frames(b, call_id)
            if f["service"] == CALL_STATE] == ["Calling"]
    assert (await control(b, HANGUP, call_id))["r"] == 0


async def test_requests_about_no_call(users: Users) -> None:
    a = await users(uid("alice"))
    for service in (RINGING, ANSWER, REJECT, HANGUP):
        assert (await control(a, service, "call-doesnotexist"))["r"] == 27
        missing = await a.request(service, {})
        assert missing["r"] == 21, missing
        assert (await a.request(service, {"callId": 42}))["r"] == 21


async def test_calling_someone_the_hub_does_not_know(call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice = uid("alice")
    a = await open_(alice)
    unknown = await make_call(a, uid("nobody"))
    assert unknown["r"] == 25 and "call" not in unknown, unknown
    # A user of another project is unknown here.
    stranger = uid("stranger")
    await open_(stranger, other_project=True)
    assert (await make_call(a, stranger))["r"] == 25
    assert (await make_call(a, alice))["r"] == 21  # yourself
    assert (await a.request(MAKE_CALL, {}))["r"] == 21
    assert (await a.request(MAKE_CALL, {"to": ""}))["r"] == 21
    assert (await a.request(MAKE_CALL, {"to": ["x"]}))["r"] == 21
    await a.quiet(0.1, services=(CALL_STATE,))
    assert await list_calls(a) == []


async def test_calling_an_offline_user_ends_at_once_busy(
        call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice)
    gone = await agent(call_hub, bob)
    await gone.close()
    await wait_offline(call_hub, bob)
    reply = await make_call(a, bob)
    assert reply["r"] == 0, reply
    call = reply["call"]
    assert call["status"] == "Ended" and call["endReason"] == "busy"
    assert call["endedAt"] == call["startedAt"]
    assert [f["body"]["call"]["status"] for f in call_frames(a, call["callId"])] == \
        ["Calling", "Ended"]
    assert call["callId"] not in {c["callId"] for c in rest_calls(call_hub)}
    assert await list_calls(a) == []
    assert rest_user(call_hub, alice)["call"] == "Ended"


async def test_calling_a_busy_user_ends_at_once_busy(call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    a = await open_(alice)
    b = await open_(bob)
    c = await open_(carol)
    first = (await call_ok(c, bob))["callId"]
    await incoming(b, first)
    assert (await control(b, ANSWER, first))["r"] == 0
    await states(b, first, "Calling", "Ringing", "Answered")

    reply = await make_call(a, bob)
    assert reply["r"] == 0, reply
    busy = reply["call"]
    assert busy["status"] == "Ended" and busy["endReason"] == "busy"
    assert [f["body"]["call"]["status"] for f in call_frames(a, busy["callId"])] == \
        ["Calling", "Ended"]
    # The busy user was not rung, and their own call goes on as it was.
    await b.quiet(0.2, services=(INCOMING_CALL,))
    assert not [f for f in b.backlog if f["service"] == INCOMING_CALL]
    assert [(x["callId"], x["status"]) for x in await list_calls(b)] == [(first, "Answered")]
    assert rest_user(call_hub, bob)["call"] == "Answered"
    assert rest_user(call_hub, alice)["call"] == "Ended"
    assert [x["callId"] for x in rest_calls(call_hub) if bob in (x["from"], x["to"])] == \
        [first]
    # Ringing a user is busy too.
    dave = uid("dave")
    d = await open_(dave)
    ringing = (await call_ok(a, dave))["callId"]
    assert (await make_call(c, dave))["r"] == 0
    assert [x["callId"] for x in await list_calls(d)] == [ringing]
    assert (await control(b, HANGUP, first))["r"] == 0
    assert (await control(a, HANGUP, ringing))["r"] == 0


async def test_list_calls_shows_the_requesters_calls_in_progress(
        call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    a = await open_(alice)
    b = await open_(bob)
    c = await open_(carol)
    assert await list_calls(a) == []
    call = await call_ok(a, bob)
    assert await list_calls(a) == [call]  # the caller's
    assert await list_calls(b) == [call]  # the callee's
    assert await list_calls(c) == []  # nobody else's
    # Calls a telephony system reports are listed to their party too.
    external_id = uid("ext")
    with call_hub.rest() as rest:
        response = put_call(rest, external_id, "Answered", from_="+84901234567", to=carol)
    assert response.status_code == 200, response.text
    assert await list_calls(c) == [response.json()]
    assert response.json()["direction"] == "external"
    assert (await control(b, RINGING, call["callId"]))["r"] == 0
    assert [x["status"] for x in await list_calls(a)] == ["Ringing"]
    # A connection made later (after a reconnect, say) lists the same calls.
    again = await open_(bob)
    assert [(x["callId"], x["status"]) for x in await list_calls(again)] == \
        [(call["callId"], "Ringing")]
    assert (await control(a, HANGUP, call["callId"]))["r"] == 0
    assert await list_calls(a) == [] and await list_calls(again) == []
    with call_hub.rest() as rest:
        assert put_call(rest, external_id, "Ended").status_code == 200
    assert await list_calls(c) == []


# -- the hub ends calls by itself -----------------------------------------------------


async def test_no_answer_ends_calls_nobody_answers(make_hub: Callable[..., HubProcess]
                                                   ) -> None:
    hub = make_hub(call_no_answer_ms=300, offline_grace_ms=0)
    names = ("alice", "bob", "carol", "dave", "erin", "frank")
    wires = {name: await agent(hub, name) for name in names}
    a, b, c, d, e, f = wires.values()
    try:
        calling = await call_ok(a, "bob")  # never rings
        ringing = await call_ok(c, "dave")
        assert (await control(d, RINGING, ringing["callId"]))["r"] == 0
        answered = await call_ok(e, "frank")
        assert (await control(f, ANSWER, answered["callId"]))["r"] == 0
        for caller, callee, call, before in ((a, b, calling, ["Calling"]),
                                             (c, d, ringing, ["Calling", "Ringing"])):
            ended = (await states(caller, call["callId"], *before, "Ended"))[-1]
            assert ended["endReason"] == "no answer"
            assert ended["endedAt"] - call["startedAt"] >= 250
            assert (await states(callee, call["callId"], *before, "Ended"))[-1] == ended
        assert (await control(b, ANSWER, calling["callId"]))["r"] == 27
        # An answered call does not time out.
        await states(e, answered["callId"], "Calling", "Ringing", "Answered")
        await e.quiet(0.5, services=(CALL_STATE,))
        assert [(x["callId"], x["status"]) for x in rest_calls(hub)] == \
            [(answered["callId"], "Answered")]
    finally:
        for wire in wires.values():
            await wire.close()


async def test_a_party_whose_last_connection_drops_ends_its_calls(
        call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    a = await open_(alice)
    phone = await agent(call_hub, bob, device="phone")
    desk = await agent(call_hub, bob, device="desk")
    call_id = (await call_ok(a, bob))["callId"]
    assert (await control(desk, ANSWER, call_id))["r"] == 0
    await states(a, call_id, "Calling", "Ringing", "Answered")
    await desk.close()  # the device that answered; another one is still there
    await a.quiet(0.3, services=(CALL_STATE,))
    assert [c["status"] for c in await list_calls(a)] == ["Answered"]
    await phone.close()
    ended = await state(a, call_id, "Ended")
    assert ended["endReason"] == "party disconnected"
    assert await list_calls(a) == []
    assert call_id not in {c["callId"] for c in rest_calls(call_hub)}


async def test_a_caller_who_leaves_ends_a_call_still_ringing(
        call_hub: HubProcess, users: Users) -> None:
    open_ = users
    alice, bob = uid("alice"), uid("bob")
    b = await open_(bob)
    a = await agent(call_hub, alice)
    call_id = (await call_ok(a, bob))["callId"]
    assert (await control(b, RINGING, call_id))["r"] == 0
    await a.close()
    ended = (await states(b, call_id, "Calling", "Ringing", "Ended"))[-1]
    assert ended["endReason"] == "party disconnected"
    assert "answeredAt" not in ended
    assert await list_calls(b) == []


async def test_a_device_closing_slowly_does_not_silence_the_others(users: Users) -> None:
    """One of the caller's devices has sent its close frame but not yet closed TCP (a slow
    network): what goes to it is dropped, and everyone else still hears the call."""
    alice, bob = uid("alice"), uid("bob")
    leaving = await agent(users.hub, alice, device="a1")  # first: first to be written to
    staying = await users(alice, device="a2")
    b = await users(bob)
    call = await call_ok(staying, bob)
    await state(staying, call["callId"], "Calling")
    leaving.ws.transport.pause_reading()  # it will not see the hub's answer to its close
    closing = asyncio.create_task(leaving.ws.close())
    await asyncio.sleep(0.1)  # the hub has its close frame, and has answered it
    hung = await control(b, HANGUP, call["callId"])
    assert hung["r"] == 0, hung
    assert (await state(staying, call["callId"], "Ended")) == hung["call"]
    assert (await state(b, call["callId"], "Calling"))["status"] == "Calling"
    assert (await state(b, call["callId"], "Ended")) == hung["call"]
    leaving.ws.transport.resume_reading()
    await closing
    # ... and keeps hearing later calls.
    again = await call_ok(b, alice)
    assert (await incoming(staying, again["callId"]))["call"] == again
    assert (await control(staying, REJECT, again["callId"]))["r"] == 0
