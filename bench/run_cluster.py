"""Cluster: two hub nodes on Redis against one node, same workloads, same run.

    python bench/run_cluster.py
    python bench/run_cluster.py --setups sqlite,redis1,redis2 --subscribers 1000 \
        --rate 10000,flat --clients 100 --record --profile /tmp/prof

Setups: ``sqlite`` is one hub on SQLite (the single-node default); ``redisN`` is N hub
nodes sharing one ``redis-server`` that this script starts on a free 127.0.0.1 port in a
temporary directory (``appendonly yes``, ``--appendfsync``, default ``everysec``: like the
hub's SQLite ``synchronous=NORMAL``, it survives a crash of the process) and stops at
the end of the case. Every server process (each node and redis-server) is pinned to core
0 and every load generator to core 1, as in the other benchmarks: on a 2-core machine the
cluster gets the same single core as one node, so its throughput here shows what it costs,
not how it scales; the CPU each process spends per unit of work is the figure that tells
the capacity of a node (or of Redis) on a core of its own.

Workloads, the same client code as ``run_fanout.py`` and ``run_durable.py``:

- fan-out: S subscribers on topic ``bench``, subscriber process k connected to node
  k mod N (so they are spread evenly over the nodes), the publisher on node 0;
  ``--rate R`` deliveries/s offered, or ``flat`` (a window of outstanding deliveries).
  Reported: deliveries/s, publish → receipt p50/p99 (all subscribers, and p99 of those
  on another node than the publisher's), loss after a drain.
- durable: C clients (``--clients``) split over the nodes the same way, each with
  ``--inflight`` CHANGE_ATTRIBUTE in flight (1 by default; a client sends the next one
  when a reply comes): acknowledged changes/s, p50/p99.

For each process: CPU % of the measured window and µs of its CPU per unit of work
(delivery, or acknowledged change) of the whole setup, so that the processes' figures
add up to the setup's; what Redis ran (``INFO commandstats``: XREADs per unit in the
table, every command's rate in the JSON). Ratios against the SQLite node and the one
Redis node of the same case and run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure
import run_durable
import run_fanout as fo
import targets
from run_fanout import bound, median_run, wait_for


def make_cluster(setup: str, args: argparse.Namespace) -> targets.Cluster:
    if setup == "sqlite":
        return targets.Cluster(1, redis=False, hub_settings=args.hub_settings)
    if setup.startswith("redis") and setup[5:].isdigit():
        return targets.Cluster(int(setup[5:]), hub_settings=args.hub_settings,
                               appendfsync=args.appendfsync)
    raise ValueError(f"unknown setup {setup!r}: sqlite or redisN")


class Window:
    """CPU of every server process and of the generators, and core use, over a window."""

    def __init__(self, cluster: targets.Cluster, gen_pids: list[int]) -> None:
        self.names = cluster.pids
        self.redis = cluster.redis
        self.calls: dict[str, int] = {}
        self.server = measure.CpuMeter(list(self.names.values()))
        self.gen = measure.CpuMeter(gen_pids)
        self.cores = measure.CoreMeter()
        self.t0 = 0.0
        self.wall = 0.0

    def start(self) -> None:
        if self.redis is not None:
            self.calls = self.redis.command_calls()
        self.server.start()
        self.gen.start()
        self.cores.start()
        self.t0 = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self.t0
        self.server.stop()
        self.gen.stop()
        self.busy = self.cores.stop()
        if self.redis is not None:
            after = self.redis.command_calls()
            self.calls = {k: v - self.calls.get(k, 0) for k, v in after.items()
                          if v > self.calls.get(k, 0) and k != "info"}

    def report(self, units: float, unit: str) -> dict[str, Any]:
        """Per process: CPU % and µs per unit; the sum; generators; cores; bound."""
        out: dict[str, Any] = {}
        total = 0.0
        for name, pid in self.names.items():
            used = self.server.used[pid]
            total += used
            out[f"{name}_cpu_pct"] = 100.0 * used / self.wall
            out[f"{name}_us_per_{unit}"] = 1e6 * used / units if units else float("nan")
        out["server_cpu_pct"] = 100.0 * total / self.wall
        out[f"server_us_per_{unit}"] = 1e6 * total / units if units else float("nan")
        out["gen_cpu_pct"] = 100.0 * sum(self.gen.used.values()) / self.wall
        out["core0_busy_pct"] = self.busy.get(f"cpu{targets.SERVER_CPU}", float("nan"))
        out["core1_busy_pct"] = self.busy.get(f"cpu{targets.CLIENT_CPU}", float("nan"))
        out["bound"] = bound(out["server_cpu_pct"], out["gen_cpu_pct"],
                             max(out["core0_busy_pct"], out["core1_busy_pct"]))
        if self.calls:  # commands Redis ran (those of the scripts included), per second
            out["redis_calls_per_s"] = {k: v / self.wall for k, v in self.calls.items()}
            out[f"xread_per_{unit}"] = self.calls.get("xread", 0) / units \
                if units else float("nan")
        return out


def start_profiles(cluster: targets.Cluster, args: argparse.Namespace, case: str
                   ) -> list[tuple[Any, Path]]:
    """py-spy every node (redis-server is not Python) for the measured window."""
    if not args.profile:
        return []
    out = []
    for name, pid in cluster.pids.items():
        if name.startswith("node"):
            path = Path(args.profile) / f"cluster-{case}-{name}.txt"
            out.append((measure.start_profile(pid, args.duration, path), path))
    return out


def finish_profiles(profiles: list[tuple[Any, Path]]) -> None:
    for proc, path in profiles:
        print(f"-- {path.name}")
        measure.finish_profile(proc, path)


# -- fan-out -------------------------------------------------------------------------------


def fanout_case(setup: str, cluster: targets.Cluster, subscribers: int, rate: float | None,
                args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    shared = ctx.RawArray("q", 256)
    ports = cluster.ports
    procs = max(len(ports), min(args.procs, subscribers, fo.PROCS_MAX))
    node_of = [k % len(ports) for k in range(procs)]
    sample_every = args.sample_every or (1 if rate is not None else 10)
    per = [subscribers // procs + (1 if k < subscribers % procs else 0) for k in range(procs)]
    subs = []
    first = 0
    for k in range(procs):
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=fo.subscriber_main,
                        args=(k, "hub", ports[node_of[k]], first, per[k], sample_every,
                              shared, tx), daemon=True)
        p.start()
        subs.append((p, rx))
        first += per[k]
    rx_pub, tx_pub = ctx.Pipe(duplex=False)
    window = args.window or max(100_000, 40 * subscribers)
    pub = ctx.Process(target=fo.publisher_main,
                      args=("hub", ports[0], subscribers, rate, window, procs, shared, tx_pub),
                      daemon=True)
    label = "flat" if rate is None else int(rate)
    result: dict[str, Any] = {"setup": setup, "workload": "fan-out", "subscribers": subscribers,
                              "rate": label, "nodes": len(ports)}

    def received(node: int | None = None) -> int:
        return sum(shared[fo.DELIV + k] for k in range(procs)
                   if node is None or node_of[k] == node)

    try:
        t_conn = time.monotonic()
        wait_for(lambda: sum(shared[fo.CONN + k] + shared[fo.ERR + k] for k in range(procs))
                 >= subscribers, 300, "subscribers did not connect")
        result["connect_s"] = time.monotonic() - t_conn
        if errors := sum(shared[fo.ERR + k] for k in range(procs)):
            result["connect_errors"] = errors
        pub.start()
        wait_for(lambda: shared[fo.PUB_READY] or shared[fo.PUB_ERR], 60, "publisher not ready")
        if shared[fo.PUB_ERR]:
            raise RuntimeError(f"publisher failed: {rx_pub.recv()}")
        win = Window(cluster, [p.pid for p, _ in subs] + [pub.pid])
        shared[fo.PHASE] = fo.PHASE_RUN
        time.sleep(args.warmup)
        d0 = [received(i) for i in range(len(ports))]
        s0 = shared[fo.SENT]
        win.start()
        shared[fo.REC] = 1
        profiles = start_profiles(cluster, args, f"fanout-{setup}-{subscribers}-{label}")
        time.sleep(args.duration)
        shared[fo.REC] = 0
        d1 = [received(i) for i in range(len(ports))]
        s1 = shared[fo.SENT]
        win.stop()
        shared[fo.PHASE] = fo.PHASE_STOP
        finish_profiles(profiles)
        # drain: until every published message reached every subscriber, or no progress
        last, last_t = -1, time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if shared[fo.ACKED] < shared[fo.SENT] and time.monotonic() - last_t < 10:
                continue
            got = received()
            if got >= (shared[fo.SENT] - shared[fo.REFUSED]) * subscribers:
                break
            if got != last:
                last, last_t = got, time.monotonic()
            elif time.monotonic() - last_t > 2:
                break
        rss = {name: measure.memory_kb(pid).get("VmHWM", 0) / 1024
               for name, pid in cluster.pids.items()}
        shared[fo.PHASE] = fo.PHASE_EXIT
        lat_all, lat_remote = array("q"), array("q")
        closed = 0
        sub_errors: list[str] = []
        for k, (_, rx) in enumerate(subs):
            if rx.poll(30):
                lat = array("q")
                lat.frombytes(rx.recv_bytes())
                lat_all.extend(lat)
                if node_of[k] != 0:
                    lat_remote.extend(lat)
                info = rx.recv()
                closed += info["closed"]
                sub_errors += info["errors"]
        pub_info = rx_pub.recv() if rx_pub.poll(30) else {}
        deliveries = sum(d1) - sum(d0)
        sent = pub_info.get("sent", shared[fo.SENT])
        expected = (sent - shared[fo.REFUSED]) * subscribers
        remote = measure.percentiles(lat_remote)
        result.update({
            "deliveries_s": deliveries / win.wall,
            "messages_s": (s1 - s0) / win.wall,
            **measure.percentiles(lat_all),
            "p50_ms_other_node": remote["p50_ms"], "p99_ms_other_node": remote["p99_ms"],
            "deliveries_s_per_node": [(b - a) / win.wall for a, b in zip(d0, d1, strict=True)],
            "sent": sent, "refused": shared[fo.REFUSED], "lost": expected - received(),
            "loss_pct": 100.0 * (expected - received()) / expected if expected else 0.0,
            **win.report(deliveries, "delivery"),
            "redis_us_per_message": 1e6 * win.server.used[cluster.redis.pid] / (s1 - s0)
            if cluster.redis is not None and s1 > s0 else float("nan"),
            "xread_per_message": win.calls.get("xread", 0) / (s1 - s0)
            if win.calls and s1 > s0 else float("nan"),
            "peak_rss_mb": rss, "closed_conns": closed,
        })
        if pub_info.get("refusals"):
            result["refusal_sample"] = pub_info["refusals"][0][:200]
        if sub_errors:
            result["sub_error_sample"] = sub_errors[0][:200]
        return result
    finally:
        shared[fo.PHASE] = fo.PHASE_EXIT
        for p, _ in subs:
            p.join(10)
            if p.is_alive():
                p.kill()
        if pub.pid is not None:
            pub.join(10)
            if pub.is_alive():
                pub.kill()


# -- durable changes -----------------------------------------------------------------------


def durable_case(setup: str, cluster: targets.Cluster, args: argparse.Namespace
                 ) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    shared = ctx.RawArray("q", 264)
    ports = cluster.ports
    n = args.clients
    nproc = max(len(ports), min(args.procs, n))
    node_of = [k % len(ports) for k in range(nproc)]
    procs = []
    first = 0
    for k in range(nproc):
        count = n // nproc + (1 if k < n % nproc else 0)
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=run_durable.ws_main,
                        args=(k, "hub", ports[node_of[k]], first, count, args.inflight,
                              shared, tx),
                        daemon=True)
        p.start()
        procs.append((p, rx))
        first += count

    def acks(node: int | None = None) -> int:
        return sum(shared[run_durable.ACKS + k] for k in range(nproc)
                   if node is None or node_of[k] == node)

    try:
        wait_for(lambda: all(shared[run_durable.READY + k] for k in range(nproc)), 120,
                 "clients not ready")
        win = Window(cluster, [p.pid for p, _ in procs])
        shared[run_durable.PHASE] = run_durable.RUN
        time.sleep(args.warmup)
        a0 = [acks(i) for i in range(len(ports))]
        win.start()
        shared[3] = 1  # the clients' "recording" flag (run_durable's layout)
        profiles = start_profiles(cluster, args, f"durable-{setup}")
        time.sleep(args.duration)
        shared[3] = 0
        a1 = [acks(i) for i in range(len(ports))]
        win.stop()
        time.sleep(0.05)
        shared[run_durable.PHASE] = run_durable.STOP
        finish_profiles(profiles)
        lat = array("q")
        samples: list[str] = []
        for _, rx in procs:
            if rx.poll(30):
                lat.frombytes(rx.recv_bytes())
                samples += rx.recv().get("refusals", [])
        done = sum(a1) - sum(a0)
        out = {"setup": setup, "workload": "durable", "clients": n, "nodes": len(ports),
               "inflight": args.inflight,
               "per_s": done / win.wall, **measure.percentiles(lat),
               "per_s_per_node": [(b - a) / win.wall for a, b in zip(a0, a1, strict=True)],
               "refused": sum(shared[run_durable.REFUSED + k] for k in range(nproc)),
               "failed_conns": sum(shared[run_durable.FAILED + k] for k in range(nproc)),
               **win.report(done, "op")}
        if samples:
            out["sample"] = samples[0]
        return out
    finally:
        shared[run_durable.PHASE] = run_durable.STOP
        for p, _ in procs:
            p.join(15)
            if p.is_alive():
                p.kill()


# -- tables --------------------------------------------------------------------------------

FANOUT_COLUMNS = [
    ("setup", "setup"), ("subscribers", "S"), ("rate", "offered/s"),
    ("deliveries_s", "deliveries/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
    ("p99_ms_other_node", "p99 ms, other node"), ("loss_pct", "loss %"),
    ("node0_cpu_pct", "node0 CPU %"), ("node1_cpu_pct", "node1 CPU %"),
    ("redis_cpu_pct", "redis CPU %"), ("node0_us_per_delivery", "node0 µs/delivery"),
    ("node1_us_per_delivery", "node1 µs/delivery"),
    ("redis_us_per_delivery", "redis µs/delivery"), ("redis_us_per_message", "redis µs/msg"),
    ("xread_per_message", "XREAD/msg"),
    ("server_us_per_delivery", "all servers µs/delivery"), ("gen_cpu_pct", "gen CPU %"),
    ("core0_busy_pct", "core 0 busy %"), ("core1_busy_pct", "core 1 busy %"),
    ("bound", "bound"), ("vs_sqlite", "× sqlite"), ("vs_redis1", "× redis1"),
    ("cpu_vs_sqlite", "µs ÷ sqlite µs"), ("machine_busy_before_pct", "machine busy before %")]

DURABLE_COLUMNS = [
    ("setup", "setup"), ("clients", "clients"), ("inflight", "in flight each"),
    ("per_s", "acknowledged/s"),
    ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("refused", "refused"),
    ("node0_cpu_pct", "node0 CPU %"), ("node1_cpu_pct", "node1 CPU %"),
    ("redis_cpu_pct", "redis CPU %"), ("node0_us_per_op", "node0 µs/op"),
    ("node1_us_per_op", "node1 µs/op"), ("redis_us_per_op", "redis µs/op"),
    ("xread_per_op", "XREAD/op"),
    ("server_us_per_op", "all servers µs/op"), ("gen_cpu_pct", "gen CPU %"),
    ("core0_busy_pct", "core 0 busy %"), ("core1_busy_pct", "core 1 busy %"),
    ("bound", "bound"), ("vs_sqlite", "× sqlite"), ("vs_redis1", "× redis1"),
    ("cpu_vs_sqlite", "µs ÷ sqlite µs"), ("machine_busy_before_pct", "machine busy before %")]


def case_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["workload"], r.get("subscribers"), r.get("rate"), r.get("clients"))


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Throughput and total server CPU per unit against sqlite's (and redis1's) in the
    same case of the same run."""
    for r in rows:
        rate_key = "deliveries_s" if r["workload"] == "fan-out" else "per_s"
        cpu_key = "server_us_per_delivery" if r["workload"] == "fan-out" \
            else "server_us_per_op"
        for other, key in (("sqlite", "vs_sqlite"), ("redis1", "vs_redis1")):
            ref = [x for x in rows if case_key(x) == case_key(r) and x["setup"] == other
                   and x.get(rate_key)]
            if not ref or r["setup"] == other or not r.get(rate_key):
                continue
            r[key] = r[rate_key] / ref[0][rate_key]
            if other == "sqlite":
                r["cpu_vs_sqlite"] = r[cpu_key] / ref[0][cpu_key]


def median_durable(runs: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: r.get("per_s", 0))
    chosen = dict(runs[len(runs) // 2])
    if len(runs) > 1:
        chosen["runs"] = len(runs)
        chosen["per_s_all"] = [round(r.get("per_s", 0)) for r in runs]
    return chosen


def show(res: dict[str, Any]) -> None:
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()},
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", default="sqlite,redis1,redis2",
                        help="comma list of sqlite and redisN (N nodes on one Redis)")
    parser.add_argument("--workload", default="fanout,durable", help="fanout, durable or both")
    parser.add_argument("--subscribers", default="1000", help="fan-out: comma list")
    parser.add_argument("--rate", default="10000,flat",
                        help="fan-out: offered deliveries/s, or flat; comma list")
    parser.add_argument("--clients", type=int, default=100, help="durable: clients")
    parser.add_argument("--inflight", type=int, default=1,
                        help="durable: requests in flight per client")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--procs", type=int, default=2,
                        help="client processes (at least one per node)")
    parser.add_argument("--window", type=int, default=0,
                        help="fan-out flat: outstanding deliveries (default max(100000, 40 S))")
    parser.add_argument("--sample-every", type=int, default=0,
                        help="latency on every k-th connection (default 1 fixed, 10 flat)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per case, setups interleaved; median kept")
    parser.add_argument("--appendfsync", default="everysec",
                        choices=("always", "everysec", "no"), help="redis-server's AOF fsync")
    parser.add_argument("--hub-settings", default="",
                        help="extra lines for every node's [hub] table")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy every node during each window, stacks into DIR")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each run, wait up to this many s for an idle machine")
    parser.add_argument("--record", action="store_true",
                        help="append the results to docs/benchmarks.md")
    args = parser.parse_args(argv)
    setups = args.setups.split(",")
    for s in setups:
        make_cluster(s, args)  # validates the name; starts and creates nothing
    targets.exit_on_sigterm()
    os.sched_setaffinity(0, {targets.CLIENT_CPU})
    targets.raise_fd_limit()

    cases: list[tuple[str, int, float | None]] = []
    if "fanout" in args.workload:
        cases += [("fanout", int(s), None if r == "flat" else float(r))
                  for s in args.subscribers.split(",") for r in args.rate.split(",")]
    if "durable" in args.workload:
        cases.append(("durable", args.clients, None))
    rows = []
    for workload, size, rate in cases:
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in setups}
        for _ in range(args.repeat):  # interleaved, so the machine's mood hits all alike
            for setup in setups:
                try:
                    with make_cluster(setup, args) as cluster:
                        try:
                            busy = measure.wait_quiet(args.quiet_wait)
                            res = fanout_case(setup, cluster, size, rate, args) \
                                if workload == "fanout" else durable_case(setup, cluster, args)
                            res["machine_busy_before_pct"] = busy
                        except Exception as exc:
                            res = {"error": f"{exc!r} {cluster.log()[-500:]}"}
                except RuntimeError as exc:  # a process did not start
                    res = {"error": repr(exc)[:800]}
                res.setdefault("setup", setup)
                res.setdefault("workload", "fan-out" if workload == "fanout" else "durable")
                if workload == "fanout":
                    res.setdefault("subscribers", size)
                    res.setdefault("rate", "flat" if rate is None else int(rate))
                else:
                    res.setdefault("clients", size)
                show(res)
                runs[setup].append(res)
        rows += [median_run(runs[s]) if workload == "fanout" else median_durable(runs[s])
                 for s in setups]
    add_ratios(rows)
    fan = [r for r in rows if r["workload"] == "fan-out"]
    dur = [r for r in rows if r["workload"] == "durable"]
    text = "\n\n".join(t for t in (
        "Fan-out (subscribers spread over the nodes, publisher on node0):\n\n"
        + measure.table(fan, FANOUT_COLUMNS) if fan else "",
        f"Durable CHANGE_ATTRIBUTE ({args.clients} clients split over the nodes, "
        f"{args.inflight} in flight each):\n\n" + measure.table(dur, DURABLE_COLUMNS)
        if dur else "")
        if t)
    print()
    print(text)
    if args.record:
        cmd = "python bench/run_cluster.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        notes = [f"- {r['setup']} {r['workload']}: {r.get('error', '')} "
                 f"{r.get('sample', r.get('refusal_sample', ''))}"[:400]
                 for r in rows if r.get("error") or r.get("sample")
                 or r.get("refusal_sample")]
        section = measure.header("Cluster", cmd) + "\n" + text + "\n\n" + "\n".join(notes)
        print("recorded raw rows in", measure.record(section, "cluster", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
