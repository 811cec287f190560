"""Three nodes on one Redis: topic messages reach every node's subscribers, once each, in
seq order; snapshots and REST answer the same on every node."""

from __future__ import annotations

import asyncio

from tests.cluster.conftest import NodeFactory
from tests.hub.wire import OTHER_DEVICE_AUTHEN, SUBSCRIBE_FROM_SERVER, Wire, login, user_of
from tests.hubproc import HubProcess


async def _watchers(nodes: list[HubProcess], topic: str, name: str) -> list[Wire]:
    return [await login(node, node.client_token(f"{name}_{i}", subscribe=[topic]))
            for i, node in enumerate(nodes)]


async def test_a_change_on_one_node_reaches_subscribers_on_every_node(
        nodes: list[HubProcess]) -> None:
    topic = "cd_status"
    watchers = await _watchers(nodes, topic, "cd_w")
    agent = await login(nodes[0], nodes[0].client_token("cd_agent",
                                                        attributes=[("status", topic)]))
    # The agent's login published nothing to this topic; its change does, everywhere.
    assert (await agent.change("status", "busy"))["r"] == 0
    bodies = [await w.message(topic) for w in watchers]
    assert {b["seq"] for b in bodies} == {bodies[0]["seq"]}
    for body in bodies:
        assert body["message"]["newValue"] == "busy"
        assert body["message"]["userId"] == "cd_agent"
    for w in watchers:
        await w.quiet(0.3)
        await w.close()
    await agent.close()


async def test_concurrent_changes_on_every_node_arrive_once_in_seq_order(
        nodes: list[HubProcess]) -> None:
    topic = "co_team"
    watchers = await _watchers(nodes, topic, "co_w")
    start = watchers[0].authen["topics"][topic]["seq"]
    agents = [await login(node, node.client_token(f"co_agent{i}", attributes=[("n", topic)]))
              for i, node in enumerate(nodes)]
    per_agent = 40

    async def run(i: int, agent: Wire) -> None:
        for k in range(per_agent):
            reply = await agent.change("n", k)
            assert reply["r"] == 0, reply

    await asyncio.gather(*(run(i, a) for i, a in enumerate(agents)))
    total = per_agent * len(agents)
    for w in watchers:
        bodies = await w.messages(total, topic, timeout=10)
        assert [b["seq"] for b in bodies] == list(range(start + 1, start + total + 1))
        # Each agent's own changes keep their order.
        for i in range(len(agents)):
            mine = [b["message"]["newValue"] for b in bodies
                    if b["message"]["userId"] == f"co_agent{i}"]
            assert mine == list(range(per_agent))
        await w.quiet(0.3)
    # Every node saw the same messages, byte for byte the same content.
    for w in (*watchers, *agents):
        await w.close()


async def test_rest_and_snapshots_answer_the_same_on_every_node(
        nodes: list[HubProcess]) -> None:
    topic = "rs_team"
    agent = await login(nodes[1], nodes[1].client_token(
        "rs_agent", attributes=[("status", topic)], display_name="Agent R"))
    for node in nodes:
        with node.rest() as rest:
            reply = rest.put("/v1/users/rs_agent/attributes",
                             json=[{"attribute": "status", "value": f"v{node.api_port}"}])
            assert reply.status_code == 200, reply.text
            assert user_of(reply.json())["status"] == f"v{node.api_port}"
        # Read right after the write, on every node: the write is there.
        for other in nodes:
            with other.rest() as rest:
                body = rest.get("/v1/users/rs_agent").json()
                assert user_of(body)["status"] == f"v{node.api_port}"
                assert user_of(body)["onlineStatus"] == "online"
                assert body["displayName"] == "Agent R"
                listed = rest.get("/v1/users", params={"attribute": "status"}).json()
                assert [u["userId"] for u in listed["users"]] == ["rs_agent"]
    last = f"v{nodes[-1].api_port}"
    snapshots = []
    for i, node in enumerate(nodes):
        wire = await login(node, node.client_token(f"rs_w{i}", subscribe=[topic]))
        snapshots.append(await wire.snapshot(topic))
        await wire.close()
    for snap in snapshots:
        assert snap["r"] == 0
        assert (snap["epoch"], snap["seq"]) == (snapshots[0]["epoch"], snapshots[0]["seq"])
        assert [(v["userId"], v["value"]) for v in snap["values"]] == [("rs_agent", last)]
    await agent.close()


async def test_presence_follows_connections_on_every_node(nodes: list[HubProcess]) -> None:
    topic = "pr_online"
    watcher = await login(nodes[2], nodes[2].client_token("pr_w", subscribe=[topic]))
    token = nodes[0].client_token("pr_agent", attributes=[("onlineStatus", topic)])
    first = await login(nodes[0], token)
    assert (await watcher.message(topic))["message"]["newValue"] == "online"
    second = await login(nodes[1], token)  # online already: nothing published
    await first.close()  # still connected on node 1: still online
    await watcher.quiet(0.5, (SUBSCRIBE_FROM_SERVER,))
    with nodes[2].rest() as rest:
        assert user_of(rest.get("/v1/users/pr_agent").json())["onlineStatus"] == "online"
    await second.close()
    assert (await watcher.message(topic))["message"]["newValue"] == "offline"
    with nodes[0].rest() as rest:
        assert user_of(rest.get("/v1/users/pr_agent").json())["onlineStatus"] == "offline"
    await watcher.close()


async def test_devices_of_one_user_on_two_nodes_hear_of_each_other(
        nodes: list[HubProcess]) -> None:
    token = nodes[0].client_token("od_agent")
    phone = await login(nodes[0], token, deviceId="phone")
    await phone.quiet(0.3, services=(OTHER_DEVICE_AUTHEN,))  # the only device: no notice
    desk = await login(nodes[1], token, deviceId="desk")
    notice = (await phone.until(OTHER_DEVICE_AUTHEN))["body"]
    assert notice["status"] == "connected"
    assert notice["clientId"] == "desk" and notice["userId"] == "od_agent"
    assert notice["connectionId"] == desk.authen["connectionId"]
    await desk.quiet(0.3, services=(OTHER_DEVICE_AUTHEN,))  # not told about itself
    await desk.close()
    notice = (await phone.until(OTHER_DEVICE_AUTHEN))["body"]
    assert notice["status"] == "disconnected" and notice["clientId"] == "desk"
    await phone.quiet(0.3, services=(OTHER_DEVICE_AUTHEN,))  # once, from one node
    await phone.close()


async def test_coming_back_on_another_node_within_the_grace_publishes_nothing(
        make_node: NodeFactory) -> None:
    nodes = [make_node(offline_grace_ms=1500) for _ in range(2)]
    topic = "gr_online"
    watcher = await login(nodes[0], nodes[0].client_token("gr_w", subscribe=[topic]))
    token = nodes[0].client_token("gr_agent", attributes=[("onlineStatus", topic)])
    first = await login(nodes[0], token)
    assert (await watcher.message(topic))["message"]["newValue"] == "online"
    await first.close()
    again = await login(nodes[1], token)
    await watcher.quiet(2.5)  # past the grace period: still online, nothing published
    await again.close()
    assert (await watcher.message(topic, timeout=5))["message"]["newValue"] == "offline"
    await watcher.close()


async def test_rest_disconnect_and_calls_work_from_any_node(nodes: list[HubProcess]) -> None:
    agent = await login(nodes[2], nodes[2].client_token("kc_agent"))
    with nodes[0].rest() as rest:
        reply = rest.put("/v1/calls/kc-1", json={"from": "+15550001", "to": "kc_agent",
                                                   "status": "Ringing"})
        assert reply.status_code == 200, reply.text
    for node in nodes:
        with node.rest() as rest:
            calls = rest.get("/v1/calls").json()
            assert [c["callId"] for c in calls["calls"]] == ["kc-1"]
            assert user_of(rest.get("/v1/users/kc_agent").json())["call"] == "Ringing"
    with nodes[1].rest() as rest:
        assert rest.put("/v1/calls/kc-1", json={"status": "Ended"}).status_code == 200
        assert rest.get("/v1/calls").json()["count"] == 0
        # A late report about the ended call is refused on any node.
        late = rest.put("/v1/calls/kc-1", json={"status": "Answered"})
        assert late.status_code == 400 and late.json()["r"] == 27
        # The user's connection is on node 2: node 1 closes it all the same.
        assert rest.post("/v1/users/kc_agent/disconnect").status_code == 200
    assert await agent.closed(timeout=5) == 4005
    with nodes[0].rest() as rest:
        assert user_of(rest.get("/v1/users/kc_agent").json())["onlineStatus"] == "offline"
