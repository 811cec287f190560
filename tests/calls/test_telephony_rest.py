"""Telephony input: PUT /v1/calls/{callId} and GET /v1/calls, alone and with clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.calls.callwire import (
    ALL_CALL_STATUS,
    CALL_STATE,
    HANGUP,
    LIST_CALLS,
    agent,
    call_messages,
    control,
    make_call,
    no_call_messages,
    now_ms,
    put_call,
    rest_calls,
    rest_user,
    state,
    supervisor,
    uid,
    wait_offline,
)
from tests.hub.wire import Wire
from tests.hubproc import HubProcess

CUSTOMER = "+84901234567"


@pytest.fixture
async def sup(call_hub: HubProcess) -> AsyncIterator[Wire]:
    wire = await supervisor(call_hub)
    yield wire
    await wire.close()


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, r: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["r"] == r and isinstance(body["message"], str) and body["message"], body


async def test_reports_create_and_advance_an_external_call(call_hub: HubProcess,
                                                           rest: httpx.Client,
                                                           sup: Wire) -> None:
    agent_id = uid("agent")
    topic = f"call_{agent_id}"
    watcher = await agent(call_hub, uid("watch"), subscribe=(topic,))
    a = await agent(call_hub, agent_id, call_topic=topic)
    try:
        call_id = uid("pbx")
        before = now_ms()
        call = ok(put_call(rest, call_id, "ringing", from_=CUSTOMER, to=agent_id))
        assert call["callId"] == call_id and call["from"] == CUSTOMER and call["to"] == agent_id
        assert call["status"] == "Ringing" and call["direction"] == "external"
        assert before <= call["startedAt"] == call["ringingAt"] == call["updatedAt"] <= now_ms()
        assert "answeredAt" not in call and "endReason" not in call
        assert (await state(a, call_id, "Ringing")) == call
        assert rest_user(call_hub, agent_id)["call"] == "Ringing"
        assert [c["callId"] for c in rest_calls(call_hub)].count(call_id) == 1

        answered = ok(put_call(rest, call_id, "ANSWERED"))
        assert answered["status"] == "Answered"
        assert answered["answeredAt"] == answered["updatedAt"] >= call["ringingAt"]
        assert answered["startedAt"] == call["startedAt"]
        assert "answeredBy" not in answered
        assert (await state(a, call_id, "Answered")) == answered
        assert rest_user(call_hub, agent_id)["call"] == "Answered"
        assert [c for c in rest_calls(call_hub) if c["callId"] == call_id] == [answered]

        ended = ok(put_call(rest, call_id, "Ended", from_=CUSTOMER, to=agent_id))
        assert ended["status"] == "Ended" and ended["endReason"] == "reported"
        assert ended["endedAt"] == ended["updatedAt"]
        assert (await state(a, call_id, "Ended")) == ended
        assert call_id not in {c["callId"] for c in rest_calls(call_hub)}
        assert rest_user(call_hub, agent_id)["call"] == "Ended"

        # Published for the agent (the customer is no hub user): on the agent's topic
        # and on ALL_CALL_STATUS.
        for wire, where in ((watcher, topic), (sup, ALL_CALL_STATUS)):
            seen = await call_messages(wire, where, call_id, 3)
            assert [(m["message"]["userId"], m["message"]["oldValue"],
                     m["message"]["newValue"], m["message"]["callEnded"]) for m in seen] == [
                (agent_id, None, "Ringing", False), (agent_id, "Ringing", "Answered", False),
                (agent_id, "Answered", "Ended", True)]
            assert {(m["message"]["from"], m["message"]["to"]) for m in seen} == \
                {(CUSTOMER, agent_id)}
            assert seen[-1]["message"]["endReason"] == "reported"
        # The customer is recorded on the call, and is no user.
        assert rest.get(f"/v1/users/{CUSTOMER}").status_code == 404
    finally:
        await a.close()
        await watcher.close()


@pytest.mark.parametrize(("first", "stamps"), [
    ("Calling", set()), ("Ringing", {"ringingAt"}), ("Answered", {"ringingAt", "answeredAt"}),
])
def test_a_call_may_first_be_reported_in_any_status_but_ended(
        call_hub: HubProcess, rest: httpx.Client, first: str, stamps: set[str]) -> None:
    call_id = uid("pbx")
    agent_id = uid("agent")
    call = ok(put_call(rest, call_id, first, from_=agent_id, to=CUSTOMER))
    assert call["status"] == first
    assert {"ringingAt", "answeredAt", "endedAt"} & set(call) == stamps
    assert all(call[k] == call["startedAt"] for k in stamps)
    # an agent the hub has never seen is no user either: nothing to set
    assert rest.get(f"/v1/users/{agent_id}").status_code == 404
    assert ok(put_call(rest, call_id, "Ended"))["endReason"] == "reported"


def test_invalid_transitions_are_refused_with_27(call_hub: HubProcess,
                                                 rest: httpx.Client) -> None:
    call_id = uid("pbx")
    ok(put_call(rest, call_id, "Calling", from_=CUSTOMER, to=uid("agent")))
    refused(put_call(rest, call_id, "Answered"), 400, 27)  # skipping Ringing
    ok(put_call(rest, call_id, "Ringing"))
    refused(put_call(rest, call_id, "Calling"), 400, 27)  # backwards
    ok(put_call(rest, call_id, "Answered"))
    refused(put_call(rest, call_id, "Ringing"), 400, 27)
    refused(put_call(rest, call_id, "Calling"), 400, 27)
    assert [c["status"] for c in rest_calls(call_hub) if c["callId"] == call_id] == \
        ["Answered"]
    ok(put_call(rest, call_id, "Ended"))
    # An ended call stays ended: a late report does not bring it back.
    for late in ("Calling", "Ringing", "Answered"):
        refused(put_call(rest, call_id, late), 400, 27)
    assert call_id not in {c["callId"] for c in rest_calls(call_hub)}
    # ... and its end, reported again, is accepted and changes nothing.
    again = ok(put_call(rest, call_id, "Ended"))
    assert again["status"] == "Ended" and again["endReason"] == "reported"


def test_an_unknown_call_reported_ended_is_27(rest: httpx.Client) -> None:
    refused(put_call(rest, uid("pbx"), "Ended", from_=CUSTOMER, to="agent_x"), 400, 27)


def test_malformed_reports_are_21(call_hub: HubProcess, rest: httpx.Client) -> None:
    call_id = uid("pbx")
    refused(put_call(rest, call_id, from_=CUSTOMER, to="agent_x"), 400, 21)  # no status
    refused(put_call(rest, call_id, "Talking", from_=CUSTOMER, to="agent_x"), 400, 21)
    refused(put_call(rest, call_id, 3, from_=CUSTOMER, to="agent_x"), 400, 21)
    refused(put_call(rest, call_id, "Ringing", to="agent_x"), 400, 21)  # a new call's from
    refused(put_call(rest, call_id, "Ringing", from_=CUSTOMER), 400, 21)  # ... and to
    refused(put_call(rest, call_id, "Ringing", from_="", to="agent_x"), 400, 21)
    refused(put_call(rest, "x" * 129, "Ringing", from_=CUSTOMER, to="agent_x"), 400, 21)
    refused(rest.put(f"/v1/calls/{call_id}", content=b"not json",
                     headers={"content-type": "application/json"}), 400, 21)
    refused(rest.put(f"/v1/calls/{call_id}", json=["Ringing"]), 400, 21)
    assert call_id not in {c["callId"] for c in rest_calls(call_hub)}
    # from and to are the call's: a later report may omit them, not change them.
    ok(put_call(rest, call_id, "Ringing", from_=CUSTOMER, to="agent_x"))
    refused(put_call(rest, call_id, "Answered", from_="+1555", to="agent_x"), 400, 21)
    refused(put_call(rest, call_id, "Answered", from_=CUSTOMER, to="agent_y"), 400, 21)
    assert [c["status"] for c in rest_calls(call_hub) if c["callId"] == call_id] == \
        ["Ringing"]
    ok(put_call(rest, call_id, "Ended"))


def test_parties_and_call_ids_with_control_characters_are_21(
        call_hub: HubProcess, rest: httpx.Client) -> None:
    """They are shown in every supervisor's monitor: an ESC there is refused."""
    hostile = "+44\x1b]0;TITLE\x07"
    for from_, to in ((hostile, "agent_x"), (CUSTOMER, "agent\x9b2J"),
                      (CUSTOMER, "agent\u202ex")):
        refused(put_call(rest, uid("pbx"), "Ringing", from_=from_, to=to), 400, 21)
    refused(rest.put("/v1/calls/" + quote("call\x1b[2J"),
                     json={"from": CUSTOMER, "to": "agent_x", "status": "Ringing"}), 400, 21)
    assert not [c for c in rest_calls(call_hub) if "\x1b" in c["from"] + c["callId"]]


def test_reports_need_a_rest_token(call_hub: HubProcess) -> None:
    with httpx.Client(base_url=call_hub.api_url, timeout=5) as anonymous:
        response = put_call(anonymous, uid("pbx"), "Ringing", from_=CUSTOMER, to="agent_x")
        assert response.status_code == 401 and response.json()["r"] == 1
        client_token = call_hub.client_token("agent_x")
        response = anonymous.get("/v1/calls", headers={"X-STRINGEE-AUTH": client_token})
        assert response.status_code == 401


async def test_repeating_the_current_status_publishes_nothing(call_hub: HubProcess,
                                                              rest: httpx.Client,
                                                              sup: Wire) -> None:
    agent_id = uid("agent")
    a = await agent(call_hub, agent_id)
    try:
        call_id = uid("pbx")
        first = ok(put_call(rest, call_id, "Ringing", from_=CUSTOMER, to=agent_id))
        second = ok(put_call(rest, call_id, "ringing", from_=CUSTOMER, to=agent_id))
        third = ok(put_call(rest, call_id, "Ringing"))
        assert first == second == third  # nothing changed, not even updatedAt
        await state(a, call_id, "Ringing")
        await call_messages(sup, ALL_CALL_STATUS, call_id, 1)
        await no_call_messages(sup, call_id)
        await a.quiet(0.05, services=(CALL_STATE,))
        ok(put_call(rest, call_id, "Ended"))
        await call_messages(sup, ALL_CALL_STATUS, call_id, 1)
        ok(put_call(rest, call_id, "Ended"))  # a retried end
        await no_call_messages(sup, call_id)
        await state(a, call_id, "Ended")
        await a.quiet(0.05, services=(CALL_STATE,))
    finally:
        await a.close()


async def test_get_calls_lists_calls_in_progress_only(call_hub: HubProcess,
                                                      rest: httpx.Client) -> None:
    alice, bob = uid("alice"), uid("bob")
    a = await agent(call_hub, alice)
    b = await agent(call_hub, bob)
    try:
        internal = (await make_call(a, bob))["call"]
        external = ok(put_call(rest, uid("pbx"), "Calling", from_=CUSTOMER, to=uid("agent")))
        done = uid("pbx")
        ok(put_call(rest, done, "Answered", from_=CUSTOMER, to=uid("agent")))
        ok(put_call(rest, done, "Ended"))
        body = ok(rest.get("/v1/calls"))
        assert body["count"] == len(body["calls"])
        listed = {c["callId"]: c for c in body["calls"]}
        assert listed[internal["callId"]] == internal
        assert listed[external["callId"]] == external
        assert done not in listed
        assert all(c["status"] != "Ended" for c in body["calls"])
        # Another project's calls are its own.
        with httpx.Client(base_url=call_hub.api_url, timeout=5, headers={
                "X-STRINGEE-AUTH": call_hub.rest_token(other_project=True)}) as other:
            theirs = ok(other.get("/v1/calls"))
            assert not {internal["callId"], external["callId"]} & \
                {c["callId"] for c in theirs["calls"]}
            # The same callId in the other project is another call.
            same = ok(put_call(other, external["callId"], "Ringing", from_="x", to="y"))
            assert same["status"] == "Ringing"
            assert [c["callId"] for c in ok(other.get("/v1/calls"))["calls"]].count(
                external["callId"]) == 1
            ok(put_call(other, external["callId"], "Ended"))
        assert listed[external["callId"]]["status"] == "Calling"
        assert ok(put_call(rest, external["callId"], "Ringing"))["status"] == "Ringing"
        assert (await control(a, HANGUP, internal["callId"]))["r"] == 0
        ok(put_call(rest, external["callId"], "Ended"))
        remaining = {c["callId"] for c in rest_calls(call_hub)}
        assert not {internal["callId"], external["callId"]} & remaining
    finally:
        await a.close()
        await b.close()


async def test_rest_and_clients_drive_the_same_user(call_hub: HubProcess,
                                                    rest: httpx.Client, sup: Wire) -> None:
    agent_id, colleague = uid("agent"), uid("colleague")
    a = await agent(call_hub, agent_id)
    c = await agent(call_hub, colleague)
    try:
        call_id = uid("pbx")
        ok(put_call(rest, call_id, "Ringing", from_=CUSTOMER, to=agent_id))
        ok(put_call(rest, call_id, "Answered"))
        user = ok(rest.get(f"/v1/users/{agent_id}"))
        values = {x["attribute"]: x.get("value") for x in user["attributes"]}
        assert values == {"onlineStatus": "online", "call": "Answered"}
        listed = await a.request(LIST_CALLS)
        assert [(x["callId"], x["status"], x["direction"]) for x in listed["calls"]] == \
            [(call_id, "Answered", "external")]
        answered = await call_messages(sup, ALL_CALL_STATUS, call_id, 2)
        assert answered[-1]["message"]["newValue"] == "Answered"
        # The telephony system controls its calls, not the agent's client.
        assert (await control(a, HANGUP, call_id))["r"] == 27
        # A colleague calling the agent finds them busy.
        busy = await make_call(c, agent_id)
        assert busy["r"] == 0 and busy["call"]["endReason"] == "busy"
        assert rest_user(call_hub, agent_id)["call"] == "Answered"
        # The agent's client leaving does not end a call the telephony system reports.
        await a.close()
        await wait_offline(call_hub, agent_id)
        assert [x["status"] for x in rest_calls(call_hub) if x["callId"] == call_id] == \
            ["Answered"]
        assert rest_user(call_hub, agent_id) == {"onlineStatus": "offline", "call": "Answered"}
        ok(put_call(rest, call_id, "Ended"))
        assert rest_user(call_hub, agent_id)["call"] == "Ended"
        (ended,) = await call_messages(sup, ALL_CALL_STATUS, call_id, 1)
        assert ended["message"]["callEnded"] is True
        # Reported users can be found by their call status.
        found = ok(rest.get("/v1/users", params={"attribute": "call", "value": "Ended",
                                                 "includeOffline": "true"}))
        assert agent_id in {u["userId"] for u in found["users"]}
    finally:
        await a.close()
        await c.close()
