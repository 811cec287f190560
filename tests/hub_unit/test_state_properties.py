"""Property tests of HubState: random logins, changes, calls, disconnects and expiries.

After every step: seq grows by exactly one per message on each topic, every topic frame goes
to exactly the connections whose grants subscribe to it, a user is online iff they have a
connection or are within the grace period, history stays bounded, and nothing raises.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from monitor.hub.state import Effects, HubState
from monitor.protocol import ALL_CALL_STATUS, CALL, ONLINE_STATUS, Result, Service
from monitor.tokens import ClientClaims, Grants
from tests.hub_unit.builders import KEY_SID, OTHER_PROJECT, PROJECT, T0, grants

PROJECTS = [PROJECT, OTHER_PROJECT]
USERS = ["u0", "u1", "u2", "u3"]
TOPICS = ["t0", "t1", "t2"]
ATTRIBUTES = [ONLINE_STATUS, "status", "mood", CALL]
CALL_STATUSES = ["Calling", "Ringing", "Answered", "Ended"]

grants_strategy = st.builds(
    grants,
    st.lists(st.sampled_from([*TOPICS, ALL_CALL_STATUS]), unique=True, max_size=4),
    st.lists(st.tuples(st.sampled_from(ATTRIBUTES), st.sampled_from(TOPICS)), unique=True,
             max_size=4))
valid_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "b", "", "é"]),
    st.floats(allow_nan=False, allow_infinity=False))
values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "b", "", "é"]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
    st.lists(st.integers(), max_size=1), st.just("x" * 1025))
names = st.one_of(st.sampled_from([*ATTRIBUTES, "bad name", ""]), st.integers(0, 1))
junk = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers()),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


class HubModel(RuleBasedStateMachine):
    """Drives one HubState; checks every effect it returns and its indexes after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.state = HubState(PROJECTS)
        self.now = T0
        self.next_handle = 0
        self.due: dict[tuple[int, str], int] = {}  # when each user in grace goes offline

    @initialize(history_size=st.integers(0, 4), grace=st.sampled_from([0, 1000, 3000]))
    def start(self, history_size: int, grace: int) -> None:
        self.state = HubState(PROJECTS, history_size=history_size, offline_grace_ms=grace)

    # -- checking one step -----------------------------------------------------------------

    def seqs(self) -> dict[tuple[int, str], int]:
        return {key: topic.seq for key, topic in self.state.topics.items()}

    def subscribed(self, project_id: int, topic: str, but: Hashable = None) -> set[Hashable]:
        return {h for h, s in self.state.sessions.items()
                if h != but and s.user.project_id == project_id
                and s.grants.may_receive(topic)}

    def check(self, effects: Effects, before: dict[tuple[int, str], int],
              new_handle: Hashable = None) -> None:
        sent: dict[tuple[int, str], list[int]] = {}
        for targets, frame in effects.sends:
            targets = list(targets)
            assert len(targets) == len(set(targets))
            data = json.loads(frame)
            body = data["body"]
            if data["service"] == Service.SUBSCRIBE_FROM_SERVER and targets == [new_handle]:
                continue  # resumed: checked by the authenticate step
            if data["service"] == Service.SUBSCRIBE_FROM_SERVER:
                message = body["message"]
                key = (message["projectId"], body["topic"])
                # Only, and all, the connections whose grants subscribe to the topic.
                assert set(targets) == self.subscribed(*key, but=new_handle)
                sent.setdefault(key, []).append(body["seq"])
                if message["attribute"] == ONLINE_STATUS:
                    assert message["newValue"] != message["oldValue"]
                    assert message["newValue"] in ("online", "offline")
                topic = self.state.topics[key]
                assert (body["seq"], frame) in topic.history or \
                    body["seq"] <= topic.seq - len(topic.history)
            elif data["service"] == Service.OTHER_DEVICE_AUTHEN:
                user = self.state.users[(body["projectId"], body["userId"])]
                assert set(targets) <= set(user.sessions)
                assert new_handle not in targets
            else:
                assert data["service"] == Service.AUTHEN
                assert targets == [new_handle]
        for key, topic in self.state.topics.items():
            old = before.get(key, 0)
            assert topic.seq >= old
            # Every message published in this step was sent, one seq each, in order,
            # to the subscribers it had.
            if self.subscribed(*key, but=new_handle):
                assert sent.get(key, []) == list(range(old + 1, topic.seq + 1))
            else:
                assert key not in sent

    @invariant()
    def indexes_agree(self) -> None:
        state = self.state
        all_sessions = {h: s for u in state.users.values() for h, s in u.sessions.items()}
        assert all_sessions == state.sessions
        for (project_id, name), topic in state.topics.items():
            assert topic.subscribers == self.subscribed(project_id, name)
            granted = {(u.user_id, g.attribute) for u in state.users.values()
                       if u.project_id == project_id for g in u.grants.attributes
                       if g.topic == name}
            if name == ALL_CALL_STATUS:
                calls = {(u.user_id, CALL) for u in state.users.values()
                         if u.project_id == project_id and CALL in u.attributes}
                assert calls <= topic.publishers
            else:
                assert topic.publishers == granted

    @invariant()
    def history_is_bounded_and_consecutive(self) -> None:
        for topic in self.state.topics.values():
            assert len(topic.history) <= self.state.history_size
            seqs = [seq for seq, _ in topic.history]
            assert seqs == list(range(topic.seq - len(seqs) + 1, topic.seq + 1))

    @invariant()
    def online_iff_connected_or_within_grace(self) -> None:
        for key, user in self.state.users.items():
            assert user.online == (bool(user.sessions) or user.offline_due_ms is not None)
            assert user.offline_due_ms == self.due.get(key)
            if user.offline_due_ms is not None:
                assert not user.sessions
                assert user.offline_due_ms <= self.now + self.state.offline_grace_ms

    # -- steps -----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), project=st.sampled_from(PROJECTS),
          token=grants_strategy, display=st.sampled_from([None, "", "Name"]),
          device=st.sampled_from([None, "dev"]), resume_topics=st.lists(
              st.tuples(st.sampled_from([*TOPICS, ALL_CALL_STATUS, "nope"]),
                        st.booleans(), st.integers(-1, 6)), max_size=3),
          odd_resume=st.one_of(st.none(), junk))
    def authenticate(self, user: str, project: int, token: Grants, display: str | None,
                     device: str | None, resume_topics: list[tuple[str, bool, int]],
                     odd_resume: object) -> None:
        self.next_handle += 1
        handle = f"h{self.next_handle}"
        resume: object = odd_resume
        if resume_topics:
            resume = {}
            for name, right_epoch, back in resume_topics:
                topic = self.state.topics.get((project, name))
                seq = max(0, (topic.seq if topic else 0) - back)
                epoch = topic.epoch if topic and right_epoch else "stale"
                resume[name] = {"epoch": epoch, "seq": seq}
        before = self.seqs()
        was_online = (project, user) in self.state.users and \
            self.state.users[(project, user)].online
        claims = ClientClaims(KEY_SID, user, 0, token, display)
        client = {"deviceId": device} if device else {}
        outcome = self.state.authenticate(handle, project, claims, client, 1, self.now, resume)
        self.due.pop((project, user), None)
        self.check(outcome.effects, before, new_handle=handle)
        frames = [json.loads(f) for targets, f in outcome.effects.sends if handle in targets]
        reply = frames[0]["body"]
        assert reply["r"] == 0 and reply["userId"] == user and reply["projectId"] == project
        assert handle in {s.handle for s in self.state.users[(project, user)].sessions.values()}
        for name, pos in reply["topics"].items():
            topic = self.state.topics[(project, name)]
            assert pos == {"epoch": topic.epoch, "seq": topic.seq}
        # Resumed frames: only granted topics, consecutive up to the topic's seq.
        recovered = reply.get("recovered", {})
        replayed: dict[str, list[int]] = {}
        for frame in frames[1:]:
            assert frame["service"] == Service.SUBSCRIBE_FROM_SERVER
            replayed.setdefault(frame["body"]["topic"], []).append(frame["body"]["seq"])
        for name, seqs in replayed.items():
            assert token.may_receive(name) and recovered[name] is True
            assert seqs == list(range(seqs[0], self.state.topics[(project, name)].seq + 1))
        assert set(recovered) <= set(token.subscribe)
        if not was_online:
            assert self.state.users[(project, user)].online

    @precondition(lambda self: self.due)
    @rule(data=st.data(), token=grants_strategy)
    def reconnect_within_grace(self, data: st.DataObject, token: Grants) -> None:
        project, user = data.draw(st.sampled_from(sorted(self.due)))
        before = self.seqs()
        self.authenticate(user, project, token, None, None, [], None)
        # Back in time: nothing is published about the user.
        assert self.seqs() == {key: before.get(key, 0) for key in self.seqs()}

    @rule(user=st.sampled_from(USERS), project=st.sampled_from(PROJECTS),
          changes=st.lists(st.tuples(st.sampled_from(["status", "mood"]), valid_values),
                           min_size=1, max_size=3),
          fail=st.booleans())
    def change(self, user: str, project: int, changes: list[tuple[str, Any]],
               fail: bool) -> None:
        before = self.seqs()
        effects = self.state.change_attributes(
            project, user, [{"attribute": n, "value": v} for n, v in changes], self.now)
        self.check(effects, before)
        if (project, user) not in self.state.users:
            assert effects.result == Result.USER_NOT_FOUND
            return
        assert effects.result == Result.SUCCESS
        user_ = self.state.users[(project, user)]
        final = dict(changes)
        for name, value in final.items():
            assert user_.value(name) == value
        if fail:  # the write failed: undo, newest first
            for undo in reversed(effects.undo):
                undo()

    @rule(user=st.sampled_from([*USERS, "stranger"]), project=st.sampled_from(PROJECTS),
          changes=st.lists(st.tuples(names, values), max_size=3), raw=st.booleans(),
          junk_changes=junk)
    def change_anything(self, user: str, project: int, changes: list[tuple[Any, Any]],
                        raw: bool, junk_changes: object) -> None:
        before = self.seqs()
        body: object = junk_changes if raw else [
            {"attribute": name, "value": value} for name, value in changes]
        effects = self.state.change_attributes(project, user, body, self.now)
        if (project, user) not in self.state.users:
            assert effects.result == Result.USER_NOT_FOUND
        if effects.result != Result.SUCCESS:
            assert effects.sends == [] and effects.ops == []
        self.check(effects, before)

    @rule(user=st.sampled_from([*USERS, "external"]), project=st.sampled_from(PROJECTS),
          status=st.sampled_from(CALL_STATUSES), always=st.booleans())
    def call(self, user: str, project: int, status: str, always: bool) -> None:
        before = self.seqs()
        effects = self.state.set_builtin(project, user, CALL, status, self.now,
                                         {"callId": "c", "from": user, "to": "x"}, always)
        self.check(effects, before)
        assert self.state.users[(project, user)].value(CALL) == status

    @precondition(lambda self: self.state.sessions)
    @rule(data=st.data(), immediate=st.booleans())
    def disconnect(self, data: st.DataObject, immediate: bool) -> None:
        handle = data.draw(st.sampled_from(sorted(self.state.sessions, key=str)))
        session = self.state.sessions[handle]
        before = self.seqs()
        effects = self.state.disconnect(handle, self.now, immediate=immediate)
        self.check(effects, before)
        assert handle not in self.state.sessions
        user = session.user
        if not user.sessions and (immediate or self.state.offline_grace_ms == 0):
            assert not user.online
        elif not user.sessions:
            assert user.online
            self.due[(user.project_id, user.user_id)] = self.now + self.state.offline_grace_ms

    @rule(handle=st.sampled_from(["h0", "never", 0]), immediate=st.booleans())
    def disconnect_unknown(self, handle: Hashable, immediate: bool) -> None:
        effects = self.state.disconnect(handle, self.now, immediate=immediate)
        assert effects.sends == [] and effects.ops == []

    @rule(ms=st.one_of(st.sampled_from([1, 499, 500, 501, 999, 1000, 1001, 2999, 3000]),
                       st.integers(0, 4000)))
    def tick(self, ms: int) -> None:
        self.now += ms
        before = self.seqs()
        effects = self.state.expire_offline(self.now)
        self.check(effects, before)
        assert effects.ops == []
        for key, due in list(self.due.items()):
            assert self.state.users[key].online is (due > self.now)
            if due <= self.now:
                del self.due[key]

    @precondition(lambda self: self.state.sessions)
    @rule(data=st.data(), topic=st.one_of(st.sampled_from([*TOPICS, ALL_CALL_STATUS]), junk))
    def snapshot(self, data: st.DataObject, topic: object) -> None:
        handle = data.draw(st.sampled_from(sorted(self.state.sessions, key=str)))
        session = self.state.sessions[handle]
        body = json.loads(self.state.snapshot(session, topic, 5))["body"]
        if body["r"] != Result.SUCCESS:
            return
        assert isinstance(topic, str) and session.grants.may_receive(topic)
        project = session.user.project_id
        assert body["seq"] == self.state.topics[(project, topic)].seq
        for value in body["values"]:
            user = self.state.users[(project, value["userId"])]
            assert user.value(value["attribute"]) == value["value"]
            if topic == ALL_CALL_STATUS:
                assert value["attribute"] == CALL
            else:
                assert topic in user.grants.topics_for(value["attribute"])


HubModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestHubState = HubModel.TestCase
