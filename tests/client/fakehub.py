"""A small in-test hub speaking the spec's WebSocket protocol, with knobs to misbehave.

Not the real hub: just enough of it (AUTHEN with resume, CHANGE_ATTRIBUTE, topics with
epoch/seq and history, TOPIC_SNAPSHOT, PING both ways, OTHER_DEVICE_AUTHEN) to drive
the client's reconnect, resume, dedupe and gap logic deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from monitor.protocol import (
    BUILTIN_ATTRIBUTES,
    MESSAGES,
    Result,
    Service,
    decode,
    encode,
    is_attribute_name,
    reply,
)
from monitor.tokens import Grants, TokenError, mint_client_token, verify_client_token
from tests.hubproc import KEY_SECRET, KEY_SID, PROJECT_ID


def token(user_id: str, subscribe: tuple[str, ...] | list[str] = (),
          attributes: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
          ttl_s: int = 3600) -> str:
    """A client token of the fake hub's project."""
    return mint_client_token(KEY_SID, KEY_SECRET, user_id, subscribe=subscribe,
                             attributes=attributes, ttl_s=ttl_s)


@dataclass
class Conn:
    """One authenticated connection."""

    ws: ServerConnection
    user_id: str
    grants: Grants
    token: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    silent: bool = False
    hold_replies: bool = False
    frames: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    async def send(self, service: int, body: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send(encode(service, body))


@dataclass
class Topic:
    seq: int = 0
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    values: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class FakeHub:
    """Serve the protocol on 127.0.0.1; ``port`` stays the same across restarts."""

    def __init__(self, *, ping_after_ms: int = 15000) -> None:
        self.ping_after_ms = ping_after_ms
        self.port = 0
        self.epoch = "epoch-1"
        self.topics: dict[str, Topic] = {}
        self.values: dict[tuple[str, str], Any] = {}
        self.grants: dict[str, Grants] = {}
        self.conns: list[Conn] = []
        self.authens: list[dict[str, Any]] = []   # every AUTHEN request body
        self.frames: list[tuple[int, dict[str, Any]]] = []  # every frame after AUTHEN
        # knobs
        self.recover = True           # honour resume when history allows
        self.replay_overlap = 0       # also replay this many already-seen messages
        self.expired_tokens: set[str] = set()
        self.send_pings = False
        self._server: Server | None = None
        self._pinger: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> FakeHub:
        self._server = await serve(self._serve, "127.0.0.1", self.port, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.send_pings:
            self._pinger = asyncio.create_task(self._ping_loop())
        return self

    async def stop(self) -> None:
        """Close the listening socket and every connection (close code 1001)."""
        if self._pinger:
            self._pinger.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.conns.clear()

    async def restart(self, *, new_epoch: bool = False) -> None:
        """Stop and start on the same port; a new epoch forgets every topic's history."""
        await self.stop()
        if new_epoch:
            self.epoch = f"epoch-{int(self.epoch.split('-')[1]) + 1}"
            for topic in self.topics.values():
                topic.seq = 0
                topic.history.clear()
        await self.start()

    def drop_connections(self) -> None:
        """Abort every connection without a close frame (a network failure)."""
        for conn in self.conns:
            conn.ws.transport.abort()
        self.conns.clear()

    def conns_of(self, user_id: str) -> list[Conn]:
        return [c for c in self.conns if c.user_id == user_id]

    # -- publishing -------------------------------------------------------------------

    def topic(self, name: str) -> Topic:
        return self.topics.setdefault(name, Topic())

    async def publish(self, topic_name: str, user_id: str, attribute: str, value: Any, *,
                      lose: bool = False) -> dict[str, Any]:
        """Publish one attribute message; ``lose`` keeps it from live subscribers."""
        topic = self.topic(topic_name)
        old = topic.values.get((user_id, attribute), {}).get("value")
        topic.seq += 1
        now = int(time.time() * 1000)
        body = {"topic": topic_name, "seq": topic.seq,
                "message": {"attribute": attribute, "newValue": value, "oldValue": old,
                            "userId": user_id, "projectId": PROJECT_ID, "timestamp": now,
                            "callEnded": True}}
        topic.history.append(body)
        topic.values[(user_id, attribute)] = {"userId": user_id, "attribute": attribute,
                                              "value": value, "timestamp": now}
        if not lose:
            await self.send_topic(topic_name, body)
        return body

    async def send_topic(self, topic_name: str, body: dict[str, Any]) -> None:
        for conn in list(self.conns):
            if conn.grants.may_receive(topic_name) and not conn.silent:
                with contextlib.suppress(ConnectionClosed):
                    await conn.send(Service.SUBSCRIBE_FROM_SERVER, body)

    async def resend(self, topic_name: str, seq: int) -> None:
        """Send an already published message again (a duplicate)."""
        body = next(b for b in self.topic(topic_name).history if b["seq"] == seq)
        await self.send_topic(topic_name, body)

    async def send_all(self, service: int, body: dict[str, Any]) -> None:
        for conn in list(self.conns):
            await conn.send(service, body)

    # -- serving ----------------------------------------------------------------------

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_after_ms / 1000)
            for conn in list(self.conns):
                if not conn.silent:
                    with contextlib.suppress(ConnectionClosed):
                        await conn.send(Service.PING, {})

    async def _serve(self, ws: ServerConnection) -> None:
        try:
            conn = await self._authenticate(ws)
            if conn is None:
                return
            async for raw in ws:
                service, body = decode(raw)
                conn.frames.append((service, body))
                self.frames.append((service, body))
                if conn.silent:
                    continue
                answer = await self._answer(conn, service, body)
                if answer is not None and not conn.hold_replies:
                    await conn.send(service, answer)
        except ConnectionClosed:
            pass
        finally:
            self.conns[:] = [c for c in self.conns if c.ws is not ws]

    def _secret_for(self, sid: str) -> str | None:
        return KEY_SECRET if sid == KEY_SID else None

    async def _authenticate(self, ws: ServerConnection) -> Conn | None:
        service, body = decode(await ws.recv())
        assert service == Service.AUTHEN, service
        self.authens.append(body)
        request_id = body.get("requestId")
        tok = body.get("accesstoken")
        try:
            claims = verify_client_token(tok, self._secret_for)
            if tok in self.expired_tokens:
                raise TokenError(Result.TOKEN_EXPIRED, "token expired")
        except TokenError as exc:
            await ws.send(encode(Service.AUTHEN, reply(Service.AUTHEN, request_id, exc.code,
                                                       exc.message)))
            await ws.close()
            return None
        conn = Conn(ws, claims.user_id, claims.grants, tok)
        self.grants[claims.user_id] = claims.grants
        resume = body.get("resume") or {}
        recovered: dict[str, bool] = {}
        replay: list[dict[str, Any]] = []
        for name, pos in resume.items():
            topic = self.topic(name)
            first_kept = topic.history[0]["seq"] if topic.history else topic.seq + 1
            ok = (self.recover and claims.grants.may_receive(name)
                  and pos.get("epoch") == self.epoch and pos.get("seq") <= topic.seq
                  and pos.get("seq") + 1 >= first_kept)
            recovered[name] = ok
            if ok:
                start = max(pos["seq"] - self.replay_overlap, 0)
                replay += [b for b in topic.history if b["seq"] > start]
        topics = {name: {"epoch": self.epoch, "seq": self.topic(name).seq}
                  for name in claims.grants.subscribe}
        answer = reply(Service.AUTHEN, request_id, Result.SUCCESS, userId=claims.user_id,
                       projectId=PROJECT_ID, connectionId=f"c{len(self.authens)}",
                       clients=[], ice_servers=[], ping_after_ms=self.ping_after_ms,
                       loginTime=int(time.time() * 1000), topics=topics,
                       **claims.grants.to_json())
        if resume:
            answer["recovered"] = recovered
        others = self.conns_of(claims.user_id)
        self.conns.append(conn)  # in the same step as the replay list: nothing slips between
        async with conn.lock:
            await ws.send(encode(Service.AUTHEN, answer))
            for b in replay:
                await ws.send(encode(Service.SUBSCRIBE_FROM_SERVER, b))
        for other in others:
            await other.send(Service.OTHER_DEVICE_AUTHEN,
                             {"userId": claims.user_id, "type": "connected"})
        return conn

    async def _answer(self, conn: Conn, service: int, body: dict[str, Any]
                      ) -> dict[str, Any] | None:
        request_id = body.get("requestId")
        if service == Service.PING:
            return reply(service, request_id, Result.SUCCESS) if request_id else None
        if service == Service.CHANGE_ATTRIBUTE:
            name, value = body.get("attribute"), body.get("value")
            if name in BUILTIN_ATTRIBUTES:
                return reply(service, request_id, Result.READ_ONLY_ATTRIBUTE)
            if not is_attribute_name(name):
                return reply(service, request_id, Result.INVALID_ATTRIBUTE)
            old = self.values.get((conn.user_id, name))
            self.values[(conn.user_id, name)] = value
            if old != value:
                for topic in conn.grants.topics_for(name):
                    await self.publish(topic, conn.user_id, name, value)
            return reply(service, request_id, Result.SUCCESS)
        if service == Service.TOPIC_SNAPSHOT:
            name = body.get("topic")
            if not isinstance(name, str) or not conn.grants.may_receive(name):
                return reply(service, request_id, Result.TOPIC_NOT_GRANTED)
            topic = self.topic(name)
            return reply(service, request_id, Result.SUCCESS, topic=name, epoch=self.epoch,
                         seq=topic.seq, values=list(topic.values.values()))
        return reply(service, request_id, Result.INVALID_REQUEST,
                     MESSAGES[Result.INVALID_REQUEST])


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0,
                     message: str | Callable[[], str] = "condition") -> None:
    """Wait until ``predicate()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out waiting for {text}")
        await asyncio.sleep(0.005)
