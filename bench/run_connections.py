"""Connection benchmark: open and authenticate N connections, hold them, measure memory.

    python bench/run_connections.py --target all --connections 1000,10000
    python bench/run_connections.py --target hub --connections 50000 --hold 40 --record

``hub``: WebSocket handshake + AUTHEN with a token of its own user per connection.
``baseline``: the minimal server in ``ack`` mode, handshake + one request/reply.
``mosquitto``: handshake + MQTT CONNECT/CONNACK.

Clients are spread over processes pinned to core 1 (at most ``--per-proc`` connections
each, under the descriptor limit) and over source addresses 127.0.0.2, .3, ... (20,000
each, under the ephemeral port range). Reported: wall time from "go" until every
connection is authenticated, opens/s, server CPU per open, RSS per idle connection
(server RSS after the opens and a settle pause, minus RSS before, over N), and how many
were still open after ``--hold`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure
import targets
import wsload
from run_fanout import bound, client_setup, run_loop, wait_for

# shared slots: a flag, then one per process each
GO, DONE, OK, FAIL, OPEN, SKIP = 0, 8, 72, 136, 200, 264
PER_IP = 20_000


def opener_main(k: int, kind: str, port: int, first: int, count: int, concurrency: int,
                procs: int, timeout: float, max_failures: int, shared: Any, pipe: Any) -> None:
    client_setup()
    tokens = [targets.client_token(f"bench_conn_{i}") for i in range(first, first + count)] \
        if kind == "hub" else []
    shared[DONE + k] = -1  # tokens ready
    run_loop(_opener(k, kind, port, first, count, concurrency, procs, timeout, max_failures,
                     tokens, shared, pipe))


async def _opener(k: int, kind: str, port: int, first: int, count: int, concurrency: int,
                  procs: int, timeout: float, max_failures: int, tokens: list[str],
                  shared: Any, pipe: Any) -> None:
    stats = wsload.Stats()
    conns: list[wsload.Conn] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(j: int) -> None:
        i = first + j
        async with sem:
            if sum(shared[FAIL + p] for p in range(procs)) >= max_failures:
                shared[SKIP + k] += 1  # the server stopped taking connections: stop asking
                return
            try:
                c = await wsload.open_conn("127.0.0.1", port, stats, mqtt=kind == "mosquitto",
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
                conns.append(c)
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
    while shared[GO] == 1:
        shared[OPEN + k] = sum(1 for c in conns if not c.closed)
        await asyncio.sleep(0.2)
    shared[OPEN + k] = sum(1 for c in conns if not c.closed)
    pipe.send({"took": took, "errors": errors})
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)


def run_one(kind: str, n: int, args: argparse.Namespace, target: targets.Target
            ) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    shared = ctx.RawArray("q", 328)
    procs = max(args.procs, -(-n // args.per_proc))
    per = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    workers = []
    first = 0
    for k in range(procs):
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=opener_main, args=(
            k, kind, target.port, first, per[k], args.concurrency, procs, args.conn_timeout,
            args.max_failures, shared, tx), daemon=True)
        p.start()
        workers.append((p, rx))
        first += per[k]
    result: dict[str, Any] = {"target": kind, "connections": n}
    try:
        wait_for(lambda: all(shared[DONE + k] == -1 for k in range(procs)), 300,
                 "openers not ready")
        time.sleep(1.0)
        before = measure.memory_kb(target.pid)["VmRSS"]
        cpu = measure.CpuMeter([target.pid])
        gen = measure.CpuMeter([p.pid for p, _ in workers])
        cores = measure.CoreMeter()
        cpu.start()
        gen.start()
        cores.start()
        prof_path = Path(args.profile) / f"connections-{kind}-{n}.txt" \
            if args.profile else None
        prof = measure.start_profile(target.pid, args.expect_s, prof_path) \
            if prof_path and kind != "mosquitto" else None
        t0 = time.monotonic()
        shared[GO] = 1
        wait_for(lambda: all(shared[DONE + k] == 1 for k in range(procs)), args.timeout,
                 "opening did not finish")
        took = time.monotonic() - t0
        cpu_s = cpu.stop()
        gen_s = gen.stop()
        busy = cores.stop()
        ok = sum(shared[OK + k] for k in range(procs))
        if prof_path:
            measure.finish_profile(prof, prof_path)
        time.sleep(args.settle)
        after = measure.memory_kb(target.pid)["VmRSS"]
        time.sleep(max(0.0, args.hold - args.settle))
        time.sleep(0.5)
        held = sum(shared[OPEN + k] for k in range(procs))
        end_mem = measure.memory_kb(target.pid)
        shared[GO] = 2
        infos = [rx.recv() if rx.poll(60) else {} for _, rx in workers]
        errors = [e for info in infos for e in info.get("errors", [])]
        result.update({
            "ok": ok, "failed": sum(shared[FAIL + k] for k in range(procs)),
            "not_tried": sum(shared[SKIP + k] for k in range(procs)),
            "open_s": took, "opens_s": ok / took,
            "server_cpu_us_per_open": 1e6 * cpu_s / ok if ok else float("nan"),
            "server_cpu_pct": 100.0 * cpu_s / took,
            "gen_cpu_pct": 100.0 * gen_s / took,
            "core1_busy_pct": busy.get(f"cpu{targets.CLIENT_CPU}", float("nan")),
            "bound": bound(100.0 * cpu_s / took, 100.0 * gen_s / took, max(busy.values())),
            "rss_before_mb": before / 1024, "rss_after_mb": after / 1024,
            "kb_per_conn": (after - before) / ok if ok else float("nan"),
            "held": held, "hold_s": args.hold,
            "rss_end_mb": end_mem["VmRSS"] / 1024, "peak_rss_mb": end_mem["VmHWM"] / 1024,
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
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the server while it accepts, stacks into DIR")
    parser.add_argument("--expect-s", type=float, default=3.0,
                        help="with --profile: seconds to sample")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each run, wait up to this many s for an idle machine")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
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
            with targets.Target(kind, mode="ack", hub_settings=args.hub_settings) as t:
                try:
                    busy = measure.wait_quiet(args.quiet_wait)
                    res = run_one(kind, n, args, t)
                    res["machine_busy_before_pct"] = busy
                except Exception as exc:
                    res = {"target": kind, "connections": n,
                           "error": f"{exc!r} {t.log()[-300:]}"}
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()},
                  flush=True)
            rows.append(res)
    add_ratios(rows)
    text = measure.table(rows, COLUMNS)
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
