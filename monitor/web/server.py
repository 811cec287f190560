"""The web door: the monitor in a browser (aiohttp, with textual-serve's terminal).

Each browser session gets its own ``monitor tui`` process, run by textual-serve's
:class:`~textual_serve.app_service.AppService` (Textual's web driver on the other end of
its pipes), with a token minted for the session's user and role and handed over as a
private file, as the SSH door does. Who may come in is a *gate*: users of a roles file
with signed invitations and a session cookie, or anyone at all (the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import re
import shlex
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import textual_serve
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from monitor.ssh.access import RolesPolicy, SessionFiles
from monitor.ssh.limits import LOGIN_FAILURE_WINDOW_S, MAX_LOGIN_FAILURES, LoginThrottle
from monitor.ssh.roles import Access
from monitor.web.invites import INVITE, SESSION, Pass, PassError, WebState
from monitor.web.pages import SECURITY_HEADERS, invitation_needed_page, terminal_page
from monitor.web.session_files import PID_FILE, STDERR_FILE

if TYPE_CHECKING:
    pass

log = logging.getLogger("monitor.web")

DEFAULT_PORT = 8470
COOKIE = "monitor_session"
#: WebSocket close codes the page (static/monitor.js) explains to the user.
CLOSE_ENDED = 4000  # the monitor was quit
CLOSE_IDLE = 4001
CLOSE_EXPIRED = 4002  # the session expired or was revoked, or its user left the roles
CLOSE_BUSY = 4003  # every session is in use
CLOSE_FAILED = 4004  # the monitor stopped without being quit
CLOSE_GOING_AWAY = 1001  # the door is shutting down
MAX_MESSAGE_BYTES = 64 * 1024  # a browser message: a keystroke, a paste, a resize
MAX_CELLS = 1000  # columns or rows a browser may ask for
STOP_GRACE_S = 3.0  # after "quit", before SIGTERM; then as long again before SIGKILL
STATIC = Path(__file__).resolve().parent / "static"
TEXTUAL_STATIC = Path(textual_serve.__file__).resolve().parent / "static"
#: Where the ``monitor`` package lives: the child imports the same code as the door.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: What textual-serve sets for the app (its driver, size, colours); the child's
#: environment is these and ours, nothing else of the door's.
PASSED_ENV = ("TEXTUAL_DRIVER", "TEXTUAL_FPS", "TEXTUAL_COLOR_SYSTEM", "TERM_PROGRAM",
              "TERM_PROGRAM_VERSION", "COLUMNS", "ROWS")
_FILE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")
_session_ids = itertools.count(1)


class Refused(Exception):
    """A visitor the gate does not let in: ``reason`` for the log, ``message`` for them."""

    def __init__(self, reason: str, message: str, user: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.user = user


@dataclass(frozen=True)
class Visitor:
    """Someone the gate let in: what they may do, and the pass that let them."""

    access: Access
    session: Pass | None = None  # the session cookie's; None in the demo


class Gate(Protocol):
    """Who may come in through the web door."""

    needs_invitation: bool
    secure_cookie: bool

    def visitor(self, request: web.Request) -> Visitor: ...

    def still_in(self, visitor: Visitor) -> tuple[int, str, str] | None: ...

    def mint(self, access: Access) -> str: ...


class InvitationGate:
    """Users of a roles file, each let in by an invitation, then by its session cookie.

    Both are checked again and again: at each request, and every second for the sessions
    that run, against their expiry, the revocations and the roles file (a user removed
    from it, or given another role, is out).
    """

    needs_invitation = True

    def __init__(self, policy: RolesPolicy, state: WebState, *, secure_cookie: bool) -> None:
        self.policy = policy
        self.state = state
        self.signer = state.signer()
        self.secure_cookie = secure_cookie

    def _check(self, found: Pass) -> Access:
        if self.state.is_revoked(found):
            raise Refused("revoked", "Your access was revoked: ask for a new invitation.",
                          found.user)
        user = self.policy.current().users.get(found.user)
        if user is None:
            raise Refused("unknown_user", "This user may no longer come in.", found.user)
        if user.role != found.role:
            raise Refused("role_changed", "Your role has changed: ask for a new invitation.",
                          found.user)
        access = self.policy.access(found.user)
        assert access is not None
        return access

    def login(self, invitation: object) -> tuple[str, Pass]:
        """The session cookie for ``invitation``, and the session's pass."""
        if not isinstance(invitation, str):
            raise Refused("malformed", "This link is not an invitation.")
        try:
            found = self.signer.verify(INVITE, invitation)
        except PassError as exc:
            raise Refused(exc.reason, str(exc)) from None
        self._check(found)
        cookie = self.signer.sign(SESSION, found.user, found.role, found.expires,
                                  pass_id=found.id)
        return cookie, self.signer.verify(SESSION, cookie)

    def visitor(self, request: web.Request) -> Visitor:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise Refused("no_session", "You need an invitation to watch the monitor here.")
        try:
            found = self.signer.verify(SESSION, cookie)
        except PassError as exc:
            message = ("Your session has expired: ask for a new invitation."
                       if exc.reason == "expired" else "Your session is not valid here.")
            raise Refused(exc.reason, message) from None
        return Visitor(self._check(found), found)

    def still_in(self, visitor: Visitor) -> tuple[int, str, str] | None:
        """``None`` while the visitor's session holds, else how to close it."""
        found = visitor.session
        assert found is not None
        if found.expires <= time.time():
            return (CLOSE_EXPIRED, "Your session has expired: ask for a new invitation.",
                    "expired")
        try:
            self._check(found)
        except Refused as refused:
            return CLOSE_EXPIRED, refused.message, refused.reason
        return None

    def mint(self, access: Access) -> str:
        return self.policy.mint(access)


@dataclass
class WebOptions:
    """How the web door listens and what it allows."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_sessions: int = 20
    idle_timeout: float = 3600.0  # seconds without input from the browser; 0: never
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None  # as users reach it (behind a reverse proxy)
    settings_path: str = os.devnull
    max_login_failures: int = MAX_LOGIN_FAILURES
    login_failure_window: float = LOGIN_FAILURE_WINDOW_S


class _ToOurLog(logging.Handler):
    """Sends textual-serve's and aiohttp's log records to ours, as one escaped field: by
    default they would go to the root logger, and from there raw to standard error,
    which may be the demo's monitor's terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, "event=library_log logger=%s message=%r", record.name,
                record.getMessage())


def _adopt_library_logs() -> None:
    for name in ("textual-serve", "aiohttp"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ToOurLog) for h in logger.handlers):
            logger.addHandler(_ToOurLog())
        logger.propagate = False


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def child_command(hub_url: str, home: Path, settings_path: str, read_only: bool) -> str:
    """The shell command textual-serve runs for a session (it takes a command line).

    The process starts in the session's directory with a fresh environment: textual-
    serve's variables for the app, ours, nothing else of the door's (``env -i``). The
    token is only named, by ``--token-file``.
    """
    fixed = {
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
        "PYTHONIOENCODING": "utf-8",
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": os.pathsep.join(
            p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p),
        "HOME": str(home),
        # Themes are read from the door's user's config dir; nothing is written there.
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME")
        or os.path.join(os.path.expanduser("~"), ".config"),
    }
    if "TZ" in os.environ:
        fixed["TZ"] = os.environ["TZ"]
    argv = [sys.executable, "-m", "monitor.web.child", "tui", "--url", hub_url,
            "--token-file", str(home / "token"), "--settings", settings_path]
    if read_only:
        argv.append("--read-only")
    # ${NAME+"NAME=$NAME"}: passed on only if textual-serve set it
    passed = [f'${{{name}+"{name}=${name}"}}' for name in PASSED_ENV]
    return " ".join(["cd", shlex.quote(str(home)), "&&", "exec", "env", "-i", *passed,
                     *(shlex.quote(f"{k}={v}") for k, v in fixed.items()),
                     *(shlex.quote(a) for a in argv)])


class MonitorProcess(AppService):
    """textual-serve's app service, which also says when its process has gone."""

    def __init__(self, command: str, **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.gone = asyncio.Event()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            # run() ends when the process's output ends, i.e. it exited (or when cancelled,
            # which the door never does)
            self.gone.set()


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"


class WebSession:
    """One browser tab's WebSocket and the monitor process behind it."""

    def __init__(self, door: WebDoor, visitor: Visitor, ws: web.WebSocketResponse, peer: str,
                 size: tuple[int, int]) -> None:
        self.door = door
        self.visitor = visitor
        self.ws = ws
        self.peer = peer
        self.size = size
        self.id = next(_session_ids)
        self.last_input = time.monotonic()
        self.service: MonitorProcess | None = None
        self.pid: int | None = None
        self._started = False
        self._ending: asyncio.Future[tuple[int, str, str]] = \
            asyncio.get_running_loop().create_future()
        self.done = asyncio.Event()

    @property
    def user(self) -> str:
        return self.visitor.access.user_id

    def end(self, code: int, text: str, reason: str) -> None:
        """End the session: the browser is told ``text``; the process goes."""
        if not self._ending.done():
            self._ending.set_result((code, text, reason))

    async def _app_exited(self) -> None:
        # textual-serve calls this when the app says it is exiting: the user quit
        self.end(CLOSE_ENDED, "Session ended.", "quit")

    async def _to_browser(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            self.pid = self._read_pid()
            log.info("event=session_start user=%s peer=%s pid=%s size=%dx%d sessions=%d",
                     self.user, self.peer, self.pid, self.size[0], self.size[1],
                     len(self.door.sessions))
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_bytes(data)

    async def _text_to_browser(self, text: str) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)

    def _read_pid(self) -> int | None:
        try:
            return int((self.door.files.home(self.id) / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    async def run(self) -> None:
        """Start the monitor, relay until it ends or the session does, then clean up."""
        door = self.door
        started = time.monotonic()
        reason = "failed"
        home = door.files.create(self.id, self.visitor.access)
        service = self.service = MonitorProcess(
            child_command(door.hub_url, home, door.options.settings_path,
                          self.visitor.access.read_only),
            write_bytes=self._to_browser, write_str=self._text_to_browser,
            close=self._app_exited, download_manager=door.downloads)
        door.services[service] = self
        reader: asyncio.Task[None] | None = None
        gone: asyncio.Task[bool] | None = None
        try:
            await service.start(*self.size)
            reader = asyncio.create_task(self._from_browser(service))
            gone = asyncio.create_task(service.gone.wait())
            waited: set[asyncio.Future[Any]] = {reader, gone, self._ending}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if self._ending.done():
                code, text, reason = self._ending.result()
            elif gone.done():
                code, text, reason = CLOSE_FAILED, "The monitor stopped unexpectedly.", "failed"
            else:
                code, text, reason = 0, "", "disconnect"
            if reason == "failed":
                self._log_failure()
            if code:
                with contextlib.suppress(ConnectionError):
                    await self.ws.close(code=code, message=text.encode("utf-8"))
        finally:
            for task in (reader, gone):
                if task is not None:
                    task.cancel()
            await self._stop(service)
            door.services.pop(service, None)
            door.files.remove(self.id)
            log.info("event=session_end user=%s peer=%s reason=%s seconds=%.1f",
                     self.user, self.peer, reason, time.monotonic() - started)
            self.done.set()

    def _log_failure(self) -> None:
        try:
            tail = (self.door.files.home(self.id) / STDERR_FILE).read_text(
                encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            tail = ""
        log.error("event=session_failed user=%s stderr=%r", self.user, tail)

    async def _from_browser(self, service: MonitorProcess) -> None:
        """What the page sends (textual.js's protocol): keys, resizes, focus, pings."""
        async for message in self.ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                self.last_input = time.monotonic()
                await service.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                width, height = data.get("width"), data.get("height")
                if isinstance(width, int) and isinstance(height, int) \
                        and 0 < width <= MAX_CELLS and 0 < height <= MAX_CELLS:
                    self.size = (width, height)
                    await service.set_terminal_size(width, height)
            elif kind == "ping" and isinstance(data, str) and len(data) <= 64:
                await self.ws.send_json(["pong", data])
            elif kind == "blur":
                await service.blur()
            elif kind == "focus":
                await service.focus()

    async def _stop(self, service: MonitorProcess) -> None:
        """Ask the monitor to quit; past the grace, end its process group."""
        if not service.gone.is_set():
            with contextlib.suppress(Exception):
                await service.send_meta({"type": "quit"})
            for sig in (signal.SIGTERM, signal.SIGKILL, None):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(service.gone.wait(), STOP_GRACE_S)
                if service.gone.is_set() or sig is None:
                    break
                # its output is still open, so it has not exited: the pid is still its own
                pid = self.pid or self._read_pid()
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, sig)
        with contextlib.suppress(Exception):
            # textual-serve's own clean-up (downloads); the process is gone by now
            await asyncio.wait_for(service.stop(), 1.0)


class WebDoor:
    """The listening web server and its sessions."""

    def __init__(self, gate: Gate, hub_url: str, options: WebOptions,
                 state: WebState | None = None, roles_path: Path | None = None) -> None:
        self.gate = gate
        self.hub_url = hub_url
        self.options = options
        self.state = state
        self.roles_path = roles_path
        self.sessions: set[WebSession] = set()
        self.services: dict[AppService, WebSession] = {}
        self.downloads = DownloadManager()
        self.throttle = LoginThrottle(options.max_login_failures, options.login_failure_window)
        self.files: SessionFiles
        self.url = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._allowed_hosts: set[str] | None = None
        self._public_origin: str | None = None

    @property
    def tls(self) -> bool:
        return self.options.tls_cert is not None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> WebDoor:
        """Start listening (``port`` 0: any free port)."""
        options = self.options
        context = None
        if options.tls_cert is not None:
            assert options.tls_key is not None
            context = tls_context(options.tls_cert, options.tls_key)
        _adopt_library_logs()
        self.files = SessionFiles(self.gate.mint, prefix="monitor-web")
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES,
                              middlewares=[self._guard])
        app.add_routes([
            web.get("/", self.handle_index),
            web.post("/login", self.handle_login),
            web.get("/ws", self.handle_websocket),
            web.get("/download/{key}", self.handle_download),
            web.static("/static/monitor", STATIC),
            web.static("/static/textual", TEXTUAL_STATIC),
        ])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, options.host, options.port, ssl_context=context)
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self.files.close()
            raise
        self.port = int(self._runner.addresses[0][1])
        self._set_addresses()
        if self.state is not None:
            self.state.record_door(self.url, str(self.roles_path) if self.roles_path else None)
        self._sweeper = asyncio.create_task(self._sweep(), name="web-sweeper")
        log.info("event=web_listening host=%s port=%d url=%s tls=%s hub=%s max_sessions=%d "
                 "idle_timeout=%g invitations=%s", options.host, self.port, self.url,
                 "yes" if self.tls else "no", self.hub_url, options.max_sessions,
                 options.idle_timeout, "yes" if self.gate.needs_invitation else "no")
        return self

    def _set_addresses(self) -> None:
        """The door's URL, and which ``Host`` headers it answers (against DNS rebinding:
        a page of another site whose name is made to resolve to this machine)."""
        options = self.options
        scheme = "https" if self.tls else "http"
        host = options.host
        wildcard = host in ("", "0.0.0.0", "::")
        shown = f"[{host}]" if ":" in host else host
        if options.public_url:
            parts = urlsplit(options.public_url)
            self.url = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
            if not self.url.endswith("/"):
                self.url += "/"
            self._public_origin = f"{parts.scheme}://{parts.netloc}".lower()
            self._allowed_hosts = {parts.netloc.lower()}
        elif wildcard:
            self.url = f"{scheme}://{os.uname().nodename}:{self.port}/"
            self._allowed_hosts = None  # any name: docs/web.md says to set --public-url
        else:
            self.url = f"{scheme}://{shown}:{self.port}/"
            self._allowed_hosts = {f"{shown}:{self.port}".lower()}
            if host in ("127.0.0.1", "::1", "localhost"):
                self._allowed_hosts |= {f"{name}:{self.port}"
                                        for name in ("127.0.0.1", "localhost", "[::1]")}

    async def close(self) -> None:
        """End every session (telling each browser why), stop listening, clean up."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions):
            session.end(CLOSE_GOING_AWAY, "The server is shutting down.", "shutdown")
        waits = [asyncio.create_task(s.done.wait()) for s in self.sessions]
        if waits:
            await asyncio.wait(waits, timeout=10)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.files.close()

    async def _sweep(self) -> None:
        """Every second: end the sessions that idled out, expired or were revoked."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            timeout = self.options.idle_timeout
            for session in list(self.sessions):
                if timeout and now - session.last_input >= timeout:
                    session.end(CLOSE_IDLE, f"Session closed: no input for "
                                            f"{_minutes(timeout)}.", "idle")
                elif (why := self.gate.still_in(session.visitor)) is not None:
                    session.end(*why)

    # -- requests -------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        """Only this door's host names; security headers on every answer."""
        if self._allowed_hosts is not None and request.host.lower() not in self._allowed_hosts:
            log.warning("event=request_refused peer=%s reason=unknown_host host=%s",
                        request.remote, request.host)
            return web.Response(status=421, text="This server does not answer for that "
                                                 "host name.\n")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        if not response.prepared:  # a WebSocket's upgrade has gone out already
            response.headers.update(SECURITY_HEADERS)
            if self.tls:
                response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            if not request.path.startswith("/static/"):
                response.headers["Cache-Control"] = "no-store"
        return response

    def _origin_ok(self, request: web.Request) -> bool:
        """True if the request comes from this door's own page (browsers always send
        ``Origin`` with a WebSocket and with a ``fetch`` POST)."""
        origin = request.headers.get("Origin", "").lower()
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.path or not parts.netloc:
            return False
        if self._public_origin is not None:
            return origin == self._public_origin
        return parts.netloc == request.host.lower()

    async def handle_index(self, request: web.Request) -> web.Response:
        try:
            visitor = None if not self.gate.needs_invitation else self.gate.visitor(request)
        except Refused as refused:
            if refused.reason != "no_session":
                log.info("event=session_refused user=%s peer=%s reason=%s", refused.user,
                         request.remote, refused.reason)
            response = web.Response(status=401, text=invitation_needed_page(
                refused.message if refused.reason != "no_session" else None),
                content_type="text/html")
            if refused.reason != "no_session":
                response.del_cookie(COOKIE, path="/")
            return response
        try:
            font_size = max(6, min(int(request.query.get("fontsize", "16")), 96))
        except ValueError:
            font_size = 16
        title = "monitor" if visitor is None else f"monitor: {visitor.access.user_id}"
        return web.Response(text=terminal_page(title, font_size), content_type="text/html")

    async def handle_login(self, request: web.Request) -> web.Response:
        """Trade an invitation (posted by static/login.js) for a session cookie."""
        peer = request.remote or "?"
        if not isinstance(self.gate, InvitationGate):
            raise web.HTTPNotFound()
        if not self._origin_ok(request):
            log.warning("event=login_refused user=None peer=%s reason=bad_origin origin=%s",
                        peer, request.headers.get("Origin"))
            return web.json_response({"error": "Refused: not from this site."}, status=403)
        wait = self.throttle.blocked_for(peer)
        if wait > 0:
            return web.json_response({"error": f"Too many failed logins from here; try again "
                                               f"in {math.ceil(wait)} s."}, status=429)
        try:
            body = await request.json() if request.content_type == "application/json" \
                else None
        except ValueError:
            body = None
        try:
            cookie, session = self.gate.login(
                body.get("invite") if isinstance(body, dict) else None)
        except Refused as refused:
            log.warning("event=login_refused user=%s peer=%s reason=%s", refused.user, peer,
                        refused.reason)
            if self.throttle.failed(peer):
                log.warning("event=login_blocked address=%s failures=%d window=%g seconds=%d",
                            self.throttle.key(peer), self.throttle.max_failures,
                            self.throttle.window, math.ceil(self.throttle.blocked_for(peer)))
            return web.json_response({"error": refused.message}, status=403)
        log.info("event=login user=%s peer=%s role=%s invitation=%s expires=%s",
                 session.user, peer, session.role, session.id,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.expires)))
        response = web.Response(status=204)
        response.set_cookie(COOKIE, cookie, path="/", httponly=True, samesite="Strict",
                            secure=self.gate.secure_cookie,
                            max_age=max(1, int(session.expires - time.time())))
        return response

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        """The terminal's WebSocket: the session's monitor process, relayed."""
        peer = request.remote or "?"
        if not self._origin_ok(request):
            log.warning("event=session_refused user=None peer=%s reason=bad_origin origin=%s",
                        peer, request.headers.get("Origin"))
            return web.Response(status=403, text="Refused: not from this site.\n")
        try:
            visitor = self.gate.visitor(request)
        except Refused as refused:
            log.warning("event=session_refused user=%s peer=%s reason=%s", refused.user, peer,
                        refused.reason)
            return web.Response(status=401, text=refused.message + "\n")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        if len(self.sessions) >= self.options.max_sessions:
            log.warning("event=session_refused user=%s peer=%s reason=session_cap "
                        "max_sessions=%d", visitor.access.user_id, peer,
                        self.options.max_sessions)
            await ws.close(code=CLOSE_BUSY, message=(
                f"All {self.options.max_sessions} sessions are in use; try again later."
            ).encode())
            return ws
        size = (_cells(request.query.get("width"), 80), _cells(request.query.get("height"), 24))
        session = WebSession(self, visitor, ws, peer, size)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
        return ws

    async def handle_download(self, request: web.Request) -> web.StreamResponse:
        """A file the monitor delivers to the browser (a screenshot from the palette)."""
        key = request.match_info["key"]
        try:
            download = await self.downloads.get_download_metadata(key)
        except KeyError:
            raise web.HTTPNotFound() from None
        owner = self.services.get(download.app_service)
        if owner is None:
            raise web.HTTPNotFound()
        if self.gate.needs_invitation:
            try:
                visitor = self.gate.visitor(request)
            except Refused:
                raise web.HTTPNotFound() from None
            if visitor.access.user_id != owner.user:
                raise web.HTTPNotFound()
        response = web.StreamResponse()
        content_type = download.mime_type
        if download.encoding:
            content_type += f"; charset={download.encoding}"
        response.headers["Content-Type"] = content_type
        disposition = "inline" if download.open_method == "browser" else "attachment"
        name = _FILE_NAME_RE.sub("_", download.file_name)[:100] or "download"
        response.headers["Content-Disposition"] = f'{disposition}; filename="{name}"'
        response.headers.update(SECURITY_HEADERS)
        await response.prepare(request)
        async for chunk in self.downloads.download(key):
            await response.write(chunk)
        await response.write_eof()
        return response


def _cells(text: str | None, default: int) -> int:
    try:
        value = int(text or "")
    except ValueError:
        return default
    return value if 0 < value <= MAX_CELLS else default
