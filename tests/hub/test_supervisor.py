"""Supervisor actions over real sockets (docs/protocol.md, services 1020-1022): a token
that may and tokens that may not, every refusal with its code, the forced logout and its
hold, the same over REST, the audit lines and the counters."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Iterator

import httpx
import pytest

from monitor.tokens import mint_client_token
from tests.hub.conftest import HubFactory
from tests.hub.wire import Wire, authen, hub_with, login, open_wire, user_of
from tests.hubproc import KEY_SECRET, KEY_SID, HubProcess

SET_USER_ATTRIBUTE = 1020
LOGOUT_USER = 1021
LOGGED_OUT = 1022
CLOSE_LOGGED_OUT = 4006
HOLD_MS = 1500

TEAM = "sv_team_a"
OTHER_TEAM = "sv_team_b"
ONLINE = "sv_online_a"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = hub_with(tmp_path_factory.mktemp("hub"), offline_grace_ms=0,
                       logout_hold_ms=HOLD_MS)
    try:
        yield process
    finally:
        process.kill()


def agent_token(hub: HubProcess, user: str, team: str = TEAM) -> str:
    return hub.client_token(user, attributes=[("manual_status", team),
                                              ("onlineStatus", ONLINE)])


async def supervisor(hub: HubProcess, user: str, supervise: list[str],
                     subscribe: tuple[str, ...] = (TEAM, ONLINE)) -> Wire:
    return await login(hub, hub.client_token(user, subscribe=subscribe,
                                             supervise=supervise))


def metric(hub: HubProcess, action: str, via: str, code: int) -> float:
    text = httpx.get(hub.api_url + "/metrics", timeout=5).text
    found = re.search(rf'^monitor_supervisor_actions_total\{{action="{action}",'
                      rf'code="{code}",via="{via}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


# -- the token ---------------------------------------------------------------------------


async def test_the_authen_reply_says_what_the_token_supervises(hub: HubProcess) -> None:
    sup = await supervisor(hub, "sv_sup0", [TEAM, OTHER_TEAM])
    assert sup.authen["supervise"] == [TEAM, OTHER_TEAM]
    plain = await login(hub, agent_token(hub, "sv_plain0"))
    assert "supervise" not in plain.authen
    for wire in (sup, plain):
        await wire.close()


async def test_a_bad_supervise_claim_is_refused_at_authen(hub: HubProcess) -> None:
    for claim in (["bad topic!"], ["x" * 129], ["a"] * 101):
        token = mint_client_token(KEY_SID, KEY_SECRET, "sv_badclaim", supervise=claim)
        wire = await open_wire(hub)
        assert (await authen(wire, token))["r"] == 7
        await wire.close()


# -- setting another user's attribute ----------------------------------------------------


async def test_a_supervisor_sets_an_agents_status_published_with_changed_by(
        hub: HubProcess) -> None:
    agent = await login(hub, agent_token(hub, "sv_agent1"))
    sup = await supervisor(hub, "sv_sup1", [TEAM])
    before = metric(hub, "set_attribute", "ws", 0)
    answer = await sup.request(SET_USER_ATTRIBUTE, {
        "userId": "sv_agent1", "attribute": "manual_status", "value": "Break",
        "reason": "team meeting"})
    assert answer["r"] == 0, answer
    body = await sup.message(TEAM)
    message = body["message"]
    assert (message["userId"], message["attribute"], message["newValue"]) == \
        ("sv_agent1", "manual_status", "Break")
    assert message["changedBy"] == "sv_sup1"
    assert message["reason"] == "team meeting"
    with hub.rest() as rest:
        assert user_of(rest.get("/v1/users/sv_agent1").json())["manual_status"] == "Break"
    # The same value again: acknowledged, nothing published (like the user's own change).
    again = await sup.request(SET_USER_ATTRIBUTE, {
        "userId": "sv_agent1", "attribute": "manual_status", "value": "Break"})
    assert again["r"] == 0
    await sup.quiet(0.3)
    assert metric(hub, "set_attribute", "ws", 0) == before + 2
    for wire in (agent, sup):
        await wire.close()


async def test_every_refusal_has_its_code(hub: HubProcess) -> None:
    agent = await login(hub, agent_token(hub, "sv_agent2"))
    other = await login(hub, agent_token(hub, "sv_agent2b", team=OTHER_TEAM))
    sup = await supervisor(hub, "sv_sup2", [TEAM])
    nobody = await login(hub, hub.client_token("sv_nobody2", subscribe=[TEAM]))
    cases: list[tuple[Wire, int, dict[str, object], int]] = [
        # a token without the claim: not permitted, whoever the user
        (nobody, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "manual_status",
                                      "value": "x"}, 24),
        (nobody, LOGOUT_USER, {"userId": "sv_agent2"}, 24),
        (nobody, LOGOUT_USER, {"userId": "sv_no_such_user"}, 24),
        # a user outside the topics the claim names
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2b", "attribute": "manual_status",
                                   "value": "x"}, 24),
        (sup, LOGOUT_USER, {"userId": "sv_agent2b"}, 24),
        # unknown user
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_no_such_user", "attribute": "s",
                                   "value": 1}, 25),
        (sup, LOGOUT_USER, {"userId": "sv_no_such_user"}, 25),
        # malformed
        (sup, SET_USER_ATTRIBUTE, {"attribute": "s", "value": 1}, 21),
        (sup, SET_USER_ATTRIBUTE, {"userId": 7, "attribute": "s", "value": 1}, 21),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "s"}, 21),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "value": 1}, 21),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "s",
                                   "value": {"a": 1}}, 21),
        (sup, LOGOUT_USER, {}, 21),
        (sup, LOGOUT_USER, {"userId": "sv_agent2", "reason": 3}, 21),
        # built-in attributes are the hub's
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "onlineStatus",
                                   "value": "offline"}, 22),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "call",
                                   "value": "Ended"}, 22),
        # bad values and reasons
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "bad name",
                                   "value": 1}, 23),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "s",
                                   "value": "\x1b[2J"}, 23),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "s",
                                   "value": "x" * 1025}, 23),
        (sup, SET_USER_ATTRIBUTE, {"userId": "sv_agent2", "attribute": "s", "value": 1,
                                   "reason": "a\nb"}, 23),
        (sup, LOGOUT_USER, {"userId": "sv_agent2", "reason": "r" * 257}, 23),
    ]
    for wire, service, body, code in cases:
        answer = await wire.request(service, body)
        assert answer["r"] == code, (service, body, answer)
        assert isinstance(answer["message"], str) and answer["message"]
    # Nothing of it reached anyone: the agent is still online, no message went out.
    await sup.quiet(0.3)
    with hub.rest() as rest:
        values = user_of(rest.get("/v1/users/sv_agent2").json())
    assert values["onlineStatus"] == "online" and "s" not in values
    assert metric(hub, "logout", "ws", 24) >= 3
    for wire in (agent, other, sup, nobody):
        await wire.close()


async def test_before_authen_a_supervisor_request_is_20(hub: HubProcess) -> None:
    wire = await open_wire(hub)
    for service in (SET_USER_ATTRIBUTE, LOGOUT_USER):
        assert (await wire.request(service, {"userId": "x"}))["r"] == 20
    await wire.close()


async def test_a_wildcard_claim_acts_on_anyone_of_the_project(hub: HubProcess) -> None:
    loner = await login(hub, hub.client_token("sv_loner"))  # publishes nowhere
    sup = await supervisor(hub, "sv_sup3", ["*"], subscribe=())
    answer = await sup.request(SET_USER_ATTRIBUTE, {"userId": "sv_loner",
                                                    "attribute": "manual_status",
                                                    "value": "Away"})
    assert answer["r"] == 0
    other_project = await login(hub, hub.client_token("sv_loner", other_project=True))
    sup_b = await login(hub, hub.client_token("sv_sup3b", supervise=["*"],
                                              other_project=True))
    # Another project's supervisor does not see this project's users.
    assert (await sup_b.request(LOGOUT_USER, {"userId": "sv_only_in_25"}))["r"] == 25
    for wire in (loner, sup, other_project, sup_b):
        await wire.close()


# -- logging a user out ------------------------------------------------------------------


async def test_a_forced_logout_sticks_for_the_hold(hub: HubProcess) -> None:
    first = await login(hub, agent_token(hub, "sv_agent4"))
    second = await login(hub, agent_token(hub, "sv_agent4"))
    sup = await supervisor(hub, "sv_sup4", [TEAM])
    reason = 'end of shift, "see you"'
    answer = await sup.request(LOGOUT_USER, {"userId": "sv_agent4", "reason": reason})
    assert answer["r"] == 0 and answer["holdMs"] == HOLD_MS, answer
    for wire in (first, second):
        notice = await wire.until(LOGGED_OUT)
        assert notice["body"]["by"] == "sv_sup4"
        assert notice["body"]["reason"] == reason
        assert notice["body"]["holdMs"] == HOLD_MS
        assert await wire.closed() == CLOSE_LOGGED_OUT
    # Offline at once, without the grace period.
    offline = await sup.message(ONLINE)
    assert offline["message"]["newValue"] == "offline"
    # Logging in again is refused with the reason while the hold lasts...
    again = await open_wire(hub)
    refused = await authen(again, agent_token(hub, "sv_agent4"))
    assert refused["r"] == 11, refused
    assert refused["reason"] == reason and refused["by"] == "sv_sup4"
    assert 0 < refused["retryAfterMs"] <= HOLD_MS
    assert "sv_sup4" in refused["message"] and reason in refused["message"]
    assert await again.closed() == 4001
    # ...and allowed once it is over.
    await asyncio.sleep(HOLD_MS / 1000 + 0.2)
    back = await login(hub, agent_token(hub, "sv_agent4"))
    await back.close()
    await sup.close()


async def test_a_supervisor_may_log_out_a_user_who_is_offline(hub: HubProcess) -> None:
    agent = await login(hub, agent_token(hub, "sv_agent5"))
    await agent.close()
    sup = await supervisor(hub, "sv_sup5", [TEAM])
    answer = await sup.request(LOGOUT_USER, {"userId": "sv_agent5"})
    assert answer["r"] == 0
    wire = await open_wire(hub)
    refused = await authen(wire, agent_token(hub, "sv_agent5"))
    assert refused["r"] == 11 and refused["reason"] == "logged out by a supervisor"
    await wire.close()
    await sup.close()


async def test_the_supervisor_logging_itself_out_gets_its_answer_first(
        hub: HubProcess) -> None:
    sup = await login(hub, hub.client_token("sv_self", supervise=["*"],
                                            attributes=[("manual_status", TEAM)]))
    answer = await sup.request(LOGOUT_USER, {"userId": "sv_self", "reason": "done"})
    assert answer["r"] == 0
    assert (await sup.until(LOGGED_OUT))["body"]["reason"] == "done"
    assert await sup.closed() == CLOSE_LOGGED_OUT


# -- REST ----------------------------------------------------------------------------------


async def test_rest_sets_and_logs_out_with_a_rest_token(hub: HubProcess) -> None:
    agent = await login(hub, agent_token(hub, "sv_agent6"))
    watcher = await login(hub, hub.client_token("sv_watch6", subscribe=[TEAM]))
    with hub.rest() as rest:
        put = rest.put("/v1/users/sv_agent6/attributes/manual_status",
                       json={"value": "Lunch", "by": "crm:alice", "reason": "rota"})
        assert put.status_code == 200, put.text
        assert user_of(put.json())["manual_status"] == "Lunch"
        message = (await watcher.message(TEAM))["message"]
        assert message["changedBy"] == "crm:alice" and message["reason"] == "rota"
        put = rest.put("/v1/users/sv_agent6/attributes/manual_status",
                       json={"value": "Available"})
        message = (await watcher.message(TEAM))["message"]
        assert message["changedBy"] == "rest" and "reason" not in message

        refusals = [
            (rest.put("/v1/users/sv_nobody6/attributes/s", json={"value": 1}), 404, 25),
            (rest.put("/v1/users/sv_agent6/attributes/onlineStatus",
                      json={"value": "offline"}), 400, 22),
            (rest.put("/v1/users/sv_agent6/attributes/s", json={"value": "\x07"}), 400, 23),
            (rest.put("/v1/users/sv_agent6/attributes/s", json={}), 400, 21),
            (rest.put("/v1/users/sv_agent6/attributes/s", json=[1]), 400, 21),
            (rest.put("/v1/users/sv_agent6/attributes/s",
                      json={"value": 1, "by": "a\u202eb"}), 400, 23),
            (rest.post("/v1/users/sv_nobody6/logout", json={}), 404, 25),
            (rest.post("/v1/users/sv_agent6/logout", json={"reason": ["x"]}), 400, 21),
        ]
        for answer, status, code in refusals:
            assert (answer.status_code, answer.json()["r"]) == (status, code), answer.text

        out = rest.post("/v1/users/sv_agent6/logout",
                        json={"reason": "policy", "by": "crm:alice"})
        assert out.status_code == 200, out.text
        assert out.json() == {"r": 0, "message": "SUCCESS", "userId": "sv_agent6",
                              "holdMs": HOLD_MS}
        notice = await agent.until(LOGGED_OUT)
        assert (notice["body"]["by"], notice["body"]["reason"]) == ("crm:alice", "policy")
        assert await agent.closed() == CLOSE_LOGGED_OUT
        # Without a body: the default reason.
        assert rest.post("/v1/users/sv_watch6/logout").json()["r"] == 0
        assert await watcher.closed() == CLOSE_LOGGED_OUT
    unauthenticated = httpx.post(hub.api_url + "/v1/users/sv_agent6/logout", timeout=5)
    assert unauthenticated.status_code == 401
    assert metric(hub, "logout", "rest", 0) >= 2
    assert metric(hub, "set_attribute", "rest", 25) >= 1


# -- audit -------------------------------------------------------------------------------


async def test_every_action_is_one_escaped_audit_line(hub: HubProcess) -> None:
    agent = await login(hub, agent_token(hub, "sv_agent7"))
    sup = await supervisor(hub, "sv_sup7", [TEAM])
    reason = 'fake" event=forged r=0'
    assert (await sup.request(SET_USER_ATTRIBUTE, {
        "userId": "sv_agent7", "attribute": "manual_status", "value": "Training",
        "reason": reason}))["r"] == 0
    assert (await sup.request(LOGOUT_USER, {"userId": "sv_agent7", "reason": reason}))[
        "r"] == 0
    assert (await sup.request(LOGOUT_USER, {"userId": "sv_agent2b_x"}))["r"] == 25
    await agent.closed()
    await sup.close()
    await asyncio.sleep(0.2)
    lines = [line for line in hub.log().splitlines()
             if "event=supervisor_action" in line and "sv_sup7" in line]
    assert len(lines) == 3, lines
    escaped = 'reason="fake\\" event=forged r=0"'
    assert "action=set_attribute via=ws" in lines[0] and "by=sv_sup7 user=sv_agent7" in lines[0]
    assert "attribute=manual_status value=Training" in lines[0] and escaped in lines[0]
    assert lines[0].rstrip().endswith("r=0 refusal=\"\"")
    assert "action=logout" in lines[1] and escaped in lines[1] and " r=0 " in lines[1]
    assert " r=25 " in lines[2] and "user=sv_agent2b_x" in lines[2]
    for line in lines:  # read as fields: the reason is one, and forges nothing
        fields = shlex.split(line)
        assert [f for f in fields if f.startswith("event=")] == ["event=supervisor_action"]
        assert len([f for f in fields if f.startswith("r=")]) == 1
    assert f"reason={reason}" in shlex.split(lines[1])


async def test_a_logout_reaches_the_agent_but_not_its_own_next_login(
        make_hub: HubFactory) -> None:
    """With no hold (logout_hold_ms = 0) the logout still closes, and the next login
    goes through at once."""
    hub = make_hub(offline_grace_ms=0, logout_hold_ms=0)
    agent = await login(hub, agent_token(hub, "sv_agent8"))
    sup = await supervisor(hub, "sv_sup8", [TEAM])
    answer = await sup.request(LOGOUT_USER, {"userId": "sv_agent8"})
    assert answer["r"] == 0 and answer["holdMs"] == 0
    assert await agent.closed() == CLOSE_LOGGED_OUT
    back = await login(hub, agent_token(hub, "sv_agent8"))
    for wire in (back, sup):
        await wire.close()
