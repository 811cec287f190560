"""Many lean hub clients in one process, for the soak scripts.

Framing comes from bench/wsload.py (a WebSocket library per connection would cost more
than the hub). Each client keeps its position (epoch, seq) on its group's topic: after
a reconnect it asks to resume from there and, when the hub cannot replay, re-reads the
topic with TOPIC_SNAPSHOT. Every gap, duplicate or refusal is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.wsload import IP_BIND_ADDRESS_NO_PORT, Conn, Stats
from tests.hubproc import HubProcess

GROUP = 10  # users per topic: each user's presence and note go to its group's topic
SOURCE_IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def raise_fd_limit() -> int:
    """Soft descriptor limit up to the hard one (the hub child inherits it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def summary(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (f"n={len(values)} p50={percentile(values, 50):.1f} "
            f"p99={percentile(values, 99):.1f} max={max(values):.1f} ms")


class SoakConn(Conn):
    """A wsload connection that says when it is lost."""

    on_lost: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()


async def open_soak_conn(port: int, local_ip: str, stats: Stats, timeout: float) -> SoakConn:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((local_ip, 0))
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda: SoakConn("127.0.0.1", port, stats), sock=sock), timeout)
    except BaseException:
        sock.close()
        raise
    await asyncio.wait_for(conn.opened, timeout)
    return conn  # type: ignore[return-value]


class Totals:
    """What every client adds to."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.gaps = 0
        self.duplicates = 0
        self.refused: list[Any] = []
        self.connect_errors = 0
        self.authens = 0
        self.resumed = 0
        self.resynced = 0
        self.snapshot_mismatches = 0
        self.ack_ms: list[float] = []
        self.delivery_ms: list[float] = []


class Client:
    def __init__(self, index: int, hub: HubProcess, totals: Totals) -> None:
        self.index = index
        self.user = f"soak_{index}"
        self.topic = f"soak_g{index // GROUP}"
        self.hub = hub
        self.totals = totals
        self.token = hub.client_token(self.user, subscribe=[self.topic],
                                      attributes=[("onlineStatus", self.topic),
                                                  ("note", self.topic)], ttl_s=86400)
        self.conn: SoakConn | None = None
        self.position: tuple[str, int] | None = None  # (epoch, seq) on self.topic
        self.resyncing = False
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.wanted = False  # should be connected (reconnect when lost)
        self.reconnect_window = 5.0
        self.reconnecting: asyncio.Task[None] | None = None
        self.last_recovered: bool | None = None
        self.replayed_up_to = 0  # messages up to this seq came as a replay (resume)

    # -- wire ------------------------------------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        frame = json.loads(payload)
        service, body = frame["service"], frame["body"]
        if service == 102:
            self._topic_message(body)
            return
        # Positions change here, before any later frame of the same read is looked at.
        if service == 2 and body.get("r") == 0:
            current = body["topics"][self.topic]
            if self.position is None:
                self.position = (current["epoch"], current["seq"])
                self.resyncing = False
            elif body.get("recovered", {}).get(self.topic, False):
                self.resyncing = False  # the replayed messages follow, from our position
                self.replayed_up_to = current["seq"]
            else:
                self.resyncing = True  # until the snapshot's reply
        elif service == 1001 and body.get("r") == 0 and body.get("topic") == self.topic:
            self.position = (body["epoch"], body["seq"])
            self.resyncing = False
        future = self.pending.pop(body.get("requestId"), None) if "requestId" in body \
            else None
        if future is not None and not future.done():
            future.set_result(body)

    def _topic_message(self, body: dict[str, Any]) -> None:
        if body["topic"] != self.topic or self.resyncing or self.position is None:
            return
        seq = body["seq"]
        expected = self.position[1] + 1
        if seq < expected:
            self.totals.duplicates += 1
        elif seq > expected:
            self.totals.gaps += 1
        self.position = (self.position[0], seq)
        value = body["message"].get("newValue")
        if seq > self.replayed_up_to and body["message"]["attribute"] == "note" and \
                isinstance(value, str) and value.startswith("t"):  # live, not a replay
            sent_ns = int(value[1:].split(".")[0])
            self.totals.delivery_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

    def _lost(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        self.pending.clear()
        if self.wanted and self.reconnecting is None:
            self.reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def request(self, service: int, body: dict[str, Any],
                      timeout: float = 30.0) -> dict[str, Any]:
        assert self.conn is not None
        self.next_id += 1
        rid = self.next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        self.conn.send(json.dumps({"service": service,
                                   "body": {**body, "requestId": rid}}).encode())
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(rid, None)

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self, timeout: float = 60.0) -> None:
        self.wanted = True
        conn = await open_soak_conn(self.hub.ws_port, SOURCE_IPS[self.index % len(SOURCE_IPS)],
                                    self.totals.stats, timeout)
        conn.on_message = self._on_message
        conn.on_lost = self._lost
        self.conn = conn
        body: dict[str, Any] = {"accesstoken": self.token}
        first = self.position is None
        if not first:
            assert self.position is not None
            epoch, seq = self.position
            body["resume"] = {self.topic: {"epoch": epoch, "seq": seq}}
        self.resyncing = True  # until the AUTHEN reply says (see _on_message)
        reply = await self.request(2, body, timeout)
        if reply.get("r") != 0:
            self.totals.refused.append(reply)
            raise ConnectionError(f"AUTHEN refused: {reply}")
        self.totals.authens += 1
        if first:
            return
        recovered = reply.get("recovered", {}).get(self.topic, False)
        self.last_recovered = recovered
        if recovered:
            self.totals.resumed += 1
            return
        snapshot = await self.request(1001, {"topic": self.topic}, timeout)
        if snapshot.get("r") != 0:
            self.totals.refused.append(snapshot)
            raise ConnectionError(f"snapshot refused: {snapshot}")
        members = {v["userId"] for v in snapshot["values"]
                   if v["attribute"] == "onlineStatus" and v["value"] == "online"}
        if self.user not in members:  # we are back: the snapshot must say so
            self.totals.snapshot_mismatches += 1
        self.totals.resynced += 1

    async def _reconnect(self) -> None:
        try:
            await asyncio.sleep(random.uniform(0, self.reconnect_window))
            delay = 0.5
            deadline = time.monotonic() + 180
            while self.wanted and time.monotonic() < deadline:
                try:
                    await self.connect()
                    return
                except (OSError, ConnectionError, TimeoutError):
                    self.totals.connect_errors += 1
                    if self.conn is not None:
                        self.conn.on_lost = None
                        self.conn.close()
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 5.0)
        finally:
            self.reconnecting = None

    async def change_note(self) -> None:
        """CHANGE_ATTRIBUTE note = t<monotonic ns>.<n>; the ack time is recorded."""
        started = time.monotonic_ns()
        reply = await self.request(103, {"attribute": "note",
                                         "value": f"t{started}.{self.next_id}"})
        if reply.get("r") != 0:
            self.totals.refused.append(reply)
        self.totals.ack_ms.append((time.monotonic_ns() - started) / 1e6)

    def close(self, abort: bool = False) -> None:
        """Leave for good (a close frame, or a dropped TCP connection with ``abort``)."""
        self.wanted = False
        if self.conn is None:
            return
        self.conn.on_lost = None
        if abort:
            self.conn.transport.abort()  # type: ignore[union-attr]
        else:
            self.conn.send(b"\x03\xe8", 8)  # close frame, 1000
            self.conn.close()

    def drop(self) -> None:
        """Lose the connection without a close frame; the client will come back."""
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.abort()

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed and not self.resyncing and \
            self.reconnecting is None


async def connect_all(clients: list[Client], concurrency: int = 400) -> float:
    """Connect every client, ``concurrency`` at a time; the seconds it took."""
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)

    async def one(client: Client) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    await client.connect()
                    return
                except (OSError, ConnectionError, TimeoutError):
                    client.totals.connect_errors += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise RuntimeError(f"{client.user} could not connect")

    await asyncio.gather(*(one(c) for c in clients))
    return time.monotonic() - started


# -- watching the hub -------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """RSS (MiB), open descriptors and threads of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return {"rss_mib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


def hub_metrics(hub: HubProcess, timeout: float = 10.0) -> dict[str, float]:
    text = httpx.get(hub.api_url + "/metrics", timeout=timeout).text
    out: dict[str, float] = {}
    for name in ("monitor_connections", "monitor_users_online", "monitor_event_loop_tasks",
                 "process_open_fds", "process_resident_memory_bytes",
                 "monitor_slow_consumers_dropped_total", "monitor_store_failures_total"):
        found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        out[name] = float(found.group(1)) if found else float("nan")
    return out


def online_users(hub: HubProcess) -> set[str]:
    """Every online user, through the REST API, page by page."""
    users: set[str] = set()
    with hub.rest() as rest:
        page = 1
        while True:
            body = rest.get("/v1/users", params={"page": page, "limit": 100}).json()
            users |= {u["userId"] for u in body["users"]}
            if page * 100 >= body["count"]:
                return users
            page += 1


class Probe:
    """While something happens: /healthz and a client's CHANGE_ATTRIBUTE every 100 ms."""

    def __init__(self, hub: HubProcess, client: Client) -> None:
        self.hub = hub
        self.client = client
        self.health_ms: list[float] = []
        self.change_ms: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                started = time.monotonic()
                try:
                    assert (await http.get(self.hub.api_url + "/healthz")).status_code == 200
                    self.health_ms.append((time.monotonic() - started) * 1000)
                    started = time.monotonic()
                    if self.client.connected:
                        reply = await self.client.request(103, {"attribute": "probe",
                                                                "value": started}, 10)
                        assert reply["r"] == 0, reply
                        self.change_ms.append((time.monotonic() - started) * 1000)
                except (httpx.HTTPError, AssertionError, ConnectionError, TimeoutError):
                    self.failures += 1
                await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
              .group(1)) / 2**20  # type: ignore[union-attr]
    return f"{cpu}, {os.cpu_count()} cores, {mem:.1f} GiB, Linux {os.uname().release}"


def commit() -> str:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return rev + ("+dirty" if dirty else "")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
