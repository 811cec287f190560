"""A hub that speaks the protocol but sends whatever text it is given.

The real hub refuses values with control characters; an older hub, another
implementation or a compromised one need not. The monitor must stay safe against any
of them, so its end-to-end tests also run against this one: it answers AUTHEN,
TOPIC_SNAPSHOT and PING like a hub, refuses every CHANGE_ATTRIBUTE with a message of
its choosing, and publishes topic messages on demand.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from monitor.protocol import Service, decode, encode

REVIEW_VALUE = "busy\x1b]0;TITLE\x1b\\\x1b]52;c;ZWNobyBwd25lZAo=\x1b\\\x1b[?1049l\x1b[2J"
"""The status value of the security review: it retitles the window, writes the
clipboard (``echo pwned``), leaves the alternate screen and clears it, when written raw."""
REVIEW_VISIBLE = r"busy\x1b]0;TITLE\x1b\\x1b]52;c;ZWNobyBwd25lZAo=\x1b\\x1b[?1049l\x1b[2J"
"""How the monitor shows it: every ESC as the four characters ``\\x1b``."""
RAW_MARKERS = (b"\x1b]0;TITLE", b"\x1b]52;", b"\x1b]0;NAME", b"\x1b]2;")
"""Bytes that must never reach the terminal from the hostile text."""


def value(user: str, attribute: str, val: Any, name: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """One TOPIC_SNAPSHOT value, set a minute ago."""
    item = {"userId": user, "attribute": attribute, "value": val,
            "timestamp": int((time.time() - 60) * 1000), **extra}
    if name is not None:
        item["displayName"] = name
    return item


class HostileHub:
    """A WebSocket hub on 127.0.0.1 serving fixed topics to any token."""

    def __init__(self, user_id: str, subscribe: Sequence[str],
                 values: Mapping[str, Sequence[Mapping[str, Any]]],
                 refusal: str = "refused") -> None:
        self.user_id = user_id
        self.subscribe = list(subscribe)
        self.values = {topic: list(items) for topic, items in values.items()}
        self.refusal = refusal
        self.seq = 1
        self.connections: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def ws_url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    async def start(self) -> HostileHub:
        self._server = await serve(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        """Send a SUBSCRIBE_FROM_SERVER message to every connection."""
        self.seq += 1
        frame = encode(Service.SUBSCRIBE_FROM_SERVER,
                       {"topic": topic, "seq": self.seq, "message": dict(message)})
        for ws in list(self.connections):
            try:
                await ws.send(frame)
            except ConnectionClosed:
                self.connections.discard(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        try:
            async for raw in ws:
                service, body = decode(raw)
                await self._answer(ws, service, body)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(ws)

    async def _answer(self, ws: ServerConnection, service: int, body: dict[str, Any]) -> None:
        request_id = body.get("requestId")
        ok = {"r": 0, "message": "SUCCESS", "requestId": request_id}
        if service == Service.AUTHEN:
            await ws.send(encode(service, {
                **ok, "userId": self.user_id, "projectId": 25, "ping_after_ms": 15000,
                "subscribe": self.subscribe, "attributes": [],
                "topics": {t: {"epoch": "e1", "seq": self.seq} for t in self.subscribe}}))
            self.connections.add(ws)
        elif service == Service.TOPIC_SNAPSHOT:
            topic = body.get("topic")
            await ws.send(encode(service, {**ok, "topic": topic, "epoch": "e1",
                                           "seq": self.seq,
                                           "values": self.values.get(str(topic), [])}))
        elif service == Service.PING:
            if "r" not in body:
                await ws.send(encode(service, ok))
        elif request_id is not None:
            await ws.send(encode(service, {"r": 23, "message": self.refusal,
                                           "requestId": request_id}))
