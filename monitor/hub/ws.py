"""The WebSocket endpoint: bytes in, frames out. All decisions are the state's.

Outgoing frames are serialised once as WebSocket frames and queued on each peer; at the
end of the event-loop turn each peer's queue goes out in one write. The per-subscriber
send system call is what caps fan-out, so one write per peer per turn is the design.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from monitor.hub.state import Effects, Send, Session
from monitor.protocol import (
    MESSAGES,
    FrameError,
    RequestError,
    Result,
    Service,
    decode,
    encode,
    is_topic_name,
    reply,
    success_frame,
)
from monitor.tokens import TokenError, verify_client_token

if TYPE_CHECKING:
    from monitor.hub.server import Hub

log = logging.getLogger("monitor.hub")

CLOSE_INVALID_DATA = 1007
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_GOING_AWAY = 1001
CLOSE_AUTH_FAILED = 4001
CLOSE_AUTH_TIMEOUT = 4002
CLOSE_PING_TIMEOUT = 4003
CLOSE_SLOW_CONSUMER = 4004
CLOSE_KICKED = 4005
CLOSE_WAIT_S = 5.0  # longest wait for a close the hub started
PING_TIMEOUT_CLOSE_S = 1.0  # the same for a peer that went silent


def ws_frame(text: str) -> bytes:
    """One unmasked WebSocket text frame, ready to write to any client's transport."""
    # A lone surrogate echoed from a client cannot be UTF-8: it can only sit inside a JSON
    # string, where backslashreplace writes it as the JSON escape it stands for.
    return Frame(Opcode.TEXT, text.encode("utf-8", "backslashreplace")).serialize(mask=False)


def now_ms() -> int:
    return int(time.time() * 1000)


class Peer:
    """One WebSocket connection and the frames it is owed this turn."""

    __slots__ = ("authenticated_at", "closing", "last_ping", "last_recv", "pending",
                 "ping_outstanding", "remote", "session", "ws")

    def user_id(self) -> str:
        return self.session.user.user_id if self.session is not None else "-"

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.pending: list[bytes] = []
        self.session: Session | None = None
        self.closing = False
        self.ping_outstanding = False
        self.last_recv = self.last_ping = time.monotonic()
        self.authenticated_at = 0.0
        address = ws.remote_address
        self.remote = f"{address[0]}:{address[1]}" if address else "?"


class Peers:
    """Every connection of this node, their outgoing queues and the hub's PINGs."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.all: set[Peer] = set()
        self._dirty: list[Peer] = []
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.ping_frame = ws_frame(encode(Service.PING, {}))

    # -- sending --------------------------------------------------------------------------

    def emit(self, sends: Sequence[Send]) -> None:
        """Queue each frame for its targets: serialised once, written at the turn's end."""
        dirty = self._dirty
        metrics = self.hub.metrics
        for targets, text in sends:
            data = ws_frame(text)
            for peer in targets:
                if peer.closing:  # type: ignore[attr-defined]
                    continue
                pending = peer.pending  # type: ignore[attr-defined]
                if not pending:
                    dirty.append(peer)  # type: ignore[arg-type]
                pending.append(data)
            metrics.deliveries += len(targets)
            metrics.messages_out += 1
        if dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def send_now(self, peer: Peer, text: str) -> None:
        """Queue one frame for one peer (replies that need no commit)."""
        self.emit([((peer,), text)])

    def flush(self) -> None:
        """Write every peer's queued frames in one system call per peer."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        limit = self.hub.config.hub.send_buffer_limit
        for peer in dirty:
            pending = peer.pending
            if not pending or peer.closing:
                pending.clear()
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            transport = peer.ws.transport
            # A peer in its closing handshake may have written EOF already; writing would
            # raise and starve every peer after it in this turn.
            if transport.is_closing() or peer.ws.state is not State.OPEN:
                continue
            try:
                transport.write(data)
            except RuntimeError:
                continue
            if transport.get_write_buffer_size() > limit:
                self.hub.metrics.slow_consumers += 1
                log.warning("event=slow_consumer_dropped remote=%s user=%s buffered=%d",
                            peer.remote, peer.session.user.user_id if peer.session else "-",
                            transport.get_write_buffer_size())
                self.close(peer, CLOSE_SLOW_CONSUMER, "slow consumer: send buffer full")

    def close(self, peer: Peer, code: int, reason: str, wait_s: float | None = None) -> None:
        """Close a connection with a close frame, after what it is already owed; cut it
        off if the close has not completed within ``wait_s`` (default: close_timeout)."""
        if peer.closing:
            return
        if peer.pending:
            self.flush()
        peer.closing = True
        self.hub.metrics.closed(code)
        log.info("event=closing remote=%s user=%s code=%d reason=%r", peer.remote,
                 peer.user_id(), code, reason)
        self._loop.create_task(peer.ws.close(code, reason))
        # websockets bounds the wait for the peer's close frame, not the wait for a full
        # send buffer to drain: a peer that never reads again would be kept forever.
        if wait_s is None:
            wait_s = peer.ws.close_timeout or CLOSE_WAIT_S
        self._loop.call_later(wait_s, self._cut_off, peer)

    @staticmethod
    def _cut_off(peer: Peer) -> None:
        if peer.ws.state is not State.CLOSED:
            log.info("event=close_timed_out remote=%s", peer.remote)
            peer.ws.transport.abort()

    # -- liveness -------------------------------------------------------------------------

    async def ping_forever(self) -> None:
        """PING every connection every ``ping_after_ms``; close those silent too long."""
        settings = self.hub.config.hub
        every = settings.ping_after_ms / 1000
        silent_limit = (settings.ping_after_ms + settings.ping_timeout_extra_ms) / 1000
        while True:
            await asyncio.sleep(min(1.0, every / 2))
            now = time.monotonic()
            for peer in list(self.all):
                if peer.session is None or peer.closing:
                    continue
                if now - peer.last_recv > silent_limit:
                    log.info("event=ping_timeout remote=%s user=%s", peer.remote,
                             peer.session.user.user_id)
                    # Presumed gone: cut off soon, not after a full close handshake wait.
                    self.close(peer, CLOSE_PING_TIMEOUT, "ping timeout", PING_TIMEOUT_CLOSE_S)
                elif now - peer.last_ping >= every:
                    peer.last_ping = now
                    peer.ping_outstanding = True
                    if not peer.pending:
                        self._dirty.append(peer)
                    peer.pending.append(self.ping_frame)
            if self._dirty and not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self.flush)


def connection_class(hub: Hub) -> type[ServerConnection]:
    """The hub's WebSocket connections: like websockets', and an opening handshake that
    fails is counted in /metrics and logged. websockets drops a TCP connection that has
    not completed its HTTP upgrade within ``open_timeout`` (a slow-loris client), answers
    400 to a request that is not an upgrade, and notices a peer that left first."""

    class HubConnection(ServerConnection):
        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            try:
                await super().handshake(*args, **kwargs)
            except asyncio.CancelledError:  # open_timeout ran out
                self._failed("timeout")
                raise
            if self.protocol.state is not State.OPEN:
                left = self.request is None and self.protocol.handshake_exc is None
                self._failed("closed" if left else "rejected")

        def _failed(self, reason: str) -> None:
            hub.metrics.handshake_failed(reason)
            address = self.transport.get_extra_info("peername")
            log.info("event=handshake_failed remote=%s reason=%s",
                     f"{address[0]}:{address[1]}" if address else "?", reason)

    return HubConnection


class Endpoint:
    """Runs each connection: authentication, then one request at a time."""

    def __init__(self, hub: Hub, peers: Peers) -> None:
        self.hub = hub
        self.peers = peers

    def _secret_for(self, sid: str) -> str | None:
        found = self.hub.config.key(sid)
        return found[1].secret if found else None

    async def handle(self, ws: ServerConnection) -> None:
        """The websockets connection handler."""
        peer = Peer(ws)
        self.peers.all.add(peer)
        hub = self.hub
        hub.metrics.connections += 1
        try:
            if await self._authenticate(peer):
                async for message in ws:
                    peer.last_recv = time.monotonic()
                    hub.metrics.messages_in += 1
                    if isinstance(message, bytes):
                        self.peers.close(peer, CLOSE_UNSUPPORTED, "text frames only")
                        break
                    self._dispatch(peer, message)
        except ConnectionClosed:
            pass
        finally:
            closed_by_peers = peer.closing  # Peers.close counted and logged it
            peer.closing = True
            self.peers.all.discard(peer)
            hub.metrics.connections -= 1
            if peer.session is not None:
                session = peer.session
                close = ws.close_code
                log.info("event=disconnected remote=%s user=%s project=%s code=%s",
                         peer.remote, session.user.user_id, session.user.project_id, close)
                hub.connection_closed(peer)
        # A close this endpoint started (Peers.close) runs as a task: let it send its own
        # code, or returning from the handler first makes websockets close with 1000.
        await ws.wait_closed()
        sent = ws.protocol.close_sent
        if sent is not None and not ws.protocol.close_rcvd_then_sent and not closed_by_peers:
            # The WebSocket library closed it: over 64 KiB (1009), not UTF-8 (1007), a
            # protocol error (1002)...
            hub.metrics.closed(sent.code)
            log.info("event=closing remote=%s user=%s code=%d reason=%r", peer.remote,
                     peer.user_id(), sent.code, sent.reason)

    # -- authentication -----------------------------------------------------------------

    async def _authenticate(self, peer: Peer) -> bool:
        hub = self.hub
        deadline = time.monotonic() + hub.config.hub.auth_timeout_ms / 1000
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                message = await asyncio.wait_for(peer.ws.recv(), remaining)
            except TimeoutError:
                break
            peer.last_recv = time.monotonic()
            hub.metrics.messages_in += 1
            if isinstance(message, bytes):
                self.peers.close(peer, CLOSE_UNSUPPORTED, "text frames only")
                return False
            try:
                service, body = decode(message)
            except FrameError as exc:
                self.peers.close(peer, CLOSE_INVALID_DATA, str(exc))
                return False
            except RequestError as exc:
                self._refuse(peer, 0, None, Result.INVALID_REQUEST, str(exc))
                continue
            request_id = body.get("requestId")
            if service == Service.PING:
                self.peers.send_now(peer, encode(Service.PING, reply(
                    Service.PING, request_id, Result.SUCCESS)))
            elif service != Service.AUTHEN:
                self._refuse(peer, service, request_id, Result.NOT_AUTHENTICATED)
            else:
                return await self._authen(peer, body, request_id)
        log.info("event=auth_timeout remote=%s", peer.remote)
        hub.metrics.auth_failures["timeout"] = hub.metrics.auth_failures.get("timeout", 0) + 1
        self.peers.close(peer, CLOSE_AUTH_TIMEOUT, "not authenticated in time")
        return False

    async def _authen(self, peer: Peer, body: dict[str, Any], request_id: Any) -> bool:
        hub = self.hub
        limited = hub.auth_limiter.refuse(peer.ws.remote_address)
        try:
            if limited:
                raise TokenError(Result.RATE_LIMITED, "too many authentication attempts")
            claims = verify_client_token(body.get("accesstoken"), self._secret_for)
        except TokenError as exc:
            code = int(exc.code)
            hub.metrics.auth_failures[str(code)] = hub.metrics.auth_failures.get(str(code), 0) + 1
            log.info("event=auth_failed remote=%s r=%d reason=%r", peer.remote, code,
                     exc.message)
            self.peers.send_now(peer, encode(Service.AUTHEN, reply(
                Service.AUTHEN, request_id, exc.code, exc.message)))
            self.peers.close(peer, CLOSE_AUTH_FAILED, f"authentication failed (r={code})")
            return False
        project = hub.config.key(claims.key_sid)
        assert project is not None  # the key verified, so it exists
        client = {k: body[k] for k in ("deviceId", "browserId", "sessionId", "platform",
                                       "sdkVersion") if isinstance(body.get(k), str | int)}
        outcome = hub.state.authenticate(peer, project[0].id, claims, client, request_id,
                                         now_ms(), body.get("resume"))
        peer.session = outcome.session
        peer.authenticated_at = time.monotonic()
        effects = outcome.effects
        effects.failure_sends = [((peer,), encode(Service.AUTHEN, reply(
            Service.AUTHEN, request_id, Result.INTERNAL_ERROR, "could not store the login")))]
        if not await hub.submit(effects):
            self.peers.close(peer, CLOSE_GOING_AWAY, "internal error")
            return False
        log.info("event=authenticated remote=%s user=%s project=%s connection=%s",
                 peer.remote, claims.user_id, project[0].id, outcome.session.connection_id)
        return True

    # -- requests after authentication --------------------------------------------------

    def _refuse(self, peer: Peer, service: int, request_id: Any, r: Result,
                message: str | None = None) -> None:
        """Answer a request with ``r != 0`` at once: counted in /metrics and logged."""
        self.hub.metrics.refused("ws", r)
        log.info("event=request_refused remote=%s user=%s service=%d r=%d reason=%r",
                 peer.remote, peer.user_id(), service, int(r), message or MESSAGES[r])
        self.peers.send_now(peer, encode(service, reply(service, request_id, r, message)))

    def _dispatch(self, peer: Peer, message: str) -> None:
        hub = self.hub
        try:
            service, body = decode(message)
        except FrameError as exc:
            self.peers.close(peer, CLOSE_INVALID_DATA, str(exc))
            return
        except RequestError as exc:
            self._refuse(peer, 0, None, Result.INVALID_REQUEST, str(exc))
            return
        request_id = body.get("requestId")
        session = peer.session
        assert session is not None
        if service == Service.PING:
            # The answer to our PING is not answered again (the Web SDK answers every PING).
            if peer.ping_outstanding:
                peer.ping_outstanding = False
            else:
                self.peers.send_now(peer, encode(Service.PING, reply(
                    Service.PING, request_id, Result.SUCCESS)))
        elif service == Service.CHANGE_ATTRIBUTE:
            self._change_attribute(peer, session, body, request_id)
        elif service == Service.TOPIC_SNAPSHOT:
            topic = body.get("topic")
            if not is_topic_name(topic) or not session.grants.may_receive(topic):
                hub.metrics.refused("ws", Result.INVALID_REQUEST if not is_topic_name(topic)
                                    else Result.TOPIC_NOT_GRANTED)
                log.info("event=request_refused remote=%s user=%s service=%d topic=%r",
                         peer.remote, session.user.user_id, service, str(topic)[:140])
            hub.submit(Effects(sends=[((peer,), hub.state.snapshot(
                session, topic, request_id))]))
        elif hub.calls is not None and hub.calls.handles(service):
            hub.calls.request(peer, session, service, body, request_id)
        elif service == Service.AUTHEN:
            self._refuse(peer, service, request_id, Result.INVALID_REQUEST,
                         "already authenticated")
        else:
            self._refuse(peer, service, request_id, Result.INVALID_REQUEST,
                         f"unknown service {service}")

    def _change_attribute(self, peer: Peer, session: Session, body: dict[str, Any],
                          request_id: Any) -> None:
        hub = self.hub
        service = Service.CHANGE_ATTRIBUTE
        if "attribute" not in body or "value" not in body:
            change: object = None
        else:
            change = [{"attribute": body["attribute"], "value": body["value"]}]
        effects = hub.state.change_attributes(session.user.project_id, session.user.user_id,
                                              change, now_ms())
        if change is None:
            effects.result, effects.message = (Result.INVALID_REQUEST,
                                               "CHANGE_ATTRIBUTE needs attribute and value")
        answer = (success_frame(service, request_id) if effects.result == Result.SUCCESS
                  else encode(service, reply(service, request_id, effects.result,
                                             effects.message)))
        effects.sends.append(((peer,), answer))
        effects.failure_sends.append(((peer,), encode(service, reply(
            service, request_id, Result.INTERNAL_ERROR, "change could not be stored"))))
        if effects.result != Result.SUCCESS:
            hub.metrics.refused("ws", effects.result)
            log.info("event=change_refused user=%s r=%d reason=%r", session.user.user_id,
                     int(effects.result), effects.message)
        hub.submit(effects)
