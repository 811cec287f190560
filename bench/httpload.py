"""A lean HTTP/1.1 keep-alive client for REST load: one request in flight per connection."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable


class HttpConn(asyncio.Protocol):
    """Sends ``next_request()`` each time the previous response is complete."""

    def __init__(self, next_request: Callable[[], bytes], statuses: dict[int, int],
                 latencies: array, running: Callable[[], bool]) -> None:
        self.next_request = next_request
        self.statuses = statuses
        self.latencies = latencies
        self.running = running
        self.buf = b""
        self.need = -1  # body bytes still expected, -1: reading the head
        self.status = 0
        self.sent_at = 0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self) -> None:
        self.sent_at = time.monotonic_ns()
        self.transport.write(self.next_request())  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].lower()
                self.status = int(head[9:12])
                p = head.find(b"content-length:")
                self.need = int(head[p + 15:head.find(b"\r\n", p) if head.find(
                    b"\r\n", p) > 0 else None]) if p >= 0 else 0
                buf = buf[end + 4:]
            if len(buf) < self.need:
                break
            buf = buf[self.need:]
            self.need = -1
            self.statuses[self.status] = self.statuses.get(self.status, 0) + 1
            now = time.monotonic_ns()
            self.latencies.append(now - self.sent_at)
            if self.running():
                self.sent_at = now
                self.transport.write(self.next_request())  # type: ignore[union-attr]
            elif not self.done.done():
                self.done.set_result(None)
        self.buf = buf
