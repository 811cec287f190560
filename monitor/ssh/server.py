"""The SSH front door: public-key login, then the monitor of the user's role on a pty.

The SSH user name is the hub userId. The door holds the project's API key and mints each
user's token itself from the roles file, so users need nothing but ``ssh`` and a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from monitor.config import user_data_dir
from monitor.ssh.access import Policy, SessionFiles
from monitor.ssh.access import RolesPolicy as RolesPolicy  # re-exported: its old home
from monitor.ssh.access import hub_url_from_config as hub_url_from_config
from monitor.ssh.access import sweep_stale_session_files as sweep_stale_session_files
from monitor.ssh.keys import HOST_KEY_NAME, AuthorizedKeys, load_or_create_host_key
from monitor.ssh.limits import (
    LOGIN_FAILURE_WINDOW_S,
    MAX_AUTH_TRIES,
    MAX_LOGIN_FAILURES,
    LoginThrottle,
)
from monitor.ssh.roles import Access
from monitor.ssh.session import MonitorSession

if TYPE_CHECKING:
    pass

log = logging.getLogger("monitor.ssh")


def default_host_key_path() -> Path:
    """Where the door keeps its host key unless told otherwise."""
    return user_data_dir() / HOST_KEY_NAME


@dataclass
class DoorOptions:
    """How the door listens and what it allows."""

    host: str = "127.0.0.1"
    port: int = 2222
    host_key: Path = field(default_factory=default_host_key_path)
    max_sessions: int = 20
    idle_timeout: float = 3600.0  # seconds without a keystroke; 0: never
    login_timeout: float = 30.0
    max_auth_tries: int = MAX_AUTH_TRIES
    """Failed attempts on one connection (a key refused, a change of user name) before
    it is cut."""
    max_login_failures: int = MAX_LOGIN_FAILURES
    """Failed logins from one address within ``login_failure_window`` seconds before
    its next connections are refused; 0: no limit."""
    login_failure_window: float = LOGIN_FAILURE_WINDOW_S


class Door:
    """The listening SSH server and its sessions."""

    def __init__(self, policy: Policy, hub_url: str, options: DoorOptions, *,
                 authorized_keys: AuthorizedKeys | None,
                 settings_path: str = os.devnull) -> None:
        """``authorized_keys`` ``None`` lets anyone in without a key (the demo)."""
        self.policy = policy
        self.hub_url = hub_url
        self.options = options
        self.authorized_keys = authorized_keys
        self.settings_path = settings_path
        self.sessions: set[MonitorSession] = set()
        self._all: set[MonitorSession] = set()
        self.connections: set[DoorConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self.host_key: asyncssh.SSHKey | None = None
        self.files: SessionFiles
        self.throttle = LoginThrottle(options.max_login_failures,
                                      options.login_failure_window)

    @property
    def max_sessions(self) -> int:
        return self.options.max_sessions

    @property
    def idle_timeout(self) -> float:
        return self.options.idle_timeout

    @property
    def port(self) -> int:
        assert self._acceptor is not None
        return self._acceptor.get_port()

    async def start(self) -> Door:
        """Load (or make) the host key and start listening."""
        self.host_key = load_or_create_host_key(self.options.host_key)
        self.files = SessionFiles(self.policy.mint)
        try:
            self._acceptor = await asyncssh.listen(
                self.options.host, self.options.port,
                server_factory=lambda: DoorConnection(self),
                server_host_keys=[self.host_key], encoding=None, line_editor=False,
                login_timeout=self.options.login_timeout, keepalive_interval=30,
                gss_host=None, kbdint_auth=False, password_auth=False,
                agent_forwarding=False, x11_forwarding=False)
        except BaseException:
            self.files.close()
            raise
        log.info("event=ssh_listening host=%s port=%d fingerprint=%s hub=%s max_sessions=%d "
                 "max_auth_tries=%d max_login_failures=%d login_failure_window=%g",
                 self.options.host, self.port, self.host_key.get_fingerprint(), self.hub_url,
                 self.max_sessions, self.options.max_auth_tries,
                 self.options.max_login_failures, self.options.login_failure_window)
        return self

    def track(self, session: MonitorSession) -> None:
        self._all.add(session)

    def admit(self, session: MonitorSession) -> bool:
        """Take a place for ``session``'s process, if one is free."""
        if len(self.sessions) >= self.max_sessions:
            return False
        self.sessions.add(session)
        return True

    def release(self, session: MonitorSession) -> None:
        self.sessions.discard(session)

    def forget(self, session: MonitorSession) -> None:
        self.release(session)
        self._all.discard(session)

    async def close(self) -> None:
        """Stop listening, end every session (their processes go), close every
        connection, remove the session files."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
        for session in list(self._all):
            session.end("shutdown")
        tasks = [s.task for s in self._all if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        # A client leaves once its session's channel is closed; closing its connection
        # before then could cut off the last words (why the session ended).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while any(c.authenticated for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            if connection.conn is not None:
                connection.conn.close()
        if acceptor is not None:
            # Since Python 3.12 this also waits for the connections to be gone.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(acceptor.wait_closed(), 5)
        self.files.close()


class DoorConnection(asyncssh.SSHServer):
    """One SSH connection: authentication, then its sessions; a refusal is logged once.

    Everything the client says before it is in (its user name, its keys) is logged as
    arguments of the log call, never inside the message, so the log's formatter quotes it.
    """

    def __init__(self, door: Door) -> None:
        self.door = door
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.host = "?"
        self.login: str | None = None
        self.access: Access | None = None
        self.refusal: str | None = None
        self.keys_tried: list[str] = []
        self.failures = 0
        self.authenticated = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.door.connections.add(self)
        peer = conn.get_extra_info("peername")
        if peer:
            self.host = str(peer[0])
            self.peer = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.connections.discard(self)
        if self.authenticated or self.refusal == "blocked":
            return
        if self.login is None:
            return  # never tried to log in (a port scan, ssh-keyscan)
        reason = self.refusal or ("key_not_authorized" if self.keys_tried
                                  else "no_key_offered")
        if exc is not None and "timeout" in str(exc).lower() and not self.keys_tried:
            reason = self.refusal or "login_timeout"
        log.warning("event=login_refused user=%s peer=%s reason=%s keys_tried=%s",
                    self.login, self.peer, reason, ",".join(self.keys_tried) or "none")
        throttle = self.door.throttle
        if throttle.failed(self.host):
            log.warning("event=login_blocked address=%s failures=%d window=%g seconds=%d",
                        throttle.key(self.host), throttle.max_failures, throttle.window,
                        math.ceil(throttle.blocked_for(self.host)))

    def _failed_attempt(self) -> None:
        """One more failed attempt on this connection: at the limit, it is cut."""
        self.failures += 1
        if self.failures >= self.door.options.max_auth_tries:
            self.refusal = "too_many_auth_failures"
            # asyncssh answers an exception from its callbacks with this disconnect,
            # instead of answering the request
            raise asyncssh.PermissionDenied("too many authentication failures")

    def begin_auth(self, username: str) -> bool:
        first = self.login is None
        self.login = username
        self.access = self.door.policy.access(username)
        if self.door.authorized_keys is None:
            return False  # the demo: anyone, no key needed
        wait = self.door.throttle.blocked_for(self.host)
        if wait > 0:
            # Refused at its first request, before any key is looked at. Not logged one
            # by one: the block was, once, when it began.
            self.refusal = "blocked"
            log.debug("event=connection_refused peer=%s reason=blocked seconds=%d",
                      self.peer, math.ceil(wait))
            raise asyncssh.DisconnectError(
                asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT,
                f"too many failed logins from {self.host}; try again in {math.ceil(wait)} s")
        if not first:
            self._failed_attempt()  # a new user name on the same connection: a guess
        self.refusal = None
        if self.access is None:
            self.refusal = "unknown_user"
        else:
            keys = self.door.authorized_keys.for_user(username)
            if keys is None:
                self.refusal = "no_authorized_keys"
            else:
                assert self.conn is not None
                self.conn.set_authorized_keys(keys)
        return True

    def auth_completed(self) -> None:
        self.authenticated = True
        log.info("event=login user=%s peer=%s", self.login, self.peer)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Only called for keys the authorized keys did not accept: note it for the log,
        # and count it against the connection's tries.
        fingerprint = key.get_fingerprint()
        if fingerprint not in self.keys_tried:
            self.keys_tried.append(fingerprint)
        self._failed_attempt()
        return False

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def session_requested(self) -> tuple[asyncssh.SSHServerChannel[bytes], MonitorSession]:
        assert self.conn is not None and self.access is not None and self.login is not None
        session = MonitorSession(self.door, self.access, self.login, self.peer)
        self.door.track(session)
        return self.conn.create_server_channel(encoding=None), session
