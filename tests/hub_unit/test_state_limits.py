"""The state's own limits and its all-or-nothing rules: attributes per user, a login that
fails half way, a change published through the grants of the connection that made it."""

from __future__ import annotations

import pytest

from monitor.hub.state import HubState
from monitor.protocol import ONLINE_STATUS, Result
from tests.hub_unit.builders import (
    PROJECT,
    T0,
    change,
    grants,
    login,
    make_state,
    topic_messages,
)


def test_attributes_per_user_are_capped_and_the_builtins_are_not_counted() -> None:
    state = make_state(max_attributes_per_user=3)
    login(state, "c1", "a")  # onlineStatus set: not counted
    for name in ("x", "y", "z"):
        assert change(state, "a", name, 1).result == Result.SUCCESS
    refused = change(state, "a", "w", 1)
    assert refused.result == Result.INVALID_ATTRIBUTE and "3" in (refused.message or "")
    assert refused.ops == [] and refused.sends == []
    assert change(state, "a", "x", 2).result == Result.SUCCESS  # held: may change
    assert set(state.users[(PROJECT, "a")].attributes) == {ONLINE_STATUS, "x", "y", "z"}


def test_a_request_of_several_changes_over_the_cap_changes_nothing() -> None:
    state = make_state(max_attributes_per_user=2)
    login(state, "c1", "a")
    change(state, "a", "x", 1)
    effects = state.change_attributes(PROJECT, "a", [{"attribute": "x", "value": 2},
                                                     {"attribute": "y", "value": 2},
                                                     {"attribute": "z", "value": 2}], T0)
    assert effects.result == Result.INVALID_ATTRIBUTE
    assert state.users[(PROJECT, "a")].value("x") == 1


def _snapshot(state: HubState) -> tuple[object, ...]:
    """What a failed login must leave exactly as it was."""
    return (
        {k: (u.display_name, u.login_time, u.grants, dict(u.attributes), dict(u.sessions),
             u.offline_due_ms) for k, u in state.users.items()},
        dict(state.sessions),
        # A topic may be left created, empty, and its seq past a message that was never
        # sent (a gap, as after a failed commit): what it holds and who is on it is back.
        {k: (list(t.history), set(t.subscribers), set(t.publishers))
         for k, t in state.topics.items() if t.history or t.subscribers or t.publishers},
        dict(state._offline_due),
    )


@pytest.mark.parametrize("known", [False, True])
def test_a_login_that_fails_half_way_leaves_the_state_as_it_was(known: bool) -> None:
    state = make_state(offline_grace_ms=1000)
    login(state, "watcher", "sup", subscribe=["team"])
    if known:  # a user the hub knows, offline within its grace period
        login(state, "old", "agent", attributes=[("onlineStatus", "team")],
              display_name="Old Name")
        state.disconnect("old", T0 + 1)
    before = _snapshot(state)
    with pytest.raises(TypeError):  # the reply cannot be encoded
        login(state, "c1", "agent", T0 + 2, subscribe=["team"],
              attributes=[("onlineStatus", "team"), ("st", "other")],
              display_name="New Name", request_id=object())
    assert _snapshot(state) == before
    # And the same login done properly afterwards works as usual.
    outcome = login(state, "c1", "agent", T0 + 3, subscribe=["team"],
                    attributes=[("onlineStatus", "team")])
    assert outcome.effects.result == Result.SUCCESS
    assert state.users[(PROJECT, "agent")].online


def test_a_change_goes_to_the_topics_of_the_connections_token() -> None:
    state = make_state()
    login(state, "w", "sup", subscribe=["ta", "tb"])
    first = login(state, "c1", "agent", attributes=[("st", "ta")]).session
    second = login(state, "c2", "agent", attributes=[("st", "tb")]).session
    via_first = state.change_attributes(PROJECT, "agent", [{"attribute": "st", "value": 1}],
                                        T0, first.grants)
    assert [m["topic"] for m in topic_messages(via_first, "w")] == ["ta"]
    via_second = state.change_attributes(PROJECT, "agent", [{"attribute": "st", "value": 2}],
                                         T0, second.grants)
    assert [m["topic"] for m in topic_messages(via_second, "w")] == ["tb"]
    # Without a connection (REST): the user's latest grants.
    assert [m["topic"] for m in topic_messages(change(state, "agent", "st", 3), "w")] == \
        ["tb"]
    assert grants(attributes=[("st", "ta")]) == first.grants
