"""HubState topics: seq, epoch, bounded history, resume, snapshots, the grants index."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.hub.state import AttributeRow, HubState, UserRow, new_epoch
from monitor.protocol import ALL_CALL_STATUS, ONLINE_STATUS, Result, Service
from tests.hub_unit.builders import (
    OTHER_PROJECT,
    PROJECT,
    T0,
    change,
    grants,
    login,
    make_state,
    received,
    topic_messages,
)


def publishing(history_size: int = 1000) -> HubState:
    """Agent ``a`` publishes ``status`` to ``team`` (no subscriber yet)."""
    state = make_state(history_size=history_size)
    login(state, "ca", "a", attributes=[("status", "team")])
    return state


def publish(state: HubState, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        assert change(state, "a", "status", i, T0 + i).result == Result.SUCCESS


def history_seqs(state: HubState, name: str = "team") -> list[int]:
    return [seq for seq, _ in state.topics[(PROJECT, name)].history]


def snapshot(state: HubState, handle: str, topic: object, request_id: Any = 9) -> dict[str, Any]:
    frame = json.loads(state.snapshot(state.sessions[handle], topic, request_id))
    assert frame["service"] == Service.TOPIC_SNAPSHOT
    return frame["body"]


# -- seq, epoch, history ---------------------------------------------------------------------


def test_seq_starts_at_one_and_grows_by_one_per_message() -> None:
    state = publishing()
    login(state, "sup", "sup", subscribe=["team"])
    seqs = []
    for i in range(5):
        seqs += [m["seq"] for m in topic_messages(change(state, "a", "status", i), "sup")]
    assert seqs == [1, 2, 3, 4, 5]
    assert state.topics[(PROJECT, "team")].seq == 5


def test_seq_is_counted_even_without_subscribers() -> None:
    state = publishing()
    publish(state, 3)
    login(state, "sup", "sup", subscribe=["team"])
    assert [m["seq"] for m in topic_messages(change(state, "a", "status", "x"), "sup")] == [4]


def test_seq_is_per_topic_and_per_project() -> None:
    state = make_state()
    login(state, "sup", "sup", subscribe=["t1", "t2"])
    login(state, "osup", "sup", subscribe=["t1"], project=OTHER_PROJECT)
    login(state, "c1", "a", attributes=[("x", "t1"), ("y", "t2")])
    login(state, "c2", "a", attributes=[("x", "t1")], project=OTHER_PROJECT)
    state.change_attributes(PROJECT, "a", [{"attribute": "x", "value": 1}], T0)
    state.change_attributes(PROJECT, "a", [{"attribute": "x", "value": 2}], T0)
    effects = state.change_attributes(PROJECT, "a", [{"attribute": "y", "value": 1}], T0)
    assert [(m["topic"], m["seq"]) for m in topic_messages(effects, "sup")] == [("t2", 1)]
    other = state.change_attributes(OTHER_PROJECT, "a", [{"attribute": "x", "value": 1}], T0)
    assert [(m["topic"], m["seq"]) for m in topic_messages(other, "osup")] == [("t1", 1)]
    assert received(other, "sup") == []


def test_one_frame_is_encoded_once_for_every_subscriber() -> None:
    state = publishing()
    for i in range(4):
        login(state, f"s{i}", f"sup{i}", subscribe=["team"])
    effects = change(state, "a", "status", "x")
    [(targets, frame)] = effects.sends
    assert sorted(targets) == ["s0", "s1", "s2", "s3"]
    assert json.loads(frame)["body"]["seq"] == 1
    assert state.topics[(PROJECT, "team")].history[-1] == (1, frame)


def test_history_keeps_only_the_latest_messages() -> None:
    state = publishing(history_size=5)
    publish(state, 12)
    assert history_seqs(state) == [8, 9, 10, 11, 12]
    topic = state.topics[(PROJECT, "team")]
    assert [json.loads(frame)["body"]["message"]["newValue"]
            for _, frame in topic.history] == [7, 8, 9, 10, 11]


def test_history_size_zero_keeps_nothing_but_still_counts() -> None:
    state = publishing(history_size=0)
    publish(state, 3)
    assert history_seqs(state) == []
    assert state.topics[(PROJECT, "team")].seq == 3


def test_epochs_come_from_the_epoch_source() -> None:
    state = make_state()
    login(state, "c", "u", subscribe=["a", "b"])
    assert {name: t.epoch for (_, name), t in state.topics.items()} == {"a": "e1", "b": "e2"}


def test_default_epochs_differ() -> None:
    epochs = {new_epoch() for _ in range(50)}
    assert len(epochs) == 50
    assert all(len(e) == 12 and int(e, 16) >= 0 for e in epochs)
    first = HubState([PROJECT])
    second = HubState([PROJECT])
    for state in (first, second):
        login(state, "c", "u", subscribe=["t"])
    assert first.topics[(PROJECT, "t")].epoch != second.topics[(PROJECT, "t")].epoch


# -- resume ----------------------------------------------------------------------------------


def resume(state: HubState, position: Any, handle: str = "r", topic: str = "team",
           subscribe: tuple[str, ...] = ("team",)) -> tuple[dict[str, Any], list[Any]]:
    """Log ``handle`` in with a resume position; the AUTHEN reply body, then its other frames."""
    effects = login(state, handle, "reader", subscribe=subscribe,
                    resume={topic: position}).effects
    frames = received(effects, handle)
    assert frames[0]["service"] == Service.AUTHEN
    return frames[0]["body"], frames[1:]


def test_resume_without_a_gap_sends_the_missed_messages_in_order() -> None:
    state = publishing()
    publish(state, 10)
    body, frames = resume(state, {"epoch": "e1", "seq": 6})
    assert body["recovered"] == {"team": True}
    assert [(f["service"], f["body"]["seq"]) for f in frames] == [
        (Service.SUBSCRIBE_FROM_SERVER, s) for s in (7, 8, 9, 10)]
    assert [f["body"]["message"]["newValue"] for f in frames] == [6, 7, 8, 9]
    assert body["topics"]["team"] == {"epoch": "e1", "seq": 10}


def test_resume_frames_come_after_the_reply_and_before_news_for_others() -> None:
    state = make_state()
    login(state, "ca", "reader", attributes=[(ONLINE_STATUS, "team")])
    login(state, "watcher", "w", subscribe=["team"])
    state.disconnect("ca", T0, immediate=True)
    login(state, "old", "reader", subscribe=["team"])  # another connection of the reader
    effects = login(state, "r", "reader", subscribe=["team"],
                    resume={"team": {"epoch": "e1", "seq": 0}}).effects
    order = [(tuple(targets), json.loads(frame)["service"]) for targets, frame in effects.sends]
    assert order[0] == (("r",), Service.AUTHEN)
    assert order[1:3] == [(("r",), Service.SUBSCRIBE_FROM_SERVER)] * 2
    assert order[3:] == [(("old",), Service.OTHER_DEVICE_AUTHEN)]


def test_resume_at_the_current_seq_recovers_with_nothing_to_send() -> None:
    state = publishing()
    publish(state, 3)
    body, frames = resume(state, {"epoch": "e1", "seq": 3})
    assert body["recovered"] == {"team": True} and frames == []


def test_resume_right_at_the_oldest_held_message_recovers() -> None:
    state = publishing(history_size=5)
    publish(state, 12)  # history holds 8..12
    body, frames = resume(state, {"epoch": "e1", "seq": 7})
    assert body["recovered"] == {"team": True}
    assert [f["body"]["seq"] for f in frames] == [8, 9, 10, 11, 12]


def test_resume_with_a_gap_does_not_recover() -> None:
    state = publishing(history_size=5)
    publish(state, 12)
    body, frames = resume(state, {"epoch": "e1", "seq": 6})
    assert body["recovered"] == {"team": False} and frames == []


def test_resume_of_a_topic_never_published_recovers_from_zero() -> None:
    state = make_state()
    body, frames = resume(state, {"epoch": "e1", "seq": 0})
    assert body["recovered"] == {"team": True} and frames == []


def test_resume_with_history_size_zero() -> None:
    state = publishing(history_size=0)
    publish(state, 2)
    assert resume(state, {"epoch": "e1", "seq": 2}, "r1")[0]["recovered"] == {"team": True}
    assert resume(state, {"epoch": "e1", "seq": 1}, "r2")[0]["recovered"] == {"team": False}


@pytest.mark.parametrize("position", [
    {"epoch": "e-other", "seq": 2},   # the hub restarted: a new epoch
    {"seq": 2},
    {"epoch": "e1", "seq": 4},        # ahead of the hub
    {"epoch": "e1", "seq": -1},
    {"epoch": "e1", "seq": "2"},
    {"epoch": "e1", "seq": 2.0},
    {"epoch": "e1", "seq": True},
    {"epoch": "e1", "seq": None},
    {"epoch": "e1"},
    {"epoch": None, "seq": 2},
    [2], "e1", 2, None,
])
def test_resume_from_a_wrong_position_does_not_recover(position: Any) -> None:
    state = publishing()
    publish(state, 3)
    body, frames = resume(state, position)
    assert body["recovered"] == {"team": False} and frames == []


def test_resume_of_an_ungranted_topic_is_ignored() -> None:
    state = publishing()
    publish(state, 3)
    body, frames = resume(state, {"epoch": "e1", "seq": 0}, subscribe=("elsewhere",))
    assert body["recovered"] == {} and frames == []


def test_resume_of_several_topics() -> None:
    state = make_state(history_size=2)
    login(state, "ca", "a", attributes=[("x", "t1"), ("y", "t2")])
    for i in range(4):
        state.change_attributes(PROJECT, "a", [{"attribute": "x", "value": i},
                                               {"attribute": "y", "value": i}], T0)
    effects = login(state, "r", "reader", subscribe=["t1", "t2"], resume={
        "t1": {"epoch": "e1", "seq": 3}, "t2": {"epoch": "e2", "seq": 0},
        "t3": {"epoch": "e1", "seq": 0}, 7: {"epoch": "e1", "seq": 0}}).effects
    frames = received(effects, "r")
    assert frames[0]["body"]["recovered"] == {"t1": True, "t2": False}
    assert [(f["body"]["topic"], f["body"]["seq"]) for f in frames[1:]] == [("t1", 4)]


@pytest.mark.parametrize("junk", [None, [], "team", 5])
def test_resume_that_is_not_an_object_is_ignored(junk: Any) -> None:
    state = publishing()
    effects = login(state, "r", "reader", subscribe=["team"], resume=junk).effects
    assert "recovered" not in received(effects, "r")[0]["body"]
    assert len(received(effects, "r")) == 1


def test_resume_includes_the_readers_own_login_message() -> None:
    # The AUTHEN reply's seq counts the reader's own online message; resume delivers it.
    state = make_state()
    effects = login(state, "r", "reader", subscribe=["presence"],
                    attributes=[(ONLINE_STATUS, "presence")],
                    resume={"presence": {"epoch": "e1", "seq": 0}}).effects
    frames = received(effects, "r")
    assert frames[0]["body"]["topics"]["presence"]["seq"] == 1
    assert frames[0]["body"]["recovered"] == {"presence": True}
    assert [(f["body"]["seq"], f["body"]["message"]["userId"]) for f in frames[1:]] == [
        (1, "reader")]


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_lists_every_publisher_with_its_value_offline_users_included() -> None:
    state = make_state()
    state.load_user(UserRow(PROJECT, "off", "Off Line", 5, grants(
        attributes=[(ONLINE_STATUS, "team"), ("status", "team")])), T0 - 100)
    state.load_attribute(AttributeRow(PROJECT, "off", "status", "away", T0 - 50))
    login(state, "ca", "a", T0, attributes=[(ONLINE_STATUS, "team"), ("status", "team")])
    change(state, "a", "status", "busy", T0 + 1)
    login(state, "sup", "sup", T0 + 2, subscribe=["team"])
    body = snapshot(state, "sup", "team", request_id=41)
    assert body["r"] == 0 and body["requestId"] == 41 and body["topic"] == "team"
    assert body["epoch"] == state.topics[(PROJECT, "team")].epoch
    assert body["seq"] == state.topics[(PROJECT, "team")].seq == 2
    assert body["values"] == [
        {"userId": "a", "attribute": ONLINE_STATUS, "value": "online", "timestamp": T0},
        {"userId": "a", "attribute": "status", "value": "busy", "timestamp": T0 + 1},
        {"userId": "off", "attribute": ONLINE_STATUS, "value": "offline",
         "timestamp": T0 - 100, "displayName": "Off Line"},
        {"userId": "off", "attribute": "status", "value": "away", "timestamp": T0 - 50,
         "displayName": "Off Line"},
    ]


def test_snapshot_leaves_out_unset_values() -> None:
    state = publishing()
    login(state, "sup", "sup", subscribe=["team"])
    assert snapshot(state, "sup", "team")["values"] == []
    change(state, "a", "status", None)
    assert [v["value"] for v in snapshot(state, "sup", "team")["values"]] == [None]


def test_snapshot_of_all_call_status_lists_call_of_every_user() -> None:
    state = make_state()
    state.set_builtin(PROJECT, "a", "call", "Answered", T0, {"callId": "1"})
    state.set_builtin(PROJECT, "b", "call", "Ended", T0 + 1, {"callId": "2"})
    state.load_attribute(AttributeRow(PROJECT, "c", "call", "Ringing", T0 - 3))
    state.set_builtin(OTHER_PROJECT, "z", "call", "Calling", T0)
    login(state, "sup", "sup", T0 + 2, subscribe=[ALL_CALL_STATUS])
    body = snapshot(state, "sup", ALL_CALL_STATUS)
    assert body["seq"] == 2
    # A snapshot carries what the call's messages carried (the callId here; from and to
    # in a real call): a client joining mid-call knows who each call is with.
    assert body["values"] == [
        {"userId": "a", "attribute": "call", "value": "Answered", "timestamp": T0,
         "callEnded": False, "callId": "1"},
        {"userId": "b", "attribute": "call", "value": "Ended", "timestamp": T0 + 1,
         "callEnded": True, "callId": "2"},
        {"userId": "c", "attribute": "call", "value": "Ringing", "timestamp": T0 - 3,
         "callEnded": False},
    ]


def test_a_snapshot_mid_call_names_the_parties() -> None:
    state = make_state()
    extra = {"callId": "call-1", "from": "+44 20 7946 0001", "to": "a"}
    state.set_builtin(PROJECT, "a", "call", "Answered", T0, extra)
    login(state, "sup", "sup", T0 + 1, subscribe=[ALL_CALL_STATUS])
    [value] = snapshot(state, "sup", ALL_CALL_STATUS)["values"]
    assert {k: value[k] for k in ("callId", "from", "to")} == extra
    assert value["value"] == "Answered" and value["userId"] == "a"


def test_snapshot_of_a_call_topic_carries_call_ended() -> None:
    state = make_state()
    login(state, "ca", "a", attributes=[("call", "call_a")])
    state.set_builtin(PROJECT, "a", "call", "Ringing", T0)
    login(state, "sup", "sup", subscribe=["call_a"])
    [value] = snapshot(state, "sup", "call_a")["values"]
    assert value["value"] == "Ringing" and value["callEnded"] is False


def test_snapshot_seq_is_where_live_messages_continue() -> None:
    state = publishing()
    publish(state, 3)
    login(state, "sup", "sup", subscribe=["team"])
    seq = snapshot(state, "sup", "team")["seq"]
    [message] = topic_messages(change(state, "a", "status", "next"), "sup")
    assert message["seq"] == seq + 1


def test_snapshot_of_an_ungranted_topic_is_refused() -> None:
    state = publishing()
    change(state, "a", "status", "secret")
    login(state, "sup", "sup", subscribe=["other"])
    body = snapshot(state, "sup", "team", request_id=3)
    assert body["r"] == Result.TOPIC_NOT_GRANTED and body["requestId"] == 3
    assert "values" not in body


@pytest.mark.parametrize("topic", [None, 5, "", "bad topic", "x" * 129, ["team"]])
def test_snapshot_of_an_invalid_topic_name_is_invalid_request(topic: Any) -> None:
    state = publishing()
    login(state, "sup", "sup", subscribe=["team"])
    body = snapshot(state, "sup", topic)
    assert body["r"] == Result.INVALID_REQUEST and "values" not in body


def test_snapshot_without_request_id_has_none() -> None:
    state = publishing()
    login(state, "sup", "sup", subscribe=["team"])
    assert "requestId" not in snapshot(state, "sup", "team", request_id=None)


# -- the grants index --------------------------------------------------------------------------


def test_new_grants_move_the_user_between_topics() -> None:
    state = make_state()
    login(state, "sup", "sup", subscribe=["old", "new"])
    login(state, "c1", "a", attributes=[("status", "old"), (ONLINE_STATUS, "old")])
    change(state, "a", "status", "x")
    assert {v["userId"] for v in snapshot(state, "sup", "old")["values"]} == {"a"}
    login(state, "c2", "a", attributes=[("status", "new")])
    assert snapshot(state, "sup", "old")["values"] == []
    assert [(v["userId"], v["attribute"], v["value"])
            for v in snapshot(state, "sup", "new")["values"]] == [("a", "status", "x")]
    assert state.topics[(PROJECT, "old")].publishers == set()
    assert state.topics[(PROJECT, "new")].publishers == {("a", "status")}


def test_loaded_grants_are_indexed_and_replaced_by_a_login() -> None:
    state = make_state()
    state.load_user(UserRow(PROJECT, "a", None, None, grants(attributes=[("s", "t1")])), T0)
    assert state.topics[(PROJECT, "t1")].publishers == {("a", "s")}
    login(state, "c", "a", attributes=[("s", "t2")])
    assert state.topics[(PROJECT, "t1")].publishers == set()
    assert state.topics[(PROJECT, "t2")].publishers == {("a", "s")}


def test_other_users_stay_indexed_when_one_user_changes_grants() -> None:
    state = make_state()
    login(state, "c1", "a", attributes=[("s", "t")])
    login(state, "c2", "b", attributes=[("s", "t")])
    login(state, "c3", "a")
    assert state.topics[(PROJECT, "t")].publishers == {("b", "s")}


def test_subscribers_follow_connections() -> None:
    state = make_state(offline_grace_ms=0)
    login(state, "c1", "u", subscribe=["t1", "t2"])
    login(state, "c2", "u", subscribe=["t2"])
    assert state.topics[(PROJECT, "t1")].subscribers == {"c1"}
    assert state.topics[(PROJECT, "t2")].subscribers == {"c1", "c2"}
    state.disconnect("c1", T0)
    assert state.topics[(PROJECT, "t1")].subscribers == set()
    assert state.topics[(PROJECT, "t2")].subscribers == {"c2"}


# -- a change that could not be made durable ---------------------------------------------------


def test_an_undone_change_is_never_replayed_by_resume() -> None:
    state = publishing()
    publish(state, 2)
    failed = change(state, "a", "status", "phantom", T0 + 50)
    for undo in reversed(failed.undo):
        undo()
    publish(state, 2, start=10)  # seq 4 and 5 went out
    body, frames = resume(state, {"epoch": "e1", "seq": 2}, "r1")
    assert "phantom" not in [f["body"]["message"]["newValue"] for f in frames]
    # seq 3 was never sent: the hub cannot fill the gap, the client must re-read.
    assert body["recovered"] == {"team": False}
    # A client already past the hole still resumes.
    body, frames = resume(state, {"epoch": "e1", "seq": 4}, "r2")
    assert body["recovered"] == {"team": True}
    assert [f["body"]["seq"] for f in frames] == [5]
    assert state.users[(PROJECT, "a")].value("status") == 11
