"""Durable changes: acknowledged CHANGE_ATTRIBUTE/s from C clients, and REST GET/PUT/s.

    python bench/run_durable.py --target all --clients 100
    python bench/run_durable.py --target hub,baseline --part rest --record

Part ``ws``: C connections (over ``--procs`` processes pinned to core 1), each keeping
``--window`` requests in flight and sending the next one when a reply arrives.
``hub``: CHANGE_ATTRIBUTE of attribute ``status`` (granted to a topic nobody
subscribes to), a new value each time, acknowledged once durable. ``baseline``: the
minimal websockets server in ``ack`` mode, the request/reply floor of our stack (it
stores nothing). ``mosquitto``: MQTT QoS 1 PUBLISH answered by PUBACK (no persistence).

Part ``rest``: ``--http-conns`` keep-alive connections, one request in flight each:
GET /v1/users/{id}, then PUT /v1/users/{id}/attributes, against the hub and against
``bench/baseline_rest_server.py`` (FastAPI on uvicorn answering fixed objects).
mosquitto has no REST API and is skipped there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from array import array
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import httpload
import measure
import targets
import wsload
from run_fanout import bound, client_setup, run_loop, wait_for

PHASE, READY, ACKS, REFUSED, FAILED = 0, 8, 72, 136, 200
SETUP, RUN, STOP = 0, 1, 2
TOPIC = "bench_durable"


# -- WebSocket clients ---------------------------------------------------------------------


def ws_main(k: int, kind: str, port: int, first: int, count: int, window: int,
            shared: Any, pipe: Any) -> None:
    client_setup()
    tokens = [targets.client_token(f"bench_dur_{i}", attributes=(("status", TOPIC),))
              for i in range(first, first + count)] if kind == "hub" else []
    run_loop(_ws_clients(k, kind, port, first, count, window, tokens, shared, pipe))


async def _ws_clients(k: int, kind: str, port: int, first: int, count: int, window: int,
                      tokens: list[str], shared: Any, pipe: Any) -> None:
    stats = wsload.Stats()
    latencies = array("q")
    refusals: list[str] = []
    counter = [0, 0]  # acks, refused
    conns = []
    mqtt = kind == "mosquitto"

    def client(c: wsload.Conn, i: int) -> None:
        sent: deque[int] = deque()
        seq = [0]

        def request() -> None:
            seq[0] += 1
            n = seq[0]
            if mqtt:
                c.send(wsload.mqtt_publish(TOPIC.encode(), b'{"v":%d}' % n, qos=1,
                                           packet_id=n % 65535 + 1), 2)
            else:
                c.send(b'{"service":103,"body":{"attribute":"status","value":"v%d",'
                       b'"requestId":%d}}' % (n, n))
            sent.append(time.monotonic_ns())

        def on_message(payload: bytes) -> None:
            if mqtt:
                if payload[0] != 0x40:
                    return
            elif b'"service":103' not in payload:
                return
            if not sent:
                return
            t = sent.popleft()
            if stats.recording:
                latencies.append(time.monotonic_ns() - t)
            counter[0] += 1
            if not mqtt and b'"r":0,' not in payload and b'"r":0}' not in payload:
                counter[1] += 1
                if len(refusals) < 3:
                    refusals.append(payload.decode(errors="replace")[:200])
            if shared[PHASE] == RUN:
                request()

        c.on_message = on_message
        c.start = lambda: [request() for _ in range(window)]  # type: ignore[attr-defined]

    sem = asyncio.Semaphore(100)

    async def one(j: int) -> None:
        i = first + j
        async with sem:
            try:
                c = await wsload.open_conn("127.0.0.1", port, stats, mqtt=mqtt)
                if kind == "hub":
                    await wsload.hub_authen(c, tokens[j])
                elif mqtt:
                    await wsload.mqtt_hello(c, f"bench_dur_{i}")
                client(c, i)
                conns.append(c)
            except Exception as exc:
                shared[FAILED + k] += 1
                refusals.append(repr(exc)[:200])

    await asyncio.gather(*(one(j) for j in range(count)))
    shared[READY + k] = 1
    while shared[PHASE] < RUN:
        await asyncio.sleep(0.002)
    for c in conns:
        c.start()
    while shared[PHASE] == RUN:
        stats.recording = bool(shared[3])
        shared[ACKS + k] = counter[0]
        shared[REFUSED + k] = counter[1]
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.5)
    for c in conns:
        c.close()
    pipe.send_bytes(latencies.tobytes())
    pipe.send({"refusals": refusals[:3], "closed": stats.closed})


# -- HTTP clients --------------------------------------------------------------------------


def http_main(k: int, port: int, method: str, conns: int, users: int, token: str,
              shared: Any, pipe: Any) -> None:
    client_setup()
    run_loop(_http_clients(k, port, method, conns, users, token, shared, pipe))


async def _http_clients(k: int, port: int, method: str, conns: int, users: int, token: str,
                        shared: Any, pipe: Any) -> None:
    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}
    latencies = array("q")
    counter = [k * 7919]

    def next_request() -> bytes:
        counter[0] += 1
        n = counter[0]
        user = f"bench_dur_{n % users}"
        if method == "GET":
            return (f"GET /v1/users/{user} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"X-STRINGEE-AUTH: {token}\r\n\r\n").encode()
        body = json.dumps([{"attribute": "status", "value": f"r{n}"}]).encode()
        return (f"PUT /v1/users/{user}/attributes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"X-STRINGEE-AUTH: {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    rec = array("q")

    def running() -> bool:
        return shared[PHASE] == RUN

    protos = []
    for _ in range(conns):
        _, p = await loop.create_connection(
            lambda: httpload.HttpConn(next_request, statuses, rec, running), "127.0.0.1", port)
        protos.append(p)
    shared[READY + k] = 1
    while shared[PHASE] < RUN:
        await asyncio.sleep(0.002)
    for p in protos:
        p.start()
    recording = False
    while shared[PHASE] == RUN:
        if shared[3] and not recording:
            recording = True
            del rec[:]
        if not shared[3] and recording:
            recording = False
            latencies.extend(rec)
        shared[ACKS + k] = sum(statuses.values())
        shared[REFUSED + k] = sum(v for s, v in statuses.items() if s >= 300)
        await asyncio.sleep(0.005)
    await asyncio.wait([p.done for p in protos], timeout=5)
    for p in protos:
        p.transport.close()
    pipe.send_bytes(latencies.tobytes())
    pipe.send({"statuses": statuses})


# -- one measurement -----------------------------------------------------------------------


def measure_phase(procs: list[Any], shared: Any, server_pid: int,
                  args: argparse.Namespace, prof_path: Path | None = None
                  ) -> dict[str, Any]:
    """Start the clients, measure the window, stop them, collect their reports."""
    n = len(procs)
    wait_for(lambda: all(shared[READY + k] for k in range(n)), 120, "clients not ready")
    gen = measure.CpuMeter([p.pid for p, _ in procs])
    cpu = measure.CpuMeter([server_pid])
    cores = measure.CoreMeter()

    def acks() -> int:
        return sum(shared[ACKS + k] for k in range(n))

    shared[PHASE] = RUN
    time.sleep(args.warmup)
    a0, t0 = acks(), time.monotonic()
    cpu.start()
    gen.start()
    cores.start()
    shared[3] = 1
    prof = measure.start_profile(server_pid, args.duration, prof_path) if prof_path else None
    time.sleep(args.duration)
    shared[3] = 0
    a1, t1 = acks(), time.monotonic()
    cpu_s, gen_s, busy = cpu.stop(), gen.stop(), cores.stop()
    time.sleep(0.05)
    shared[PHASE] = STOP
    if prof_path:
        measure.finish_profile(prof, prof_path)
    lat = array("q")
    infos = []
    for _, rx in procs:
        if rx.poll(30):
            lat.frombytes(rx.recv_bytes())
            infos.append(rx.recv())
    wall = t1 - t0
    out = {"per_s": (a1 - a0) / wall, **measure.percentiles(lat),
           "refused": sum(shared[REFUSED + k] for k in range(n)),
           "failed_conns": sum(shared[FAILED + k] for k in range(n)),
           "server_cpu_pct": 100.0 * cpu_s / wall,
           "server_us_per_op": 1e6 * cpu_s / (a1 - a0) if a1 > a0 else float("nan"),
           "gen_cpu_pct": 100.0 * gen_s / wall,
           "core1_busy_pct": busy.get(f"cpu{targets.CLIENT_CPU}", float("nan")),
           "infos": infos}
    out["bound"] = bound(out["server_cpu_pct"], out["gen_cpu_pct"], max(busy.values()))
    return out


def run_ws(kind: str, args: argparse.Namespace, target: targets.Target) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    shared = ctx.RawArray("q", 264)
    procs = []
    n = args.clients
    nproc = max(1, min(args.procs, n))
    first = 0
    for k in range(nproc):
        count = n // nproc + (1 if k < n % nproc else 0)
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=ws_main, args=(k, kind, target.port, first, count,
                                              args.window, shared, tx), daemon=True)
        p.start()
        procs.append((p, rx))
        first += count
    try:
        res = measure_phase(procs, shared, target.pid, args, Path(args.profile) /
                            f"durable-{kind}-ws.txt" if args.profile and kind != "mosquitto"
                            else None)
    finally:
        shared[PHASE] = STOP
        for p, _ in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
    infos = res.pop("infos")
    samples = [r for i in infos for r in i.get("refusals", [])]
    res.update({"target": kind, "op": "CHANGE_ATTRIBUTE" if kind != "mosquitto"
                else "PUBLISH qos1", "clients": n, "window": args.window})
    if samples:
        res["sample"] = samples[0]
    return res


def run_http(kind: str, method: str, args: argparse.Namespace, target: targets.Target
             ) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    shared = ctx.RawArray("q", 264)
    procs = []
    token = targets.rest_token()
    nproc = max(1, args.procs)
    for k in range(nproc):
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=http_main, args=(k, target.api_port, method,
                                                max(1, args.http_conns // nproc),
                                                args.clients, token, shared, tx), daemon=True)
        p.start()
        procs.append((p, rx))
    try:
        res = measure_phase(procs, shared, target.pid, args, Path(args.profile) /
                            f"durable-{kind}-{method}.txt" if args.profile else None)
    finally:
        shared[PHASE] = STOP
        for p, _ in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
    statuses: dict[int, int] = {}
    for info in res.pop("infos"):
        for s, v in info.get("statuses", {}).items():
            statuses[s] = statuses.get(s, 0) + v
    res.update({"target": kind if kind == "hub" else "baseline (FastAPI)",
                "op": f"REST {method}", "clients": args.http_conns, "window": 1,
                "sample": json.dumps(statuses)})
    return res


async def _create_users(port: int, n: int) -> None:
    """Authenticate then drop n users, so the REST API knows them (GET needs a user)."""
    stats = wsload.Stats()
    for i in range(n):
        c = await wsload.open_conn("127.0.0.1", port, stats)
        await wsload.hub_authen(c, targets.client_token(
            f"bench_dur_{i}", attributes=(("status", TOPIC),)))
        c.close()


COLUMNS = [("target", "target"), ("op", "operation"), ("clients", "clients"),
           ("window", "in flight each"), ("per_s", "acknowledged/s"), ("p50_ms", "p50 ms"),
           ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("refused", "refused"),
           ("server_cpu_pct", "server CPU %"), ("server_us_per_op", "server µs/op"),
           ("gen_cpu_pct", "gen CPU %"), ("core1_busy_pct", "core 1 busy %"),
           ("bound", "bound"), ("vs_baseline", "× baseline"), ("vs_mosquitto", "× mosquitto"),
           ("machine_busy_before_pct", "machine busy before %")]


# The hub's event log in each --history case: as shipped, none, and the worst case where
# every change of the benchmark's attribute also moves the user's checkpoint.
HISTORY_CASES = {"on": "", "off": "\nhistory_retention_days = 0",
                 "tracked": '\nstatus_attribute = "status"'}


def history_summary(rows: list[dict[str, Any]]) -> str:
    """Median acknowledged/s and µs/change of each hub case, and each against no log."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["target"].startswith("hub") and r["op"] == "CHANGE_ATTRIBUTE" and r.get("per_s"):
            by.setdefault(r["target"], []).append(r)
    if len(by) < 2:
        return ""

    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    off = by.get("hub (history off)")
    lines = ["", "", "| hub case | runs | median acknowledged/s | median server µs/op "
             "| vs history off |", "|---|---|---|---|---|"]
    for label, runs in by.items():
        rate = median([r["per_s"] for r in runs])
        cost = median([r["server_us_per_op"] for r in runs])
        versus = ""
        if off and label != "hub (history off)":
            base = median([r["per_s"] for r in off])
            versus = f"{rate / base - 1:+.1%}"
        lines.append(f"| {label} | {len(runs)} | {rate:,.0f} | {cost:.1f} | {versus} |")
    return "\n".join(lines)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        rest = r["op"].startswith("REST")
        for other, key in (("baseline", "vs_baseline"), ("mosquitto", "vs_mosquitto")):
            ref = [x for x in rows if x["target"].startswith(other) and x.get("per_s")
                   and x["op"].startswith("REST") == rest
                   and (not rest or x["op"] == r["op"])]
            if ref and not r["target"].startswith(other) and r.get("per_s"):
                r[key] = r["per_s"] / ref[0]["per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="all")
    parser.add_argument("--part", default="ws,rest", help="ws, rest or both")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--window", type=int, default=1, help="requests in flight per client")
    parser.add_argument("--http-conns", type=int, default=32)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--hub-settings", default="")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the server during each window, stacks into DIR")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each run, wait up to this many s for an idle machine")
    parser.add_argument("--history", default="on",
                        help="hub only, comma list: on (the event log, as shipped), off "
                             "(history_retention_days = 0), tracked (status_attribute = "
                             "the attribute changed: every change also moves a checkpoint); "
                             "each a hub of its own, in the same run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="hub only: run each --history case N times, interleaved")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    kinds = list(targets.TARGETS) if args.target == "all" else args.target.split(",")
    if "hub" in kinds and not targets.hub_available():
        kinds.remove("hub")
    parts = args.part.split(",")
    targets.exit_on_sigterm()
    os.sched_setaffinity(0, {targets.CLIENT_CPU})
    targets.raise_fd_limit()
    rows = []

    def show(res: dict[str, Any]) -> None:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()},
              flush=True)
        rows.append(res)

    for kind in kinds:
        if "ws" in parts:
            cases = [(h, HISTORY_CASES[h]) for h in args.history.split(",")] \
                if kind == "hub" else [("on", "")]
            for _ in range(args.repeat if kind == "hub" else 1):
                for case, extra in cases:
                    label = kind if case == "on" else f"{kind} (history {case})"
                    with targets.Target(kind, mode="ack",
                                        hub_settings=args.hub_settings + extra) as t:
                        try:
                            busy = measure.wait_quiet(args.quiet_wait)
                            show({**run_ws(kind, args, t), "target": label,
                                  "machine_busy_before_pct": busy})
                        except Exception as exc:
                            show({"target": label, "op": "CHANGE_ATTRIBUTE",
                                  "error": repr(exc), "sample": t.log()[-300:]})
        if "rest" in parts and kind != "mosquitto":
            mode = "rest" if kind == "baseline" else "ack"
            with targets.Target(kind, mode=mode, hub_settings=args.hub_settings) as t:
                if kind == "hub":
                    run_loop(_create_users(t.port, args.clients))
                for method in ("GET", "PUT"):
                    try:
                        busy = measure.wait_quiet(args.quiet_wait)
                        show({**run_http(kind, method, args, t),
                              "machine_busy_before_pct": busy})
                    except Exception as exc:
                        show({"target": kind, "op": f"REST {method}", "error": repr(exc),
                              "sample": t.log()[-300:]})
    add_ratios(rows)
    text = measure.table(rows, COLUMNS) + history_summary(rows)
    print()
    print(text)
    if args.record:
        cmd = "python bench/run_durable.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        notes = [f"- {r['target']} {r['op']}: {r.get('error', '')} {r.get('sample', '')}"
                 [:400] for r in rows if r.get("sample") or r.get("error")]
        section = measure.header("Durable changes and REST", cmd) + "\n" + text + "\n" \
            + "\n".join(notes)
        print("recorded raw rows in", measure.record(section, "durable", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
