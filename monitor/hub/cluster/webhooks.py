"""Webhooks on a hub of many nodes: the project's event log stream is the outbox, each
endpoint's cursor and dead letters live in Redis, and a lease per endpoint makes one
live node its only sender (:mod:`monitor.hub.webhook_delivery`).

Keys under the project's prefix ``hub:{P}:``::

    whc         hash endpoint -> cursor (the position of the last event done)
    whl:ENDP    the endpoint's lease: the sending node's id and term, expiring after the
                lease
    whd         hash delivery id -> the dead letter (JSON); ``whdn`` its id counter;
                ``whdp`` the id up to which they were pruned (the oldest go first)

A node renews the leases it holds every third of ``node_lease_ms`` and stops sending
for an endpoint before its lease can have expired; a node that dies stops renewing, and
another takes the endpoint over within ``node_lease_ms × 4/3``, from the saved cursor
(the events the dead node sent after its last save are sent again). Fenced: a cursor or
a dead letter is written only while the writer's term still holds the lease, so a node
that lost it (frozen, cut off) cannot move the cursor or add a dead letter any more.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

from redis.asyncio import Redis

from monitor.hub.cluster.history import RedisHistory, entry_of, position_of, prefix
from monitor.hub.history import DAY_MS
from monitor.hub.webhooks import Delivery, LeaseLost

# Move the cursor forward only, and only while the lease (KEYS[2]) is the writer's term.
SAVE_CURSOR = """
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""
# A dead letter (ARGV[2], its JSON), only while the lease (KEYS[3]) is the writer's term.
DEAD_LETTER = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], tostring(id), ARGV[2])
return id
"""
# Drop dead letters, oldest first: beyond the newest ARGV[1], or dead-lettered before
# ARGV[2] (ms). Ids count up from 1, so the oldest left is just past the last pruned.
PRUNE_DEAD = """
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
local low = tonumber(redis.call('GET', KEYS[3]) or '0')
local keep_from = newest - tonumber(ARGV[1])
local removed = 0
local id = low + 1
while id <= newest do
  local text = redis.call('HGET', KEYS[1], tostring(id))
  if text and id > keep_from and cjson.decode(text)[7] >= tonumber(ARGV[2]) then break end
  if text then
    redis.call('HDEL', KEYS[1], tostring(id))
    removed = removed + 1
  end
  id = id + 1
end
if id - 1 > low then redis.call('SET', KEYS[3], id - 1) end
return removed
"""
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisOutbox:
    """The project's log stream, with positions as integers."""

    def __init__(self, history: RedisHistory) -> None:
        self._history = history

    async def events_after(self, project_id: int, after: int, limit: int
                           ) -> list[tuple[int, dict[str, Any]]]:
        rows = await self._history.events_after(project_id, entry_of(after), limit)
        return [(position_of(entry_id), event) for entry_id, event in rows]


class RedisDeliveryStore:
    """Cursors, dead letters and leases of the endpoints, in Redis."""

    def __init__(self, redis: Redis, node_id: str, keep: int = 10_000,
                 keep_days: int = 30) -> None:
        self.redis = redis
        self.node_id = node_id
        self.keep = keep  # dead letters per project, the newest
        self.keep_ms = keep_days * DAY_MS  # none dead-lettered longer ago
        self._terms: dict[str, str] = {}  # lease key -> this node's term (its value)

    async def last_position(self, project_id: int) -> int:
        rows = cast("list[tuple[str, Any]]",
                    await self.redis.xrevrange(prefix(project_id) + "hist", count=1))
        return position_of(rows[0][0]) if rows else 0

    async def cursor(self, project_id: int, endpoint: str) -> int | None:
        text = await self.redis.hget(prefix(project_id) + "whc", endpoint)
        return None if text is None else int(text)

    async def init_cursor(self, project_id: int, endpoint: str, position: int) -> None:
        # Creates only (no lease needed): a cursor once set moves under the lease.
        await self.redis.hsetnx(prefix(project_id) + "whc", endpoint, str(position))

    @staticmethod
    def _lease_key(project_id: int, endpoint: str) -> str:
        return prefix(project_id) + "whl:" + endpoint

    async def save_cursor(self, project_id: int, endpoint: str, position: int) -> bool:
        lease = self._lease_key(project_id, endpoint)
        return bool(await self.redis.eval(SAVE_CURSOR, 2, prefix(project_id) + "whc", lease,
                                          endpoint, str(position),
                                          self._terms.get(lease, "")))

    async def dead_letter(self, project_id: int, endpoint: str, position: int, body: bytes,
                          attempts: int, error: str, now_ms: int) -> int:
        p = prefix(project_id)
        lease = self._lease_key(project_id, endpoint)
        delivery_id = int(await self.redis.eval(
            DEAD_LETTER, 3, p + "whdn", p + "whd", lease, self._terms.get(lease, ""),
            json.dumps([endpoint, position, body.decode(), attempts, error, "failed", now_ms,
                        now_ms])))
        if not delivery_id:
            raise LeaseLost(endpoint)
        await self.prune_dead(project_id, now_ms)
        return delivery_id

    async def prune_dead(self, project_id: int, now_ms: int) -> int:
        """Drop the project's dead letters beyond the newest ``keep`` and those older
        than ``keep_days``; how many."""
        p = prefix(project_id)
        return int(await self.redis.eval(PRUNE_DEAD, 3, p + "whd", p + "whdn", p + "whdp",
                                         str(self.keep), str(now_ms - self.keep_ms)))

    @staticmethod
    def _delivery(project_id: int, delivery_id: str, text: str) -> Delivery:
        endpoint, position, body, attempts, error, status, failed, updated = json.loads(text)
        return Delivery(int(delivery_id), project_id, endpoint, int(position), body.encode(),
                        int(attempts), error, status, int(failed), int(updated))

    async def _all(self, project_id: int) -> list[Delivery]:
        found = cast("dict[str, str]", await self.redis.hgetall(prefix(project_id) + "whd"))
        return sorted((self._delivery(project_id, k, v) for k, v in found.items()),
                      key=lambda d: -d.id)

    async def deliveries(self, project_id: int, status: str | None, limit: int
                         ) -> list[Delivery]:
        return [d for d in await self._all(project_id)
                if status is None or d.status == status][:limit]

    async def delivery(self, project_id: int, delivery_id: int) -> Delivery | None:
        text = await self.redis.hget(prefix(project_id) + "whd", str(delivery_id))
        return None if text is None else self._delivery(project_id, str(delivery_id),
                                                         cast("str", text))

    async def set_status(self, project_id: int, delivery_id: int, status: str,
                         attempts: int, error: str, now_ms: int) -> None:
        found = await self.delivery(project_id, delivery_id)
        if found is None:
            return
        await self.redis.hset(prefix(project_id) + "whd", str(delivery_id), json.dumps(
            [found.endpoint, found.position, found.body.decode(), attempts, error, status,
             found.failed_ms, now_ms]))

    async def dead_count(self, project_id: int, endpoint: str) -> int:
        return sum(1 for d in await self._all(project_id)
                   if d.endpoint == endpoint and d.status == "failed")

    # -- leases ------------------------------------------------------------------------

    async def acquire(self, project_id: int, endpoint: str, lease_ms: int) -> bool:
        """Take the lease if nobody holds it: a new term of this node's."""
        key = self._lease_key(project_id, endpoint)
        term = f"{self.node_id} {secrets.token_hex(8)}"
        if not await self.redis.set(key, term, nx=True, px=lease_ms):
            return False
        self._terms[key] = term
        return True

    async def renew(self, project_id: int, endpoint: str, lease_ms: int) -> bool:
        key = self._lease_key(project_id, endpoint)
        return bool(await self.redis.eval(RENEW, 1, key, self._terms.get(key, ""),
                                          str(lease_ms)))

    async def release(self, project_id: int, endpoint: str) -> None:
        key = self._lease_key(project_id, endpoint)
        await self.redis.eval(RELEASE, 1, key, self._terms.pop(key, ""))
