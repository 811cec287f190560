"""Webhooks on a hub of many nodes (Redis): one live node sends for an endpoint, nothing
is sent twice while both live, and a killed node's endpoint is taken over, nothing lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import new_webhook_secret
from monitor.hub.cluster.redis_store import connect
from monitor.hub.cluster.webhooks import RedisDeliveryStore
from monitor.hub.webhooks import LeaseLost
from tests.cluster.conftest import RedisServer, node_settings, redis_server
from tests.hubproc import OTHER_PROJECT_ID, PROJECT_ID, HubProcess, free_port
from tests.webhooks.conftest import watch
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import FAST, make_changes, statuses, wait_until

__all__ = ["redis_server"]  # the fixture, used by name

LEASE_MS = 1500


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = watch(Receiver(free_port(), new_webhook_secret())).start()
    try:
        yield r
    finally:
        r.stop()


def node(tmp: Path, redis: RedisServer, receiver: Receiver) -> HubProcess:
    tmp.mkdir(parents=True)
    hub = watch(HubProcess(tmp, extra_hub=node_settings(redis, node_lease_ms=LEASE_MS)))
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
        # No wait for a node to send: the new endpoint's cursor was set at start.
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




async def test_a_node_that_lost_the_lease_can_write_nothing(redis_server: RedisServer) -> None:
    """Fencing: once another node holds an endpoint's lease, the node that held it before
    (frozen, cut off) can neither move the cursor nor add a dead letter."""
    redis = connect(redis_server.url)
    try:
        a, b = RedisDeliveryStore(redis, "node-a"), RedisDeliveryStore(redis, "node-b")
        assert await a.acquire(PROJECT_ID, "ep", 200)
        assert not await b.acquire(PROJECT_ID, "ep", 200)
        assert await a.save_cursor(PROJECT_ID, "ep", 5)
        await asyncio.sleep(0.3)  # a's lease expires unrenewed
        assert not await a.renew(PROJECT_ID, "ep", 200)
        assert await b.acquire(PROJECT_ID, "ep", 60_000)
        assert not await a.save_cursor(PROJECT_ID, "ep", 9)
        with pytest.raises(LeaseLost):
            await a.dead_letter(PROJECT_ID, "ep", 7, b"{}", 1, "HTTP 500", 1)
        assert await a.cursor(PROJECT_ID, "ep") == 5
        assert await b.save_cursor(PROJECT_ID, "ep", 6)
        assert await b.dead_letter(PROJECT_ID, "ep", 7, b"{}", 1, "HTTP 500", 1) == 1
        await a.release(PROJECT_ID, "ep")  # not a's: b's lease stays
        assert await b.renew(PROJECT_ID, "ep", 60_000)
        assert await b.cursor(PROJECT_ID, "ep") == 6
    finally:
        await redis.aclose()


async def test_a_frozen_sender_is_replaced_and_sends_nothing_once_it_wakes(
        tmp_path: Path, redis_server: RedisServer, receiver: Receiver) -> None:
    """The sending node frozen (SIGSTOP) for twice the lease: the other takes over, and
    sends again only what the frozen one had sent before it froze (its deliveries not yet
    recorded); woken, the frozen node sends nothing more (its lease is gone, its writes
    fenced), and nothing is lost."""
    nodes = [node(tmp_path / f"node{i}", redis_server, receiver) for i in range(2)]
    try:
        await wait_until(lambda: any(
            n.rest().get("/v1/webhooks").json()["webhooks"][0]["sending"] for n in nodes), 10)
        frozen = sender(nodes)
        alive = next(n for n in nodes if n is not frozen)
        sent = await make_changes(alive, ["fz_a", "fz_b", "fz_c"], 20)
        assert frozen.proc is not None
        frozen.proc.send_signal(signal.SIGSTOP)
        froze = time.monotonic()
        try:
            await asyncio.sleep(0.3)  # what it had sent has arrived
            before = {r.id for r in receiver.requests}
            sent.update(await make_changes(alive, ["fz_d", "fz_e"], 20))
            with alive.rest() as rest:
                await wait_until(lambda: rest.get("/v1/webhooks").json()["webhooks"][0]
                                 ["sending"], 10)
            assert time.monotonic() - froze < LEASE_MS * 1.5 / 1000 + 0.3
            await asyncio.sleep(max(0.0, froze + 2 * LEASE_MS / 1000 - time.monotonic()))
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        for hub in nodes:
            sent.update(await make_changes(hub, [f"fz_after_{nodes.index(hub)}"], 10))
        await wait_until(lambda: all(statuses(receiver).get(u) == v for u, v in sent.items()),
                         20)
        await asyncio.sleep(1.0)  # anything the woken node would still send
        assert {u: statuses(receiver)[u] for u in sent} == sent
        assert set(ids_twice(receiver)) <= before
        assert [n.rest().get("/v1/webhooks").json()["webhooks"][0]["sending"]
                for n in nodes] == [n is alive for n in nodes]
    finally:
        for hub in nodes:
            if hub.proc is not None and hub.proc.poll() is None:
                hub.proc.send_signal(signal.SIGCONT)
            hub.kill()
