"""A node's view without Redis: proposals out, log entries in."""

from __future__ import annotations

import json
from typing import Any

from monitor.hub.cluster.coordinator import RedisCoordinator
from monitor.hub.cluster.ops import Change, Connect, Disconnect, Expire, Notify
from monitor.hub.cluster.redis_store import dumps, grant_map
from monitor.hub.state import HubState, Send
from monitor.protocol import Service
from tests.hub_unit.builders import PROJECT, T0, claims, grants, make_state


class Node:
    """A node's state with its Redis coordinator, without Redis."""

    def __init__(self, **kwargs: Any) -> None:
        self.coordinator = RedisCoordinator()
        self.state = HubState([PROJECT], coordinator=self.coordinator, **kwargs)

    def apply(self, project_id: int, fields: dict[str, str]) -> list[Send]:
        return self.coordinator.apply(self.state, project_id, fields)


def then(effects: Any) -> list[Send]:
    """The sends a login makes once it is in the log (its AUTHEN reply and resume)."""
    return [send for make in effects.then for send in make()]


def entry(user: str, name: str, value: object, old: object, seqs: str, ts: int = T0,
          display: str = "", ended: str = "1") -> dict[str, str]:
    """A log entry of kind ``a`` as the CHANGE script writes it."""
    return {"k": "a", "u": user, "n": name, "v": dumps(value), "o": dumps(old), "t": str(ts),
            "x": "", "s": seqs, "d": display, "e": ended}


def test_changes_are_proposed_not_applied() -> None:
    state = Node().state
    outcome = state.authenticate("h1", PROJECT, claims("a", attributes=[("s", "t")]), {}, 1, T0)
    assert outcome.effects.sends == []  # the reply waits for the login to be in the log
    assert isinstance(outcome.effects.ops[-1], Connect)
    effects = state.change_attributes(PROJECT, "a", [{"attribute": "s", "value": "x"}], T0)
    assert effects.sends == []
    assert effects.ops == [Change(PROJECT, "a", "s", "x", T0, None, False)]
    assert "s" not in state.user(PROJECT, "a").attributes  # until the log says so


def test_an_applied_change_is_the_message_one_node_would_send() -> None:
    single = make_state()
    single.authenticate("w", PROJECT, claims("w", subscribe=["t"]), {}, 1, T0)
    single.authenticate("a", PROJECT, claims("a", attributes=[("s", "t")],
                                             display_name="Ann"), {}, 1, T0)
    expected = single.change_attributes(PROJECT, "a", [{"attribute": "s", "value": 3}],
                                        T0 + 5).sends
    node = Node()
    then(node.state.authenticate("w", PROJECT, claims("w", subscribe=["t"]), {}, 1,
                                 T0).effects)
    sends = node.apply(PROJECT, entry("a", "s", 3, None, "t 1", T0 + 5, "Ann"))
    assert [(list(t), json.loads(f)) for t, f in sends] == \
        [(list(t), json.loads(f)) for t, f in expected]
    assert node.state.user(PROJECT, "a").value("s") == 3


def test_the_reply_counts_what_the_log_brought_before_it() -> None:
    node = Node()
    outcome = node.state.authenticate("w", PROJECT, claims("w", subscribe=["t"]), {}, 7, T0)
    # A message arrives between the AUTHEN and its read-back: not sent to the connection
    # yet (it is not subscribed), counted in the reply's seq instead.
    assert node.apply(PROJECT, entry("a", "s", 1, None, "t 1")) == []
    sends = then(outcome.effects)
    reply = json.loads(sends[0][1])
    assert reply["service"] == Service.AUTHEN and reply["body"]["requestId"] == 7
    assert reply["body"]["topics"]["t"]["seq"] == 1
    # Then live messages follow.
    assert [json.loads(f)["body"]["seq"] for _, f in
            node.apply(PROJECT, entry("a", "s", 2, 1, "t 2"))] == [2]


def test_resume_on_another_node_replays_from_its_history() -> None:
    node = Node()
    node.coordinator.epochs[PROJECT] = "E"
    for seq in range(1, 6):
        node.apply(PROJECT, entry("a", "s", seq, seq - 1, f"t {seq}"))
    outcome = node.state.authenticate("w", PROJECT, claims("w", subscribe=["t"]), {}, 1, T0,
                                      {"t": {"epoch": "E", "seq": 2}})
    sends = then(outcome.effects)
    assert json.loads(sends[0][1])["body"]["recovered"] == {"t": True}
    assert [json.loads(f)["body"]["seq"] for _, f in sends[1:]] == [3, 4, 5]


def test_frames_no_connection_here_needs_are_made_when_one_subscribes() -> None:
    """A topic's messages are framed lazily while no connection of the node subscribes
    to it; a resume still gets every one, in order, as a subscriber got them live."""
    node = Node()
    node.coordinator.epochs[PROJECT] = "E"
    node.coordinator.reset_topics(node.state, PROJECT, "E", {})

    def change(seq: int) -> list[Send]:
        return node.apply(PROJECT, entry("a", "s", seq, seq - 1, f"t {seq}", T0 + seq))

    def login(handle: str, resume: dict[str, Any]) -> list[dict[str, Any]]:
        outcome = node.state.authenticate(handle, PROJECT, claims(handle, subscribe=["t"]),
                                          {}, 1, T0, resume)
        return [json.loads(f) for _, f in then(outcome.effects)]

    assert change(1) == [] and change(2) == []
    topic = node.state.topics[(PROJECT, "t")]
    assert (topic.seq, list(topic.history)) == (2, [])  # numbered, not framed
    login("w1", {})
    live = [json.loads(f) for _, f in change(3)]
    node.state.disconnect("w1", T0)
    assert change(4) == [] and change(5) == []
    replayed = login("w2", {"t": {"epoch": "E", "seq": 0}})
    assert replayed[0]["body"]["recovered"] == {"t": True}
    assert [m["body"]["seq"] for m in replayed[1:]] == [1, 2, 3, 4, 5]
    assert replayed[3] == live[0]
    assert [m["body"]["message"]["newValue"] for m in replayed[1:]] == [1, 2, 3, 4, 5]
    assert [m["body"]["message"]["timestamp"] for m in replayed[1:]] == \
        [T0 + seq for seq in range(1, 6)]
    # A resync starts the topic over: what was kept unframed is gone with its epoch.
    node.state.disconnect("w2", T0)
    change(6)
    node.coordinator.reset_topics(node.state, PROJECT, "E2", {"t": 6})
    assert login("w3", {"t": {"epoch": "E2", "seq": 5}})[0]["body"]["recovered"] == \
        {"t": False}


def test_history_loaded_at_start_keeps_only_an_unbroken_run() -> None:
    node = Node()
    entries = [entry("a", "s", 1, None, "t 1"), entry("a", "s", 3, 1, "t 3"),
               entry("a", "s", 4, 3, "t 4")]
    node.coordinator.reset_topics(node.state, PROJECT, "E", {"t": 4})
    node.coordinator.load_history(node.state, PROJECT, entries, {"t": 4})
    topic = node.state.topics[(PROJECT, "t")]
    assert (topic.epoch, topic.seq) == ("E", 4)
    assert [s for s, _ in topic.history] == [3, 4]


def test_presence_is_proposed_by_connections() -> None:
    node = Node(offline_grace_ms=1000).state
    session = node.authenticate("h", PROJECT, claims("a"), {}, 1, T0).session
    effects = node.disconnect("h", T0 + 10)
    assert [op for op in effects.ops if not isinstance(op, Notify)] == [
        Disconnect(PROJECT, "a", session.connection_id, T0 + 10, 1000)]
    assert node.expire_offline(T0 + 500).ops == []
    assert node.expire_offline(T0 + 1010).ops == [Expire(PROJECT, "a", T0 + 1010)]
    node.authenticate("h2", PROJECT, claims("a"), {}, 1, T0)
    kicked = node.disconnect("h2", T0 + 20, immediate=True).ops[-1]
    assert isinstance(kicked, Disconnect) and kicked.grace_ms == 0


def test_other_devices_are_told_through_the_log_whatever_node_they_are_on() -> None:
    node = Node(offline_grace_ms=1000).state
    login = node.authenticate("h", PROJECT, claims("a"), {"deviceId": "desk"}, 1, T0)
    # No other connection here, but there may be one on another node: Redis decides.
    notices = [op for op in login.effects.ops if isinstance(op, Notify)]
    assert [(n.user_ids, n.skip, n.if_others) for n in notices] == [
        (("a",), login.session.connection_id, True)]
    assert json.loads(notices[0].frame)["body"]["status"] == "connected"
    assert not login.effects.sends  # nothing sent locally: the log brings it to every node
    notices = [op for op in node.disconnect("h", T0 + 10).ops if isinstance(op, Notify)]
    assert json.loads(notices[0].frame)["body"]["status"] == "disconnected"
    assert json.loads(notices[0].frame)["body"]["clientId"] == "desk"


def test_grant_map_is_what_each_attribute_publishes_to() -> None:
    g = grants(attributes=[("s", "t1"), ("s", "t2"), ("call", "c1"),
                           ("call", "ALL_CALL_STATUS")])
    assert grant_map(g) == ["s", "t1 t2", "call", "c1"]
