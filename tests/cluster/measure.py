"""What one change costs on a multi-node hub: run by hand, not by pytest.

    python -m tests.cluster.measure [--nodes 3] [--agents 60] [--seconds 8] [--watchers 1]

Starts a redis-server (AOF, appendfsync always) and N nodes on 127.0.0.1, logs in
``agents`` clients spread over the nodes, each sending CHANGE_ATTRIBUTE requests back to
back to a topic that ``watchers`` clients per node subscribe to, for ``seconds``. Prints
acknowledged changes/s, deliveries/s, and the CPU each process spent per change (from
/proc), which is what a capacity plan needs: on a shared or small machine the rates are
bounded by the load generator, the CPU per change is not. ``--nodes 0`` measures one
SQLite node instead, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tests.cluster.conftest import RedisServer, node_settings
from tests.hub.wire import Wire, login
from tests.hubproc import HubProcess

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    redis = None
    nodes: list[HubProcess] = []
    try:
        if args.nodes:
            program = shutil.which("redis-server")
            assert program, "redis-server not installed"
            redis = RedisServer(workdir / "redis", program)
            redis.start()
        for i in range(max(args.nodes, 1)):
            (workdir / f"node{i}").mkdir()
            extra = node_settings(redis, auth_rate_per_ip=100000,
                                  auth_burst_per_ip=100000) if redis else \
                "auth_rate_per_ip = 100000\nauth_burst_per_ip = 100000"
            nodes.append(HubProcess(workdir / f"node{i}", extra_hub=extra).start())
        topic = "measure"
        watchers: list[Wire] = []
        for i, node in enumerate(nodes):
            for w in range(args.watchers):
                watchers.append(await login(node, node.client_token(
                    f"watch{i}_{w}", subscribe=[topic])))
        agents = [await login(nodes[i % len(nodes)], nodes[0].client_token(
            f"agent{i}", attributes=[("load", topic)])) for i in range(args.agents)]
        received = [0] * len(watchers)

        async def watch(k: int, wire: Wire) -> None:
            while True:
                text = await wire.ws.recv()
                if '"service":102' in text:
                    received[k] += 1

        acked = 0
        stop = False

        async def agent(wire: Wire) -> None:
            nonlocal acked
            n = 0
            while not stop:
                n += 1
                await wire.ws.send(json.dumps({"service": 103, "body": {
                    "attribute": "load", "value": n, "requestId": n}}))
                while True:
                    reply = json.loads(await wire.ws.recv())
                    if reply["service"] == 103:
                        assert reply["body"]["r"] == 0, reply
                        acked += 1
                        break

        tasks = [asyncio.create_task(watch(k, w)) for k, w in enumerate(watchers)]
        pids = {"node": [n.proc.pid for n in nodes if n.proc],
                "redis": [redis.proc.pid] if redis and redis.proc else []}
        load = [asyncio.create_task(agent(a)) for a in agents]
        await asyncio.sleep(1.0)  # warm up
        cpu0 = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()}
        acked0, received0, t0 = acked, sum(received), time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        changes = acked - acked0
        deliveries = sum(received) - received0
        cpu = {k: sum(cpu_s(p) for p in v) - cpu0[k] for k, v in pids.items()}
        stop = True
        await asyncio.gather(*load, return_exceptions=True)
        for task in tasks:
            task.cancel()
        return {
            "nodes": args.nodes, "agents": args.agents, "changes_per_s": changes / elapsed,
            "deliveries_per_s": deliveries / elapsed,
            "node_cpu_us_per_change": cpu["node"] * 1e6 / max(changes, 1),
            "redis_cpu_us_per_change": cpu["redis"] * 1e6 / max(changes, 1),
            "node_cpu_pct": cpu["node"] * 100 / elapsed,
            "redis_cpu_pct": cpu["redis"] * 100 / elapsed,
        }
    finally:
        for node in nodes:
            node.kill()
        if redis is not None:
            redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--agents", type=int, default=60)
    parser.add_argument("--watchers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="measure-cluster-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    for key, value in result.items():
        print(f"{key:>26}: {value:,.1f}" if isinstance(value, float) else
              f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
