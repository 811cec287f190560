"""The WebSocket endpoint: bytes in, frames out. All decisions are the state's.

Each connection is an asyncio protocol driving websockets' Sans-I/O ``ServerProtocol``:
the library parses and validates the opening handshake and every frame, answers control
frames and runs the closing handshake; this module only moves bytes. Requests are handled
as their frames arrive, with no task or queue per connection: that is what lets one core
open thousands of connections a second and answer tens of thousands of requests.

Outgoing frames are serialised once as WebSocket frames and queued on each peer; at the
end of the event-loop turn each peer's queue goes out in one write. The per-subscriber
send system call is what caps fan-out, so one write per peer per turn is the design.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from monitor.hub.port import HubPort
from monitor.hub.state import Effects, Send, Session
from monitor.hub.supervision import login_refusal
from monitor.hub.supervisors import Supervisors
from monitor.protocol import (
    INT64_MAX,
    INT64_MIN,
    MAX_CLIENT_FIELD_CHARS,
    MAX_FRAME_BYTES,
    MESSAGES,
    CloseCode,
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

log = logging.getLogger("monitor.hub")

CLOSE_WAIT_S = 5.0  # longest wait for a close handshake, either side starting it
PING_TIMEOUT_CLOSE_S = 1.0  # the same for a peer that went silent


def ws_frame(text: str) -> bytes:
    """One unmasked WebSocket text frame, ready to write to any client's transport."""
    # A lone surrogate echoed from a client cannot be UTF-8: it can only sit inside a JSON
    # string, where backslashreplace writes it as the JSON escape it stands for.
    return Frame(Opcode.TEXT, text.encode("utf-8", "backslashreplace")).serialize(mask=False)


def now_ms() -> int:
    return int(time.time() * 1000)


CLIENT_FIELDS = ("deviceId", "browserId", "sessionId", "platform", "sdkVersion")


def client_fields(body: dict[str, Any]) -> tuple[dict[str, Any], tuple[Result, str] | None]:
    """The AUTHEN fields that describe the client (echoed in ``clients`` to each of the
    user's devices), or the refusal of one that is too long: a string of at most 128
    characters or an integer within 64 bits; other types are ignored, as before."""
    client: dict[str, Any] = {}
    for name in CLIENT_FIELDS:
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        if isinstance(value, str) and len(value) > MAX_CLIENT_FIELD_CHARS:
            return client, (Result.INVALID_ATTRIBUTE,
                            f"{name} longer than {MAX_CLIENT_FIELD_CHARS} characters")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            return client, (Result.INVALID_ATTRIBUTE, f"{name} is an integer beyond 64 bits")
        client[name] = value
    return client, None


class Peer(asyncio.Protocol):
    """One client connection: its TCP transport, the WebSocket protocol state and the
    frames it is owed this turn."""

    __slots__ = ("address", "allowance", "allowance_at", "auth_timer", "close_timer",
                 "closing", "endpoint", "fragments", "inbox", "last_ping", "last_recv",
                 "limited", "open_timer", "opened", "pending", "ping_outstanding", "protocol",
                 "remote", "session", "snapshot_bytes", "snapshots", "transport")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.protocol = ServerProtocol(max_size=MAX_FRAME_BYTES)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.pending: list[bytes] = []
        self.session: Session | None = None
        self.closing = False  # the hub is closing it, or it is gone
        self.opened = False  # the opening handshake succeeded
        self.ping_outstanding = False
        self.last_recv = self.last_ping = time.monotonic()
        self.address: Any = None
        self.remote = "?"
        # Frames of a fragmented message so far; requests that arrived while an AUTHEN
        # was being stored (None: no AUTHEN in flight).
        self.fragments: list[bytes] = []
        self.inbox: list[tuple[int, dict[str, Any]]] | None = None
        self.open_timer: asyncio.TimerHandle | None = None
        self.auth_timer: asyncio.TimerHandle | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        # The request rate limit: a token bucket (tokens, when last filled); whether the
        # refusals it has caused since the last request it let through were logged.
        self.allowance = -1.0  # filled to the burst at authentication
        self.allowance_at = 0.0
        self.limited = False
        # Topics whose snapshot is on its way to the client, and the bytes they hold.
        self.snapshots: set[str] | None = None
        self.snapshot_bytes = 0

    def queued_bytes(self) -> int:
        """What this connection is owed and has not read: the transport's buffer, this
        turn's frames and the snapshots waiting for their commit."""
        return (self.transport.get_write_buffer_size() + sum(map(len, self.pending))
                + self.snapshot_bytes)

    def take_allowance(self, rate: float, burst: float, now: float) -> float:
        """Spend one request of the connection's token bucket: 0.0 when it may go
        ahead, else the seconds until it could."""
        tokens = min(burst, self.allowance + (now - self.allowance_at) * rate)
        self.allowance_at = now
        if tokens >= 1.0:
            self.allowance = tokens - 1.0
            return 0.0
        self.allowance = tokens
        return (1.0 - tokens) / rate

    def user_id(self) -> str:
        return self.session.user.user_id if self.session is not None else "-"

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP server's: a Transport
        self.address = transport.get_extra_info("peername")
        if self.address:
            self.remote = f"{self.address[0]}:{self.address[1]}"
        self.endpoint.connection_made(self)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self.write_protocol_data()
        for event in events:
            if isinstance(event, Frame):
                if not self.opened:  # sent behind an upgrade request that was refused
                    continue
                if event.opcode is Opcode.TEXT or event.opcode is Opcode.CONT:
                    self._text(event)
                elif event.opcode is Opcode.BINARY:
                    self.endpoint.binary(self)
            elif isinstance(event, Request):
                self.endpoint.handshake(self, event)
        if protocol.state is State.CONNECTING and protocol.handshake_exc is not None:
            self.endpoint.handshake_failed(self, "rejected")
        self._expect_close(CLOSE_WAIT_S)

    def eof_received(self) -> None:
        self.protocol.receive_eof()
        self.write_protocol_data()
        # Returning None closes the transport: after EOF the peer reads nothing more.

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the protocol state is CLOSED now
        for timer in (self.open_timer, self.auth_timer, self.close_timer):
            if timer is not None:
                timer.cancel()
        self.open_timer = self.auth_timer = self.close_timer = None
        self.endpoint.connection_lost(self)
        # Break the reference cycles a connection is made of, so that reference counting
        # frees it at once: the protocol's parser (a generator) and the exception that
        # stopped it (its traceback holds the parser's frame) refer to the protocol, the
        # session to this peer. Left to the cycle collector, thousands of connections a
        # minute piled up until a full collection paused the hub for a second or more.
        self.protocol.parser.close()
        self.protocol.parser_exc = None
        self.session = None

    # -- frames -----------------------------------------------------------------------------

    def _text(self, frame: Frame) -> None:
        protocol = self.protocol
        if self.closing or (protocol.close_sent is not None
                            and not protocol.close_rcvd_then_sent):
            return  # the hub is closing it (or a frame was not UTF-8): requests are dropped
        # websockets types a frame's payload as any bytes-like object; its parser makes
        # bytes, which is what is kept and decoded here.
        data = cast(bytes, frame.data)
        if not frame.fin:
            self.fragments.append(data)
            return
        if self.fragments:
            self.fragments.append(data)
            data = b"".join(self.fragments)
            self.fragments.clear()
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return
        try:
            self.endpoint.message(self, text)
        except Exception:  # a bug must cost this connection, never the hub or others
            log.exception("event=request_failed remote=%s user=%s", self.remote,
                          self.user_id())
            self.endpoint.peers.close(self, CloseCode.INTERNAL_ERROR, "internal error")

    def fail(self, code: int, reason: str) -> None:
        """Close at once because the peer broke the protocol (what websockets does)."""
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            self.write_protocol_data()
            self._expect_close(CLOSE_WAIT_S)

    def send_close(self, code: int, reason: str, wait_s: float) -> None:
        """Start the closing handshake; cut the connection off if it is not done in time."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.write_protocol_data()
        elif self.protocol.state is State.CONNECTING:
            self.transport.abort()
            return
        self._expect_close(wait_s)

    def write_protocol_data(self) -> None:
        """Write what the protocol has to send: handshake, control frames, EOF."""
        transport = self.transport
        if transport.is_closing():  # cut off already: nothing more can go out
            self.protocol.data_to_send()
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                try:  # uvloop may raise RuntimeError on a transport that is going away
                    transport.write_eof()
                except (OSError, RuntimeError):
                    transport.abort()
            else:
                transport.close()

    def _expect_close(self, wait_s: float) -> None:
        if self.close_timer is None and self.protocol.close_expected():
            self.close_timer = asyncio.get_running_loop().call_later(wait_s, self._cut_off)

    def _cut_off(self) -> None:
        if self.protocol.state is not State.CLOSED:
            log.info("event=close_timed_out remote=%s", self.remote)
            self.transport.abort()


class Peers:
    """Every connection of this node, their outgoing queues and the hub's PINGs."""

    def __init__(self, hub: HubPort) -> None:
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
            # Hot path: a type() test, not isinstance, for the frame or the function making
            # it; the state's handles are this endpoint's Peers.
            made = text if type(text) is str else text()  # type: ignore[operator]  # type()
            data = ws_frame(made)
            for peer in cast("Sequence[Peer]", targets):
                if peer.closing:
                    continue
                pending = peer.pending
                if not pending:
                    dirty.append(peer)
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
            transport = peer.transport
            # A peer in its closing handshake may have written EOF already; writing would
            # raise and starve every peer after it in this turn.
            if transport.is_closing() or peer.protocol.state is not State.OPEN:
                continue
            try:
                transport.write(data)
            except RuntimeError:
                continue
            if transport.get_write_buffer_size() > limit:
                self.slow_consumer(peer)

    def slow_consumer(self, peer: Peer) -> None:
        """Drop a connection that does not read what it is sent (4004)."""
        self.hub.metrics.slow_consumers += 1
        log.warning("event=slow_consumer_dropped remote=%s user=%s buffered=%d",
                    peer.remote, peer.user_id(), peer.queued_bytes())
        self.close(peer, CloseCode.SLOW_CONSUMER, "slow consumer: send buffer full")

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
        peer.send_close(code, reason, CLOSE_WAIT_S if wait_s is None else wait_s)

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
                    self.close(peer, CloseCode.PING_TIMEOUT, "ping timeout", PING_TIMEOUT_CLOSE_S)
                elif now - peer.last_ping >= every:
                    peer.last_ping = now
                    peer.ping_outstanding = True
                    if not peer.pending:
                        self._dirty.append(peer)
                    peer.pending.append(self.ping_frame)
            if self._dirty and not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self.flush)


class Endpoint:
    """Runs each connection: opening handshake, authentication, then its requests in the
    order they arrive."""

    def __init__(self, hub: HubPort, peers: Peers, open_timeout_s: float) -> None:
        self.hub = hub
        self.peers = peers
        self.open_timeout_s = open_timeout_s
        self._loop = asyncio.get_running_loop()
        self.supervisors = Supervisors(hub)

    def protocol_factory(self) -> Peer:
        return Peer(self)

    def _secret_for(self, sid: str) -> str | None:
        found = self.hub.config.key(sid)
        return found[1].secret if found else None

    # -- connection lifecycle -----------------------------------------------------------

    def connection_made(self, peer: Peer) -> None:
        self.peers.all.add(peer)
        # A TCP connection that has not completed its upgrade by then is dropped
        # (slow-loris); one that is not authenticated in time, likewise (below).
        peer.open_timer = self._loop.call_later(self.open_timeout_s, self._open_timed_out,
                                                peer)

    def handshake(self, peer: Peer, request: Request) -> None:
        """Answer the HTTP upgrade: 101 and the WebSocket is open, or an error page."""
        if peer.open_timer is not None:
            peer.open_timer.cancel()
            peer.open_timer = None
        peer.protocol.send_response(peer.protocol.accept(request))
        peer.write_protocol_data()
        if peer.protocol.state is not State.OPEN:
            return  # data_received counts the failure
        peer.opened = True
        self.hub.metrics.connections += 1
        peer.auth_timer = self._loop.call_later(
            self.hub.config.hub.auth_timeout_ms / 1000, self._auth_timed_out, peer)

    def handshake_failed(self, peer: Peer, reason: str) -> None:
        """Count and log an opening handshake that did not succeed (once per connection)."""
        if peer.closing:
            return
        peer.closing = True
        self.hub.metrics.handshake_failed(reason)
        log.info("event=handshake_failed remote=%s reason=%s", peer.remote, reason)

    def _open_timed_out(self, peer: Peer) -> None:
        peer.open_timer = None
        self.handshake_failed(peer, "timeout")
        peer.transport.abort()

    def connection_lost(self, peer: Peer) -> None:
        protocol = peer.protocol
        if not peer.opened:
            # The client left before its upgrade completed (an error page counted already).
            self.handshake_failed(peer, "closed")
            self.peers.all.discard(peer)
            return
        closed_by_peers = peer.closing  # Peers.close counted and logged it
        peer.closing = True
        self.peers.all.discard(peer)
        hub = self.hub
        hub.metrics.connections -= 1
        sent = protocol.close_sent
        if sent is not None and not protocol.close_rcvd_then_sent and not closed_by_peers:
            # The WebSocket layer closed it: over 64 KiB (1009), not UTF-8 (1007), a
            # protocol error (1002)...
            hub.metrics.closed(sent.code)
            log.info("event=closing remote=%s user=%s code=%d reason=%r", peer.remote,
                     peer.user_id(), sent.code, sent.reason)
        if peer.session is not None:
            session = peer.session
            log.info("event=disconnected remote=%s user=%s project=%s code=%s",
                     peer.remote, session.user.user_id, session.user.project_id,
                     protocol.close_code)
            hub.connection_closed(peer)

    # -- messages -------------------------------------------------------------------------

    def binary(self, peer: Peer) -> None:
        if not peer.closing:
            self.hub.metrics.messages_in += 1
            self.peers.close(peer, CloseCode.UNSUPPORTED, "text frames only")

    def message(self, peer: Peer, message: str) -> None:
        """One text message: a request before or after authentication."""
        peer.last_recv = time.monotonic()
        self.hub.metrics.messages_in += 1
        try:
            request = decode(message)
        except FrameError as exc:
            self.peers.close(peer, CloseCode.INVALID_DATA, str(exc))
            return
        except RequestError as exc:
            self._refuse(peer, exc.service, None, Result.INVALID_REQUEST, str(exc))
            return
        if peer.inbox is not None:  # its AUTHEN is being stored: answer in order once it is
            peer.inbox.append(request)
        elif peer.session is not None:
            self._dispatch(peer, *request)
        else:
            self._before_authentication(peer, *request)

    # -- authentication -----------------------------------------------------------------

    def _auth_timed_out(self, peer: Peer) -> None:
        peer.auth_timer = None
        if peer.session is not None or peer.inbox is not None or peer.closing:
            return
        log.info("event=auth_timeout remote=%s", peer.remote)
        failures = self.hub.metrics.auth_failures
        failures["timeout"] = failures.get("timeout", 0) + 1
        self.peers.close(peer, CloseCode.AUTH_TIMEOUT, "not authenticated in time")

    def _before_authentication(self, peer: Peer, service: int, body: dict[str, Any]) -> None:
        request_id = body.get("requestId")
        if service == Service.PING:
            self.peers.send_now(peer, encode(Service.PING, reply(
                Service.PING, request_id, Result.SUCCESS)))
        elif service != Service.AUTHEN:
            if not self._rate_limited(peer, service, request_id):
                self._refuse(peer, service, request_id, Result.NOT_AUTHENTICATED)
        else:
            self._authen(peer, body, request_id)

    def _authen(self, peer: Peer, body: dict[str, Any], request_id: Any) -> None:
        hub = self.hub
        limited = hub.auth_limiter.refuse(peer.address)
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
            self.peers.close(peer, CloseCode.AUTH_FAILED, f"authentication failed (r={code})")
            return
        project = hub.config.key(claims.key_sid)
        assert project is not None  # the key verified, so it exists
        client, refusal = client_fields(body)
        if refusal is None and len(hub.state.user_handles(
                project[0].id, claims.user_id)) >= hub.config.hub.max_connections_per_user:
            refusal = (Result.RATE_LIMITED, f"a user holds at most "
                       f"{hub.config.hub.max_connections_per_user} connections")
        held = None if refusal is not None else login_refusal(
            hub.state, project[0].id, claims.user_id, now_ms())
        if held is not None:  # logged out by a supervisor, not long ago
            refusal = (Result.LOGGED_OUT, held[0])
        if refusal is not None:
            r, message = refusal
            hub.metrics.auth_failures[str(int(r))] = \
                hub.metrics.auth_failures.get(str(int(r)), 0) + 1
            log.info("event=auth_failed remote=%s user=%s r=%d reason=%s", peer.remote,
                     claims.user_id, int(r), message)
            self.peers.send_now(peer, encode(Service.AUTHEN, reply(
                Service.AUTHEN, request_id, r, message, **(held[1] if held else {}))))
            self.peers.close(peer, CloseCode.AUTH_FAILED, f"authentication failed (r={int(r)})")
            return
        settings = hub.config.hub
        peer.allowance = float(settings.change_burst_per_connection)
        peer.allowance_at = time.monotonic()
        outcome = hub.state.authenticate(peer, project[0].id, claims, client, request_id,
                                         now_ms(), body.get("resume"))
        peer.session = outcome.session
        peer.inbox = []
        if peer.auth_timer is not None:
            peer.auth_timer.cancel()
            peer.auth_timer = None
        effects = outcome.effects
        effects.failure_sends = [((peer,), encode(Service.AUTHEN, reply(
            Service.AUTHEN, request_id, Result.INTERNAL_ERROR, "could not store the login")))]
        hub.submit(effects).add_done_callback(
            lambda stored: self._authen_stored(peer, stored.result(), project[0].id))

    def _authen_stored(self, peer: Peer, stored: bool, project_id: int) -> None:
        """The login is durable (or not): answer what arrived meanwhile, in order."""
        inbox, peer.inbox = peer.inbox or [], None
        if peer.closing:
            return  # gone while the login was being stored
        if not stored:
            self.peers.close(peer, CloseCode.GOING_AWAY, "internal error")
            return
        session = peer.session
        assert session is not None
        log.info("event=authenticated remote=%s user=%s project=%s connection=%s",
                 peer.remote, session.user.user_id, project_id, session.connection_id)
        for service, body in inbox:
            if peer.closing:
                break
            self._dispatch(peer, service, body)

    # -- requests after authentication --------------------------------------------------

    def _refuse(self, peer: Peer, service: int, request_id: Any, r: Result,
                message: str | None = None) -> None:
        """Answer a request with ``r != 0`` at once: counted in /metrics and logged."""
        self.hub.metrics.refused("ws", r)
        log.info("event=request_refused remote=%s user=%s service=%d r=%d reason=%r",
                 peer.remote, peer.user_id(), service, int(r), message or MESSAGES[r])
        self.peers.send_now(peer, encode(service, reply(service, request_id, r, message)))

    def _rate_limited(self, peer: Peer, service: int, request_id: Any) -> bool:
        """Refuse the request (r = 26, with ``retryAfterMs``) when the connection is
        over its rate; the first refusal of a run is logged, every one is counted."""
        settings = self.hub.config.hub
        wait_s = peer.take_allowance(settings.change_rate_per_connection,
                                     settings.change_burst_per_connection, time.monotonic())
        if not wait_s:
            peer.limited = False
            return False
        self.hub.metrics.refused("ws", Result.RATE_LIMITED)
        if not peer.limited:  # one line per run of refusals, not one per request
            peer.limited = True
            log.info("event=rate_limited remote=%s user=%s service=%d", peer.remote,
                     peer.user_id(), service)
        self.peers.send_now(peer, encode(service, reply(
            service, request_id, Result.RATE_LIMITED, "too many requests: slow down",
            retryAfterMs=max(1, math.ceil(wait_s * 1000)))))
        return True

    def _dispatch(self, peer: Peer, service: int, body: dict[str, Any]) -> None:
        hub = self.hub
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
        elif self._rate_limited(peer, service, request_id):
            return
        elif service == Service.CHANGE_ATTRIBUTE:
            self._change_attribute(peer, session, body, request_id)
        elif service == Service.TOPIC_SNAPSHOT:
            self._snapshot(peer, session, body.get("topic"), request_id)
        elif hub.calls is not None and hub.calls.handles(service):
            hub.calls.request(peer, session, service, body, request_id)
        elif self.supervisors.handles(service):
            self.supervisors.request(peer, session, service, body, request_id)
        elif service == Service.AUTHEN:
            self._refuse(peer, service, request_id, Result.INVALID_REQUEST,
                         "already authenticated")
        else:
            self._refuse(peer, service, request_id, Result.INVALID_REQUEST,
                         f"unknown service {service}")

    def _snapshot(self, peer: Peer, session: Session, topic: object, request_id: Any) -> None:
        """TOPIC_SNAPSHOT: one at a time per topic and connection, and only for a
        connection that reads what it is sent: a snapshot can be large, and a client
        asking for thousands without reading must not make the hub hold them."""
        hub = self.hub
        service = Service.TOPIC_SNAPSHOT
        if not is_topic_name(topic) or not session.grants.may_receive(topic):
            hub.metrics.refused("ws", Result.INVALID_REQUEST if not is_topic_name(topic)
                                else Result.TOPIC_NOT_GRANTED)
            log.info("event=request_refused remote=%s user=%s service=%d topic=%r",
                     peer.remote, session.user.user_id, service, str(topic)[:140])
            # The state's answer: r = 21 or 24, in order behind the commits in flight.
            hub.submit(Effects(sends=[((peer,), hub.state.snapshot(
                session, topic, request_id))]))
            return
        assert isinstance(topic, str)
        in_flight = peer.snapshots if peer.snapshots is not None else set()
        peer.snapshots = in_flight
        if topic in in_flight:
            self._refuse(peer, service, request_id, Result.RATE_LIMITED,
                         f"a snapshot of {topic} is already on its way")
            return
        if peer.queued_bytes() > hub.config.hub.send_buffer_limit:
            self.peers.slow_consumer(peer)
            return
        frame = hub.state.snapshot(session, topic, request_id)
        size = len(frame)
        in_flight.add(topic)
        peer.snapshot_bytes += size

        # The frame leaves the pipeline for the connection's queue (where queued_bytes
        # sees it) in the same step as the topic stops being in flight: a client that
        # asks again as soon as it has the answer is never refused.
        def sent(answer: str) -> str:
            in_flight.discard(topic)
            peer.snapshot_bytes -= size
            return answer

        failed = partial(encode, service, reply(
            service, request_id, Result.INTERNAL_ERROR, "snapshot could not be sent"))
        hub.submit(Effects(sends=[((peer,), partial(sent, frame))],
                           failure_sends=[((peer,), lambda: sent(failed()))]))

    def _change_attribute(self, peer: Peer, session: Session, body: dict[str, Any],
                          request_id: Any) -> None:
        hub = self.hub
        service = Service.CHANGE_ATTRIBUTE
        if "attribute" not in body or "value" not in body:
            change: object = None
        else:
            change = [{"attribute": body["attribute"], "value": body["value"]}]
        # Published through this connection's grants, not those of the user's latest
        # login elsewhere (which may grant other topics).
        effects = hub.state.change_attributes(session.user.project_id, session.user.user_id,
                                              change, now_ms(), session.grants)
        try:
            if change is None:
                effects.result, effects.message = (
                    Result.INVALID_REQUEST, "CHANGE_ATTRIBUTE needs attribute and value")
            answer = (success_frame(service, request_id) if effects.result == Result.SUCCESS
                      else encode(service, reply(service, request_id, effects.result,
                                                 effects.message)))
            effects.sends.append(((peer,), answer))
            effects.failure_sends.append(((peer,), partial(encode, service, reply(
                service, request_id, Result.INTERNAL_ERROR, "change could not be stored"))))
        except BaseException:
            # Memory must not keep a change that is neither stored nor published.
            for undo in reversed(effects.undo):
                undo()
            raise
        if effects.result != Result.SUCCESS:
            hub.metrics.refused("ws", effects.result)
            log.info("event=change_refused user=%s r=%d reason=%r", session.user.user_id,
                     int(effects.result), effects.message)
        hub.submit(effects)
