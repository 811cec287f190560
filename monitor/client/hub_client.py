"""``HubClient``: the asyncio WebSocket client of the hub (Stringee-compatible events).

One client is one authenticated connection of one user, kept alive across drops: it
reconnects with jittered exponential backoff, resumes every topic from its last
``seq``, and re-reads a topic with a snapshot when the hub cannot replay what was
missed. Handlers and :meth:`HubClient.messages` see every topic message once, in
order, or an explicit ``resync`` event: never a silent loss.

Call control (services 1010-1019) will be further request methods over
:meth:`HubClient.request`, like :meth:`HubClient.change_attribute`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from monitor import __version__
from monitor.client.backoff import Backoff
from monitor.client.errors import (
    AuthenticationError,
    ConnectionLostError,
    HubError,
    HubUnreachableError,
    LoggedOutError,
    RequestTimeoutError,
    error_for,
)
from monitor.client.events import EventDispatcher, EventName, Handler, wait_event
from monitor.client.stats import ClientStats
from monitor.client.stream import MessageStream
from monitor.client.token_source import TokenProvider, TokenSource
from monitor.client.topics import TopicPosition, TopicTracker, Verdict
from monitor.protocol import (
    CallService,
    CloseCode,
    FrameError,
    RequestError,
    Result,
    Service,
    SupervisorService,
    decode,
    encode,
)

log = logging.getLogger("monitor.client")

#: The hub closes a connection with 4005 (CloseCode.KICKED) when the user is disconnected
#: through the REST API (a supervisor's force-offline, docs/protocol.md): by default, do
#: not come back. After a supervisor's logout (4006, CloseCode.LOGGED_OUT) the client
#: never comes back by itself, whatever this says.
DEFAULT_STOP_CODES: frozenset[int] = frozenset({CloseCode.KICKED, CloseCode.LOGGED_OUT})
DEFAULT_PING_AFTER_MS = 15000
HUB_SILENCE_GRACE_S = 15.0  # the hub's own rule: ping_after_ms + 15 s of silence is dead
MAX_INCOMING_BYTES = 16 * 1024 * 1024  # snapshots of large topics exceed the 64 KiB inbound cap


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    ws: ClientConnection
    on_reply: Callable[[dict[str, Any]], None] | None


class HubClient:
    """A user's real-time connection to the hub.

    ``token`` is the client access token; ``token_provider`` (plain or async callable)
    supplies fresh ones, or leave it out and answer the ``requestnewtoken`` event
    (return a token from the handler, or call :meth:`set_token`).

    Options: ``reconnect`` (default on) with ``backoff``; ``resume`` topics from their
    last seq on reconnect; ``request_timeout`` for every request; ``silence_timeout``,
    seconds without a frame from the hub before the connection counts as dead (default
    the hub's ``ping_after_ms`` + 15 s; the client PINGs at half of it);
    ``refresh_before``, how many seconds before ``exp`` to ask for a new token (``None``:
    only when the hub answers ``r = 6``);
    ``token_wait``, how long to wait for one; ``stop_on_close_codes``, close codes after
    which the client does not reconnect (default 4005, disconnected through REST);
    ``device_id`` and ``platform`` go into AUTHEN; ``rng`` draws the backoff jitter.
    """

    def __init__(self, url: str, token: str | None = None, *,
                 token_provider: TokenProvider | None = None,
                 reconnect: bool = True,
                 backoff: Backoff | None = None,
                 resume: bool = True,
                 request_timeout: float = 10.0,
                 open_timeout: float = 10.0,
                 silence_timeout: float | None = None,
                 refresh_before: float | None = 60.0,
                 token_wait: float = 10.0,
                 stop_on_close_codes: Collection[int] = DEFAULT_STOP_CODES,
                 device_id: str | None = None,
                 platform: str = "python",
                 rng: random.Random | None = None) -> None:
        self.url = url
        self._reconnect = reconnect
        self.backoff = backoff or Backoff()
        self._resume = resume
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._silence_timeout = silence_timeout
        self._stop_codes = frozenset(stop_on_close_codes)
        self._device_id = device_id
        self._platform = platform
        self._rng = rng or random.Random()

        self.stats = ClientStats()
        self._events = EventDispatcher(self._skip_stale, self._is_stale, self._handled)
        self._tokens = TokenSource(token, token_provider, self._events, self.stats,
                                   refresh_before=refresh_before, wait=token_wait)
        self._tracker = TopicTracker()
        self._floors: dict[tuple[str, str | None], int] = {}
        self._pending: dict[int, _Pending] = {}
        self._next_request_id = 0
        self._authen: dict[str, Any] | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._resyncs: set[asyncio.Task[None]] = set()
        self._closing = False
        self._error: HubError | None = None
        self._ping_after_s = DEFAULT_PING_AFTER_MS / 1000
        self._last_pong_sent = float("-inf")
        self._retry_at: float | None = None
        self._close_requested = asyncio.Event()
        self._logged_out: dict[str, Any] | None = None

    # -- public API ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while authenticated on a live connection."""
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        """True from a successful :meth:`connect` until :meth:`close` or a final error
        (reconnect attempts included)."""
        return self._runner is not None and not self._runner.done()

    @property
    def authen(self) -> dict[str, Any] | None:
        """The latest successful AUTHEN reply (``userId``, ``subscribe``, ``topics``, ...)."""
        return self._authen

    @property
    def user_id(self) -> str | None:
        """The authenticated user's id."""
        return self._authen.get("userId") if self._authen else None

    @property
    def token(self) -> str | None:
        """The token the next AUTHEN will use."""
        return self._tokens.token

    @property
    def retry_at(self) -> float | None:
        """When the next reconnect attempt is due (``time.time()`` seconds), while waiting."""
        return self._retry_at

    @property
    def error(self) -> HubError | None:
        """Why the client stopped, when it stopped on an error (a supervisor's logout:
        :class:`LoggedOutError`, with its ``reason`` and ``by``)."""
        return self._error

    @property
    def logged_out(self) -> dict[str, Any] | None:
        """The LOGGED_OUT notice of a supervisor's logout (``by``, ``reason``,
        ``holdMs``, ``until``), until the next :meth:`connect`."""
        return self._logged_out

    def positions(self) -> dict[str, TopicPosition]:
        """Each subscribed topic's epoch and last delivered seq."""
        return self._tracker.positions()

    def on(self, event: EventName, handler: Handler | None = None) -> Any:
        """Call ``handler(payload)`` on ``event``; plain or async, one at a time, in order.

        Events: ``messagefromtopic`` (the SUBSCRIBE_FROM_SERVER body: ``topic``, ``seq``,
        ``message``), ``authen`` (each AUTHEN reply, refusals included), ``connect``
        (``{"url"}``, socket open), ``disconnect`` (``{"code", "reason",
        "reconnecting"}``), ``otherdeviceauthen`` (the hub's body),
        ``requestnewtoken`` (``{"reason": "expiring" | "expired", "exp"}``: return a
        token or call :meth:`set_token`) and ``resync`` (``{"resync": True, "topic",
        "reason": "gap" | "not_recovered", "snapshot": reply | None, "lastSeq"}``: the
        topic's messages since ``lastSeq`` are replaced by ``snapshot``).
        Without ``handler``, returns a decorator.
        """
        if handler is None:
            def register(func: Handler) -> Handler:
                self._events.on(event, func)
                return func
            return register
        self._events.on(event, handler)
        return handler

    def off(self, event: EventName, handler: Handler) -> None:
        """Remove a handler added with :meth:`on` (no error when it is not there)."""
        self._events.off(event, handler)

    def messages(self) -> MessageStream:
        """An async iterator of topic messages (and resync events) from now on."""
        return self._events.stream()

    def set_token(self, token: str) -> None:
        """Use ``token`` from the next AUTHEN on (the answer to ``requestnewtoken``)."""
        self._tokens.set(token)

    async def connect(self, *, retry: bool = False) -> dict[str, Any]:
        """Connect and authenticate; return the AUTHEN reply.

        Raise :class:`AuthenticationError` when the token is refused (after asking for a
        new one once on ``r = 6``) and :class:`HubUnreachableError` when the hub cannot be
        reached, unless ``retry``, which keeps trying with the backoff. Once connected,
        the client keeps itself connected until :meth:`close`.
        """
        if self.running:
            if self._authen is not None and self.connected:
                return self._authen
            await self._wait_connected(self._request_timeout)
            assert self._authen is not None
            return self._authen
        self._closing = False
        self._close_requested = asyncio.Event()
        self._error = None
        self._logged_out = None  # asked to connect again: the logout is behind us
        self._events.start()
        attempt = 0
        while True:
            try:
                ws, reply, resumed = await self._open()
                if self._closing:  # close() was called meanwhile
                    ws.transport.abort()
                    raise ConnectionLostError("client closed while connecting")
                break
            except HubUnreachableError:
                if not retry or self.backoff.gives_up_after(attempt + 1):
                    self._events.stop()
                    raise
            except BaseException:
                self._events.stop()
                raise
            await self._sleep_before_attempt(attempt)
            attempt += 1
            if self._closing:
                self._events.stop()
                raise ConnectionLostError("client closed while connecting")
        self._attach(ws, reply, resumed)
        self._runner = asyncio.create_task(self._run(ws), name=f"hub-client {self.url}")
        if self._tokens.refresh_before is not None and (
                self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._tokens.refresh_forever())
        return reply

    async def change_attribute(self, name: str, value: Any, *,
                               timeout: float | None = None) -> dict[str, Any]:
        """Set the user's attribute ``name`` to ``value``; return the hub's reply.

        ``r = 0`` means the change is durable. Raises :class:`RefusedError` (``r`` 22 for
        a built-in attribute, 23 for a bad name or value, ...), or
        :class:`ConnectionLostError` when the connection dropped before the reply (the
        change may or may not have been applied; repeating it is harmless).
        """
        return await self.request(Service.CHANGE_ATTRIBUTE,
                                  {"attribute": name, "value": value}, timeout=timeout)

    # -- call control (docs/protocol.md, services 1010-1017) ------------------------------

    async def make_call(self, to: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Call user ``to``; the reply's ``call`` is ``Calling`` (or ``Ended`` with
        ``endReason: "busy"`` when nobody can take it). Every connection of the callee gets
        an ``incomingcall`` event; both parties get ``callstate`` on each transition."""
        return await self.request(CallService.MAKE_CALL, {"to": to}, timeout=timeout)

    async def ringing(self, call_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Tell the caller this device is ringing (callee only)."""
        return await self.request(CallService.RINGING, {"callId": call_id}, timeout=timeout)

    async def answer(self, call_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Answer a call (callee only; the first device to answer wins, others get r=27)."""
        return await self.request(CallService.ANSWER, {"callId": call_id}, timeout=timeout)

    async def reject(self, call_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Refuse a call that has not been answered (callee only)."""
        return await self.request(CallService.REJECT, {"callId": call_id}, timeout=timeout)

    async def hangup(self, call_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """End a call (either party)."""
        return await self.request(CallService.HANGUP, {"callId": call_id}, timeout=timeout)

    async def list_calls(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """This user's calls in progress."""
        reply = await self.request(CallService.LIST_CALLS, {}, timeout=timeout)
        return list(reply.get("calls", []))

    # -- supervisor actions (docs/protocol.md, services 1020-1022) ------------------------

    async def set_user_attribute(self, user_id: str, name: str, value: Any, *,
                                 reason: str | None = None,
                                 timeout: float | None = None) -> dict[str, Any]:
        """Set another user's attribute (a token with the ``supervise`` claim): published
        like the user's own change, with ``changedBy`` (and ``reason``). Raises
        :class:`RefusedError`: ``r`` 24 not permitted, 25 no such user, 22/23 as for
        :meth:`change_attribute`."""
        body: dict[str, Any] = {"userId": user_id, "attribute": name, "value": value}
        if reason is not None:
            body["reason"] = reason
        return await self.request(SupervisorService.SET_USER_ATTRIBUTE, body, timeout=timeout)

    async def log_out_user(self, user_id: str, *, reason: str | None = None,
                           timeout: float | None = None) -> dict[str, Any]:
        """Log another user out (a token with the ``supervise`` claim): each of the
        user's connections is told why and closed, and the user's logins are refused for
        the hub's ``logout_hold_ms`` (the reply's ``holdMs``). ``r`` 24 and 25 as above."""
        body: dict[str, Any] = {"userId": user_id}
        if reason is not None:
            body["reason"] = reason
        return await self.request(SupervisorService.LOGOUT_USER, body, timeout=timeout)

    async def snapshot(self, topic: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Read ``topic``'s current values (TOPIC_SNAPSHOT): ``epoch``, ``seq``, ``values``.

        Once it returns, handlers and streams only see messages of ``topic`` newer than
        the snapshot (``seq`` > the snapshot's), so it is safe to apply it and then apply
        messages. Raises :class:`RefusedError` with ``r = 24`` for a topic not granted.
        """
        def on_reply(body: dict[str, Any]) -> None:
            seq = body.get("seq")
            if body.get("r") == Result.SUCCESS and isinstance(seq, int):
                self._tracker.on_snapshot(topic, body)
                position = self._tracker.position(topic)
                key = (topic, position.epoch if position else None)
                self._floors[key] = max(self._floors.get(key, seq), seq)
        return await self.request(Service.TOPIC_SNAPSHOT, {"topic": topic},
                                  timeout=timeout, on_reply=on_reply)

    async def request(self, service: int, body: dict[str, Any], *,
                      timeout: float | None = None,
                      on_reply: Callable[[dict[str, Any]], None] | None = None
                      ) -> dict[str, Any]:
        """Send one request (a ``requestId`` is added) and return its reply.

        Waits for the connection while the client reconnects (within ``timeout``).
        Raises the typed error of a reply with ``r != 0``, :class:`RequestTimeoutError`,
        or :class:`ConnectionLostError`. ``on_reply`` runs in the reader, in frame order.
        """
        timeout = self._request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._wait_connected(timeout)
        ws = self._ws
        assert ws is not None
        request_id = self._new_request_id()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = _Pending(future, ws, on_reply)
        try:
            await ws.send(encode(service, {**body, "requestId": request_id}))
            async with asyncio.timeout_at(deadline):
                reply = await future
        except ConnectionClosed:
            raise ConnectionLostError("connection lost before the reply") from None
        except TimeoutError:
            raise RequestTimeoutError(
                f"no reply to service {int(service)} within {timeout:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        if reply.get("r") != Result.SUCCESS:
            raise error_for(reply.get("r"), reply.get("message"))
        return reply

    def drop_connection(self) -> bool:
        """Cut the current connection at once, with no close frame, as a network failure
        would; the client then reconnects and resumes as after any drop. For tests and
        simulations. False when there was no connection to cut."""
        ws = self._ws
        if ws is None or ws.transport is None or ws.transport.is_closing():
            return False
        ws.transport.abort()
        return True

    async def close(self) -> None:
        """Close the connection, stop reconnecting, end every stream. Idempotent."""
        self._closing = True
        self._close_requested.set()
        for task in (self._refresher, *self._resyncs):
            if task is not None:
                task.cancel()
        ws = self._ws
        if ws is not None:
            with suppress(Exception):
                await ws.close(1000, "client closed")
        runner = self._runner
        if runner is not None and not runner.done() and runner is not asyncio.current_task():
            runner.cancel()
            with suppress(asyncio.CancelledError):
                await runner
        self._detach(self._ws, 1000, "client closed", reconnecting=False)
        self._events.end_streams(None)
        dispatcher = self._events.stop()
        if dispatcher is not None and dispatcher is not asyncio.current_task():
            with suppress(asyncio.CancelledError):
                await dispatcher

    async def wait_closed(self) -> None:
        """Wait until the client stops for good; raise its error if it stopped on one."""
        if self._runner is not None:
            with suppress(asyncio.CancelledError):
                await asyncio.shield(self._runner)
        if self._error is not None and not self._closing:
            raise self._error

    async def __aenter__(self) -> HubClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connecting ----------------------------------------------------------------------

    async def _open(self) -> tuple[ClientConnection, dict[str, Any], list[str]]:
        """Open a socket and authenticate; asks for a new token once on ``r = 6``."""
        asked_for_token = False
        while True:
            if self._tokens.token is None and not await self._tokens.obtain("expired"):
                raise AuthenticationError("no access token", r=Result.TOKEN_MISSING)
            try:
                ws = await ws_connect(self.url, open_timeout=self._open_timeout,
                                      ping_interval=None, close_timeout=2,
                                      max_size=MAX_INCOMING_BYTES)
            except (OSError, TimeoutError, WebSocketException) as exc:
                raise HubUnreachableError(f"cannot reach {self.url}: {exc}") from exc
            self._events.emit("connect", {"url": self.url})
            try:
                reply, resumed = await self._authenticate(ws)
            except BaseException as exc:
                ws.transport.abort()
                if isinstance(exc, ConnectionClosed | OSError | TimeoutError):
                    raise HubUnreachableError(
                        f"connection lost during AUTHEN: {exc}") from exc
                raise
            self._events.emit("authen", reply)
            r = reply.get("r")
            if r == Result.SUCCESS:
                return ws, reply, resumed
            with suppress(Exception):
                await ws.close()
            if r == Result.LOGGED_OUT:  # a supervisor's logout, not long ago
                raise _logged_out_error(reply, r)
            if r == Result.TOKEN_EXPIRED and not asked_for_token:
                asked_for_token = True
                if await self._tokens.obtain("expired"):
                    continue
            raise error_for(r, reply.get("message"))

    async def _authenticate(self, ws: ClientConnection) -> tuple[dict[str, Any], list[str]]:
        request_id = self._new_request_id()
        body: dict[str, Any] = {"accesstoken": self._tokens.token, "requestId": request_id,
                                "platform": self._platform,
                                "sdkVersion": f"monitor-python/{__version__}"}
        if self._device_id:
            body["deviceId"] = self._device_id
        resume = self._tracker.resume_request() if self._resume else {}
        if resume:
            body["resume"] = resume
        await ws.send(encode(Service.AUTHEN, body))
        async with asyncio.timeout(self._request_timeout):
            while True:
                try:
                    service, reply = decode(await ws.recv())
                except (FrameError, RequestError):
                    continue
                if service == Service.AUTHEN and reply.get("requestId") == request_id:
                    return reply, list(resume)
                if service == Service.PING and "r" not in reply:
                    await ws.send(encode(Service.PING, {}))

    def _attach(self, ws: ClientConnection, reply: dict[str, Any], resumed: list[str]) -> None:
        """Make ``ws`` the live connection (no await: no frame can slip in between)."""
        self._ws = ws
        self._authen = reply
        ping_after = reply.get("ping_after_ms")
        if isinstance(ping_after, int | float) and ping_after > 0:
            self._ping_after_s = ping_after / 1000
        self.stats.authenticated += 1
        for topic in self._tracker.on_authen(reply, resumed):
            self._start_resync(topic, "not_recovered", ws)
        self._connected.set()

    def _detach(self, ws: ClientConnection | None, code: int | None, reason: str, *,
                reconnecting: bool) -> None:
        """Forget connection ``ws``: fail its requests, stop its resyncs, say so once."""
        if ws is None or ws is not self._ws:
            return
        self._ws = None
        self._connected.clear()
        for request_id, pending in list(self._pending.items()):
            if pending.ws is ws:
                del self._pending[request_id]
                if not pending.future.done():
                    pending.future.set_exception(
                        ConnectionLostError(f"connection lost before the reply ({reason})"))
        self._tracker.connection_lost()
        self._events.emit("disconnect",
                          {"code": code, "reason": reason, "reconnecting": reconnecting})

    async def _run(self, ws: ClientConnection) -> None:
        """Read the live connection; on a drop, reconnect until closed or refused."""
        current: ClientConnection | None = ws
        try:
            while current is not None:
                code, reason = await self._read(current)
                logged_out = self._logged_out is not None or code == CloseCode.LOGGED_OUT
                final = (self._closing or not self._reconnect or code in self._stop_codes
                         or logged_out)
                if final and not self._closing:
                    self._error = _logged_out_error(
                        self._logged_out or {"reason": reason}) if logged_out \
                        else ConnectionLostError(f"connection closed: {code} {reason}")
                self._detach(current, code, reason, reconnecting=not final)
                current = None if final else await self._reconnect_after_drop()
        finally:
            if self._ws is not None:
                self._ws.transport.abort()
                self._detach(self._ws, None, "client stopped", reconnecting=False)
            if not self._closing:  # stopped for good on its own: no more token refreshes
                if self._refresher is not None:
                    self._refresher.cancel()
                self._events.end_streams(self._error)

    async def _reconnect_after_drop(self) -> ClientConnection | None:
        attempt = 0
        while not self._closing:
            await self._sleep_before_attempt(attempt)
            attempt += 1
            if self._closing:
                break
            try:
                ws, reply, resumed = await self._open()
            except HubUnreachableError as exc:
                log.debug("reconnect attempt %d failed: %s", attempt, exc)
                if self.backoff.gives_up_after(attempt):
                    self._error = HubUnreachableError(
                        f"gave up after {attempt} reconnect attempts: {exc.message}")
                    return None
                continue
            except HubError as exc:
                log.warning("reconnect refused: %s", exc)
                self._error = exc
                return None
            if self._closing:  # close() was called while this attempt was under way
                ws.transport.abort()
                return None
            self.stats.reconnects += 1
            self._attach(ws, reply, resumed)
            return ws
        return None

    async def _read(self, ws: ClientConnection) -> tuple[int | None, str]:
        """Read frames until the connection ends; return its close code and reason.

        A hub silent for half the silence timeout gets a PING; silent for all of it,
        the connection is abandoned.
        """
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        pinged = False
        while True:
            silence = self._silence_timeout or self._ping_after_s + HUB_SILENCE_GRACE_S
            wake = last_heard + (silence if pinged else silence / 2)
            try:
                async with asyncio.timeout_at(wake):
                    raw = await ws.recv()
            except TimeoutError:
                if pinged:
                    self.stats.silent_hub += 1
                    ws.transport.abort()
                    return None, f"hub silent for {silence:g} s"
                pinged = True
                with suppress(ConnectionClosed):
                    await ws.send(encode(Service.PING, {"requestId": self._new_request_id()}))
                continue
            except ConnectionClosed as exc:
                close = exc.rcvd
                return (close.code, close.reason) if close else (None, "connection lost")
            last_heard, pinged = loop.time(), False
            try:
                service, body = decode(raw)
            except (FrameError, RequestError) as exc:
                log.warning("ignoring a bad frame from the hub: %s", exc)
                continue
            await self._handle(ws, service, body)

    async def _handle(self, ws: ClientConnection, service: int, body: dict[str, Any]) -> None:
        if service == Service.SUBSCRIBE_FROM_SERVER:
            self._on_topic_message(ws, body)
            return
        if service == Service.OTHER_DEVICE_AUTHEN:
            self._events.emit("otherdeviceauthen", body)
            return
        if service == CallService.INCOMING_CALL:
            self._events.emit("incomingcall", body)
            return
        if service == CallService.CALL_STATE:
            self._events.emit("callstate", body)
            return
        if service == SupervisorService.LOGGED_OUT:
            # A supervisor logged this user out: the hub closes the connection next, and
            # the client does not come back.
            self._logged_out = dict(body)
            self._events.emit("loggedout", body)
            return
        request_id = body.get("requestId")
        pending = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if pending is not None:
            if pending.on_reply is not None:
                pending.on_reply(body)
            if not pending.future.done():
                pending.future.set_result(body)
            return
        if service == Service.PING:
            # The hub's PING: answer. A PING carrying r or requestId answers ours; and a
            # PING right after our answer may be the hub answering it: no ping-pong.
            now = asyncio.get_running_loop().time()
            if ("r" not in body and request_id is None
                    and now - self._last_pong_sent >= min(1.0, self._ping_after_s / 2)):
                self._last_pong_sent = now
                with suppress(ConnectionClosed):
                    await ws.send(encode(Service.PING, {}))
            return
        log.debug("ignoring service %s from the hub: %s", service, body)

    # -- topics --------------------------------------------------------------------------

    def _on_topic_message(self, ws: ClientConnection, body: dict[str, Any]) -> None:
        verdict = self._tracker.on_message(body)
        if verdict is Verdict.DELIVER:
            self._deliver(body)
        elif verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
        elif verdict is Verdict.GAP:
            self.stats.gaps += 1
            log.info("gap on topic %s at seq %s: resyncing", body.get("topic"), body.get("seq"))
            self._start_resync(body["topic"], "gap", ws)

    def _deliver(self, body: dict[str, Any]) -> None:
        position = self._tracker.position(body.get("topic", ""))
        self.stats.delivered += 1
        self._events.emit("messagefromtopic", body, position.epoch if position else None)

    def _start_resync(self, topic: str, reason: str, ws: ClientConnection) -> None:
        position = self._tracker.position(topic)
        last_seq = position.seq if position else None
        task = asyncio.create_task(self._resync(topic, reason, last_seq, ws))
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync(self, topic: str, reason: str, last_seq: int | None,
                      ws: ClientConnection) -> None:
        """Snapshot ``topic``; the reply is applied in the reader, in frame order."""
        def finish(snapshot: dict[str, Any] | None, error: HubError | None = None) -> None:
            if ws is not self._ws or not self._tracker.resyncing(topic):
                return
            deliver, gap_again = self._tracker.resync_done(topic, snapshot)
            self.stats.resyncs += 1
            payload: dict[str, Any] = {"resync": True, "topic": topic, "reason": reason,
                                       "snapshot": snapshot, "lastSeq": last_seq}
            if error is not None:
                payload["error"] = error
            position = self._tracker.position(topic)
            self._events.emit("resync", payload, position.epoch if position else None)
            for body in deliver:
                self._deliver(body)
            if gap_again:
                self.stats.gaps += 1
                self._start_resync(topic, "gap", ws)

        def on_reply(body: dict[str, Any]) -> None:
            if body.get("r") == Result.SUCCESS:
                finish(body)
        try:
            await self.request(Service.TOPIC_SNAPSHOT, {"topic": topic}, on_reply=on_reply)
        except ConnectionLostError:
            return  # the next AUTHEN resumes from last_seq
        except HubError as exc:
            log.warning("snapshot of %s failed during resync: %s", topic, exc)
            finish(None, exc)

    def _is_stale(self, payload: dict[str, Any], epoch: str | None) -> bool:
        seq = payload.get("seq")
        floor = self._floors.get((payload.get("topic", ""), epoch))
        return floor is not None and isinstance(seq, int) and seq <= floor

    def _skip_stale(self, payload: dict[str, Any], epoch: str | None) -> bool:
        stale = self._is_stale(payload, epoch)
        if stale:
            self.stats.stale += 1
        return stale

    def _handled(self, event: str, result: Any) -> None:
        if event == "requestnewtoken" and isinstance(result, str) and result:
            self._tokens.set(result)

    # -- plumbing ------------------------------------------------------------------------

    async def _sleep_before_attempt(self, attempt: int) -> None:
        delay = self.backoff.delay(attempt, self._rng)
        self._retry_at = time.time() + delay
        try:
            await wait_event(self._close_requested, delay)  # close() cuts the wait short
        finally:
            self._retry_at = None

    def _new_request_id(self) -> int:
        self._next_request_id += 1
        return self._next_request_id

    async def _wait_connected(self, timeout: float) -> None:
        if self._connected.is_set():
            return
        if not self.running:
            raise self._error or ConnectionLostError("not connected")
        waiter = asyncio.ensure_future(self._connected.wait())
        assert self._runner is not None
        await asyncio.wait({waiter, self._runner}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._connected.is_set():
            return
        if self._runner.done():
            raise self._error or ConnectionLostError("client stopped")
        raise RequestTimeoutError(f"not connected within {timeout:g} s")


def _logged_out_error(body: dict[str, Any], r: int | None = None) -> LoggedOutError:
    """The error of a supervisor's logout, from its LOGGED_OUT notice or AUTHEN reply."""
    reason = body.get("reason")
    by = body.get("by")
    reason = reason if isinstance(reason, str) else None
    by = by if isinstance(by, str) else None
    wait_ms = body.get("retryAfterMs", body.get("holdMs"))
    message = body.get("message")
    if not isinstance(message, str) or not message:
        message = f"logged out by {by or 'a supervisor'}" + (f": {reason}" if reason else "")
    return LoggedOutError(
        message, r=r, reason=reason, by=by,
        retry_after=wait_ms / 1000 if isinstance(wait_ms, int | float)
        and not isinstance(wait_ms, bool) else None)
