"""Lean load-generating clients: WebSocket framing by hand on asyncio protocols.

A Python client built on a full WebSocket library spends more CPU per received frame
than a fast server spends sending it, so the benchmark would measure the client. These
clients parse only frame headers on the hot path: a subscriber counts every delivery
and, on sampled connections, reads the publish timestamp out of the payload.

Client frames are masked with an all-zero key (valid per RFC 6455: the key is sent,
XOR with zero leaves the payload as is), which costs nothing to encode.

Three dialects: ``hub`` (our protocol: AUTHEN, then service 102 deliveries), ``ws``
(the minimal broadcast server: raw frames, no auth) and ``mqtt`` (mosquitto through its
websockets listener: MQTT 3.1.1 packets inside binary frames).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

MARK = b'"newValue":"'
MARK_LEN = len(MARK)
TS_DIGITS = 19
SMALL = 64  # payloads up to this size are control traffic (pings), not deliveries
PING_REPLY = b'{"service":1,"body":{}}'
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One final, masked (zero key) client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def hub_delivery_json(seq: int, value: str, old: str) -> bytes:
    """A topic message shaped like the hub's service 102 frame (for the baselines)."""
    return (b'{"service":102,"body":{"topic":"bench","seq":%d,"message":'
            b'{"attribute":"load","newValue":"%s","oldValue":"%s","userId":"bench_pub",'
            b'"projectId":25,"timestamp":%d,"callEnded":true}}}'
            % (seq, value.encode(), old.encode(), time.time_ns() // 1_000_000))


def stamp(counter: int) -> str:
    """A publish timestamp (CLOCK_MONOTONIC ns, shared by all processes) + a counter."""
    return f"{time.monotonic_ns():0{TS_DIGITS}d}.{counter}"


# -- MQTT 3.1.1, the few packets we need -------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _mstr(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def mqtt_connect(client_id: str, keepalive: int = 0) -> bytes:
    body = _mstr(b"MQTT") + bytes((4, 0x02)) + keepalive.to_bytes(2, "big") \
        + _mstr(client_id.encode())
    return b"\x10" + _varint(len(body)) + body


def mqtt_subscribe(topic: bytes, packet_id: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + _mstr(topic) + b"\x00"
    return b"\x82" + _varint(len(body)) + body


def mqtt_publish(topic: bytes, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    body = _mstr(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes((0x30 | (qos << 1),)) + _varint(len(body)) + body


def mqtt_packets(buf: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """Complete packets in ``buf`` as (type byte, body start, body end); bytes used."""
    out = []
    i, n = 0, len(buf)
    while i + 2 <= n:
        j, mult, length = i + 1, 1, 0
        while j < n:
            b = buf[j]
            length += (b & 0x7F) * mult
            mult *= 128
            j += 1
            if not b & 0x80:
                break
        else:
            break
        if j + length > n:
            break
        out.append((buf[i], j, j + length))
        i = j + length
    return out, i


# -- the connection ---------------------------------------------------------------------


class Stats:
    """Per-process counters the hot path bumps; copied to shared memory periodically."""

    def __init__(self) -> None:
        self.deliveries = 0
        self.recording = False
        self.latencies = array("q")  # ns
        self.closed = 0


class Conn(asyncio.Protocol):
    """A WebSocket client connection.

    Until ``fast`` is set, every message goes to ``inbox`` (handshakes, auth, replies).
    With ``fast`` set, text/binary messages are deliveries: counted into ``stats`` and,
    when ``sample`` is set, their timestamp read into ``stats.latencies``.
    ``on_message``, when set, replaces the inbox (request/reply clients).
    """

    def __init__(self, host: str, port: int, stats: Stats, mqtt: bool = False,
                 sample: bool = False) -> None:
        self.host, self.port = host, port
        self.stats = stats
        self.mqtt = mqtt
        self.sample = sample
        self.fast = False
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.mbuf = b""  # MQTT stream bytes not yet a whole packet
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.on_message: Callable[[bytes], None] | None = None
        self.closed = False

    # transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        proto = "Sec-WebSocket-Protocol: mqtt\r\n" if self.mqtt else ""
        self.transport.write(  # type: ignore[union-attr]
            f"GET / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{proto}\r\n".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.stats.closed += 1
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        self._wake()

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(data[:200].decode("latin-1")))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            if not self.opened.done():  # not given up on (timed out) meanwhile
                self.opened.set_result(None)
            data = data[end + 4:]
            if not data:
                return
        if self.fast:
            self._deliveries(data)
        else:
            self._messages(data)

    # the hot path: deliveries

    def _deliveries(self, data: bytes) -> None:
        now = time.monotonic_ns()
        n = len(data)
        i = 0
        count = 0
        record = self.sample and self.stats.recording
        lat = self.stats.latencies
        mqtt = self.mqtt
        while n - i >= 2:
            b1 = data[i + 1] & 0x7F
            if b1 < 126:
                s = i + 2
                e = s + b1
            elif b1 == 126:
                if n - i < 4:
                    break
                s = i + 4
                e = s + ((data[i + 2] << 8) | data[i + 3])
            else:
                if n - i < 10:
                    break
                s = i + 10
                e = s + int.from_bytes(data[i + 2:i + 10], "big")
            if e > n:
                break
            op = data[i] & 0x0F
            i = e
            if op > 2:
                self._control(op, data[s:e])
            elif mqtt:
                count += self._mqtt_deliveries(data[s:e], now, record)
            elif e - s > SMALL:
                count += 1
                if record:
                    p = data.find(MARK, s, e)
                    if p >= 0:
                        p += MARK_LEN
                        lat.append(now - int(data[p:p + TS_DIGITS]))
            else:
                self._small(data[s:e])
        if i < n:
            self.buf = data[i:]
        self.stats.deliveries += count

    def _mqtt_deliveries(self, payload: bytes, now: int, record: bool) -> int:
        if self.mbuf:
            payload = self.mbuf + payload
            self.mbuf = b""
        packets, used = mqtt_packets(payload)
        if used < len(payload):
            self.mbuf = payload[used:]
        count = 0
        for kind, s, e in packets:
            if kind & 0xF0 != 0x30:
                continue
            count += 1
            if record:
                p = payload.find(MARK, s, e)
                if p >= 0:
                    p += MARK_LEN
                    self.stats.latencies.append(now - int(payload[p:p + TS_DIGITS]))
        return count

    def _small(self, payload: bytes) -> None:
        if b'"service":1,' in payload or b'"service":1}' in payload:
            self.send(PING_REPLY)

    def _control(self, op: int, payload: bytes) -> None:
        if op == 9:  # ping
            self.transport.write(client_frame(payload, 0xA))  # type: ignore[union-attr]
        elif op == 8:
            if not self.closed:
                self.closed = True
                self.stats.closed += 1
            self.transport.close()  # type: ignore[union-attr]

    # the slow path: messages one by one

    def _messages(self, data: bytes) -> None:
        n = len(data)
        i = 0
        while n - i >= 2:
            b1 = data[i + 1] & 0x7F
            if b1 < 126:
                s = i + 2
            elif b1 == 126:
                s = i + 4
            else:
                s = i + 10
            if s > n:
                break
            length = b1 if b1 < 126 else int.from_bytes(data[i + 2:s], "big")
            e = s + length
            if e > n:
                break
            op = data[i] & 0x0F
            payload = data[s:e]
            i = e
            if op > 2:
                self._control(op, payload)
                continue
            if self.mqtt:
                if self.mbuf:
                    payload = self.mbuf + payload
                    self.mbuf = b""
                packets, used = mqtt_packets(payload)
                if used < len(payload):
                    self.mbuf = payload[used:]
                for kind, ps, pe in packets:
                    self._message(bytes((kind,)) + payload[ps:pe])
            elif len(payload) <= SMALL and (b'"service":1,' in payload
                                            or b'"service":1}' in payload):
                self.send(PING_REPLY)
            else:
                self._message(payload)
        if i < n:
            self.buf = data[i:]

    def _message(self, payload: bytes) -> None:
        if self.on_message is not None:
            self.on_message(payload)
            return
        self.inbox.append(payload)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # API

    def send(self, payload: bytes, opcode: int = 1) -> None:
        if not self.closed:
            self.transport.write(client_frame(payload, opcode))  # type: ignore[union-attr]

    def send_raw(self, frames: bytes) -> None:
        if not self.closed:
            self.transport.write(frames)  # type: ignore[union-attr]

    async def recv(self, timeout: float = 30.0) -> bytes:
        """Next message (for MQTT: the packet, first byte its type)."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            if self.closed:
                raise ConnectionError("connection closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message")
            self.waiter = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.waiter, left)
            self.waiter = None
        return self.inbox.popleft()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def open_conn(host: str, port: int, stats: Stats, *, mqtt: bool = False,
                    sample: bool = False, local_ip: str | None = None,
                    timeout: float = 30.0) -> Conn:
    """Open a TCP connection and complete the WebSocket handshake."""
    loop = asyncio.get_running_loop()
    sock = None
    if local_ip:
        # IP_BIND_ADDRESS_NO_PORT: pick the port at connect() time, per 4-tuple; a plain
        # bind(ip, 0) searches for a port free on every destination, which costs the
        # kernel milliseconds once thousands are taken
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((local_ip, 0))
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except BaseException:
            sock.close()
            raise
    _, conn = await asyncio.wait_for(loop.create_connection(
        lambda: Conn(host, port, stats, mqtt=mqtt, sample=sample),
        *((None, None) if sock else (host, port)), sock=sock), timeout)
    await asyncio.wait_for(conn.opened, timeout)
    return conn


async def hub_authen(conn: Conn, token: str, request_id: int = 1,
                     timeout: float = 30.0) -> dict[str, Any]:
    """AUTHEN; return the reply body (raises unless r = 0)."""
    conn.send(json.dumps({"service": 2, "body": {"accesstoken": token,
                                                 "requestId": request_id}}).encode())
    while True:
        msg = json.loads(await conn.recv(timeout))
        if msg.get("service") == 2:
            body = msg["body"]
            if body.get("r") != 0:
                raise ConnectionError(f"AUTHEN refused: {body}")
            return body


async def mqtt_hello(conn: Conn, client_id: str, subscribe: bytes | None = None,
                     timeout: float = 30.0) -> None:
    """CONNECT (+ SUBSCRIBE) and wait for CONNACK (+ SUBACK)."""
    conn.send(mqtt_connect(client_id), 2)
    pkt = await conn.recv(timeout)
    if pkt[0] != 0x20 or pkt[2] != 0:
        raise ConnectionError(f"CONNACK refused: {pkt!r}")
    if subscribe is not None:
        conn.send(mqtt_subscribe(subscribe), 2)
        pkt = await conn.recv(timeout)
        if pkt[0] != 0x90:
            raise ConnectionError(f"no SUBACK: {pkt!r}")
