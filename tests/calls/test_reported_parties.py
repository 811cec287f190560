"""Calls reported by telephony, as ALL_CALL_STATUS watchers see them: parties that are
users of the project (logged in once, or made known by ``PUT /v1/users/{userId}``) and
several calls of one agent, each with every transition, its end included."""

from __future__ import annotations

from typing import Any

import httpx

from tests.calls.callwire import (
    ALL_CALL_STATUS,
    call_messages,
    no_call_messages,
    put_call,
    rest_user,
    supervisor,
    uid,
)
from tests.hub.conftest import HubFactory
from tests.hub.wire import SUBSCRIBE_FROM_SERVER, Wire, login
from tests.hubproc import HubProcess

CUSTOMER = "+442079460000"


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


async def user_calls(wire: Wire, user_id: str, count: int) -> list[dict[str, Any]]:
    """The next ``count`` ALL_CALL_STATUS messages about ``user_id``, whatever the call,
    in order: (callId, newValue, oldValue, callEnded) each."""
    out = []
    for _ in range(count):
        frame = await wire.until(lambda f: f["service"] == SUBSCRIBE_FROM_SERVER
                                 and f["body"]["topic"] == ALL_CALL_STATUS
                                 and f["body"]["message"]["userId"] == user_id)
        out.append(frame["body"]["message"])
    return out


def summary(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(m["callId"], m["newValue"], m["oldValue"], m["callEnded"]) for m in messages]


async def test_a_call_for_a_user_made_known_by_rest_shows_to_every_watcher(
        call_hub: HubProcess, rest: httpx.Client) -> None:
    """An agent who never logged in, made known by the backend, rings on ALL_CALL_STATUS
    under their name; the customer's number stays a number."""
    ana, team = uid("ana"), uid("team")
    sup = await login(call_hub, call_hub.client_token(
        uid("sup"), subscribe=(ALL_CALL_STATUS, team)))
    try:
        created = ok(rest.put(f"/v1/users/{ana}", json={
            "displayName": "Ana Berg",
            "publish": [{"attribute": "manual_status", "topic": team},
                        {"attribute": "onlineStatus", "topic": team}]}), 201)
        assert created == {"userId": ana, "displayName": "Ana Berg", "loginTime": None,
                           "chatCustomer": False,
                           "attributes": [{"attribute": "onlineStatus", "value": "offline"},
                                          {"attribute": "call"}]}
        # The team's watchers list her at once, offline, by name...
        (offline,) = await sup.messages(1, team)
        assert {k: offline["message"][k] for k in ("userId", "attribute", "newValue",
                                                   "displayName")} == \
            {"userId": ana, "attribute": "onlineStatus", "newValue": "offline",
             "displayName": "Ana Berg"}
        # ... so do their snapshots and the REST list of users.
        snap = await sup.snapshot(team)
        assert [(v["userId"], v["value"], v["displayName"]) for v in snap["values"]] == \
            [(ana, "offline", "Ana Berg")]
        listed = ok(rest.get("/v1/users", params={"includeOffline": "true", "limit": 100,
                                                  "attribute": "onlineStatus",
                                                  "value": "offline"}))
        assert ana in {u["userId"] for u in listed["users"]}

        call_id = uid("pstn")
        ok(put_call(rest, call_id, "Ringing", from_=CUSTOMER, to=ana))
        (ringing,) = await call_messages(sup, ALL_CALL_STATUS, call_id, 1)
        assert {k: ringing["message"][k] for k in ("userId", "displayName", "newValue",
                                                   "callEnded", "from", "to")} == \
            {"userId": ana, "displayName": "Ana Berg", "newValue": "Ringing",
             "callEnded": False, "from": CUSTOMER, "to": ana}
        assert rest_user(call_hub, ana) == {"onlineStatus": "offline", "call": "Ringing"}
        ok(put_call(rest, call_id, "Ended"))
        (ended,) = await call_messages(sup, ALL_CALL_STATUS, call_id, 1)
        assert (ended["message"]["newValue"], ended["message"]["callEnded"]) == ("Ended", True)
        await no_call_messages(sup, call_id)  # nothing for the customer
        assert rest.get(f"/v1/users/{CUSTOMER}").status_code == 404

        # A party the hub does not know is a number too: recorded, not published.
        stranger, other = uid("agent"), uid("pstn")
        ok(put_call(rest, other, "Ringing", from_=CUSTOMER, to=stranger))
        await no_call_messages(sup, other)
        assert rest.get(f"/v1/users/{stranger}").status_code == 404
        ok(put_call(rest, other, "Ended"))

        # When she logs in at last, she is the same user (her token's grants hers now).
        wire = await login(call_hub, call_hub.client_token(
            ana, attributes=[("onlineStatus", team)]))
        (online,) = await sup.messages(1, team)
        assert (online["message"]["oldValue"], online["message"]["newValue"]) == \
            ("offline", "online")
        assert online["message"]["displayName"] == "Ana Berg"  # kept: her token has none
        await wire.close()
    finally:
        await sup.close()


async def test_each_reported_call_shows_every_transition_and_its_end(
        call_hub: HubProcess, rest: httpx.Client) -> None:
    """A second call reported for an agent shows at once; when the first ends, watchers
    see its Ended (callEnded false: she is still in a call), then the call going on."""
    ana = uid("ana")
    ok(rest.put(f"/v1/users/{ana}", json={"displayName": "Ana Berg"}), 201)
    sup = await supervisor(call_hub)
    try:
        first, second = uid("pstn-1"), uid("pstn-2")
        ok(put_call(rest, first, "Ringing", from_=CUSTOMER, to=ana))
        ok(put_call(rest, first, "Answered"))
        ok(put_call(rest, second, "Ringing", from_="+442079460001", to=ana))
        assert summary(await user_calls(sup, ana, 3)) == [
            (first, "Ringing", None, False), (first, "Answered", "Ringing", False),
            (second, "Ringing", "Answered", False)]
        snap = await sup.snapshot(ALL_CALL_STATUS)
        (mine,) = [v for v in snap["values"] if v["userId"] == ana]
        assert (mine["value"], mine["callId"], mine["callEnded"]) == ("Ringing", second, False)

        ok(put_call(rest, first, "Ended"))
        ended, going_on = await user_calls(sup, ana, 2)
        assert summary([ended, going_on]) == [(first, "Ended", "Ringing", False),
                                              (second, "Ringing", "Ended", False)]
        assert ended["endReason"] == "reported" and "endReason" not in going_on
        assert going_on["from"] == "+442079460001"
        assert rest_user(call_hub, ana)["call"] == "Ringing"

        ok(put_call(rest, second, "Answered"))
        ok(put_call(rest, second, "Ended"))
        assert summary(await user_calls(sup, ana, 2)) == [
            (second, "Answered", "Ringing", False), (second, "Ended", "Answered", True)]
        await sup.quiet(0.2)
        assert rest_user(call_hub, ana)["call"] == "Ended"
    finally:
        await sup.close()


async def test_a_call_that_ends_under_another_one_shows_its_end_too(
        call_hub: HubProcess, rest: httpx.Client) -> None:
    """The second call ends first: its Ended is published, then the first call again."""
    ana = uid("ana")
    ok(rest.put(f"/v1/users/{ana}"), 201)
    sup = await supervisor(call_hub)
    try:
        first, second = uid("pstn-1"), uid("pstn-2")
        ok(put_call(rest, first, "Answered", from_=CUSTOMER, to=ana))
        ok(put_call(rest, second, "Ringing", from_=CUSTOMER, to=ana))
        ok(put_call(rest, second, "Ended"))
        ok(put_call(rest, first, "Ended"))
        assert summary(await user_calls(sup, ana, 5)) == [
            (first, "Answered", None, False), (second, "Ringing", "Answered", False),
            (second, "Ended", "Ringing", False), (first, "Answered", "Ended", False),
            (first, "Ended", "Answered", True)]
        await sup.quiet(0.2)
    finally:
        await sup.close()


def test_put_user_creates_then_changes_and_refuses_what_a_monitor_could_not_show(
        call_hub: HubProcess, rest: httpx.Client) -> None:
    ana, team = uid("ana"), uid("team")
    assert rest.get(f"/v1/users/{ana}").status_code == 404
    ok(rest.put(f"/v1/users/{ana}", json={"displayName": "Ana"}), 201)
    # Known now: a second PUT changes what it names, and keeps the rest.
    again = ok(rest.put(f"/v1/users/{ana}", json={
        "publish": [{"attribute": "manual_status", "topic": team}]}))
    assert again["displayName"] == "Ana"
    renamed = ok(rest.put(f"/v1/users/{ana}", json={"displayName": "Ana Berg"}))
    assert renamed["displayName"] == "Ana Berg"
    # Her attributes are set as any user's, published through the grants given.
    changed = ok(rest.put(f"/v1/users/{ana}/attributes",
                          json=[{"attribute": "team", "value": "sales"}]))
    assert {"attribute": "team", "value": "sales"} in changed["attributes"]
    for body, where in (
            ({"displayName": ""}, "displayName"),
            ({"displayName": "x" * 129}, "displayName"),
            ({"displayName": "Ana\x1b]0;x\x07"}, "displayName"),
            ({"displayName": "Ana\u202e"}, "displayName"),
            ({"displayName": 3}, "displayName"),
            ({"publish": [{"attribute": "bad name", "topic": team}]}, "publish"),
            ({"publish": [{"attribute": "manual_status", "topic": "bad topic"}]}, "publish"),
            ({"publish": [{"attribute": "manual_status", "topic": ALL_CALL_STATUS}]},
             "publish"),
            ({"publish": [{"attribute": "a", "topic": f"t{i}"} for i in range(101)]},
             "publish"),
            ({"grants": []}, "grants"),
    ):
        answer = rest.put(f"/v1/users/{ana}", json=body)
        assert answer.status_code == 400 and answer.json()["r"] == 21, (body, answer.text)
        assert where in answer.json()["message"], answer.text
    for bad_id in ("%20ana", "ana%1b", "x" * 129):
        answer = rest.put(f"/v1/users/{bad_id}", json={})
        assert answer.status_code == 400 and answer.json()["r"] == 21, answer.text
    assert ok(rest.get(f"/v1/users/{ana}"))["displayName"] == "Ana Berg"
    # Another project's users are its own.
    with httpx.Client(base_url=call_hub.api_url, timeout=5, headers={
            "X-STRINGEE-AUTH": call_hub.rest_token(other_project=True)}) as other:
        assert other.get(f"/v1/users/{ana}").status_code == 404
    with httpx.Client(base_url=call_hub.api_url, timeout=5) as anonymous:
        assert anonymous.put(f"/v1/users/{uid('x')}", json={}).status_code == 401


def test_users_made_known_count_against_the_keys_rest_changes(make_hub: HubFactory) -> None:
    """A backend cannot make users faster than it may change them: the same limit."""
    hub = make_hub(rest_change_rate_per_key=1, rest_change_burst_per_key=3)
    with hub.rest() as rest:
        answers = [rest.put(f"/v1/users/made_{i}", json={}) for i in range(5)]
        assert [a.status_code for a in answers] == [201] * 3 + [429] * 2
        assert all(a.json()["r"] == 26 and int(a.headers["Retry-After"]) >= 1
                   for a in answers[3:])
        assert rest.get("/v1/users/made_3").status_code == 404  # refused: not made
        assert rest.put("/v1/users/made_0/attributes",
                        json=[{"attribute": "team", "value": "sales"}]).status_code == 429
