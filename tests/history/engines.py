"""The event log's two engines driven in-process, random days of a contact centre, and the
brute force the reports are checked against.

The brute force knows nothing of checkpoints: it replays the raw events the engine
logged, user by user, and adds up the milliseconds of each state that fall in the range.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.hub.cluster.history import RedisHistory
from monitor.hub.cluster.ops import Change
from monitor.hub.cluster.redis_store import RedisStore
from monitor.hub.history import AttributeEvent, CallEvent, LogEvent
from monitor.hub.store.sqlite import SqliteStore
from monitor.protocol import CALL, ONLINE_STATUS

PROJECT = 25
STATUS = "manual_status"
T0 = 1_796_000_000_000
AGENTS = ("a0", "a1", "a2", "a3")
CUSTOMERS = ("+33100", "+33101")
STATUS_VALUES: tuple[Any, ...] = ("available", "break", "lunch", None, 3, True, "")
GAPS = (0, 0, 1, 7, 250, 1000, 4000, 30_000, 400_000)


class SqliteEngine:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path, status_attribute=STATUS)
        self.reader = self.store.log

    async def apply(self, batch: Sequence[LogEvent]) -> None:
        self.store.write(list(batch))

    async def raw(self) -> list[dict[str, Any]]:
        return [event for _, event in await self.store.log.events_after(PROJECT, 0, 10**9)]

    async def close(self) -> None:
        self.store.close()


class RedisEngine:
    """The Lua scripts decide and log, as on a node of many: attribute changes go in as
    the proposals a node makes (:class:`Change`), call transitions as they are."""

    name = "redis"

    def __init__(self, url: str) -> None:
        self.store = RedisStore(url, "test-node")
        self.reader = RedisHistory(self.store.redis, STATUS, 35)

    async def start(self) -> RedisEngine:
        await self.store.redis.flushdb()
        await self.reader.configure([PROJECT])
        return self

    async def apply(self, batch: Sequence[LogEvent]) -> None:
        ops: list[Any] = []
        for event in batch:
            if isinstance(event, AttributeEvent):
                ops.append(Change(event.project_id, event.user_id, event.attribute,
                                  event.value, event.timestamp, event.extra,
                                  event.attribute == CALL, ()))
            else:
                ops.append(event)
        await self.store.write(ops, lambda project_id, call_id: None)

    async def raw(self) -> list[dict[str, Any]]:
        return [event for _, event in await self.reader.events_after(PROJECT, "0-0", 10**9)]

    async def close(self) -> None:
        await self.store.close()


# -- random days --------------------------------------------------------------------------


def scenario(rng: random.Random, steps: int) -> tuple[list[list[LogEvent]], int]:
    """Batches of events (logins, logouts, quick returns, status changes, other
    attributes, overlapping calls between agents and customers) and the last time."""
    t = T0
    online = dict.fromkeys(AGENTS, False)
    values: dict[tuple[str, str], Any] = {}
    calls: dict[str, dict[str, Any]] = {}
    events: list[LogEvent] = []
    serial = 0

    def change(user: str, name: str, value: Any, extra: dict[str, Any] | None = None) -> None:
        old = values.get((user, name), "offline" if name == ONLINE_STATUS else None)
        values[(user, name)] = value
        events.append(AttributeEvent(PROJECT, user, name, value, old, t, (), extra))

    def transition(call: dict[str, Any]) -> None:
        users = tuple(p for p in (call["from"], call["to"]) if p in AGENTS)
        for party in users:
            change(party, CALL, call["status"],
                   {"callId": call["callId"], "from": call["from"], "to": call["to"]})
        events.append(CallEvent(PROJECT, dict(call), t, users))

    for _ in range(steps):
        t += rng.choice(GAPS)
        roll = rng.random()
        agent = rng.choice(AGENTS)
        if roll < 0.2:
            online[agent] = not online[agent]
            change(agent, ONLINE_STATUS, "online" if online[agent] else "offline")
        elif roll < 0.45:
            new = rng.choice(STATUS_VALUES)
            if (agent, STATUS) not in values or values[(agent, STATUS)] != new \
                    or type(values[(agent, STATUS)]) is not type(new):
                change(agent, STATUS, new)
        elif roll < 0.5:
            serial += 1
            change(agent, "mood", f"m{serial}")
        elif roll < 0.65 or not calls:
            serial += 1
            other = rng.choice([*CUSTOMERS, *AGENTS])
            if other == agent:
                continue
            caller, callee = (agent, other) if rng.random() < 0.4 else (other, agent)
            status = rng.choice(["Calling", "Calling", "Ringing", "Answered"])
            call = {"callId": f"c{serial}", "from": caller, "to": callee, "status": status,
                    "direction": "external", "startedAt": t, "updatedAt": t}
            if status != "Calling":
                call["ringingAt"] = t
            if status == "Answered":
                call["answeredAt"] = t
            calls[call["callId"]] = call
            transition(call)
        else:
            call = calls[rng.choice(sorted(calls))]
            nexts = {"Calling": ["Ringing", "Ended"], "Ringing": ["Answered", "Ended"],
                     "Answered": ["Ended"]}[call["status"]]
            status = rng.choice(nexts)
            call = {**call, "status": status, "updatedAt": t}
            if status == "Ringing":
                call["ringingAt"] = t
            elif status == "Answered":
                call["answeredAt"] = t
            else:
                call["endedAt"] = t
                call["endReason"] = "reported"
            if status == "Ended":
                del calls[call["callId"]]
            else:
                calls[call["callId"]] = call
            transition(call)
    batches: list[list[LogEvent]] = []
    i = 0
    while i < len(events):
        size = rng.choice((1, 1, 2, 5))
        batches.append(events[i:i + size])
        i += size
    return batches, t


# -- brute force ----------------------------------------------------------------------------


def brute_agents(raw: Sequence[dict[str, Any]], users: Sequence[str], start: int, end: int,
                 now: int) -> dict[str, dict[str, Any]]:
    """Each user's figures over ``[start, end)``, replaying the raw log ms by segment."""
    low, high = min(start, now), min(end, now)
    state: dict[str, dict[str, Any]] = {}
    totals = {u: {"online": 0, "talk": 0, "ring": 0, "handled": 0, "missed": 0,
                  "status": {}} for u in users}

    def spend(user: str, s: dict[str, Any], a: int, b: int) -> None:
        overlap = min(b, high) - max(a, low)
        if overlap <= 0:
            return
        tot = totals[user]
        if s["online"]:
            tot["online"] += overlap
            tot["status"][s["status"]] = tot["status"].get(s["status"], 0) + overlap
        if s["call"] == "Answered":
            tot["talk"] += overlap
        elif s["call"] == "Ringing" and s["callee"]:
            tot["ring"] += overlap

    for event in raw:
        if event["type"] == "call.state":
            call = event["call"]
            if call["to"] in totals and start <= event["timestamp"] < end:
                if call["status"] == "Answered":
                    totals[call["to"]]["handled"] += 1
                elif call["status"] == "Ended" and "answeredAt" not in call \
                        and "ringingAt" in call:
                    totals[call["to"]]["missed"] += 1
            continue
        user, name = event["userId"], event["attribute"]
        if user not in totals or name not in (ONLINE_STATUS, CALL, STATUS):
            continue
        s = state.setdefault(user, {"t": event["timestamp"], "online": False, "status": "",
                                    "call": "", "callee": False})
        t = max(s["t"], event["timestamp"])
        spend(user, s, s["t"], t)
        s["t"] = t
        value = event["value"]
        if name == ONLINE_STATUS:
            s["online"] = value == "online"
        elif name == CALL:
            s["call"] = value if isinstance(value, str) else ""
            s["callee"] = event.get("to") == user
        elif isinstance(value, str):
            s["status"] = value
        elif isinstance(value, bool):
            s["status"] = "true" if value else "false"
        else:
            s["status"] = "" if value is None else str(value)
    for user, s in state.items():
        spend(user, s, s["t"], high)
    out = {}
    for user, tot in totals.items():
        if not (tot["online"] or tot["talk"] or tot["ring"] or tot["handled"]
                or tot["missed"]):
            continue
        out[user] = {
            "onlineMs": tot["online"],
            "statusMs": {k: v for k, v in sorted(tot["status"].items()) if v},
            "calls": {"handled": tot["handled"], "missed": tot["missed"],
                      "ringMs": tot["ring"], "talkMs": tot["talk"]},
            "occupancy": round(tot["talk"] / tot["online"], 4) if tot["online"] else 0.0}
    return out


def brute_calls(raw: Sequence[dict[str, Any]], start: int, end: int, interval: int,
                sla_ms: int) -> list[dict[str, Any]]:
    """Calls offered per interval, from each call's latest logged state."""
    latest: dict[str, dict[str, Any]] = {}
    for event in raw:
        if event["type"] == "call.state":
            latest[event["call"]["callId"]] = event["call"]
    out = []
    begin = start
    while begin < end:
        stop = min(begin + interval, end)
        offered = [c for c in latest.values() if begin <= c["startedAt"] < stop]
        answered = [c for c in offered if "answeredAt" in c]
        handled = [c for c in answered if "endedAt" in c]
        waits = [c["answeredAt"] - c["startedAt"] for c in answered]
        out.append({
            "start": begin, "offered": len(offered), "answered": len(answered),
            "abandoned": sum(1 for c in offered if "answeredAt" not in c and "endedAt" in c),
            "answeredWithinSla": sum(1 for w in waits if w <= sla_ms),
            "avgSpeedOfAnswerMs": round(sum(waits) / len(waits)) if waits else 0,
            "avgHandleMs": round(sum(c["endedAt"] - c["answeredAt"] for c in handled)
                                 / len(handled)) if handled else 0})
        begin += interval
    return out
