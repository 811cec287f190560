"""Supervisor actions on a hub of several nodes (a real redis-server): a status change and a
forced logout made on one node reach the user's connections on every node, and the
logout's hold refuses the user's login on every node, those started later included."""

from __future__ import annotations

import asyncio

from tests.cluster.conftest import NodeFactory
from tests.hub.wire import Wire, authen, login, open_wire
from tests.hubproc import HubProcess

SET_USER_ATTRIBUTE = 1020
LOGOUT_USER = 1021
LOGGED_OUT = 1022
TEAM = "cs_team"
HOLD_MS = 4000


def agent_token(node: HubProcess, user: str) -> str:
    return node.client_token(user, attributes=[("manual_status", TEAM)])


async def test_a_supervisors_change_and_logout_reach_every_node(
        make_node: NodeFactory) -> None:
    nodes = [make_node(logout_hold_ms=HOLD_MS) for _ in range(3)]
    # The agent on nodes 1 and 2, a watcher on each node, the supervisor on node 0.
    devices = [await login(nodes[i], agent_token(nodes[i], "cs_agent")) for i in (1, 2)]
    watchers = [await login(node, node.client_token(f"cs_w{i}", subscribe=[TEAM]))
                for i, node in enumerate(nodes)]
    sup = await login(nodes[0], nodes[0].client_token("cs_sup", supervise=[TEAM]))

    answer = await sup.request(SET_USER_ATTRIBUTE, {
        "userId": "cs_agent", "attribute": "manual_status", "value": "Break",
        "reason": "coaching"})
    assert answer["r"] == 0, answer
    bodies = [await w.message(TEAM) for w in watchers]
    assert {b["seq"] for b in bodies} == {bodies[0]["seq"]}
    for body in bodies:
        message = body["message"]
        assert (message["newValue"], message["changedBy"], message["reason"]) == \
            ("Break", "cs_sup", "coaching")

    answer = await sup.request(LOGOUT_USER, {"userId": "cs_agent", "reason": "shift over"})
    assert answer["r"] == 0, answer
    for device in devices:
        notice = await device.until(LOGGED_OUT)
        assert (notice["body"]["by"], notice["body"]["reason"]) == ("cs_sup", "shift over")
        assert await device.closed() == 4006

    # Refused on every node while the hold lasts, one started after the logout too.
    nodes.append(make_node(logout_hold_ms=HOLD_MS))
    for node in nodes:
        wire: Wire = await open_wire(node)
        refused = await authen(wire, agent_token(node, "cs_agent"))
        assert refused["r"] == 11, (node.ws_url, refused)
        assert refused["reason"] == "shift over" and refused["by"] == "cs_sup"
        await wire.close()
    # Everyone else is untouched.
    for w in watchers:
        await w.quiet(0.2)
    with nodes[2].rest() as rest:
        assert rest.get("/v1/users/cs_agent").json()["attributes"][0]["value"] == "offline"
    await asyncio.sleep(HOLD_MS / 1000)
    back = await login(nodes[3], agent_token(nodes[3], "cs_agent"))
    for wire in (back, sup, *watchers):
        await wire.close()


async def test_rest_logout_on_one_node_closes_the_user_on_another(
        make_node: NodeFactory) -> None:
    first, second = make_node(), make_node()
    agent = await login(second, agent_token(second, "cs_rest_agent"))
    with first.rest() as rest:
        answer = rest.post("/v1/users/cs_rest_agent/logout", json={"reason": "audit"})
        assert answer.status_code == 200, answer.text
    notice = await agent.until(LOGGED_OUT)
    assert notice["body"]["reason"] == "audit" and notice["body"]["by"] == "rest"
    assert await agent.closed() == 4006
