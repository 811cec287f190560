"""Webhooks: how fast the hub delivers, and what an endpoint costs the durable rate.

    python bench/run_webhooks.py --events 30000 --seconds 5 --rounds 3

Part ``deliver``: ``--events`` changes are logged by a hub with no endpoint; the hub
stops, an endpoint is configured with its cursor at the start of the log, and the hub
starts again: the events delivered per second to a local receiver (a minimal asyncio
HTTP/1.1 server in its own process answering 204 on keep-alive connections), from the
hub's start to the last one received, and from the first received to the last.

Part ``durable``: acknowledged CHANGE_ATTRIBUTE/s from ``--clients`` WebSocket clients
(``--window`` requests in flight each) for ``--seconds``, on a hub without an endpoint,
then on the same data with one endpoint (the receiver up, the endpoint's backlog growing:
the hub changes faster than it delivers), alternately for ``--rounds``, in the same run;
and the events delivered per second meanwhile; and the changes per CPU second of the hub
process (all its threads, from /proc: Linux), less at the mercy of other work on the
machine than the rate.

The hub, the clients and the receiver share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop
from websockets.asyncio.client import connect

from monitor.config import new_webhook_secret
from monitor.hub.store.webhooks import SqliteDeliveryStore
from monitor.hub.webhooks import endpoint_id
from tests.hubproc import PROJECT_ID, HubProcess, free_port

TOPIC = "bench_webhooks"


# -- the receiver ----------------------------------------------------------------------


def receiver_main(port: int, count: Any, first: Any) -> None:
    async def serve() -> None:
        async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    await reader.readexactly(length)
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    with count.get_lock():
                        if count.value == 0:
                            first.value = time.monotonic()
                        count.value += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(conn, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())  # the receiver's own cost, on the same cores, kept small


# -- the clients -----------------------------------------------------------------------


def clients_main(url: str, tokens: list[str], window: int, seconds: float, events: int,
                 out: Any) -> None:
    async def one(token: str, quota: int) -> int:
        async with connect(url, compression=None, max_size=None) as ws:
            await ws.send(json.dumps({"service": 2, "body": {"accesstoken": token,
                                                             "requestId": 0}}))
            while json.loads(await ws.recv())["service"] != 2:
                pass
            acks = sent = 0
            deadline = time.monotonic() + seconds

            async def send() -> None:
                nonlocal sent
                sent += 1
                await ws.send(f'{{"service":103,"body":{{"attribute":"status",'
                              f'"value":"v{sent}","requestId":{sent}}}}}')

            for _ in range(min(window, quota) if quota else window):
                await send()
            while acks < sent:
                frame = json.loads(await ws.recv())
                if frame["service"] != 103:
                    continue
                acks += frame["body"]["r"] == 0
                if (not quota or sent < quota) and time.monotonic() < deadline:
                    await send()
            return acks

    async def run() -> int:
        quota = events // len(tokens) if events else 0
        return sum(await asyncio.gather(*(one(t, quota) for t in tokens)))

    out.value = asyncio.run(run())


def cpu_s(pid: int) -> float:
    """A process's CPU time (user + system, every thread) so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(hub: HubProcess, clients: int, window: int, seconds: float = 3600,
         events: int = 0) -> tuple[int, float, float]:
    """(acknowledged changes, seconds, the hub's CPU seconds meanwhile) from ``clients``
    clients in a process."""
    tokens = [hub.client_token(f"bench_wh_{i}", attributes=[("status", TOPIC)])
              for i in range(clients)]
    out = mp.Value("q", 0)
    proc = mp.Process(target=clients_main, args=(hub.ws_url, tokens, window, seconds,
                                                 events, out))
    assert hub.proc is not None
    started, cpu = time.monotonic(), cpu_s(hub.proc.pid)
    proc.start()
    proc.join()
    return int(out.value), time.monotonic() - started, cpu_s(hub.proc.pid) - cpu


def add_endpoint(hub: HubProcess, url: str, secret: str, max_in_flight: int) -> None:
    text = hub.config_path.read_text()
    marker = "\n[[projects]]\nid = 26"
    table = (f'\n[[projects.webhooks]]\nurl = "{url}"\nsecret = "{secret}"\n'
             f"max_in_flight = {max_in_flight}\n")
    hub.config_path.write_text(text.replace(marker, table + marker))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--part", default="deliver,durable")
    args = parser.parse_args(argv)
    parts = args.part.split(",")
    os.environ["MONITOR_LOG_LEVEL"] = "warning"  # the hubs' (their config says debug)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    count = mp.Value("q", 0)
    first = mp.Value("d", 0.0)  # time.monotonic() of the first request received
    receiver = mp.Process(target=receiver_main, args=(port, count, first), daemon=True)
    receiver.start()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "deliver" in parts:
            (Path(tmp) / "deliver").mkdir()
            hub = HubProcess(Path(tmp) / "deliver")
            hub.start()
            load(hub, args.clients, args.window, events=args.events)
            hub.stop()
            db = hub.data_dir / "hub.sqlite3"
            SqliteDeliveryStore(db).close()
            with sqlite3.connect(db) as con:
                con.execute("INSERT INTO webhook_cursors VALUES (?, ?, 0)",
                            (PROJECT_ID, endpoint_id(PROJECT_ID, url)))
                logged = con.execute("SELECT COUNT(*) FROM events WHERE project_id = ?",
                                     (PROJECT_ID,)).fetchone()[0]
            add_endpoint(hub, url, new_webhook_secret(), args.max_in_flight)
            count.value = 0
            started = time.monotonic()
            hub.start()
            while count.value < logged and time.monotonic() - started < 600:
                time.sleep(0.01)
            ended = time.monotonic()
            took, sending = ended - started, ended - first.value
            hub.kill()
            results["deliver"] = {"events": logged, "delivered": count.value,
                                  "seconds": round(took, 2),
                                  "per_s": round(count.value / took),
                                  "per_s_from_first": round(count.value / sending)}
            print(f"deliver: {count.value} of {logged} events in {took:.2f} s: "
                  f"{count.value / took:,.0f}/s from the hub's start, "
                  f"{count.value / sending:,.0f}/s from the first received "
                  f"(max_in_flight {args.max_in_flight})")
        if "durable" in parts:
            (Path(tmp) / "durable").mkdir()
            hub = HubProcess(Path(tmp) / "durable")
            plain = hub.config_path.read_text()
            add_endpoint(hub, url, new_webhook_secret(), args.max_in_flight)
            hooked = hub.config_path.read_text()
            rounds: list[dict[str, Any]] = []
            # Without and with, alternately: the machine's other work weighs on both alike.
            for n in range(args.rounds):
                row: dict[str, Any] = {}
                for name, text in (("without", plain), ("with", hooked)):
                    hub.config_path.write_text(text)
                    hub.start()
                    count.value = 0
                    acks, took, cpu = load(hub, args.clients, args.window,
                                           seconds=args.seconds)
                    row[name] = round(acks / took)
                    row[name + "_per_cpu_s"] = round(acks / cpu)
                    if name == "with":
                        row["delivered_per_s"] = round(count.value / took)
                    hub.stop()
                row["ratio"] = round(row["with"] / row["without"], 3)
                row["cpu_ratio"] = round(row["with_per_cpu_s"] / row["without_per_cpu_s"], 3)
                rounds.append(row)
                print(f"durable round {n + 1}: without {row['without']:,}/s, with one "
                      f"endpoint {row['with']:,}/s ({row['ratio']:.0%}), delivered meanwhile "
                      f"{row['delivered_per_s']:,}/s; per CPU second of the hub: "
                      f"{row['without_per_cpu_s']:,} and {row['with_per_cpu_s']:,} "
                      f"({row['cpu_ratio']:.0%})")
            results["durable"] = {"rounds": rounds}
            for key in ("ratio", "cpu_ratio"):
                ordered = sorted(r[key] for r in rounds)
                results["durable"]["median_" + key] = ordered[len(ordered) // 2]
            print(f"durable: with one endpoint, median {results['durable']['median_ratio']:.0%}"
                  f" of the rate without, {results['durable']['median_cpu_ratio']:.0%} of "
                  "the changes per CPU second of the hub")
    receiver.kill()
    print(json.dumps({"cpus": os.cpu_count(), **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
