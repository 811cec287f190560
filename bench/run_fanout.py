"""Fan-out benchmark: S subscribers on one topic, one publisher, publish→receipt latency.

    python bench/run_fanout.py --target all --subscribers 1000 --rate flat
    python bench/run_fanout.py --target hub,baseline --subscribers 100,1000,5000 \
        --rate 10000,flat --record

The server runs pinned to core 0; subscribers (``--procs`` processes) and the publisher
(one more process) are pinned to core 1 and report their own CPU, so a client-bound run
is visible. ``--rate R`` offers R deliveries/s (R/S messages/s, evenly spaced);
``--rate flat`` publishes as fast as the whole chain delivers, keeping at most
``--window`` deliveries outstanding (published × S − received, read from the
subscribers' shared counters). Each message carries its publish time
(CLOCK_MONOTONIC, shared by all processes); subscribers read it on every ``k``-th
connection (``--sample-every``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure
import targets
import wsload

# shared counters (one RawArray of int64)
PHASE, REC, SENT, REFUSED, ACKED, PUB_READY, PUB_ERR = range(7)
DELIV, CONN, CLOSED, ERR = 16, 80, 144, 208
PROCS_MAX = 64
PHASE_SETUP, PHASE_RUN, PHASE_STOP, PHASE_EXIT = 0, 1, 2, 3
TOPIC = "bench"
DIALECT = {"hub": "hub", "baseline": "ws", "mosquitto": "mqtt"}


def run_loop(coro: Any) -> Any:
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def client_setup() -> None:
    os.sched_setaffinity(0, {targets.CLIENT_CPU})
    targets.raise_fd_limit()


# -- subscribers ---------------------------------------------------------------------------


def subscriber_main(k: int, kind: str, port: int, first: int, count: int, sample_every: int,
                    shared: Any, pipe: Any) -> None:
    client_setup()
    tokens = [targets.client_token(f"bench_sub_{i}", subscribe=(TOPIC,))
              for i in range(first, first + count)] if kind == "hub" else []
    run_loop(_subscribers(k, kind, port, first, count, sample_every, tokens, shared, pipe))


async def _subscribers(k: int, kind: str, port: int, first: int, count: int,
                       sample_every: int, tokens: list[str], shared: Any, pipe: Any) -> None:
    stats = wsload.Stats()
    dialect = DIALECT[kind]
    conns: list[wsload.Conn] = []
    sem = asyncio.Semaphore(100)
    errors: list[str] = []

    async def one(j: int) -> None:
        i = first + j
        async with sem:
            try:
                c = await wsload.open_conn("127.0.0.1", port, stats, mqtt=dialect == "mqtt",
                                           sample=i % sample_every == 0)
                if dialect == "hub":
                    await wsload.hub_authen(c, tokens[j])
                elif dialect == "mqtt":
                    await wsload.mqtt_hello(c, f"bench_sub_{i}", TOPIC.encode())
                c.inbox.clear()
                c.fast = True
                conns.append(c)
                shared[CONN + k] = len(conns)
            except Exception as exc:
                shared[ERR + k] += 1
                errors.append(repr(exc))

    await asyncio.gather(*(one(j) for j in range(count)))
    while shared[PHASE] < PHASE_EXIT:
        shared[DELIV + k] = stats.deliveries
        shared[CLOSED + k] = stats.closed
        stats.recording = bool(shared[REC])
        await asyncio.sleep(0.002)
    shared[DELIV + k] = stats.deliveries
    for c in conns:
        c.close()
    pipe.send_bytes(stats.latencies.tobytes())
    pipe.send({"errors": errors[:5], "closed": stats.closed})
    await asyncio.sleep(0.1)


# -- the publisher -------------------------------------------------------------------------


def publisher_main(kind: str, port: int, subscribers: int, rate: float | None, window: int,
                   procs: int, shared: Any, pipe: Any) -> None:
    client_setup()
    token = targets.client_token("bench_pub", attributes=(("load", TOPIC),)) \
        if kind == "hub" else ""
    run_loop(_publisher(kind, port, subscribers, rate, window, procs, token, shared, pipe))


async def _publisher(kind: str, port: int, subscribers: int, rate: float | None, window: int,
                     procs: int, token: str, shared: Any, pipe: Any) -> None:
    stats = wsload.Stats()
    dialect = DIALECT[kind]
    refusals: list[bytes] = []
    try:
        conn = await wsload.open_conn("127.0.0.1", port, stats, mqtt=dialect == "mqtt")
        if dialect == "hub":
            await wsload.hub_authen(conn, token)
        elif dialect == "mqtt":
            await wsload.mqtt_hello(conn, "bench_pub")
    except Exception as exc:
        shared[PUB_ERR] = 1
        pipe.send({"error": repr(exc)})
        return

    def on_reply(payload: bytes) -> None:
        if b'"service":103' not in payload:
            return
        shared[ACKED] += 1
        if b'"r":0,' not in payload and b'"r":0}' not in payload:
            shared[REFUSED] += 1
            if len(refusals) < 3:
                refusals.append(payload)

    conn.on_message = on_reply
    shared[PUB_READY] = 1
    while shared[PHASE] < PHASE_RUN:
        await asyncio.sleep(0.005)

    topic = TOPIC.encode()
    old = ""
    n = 0

    def frames(count: int) -> bytes:
        nonlocal old, n
        out = []
        for _ in range(count):
            n += 1
            value = wsload.stamp(n)
            if dialect == "hub":
                out.append(wsload.client_frame(
                    b'{"service":103,"body":{"attribute":"load","value":"%s","requestId":%d}}'
                    % (value.encode(), n)))
            elif dialect == "ws":
                out.append(wsload.client_frame(wsload.hub_delivery_json(n, value, old)))
            else:
                out.append(wsload.client_frame(wsload.mqtt_publish(
                    topic, wsload.hub_delivery_json(n, value, old)), 2))
            old = value
        return b"".join(out)

    loop = asyncio.get_running_loop()
    if rate is not None:
        interval = subscribers / rate  # seconds between messages
        t0 = loop.time()
        while shared[PHASE] == PHASE_RUN and not conn.closed:
            due = int((loop.time() - t0) / interval) + 1
            if due > n:
                conn.send_raw(frames(due - n))
                shared[SENT] = n
            await asyncio.sleep(max(0.0, t0 + n * interval - loop.time()))
    else:
        delivered = range(DELIV, DELIV + procs)
        while shared[PHASE] == PHASE_RUN and not conn.closed:
            received = sum(shared[i] for i in delivered)
            room = (window - ((n - shared[REFUSED]) * subscribers - received)) // subscribers
            if room > 0:
                conn.send_raw(frames(min(room, 64)))
                shared[SENT] = n
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.0005)
    shared[SENT] = n
    if dialect == "hub":  # wait for the last acknowledgements
        deadline = time.monotonic() + 10
        while shared[ACKED] < n and time.monotonic() < deadline and not conn.closed:
            await asyncio.sleep(0.01)
    while shared[PHASE] < PHASE_EXIT:
        await asyncio.sleep(0.01)
    conn.close()
    pipe.send({"sent": n, "refusals": [r.decode(errors="replace") for r in refusals],
               "closed": conn.closed})
    await asyncio.sleep(0.1)


def bound(server_cpu_pct: float, gen_cpu_pct: float, busiest_core_pct: float) -> str:
    """Which side ran out of CPU: the server process, the load generators, both; or
    "contended" when neither did but a core was full (other jobs took the CPU)."""
    server = server_cpu_pct >= 90
    client = gen_cpu_pct >= 90
    if server or client:
        return "server+client" if server and client else "server" if server else "client"
    return "contended" if busiest_core_pct >= 90 else "-"


# -- one run -------------------------------------------------------------------------------


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def run_one(kind: str, subscribers: int, rate: float | None, args: argparse.Namespace,
            port: int, server_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    shared = ctx.RawArray("q", 256)
    procs = max(1, min(args.procs, subscribers, PROCS_MAX))
    sample_every = args.sample_every or (1 if rate is not None else 10)
    per = [subscribers // procs + (1 if k < subscribers % procs else 0) for k in range(procs)]
    subs = []
    first = 0
    for k in range(procs):
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=subscriber_main, args=(k, kind, port, first, per[k],
                                                      sample_every, shared, tx), daemon=True)
        p.start()
        subs.append((p, rx))
        first += per[k]
    rx_pub, tx_pub = ctx.Pipe(duplex=False)
    pub = ctx.Process(target=publisher_main, args=(kind, port, subscribers, rate,
                                                   args.window or max(100_000, 40 * subscribers),
                                                   procs, shared, tx_pub), daemon=True)
    result: dict[str, Any] = {"target": kind, "subscribers": subscribers,
                              "rate": "flat" if rate is None else int(rate)}
    try:
        t_conn = time.monotonic()
        wait_for(lambda: sum(shared[CONN + k] + shared[ERR + k] for k in range(procs))
                 >= subscribers, 300, "subscribers did not connect")
        result["connect_s"] = time.monotonic() - t_conn
        errors = sum(shared[ERR + k] for k in range(procs))
        if errors:
            result["connect_errors"] = errors
        pub.start()
        wait_for(lambda: shared[PUB_READY] or shared[PUB_ERR], 60, "publisher not ready")
        if shared[PUB_ERR]:
            raise RuntimeError(f"publisher failed: {rx_pub.recv()}")
        gen_pids = [p.pid for p, _ in subs] + [pub.pid]
        server_cpu = measure.CpuMeter([server_pid])
        gen_cpu = measure.CpuMeter(gen_pids)

        def received() -> int:
            return sum(shared[DELIV + k] for k in range(procs))

        shared[PHASE] = PHASE_RUN
        time.sleep(args.warmup)
        d0, s0, t0 = received(), shared[SENT], time.monotonic()
        server_cpu.start()
        gen_cpu.start()
        cores = measure.CoreMeter()
        cores.start()
        shared[REC] = 1
        prof_path = Path(args.profile) / f"fanout-{kind}-{subscribers}-{result['rate']}.txt" \
            if args.profile else None
        prof = measure.start_profile(server_pid, args.duration, prof_path) \
            if prof_path and kind != "mosquitto" else None
        time.sleep(args.duration)
        shared[REC] = 0
        d1, s1, t1 = received(), shared[SENT], time.monotonic()
        cpu_server = server_cpu.stop()
        cpu_gen = gen_cpu.stop()
        busy = cores.stop()
        shared[PHASE] = PHASE_STOP
        if prof_path:
            measure.finish_profile(prof, prof_path)
        # drain: until every published message reached every subscriber, or no progress
        last, last_t = -1, time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if kind == "hub" and shared[ACKED] < shared[SENT] \
                    and time.monotonic() - last_t < 10:
                continue
            expected = (shared[SENT] - shared[REFUSED]) * subscribers
            got = received()
            if got >= expected:
                break
            if got != last:
                last, last_t = got, time.monotonic()
            elif time.monotonic() - last_t > 2:
                break
        mem = measure.memory_kb(server_pid)
        shared[PHASE] = PHASE_EXIT
        lat = array("q")
        closed = 0
        sub_errors: list[str] = []
        for _, rx in subs:
            if rx.poll(30):
                lat.frombytes(rx.recv_bytes())
                info = rx.recv()
                closed += info["closed"]
                sub_errors += info["errors"]
        pub_info = rx_pub.recv() if rx_pub.poll(30) else {}
        wall = t1 - t0
        deliveries = d1 - d0
        sent = pub_info.get("sent", shared[SENT])
        expected = (sent - shared[REFUSED]) * subscribers
        total = received()
        result.update({
            "deliveries_s": deliveries / wall,
            "messages_s": (s1 - s0) / wall,
            **measure.percentiles(lat),
            "sent": sent,
            "refused": shared[REFUSED],
            "lost": expected - total,
            "loss_pct": 100.0 * (expected - total) / expected if expected else 0.0,
            "server_cpu_pct": 100.0 * cpu_server / wall,
            "server_us_per_delivery": 1e6 * cpu_server / deliveries if deliveries
            else float("nan"),
            "server_peak_rss_mb": mem.get("VmHWM", 0) / 1024,
            "gen_cpu_pct": 100.0 * cpu_gen / wall,
            "core0_busy_pct": busy.get(f"cpu{targets.SERVER_CPU}", float("nan")),
            "core1_busy_pct": busy.get(f"cpu{targets.CLIENT_CPU}", float("nan")),
            "closed_conns": closed,
        })
        result["bound"] = bound(result["server_cpu_pct"], result["gen_cpu_pct"],
                                max(result["core0_busy_pct"], result["core1_busy_pct"]))
        if pub_info.get("refusals"):
            result["refusal_sample"] = pub_info["refusals"][0][:200]
        if sub_errors:
            result["sub_error_sample"] = sub_errors[0][:200]
        return result
    finally:
        shared[PHASE] = PHASE_EXIT
        for p, _ in subs:
            p.join(10)
            if p.is_alive():
                p.kill()
        if pub.pid is not None:
            pub.join(10)
            if pub.is_alive():
                pub.kill()


COLUMNS = [("target", "target"), ("subscribers", "S"), ("rate", "offered/s"),
           ("deliveries_s", "deliveries/s"), ("messages_s", "msgs/s"),
           ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
           ("loss_pct", "loss %"), ("server_cpu_pct", "server CPU %"),
           ("server_us_per_delivery", "server µs/delivery"),
           ("server_peak_rss_mb", "server peak RSS MiB"), ("gen_cpu_pct", "gen CPU %"),
           ("core0_busy_pct", "core 0 busy %"), ("core1_busy_pct", "core 1 busy %"),
           ("bound", "bound"), ("vs_baseline", "× baseline"),
           ("vs_mosquitto", "× mosquitto"), ("p99_vs_baseline", "p99 ÷ baseline p99"),
           ("machine_busy_before_pct", "machine busy before %")]


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's deliveries/s against baseline's and mosquitto's in the same case."""
    for r in rows:
        case = (r["subscribers"], r["rate"])
        for other, key in (("baseline", "vs_baseline"), ("mosquitto", "vs_mosquitto")):
            ref = [x for x in rows if (x["subscribers"], x["rate"]) == case
                   and x["target"] == other and x.get("deliveries_s")]
            if ref and r["target"] != other and r.get("deliveries_s"):
                r[key] = r["deliveries_s"] / ref[0]["deliveries_s"]
                if other == "baseline" and r["rate"] != "flat":
                    r["p99_vs_baseline"] = r["p99_ms"] / ref[0]["p99_ms"]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median deliveries/s flat-out, the median p99 at a fixed rate
    (a real run, not a blend)."""
    fixed = any(r.get("rate") != "flat" for r in runs)
    runs = sorted(runs, key=lambda r: r.get("p99_ms", float("inf")) if fixed
                  else r.get("deliveries_s", 0))
    chosen = dict(runs[len(runs) // 2])
    if len(runs) > 1:
        chosen["runs"] = len(runs)
        chosen["deliveries_s_all"] = [round(r.get("deliveries_s", 0)) for r in runs]
        chosen["p99_ms_all"] = [round(r.get("p99_ms", 0), 2) for r in runs]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="all",
                        help="hub, baseline, mosquitto, a comma list, or all")
    parser.add_argument("--subscribers", default="1000", help="comma list, e.g. 100,1000")
    parser.add_argument("--rate", default="flat",
                        help="offered deliveries/s, or flat; comma list")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--window", type=int, default=0,
                        help="flat: outstanding deliveries (default max(100000, 40 S))")
    parser.add_argument("--sample-every", type=int, default=0,
                        help="latency on every k-th connection (default 1 fixed, 10 flat)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; median kept")
    parser.add_argument("--hub-settings", default="",
                        help="extra lines for the hub's [hub] table")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the server during each window, stacks into DIR")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each run, wait up to this many s for an idle machine")
    parser.add_argument("--record", action="store_true",
                        help="append the results to docs/benchmarks.md")
    args = parser.parse_args(argv)
    kinds = list(targets.TARGETS) if args.target == "all" else args.target.split(",")
    if "hub" in kinds and not targets.hub_available():
        print("no hub in this checkout yet: skipping target hub", file=sys.stderr)
        kinds.remove("hub")
    targets.exit_on_sigterm()
    os.sched_setaffinity(0, {targets.CLIENT_CPU})
    targets.raise_fd_limit()
    rows = []
    for s in (int(x) for x in args.subscribers.split(",")):
        for r in args.rate.split(","):
            rate = None if r == "flat" else float(r)
            runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
            for _ in range(args.repeat):  # interleaved, so the machine's mood hits all alike
                for kind in kinds:
                    with targets.Target(kind, hub_settings=args.hub_settings) as t:
                        try:
                            busy = measure.wait_quiet(args.quiet_wait)
                            res = run_one(kind, s, rate, args, t.port, t.pid)
                            res["machine_busy_before_pct"] = busy
                        except Exception as exc:
                            res = {"target": kind, "subscribers": s, "rate": r,
                                   "error": f"{exc!r} {t.log()[-500:]}"}
                    print({k: (round(v, 3) if isinstance(v, float) else v)
                           for k, v in res.items()}, flush=True)
                    runs[kind].append(res)
            rows += [median_run(runs[kind]) for kind in kinds]
    add_ratios(rows)
    text = measure.table(rows, COLUMNS)
    print()
    print(text)
    if args.record:
        cmd = "python bench/run_fanout.py " + " ".join(argv if argv is not None
                                                       else sys.argv[1:])
        notes = [f"- {r['target']} S={r['subscribers']} {r['rate']}: {r['error'][:300]}"
                 for r in rows if "error" in r]
        section = measure.header("Fan-out", cmd) + "\n" + text + "\n" + "\n".join(notes)
        print("recorded raw rows in", measure.record(section, "fanout", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
