"""A tiny client for the hub's WebSocket protocol, for the acceptance tests.

Frames read but not yet consumed stay in a backlog, in arrival order, so a test can
wait for one frame (a reply, a topic message) and still see everything that came
before or around it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.hubproc import HubProcess

PING = 1
AUTHEN = 2
SUBSCRIBE_FROM_SERVER = 102
CHANGE_ATTRIBUTE = 103
OTHER_DEVICE_AUTHEN = 104
TOPIC_SNAPSHOT = 1001

Frame = dict[str, Any]
Match = Callable[[Frame], bool]


class Closed(AssertionError):
    """The hub closed the connection while a frame was awaited."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed: code={code} reason={reason!r}")
        self.code = code
        self.reason = reason


class Wire:
    """One WebSocket connection to the hub, speaking ``{"service", "body"}`` frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.backlog: list[Frame] = []
        self.next_request = 0
        self.authen: Frame = {}  # the body of the AUTHEN reply, once authenticated

    # -- sending --------------------------------------------------------------------------

    async def send(self, service: int, body: dict[str, Any] | None = None) -> None:
        await self.ws.send(json.dumps({"service": service, "body": body or {}}))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    def request_id(self) -> int:
        self.next_request += 1
        return self.next_request

    async def request(self, service: int, body: dict[str, Any] | None = None,
                      timeout: float = 5.0) -> Frame:
        """Send a request with a fresh requestId; the reply's body."""
        rid = self.request_id()
        await self.send(service, {**(body or {}), "requestId": rid})
        frame = await self.until(lambda f: f["service"] == service
                                 and f["body"].get("requestId") == rid, timeout)
        return frame["body"]

    async def change(self, attribute: str, value: Any, timeout: float = 5.0) -> Frame:
        """CHANGE_ATTRIBUTE; the reply's body."""
        return await self.request(CHANGE_ATTRIBUTE, {"attribute": attribute, "value": value},
                                  timeout)

    async def snapshot(self, topic: str) -> Frame:
        return await self.request(TOPIC_SNAPSHOT, {"topic": topic})

    # -- receiving ------------------------------------------------------------------------

    async def _read(self, timeout: float) -> Frame:
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            close = exc.rcvd
            raise Closed(close.code if close else None, close.reason if close else "") \
                from None
        assert isinstance(text, str), f"hub sent a binary frame: {text!r}"
        frame = json.loads(text)
        assert isinstance(frame, dict) and set(frame) == {"service", "body"}, frame
        return frame

    async def recv(self, timeout: float = 5.0) -> Frame:
        """The next frame, backlog first."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._read(timeout)

    async def until(self, match: Match | int, timeout: float = 5.0) -> Frame:
        """The first frame that matches (a predicate or a service id); frames before it
        stay in the backlog."""
        test: Match = (lambda f: f["service"] == match) if isinstance(match, int) else match
        for i, frame in enumerate(self.backlog):
            if test(frame):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame in {timeout} s; "
                                   f"backlog: {self.backlog}")
            try:
                frame = await self._read(remaining)
            except TimeoutError:
                raise TimeoutError(f"no matching frame in {timeout} s; "
                                   f"backlog: {self.backlog}") from None
            if test(frame):
                return frame
            self.backlog.append(frame)

    async def message(self, topic: str | None = None, timeout: float = 5.0) -> Frame:
        """The body of the next topic message (of ``topic``)."""
        frame = await self.until(lambda f: f["service"] == SUBSCRIBE_FROM_SERVER and (
            topic is None or f["body"]["topic"] == topic), timeout)
        return frame["body"]

    async def messages(self, count: int, topic: str | None = None,
                       timeout: float = 5.0) -> list[Frame]:
        return [await self.message(topic, timeout) for _ in range(count)]

    async def quiet(self, seconds: float, services: Iterable[int] = (SUBSCRIBE_FROM_SERVER,),
                    ) -> None:
        """Assert that no frame of ``services`` arrives within ``seconds``."""
        wanted = set(services)
        unexpected = [f for f in self.backlog if f["service"] in wanted]
        assert not unexpected, f"unexpected frames: {unexpected}"
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = await self._read(remaining)
            except TimeoutError:
                return
            assert frame["service"] not in wanted, f"unexpected frame: {frame}"
            self.backlog.append(frame)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the hub closes the connection; the close code it sent."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the hub did not close the connection in {timeout} s")
            try:
                self.backlog.append(await self._read(remaining))
            except Closed as exc:
                return exc.code

    async def close(self) -> None:
        await self.ws.close()


# -- connecting -------------------------------------------------------------------------


async def open_wire(hub: HubProcess) -> Wire:
    """A connection that has not authenticated."""
    ws = await connect(hub.ws_url, proxy=None, compression=None, ping_interval=None,
                       max_size=None, open_timeout=5, close_timeout=2)
    return Wire(ws)


async def authen(wire: Wire, token: Any, **extra: Any) -> Frame:
    """Send AUTHEN; the reply's body (whatever its ``r``)."""
    return await wire.request(AUTHEN, {"accesstoken": token, **extra})


async def login(hub: HubProcess, token: str, **extra: Any) -> Wire:
    """Connect and authenticate; fail unless the hub answers ``r = 0``."""
    wire = await open_wire(hub)
    reply = await authen(wire, token, **extra)
    assert reply["r"] == 0, reply
    wire.authen = reply
    return wire


@asynccontextmanager
async def session(hub: HubProcess, token: str, **extra: Any) -> AsyncIterator[Wire]:
    """An authenticated connection, closed cleanly at the end."""
    wire = await login(hub, token, **extra)
    try:
        yield wire
    finally:
        await wire.close()


# -- hubs with their own settings -------------------------------------------------------


def hub_with(path: Path, **settings: int | str) -> HubProcess:
    """A started hub whose [hub] table has ``settings``; kill it when done."""
    path.mkdir(parents=True, exist_ok=True)
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    return HubProcess(path, extra_hub=extra).start()


def user_of(rest_body: dict[str, Any]) -> dict[str, Any]:
    """``{attribute: value}`` of a REST user object (None where unset)."""
    return {a["attribute"]: a.get("value") for a in rest_body["attributes"]}
