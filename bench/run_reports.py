"""Reports over a day of a large contact centre, on each engine.

    python bench/run_reports.py --engine sqlite,redis --agents 5000 --events 200 --record

A day (yesterday, UTC) of ``--agents`` agents with ``--events`` logged events each (a
login, status changes, inbound calls rung, answered or missed, ended, a logout: each call
transition is two events, the agent's ``call`` attribute and the call's state) is written
through the engine's own write path: the SQLite store's batches, or the Redis scripts a
node runs. Then a hub (one node on that database, or a node on that Redis, pinned to
core 0) is started on it and asked over REST, ``--runs`` times each: the agents report of
the whole day (with and without a group), the calls report in 15-minute intervals, and
one agent's history of the day. Answer times are wall-clock, from this process; the hub's
RSS is sampled every 20 ms throughout (memory must stay flat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure
import targets

from monitor.hub.history import AttributeEvent, CallEvent
from monitor.hub.state import AttributeRow, UserRow
from monitor.tokens import Grants

DAY_MS = 86_400_000
STATUSES = ("available", "break", "lunch", "after_call", "training")
TEAMS = 20
COLUMNS = [("engine", "engine"), ("events", "events"), ("agents", "agents"),
           ("request", "request"), ("runs", "runs"), ("median_ms", "median ms"),
           ("max_ms", "max ms"), ("answer_kb", "answer KB"),
           ("rss_before_mb", "hub RSS before MB"), ("rss_peak_mb", "hub RSS peak MB"),
           ("rss_after_mb", "hub RSS after MB"), ("write_s", "day written in s"),
           ("machine_busy_before_pct", "machine busy before %")]


# -- a day ---------------------------------------------------------------------------------


def agent_day(rng: random.Random, agent: str, day: int, events: int) -> list[tuple[Any, ...]]:
    """One agent's day as (ms, kind, ...) tuples: exactly ``events`` logged events."""
    t = day + 8 * 3_600_000 + rng.randrange(3_600_000)
    out: list[tuple[Any, ...]] = [(t, "a", agent, "onlineStatus", "online", "offline", None)]
    status = "available"
    out.append((t, "a", agent, "manual_status", status, None, None))
    serial = 0
    while len(out) < events - 1:
        t += rng.randrange(30_000, 600_000)
        room = events - 1 - len(out)
        if room < 4 or rng.random() < 0.15:
            new = rng.choice([s for s in STATUSES if s != status])
            out.append((t, "a", agent, "manual_status", new, status, None))
            status = new
            continue
        serial += 1
        call_id = f"{agent}-{serial}"
        customer = f"+331{rng.randrange(10**8):08d}"
        call: dict[str, Any] = {"callId": call_id, "from": customer, "to": agent,
                                "status": "Ringing", "direction": "external",
                                "startedAt": t, "updatedAt": t, "ringingAt": t}
        extra = {"callId": call_id, "from": customer, "to": agent}
        out.append((t, "a", agent, "call", "Ringing", "Ended" if serial > 1 else None, extra))
        out.append((t, "c", dict(call)))
        previous = "Ringing"
        if room >= 6 and rng.random() < 0.85:
            t += rng.randrange(2_000, 25_000)
            call.update(status="Answered", updatedAt=t, answeredAt=t)
            out.append((t, "a", agent, "call", "Answered", "Ringing", extra))
            out.append((t, "c", dict(call)))
            previous = "Answered"
            t += rng.randrange(30_000, 600_000)
        else:
            t += rng.randrange(5_000, 30_000)
        call.update(status="Ended", updatedAt=t, endedAt=t, endReason="reported")
        out.append((t, "a", agent, "call", "Ended", previous, extra))
        out.append((t, "c", dict(call)))
    t += rng.randrange(60_000, 600_000)
    out.append((t, "a", agent, "onlineStatus", "offline", "online", None))
    return out


def a_day(agents: int, events: int, day: int, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    out = []
    for i in range(agents):
        out += agent_day(rng, f"agent{i:05d}", day, events)
    out.sort(key=lambda e: e[0])
    return out


def as_event(row: tuple[Any, ...], project: int) -> AttributeEvent | CallEvent:
    if row[1] == "a":
        t, _, user, name, value, old, extra = row
        return AttributeEvent(project, user, name, value, old, t, (), extra)
    t, _, call = row
    return CallEvent(project, call, t, (call["to"],))


# -- writing it through each engine --------------------------------------------------------


def write_sqlite(path: Path, day_rows: list[tuple[Any, ...]], agents: int, day: int) -> float:
    from monitor.hub.store.sqlite import SqliteStore

    started = time.monotonic()
    store = SqliteStore(path)
    store.write([UserRow(targets.PROJECT_ID, f"agent{i:05d}", f"Agent {i}", day, Grants())
                 for i in range(agents)])
    store.write([AttributeRow(targets.PROJECT_ID, f"agent{i:05d}", "team", f"team{i % TEAMS}",
                              day) for i in range(agents)])
    for i in range(0, len(day_rows), 500):
        store.write([as_event(r, targets.PROJECT_ID) for r in day_rows[i:i + 500]])
    store.close()
    return time.monotonic() - started


async def write_redis(url: str, day_rows: list[tuple[Any, ...]], agents: int, day: int
                      ) -> float:
    from monitor.hub.cluster.history import RedisHistory
    from monitor.hub.cluster.ops import Change
    from monitor.hub.cluster.redis_store import RedisStore

    started = time.monotonic()
    store = RedisStore(url, "bench-writer")
    await RedisHistory(store.redis, "manual_status", 35).configure([targets.PROJECT_ID])
    pid = targets.PROJECT_ID
    users = [f"agent{i:05d}" for i in range(agents)]
    await store.write([UserRow(pid, u, f"Agent {i}", day, Grants()) for i, u in
                       enumerate(users)], lambda p, c: None)
    await store.write([Change(pid, u, "team", f"team{i % TEAMS}", day, None, False, ())
                       for i, u in enumerate(users)], lambda p, c: None)
    for i in range(0, len(day_rows), 1000):
        ops: list[Any] = []
        for row in day_rows[i:i + 1000]:
            event = as_event(row, pid)
            if isinstance(event, AttributeEvent):
                ops.append(Change(pid, event.user_id, event.attribute, event.value,
                                  event.timestamp, event.extra, event.attribute == "call", ()))
            else:
                ops.append(event)
        await store.write(ops, lambda p, c: None)
    await store.close()
    return time.monotonic() - started


# -- asking ----------------------------------------------------------------------------------


class RssSampler:
    """The hub's RSS every 20 ms, on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, measure.memory_kb(self.pid).get("VmRSS", 0))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ask(engine: str, api_url: str, pid: int, day: int, runs: int, info: dict[str, Any]
        ) -> list[dict[str, Any]]:
    requests = [
        ("agents report, the day", "/v1/reports/agents", {"from": day, "to": day + DAY_MS}),
        ("agents report, the day, by team", "/v1/reports/agents",
         {"from": day, "to": day + DAY_MS, "groupAttribute": "team"}),
        ("agents report, one team", "/v1/reports/agents",
         {"from": day, "to": day + DAY_MS, "groupAttribute": "team", "group": "team3"}),
        ("calls report, 15 min intervals", "/v1/reports/calls",
         {"from": day, "to": day + DAY_MS, "interval": "15m"}),
        ("one agent's history, the day", "/v1/users/agent00042/history",
         {"from": day, "to": day + DAY_MS}),
    ]
    rows = []
    with httpx.Client(base_url=api_url, timeout=120,
                      headers={"X-STRINGEE-AUTH": targets.rest_token()}) as client:
        client.get("/v1/reports/agents", params={"from": day, "to": day + 1})  # warm
        for name, path, params in requests:
            busy = measure.wait_quiet(20)
            before = measure.memory_kb(pid).get("VmRSS", 0)
            times = []
            size = 0
            with RssSampler(pid) as rss:
                for _ in range(runs):
                    t0 = time.perf_counter()
                    answer = client.get(path, params=params)
                    times.append(time.perf_counter() - t0)
                    answer.raise_for_status()
                    size = len(answer.content)
            after = measure.memory_kb(pid).get("VmRSS", 0)
            times.sort()
            rows.append({"engine": engine, "request": name, "runs": runs,
                         "median_ms": 1000 * times[len(times) // 2],
                         "max_ms": 1000 * times[-1], "answer_kb": size / 1024,
                         "rss_before_mb": before / 1024, "rss_peak_mb": max(rss.peak, after)
                         / 1024, "rss_after_mb": after / 1024,
                         "machine_busy_before_pct": busy, **info})
            print({k: (round(v, 1) if isinstance(v, float) else v)
                   for k, v in rows[-1].items()}, flush=True)
    return rows


def run_engine(engine: str, args: argparse.Namespace, day_rows: list[tuple[Any, ...]],
               day: int) -> list[dict[str, Any]]:
    info = {"events": len(day_rows), "agents": args.agents}
    if engine == "sqlite":
        hub = targets.Target("hub")
        info["write_s"] = write_sqlite(hub.workdir / "data" / "hub.sqlite3", day_rows,
                                       args.agents, day)
        with hub:
            return ask(engine, hub.api_url, hub.pid, day, args.runs, info)
    redis = targets.RedisServer().start()
    try:
        info["write_s"] = asyncio.run(write_redis(redis.url, day_rows, args.agents, day))
        with targets.Target("hub", hub_settings=f'redis_url = "{redis.url}"') as hub:
            return ask(engine, hub.api_url, hub.pid, day, args.runs, info)
    finally:
        redis.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="sqlite,redis")
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--events", type=int, default=200, help="logged events per agent")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    targets.exit_on_sigterm()
    os.sched_setaffinity(0, {targets.CLIENT_CPU})
    now = int(time.time() * 1000)
    day = now - now % DAY_MS - DAY_MS  # yesterday, UTC
    started = time.monotonic()
    day_rows = a_day(args.agents, args.events, day, args.seed)
    print(f"{len(day_rows):,} events made in {time.monotonic() - started:.1f} s", flush=True)
    rows = []
    for engine in args.engine.split(","):
        rows += run_engine(engine, args, day_rows, day)
    text = measure.table(rows, COLUMNS)
    print()
    print(text)
    if args.record:
        cmd = "python bench/run_reports.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        section = measure.header("Reports over a day", cmd) + "\n" + text
        print("recorded raw rows in", measure.record(section, "reports", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
