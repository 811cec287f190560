"""Presence across nodes: each node's lease, and the sweep of nodes that died.

A user is online while any node holds a connection of theirs (``c:USER`` in Redis). Each
node renews a lease (``lease:NODE``, ``node_lease_ms``) every third of it. Every node looks
for nodes whose lease is gone every half of it, and sweeps them: their connections are
removed and their users who have no connection left go offline, published once (the
SWEEP script is atomic and idempotent, so concurrent sweepers do not publish twice). The
sweeper also takes offline the users whose grace period ran out on a node that is gone
(DUE).

A dead node's users are offline within ``node_lease_ms * 1.5`` plus a round trip. A
sweeper waits a full lease after starting or after Redis came back before it sweeps, so a
node that was only cut off from Redis for a while renews first and is not swept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from monitor.hub.cluster.bus import LogReader
from monitor.hub.cluster.redis_store import RedisStore

log = logging.getLogger("monitor.hub")

SWEEP_BATCH = 1000


class LeaseNode(Protocol):
    """What presence needs of its node (:class:`~monitor.hub.cluster.node.ClusterNode`)."""

    node_id: str
    project_ids: list[int]
    store: RedisStore
    reader: LogReader

    def now_ms(self) -> int: ...

    def register_connections(self) -> None: ...


class Presence:
    """The lease and sweeper tasks of one node."""

    def __init__(self, node: LeaseNode, lease_ms: int) -> None:
        self.node = node
        self.lease_ms = lease_ms
        self.sweep_after = time.monotonic() + lease_ms / 1000
        self.swept = 0  # connections of dead nodes this node swept
        self._renewed_once = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._renew_forever()),
                       asyncio.create_task(self._sweep_forever())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def hold_off(self) -> None:
        """Redis came back: let every live node renew before sweeping anyone."""
        self.sweep_after = time.monotonic() + self.lease_ms / 1000

    # -- the lease ------------------------------------------------------------------------

    async def renew(self) -> bool:
        """Renew this node's lease in every project; re-register its connections if the
        lease had run out (other nodes may have swept them meanwhile). True if it had."""
        node = self.node
        lost = []
        for project_id in node.project_ids:
            existed = await node.store.run("LEASE", project_id, node.node_id, self.lease_ms)
            if not existed:
                lost.append(project_id)
        if lost and self._renewed_once:
            log.warning("event=lease_lost node=%s projects=%s", node.node_id, lost)
            node.register_connections()
        self._renewed_once = True
        return bool(lost)

    async def _renew_forever(self) -> None:
        every = self.lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            if not self.node.reader.connected:
                continue
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event=lease_renew_failed node=%s error=%r", self.node.node_id,
                            str(exc))

    # -- the sweeper ----------------------------------------------------------------------

    async def sweep(self) -> int:
        """Sweep every node whose lease is gone; the connections swept."""
        node = self.node
        total = 0
        for project_id in node.project_ids:
            others = await node.store.redis.smembers(
                f"hub:{{{project_id}}}:nodes")
            for other in sorted(others):
                if other == node.node_id:
                    continue
                swept_here = 0
                while True:
                    _, left, swept = await node.store.run(
                        "SWEEP", project_id, other, node.now_ms(), SWEEP_BATCH)
                    swept_here += int(swept)
                    if int(left) <= 0:
                        break
                if swept_here:
                    log.warning("event=node_swept node=%s project=%s connections=%d by=%s",
                                other, project_id, swept_here, node.node_id)
                total += swept_here
            # Users left without a connection whose grace ran out on a node that is gone.
            while True:
                _, checked = await node.store.run("DUE", project_id, node.now_ms(),
                                                  SWEEP_BATCH)
                if int(checked) < SWEEP_BATCH:
                    break
        self.swept += total
        return total

    async def _sweep_forever(self) -> None:
        every = self.lease_ms / 2000
        while True:
            await asyncio.sleep(every)
            if not self.node.reader.connected or time.monotonic() < self.sweep_after:
                continue
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event=sweep_failed node=%s error=%r", self.node.node_id, str(exc))
