"""Nodes and Redis failing: a dead node's users go offline, a client resumes on another
node without loss, Redis restarts without silent loss."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.cluster.conftest import NodeFactory, RedisServer, node_settings
from tests.hub.wire import AUTHEN, SUBSCRIBE_FROM_SERVER, login, open_wire, user_of
from tests.hubproc import HubProcess

LEASE_MS = 1500  # node_settings' node_lease_ms
SWEEP_BOUND_S = LEASE_MS * 1.5 / 1000 + 2.0  # docs/scaling.md: lease x 1.5, plus margin


def _health(node: HubProcess) -> dict[str, object]:
    return httpx.get(node.api_url + "/healthz", timeout=2).json()


async def _until_health(nodes: list[HubProcess], status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [_health(n)["status"] for n in nodes]
        if all(s == status for s in states):
            return
        assert time.monotonic() < deadline, f"healthz {states}, expected {status}"
        await asyncio.sleep(0.1)


async def test_a_killed_node_s_users_go_offline_once_within_the_bound(
        nodes: list[HubProcess]) -> None:
    topic = "kn_online"
    watchers = [await login(n, n.client_token(f"kn_w{i}", subscribe=[topic]))
                for i, n in enumerate(nodes[:2])]
    doomed = nodes[2]
    agents = [await login(doomed, doomed.client_token(f"kn_agent{i}",
                                                      attributes=[("onlineStatus", topic)]))
              for i in range(3)]
    for w in watchers:
        online = [await w.message(topic) for _ in agents]
        assert {b["message"]["newValue"] for b in online} == {"online"}
    doomed.kill()  # kill -9: no close frames, no goodbye to Redis
    killed = time.monotonic()
    for w in watchers:
        gone = [await w.message(topic, timeout=SWEEP_BOUND_S + 2) for _ in agents]
        assert {b["message"]["userId"] for b in gone} == {f"kn_agent{i}" for i in range(3)}
        assert {b["message"]["newValue"] for b in gone} == {"offline"}
    elapsed = time.monotonic() - killed
    assert elapsed <= SWEEP_BOUND_S, elapsed
    # Two sweepers, one publication each.
    for w in watchers:
        await w.quiet(LEASE_MS / 1000)
    with nodes[0].rest() as rest:
        listed = rest.get("/v1/users", params={"includeOffline": "true"}).json()["users"]
        status = {u["userId"]: user_of(u)["onlineStatus"] for u in listed}
        assert all(status[f"kn_agent{i}"] == "offline" for i in range(3))
    assert sum(int(_health(n)["sweptConnections"]) for n in nodes[:2]) == 3
    for w in watchers:
        await w.close()


async def test_a_user_due_offline_on_a_node_that_died_goes_offline(
        make_node: NodeFactory) -> None:
    # The node saw the user's last connection go, then died during the grace period:
    # the others take the user offline once the grace has run out.
    nodes = [make_node(offline_grace_ms=1000) for _ in range(2)]
    topic = "dg_online"
    watcher = await login(nodes[0], nodes[0].client_token("dg_w", subscribe=[topic]))
    agent = await login(nodes[1], nodes[1].client_token(
        "dg_agent", attributes=[("onlineStatus", topic)]))
    assert (await watcher.message(topic))["message"]["newValue"] == "online"
    await agent.close()
    await asyncio.sleep(0.2)
    nodes[1].kill()
    body = await watcher.message(topic, timeout=SWEEP_BOUND_S + 3)
    assert body["message"]["newValue"] == "offline"
    await watcher.quiet(0.5)
    await watcher.close()


async def test_a_client_fails_over_to_another_node_and_resumes_without_loss(
        nodes: list[HubProcess]) -> None:
    topic = "fo_team"
    first, other, agent_node = nodes
    agent = await login(agent_node, agent_node.client_token("fo_agent",
                                                            attributes=[("n", topic)]))
    token = first.client_token("fo_w", subscribe=[topic])
    watcher = await login(first, token)
    position = dict(watcher.authen["topics"][topic])
    for k in range(5):
        assert (await agent.change("n", k))["r"] == 0
    seen = await watcher.messages(5, topic)
    position["seq"] = seen[-1]["seq"]
    first.kill()  # the watcher's node dies; the agent goes on meanwhile

    async def keep_changing() -> None:
        for k in range(5, 25):
            assert (await agent.change("n", k))["r"] == 0

    changing = asyncio.create_task(keep_changing())
    await asyncio.sleep(0.05)
    wire = await open_wire(other)
    rid = wire.request_id()
    await wire.send(AUTHEN, {"accesstoken": token, "requestId": rid,
                             "resume": {topic: position}})
    reply = await wire.recv()
    assert reply["service"] == AUTHEN and reply["body"]["r"] == 0, reply
    assert reply["body"]["recovered"] == {topic: True}
    await changing
    rest = [await wire.message(topic, timeout=10) for _ in range(20)]
    assert [b["seq"] for b in rest] == list(range(position["seq"] + 1, position["seq"] + 21))
    assert [b["message"]["newValue"] for b in rest] == list(range(5, 25))
    await wire.quiet(0.3)
    await wire.close()
    await agent.close()


async def test_redis_restart_refuses_writes_then_carries_on_without_loss(
        redis_server: RedisServer, nodes: list[HubProcess]) -> None:
    topic = "rr_team"
    watcher = await login(nodes[0], nodes[0].client_token("rr_w", subscribe=[topic]))
    agent = await login(nodes[1], nodes[1].client_token("rr_agent", attributes=[("n", topic)]))
    assert (await agent.change("n", "before"))["r"] == 0
    before = await watcher.message(topic)

    redis_server.stop()
    await _until_health(nodes, "degraded")
    health = _health(nodes[2])
    assert health["redis"] == "down"
    refused = await agent.change("n", "during")
    assert refused["r"] == 29, refused  # never acknowledged without Redis
    with nodes[2].rest() as rest:
        reply = rest.put("/v1/users/rr_agent/attributes", json=[{"attribute": "n",
                                                                 "value": "rest"}])
        assert reply.status_code == 500 and reply.json()["r"] == 29

    redis_server.start()
    await _until_health(nodes, "ok", timeout=20)
    assert "event=redis_reconnected" in nodes[0].log()
    assert "event=redis_down" in nodes[0].log()
    assert (await agent.change("n", "after"))["r"] == 0
    after = await watcher.message(topic, timeout=10)
    # The refused change published nothing: the next message follows with no gap.
    assert after["seq"] == before["seq"] + 1
    assert after["message"]["newValue"] == "after"
    assert after["message"]["oldValue"] == "before"
    await watcher.quiet(0.3, (SUBSCRIBE_FROM_SERVER,))
    for node in nodes:
        with node.rest() as rest:
            body = rest.get("/v1/users/rr_agent").json()
            assert user_of(body)["n"] == "after"
            assert user_of(body)["onlineStatus"] == "online"
    await watcher.close()
    await agent.close()


async def test_redis_losing_its_data_makes_clients_resync(
        redis_server: RedisServer, nodes: list[HubProcess]) -> None:
    topic = "rl_team"
    token = nodes[0].client_token("rl_w", subscribe=[topic])
    watcher = await login(nodes[0], token)
    epoch = watcher.authen["topics"][topic]["epoch"]
    redis_server.kill()
    for path in redis_server.workdir.rglob("*.aof*"):
        if path.is_file():
            path.unlink()
    redis_server.start()
    # Not a silent loss: the node tells its clients to reconnect and re-read.
    assert await watcher.closed(timeout=20) == 1012
    await _until_health(nodes, "ok", timeout=20)
    again = await open_wire(nodes[0])
    reply = await again.request(AUTHEN, {"accesstoken": token,
                                         "resume": {topic: {"epoch": epoch, "seq": 0}}})
    assert reply["r"] == 0 and reply["recovered"] == {topic: False}
    assert reply["topics"][topic]["epoch"] != epoch
    assert "event=resync" in nodes[0].log()
    await again.close()


async def test_the_redis_flag_makes_a_node(tmp_path: Path, redis_server: RedisServer
                                          ) -> None:
    (tmp_path / "flag").mkdir()
    node = HubProcess(tmp_path / "flag", extra_hub=node_settings(redis_server).replace(
        f'redis_url = "{redis_server.url}"', ""), extra_args=["--redis", redis_server.url])
    try:
        node.start()
        assert _health(node)["redis"] == "ok"
        assert "event=cluster_joined" in node.log()
    finally:
        node.kill()
