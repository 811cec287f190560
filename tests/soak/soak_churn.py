"""Soak: N clients (10,000 by default) with churn and changes for M minutes (10).

    python -m tests.soak.soak_churn [--clients 10000] [--minutes 10] [--record]

Every second, ``--churn`` clients (100) lose their connection (half with a close frame,
half a dropped TCP connection) and come back 0.5-1.5 s later (one in ten after 4-5 s,
past the offline grace period, so presence changes too), resuming their topic; and
``--rate`` clients (500) change their note, which goes to the 10 members of their group.
The second's share is spread over ``--ticks`` (10) equal ticks, as independent agents'
changes would be; ``--ticks 1`` sends each second's load as one burst.

Before the measured minutes, a warm-up (120 s) fills every topic's history
(``history_size = 50``). Then, with churn paused and everyone connected, the hub's RSS,
descriptors and event-loop tasks are the baseline; the same is measured after the last
minute, and again once every client has left. Checks: memory back to its baseline
(≤ +10 %), no descriptor or task leak, every minute's p99 of change acknowledgements and
deliveries within the bound (125 ms: the hub's p99 at 10,000 deliveries/s to 5,000
subscribers in docs/benchmarks.md), no gap in any client's topic, nothing refused, no
error in the hub's log. ``--record`` appends the result to docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.hubproc import HubProcess
from tests.soak.soakclient import (
    Client,
    Totals,
    commit,
    connect_all,
    hub_metrics,
    machine,
    percentile,
    proc_status,
    raise_fd_limit,
)

P99_BOUND_MS = 125.0
GRACE_MS = 3000


class Load:
    """Churn and changes, ``ticks`` ticks a second."""

    def __init__(self, clients: list[Client], churn: int, rate: int, ticks: int = 10) -> None:
        self.clients = clients
        self.churn = churn
        self.rate = rate
        self.ticks = max(1, ticks)
        self.running = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.bounced = 0
        self.changes = 0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _bounce(self, client: Client, clean: bool) -> None:
        away = random.uniform(4.0, 5.0) if random.random() < 0.1 else random.uniform(0.5, 1.5)
        if clean:
            client.close()
            await asyncio.sleep(away)
            for _ in range(10):
                try:
                    await client.connect()
                    return
                except (OSError, ConnectionError, TimeoutError):
                    client.totals.connect_errors += 1
                    await asyncio.sleep(1)
        else:
            client.reconnect_window = away
            client.drop()  # comes back by itself after up to `away` s

    async def _change(self, client: Client) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            await client.change_note()

    async def run(self) -> None:
        self.running = True
        period = 1.0 / self.ticks
        n = 0
        next_tick = time.monotonic()
        while self.running:
            # This tick's share of the second's load, remainders spread over the ticks.
            churn = self.churn * (n + 1) // self.ticks - self.churn * n // self.ticks
            rate = self.rate * (n + 1) // self.ticks - self.rate * n // self.ticks
            n = (n + 1) % self.ticks
            ready = [c for c in self.clients if c.connected]
            for client in random.sample(ready, min(churn, len(ready))):
                self.bounced += 1
                self._spawn(self._bounce(client, clean=self.bounced % 2 == 0))
            ready = [c for c in self.clients if c.connected]
            for client in random.sample(ready, min(rate, len(ready))):
                self.changes += 1
                self._spawn(self._change(client))
            next_tick += period
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def pause(self, clients: list[Client], timeout: float = 120) -> None:
        """Stop the load and wait until every client is connected again."""
        self.running = False
        deadline = time.monotonic() + timeout
        while self.tasks or not all(c.connected for c in clients):
            if time.monotonic() > deadline:
                raise AssertionError("clients not all back in time")
            await asyncio.sleep(0.2)


def measure(hub: HubProcess) -> dict[str, float]:
    assert hub.proc is not None
    out = {**proc_status(hub.proc.pid), **hub_metrics(hub)}
    return {k: round(v, 1) for k, v in out.items()}


async def run(clients_n: int, minutes: float, churn: int, rate: int, warmup_s: float,
              ticks: int = 10, log: Any = print) -> dict[str, Any]:
    os.environ["MONITOR_LOG_LEVEL"] = "info"
    workdir = Path(tempfile.mkdtemp(prefix="soak-churn-"))
    hub = HubProcess(workdir, extra_hub=(
        f"offline_grace_ms = {GRACE_MS}\nauth_rate_per_ip = 1000000\n"
        "auth_burst_per_ip = 1000000\nhistory_size = 50"))
    hub.start()
    totals = Totals()
    clients = [Client(i, hub, totals) for i in range(clients_n)]
    results: dict[str, Any] = {"clients": clients_n, "minutes": minutes, "churn_per_s": churn,
                               "changes_per_s": rate, "ticks_per_s": ticks,
                               "warmup_s": warmup_s}
    try:
        await asyncio.sleep(1)
        results["idle"] = idle = measure(hub)
        took = await connect_all(clients)
        log(f"{clients_n} connected in {took:.1f} s")
        load = Load(clients, churn, rate, ticks)
        runner = asyncio.get_running_loop().create_task(load.run())
        await asyncio.sleep(warmup_s)
        await load.pause(clients)
        await runner
        await asyncio.sleep(2)
        results["baseline"] = baseline = measure(hub)
        log(f"baseline: {baseline}")
        totals.ack_ms.clear()
        totals.delivery_ms.clear()
        runner = asyncio.get_running_loop().create_task(load.run())
        per_minute: list[dict[str, Any]] = []
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        for minute in range(int(minutes)):
            for _ in range(6):
                await asyncio.sleep(max(0.0, started + minute * 60 + (_ + 1) * 10
                                        - time.monotonic()))
                samples.append({"t": round(time.monotonic() - started),
                                **await asyncio.to_thread(measure, hub)})
            acks, deliveries = totals.ack_ms[:], totals.delivery_ms[:]
            totals.ack_ms.clear()
            totals.delivery_ms.clear()
            row = {"minute": minute + 1, "changes": len(acks),
                   "ack_p50": round(percentile(acks, 50), 1),
                   "ack_p99": round(percentile(acks, 99), 1),
                   "delivery_p99": round(percentile(deliveries, 99), 1),
                   "deliveries": len(deliveries), "rss_mib": samples[-1]["rss_mib"],
                   "fds": samples[-1]["fds"],
                   "tasks": samples[-1]["monitor_event_loop_tasks"],
                   "connections": samples[-1]["monitor_connections"]}
            per_minute.append(row)
            log(json.dumps(row))
        await load.pause(clients)
        await runner
        await asyncio.sleep(2)
        results["final"] = final = measure(hub)
        log(f"final: {final}")
        for client in clients:
            client.close()
        await asyncio.sleep(GRACE_MS / 1000 + 3)
        results["empty"] = empty = measure(hub)
        log(f"empty: {empty}")
        results["per_minute"] = per_minute
        results["samples"] = samples
        results["bounced"] = load.bounced
        results["changes"] = load.changes
        results["totals"] = {"authens": totals.authens, "resumed": totals.resumed,
                             "resynced": totals.resynced, "gaps": totals.gaps,
                             "duplicates": totals.duplicates, "refused": len(totals.refused),
                             "connect_errors": totals.connect_errors}
        errors = [line for line in hub.log().splitlines()
                  if "level=ERROR" in line or "Traceback" in line]
        results["hub_errors"] = len(errors)
        # -- the verdict --------------------------------------------------------------------
        checks = {
            "rss back to baseline (<= +10 %)": final["rss_mib"] <= baseline["rss_mib"] * 1.10,
            "no descriptor leak": abs(final["fds"] - baseline["fds"]) <= 5
            and empty["fds"] <= idle["fds"] + 5,
            "no task leak": abs(final["monitor_event_loop_tasks"]
                                - baseline["monitor_event_loop_tasks"]) <= 5
            and empty["monitor_event_loop_tasks"] <= idle["monitor_event_loop_tasks"] + 2,
            "everyone gone at the end": empty["monitor_connections"] == 0
            and empty["monitor_users_online"] == 0,
            f"p99 within {P99_BOUND_MS} ms every minute": all(
                r["ack_p99"] <= P99_BOUND_MS and r["delivery_p99"] <= P99_BOUND_MS
                for r in per_minute),
            "no gap, no duplicate": totals.gaps == 0 and totals.duplicates == 0,
            "nothing refused": not totals.refused,
            "no slow consumer, no store failure": final["monitor_slow_consumers_dropped_total"]
            == 0 and final["monitor_store_failures_total"] == 0,
            "no error in the hub's log": not errors,
        }
        results["checks"] = checks
        return results
    finally:
        for client in clients:
            client.wanted = False  # no reconnects while the hub goes away
        hub.kill()


def record(results: dict[str, Any], elapsed: float, command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(
        f"| {r['minute']} | {r['changes']:,} | {r['ack_p50']} | {r['ack_p99']} | "
        f"{r['deliveries']:,} | {r['delivery_p99']} | {r['rss_mib']} | {r['fds']:.0f} | "
        f"{r['tasks']:.0f} | {r['connections']:.0f} |" for r in results["per_minute"])
    states = "\n".join(
        f"| {name} | {m['monitor_connections']:.0f} | {m['rss_mib']} | {m['fds']:.0f} | "
        f"{m['monitor_event_loop_tasks']:.0f} | {m['threads']:.0f} |"
        for name, m in (("idle (before clients)", results["idle"]),
                         ("baseline (after warm-up)", results["baseline"]),
                         ("final (after the last minute)", results["final"]),
                         ("empty (every client gone)", results["empty"])))
    checks = "\n".join(f"- {'PASS' if ok else 'FAIL'}: {name}"
                       for name, ok in results["checks"].items())
    return (f"\n### Churn soak, {results['clients']:,} clients, {results['minutes']:g} minutes\n\n"
            f"{when}, commit `{commit()}`, {machine()}, Python {sys.version.split()[0]}. "
            f"Command: `{command}` ({elapsed:.0f} s). Churn {results['churn_per_s']}/s, "
            f"{results['changes_per_s']} changes/s, in {results['ticks_per_s']} ticks a "
            f"second; {results['bounced']:,} reconnects, "
            f"{results['changes']:,} changes in all. Client totals: "
            f"`{json.dumps(results['totals'])}`.\n\n"
            "| state | connections | RSS MiB | fds | loop tasks | threads |\n"
            "|---|---|---|---|---|---|\n" + states + "\n\n"
            "| minute | changes | ack p50 ms | ack p99 ms | deliveries | delivery p99 ms | "
            "RSS MiB | fds | loop tasks | connections |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n" + rows + "\n\n" + checks + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--churn", type=int, default=100, help="reconnects per second")
    parser.add_argument("--rate", type=int, default=500, help="changes per second")
    parser.add_argument("--ticks", type=int, default=10,
                        help="ticks a second the load is spread over (1: one burst)")
    parser.add_argument("--warmup", type=float, default=120, help="seconds")
    parser.add_argument("--record", action="store_true",
                        help="append the result to docs/reliability.md")
    args = parser.parse_args()
    raise_fd_limit()
    started = time.monotonic()
    results = asyncio.run(run(args.clients, args.minutes, args.churn, args.rate, args.warmup,
                              args.ticks))
    elapsed = time.monotonic() - started
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=1))
    if args.record:
        with Path("docs/reliability.md").open("a", encoding="utf-8") as out:
            out.write(record(results, elapsed, "python -m tests.soak.soak_churn "
                                               + " ".join(sys.argv[1:])))
    failed = [name for name, ok in results["checks"].items() if not ok]
    print("FAIL: " + "; ".join(failed) if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
