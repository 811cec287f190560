"""The event log of a multi-node hub, in Redis: written by the Lua scripts, read here.

Each change is logged by the script that decides it (``publish`` in
:mod:`monitor.hub.cluster.scripts`), so a change and its log entry are one atomic step; a
call transition by ``hist_call`` in the same script as the rest of its batch. Keys under
the project's prefix ``hub:{P}:``::

    hist        stream: every event (field ``e``, its JSON), id ``ms-n`` at the event's
                millisecond (never before the previous entry's): the project's log, and
                the outbox of anything that must follow every event
    hu:USER     stream: the user's attribute changes, with the ids they have in ``hist``
    hc:USER     stream: the user's checkpoints (field ``c``), the latest also in the
                user's hash (``u:USER`` field ``hc``)
    hcalls      zset call id -> when it was offered; ``hcall`` hash call id -> "started
                answered ended" (``-`` for none yet): the calls report
    hcfg        hash: ``status``, the status attribute; ``off``, 1 when nothing is logged
                (every node writes its settings)

The Lua below mirrors :func:`monitor.hub.history.after_attribute` and
:func:`~monitor.hub.history.after_call` (the property tests check both engines against
the same brute force). Pruning keeps each user's last checkpoint before the cut.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from monitor.hub.history import (
    DAY_MS,
    CallSummary,
    Checkpoint,
    HistoryPage,
    RangeError,
    history_entry,
)
from monitor.protocol import from_json

log = logging.getLogger("monitor.hub")

HISTORY_LUA = r"""
-- The event log (monitor.hub.cluster.history).
-- Read once per script run (a batch): the log's last ms, and its settings.
local hist_ms = nil
local hist_cfg = nil

local function hist_add(ts, event)
  local key = P .. 'hist'
  if hist_ms == nil then
    hist_ms = 0
    local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    if last then hist_ms = tonumber(string.match(last[1], '^%d+')) end
  end
  local ms = tonumber(ts)
  if hist_ms > ms then ms = hist_ms end
  hist_ms = ms
  return redis.call('XADD', key, string.format('%d-*', ms), 'e', event)
end

local function hist_settings()
  if hist_cfg == nil then hist_cfg = redis.call('HMGET', P .. 'hcfg', 'status', 'off') end
  return hist_cfg
end

local function cp_load(user, ts)
  local text = redis.call('HGET', P .. 'u:' .. user, 'hc')
  if text then return cjson.decode(text) end
  return {tonumber(ts), 0, '', '', 0, 0, 0, 0, 0, 0, {}}
end

-- Checkpoint fields: t, online, status, call, callee, online ms, talk ms, ring ms,
-- handled, missed, {status: ms}.
local function cp_advance(cp, t)
  local dt = t - cp[1]
  if dt <= 0 then return end
  cp[1] = t
  if cp[2] == 1 then
    cp[6] = cp[6] + dt
    local key, spent = cp[3], cp[11]
    if spent[key] == nil then
      local n = 0
      for _ in pairs(spent) do n = n + 1 end
      if n >= 16 then key = '(other)' end
    end
    spent[key] = (spent[key] or 0) + dt
  end
  if cp[4] == 'Answered' then cp[7] = cp[7] + dt
  elseif cp[4] == 'Ringing' and cp[5] == 1 then cp[8] = cp[8] + dt end
end

local function cp_save(user, cp, id)
  local text = cjson.encode(cp)
  redis.call('HSET', P .. 'u:' .. user, 'hc', text)
  redis.call('XADD', P .. 'hc:' .. user, id, 'c', text)
end

local function status_text(value)
  if string.sub(value, 1, 1) == '"' then return cjson.decode(value) end
  if value == 'null' then return '' end
  return value
end

-- Log one attribute change (``seqs``: topic, seq, topic, seq... it was published with).
local function log_change(user, name, value, old, ts, extra, seqs)
  local topics = {}
  for i = 1, #seqs, 2 do topics[#topics + 1] = cjson.encode(seqs[i]) end
  local event = '{"type":"attribute.changed","userId":' .. cjson.encode(user) ..
    ',"attribute":' .. cjson.encode(name) .. ',"value":' .. value .. ',"oldValue":' ..
    old .. ',"timestamp":' .. ts .. ',"topics":[' .. table.concat(topics, ',') .. ']'
  if extra ~= '' and extra ~= '{}' then event = event .. ',' .. string.sub(extra, 2, -2) end
  event = event .. '}'
  local cfg = hist_settings()
  if cfg[2] == '1' then return end
  local id = hist_add(ts, event)
  redis.call('XADD', P .. 'hu:' .. user, id, 'e', event)
  local status = cfg[1] or 'manual_status'
  if name ~= 'onlineStatus' and name ~= 'call' and name ~= status then return end
  local cp = cp_load(user, ts)
  cp_advance(cp, tonumber(ts))
  if name == 'onlineStatus' then
    if value == '"online"' then cp[2] = 1 else cp[2] = 0 end
  elseif name == 'call' then
    local v = cjson.decode(value)
    if type(v) == 'string' then cp[4] = v else cp[4] = '' end
    local to = nil
    if extra ~= '' then to = cjson.decode(extra)['to'] end
    if to == user then cp[5] = 1 else cp[5] = 0 end
  else
    cp[3] = status_text(value)
  end
  cp_save(user, cp, id)
end
"""

# A call transition in the event log, from ARGV[o]: ms, the event's JSON, call id,
# offered ms, "started answered ended", the callee if a hub user whose figures it moves
# (else ''), handled, missed.
HCALL_LUA = r"""
local function hist_call(o)
  local ts = ARGV[o]
  if hist_settings()[2] == '1' then return end
  local id = hist_add(ts, ARGV[o + 1])
  redis.call('ZADD', P .. 'hcalls', ARGV[o + 3], ARGV[o + 2])
  redis.call('HSET', P .. 'hcall', ARGV[o + 2], ARGV[o + 4])
  local callee = ARGV[o + 5]
  if callee ~= '' then
    local cp = cp_load(callee, ts)
    cp_advance(cp, tonumber(ts))
    cp[9] = cp[9] + tonumber(ARGV[o + 6])
    cp[10] = cp[10] + tonumber(ARGV[o + 7])
    cp_save(callee, cp, id)
  end
end
"""

ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
PAGE = 1000
CHUNK = 500  # users or calls per pipeline
PRUNE_EVERY_S = 3600.0
PRUNE_FIRST_S = 60.0


SEQ_BITS = 20  # an entry's sequence within its millisecond, in a position


def position_of(entry_id: str) -> int:
    """A stream entry's id as an integer, in the same order (webhook cursors)."""
    ms, _, seq = entry_id.partition("-")
    return (int(ms) << SEQ_BITS) | int(seq or 0)


def entry_of(position: int) -> str:
    return f"{position >> SEQ_BITS}-{position & ((1 << SEQ_BITS) - 1)}"


def prefix(project_id: int) -> str:
    return f"hub:{{{project_id}}}:"


def ms_of(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class RedisHistory:
    """The :class:`~monitor.hub.history.HistoryReader` of a node of many."""

    def __init__(self, redis: Redis, status_attribute: str, retention_days: int) -> None:
        self.redis = redis
        self.status_attribute = status_attribute
        self._retention_days = retention_days
        self._task: asyncio.Task[None] | None = None
        self.pruned = 0
        # project -> its webhook endpoints: pruning keeps what their cursors have not passed
        self.webhook_endpoints: dict[int, tuple[str, ...]] = {}

    @property
    def retention_days(self) -> int:
        return self._retention_days

    async def configure(self, project_ids: Sequence[int]) -> None:
        """Tell the scripts this node's status attribute, and whether the log is off
        (retention 0). Every node should say the same."""
        pipe = self.redis.pipeline(transaction=False)
        for project_id in project_ids:
            pipe.hset(prefix(project_id) + "hcfg", mapping={
                "status": self.status_attribute,
                "off": "1" if self._retention_days <= 0 else "0"})
        await pipe.execute()

    async def user_events(self, project_id: int, user_id: str, start: int, end: int,
                          attribute: str | None, limit: int, cursor: str | None
                          ) -> HistoryPage:
        key = prefix(project_id) + "hu:" + user_id
        low = f"{start}-0"
        if cursor is not None:
            if not ENTRY_ID.fullmatch(cursor) or not start <= ms_of(cursor) < end:
                raise RangeError("cursor is not one this range gave")
            low = "(" + cursor
        high = f"({end}-0"
        events: list[dict[str, Any]] = []
        last = ""
        while True:
            entries = cast("list[tuple[str, dict[str, str]]]", await self.redis.xrange(
                key, low, high, count=max(PAGE, limit + 1)))
            for entry_id, fields in entries:
                event = from_json(fields["e"])
                if attribute is not None and event.get("attribute") != attribute:
                    continue
                if len(events) == limit:
                    return HistoryPage(events, last)
                events.append(history_entry(event))
                last = entry_id
            if len(entries) < max(PAGE, limit + 1):
                return HistoryPage(events)
            low = "(" + entries[-1][0]

    async def checkpoints(self, project_id: int, user_ids: Sequence[str], at: int
                          ) -> dict[str, Checkpoint]:
        p = prefix(project_id)
        out: dict[str, Checkpoint] = {}
        for i in range(0, len(user_ids), CHUNK):
            chunk = user_ids[i:i + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for user_id in chunk:
                pipe.xrevrange(p + "hc:" + user_id, f"({at}-0", "-", count=1)
            for user_id, entries in zip(chunk, await pipe.execute(), strict=True):
                if entries:
                    out[user_id] = Checkpoint.from_text(entries[0][1]["c"])
        return out

    async def call_summaries(self, project_id: int, start: int, end: int
                             ) -> list[CallSummary]:
        p = prefix(project_id)
        ids = cast("list[str]", await self.redis.zrangebyscore(p + "hcalls", start,
                                                               f"({end}"))
        out = []
        for i in range(0, len(ids), 5000):
            chunk = ids[i:i + 5000]
            for call_id, text in zip(chunk, await self.redis.hmget(p + "hcall", chunk),
                                     strict=True):
                if text:
                    started, answered, ended = text.split()
                    out.append(CallSummary(call_id, int(started),
                                           None if answered == "-" else int(answered),
                                           None if ended == "-" else int(ended)))
        return out

    async def events_after(self, project_id: int, after: str, limit: int
                           ) -> list[tuple[str, dict[str, Any]]]:
        """Events after entry ``after`` ("0-0": from the start), in log order."""
        entries = cast("list[tuple[str, dict[str, str]]]", await self.redis.xrange(
            prefix(project_id) + "hist", "(" + after, "+", count=limit))
        return [(entry_id, from_json(fields["e"])) for entry_id, fields in entries]

    # -- retention ------------------------------------------------------------------------

    async def prune(self, project_ids: Sequence[int], now_ms: int) -> int:
        """Trim what is older than the retention; each user keeps the last checkpoint
        before the cut. Idempotent: every node may run it."""
        cut = now_ms - self._retention_days * DAY_MS
        removed = 0
        for project_id in project_ids:
            p = prefix(project_id)
            removed += int(await self.redis.xtrim(p + "hist",
                                                  minid=await self._kept_from(project_id, cut)))
            users = sorted(cast("set[str]", await self.redis.smembers(p + "users")))
            for i in range(0, len(users), CHUNK):
                chunk = users[i:i + CHUNK]
                pipe = self.redis.pipeline(transaction=False)
                for user_id in chunk:
                    pipe.xrevrange(p + "hc:" + user_id, f"({cut}-0", "-", count=1)
                kept = await pipe.execute()
                pipe = self.redis.pipeline(transaction=False)
                for user_id, entries in zip(chunk, kept, strict=True):
                    pipe.xtrim(p + "hu:" + user_id, minid=f"{cut}-0")
                    if entries:
                        pipe.xtrim(p + "hc:" + user_id, minid=entries[0][0])
                removed += sum(int(n) for n in await pipe.execute())
            while True:
                old = cast("list[str]", await self.redis.zrangebyscore(
                    p + "hcalls", "-inf", f"({cut}", start=0, num=CHUNK))
                if not old:
                    break
                pipe = self.redis.pipeline(transaction=False)
                pipe.zrem(p + "hcalls", *old)
                pipe.hdel(p + "hcall", *old)
                await pipe.execute()
                removed += len(old)
        self.pruned += removed
        if removed:
            log.info("event=history_pruned entries=%d before_ms=%d", removed, cut)
        return removed

    async def _kept_from(self, project_id: int, cut: int) -> str:
        """The first entry of the log to keep: the cut's, or the first a webhook
        endpoint's cursor has not passed (the log is the endpoints' outbox)."""
        kept = f"{cut}-0"
        endpoints = self.webhook_endpoints.get(project_id)
        if endpoints:
            cursors = await self.redis.hmget(prefix(project_id) + "whc", list(endpoints))
            marks = [int(c) for c in cursors if c is not None]
            if marks and min(marks) < position_of(kept):
                kept = entry_of(min(marks))  # kept too: harmless
        return kept

    def start_pruning(self, project_ids: Sequence[int], clock: Callable[[], int]) -> None:
        if self._retention_days <= 0:
            return

        async def run() -> None:
            wait = PRUNE_FIRST_S
            while True:
                await asyncio.sleep(wait)
                wait = PRUNE_EVERY_S
                try:
                    await self.prune(project_ids, clock())
                except Exception as exc:
                    log.warning("event=history_prune_failed error=%r", str(exc))

        self._task = asyncio.get_running_loop().create_task(run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
