"""HubState presence: AUTHEN replies, online/offline transitions, grace period, other devices."""

from __future__ import annotations

import json

from monitor.hub.state import AttributeRow, HubState, UserRow
from monitor.protocol import ONLINE_STATUS, Service
from monitor.tokens import Grants
from tests.hub_unit.builders import (
    OTHER_PROJECT,
    PROJECT,
    T0,
    grants,
    login,
    make_state,
    received,
    topic_messages,
)

ONLINE_TOPIC = "online_status_A"
WATCH = {"subscribe": [ONLINE_TOPIC]}
PUBLISH = {"attributes": [(ONLINE_STATUS, ONLINE_TOPIC)]}


def supervised(**kwargs: object) -> tuple[HubState, str]:
    """A state with a supervisor connection ``sup`` watching ONLINE_TOPIC."""
    state = make_state(**kwargs)  # type: ignore[arg-type]
    login(state, "sup", "supervisor", subscribe=[ONLINE_TOPIC])
    return state, "sup"


def status_changes(effects: object, handle: str = "sup") -> list[tuple[object, object]]:
    return [(m["message"]["oldValue"], m["message"]["newValue"])
            for m in topic_messages(effects, handle)]  # type: ignore[arg-type]


# -- the AUTHEN reply ----------------------------------------------------------------------


def test_authen_reply_is_first_send_and_carries_every_field() -> None:
    state = make_state(ping_after_ms=12000)
    outcome = login(state, "c1", "agent_1", T0, subscribe=[ONLINE_TOPIC, "ALL_CALL_STATUS"],
                    attributes=[("call", "call_A"), (ONLINE_STATUS, ONLINE_TOPIC)],
                    display_name="Agent One", client={"browserId": "b1"}, request_id=77)
    targets, frame = outcome.effects.sends[0]
    assert tuple(targets) == ("c1",)
    data = json.loads(frame)
    assert data["service"] == Service.AUTHEN
    body = data["body"]
    session = outcome.session
    assert body["r"] == 0 and body["message"] == "SUCCESS"
    assert body["requestId"] == 77
    assert body["userId"] == "agent_1"
    assert body["projectId"] == PROJECT
    assert body["connectionId"] == session.connection_id
    assert body["clients"] == [{"browserId": "b1", "clientId": session.connection_id}]
    assert body["ice_servers"] == []
    assert body["ping_after_ms"] == 12000
    assert body["loginTime"] == T0
    assert body["subscribe"] == [ONLINE_TOPIC, "ALL_CALL_STATUS"]
    assert body["attributes"] == [{"attribute": "call", "topic": "call_A"},
                                  {"attribute": ONLINE_STATUS, "topic": ONLINE_TOPIC}]
    # The login itself was published to ONLINE_TOPIC before the reply's seq was taken.
    online = state.topics[(PROJECT, ONLINE_TOPIC)]
    assert body["topics"] == {ONLINE_TOPIC: {"epoch": online.epoch, "seq": 1},
                              "ALL_CALL_STATUS": {"epoch": state.topics[
                                  (PROJECT, "ALL_CALL_STATUS")].epoch, "seq": 0}}
    assert body["displayName"] == "Agent One"
    assert "recovered" not in body


def test_device_id_is_the_client_id_and_connection_ids_are_unique() -> None:
    state = make_state()
    first = login(state, "c1", "u", client={"deviceId": "dev-1"}).session
    second = login(state, "c2", "u").session
    assert first.client["clientId"] == "dev-1"
    assert second.client["clientId"] == second.connection_id
    assert first.connection_id != second.connection_id


def test_login_stores_the_user_row_but_not_online_status() -> None:
    state = make_state()
    outcome = login(state, "c1", "u", T0 + 5, subscribe=["x"], attributes=[("a", "t")],
                    display_name="Ann")
    assert outcome.effects.ops == [UserRow(PROJECT, "u", "Ann", T0 + 5,
                                           grants(["x"], [("a", "t")]))]
    assert not any(isinstance(op, AttributeRow) for op in outcome.effects.ops)
    user = state.user(PROJECT, "u")
    assert user is not None and user.login_time == T0 + 5 and user.display_name == "Ann"


def test_display_name_survives_a_token_without_one() -> None:
    state = make_state()
    login(state, "c1", "u", display_name="Ann")
    outcome = login(state, "c2", "u", T0 + 1)
    assert state.users[(PROJECT, "u")].display_name == "Ann"
    assert received(outcome.effects, "c2", Service.AUTHEN)[0]["body"]["displayName"] == "Ann"


# -- online / offline ----------------------------------------------------------------------


def test_first_login_publishes_offline_to_online_to_the_granted_topic() -> None:
    # A user the hub has never seen was offline, not unknown.
    state, sup = supervised()
    effects = login(state, "c1", "agent", T0 + 10, **PUBLISH).effects
    [message] = topic_messages(effects, sup)
    assert message["topic"] == ONLINE_TOPIC and message["seq"] == 1
    assert message["message"] == {
        "attribute": ONLINE_STATUS, "newValue": "online", "oldValue": "offline",
        "userId": "agent", "projectId": PROJECT, "timestamp": T0 + 10, "callEnded": True}
    assert state.users[(PROJECT, "agent")].online


def test_login_of_a_stored_user_goes_from_offline_to_online() -> None:
    state, _ = supervised()
    state.load_user(UserRow(PROJECT, "agent", None, T0 - 99, grants(
        attributes=[(ONLINE_STATUS, ONLINE_TOPIC)])), T0)
    assert not state.users[(PROJECT, "agent")].online
    effects = login(state, "c1", "agent", T0 + 1, **PUBLISH).effects
    assert status_changes(effects) == [("offline", "online")]


def test_second_connection_publishes_nothing_and_tells_the_first() -> None:
    state, sup = supervised()
    login(state, "c1", "agent", client={"deviceId": "d1"}, **PUBLISH)
    effects = login(state, "c2", "agent", client={"deviceId": "d2"}, **PUBLISH).effects
    assert topic_messages(effects, sup) == []
    [notice] = received(effects, "c1")
    assert notice["service"] == Service.OTHER_DEVICE_AUTHEN
    body = notice["body"]
    assert body["status"] == "connected" and body["userId"] == "agent"
    assert body["clientId"] == "d2" and body["projectId"] == PROJECT
    assert [c["clientId"] for c in body["clients"]] == ["d1", "d2"]
    reply = received(effects, "c2", Service.AUTHEN)[0]["body"]
    assert [c["clientId"] for c in reply["clients"]] == ["d1", "d2"]
    # The new connection is told nothing beyond its own reply.
    assert len(received(effects, "c2")) == 1


def test_own_login_message_is_counted_but_not_sent_to_the_new_connection() -> None:
    state = make_state()
    effects = login(state, "c1", "agent", subscribe=[ONLINE_TOPIC], **PUBLISH).effects
    assert topic_messages(effects, "c1") == []
    reply = received(effects, "c1", Service.AUTHEN)[0]["body"]
    assert reply["topics"][ONLINE_TOPIC]["seq"] == 1


def test_disconnect_of_one_of_two_connections_keeps_the_user_online() -> None:
    state, sup = supervised()
    login(state, "c1", "agent", client={"deviceId": "d1"}, **PUBLISH)
    login(state, "c2", "agent", client={"deviceId": "d2"}, **PUBLISH)
    effects = state.disconnect("c1", T0 + 5)
    assert topic_messages(effects, sup) == []
    [notice] = received(effects, "c2")
    assert notice["service"] == Service.OTHER_DEVICE_AUTHEN
    assert notice["body"]["status"] == "disconnected"
    assert notice["body"]["clientId"] == "d1"
    assert [c["clientId"] for c in notice["body"]["clients"]] == ["d2"]
    assert state.users[(PROJECT, "agent")].online
    assert state.user_handles(PROJECT, "agent") == ["c2"]


def test_last_disconnect_starts_the_grace_period_then_expiry_goes_offline() -> None:
    state, sup = supervised(offline_grace_ms=3000)
    login(state, "c1", "agent", **PUBLISH)
    effects = state.disconnect("c1", T0 + 100)
    assert effects.sends == [] and effects.ops == []
    user = state.users[(PROJECT, "agent")]
    assert user.online and user.offline_due_ms == T0 + 3100
    assert state.expire_offline(T0 + 3099).sends == []
    assert user.online
    effects = state.expire_offline(T0 + 3100)
    assert status_changes(effects) == [("online", "offline")]
    [message] = topic_messages(effects, sup)
    assert message["message"]["timestamp"] == T0 + 3100 and message["seq"] == 2
    assert not user.online and user.offline_due_ms is None
    # Expiry is once only.
    assert state.expire_offline(T0 + 99_999).sends == []


def test_reconnect_within_grace_publishes_nothing_at_all() -> None:
    state, sup = supervised(offline_grace_ms=3000)
    login(state, "c1", "agent", **PUBLISH)
    state.disconnect("c1", T0 + 100)
    effects = login(state, "c2", "agent", T0 + 2000, **PUBLISH).effects
    assert topic_messages(effects, sup) == []
    user = state.users[(PROJECT, "agent")]
    assert user.offline_due_ms is None
    assert state.expire_offline(T0 + 10_000).sends == []
    assert user.online
    assert state.topics[(PROJECT, ONLINE_TOPIC)].seq == 1


def test_reconnect_then_disconnect_again_restarts_the_grace_period() -> None:
    state, _ = supervised(offline_grace_ms=1000)
    login(state, "c1", "agent", **PUBLISH)
    state.disconnect("c1", T0)
    login(state, "c2", "agent", T0 + 500, **PUBLISH)
    state.disconnect("c2", T0 + 900)
    assert state.expire_offline(T0 + 1000).sends == []
    assert status_changes(state.expire_offline(T0 + 1900)) == [("online", "offline")]


def test_zero_grace_goes_offline_at_once() -> None:
    state, _ = supervised(offline_grace_ms=0)
    login(state, "c1", "agent", **PUBLISH)
    effects = state.disconnect("c1", T0 + 1)
    assert status_changes(effects) == [("online", "offline")]
    assert state.users[(PROJECT, "agent")].offline_due_ms is None


def test_immediate_disconnect_skips_the_grace_period() -> None:
    state, _ = supervised(offline_grace_ms=60_000)
    login(state, "c1", "agent", **PUBLISH)
    assert status_changes(state.disconnect("c1", T0 + 1, immediate=True)) == [
        ("online", "offline")]


def test_immediate_disconnect_of_one_of_two_connections_keeps_online() -> None:
    state, sup = supervised()
    login(state, "c1", "agent", **PUBLISH)
    login(state, "c2", "agent", **PUBLISH)
    effects = state.disconnect("c1", T0 + 1, immediate=True)
    assert topic_messages(effects, sup) == []
    assert state.users[(PROJECT, "agent")].online


def test_disconnect_of_an_unknown_or_gone_handle_does_nothing() -> None:
    state = make_state()
    assert state.disconnect("nobody", T0).sends == []
    login(state, "c1", "agent", **PUBLISH)
    state.disconnect("c1", T0, immediate=True)
    again = state.disconnect("c1", T0 + 1, immediate=True)
    assert again.sends == [] and again.ops == [] and again.undo == []


def test_a_disconnected_subscriber_receives_nothing_more() -> None:
    state, sup = supervised(offline_grace_ms=0)
    state.disconnect(sup, T0)
    effects = login(state, "c1", "agent", **PUBLISH).effects
    assert received(effects, sup) == []
    assert sup not in state.topics[(PROJECT, ONLINE_TOPIC)].subscribers
    assert sup not in state.sessions


def test_only_transitions_are_published_over_many_logins() -> None:
    state, _ = supervised(offline_grace_ms=0)
    seen: list[tuple[object, object]] = []
    for i in range(3):
        seen += status_changes(login(state, f"a{i}", "agent", T0 + i, **PUBLISH).effects)
        seen += status_changes(login(state, f"b{i}", "agent", T0 + i, **PUBLISH).effects)
        seen += status_changes(state.disconnect(f"a{i}", T0 + i))
        seen += status_changes(state.disconnect(f"b{i}", T0 + i))
    assert seen == [("offline", "online"), ("online", "offline"),
                    ("offline", "online"), ("online", "offline"),
                    ("offline", "online"), ("online", "offline")]


def test_failed_login_undo_takes_the_user_back_offline() -> None:
    state = make_state()
    state.load_user(UserRow(PROJECT, "stored", None, None, Grants()), T0)
    effects = login(state, "c1", "stored", T0 + 1).effects
    for undo in reversed(effects.undo):
        undo()
    assert state.users[(PROJECT, "stored")].value(ONLINE_STATUS) == "offline"
    fresh = login(state, "c2", "fresh", T0 + 1).effects
    for undo in reversed(fresh.undo):
        undo()
    assert state.users[(PROJECT, "fresh")].value(ONLINE_STATUS) == "offline"


# -- loading, lookups, the REST user object -------------------------------------------------


def test_loaded_users_start_offline_with_their_stored_values() -> None:
    state = make_state()
    user = state.load_user(UserRow(PROJECT, "u", "Ann", 123, grants(["t"])), T0)
    state.load_attribute(AttributeRow(PROJECT, "u", "status", "busy", T0 - 5))
    assert user.value(ONLINE_STATUS) == "offline"
    assert user.attributes[ONLINE_STATUS].updated_ms == T0
    assert user.value("status") == "busy" and user.attributes["status"].updated_ms == T0 - 5
    assert user.login_time == 123 and user.display_name == "Ann"
    assert user.grants == grants(["t"])
    assert user.sessions == {} and not user.online


def test_lookups() -> None:
    state = make_state()
    login(state, "c1", "u1")
    login(state, "c2", "u1")
    login(state, "c3", "u2")
    login(state, "c4", "u1", project=OTHER_PROJECT)
    assert state.user(PROJECT, "nobody") is None
    assert sorted(u.user_id for u in state.project_users(PROJECT)) == ["u1", "u2"]
    assert [u.user_id for u in state.project_users(OTHER_PROJECT)] == ["u1"]
    assert state.user_handles(PROJECT, "u1") == ["c1", "c2"]
    assert state.user_handles(OTHER_PROJECT, "u1") == ["c4"]
    assert state.user_handles(PROJECT, "nobody") == []


def test_same_user_id_in_two_projects_are_different_users() -> None:
    state = make_state(offline_grace_ms=0)
    login(state, "p1", "sup", subscribe=[ONLINE_TOPIC])
    login(state, "p2", "sup", subscribe=[ONLINE_TOPIC], project=OTHER_PROJECT)
    effects = login(state, "c1", "agent", **PUBLISH).effects
    assert len(topic_messages(effects, "p1")) == 1
    assert received(effects, "p2") == []
    other = login(state, "c2", "agent", project=OTHER_PROJECT, **PUBLISH).effects
    assert received(other, "p1") == []
    assert [m["message"]["projectId"] for m in topic_messages(other, "p2")] == [OTHER_PROJECT]
    assert state.topics[(PROJECT, ONLINE_TOPIC)].seq == 1
    assert state.topics[(OTHER_PROJECT, ONLINE_TOPIC)].seq == 1


def test_public_user_object() -> None:
    state = make_state()
    login(state, "c1", "u", T0, display_name="Ann")
    user = state.users[(PROJECT, "u")]
    assert user.public() == {
        "loginTime": T0, "chatCustomer": False, "userId": "u", "displayName": "Ann",
        "attributes": [{"attribute": ONLINE_STATUS, "value": "online"},
                       {"attribute": "call"}]}
    state.change_attributes(PROJECT, "u", [{"attribute": "zeta", "value": 1},
                                           {"attribute": "alpha", "value": None}], T0)
    state.set_builtin(PROJECT, "u", "call", "Ringing", T0)
    assert user.public()["attributes"] == [
        {"attribute": ONLINE_STATUS, "value": "online"},
        {"attribute": "call", "value": "Ringing"},
        {"attribute": "alpha", "value": None},
        {"attribute": "zeta", "value": 1}]


def test_public_user_object_of_a_user_never_seen_online() -> None:
    state = make_state()
    state.set_builtin(PROJECT, "ghost", "call", "Calling", T0)
    public = state.users[(PROJECT, "ghost")].public()
    assert public == {"loginTime": None, "chatCustomer": False, "userId": "ghost",
                      "attributes": [{"attribute": ONLINE_STATUS},
                                     {"attribute": "call", "value": "Calling"}]}

