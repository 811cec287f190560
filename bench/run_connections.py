"""Connection benchmark: open and authenticate N connections, hold them, measure memory.

    python bench/run_connections.py --target all --connections 1000,10000
    python bench/run_connections.py --target hub --connections 50000 --hold 40 --record
    python bench/run_connections.py --target hub --nodes 3 --connections 50000 --record

``hub``: WebSocket handshake + AUTHEN with a token of its own user per connection.
``baseline``: the minimal server in ``ack`` mode, handshake + one request/reply.
``mosquitto``: handshake + MQTT CONNECT/CONNACK.

Clients are spread over processes pinned to core 1 (at most ``--per-proc`` connections
each, under the descriptor limit) and over source addresses 127.0.0.2, .3, ... (20,000
each, under the ephemeral port range). Reported: wall time from "go" until every
connection is authenticated, opens/s, server CPU per open, RSS per idle connection
(server RSS after the opens and a settle pause, minus RSS before, over N), and how many
were still open after ``--hold`` seconds.

``--nodes N`` (N > 1, target ``hub`` only): one process cannot hold more connections than
its descriptor limit (here a hard 20,000), so the run starts ``redis-server`` and N hub
nodes on it (``targets.Cluster``, as ``run_cluster.py`` does, all pinned to core 0) and
connection i goes to node i mod N. Reported besides: connections held per node, the
nodes' RSS growth per idle connection and CPU per open summed over the nodes, Redis's CPU
per open and RSS apart, and each node's own count of its connections (``/metrics``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure
import run_cluster
import targets
import wsload
from run_fanout import bound, client_setup, run_loop, wait_for

# shared slots: a flag, then one per process each; then NODE_OPEN + k * nodes + node
GO, DONE, OK, FAIL, OPEN, SKIP, NODE_OPEN = 0, 8, 72, 136, 200, 264, 328
PER_IP = 20_000


@dataclass
class Servers:
    """What the openers connect to and what is measured: one server process, or N hub
    nodes (connection i to ``ports[i % N]``) and the redis-server they share."""

    ports: list[int]
    pids: list[int]  # the processes holding the connections, one per port
    api_urls: list[str]
    log: Callable[[], str]
    redis_pid: int | None = None

    @property
    def label(self) -> str:
        return f"hub ×{len(self.ports)} nodes (Redis)" if self.redis_pid else ""


@contextlib.contextmanager
def start_servers(kind: str, args: argparse.Namespace) -> Iterator[Servers]:
    """One ``kind`` server, or with ``--nodes N`` > 1 N hub nodes on a fresh Redis."""
    if args.nodes == 1:
        with targets.Target(kind, mode="ack", hub_settings=args.hub_settings) as t:
            yield Servers([t.port], [t.pid], [t.api_url], t.log)
        return
    with run_cluster.make_cluster(f"redis{args.nodes}", args) as c:
        assert c.redis is not None
        yield Servers(c.ports, [n.pid for n in c.nodes], [n.api_url for n in c.nodes], c.log,
                      c.redis.pid)


def node_connections(url: str) -> int | None:
    """The ``monitor_connections`` gauge of a hub node (its own count), or None."""
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("monitor_connections "):
            return int(float(line.split()[1]))
    return None


def opener_main(k: int, kind: str, ports: list[int], first: int, count: int,
                concurrency: int, procs: int, timeout: float, max_failures: int, shared: Any,
                pipe: Any) -> None:
    client_setup()
    tokens = [targets.client_token(f"bench_conn_{i}") for i in range(first, first + count)] \
        if kind == "hub" else []
    shared[DONE + k] = -1  # tokens ready
    run_loop(_opener(k, kind, ports, first, count, concurrency, procs, timeout, max_failures,
                     tokens, shared, pipe))


async def _opener(k: int, kind: str, ports: list[int], first: int, count: int,
                  concurrency: int, procs: int, timeout: float, max_failures: int,
                  tokens: list[str], shared: Any, pipe: Any) -> None:
    """Open connections first .. first + count - 1, connection i to ``ports[i % N]``."""
    stats = wsload.Stats()
    nodes = len(ports)
    conns: list[list[wsload.Conn]] = [[] for _ in ports]  # per node
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(j: int) -> None:
        i = first + j
        async with sem:
            if sum(shared[FAIL + p] for p in range(procs)) >= max_failures:
                shared[SKIP + k] += 1  # the server stopped taking connections: stop asking
                return
            try:
                c = await wsload.open_conn("127.0.0.1", ports[i % nodes], stats,
                                           mqtt=kind == "mosquitto",
                                           local_ip=f"127.0.0.{2 + i // PER_IP}",
                                           timeout=timeout)
                if kind == "hub":
                    await wsload.hub_authen(c, tokens[j], timeout=timeout)
                elif kind == "mosquitto":
                    await wsload.mqtt_hello(c, f"bench_conn_{i}", timeout=timeout)
                else:
                    c.send(b'{"service":2,"body":{"requestId":1}}')
                    await c.recv(timeout)
                c.inbox.clear()
                c.fast = True  # from now on: answer pings, count anything else
                conns[i % nodes].append(c)
                shared[OK + k] += 1
            except Exception as exc:
                shared[FAIL + k] += 1
                if len(errors) < 5:
                    errors.append(repr(exc)[:300])

    while not shared[GO]:
        await asyncio.sleep(0.001)
    t0 = time.monotonic()
    await asyncio.gather(*(one(j) for j in range(count)))
    took = time.monotonic() - t0
    shared[DONE + k] = 1

    def count_open() -> None:
        for node, on_node in enumerate(conns):
            shared[NODE_OPEN + k * nodes + node] = sum(1 for c in on_node if not c.closed)
        shared[OPEN + k] = sum(shared[NODE_OPEN + k * nodes + node] for node in range(nodes))

    while shared[GO] == 1:
        count_open()
        await asyncio.sleep(0.2)
    count_open()
    pipe.send({"took": took, "errors": errors})
    for on_node in conns:
        for c in on_node:
            c.close()
    await asyncio.sleep(0.2)


def run_one(kind: str, n: int, args: argparse.Namespace, servers: Servers
            ) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    nodes = len(servers.ports)
    shared = ctx.RawArray("q", NODE_OPEN + 64 * nodes)
    procs = max(args.procs, -(-n // args.per_proc))
    per = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    workers = []
    first = 0
    for k in range(procs):
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=opener_main, args=(
            k, kind, servers.ports, first, per[k], args.concurrency, procs, args.conn_timeout,
            args.max_failures, shared, tx), daemon=True)
        p.start()
        workers.append((p, rx))
        first += per[k]
    result: dict[str, Any] = {"target": servers.label or kind, "connections": n}
    if nodes > 1:
        result["nodes"] = nodes
    redis = [servers.redis_pid] if servers.redis_pid else []

    def rss_kb(pids: list[int]) -> list[int]:
        return [measure.memory_kb(pid)["VmRSS"] for pid in pids]

    try:
        wait_for(lambda: all(shared[DONE + k] == -1 for k in range(procs)), 300,
                 "openers not ready")
        time.sleep(1.0)
        before = rss_kb(servers.pids)
        redis_before = rss_kb(redis)
        cpu = measure.CpuMeter(servers.pids + redis)
        gen = measure.CpuMeter([p.pid for p, _ in workers])
        cores = measure.CoreMeter()
        cpu.start()
        gen.start()
        cores.start()
        profs: list[tuple[Any, Path]] = []
        if args.profile and kind != "mosquitto":
            for i, pid in enumerate(servers.pids):
                name = f"connections-{kind}-{n}" + (f"-node{i}" if nodes > 1 else "")
                path = Path(args.profile) / f"{name}.txt"
                profs.append((measure.start_profile(pid, args.expect_s, path), path))
        t0 = time.monotonic()
        shared[GO] = 1
        wait_for(lambda: all(shared[DONE + k] == 1 for k in range(procs)), args.timeout,
                 "opening did not finish")
        took = time.monotonic() - t0
        cpu.stop()
        cpu_s = sum(cpu.used[pid] for pid in servers.pids)  # the nodes', Redis apart
        redis_s = sum(cpu.used[pid] for pid in redis)
        gen_s = gen.stop()
        busy = cores.stop()
        ok = sum(shared[OK + k] for k in range(procs))
        for prof, path in profs:
            measure.finish_profile(prof, path)
        time.sleep(args.settle)
        after = rss_kb(servers.pids)
        open_at_after = [sum(shared[NODE_OPEN + k * nodes + node] for k in range(procs))
                         for node in range(nodes)]
        time.sleep(max(0.0, args.hold - args.settle))
        time.sleep(0.5)
        held = sum(shared[OPEN + k] for k in range(procs))
        held_per_node = [sum(shared[NODE_OPEN + k * nodes + node] for k in range(procs))
                         for node in range(nodes)]
        end_mem = [measure.memory_kb(pid) for pid in servers.pids]
        redis_end = [measure.memory_kb(pid) for pid in redis]
        counted = [node_connections(url) for url in servers.api_urls] if nodes > 1 else []
        shared[GO] = 2
        infos = [rx.recv() if rx.poll(60) else {} for _, rx in workers]
        errors = [e for info in infos for e in info.get("errors", [])]
        growth = sum(after) - sum(before)
        result.update({
            "ok": ok, "failed": sum(shared[FAIL + k] for k in range(procs)),
            "not_tried": sum(shared[SKIP + k] for k in range(procs)),
            "open_s": took, "opens_s": ok / took,
            "server_cpu_us_per_open": 1e6 * cpu_s / ok if ok else float("nan"),
            "server_cpu_pct": 100.0 * cpu_s / took,
            "gen_cpu_pct": 100.0 * gen_s / took,
            "core1_busy_pct": busy.get(f"cpu{targets.CLIENT_CPU}", float("nan")),
            "bound": bound(100.0 * (cpu_s + redis_s) / took, 100.0 * gen_s / took,
                           max(busy.values())),
            "rss_before_mb": sum(before) / 1024, "rss_after_mb": sum(after) / 1024,
            "kb_per_conn": growth / ok if ok else float("nan"),
            "held": held, "hold_s": args.hold,
            "rss_end_mb": sum(m["VmRSS"] for m in end_mem) / 1024,
            "peak_rss_mb": sum(m["VmHWM"] for m in end_mem) / 1024,
        })
        if nodes > 1:  # per node, and Redis apart
            result.update({
                "held_per_node": held_per_node, "node_counted_conns": counted,
                "node_cpu_us_per_open": [1e6 * cpu.used[pid] / ok if ok else float("nan")
                                         for pid in servers.pids],
                "node_kb_per_conn": [(a - b) / c if c else float("nan")
                                     for a, b, c in zip(after, before, open_at_after,
                                                        strict=True)],
                "node_peak_rss_mb": [m["VmHWM"] / 1024 for m in end_mem],
                "redis_cpu_us_per_open": 1e6 * redis_s / ok if ok else float("nan"),
                "redis_cpu_pct": 100.0 * redis_s / took,
                "core0_busy_pct": busy.get(f"cpu{targets.SERVER_CPU}", float("nan")),
                "redis_rss_before_mb": sum(redis_before) / 1024,
                "redis_rss_mb": sum(m["VmRSS"] for m in redis_end) / 1024,
                "redis_peak_rss_mb": sum(m["VmHWM"] for m in redis_end) / 1024,
                "redis_kb_per_conn": (sum(m["VmRSS"] for m in redis_end) - sum(redis_before))
                / ok if ok else float("nan"),
            })
        if errors:
            result["error_sample"] = errors[0]
        return result
    finally:
        shared[GO] = 2
        for p, _ in workers:
            p.join(20)
            if p.is_alive():
                p.kill()


COLUMNS = [("target", "target"), ("connections", "N"), ("ok", "authenticated"),
           ("failed", "failed"), ("not_tried", "not tried"),
           ("open_s", "time s"), ("opens_s", "opens+auths/s"),
           ("server_cpu_us_per_open", "server CPU µs/open"), ("gen_cpu_pct", "gen CPU %"),
           ("core1_busy_pct", "core 1 busy %"), ("bound", "bound"),
           ("kb_per_conn", "RSS KB/idle conn"),
           ("held", "held"), ("hold_s", "after s"), ("peak_rss_mb", "server peak RSS MiB"),
           ("vs_baseline", "opens/s × baseline"), ("vs_mosquitto", "opens/s × mosquitto"),
           ("machine_busy_before_pct", "machine busy before %")]

# with --nodes N > 1: server figures are the nodes' summed, Redis's apart
CLUSTER_COLUMNS = [
    ("target", "target"), ("connections", "N"), ("ok", "authenticated"),
    ("failed", "failed"), ("not_tried", "not tried"),
    ("open_s", "time s"), ("opens_s", "opens+auths/s"),
    ("server_cpu_us_per_open", "all nodes CPU µs/open"),
    ("redis_cpu_us_per_open", "Redis CPU µs/open"), ("gen_cpu_pct", "gen CPU %"),
    ("core0_busy_pct", "core 0 busy %"), ("core1_busy_pct", "core 1 busy %"),
    ("bound", "bound"), ("kb_per_conn", "all nodes RSS KB/idle conn"),
    ("held", "held"), ("held_per_node", "held per node"), ("hold_s", "after s"),
    ("peak_rss_mb", "all nodes peak RSS MiB"), ("redis_rss_mb", "Redis RSS MiB"),
    ("machine_busy_before_pct", "machine busy before %")]


def shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the table shows them: held per node as "16,667 / 16,667 / 16,666"."""
    return [dict(r, held_per_node=" / ".join(f"{h:,}" for h in r["held_per_node"]))
            if isinstance(r.get("held_per_node"), list) else r for r in rows]


def add_ratios(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        for other, key in (("baseline", "vs_baseline"), ("mosquitto", "vs_mosquitto")):
            ref = [x for x in rows if x["connections"] == r["connections"]
                   and x["target"] == other and x.get("opens_s")]
            if ref and r["target"] != other and r.get("opens_s"):
                r[key] = r["opens_s"] / ref[0]["opens_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="all")
    parser.add_argument("--connections", default="1000,10000")
    parser.add_argument("--procs", type=int, default=2, help="at least this many openers")
    parser.add_argument("--per-proc", type=int, default=15_000)
    parser.add_argument("--concurrency", type=int, default=200,
                        help="handshakes in flight per process")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between the last open and the RSS reading")
    parser.add_argument("--hold", type=float, default=5.0,
                        help="seconds to keep them open before counting survivors")
    parser.add_argument("--timeout", type=float, default=300.0, help="for the whole opening")
    parser.add_argument("--conn-timeout", type=float, default=15.0,
                        help="for one handshake + authentication")
    parser.add_argument("--max-failures", type=int, default=200,
                        help="stop opening once this many failed (server at its limit)")
    parser.add_argument("--hub-settings", default="")
    parser.add_argument("--nodes", type=int, default=1,
                        help="hub only: N > 1 hub nodes on one redis-server, connections "
                        "spread over them (one process cannot hold more than its "
                        "descriptor limit)")
    parser.add_argument("--appendfsync", default="everysec",
                        choices=("always", "everysec", "no"),
                        help="with --nodes: redis-server's AOF fsync")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the server while it accepts, stacks into DIR")
    parser.add_argument("--expect-s", type=float, default=3.0,
                        help="with --profile: seconds to sample")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each run, wait up to this many s for an idle machine")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.nodes > 1:
        if args.target != "hub":
            parser.error(f"--nodes {args.nodes} starts hub nodes on Redis: it takes "
                         f"--target hub only, not {args.target!r}")
        if not targets.hub_available():
            parser.error("--nodes: this checkout has no hub to start")
        if not shutil.which("redis-server") and not Path("/usr/bin/redis-server").exists():
            parser.error("--nodes: redis-server is not installed "
                         "(apt-get install -y redis-server)")
    kinds = list(targets.TARGETS) if args.target == "all" else args.target.split(",")
    if "hub" in kinds and not targets.hub_available():
        kinds.remove("hub")
    targets.exit_on_sigterm()
    os.sched_setaffinity(0, {targets.CLIENT_CPU})
    limit = targets.raise_fd_limit()
    print(f"descriptor limit per process: {limit}", file=sys.stderr)
    rows = []
    for n in (int(x) for x in args.connections.split(",")):
        for kind in kinds:
            with start_servers(kind, args) as servers:
                try:
                    busy = measure.wait_quiet(args.quiet_wait)
                    res = run_one(kind, n, args, servers)
                    res["machine_busy_before_pct"] = busy
                except Exception as exc:
                    res = {"target": servers.label or kind, "connections": n,
                           "error": f"{exc!r} {servers.log()[-300:]}"}
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()},
                  flush=True)
            rows.append(res)
    add_ratios(rows)
    text = measure.table(shown(rows), COLUMNS if args.nodes == 1 else CLUSTER_COLUMNS)
    print()
    print(text)
    if args.record:
        cmd = "python bench/run_connections.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        notes = [f"- {r['target']} N={r['connections']}: "
                 f"{r.get('error') or r.get('error_sample')}"[:400]
                 for r in rows if "error" in r or "error_sample" in r]
        section = measure.header("Connections", cmd) + "\n" + text + "\n" + "\n".join(notes)
        print("recorded raw rows in", measure.record(section, "connections", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
