"""The client SDK's supervisor actions against a real hub, and what a HubClient does when
a supervisor logs its user out: it is told why, does not reconnect, and says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from monitor.client import (
    AsyncRestClient,
    HubClient,
    LoggedOutError,
    NotFoundError,
    RefusedError,
    RestClient,
)
from tests.client.conftest import Recorder
from tests.hub.wire import hub_with
from tests.hubproc import HubProcess

HOLD_MS = 1500
TEAM = "cl_sv_team"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = hub_with(tmp_path_factory.mktemp("hub"), offline_grace_ms=0,
                       logout_hold_ms=HOLD_MS)
    try:
        yield process
    finally:
        process.kill()


def agent_token(hub: HubProcess, user: str) -> str:
    return hub.client_token(user, attributes=[("manual_status", TEAM)])


async def test_supervisor_requests_and_their_refusals(
        hub: HubProcess, make_client: Callable[..., HubClient]) -> None:
    agent = make_client(hub.ws_url, agent_token(hub, "cl_sv_agent1"))
    await agent.connect()
    sup = make_client(hub.ws_url, hub.client_token("cl_sv_sup1", subscribe=[TEAM],
                                                   supervise=[TEAM]))
    events = Recorder(sup)
    assert (await sup.connect())["supervise"] == [TEAM]
    assert (await sup.set_user_attribute("cl_sv_agent1", "manual_status", "Break",
                                         reason="huddle"))["r"] == 0
    [body] = await events.wait("messagefromtopic")
    assert body["message"]["changedBy"] == "cl_sv_sup1"
    assert body["message"]["reason"] == "huddle"
    with pytest.raises(NotFoundError) as missing:
        await sup.log_out_user("cl_sv_nobody")
    assert missing.value.r == 25

    plain = make_client(hub.ws_url, hub.client_token("cl_sv_plain1"))
    await plain.connect()
    for action in (plain.set_user_attribute("cl_sv_agent1", "manual_status", "x"),
                   plain.log_out_user("cl_sv_agent1")):
        with pytest.raises(RefusedError) as refused:
            await action
        assert refused.value.r == 24
    assert agent.connected


@pytest.mark.parametrize("stop_codes", [None, ()])
async def test_a_logged_out_client_does_not_reconnect_and_says_why(
        hub: HubProcess, make_client: Callable[..., HubClient],
        stop_codes: tuple[int, ...] | None) -> None:
    user = f"cl_sv_agent2_{stop_codes is None}"
    options = {} if stop_codes is None else {"stop_on_close_codes": stop_codes}
    agent = make_client(hub.ws_url, agent_token(hub, user), **options)
    events = Recorder(agent)
    await agent.connect()
    sup = make_client(hub.ws_url, hub.client_token("cl_sv_sup2", supervise=["*"]))
    await sup.connect()
    assert (await sup.log_out_user(user, reason="shift over"))["holdMs"] == HOLD_MS

    [notice] = await events.wait("loggedout")
    assert (notice["by"], notice["reason"], notice["holdMs"]) == \
        ("cl_sv_sup2", "shift over", HOLD_MS)
    [gone] = await events.wait("disconnect")
    assert gone["code"] == 4006 and gone["reconnecting"] is False
    with pytest.raises(LoggedOutError) as stopped:
        await agent.wait_closed()
    error = stopped.value
    assert (error.reason, error.by) == ("shift over", "cl_sv_sup2")
    assert "shift over" in str(error)
    assert agent.error is error
    assert agent.logged_out is not None and agent.logged_out["reason"] == "shift over"
    assert not agent.running and not agent.connected
    # Nothing more, well past the hold: no new attempt.
    await asyncio.sleep(HOLD_MS / 1000 + 0.5)
    assert agent.stats.reconnects == 0 and events.names().count("connect") == 1


async def test_connecting_during_the_hold_is_refused_then_allowed_when_asked_again(
        hub: HubProcess, make_client: Callable[..., HubClient]) -> None:
    user = "cl_sv_agent3"
    with RestClient(hub.api_url, hub.rest_token()) as rest:
        agent = make_client(hub.ws_url, agent_token(hub, user))
        await agent.connect()
        answer = rest.log_out_user(user, reason="audit", by="crm:bob")
        assert answer == {"r": 0, "message": "SUCCESS", "userId": user, "holdMs": HOLD_MS}
        with pytest.raises(LoggedOutError):
            await agent.wait_closed()
        assert agent.error is not None and agent.logged_out is not None
        with pytest.raises(LoggedOutError) as refused:
            await agent.connect()
        assert refused.value.r == 11 and refused.value.by == "crm:bob"
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 1.5
        await asyncio.sleep(refused.value.retry_after + 0.1)
        assert (await agent.connect())["r"] == 0  # the operator asked again
        assert agent.logged_out is None and agent.error is None
        user_now = rest.set_user_attribute(user, "manual_status", "Available", by="crm:bob")
        values = {a["attribute"]: a.get("value") for a in user_now["attributes"]}
        assert values["manual_status"] == "Available"
    async with AsyncRestClient(hub.api_url, hub.rest_token()) as arest:
        with pytest.raises(NotFoundError):
            await arest.log_out_user("cl_sv_nobody")
        await arest.set_user_attribute(user, "manual_status", "Busy", reason="r")
        assert (await arest.log_out_user(user))["r"] == 0
    with pytest.raises(LoggedOutError):
        await agent.wait_closed()
