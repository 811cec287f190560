"""The pure core of supervisor actions (monitor/hub/supervision.py): who may act on whom,
the supervised change, the logout's notice and hold, on one node and as a node of many."""

from __future__ import annotations

import json

import pytest

from monitor.hub import supervision
from monitor.hub.cluster.coordinator import RedisCoordinator
from monitor.hub.cluster.ops import Kick, Notify
from monitor.hub.state import HubState, LoginHold
from monitor.hub.supervision import Refused
from monitor.protocol import Result
from monitor.tokens import Grants, TokenError, parse_supervise
from tests.hub_unit.builders import PROJECT, T0, deliveries, login, make_state


def supervisor(*topics: str) -> Grants:
    return Grants(supervise=topics)


@pytest.fixture
def state() -> HubState:
    s = make_state()
    login(s, "a1", "agent_a", attributes=[("status", "team_a"), ("onlineStatus", "on_a")])
    login(s, "b1", "agent_b", attributes=[("status", "team_b")])
    login(s, "w1", "watcher", subscribe=["team_a"])
    return s


def test_the_claim_names_topics_or_everyone() -> None:
    assert parse_supervise(None) == ()
    assert parse_supervise("team_a, team_b,team_a") == ("team_a", "team_b")
    assert parse_supervise(["team_a", "*"]) == ("*",)
    for bad in ("bad topic", ["ok", 3], {"a": 1}, ["t"] * 101):
        with pytest.raises(TokenError) as refused:
            parse_supervise(bad)
        assert refused.value.code == Result.TOKEN_PAYLOAD
    member = Grants(attributes=Grants.from_json(
        {"attributes": [{"attribute": "s", "topic": "team_a"}]}).attributes)
    assert supervisor("team_a").may_supervise(member)
    assert supervisor("*").may_supervise(Grants())
    assert not supervisor("team_b").may_supervise(member)
    assert not Grants().may_supervise(member)
    # Kept with the grants (store, log) and shown in the AUTHEN reply only when there.
    assert Grants.from_json(supervisor("t").to_json()) == supervisor("t")
    assert "supervise" not in Grants().to_json()


def test_target_refusals_in_order(state: HubState) -> None:
    def r(grants: Grants, user: object) -> Result | None:
        found = supervision.target(state, grants, PROJECT, user)
        return found.r if isinstance(found, Refused) else None

    assert r(supervisor("team_a"), None) == Result.INVALID_REQUEST
    assert r(Grants(), "agent_a") == Result.TOPIC_NOT_GRANTED
    assert r(Grants(), "nobody") == Result.TOPIC_NOT_GRANTED  # no claim: nothing told
    assert r(supervisor("team_a"), "nobody") == Result.USER_NOT_FOUND
    assert r(supervisor("team_a"), "agent_b") == Result.TOPIC_NOT_GRANTED
    assert r(supervisor("team_a"), "watcher") == Result.TOPIC_NOT_GRANTED  # receives only
    assert r(supervisor("team_a"), "agent_a") is None
    assert r(supervisor("on_a"), "agent_a") is None  # any attribute's topic
    assert r(supervisor("*"), "watcher") is None


def test_reasons_and_actors() -> None:
    assert supervision.reason_of(None, "dflt") == "dflt"
    assert supervision.reason_of("  ") == ""
    assert supervision.reason_of(" lunch ") == "lunch"
    assert isinstance(supervision.reason_of(3), Refused)
    control = supervision.reason_of("a\x1b")
    assert isinstance(control, Refused) and control.r == Result.INVALID_ATTRIBUTE
    assert isinstance(supervision.reason_of("x" * 257), Refused)
    assert supervision.actor_of(None) == "rest"
    assert supervision.actor_of("crm:alice") == "crm:alice"
    for bad in ("", " x", "a\u200bb", "x" * 129):
        assert isinstance(supervision.actor_of(bad), Refused)


def test_a_supervised_change_publishes_like_the_users_own_with_changed_by(
        state: HubState) -> None:
    user = state.user(PROJECT, "agent_a")
    assert user is not None
    effects = supervision.set_attribute(state, "sup", user, "status", "Break", "huddle",
                                        T0 + 1)
    assert effects.result == Result.SUCCESS
    [(handle, frame)] = deliveries(effects)
    assert handle == "w1"
    message = frame["body"]["message"]
    assert (message["newValue"], message["changedBy"], message["reason"]) == \
        ("Break", "sup", "huddle")
    assert user.value("status") == "Break"
    refused = supervision.set_attribute(state, "sup", user, "onlineStatus", "x", "", T0)
    assert refused.result == Result.READ_ONLY_ATTRIBUTE
    missing = supervision.set_attribute(state, "sup", user, "status", None, "", T0,
                                        has_value=False)
    assert missing.result == Result.INVALID_REQUEST


def test_a_logout_notifies_the_users_connections_and_holds_its_logins(
        state: HubState) -> None:
    login(state, "a2", "agent_a", attributes=[("status", "team_a")])
    user = state.user(PROJECT, "agent_a")
    assert user is not None
    effects = supervision.log_out(state, "sup", user, "shift over", T0, 5000)
    notices = deliveries(effects)
    assert {h for h, _ in notices} == {"a1", "a2"}
    body = notices[0][1]["body"]
    assert notices[0][1]["service"] == 1022
    assert body == {"userId": "agent_a", "projectId": PROJECT, "by": "sup",
                    "reason": "shift over", "holdMs": 5000, "until": T0 + 5000}
    assert user.hold == LoginHold(T0 + 5000, "sup", "shift over")
    refusal = supervision.login_refusal(state, PROJECT, "agent_a", T0 + 1000)
    assert refusal is not None
    message, extra = refusal
    assert message == "logged out by sup: shift over; log in again in 4 s"
    assert extra == {"reason": "shift over", "by": "sup", "retryAfterMs": 4000}
    assert supervision.login_refusal(state, PROJECT, "agent_a", T0 + 5000) is None
    assert supervision.login_refusal(state, PROJECT, "agent_b", T0) is None
    assert supervision.login_refusal(state, PROJECT, "nobody", T0) is None
    for undo in reversed(effects.undo):  # the store failed: no hold
        undo()
    assert user.hold is None


def test_on_a_node_of_many_the_logout_is_a_notice_and_a_kick_in_the_log() -> None:
    coordinator = RedisCoordinator()
    state = HubState([PROJECT], coordinator=coordinator)
    user = state.user_or_new(PROJECT, "agent_a")
    effects = supervision.log_out(state, "sup", user, "bye", T0, 3000)
    assert effects.sends == [] and user.hold is None  # until the log says so
    notify, kick = effects.ops
    assert isinstance(notify, Notify) and notify.user_ids == ("agent_a",)
    assert json.loads(notify.frame)["service"] == 1022
    assert kick == Kick(PROJECT, "agent_a", T0 + 3000, "sup", "bye")
    # A node that starts later reads the hold from the user's hash.
    later = HubState([PROJECT], coordinator=RedisCoordinator())
    loaded = RedisCoordinator().load_user_fields(
        later, PROJECT, "agent_a", {"ho": json.dumps([T0 + 3000, "sup", "bye"])})
    assert loaded.hold == LoginHold(T0 + 3000, "sup", "bye")
