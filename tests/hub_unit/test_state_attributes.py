"""HubState attributes: CHANGE_ATTRIBUTE and the REST PUT, validation, atomicity, undo."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.hub.state import MAX_CHANGES_PER_REQUEST, AttributeRow, HubState, UserRow
from monitor.protocol import ALL_CALL_STATUS, ONLINE_STATUS, Result
from tests.hub_unit.builders import (
    OTHER_PROJECT,
    PROJECT,
    T0,
    change,
    grants,
    login,
    make_state,
    topic_messages,
)


def watched(**kwargs: Any) -> HubState:
    """Agent ``a`` publishes ``status`` to ``team``; supervisor ``sup`` watches ``team``."""
    state = make_state(**kwargs)
    login(state, "sup", "supervisor", subscribe=["team", "other", ALL_CALL_STATUS, "call_a"])
    login(state, "ca", "a", attributes=[("status", "team"), ("call", "call_a")],
          display_name="Agent A")
    return state


def undo_all(effects: Any) -> None:
    for undo in reversed(effects.undo):
        undo()


# -- publishing --------------------------------------------------------------------------


def test_change_publishes_one_message_to_the_granted_topic() -> None:
    state = watched()
    effects = change(state, "a", "status", "busy", T0 + 7)
    assert effects.result == Result.SUCCESS
    [message] = topic_messages(effects, "sup")
    assert message == {"topic": "team", "seq": 1, "message": {
        "attribute": "status", "newValue": "busy", "oldValue": None, "userId": "a",
        "projectId": PROJECT, "timestamp": T0 + 7, "callEnded": True,
        "displayName": "Agent A"}}
    assert effects.ops == [AttributeRow(PROJECT, "a", "status", "busy", T0 + 7)]
    user = state.users[(PROJECT, "a")]
    assert user.value("status") == "busy" and user.attributes["status"].updated_ms == T0 + 7


def test_old_value_is_the_previous_value() -> None:
    state = watched()
    change(state, "a", "status", "busy", T0)
    [message] = topic_messages(change(state, "a", "status", "idle", T0 + 1), "sup")
    assert message["message"]["oldValue"] == "busy"
    assert message["message"]["newValue"] == "idle"
    assert message["seq"] == 2


def test_same_value_is_acknowledged_and_publishes_nothing() -> None:
    state = watched()
    change(state, "a", "status", "busy", T0)
    effects = change(state, "a", "status", "busy", T0 + 1)
    assert effects.result == Result.SUCCESS
    assert effects.sends == [] and effects.ops == [] and effects.undo == []
    assert state.users[(PROJECT, "a")].attributes["status"].updated_ms == T0
    assert state.topics[(PROJECT, "team")].seq == 1


@pytest.mark.parametrize(("first", "second"), [(1, 1.0), (1, True), (0, False), (None, "")])
def test_equal_values_of_another_json_type_are_a_change(first: Any, second: Any) -> None:
    state = watched()
    change(state, "a", "status", first, T0)
    [message] = topic_messages(change(state, "a", "status", second, T0 + 1), "sup")
    assert message["message"]["oldValue"] == first
    assert type(message["message"]["newValue"]) is type(second)


@pytest.mark.parametrize("value", ["", "é✓", 0, -5, 2**63 - 1, -(2**63), 3.25, True, False, None])
def test_every_allowed_value_is_stored_and_published(value: Any) -> None:
    state = watched()
    effects = change(state, "a", "status", value, T0)
    assert effects.result == Result.SUCCESS
    [message] = topic_messages(effects, "sup")
    assert message["message"]["newValue"] == value
    assert type(message["message"]["newValue"]) is type(value)
    assert state.users[(PROJECT, "a")].value("status") == value


def test_first_null_value_is_a_change_from_unset() -> None:
    state = watched()
    effects = change(state, "a", "status", None, T0)
    assert [m["message"]["newValue"] for m in topic_messages(effects, "sup")] == [None]
    assert "status" in state.users[(PROJECT, "a")].attributes
    assert change(state, "a", "status", None, T0 + 1).sends == []


def test_ungranted_attribute_is_stored_but_published_nowhere() -> None:
    state = watched()
    effects = change(state, "a", "mood", "happy", T0)
    assert effects.result == Result.SUCCESS
    assert effects.sends == []
    assert effects.ops == [AttributeRow(PROJECT, "a", "mood", "happy", T0)]
    assert all(t.seq == 0 for t in state.topics.values())


def test_one_attribute_granted_to_two_topics_publishes_to_both() -> None:
    state = make_state()
    login(state, "sup", "sup", subscribe=["t1", "t2"])
    login(state, "c", "a", attributes=[("status", "t1"), ("status", "t2")])
    effects = change(state, "a", "status", "x", T0)
    assert [(m["topic"], m["seq"]) for m in topic_messages(effects, "sup")] == [
        ("t1", 1), ("t2", 1)]


def test_message_goes_only_to_subscribers_of_the_topic() -> None:
    state = watched()
    login(state, "bystander", "b", subscribe=["other"])
    effects = change(state, "a", "status", "x", T0)
    assert topic_messages(effects, "bystander") == []
    assert [targets for targets, _ in effects.sends] == [("sup",)]


def test_grants_come_from_the_latest_authen() -> None:
    state = watched()
    login(state, "ca2", "a", attributes=[("status", "other")])
    [message] = topic_messages(change(state, "a", "status", "x", T0), "sup")
    assert message["topic"] == "other"


def test_a_stored_offline_user_can_be_changed() -> None:
    state = make_state()
    login(state, "sup", "sup", subscribe=["team"])
    state.load_user(UserRow(PROJECT, "off", None, None, grants(attributes=[("s", "team")])), T0)
    state.load_attribute(AttributeRow(PROJECT, "off", "s", "old", T0 - 1))
    [message] = topic_messages(change(state, "off", "s", "new", T0), "sup")
    assert message["message"]["oldValue"] == "old"
    assert not state.users[(PROJECT, "off")].online


def test_rest_put_applies_many_changes_in_order() -> None:
    state = watched()
    effects = state.change_attributes(PROJECT, "a", [
        {"attribute": "status", "value": "x"}, {"attribute": "mood", "value": 1},
        {"attribute": "status", "value": "y"}], T0)
    assert effects.result == Result.SUCCESS
    assert [(m["message"]["oldValue"], m["message"]["newValue"], m["seq"])
            for m in topic_messages(effects, "sup")] == [(None, "x", 1), ("x", "y", 2)]
    assert [(op.name, op.value) for op in effects.ops] == [  # type: ignore[union-attr]
        ("status", "x"), ("mood", 1), ("status", "y")]


def test_users_are_per_project() -> None:
    state = watched()
    assert change(state, "a", "status", "x", T0, project=OTHER_PROJECT).result == \
        Result.USER_NOT_FOUND


# -- refusals: nothing changes ---------------------------------------------------------------


def _refused(changes: object, expected: Result) -> None:
    state = watched()
    change(state, "a", "status", "before", T0)
    seqs = {key: t.seq for key, t in state.topics.items()}
    attributes = dict(state.users[(PROJECT, "a")].attributes)
    effects = state.change_attributes(PROJECT, "a", changes, T0 + 1)
    assert effects.result == expected
    assert effects.message
    assert effects.sends == [] and effects.ops == [] and effects.undo == []
    assert state.users[(PROJECT, "a")].attributes == attributes
    assert {key: t.seq for key, t in state.topics.items()} == seqs


def test_unknown_user() -> None:
    state = watched()
    effects = change(state, "nobody", "status", "x")
    assert effects.result == Result.USER_NOT_FOUND
    assert "nobody" in (effects.message or "")
    assert (PROJECT, "nobody") not in state.users


@pytest.mark.parametrize("changes", [
    None, {}, "status", [], {"attribute": "status", "value": 1},
    [{"attribute": "s", "value": i} for i in range(MAX_CHANGES_PER_REQUEST + 1)],
])
def test_not_a_list_of_1_to_50_changes(changes: object) -> None:
    _refused(changes, Result.INVALID_REQUEST)


def test_fifty_changes_are_accepted() -> None:
    state = watched()
    effects = state.change_attributes(
        PROJECT, "a", [{"attribute": f"s{i}", "value": i} for i in range(50)], T0)
    assert effects.result == Result.SUCCESS and len(effects.ops) == 50


@pytest.mark.parametrize("item", [
    "status", None, 5, [], {"attribute": "status"}, {"value": 1}, {},
    {"attribute": 5, "value": 1}, {"attribute": None, "value": 1},
    {"attribute": "status", "value": {"a": 1}}, {"attribute": "status", "value": [1]},
])
def test_malformed_change_is_invalid_request(item: object) -> None:
    _refused([item], Result.INVALID_REQUEST)


@pytest.mark.parametrize("name", [ONLINE_STATUS, "call"])
def test_builtin_attribute_is_read_only(name: str) -> None:
    _refused([{"attribute": name, "value": "online"}], Result.READ_ONLY_ATTRIBUTE)


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "colon:no", "é", "a/b", "a\n"])
def test_invalid_attribute_name(name: str) -> None:
    _refused([{"attribute": name, "value": 1}], Result.INVALID_ATTRIBUTE)


def test_longest_attribute_name_is_accepted() -> None:
    state = watched()
    assert change(state, "a", "A_z.9-" + "x" * 58, 1).result == Result.SUCCESS


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), float("-inf"), "x" * 1025, "é" * 513, "\U0001f600" * 257,
    "\ud800",
])
def test_invalid_value(value: Any) -> None:
    _refused([{"attribute": "status", "value": value}], Result.INVALID_ATTRIBUTE)


@pytest.mark.parametrize("value", ["x" * 1024, "é" * 512, "\U0001f600" * 256])
def test_value_of_1024_bytes_is_accepted(value: str) -> None:
    state = watched()
    assert change(state, "a", "status", value).result == Result.SUCCESS


def test_one_bad_change_refuses_the_whole_batch() -> None:
    _refused([{"attribute": "status", "value": "ok"}, {"attribute": "mood", "value": 1},
              {"attribute": "call", "value": "x"}], Result.READ_ONLY_ATTRIBUTE)
    _refused([{"attribute": "status", "value": "ok"}, {"attribute": "bad name", "value": 1}],
             Result.INVALID_ATTRIBUTE)


# -- undo -----------------------------------------------------------------------------------


def test_undo_restores_the_previous_value() -> None:
    state = watched()
    change(state, "a", "status", "busy", T0)
    effects = change(state, "a", "status", "idle", T0 + 1)
    undo_all(effects)
    user = state.users[(PROJECT, "a")]
    assert user.value("status") == "busy" and user.attributes["status"].updated_ms == T0


def test_undo_removes_a_new_attribute() -> None:
    state = watched()
    undo_all(change(state, "a", "status", "busy", T0))
    assert "status" not in state.users[(PROJECT, "a")].attributes


def test_undo_leaves_a_later_change_alone() -> None:
    state = watched()
    first = change(state, "a", "status", "busy", T0)
    change(state, "a", "status", "idle", T0 + 1)
    undo_all(first)
    assert state.users[(PROJECT, "a")].value("status") == "idle"


def test_undo_of_a_batch_restores_every_value() -> None:
    state = watched()
    change(state, "a", "status", "s0", T0)
    effects = state.change_attributes(PROJECT, "a", [
        {"attribute": "status", "value": "s1"}, {"attribute": "status", "value": "s2"},
        {"attribute": "mood", "value": "m"}], T0 + 1)
    undo_all(effects)
    user = state.users[(PROJECT, "a")]
    assert user.value("status") == "s0" and "mood" not in user.attributes


# -- hub-owned attributes -------------------------------------------------------------------


def test_call_status_goes_to_the_call_topic_and_all_call_status() -> None:
    state = watched()
    extra = {"callId": "c-1", "from": "a", "to": "+100"}
    effects = state.set_builtin(PROJECT, "a", "call", "Ringing", T0, extra)
    messages = topic_messages(effects, "sup")
    assert [m["topic"] for m in messages] == ["call_a", ALL_CALL_STATUS]
    for m in messages:
        assert m["seq"] == 1
        assert m["message"]["callEnded"] is False
        assert m["message"]["newValue"] == "Ringing" and m["message"]["oldValue"] is None
        assert {k: m["message"][k] for k in extra} == extra
    assert effects.ops == [AttributeRow(PROJECT, "a", "call", "Ringing", T0)]
    ended = topic_messages(state.set_builtin(PROJECT, "a", "call", "Ended", T0 + 1), "sup")
    assert [m["message"]["callEnded"] for m in ended] == [True, True]
    assert [m["message"]["oldValue"] for m in ended] == ["Ringing", "Ringing"]


def test_call_status_of_a_user_without_call_grant_still_reaches_all_call_status() -> None:
    state = watched()
    login(state, "cb", "b")
    effects = state.set_builtin(PROJECT, "b", "call", "Calling", T0)
    assert [m["topic"] for m in topic_messages(effects, "sup")] == [ALL_CALL_STATUS]


def test_call_status_of_an_unknown_user_creates_the_user() -> None:
    state = watched()
    effects = state.set_builtin(PROJECT, "stranger", "call", "Calling", T0)
    assert [m["message"]["userId"] for m in topic_messages(effects, "sup")] == ["stranger"]
    user = state.users[(PROJECT, "stranger")]
    assert user.in_call() and not user.online


def test_repeating_a_call_status_publishes_only_when_asked() -> None:
    state = watched()
    state.set_builtin(PROJECT, "a", "call", "Calling", T0, {"callId": "1"})
    assert state.set_builtin(PROJECT, "a", "call", "Calling", T0 + 1, {"callId": "1"}).sends \
        == []
    again = state.set_builtin(PROJECT, "a", "call", "Calling", T0 + 2, {"callId": "2"},
                              always=True)
    assert [m["message"]["callId"] for m in topic_messages(again, "sup")] == ["2", "2"]


def test_in_call_follows_the_call_status() -> None:
    state = watched()
    user = state.users[(PROJECT, "a")]
    assert not user.in_call()
    for status, in_call in [("Calling", True), ("Ringing", True), ("Answered", True),
                            ("Ended", False)]:
        state.set_builtin(PROJECT, "a", "call", status, T0)
        assert user.in_call() is in_call


def test_other_attribute_messages_say_whether_the_user_is_in_a_call() -> None:
    state = watched()
    state.set_builtin(PROJECT, "a", "call", "Answered", T0)
    [message] = topic_messages(change(state, "a", "status", "x", T0 + 1), "sup")
    assert message["message"]["callEnded"] is False


def test_online_status_of_a_logged_in_user_is_not_stored() -> None:
    state = make_state()
    effects = login(state, "c", "u", attributes=[(ONLINE_STATUS, "t")]).effects
    assert not any(isinstance(op, AttributeRow) for op in effects.ops)
