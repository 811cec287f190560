"""Soak: N clients (10,000 by default) through a network blip and a hub crash.

    python -m tests.soak.soak_restart [--clients 10000] [--jitter 10] [--record]

1. N clients connect; each user publishes presence and a note to its group's topic
   (10 users a group) and subscribes to it. Each sets its note once.
2. Network blip: every connection drops without a close frame; each client comes back
   after a random delay in [0, jitter] s and resumes from its position: the hub must
   replay what it missed (recovered) with no gap.
3. Hub crash: kill -9, restart on the same data. Clients reconnect with jitter (retrying
   while the hub is down); the new hub cannot replay (new epoch): each re-reads its topic
   with TOPIC_SNAPSHOT and must find itself online there.
   Throughout 2 and 3 a probe times /healthz and a CHANGE_ATTRIBUTE every 100 ms.
4. No ghosts: 30 % leave with a close frame, 20 % drop their TCP connection; once the
   grace period passes, exactly the remaining users are online (REST and /metrics).

Traffic is on 127.0.0.0/8 only; every wait is bounded; the hub is killed at the end.
Exits non-zero if a check fails. ``--record`` appends the result to docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
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
    Probe,
    Totals,
    commit,
    connect_all,
    hub_metrics,
    machine,
    online_users,
    proc_status,
    raise_fd_limit,
    summary,
)

GRACE_MS = 3000


async def wait_until(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def run(clients_n: int = 10_000, jitter: float = 10.0, workdir: Path | None = None,
              log: Any = print) -> dict[str, Any]:
    """The whole scenario; raises AssertionError on a failed check, returns the numbers."""
    os.environ["MONITOR_LOG_LEVEL"] = "info"
    workdir = workdir or Path(tempfile.mkdtemp(prefix="soak-restart-"))
    hub = HubProcess(workdir, extra_hub=(
        f"offline_grace_ms = {GRACE_MS}\nauth_rate_per_ip = 1000000\n"
        "auth_burst_per_ip = 1000000\nping_after_ms = 15000"))
    hub.start()
    results: dict[str, Any] = {"clients": clients_n, "jitter_s": jitter}
    totals = Totals()
    clients = [Client(i, hub, totals) for i in range(clients_n)]
    for client in clients:
        client.reconnect_window = jitter
    probe_client = Client(clients_n, hub, totals)  # its own group, the probe's
    try:
        assert hub.proc is not None
        idle = proc_status(hub.proc.pid)
        took = await connect_all(clients)
        await probe_client.connect()
        results["connect_s"] = round(took, 1)
        log(f"{clients_n} connected in {took:.1f} s")
        await asyncio.gather(*(c.change_note() for c in clients))
        await asyncio.sleep(1)
        assert totals.gaps == 0 and totals.duplicates == 0, (totals.gaps, totals.duplicates)
        results["loaded"] = proc_status(hub.proc.pid)
        results["idle"] = idle

        # -- 2. network blip: drop everything, come back with jitter, resume ---------------
        probe = Probe(hub, probe_client)
        probe.start()
        started = time.monotonic()
        resumed_before, resynced_before = totals.resumed, totals.resynced
        for client in clients:
            client.drop()
        await asyncio.sleep(0.5)  # the losses are noticed on the next loop turns
        await wait_until(lambda: all(c.connected for c in clients), jitter + 120,
                         "everyone back after the blip")
        results["blip_back_s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(1)
        resumed = totals.resumed - resumed_before
        results["blip_resumed"] = resumed
        results["blip_resynced"] = totals.resynced - resynced_before
        results["blip_gaps"] = totals.gaps
        log(f"blip: back in {results['blip_back_s']} s, {resumed} resumed, "
            f"{results['blip_resynced']} resynced, gaps {totals.gaps}")
        assert totals.gaps == 0 and totals.duplicates == 0
        assert resumed == clients_n, resumed  # the hub still held what they missed

        # -- 3. crash and restart ----------------------------------------------------------
        resynced_before = totals.resynced
        started = time.monotonic()
        hub.kill()
        await asyncio.to_thread(hub.start, 60)
        restarted = time.monotonic() - started
        await asyncio.sleep(0.5)
        await wait_until(lambda: all(c.connected for c in [*clients, probe_client]),
                         jitter + 180, "everyone back after the restart")
        results["restart_s"] = round(restarted, 1)
        results["restart_back_s"] = round(time.monotonic() - started, 1)
        results["restart_resynced"] = totals.resynced - resynced_before
        await probe.stop()
        results["probe_health"] = summary(probe.health_ms)
        results["probe_change"] = summary(probe.change_ms)
        results["probe_failures"] = probe.failures
        log(f"restart: hub up in {restarted:.1f} s, everyone back in "
            f"{results['restart_back_s']} s, resynced {results['restart_resynced']}")
        log(f"probe /healthz {results['probe_health']}; change {results['probe_change']}; "
            f"failures {probe.failures}")
        assert totals.gaps == 0, totals.gaps
        assert totals.snapshot_mismatches == 0, totals.snapshot_mismatches
        # Each came back through a snapshot (a client whose first try failed half-way
        # may have read one twice).
        assert all(c.last_recovered is False for c in clients)
        assert results["restart_resynced"] >= clients_n + 1, results  # and the probe's
        await asyncio.sleep(1)
        online = await asyncio.to_thread(online_users, hub)
        expected = {c.user for c in clients} | {probe_client.user}
        # probe_client is connected again too
        await wait_until(lambda: probe_client.connected, 60, "probe back")
        assert online <= expected and len(expected - online) <= 1, len(expected - online)

        # -- 4. no ghosts ------------------------------------------------------------------
        random.shuffle(clients)
        leaving = clients[: int(clients_n * 0.3)]
        dropping = clients[int(clients_n * 0.3): int(clients_n * 0.5)]
        staying = clients[int(clients_n * 0.5):]
        for client in leaving:
            client.close()
        for client in dropping:
            client.close(abort=True)
        probe_client.close()
        settle = GRACE_MS / 1000 + 3
        await asyncio.sleep(settle)
        online = await asyncio.to_thread(online_users, hub)
        metrics = await asyncio.to_thread(hub_metrics, hub)
        results["ghosts"] = len(online - {c.user for c in staying})
        results["missing"] = len({c.user for c in staying} - online)
        results["online_after"] = len(online)
        results["metrics_after"] = metrics
        log(f"after {len(leaving)} left and {len(dropping)} dropped: {len(online)} online, "
            f"ghosts {results['ghosts']}, missing {results['missing']}")
        assert results["ghosts"] == 0 and results["missing"] == 0
        assert metrics["monitor_users_online"] == len(staying), metrics
        assert metrics["monitor_connections"] == len(staying), metrics
        for client in staying:
            client.close()
        await asyncio.sleep(settle)
        metrics = await asyncio.to_thread(hub_metrics, hub)
        results["metrics_empty"] = metrics
        results["empty"] = proc_status(hub.proc.pid)
        assert metrics["monitor_users_online"] == 0 and metrics["monitor_connections"] == 0, \
            metrics
        results["totals"] = {"authens": totals.authens, "connect_errors": totals.connect_errors,
                             "refused": len(totals.refused), "gaps": totals.gaps,
                             "duplicates": totals.duplicates}
        assert not totals.refused, totals.refused[:3]
        errors = [line for line in hub.log().splitlines()
                  if "level=ERROR" in line or "Traceback" in line]
        results["hub_errors"] = len(errors)
        assert not errors, errors[:5]
        return results
    finally:
        for client in [*clients, probe_client]:
            client.wanted = False  # no reconnects while the hub goes away
        hub.kill()


def record(results: dict[str, Any], elapsed: float, command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n### Restart with {results['clients']:,} clients\n\n"
            f"{when}, commit `{commit()}`, {machine()}, Python {sys.version.split()[0]}. "
            f"Command: `{command}` ({elapsed:.0f} s).\n\n"
            "```json\n" + json.dumps(results, indent=1, default=str) + "\n```\n")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--jitter", type=float, default=10.0)
    parser.add_argument("--record", action="store_true",
                        help="append the result to docs/reliability.md")
    args = parser.parse_args()
    raise_fd_limit()
    started = time.monotonic()
    try:
        results = asyncio.run(run(args.clients, args.jitter))
    except AssertionError as exc:
        print(f"FAIL: {exc!r}")
        return 1
    elapsed = time.monotonic() - started
    print(json.dumps(results, indent=1, default=str))
    if args.record:
        with Path("docs/reliability.md").open("a", encoding="utf-8") as out:
            out.write(record(results, elapsed, "python -m tests.soak.soak_restart "
                                               + " ".join(sys.argv[1:])))
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
