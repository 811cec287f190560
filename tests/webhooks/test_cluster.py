"""Webhooks on a hub of many nodes (Redis): one live node sends for an endpoint, nothing
is sent twice while both live, and a killed node's endpoint is taken over, nothing lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import new_webhook_secret
from tests.cluster.conftest import RedisServer, node_settings, redis_server
from tests.hubproc import OTHER_PROJECT_ID, HubProcess, free_port
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import FAST, make_changes, statuses, wait_until

__all__ = ["redis_server"]  # the fixture, used by name

LEASE_MS = 1500


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port(), new_webhook_secret()).start()
    try:
        yield r
    finally:
        r.stop()


def node(tmp: Path, redis: RedisServer, receiver: Receiver) -> HubProcess:
    tmp.mkdir(parents=True)
    hub = HubProcess(tmp, extra_hub=node_settings(redis, node_lease_ms=LEASE_MS))
    lines = [f'url = "{receiver.url}"', f'secret = "{receiver.secret}"']
    lines += [f"{k} = {v}" for k, v in FAST.items()]
    text = hub.config_path.read_text()
    marker = f"\n[[projects]]\nid = {OTHER_PROJECT_ID}"
    hub.config_path.write_text(text.replace(
        marker, "\n[[projects.webhooks]]\n" + "\n".join(lines) + "\n" + marker))
    return hub.start()


def sender(nodes: list[HubProcess]) -> HubProcess:
    for hub in nodes:
        with hub.rest() as rest:
            if rest.get("/v1/webhooks").json()["webhooks"][0]["sending"]:
                return hub
    raise AssertionError("no node sends")


def ids_twice(receiver: Receiver) -> list[str]:
    ids = [r.id for r in receiver.requests]
    return sorted({i for i in ids if ids.count(i) > 1})


async def test_one_node_sends_and_a_dead_nodes_endpoint_is_taken_over(
        tmp_path: Path, redis_server: RedisServer, receiver: Receiver) -> None:
    nodes = [node(tmp_path / f"node{i}", redis_server, receiver) for i in range(2)]
    try:
        await wait_until(lambda: any(
            n.rest().get("/v1/webhooks").json()["webhooks"][0]["sending"] for n in nodes), 10)
        sent: dict[str, list[str]] = {}
        for i, hub in enumerate(nodes):
            sent.update(await make_changes(hub, [f"cl{i}_a", f"cl{i}_b"], 15))
        await wait_until(lambda: sum(len(v) for v in statuses(receiver).values()) >= 60)
        assert statuses(receiver) == sent
        for request in receiver.accepted():
            receiver.verify(request)
        assert ids_twice(receiver) == []  # both live: nothing sent twice
        assert sum(n.rest().get("/v1/webhooks").json()["webhooks"][0]["sending"]
                   for n in nodes) == 1

        dead = sender(nodes)
        alive = next(n for n in nodes if n is not dead)
        before = {r.id for r in receiver.requests}
        dead.kill()
        killed = time.monotonic()
        with alive.rest() as rest:
            await wait_until(lambda: rest.get("/v1/webhooks").json()["webhooks"][0]
                             ["sending"], 10)
        taken = time.monotonic() - killed
        assert taken < LEASE_MS * 1.5 / 1000 + 0.2, taken  # taken over within lease × 1.5
        more = await make_changes(alive, ["cl_after_a", "cl_after_b"], 10)
        await wait_until(lambda: all(statuses(receiver).get(u) == v
                                     for u, v in more.items()), 15)
        # Nothing lost; sent twice only what had been sent before the node died.
        for user, values in sent.items():
            assert statuses(receiver)[user] == values
        assert set(ids_twice(receiver)) <= before
    finally:
        for hub in nodes:
            hub.kill()


