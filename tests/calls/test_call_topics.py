"""Call transitions published: to each party's ``call`` topic and to ALL_CALL_STATUS."""

from __future__ import annotations

from typing import Any

from tests.calls.callwire import (
    ALL_CALL_STATUS,
    ANSWER,
    HANGUP,
    RINGING,
    Users,
    call_messages,
    call_ok,
    control,
    make_call,
    no_call_messages,
    now_ms,
    rest_user,
    states,
    uid,
)
from tests.hubproc import OTHER_PROJECT_ID, PROJECT_ID

CALL_FIELDS = {"attribute", "newValue", "oldValue", "userId", "projectId", "timestamp",
               "callEnded", "callId", "from", "to"}


def check_message(body: dict[str, Any], *, user: str, call: dict[str, Any], new: str,
                  old: str | None, ended: bool, project: int = PROJECT_ID) -> None:
    """One call message, field by field."""
    message = body["message"]
    expected = {"attribute": "call", "newValue": new, "oldValue": old, "userId": user,
                "projectId": project, "callEnded": ended, "callId": call["callId"],
                "from": call["from"], "to": call["to"]}
    assert {k: message.get(k) for k in expected} == expected, body
    assert set(message) - {"displayName", "endReason"} == CALL_FIELDS, body
    assert ("endReason" in message) == (new == "Ended"), body
    assert isinstance(message["timestamp"], int)


async def test_every_transition_reaches_both_call_topics_and_all_call_status(
        users: Users) -> None:
    alice, bob = uid("alice"), uid("bob")
    topics = {alice: f"call_{alice}", bob: f"call_{bob}"}
    sup = await users(uid("sup"), subscribe=(*topics.values(), ALL_CALL_STATUS))
    a = await users(alice, call_topic=topics[alice], display_name="Alice")
    b = await users(bob, call_topic=topics[bob], device="bob-phone")
    before = now_ms()
    call = await call_ok(a, bob)
    call_id = call["callId"]
    assert (await control(b, RINGING, call_id))["r"] == 0
    assert (await control(b, ANSWER, call_id))["r"] == 0
    ended = (await control(b, HANGUP, call_id))["call"]
    after = now_ms()

    statuses = ["Calling", "Ringing", "Answered", "Ended"]
    for user in (alice, bob):
        on_topic = await call_messages(sup, topics[user], call_id, 4)
        assert [m["seq"] for m in on_topic] == list(range(1, 5))  # a fresh topic
        olds = [None, *statuses[:-1]]
        for body, new, old in zip(on_topic, statuses, olds, strict=True):
            check_message(body, user=user, call=call, new=new, old=old, ended=new == "Ended")
        assert on_topic[-1]["message"]["endReason"] == "hangup"
        assert on_topic[0]["message"].get("displayName") == ("Alice" if user == alice
                                                              else None)
        times = [m["message"]["timestamp"] for m in on_topic]
        assert before <= times[0] <= times[-1] <= after and times == sorted(times)
        assert times[-1] == ended["endedAt"]
    # ALL_CALL_STATUS: both parties, caller first, at every transition, the same messages.
    everything = await call_messages(sup, ALL_CALL_STATUS, call_id, 8)
    assert [(m["message"]["userId"], m["message"]["newValue"]) for m in everything] == \
        [(user, status) for status in statuses for user in (alice, bob)]
    seqs = [m["seq"] for m in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == 8
    for body in everything:
        user = body["message"]["userId"]
        new = body["message"]["newValue"]
        check_message(body, user=user, call=call, new=new,
                      old=[None, *statuses][statuses.index(new)], ended=new == "Ended")
    # The parties subscribe to nothing, so they got no topic message.
    assert not [f for f in a.backlog + b.backlog if f["service"] == 102]
    assert rest_user(users.hub, alice)["call"] == rest_user(users.hub, bob)["call"] == "Ended"


async def test_a_supervisor_on_all_call_status_alone_sees_both_parties(users: Users) -> None:
    sup = await users.supervisor()
    carol, dave = uid("carol"), uid("dave")
    c = await users(carol)  # no `call` grant at all
    d = await users(dave)
    call = await call_ok(c, dave)
    assert (await control(d, ANSWER, call["callId"]))["r"] == 0
    assert (await control(c, HANGUP, call["callId"]))["r"] == 0
    seen = await call_messages(sup, ALL_CALL_STATUS, call["callId"], 8)
    assert [(m["message"]["userId"], m["message"]["newValue"], m["message"]["callEnded"])
            for m in seen] == [
        (carol, "Calling", False), (dave, "Calling", False),
        (carol, "Ringing", False), (dave, "Ringing", False),
        (carol, "Answered", False), (dave, "Answered", False),
        (carol, "Ended", True), (dave, "Ended", True)]
    assert {m["message"]["endReason"] for m in seen[-2:]} == {"hangup"}
    # The snapshot of ALL_CALL_STATUS holds both parties' latest values.
    snap = await sup.snapshot(ALL_CALL_STATUS)
    assert snap["r"] == 0 and snap["seq"] >= seen[-1]["seq"]
    values = {v["userId"]: v for v in snap["values"] if v["userId"] in (carol, dave)}
    assert {u: (v["attribute"], v["value"], v["callEnded"]) for u, v in values.items()} == \
        {carol: ("call", "Ended", True), dave: ("call", "Ended", True)}


async def test_a_user_without_a_call_grant_publishes_only_to_all_call_status(
        users: Users) -> None:
    erin, frank = uid("erin"), uid("frank")
    frank_topic = f"call_{frank}"
    # Subscribed to a call topic for erin that no grant of hers names.
    sup = await users(uid("sup"), subscribe=(f"call_{erin}", frank_topic, ALL_CALL_STATUS))
    e = await users(erin, call_topic=None)
    f = await users(frank, call_topic=frank_topic)
    call = await call_ok(e, frank)
    await call_messages(sup, ALL_CALL_STATUS, call["callId"], 2)
    (to_frank,) = await call_messages(sup, frank_topic, call["callId"], 1)
    assert to_frank["message"]["userId"] == frank
    assert (await control(f, HANGUP, call["callId"]))["r"] == 0
    await call_messages(sup, ALL_CALL_STATUS, call["callId"], 2)
    (to_frank,) = await call_messages(sup, frank_topic, call["callId"], 1)
    assert to_frank["message"]["newValue"] == "Ended"
    await no_call_messages(sup, call["callId"], topic=f"call_{erin}")
    await no_call_messages(sup, call["callId"])


async def test_a_busy_callee_publishes_nothing_and_callended_stays_true_to_life(
        users: Users) -> None:
    sup = await users.supervisor()
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    a = await users(alice)
    b = await users(bob)
    c = await users(carol)
    first = await call_ok(c, bob)
    assert (await control(b, ANSWER, first["callId"]))["r"] == 0
    await call_messages(sup, ALL_CALL_STATUS, first["callId"], 6)
    busy = (await make_call(a, bob))["call"]
    assert busy["endReason"] == "busy"
    # Only the caller's side of a busy call is published: bob is still in his call.
    seen = await call_messages(sup, ALL_CALL_STATUS, busy["callId"], 2)
    assert [(m["message"]["userId"], m["message"]["newValue"], m["message"]["callEnded"])
            for m in seen] == [(alice, "Calling", False), (alice, "Ended", True)]
    assert seen[-1]["message"]["endReason"] == "busy"
    await no_call_messages(sup, busy["callId"])
    snap = await sup.snapshot(ALL_CALL_STATUS)
    values = {v["userId"]: (v["value"], v["callEnded"]) for v in snap["values"]}
    assert values[bob] == ("Answered", False) and values[alice] == ("Ended", True)
    assert (await control(c, HANGUP, first["callId"]))["r"] == 0
    ended = await call_messages(sup, ALL_CALL_STATUS, first["callId"], 2)
    assert [m["message"]["callEnded"] for m in ended] == [True, True]


async def test_a_second_call_shows_and_the_first_one_ends_for_all_to_see(
        users: Users) -> None:
    """A caller may start a second call while in one: the attribute follows the second;
    when the first ends, its Ended is published (callEnded false: she is still calling),
    then the attribute shows the call still in progress again."""
    sup = await users.supervisor()
    alice, bob, dave = uid("alice"), uid("bob"), uid("dave")
    a = await users(alice)
    b = await users(bob)
    d = await users(dave)
    first = await call_ok(a, bob)
    assert (await control(b, ANSWER, first["callId"]))["r"] == 0
    await call_messages(sup, ALL_CALL_STATUS, first["callId"], 6)
    second = await call_ok(a, dave)
    assert second["status"] == "Calling"
    calling = await call_messages(sup, ALL_CALL_STATUS, second["callId"], 2)
    check_message(calling[0], user=alice, call=second, new="Calling", old="Answered",
                  ended=False)
    check_message(calling[1], user=dave, call=second, new="Calling", old=None, ended=False)
    assert rest_user(users.hub, alice)["call"] == "Calling"
    # bob hangs up: alice's first call ends, and her attribute goes back to the second.
    assert (await control(b, HANGUP, first["callId"]))["r"] == 0
    alice_ended, bob_ended = await call_messages(sup, ALL_CALL_STATUS, first["callId"], 2)
    check_message(alice_ended, user=alice, call=first, new="Ended", old="Calling",
                  ended=False)
    check_message(bob_ended, user=bob, call=first, new="Ended", old="Answered", ended=True)
    (moved,) = await call_messages(sup, ALL_CALL_STATUS, second["callId"], 1)
    check_message(moved, user=alice, call=second, new="Calling", old="Ended", ended=False)
    assert moved["seq"] == alice_ended["seq"] + 1  # at once, before bob's end
    await no_call_messages(sup, first["callId"])
    assert rest_user(users.hub, alice)["call"] == "Calling"
    assert (await control(d, RINGING, second["callId"]))["r"] == 0
    assert (await control(d, HANGUP, second["callId"]))["r"] == 0
    rest = await call_messages(sup, ALL_CALL_STATUS, second["callId"], 4)
    assert [(m["message"]["userId"], m["message"]["newValue"], m["message"]["callEnded"])
            for m in rest] == [(alice, "Ringing", False), (dave, "Ringing", False),
                               (alice, "Ended", True), (dave, "Ended", True)]
    await states(a, second["callId"], "Calling", "Ringing", "Ended")


async def test_projects_are_isolated(users: Users) -> None:
    here = await users.supervisor()
    there = await users.supervisor(other_project=True)
    # The same user ids in both projects.
    alice, bob = uid("alice"), uid("bob")
    a = await users(alice)
    await users(bob)
    a2 = await users(alice, other_project=True)
    b2 = await users(bob, other_project=True)
    call = await call_ok(a, bob)
    elsewhere = await call_ok(a2, bob)
    assert call["callId"] != elsewhere["callId"]
    mine = await call_messages(here, ALL_CALL_STATUS, call["callId"], 2)
    theirs = await call_messages(there, ALL_CALL_STATUS, elsewhere["callId"], 2)
    assert {m["message"]["projectId"] for m in mine} == {PROJECT_ID}
    assert {m["message"]["projectId"] for m in theirs} == {OTHER_PROJECT_ID}
    # A party of one project cannot touch the call of the other.
    assert (await control(b2, HANGUP, call["callId"]))["r"] == 27
    assert (await control(a, HANGUP, call["callId"]))["r"] == 0
    assert (await control(b2, HANGUP, elsewhere["callId"]))["r"] == 0
    await call_messages(here, ALL_CALL_STATUS, call["callId"], 2)
    await call_messages(there, ALL_CALL_STATUS, elsewhere["callId"], 2)
    await no_call_messages(here, elsewhere["callId"])
    await no_call_messages(there, call["callId"], seconds=0.05)
    snap = await there.snapshot(ALL_CALL_STATUS)
    assert {v["userId"]: v["value"] for v in snap["values"]
            if v["userId"] in (alice, bob)} == {alice: "Ended", bob: "Ended"}
    assert all(v["timestamp"] and v["attribute"] == "call" for v in snap["values"])
