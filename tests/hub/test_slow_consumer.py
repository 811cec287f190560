"""A client that stops reading is dropped (close code 4004) and counted; others carry on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time

from websockets.frames import Frame, Opcode

from tests.hub.conftest import HubFactory
from tests.hub.wire import CHANGE_ATTRIBUTE, SUBSCRIBE_FROM_SERVER, Wire, login
from tests.hubproc import HubProcess

CLOSE_SLOW_CONSUMER = 4004
BUFFER_LIMIT = 64 * 1024


class RawClient:
    """A WebSocket client on a bare socket with a tiny receive buffer, so that when it
    stops reading, the hub's side fills up quickly."""

    def __init__(self, hub: HubProcess, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", hub.ws_port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{hub.ws_port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the hub closed the TCP connection")
        return data

    def send(self, service: int, body: dict[str, object]) -> None:
        text = json.dumps({"service": service, "body": body}).encode()
        self.sock.sendall(Frame(Opcode.TEXT, text).serialize(mask=True))

    def frame(self) -> tuple[int, bytes]:
        """The next (opcode, payload) from the hub (never masked)."""
        while True:
            size: int | None = None
            if len(self.buffer) >= 2:
                opcode, short, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
                if short < 126:
                    size = short
                elif short == 126 and len(self.buffer) >= 4:
                    size, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif short == 127 and len(self.buffer) >= 10:
                    size, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
                if size is not None and len(self.buffer) >= offset + size:
                    payload = self.buffer[offset:offset + size]
                    self.buffer = self.buffer[offset + size:]
                    return opcode, payload
            self.buffer += self._recv()

    def close_code(self) -> tuple[int, int]:
        """Read everything until the close frame: (its code, text frames before it)."""
        texts = 0
        while True:
            opcode, payload = self.frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], texts
            texts += 1


def _dropped(hub: HubProcess) -> float:
    with HubProcess.rest(hub) as rest:
        text = rest.get("/metrics").text
    found = re.search(r"^monitor_slow_consumers_dropped_total (\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


async def test_slow_consumer_is_dropped_and_counted(make_hub: HubFactory) -> None:
    hub = make_hub(send_buffer_limit=BUFFER_LIMIT, offline_grace_ms=0)
    topic = "slow_t"
    raw = RawClient(hub)
    raw.send(2, {"accesstoken": hub.client_token("slow_raw", subscribe=[topic]),
                 "requestId": 1})
    opcode, payload = raw.frame()
    assert opcode == 0x1 and json.loads(payload)["body"]["r"] == 0
    # From here on the raw client reads nothing.

    watcher = await login(hub, hub.client_token("slow_w", subscribe=[topic]))
    publisher = await login(hub, hub.client_token("slow_pub", attributes=[("big", topic)]))
    received: list[int] = []

    async def drain(wire: Wire) -> None:
        while True:
            frame = await wire.recv(timeout=30)
            if frame["service"] == SUBSCRIBE_FROM_SERVER:
                received.append(frame["body"]["seq"])

    reader = asyncio.create_task(drain(watcher))
    filler = "x" * 1000
    sent = 0
    deadline = time.monotonic() + 20
    while _dropped(hub) == 0:
        assert time.monotonic() < deadline, f"not dropped after {sent} messages"
        first = publisher.next_request + 1
        for _ in range(200):
            sent += 1
            await publisher.send(CHANGE_ATTRIBUTE, {"attribute": "big",
                                                    "value": f"{sent}{filler}",
                                                    "requestId": publisher.request_id()})
        last = publisher.next_request
        for rid in range(first, last + 1):
            reply = await publisher.until(lambda f, rid=rid: f["body"].get("requestId") == rid)
            assert reply["body"]["r"] == 0
    assert _dropped(hub) == 1

    # The slow client finds the close frame behind what the hub had already written.
    code, texts = await asyncio.to_thread(raw.close_code)
    assert code == CLOSE_SLOW_CONSUMER
    assert 0 < texts <= sent  # what was written before the drop, then the close frame
    raw.sock.close()

    # The watcher kept up and got every message, in order.
    start = watcher.authen["topics"][topic]["seq"]
    deadline = time.monotonic() + 10
    while len(received) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    reader.cancel()
    assert received == list(range(start + 1, start + sent + 1))
    with hub.rest() as rest:
        users = rest.get("/v1/users").json()
        assert {u["userId"] for u in users["users"]} == {"slow_w", "slow_pub"}
    assert (await publisher.change("big", "done"))["r"] == 0
    await publisher.close()
    await watcher.close()


async def _online(hub: HubProcess, user: str) -> str:
    with hub.rest() as rest:
        values = rest.get(f"/v1/users/{user}").json()["attributes"]
    return next(a.get("value") for a in values if a["attribute"] == "onlineStatus")


async def _wait_offline(hub: HubProcess, user: str, timeout: float) -> float:
    started = time.monotonic()
    while await _online(hub, user) != "offline":
        assert time.monotonic() - started < timeout, f"{user} still online after {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_consumer_that_never_reads_again_is_gone_in_bounded_time(
        make_hub: HubFactory) -> None:
    """Dropped while its buffers are full, it never answers the close: the hub must not
    wait for it forever (the user goes offline, the connection is released)."""
    hub = make_hub(send_buffer_limit=BUFFER_LIMIT, offline_grace_ms=0)
    topic = "stuck_t"
    raw = RawClient(hub)
    raw.send(2, {"accesstoken": hub.client_token("stuck_raw", subscribe=[topic]),
                 "requestId": 1})
    assert json.loads(raw.frame()[1])["body"]["r"] == 0
    publisher = await login(hub, hub.client_token("stuck_pub", attributes=[("big", topic)]))
    filler = "y" * 1000
    sent = 0
    while _dropped(hub) == 0:
        assert sent < 20_000, "never dropped"
        for _ in range(200):
            sent += 1
            await publisher.send(CHANGE_ATTRIBUTE, {"attribute": "big",
                                                    "value": f"{sent}{filler}"})
        await publisher.change("big", "sync")
    waited = await _wait_offline(hub, "stuck_raw", timeout=10)
    assert waited < 7, waited
    with hub.rest() as rest:
        text = rest.get("/metrics").text
    assert re.search(r"^monitor_connections 1\.0$", text, re.MULTILINE), text
    raw.sock.close()
    await publisher.close()


async def test_a_dead_connection_counts_as_gone_once_the_ping_timeout_passes(
        make_hub: HubFactory) -> None:
    """A client that neither sends nor reads (a dead link): offline shortly after
    ping_after_ms + ping_timeout_extra_ms, not after a further close handshake wait."""
    hub = make_hub(ping_after_ms=400, ping_timeout_extra_ms=400, offline_grace_ms=0)
    watcher = await login(hub, hub.client_token("dead_w", subscribe=["dead_online"]))
    raw = RawClient(hub)
    raw.send(2, {"accesstoken": hub.client_token(
        "dead_raw", attributes=[("onlineStatus", "dead_online")]), "requestId": 1})
    assert json.loads(raw.frame()[1])["body"]["r"] == 0
    authenticated = time.monotonic()
    assert (await watcher.message("dead_online"))["message"]["newValue"] == "online"
    # The watcher answers the hub's PINGs; the raw client does nothing at all.
    while True:
        frame = await watcher.recv(timeout=5)
        if frame["service"] == 1:
            await watcher.send(1, {})
            continue
        assert frame["service"] == SUBSCRIBE_FROM_SERVER, frame
        break
    gone = time.monotonic() - authenticated
    assert frame["body"]["message"]["userId"] == "dead_raw"
    assert frame["body"]["message"]["newValue"] == "offline"
    assert 0.75 <= gone < 3.0, gone
    raw.sock.close()
    await watcher.close()
