"""Who may come in through a door, the token each one gets, and how it is handed over.

Shared by the SSH door and the web door (``monitor web``), and free of asyncssh: a roles
file's users (or the demo's visitors), tokens signed with the project's API key, each in
a private file (0600 in a 0700 directory) that is rewritten before it expires.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from monitor.config import ConfigError
from monitor.ssh.roles import Access, Roles, load_roles
from monitor.tokens import mint_client_token

if TYPE_CHECKING:
    pass

log = logging.getLogger("monitor.ssh")

TOKEN_TTL_S = 3600
TOKEN_REFRESH_S = 900.0  # a token file always holds a token with 45 minutes or more left


class Policy(Protocol):
    """Who may come in, and the token each one gets."""

    def access(self, login: str) -> Access | None: ...

    def mint(self, access: Access) -> str: ...


class RolesPolicy:
    """Users from a roles file; tokens signed with the project's API key.

    With ``path``, the file is read again when it changes (at the next login), so users
    come and go without a restart; an edit that does not parse is logged and the last
    good roles stay.
    """

    def __init__(self, roles: Roles, key_sid: str, secret: str, *, path: Path | None = None,
                 ttl_s: int = TOKEN_TTL_S) -> None:
        self.roles = roles
        self.key_sid = key_sid
        self.secret = secret
        self.path = path
        self.ttl_s = ttl_s
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def current(self) -> Roles:
        """The roles, read again first if the file changed."""
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            assert self.path is not None
            try:
                self.roles = load_roles(self.path)
            except ConfigError as exc:
                log.error("event=roles_invalid error=%r kept=previous", str(exc))
            else:
                log.info("event=roles_reloaded path=%s users=%d", self.path,
                         len(self.roles.users))
        return self.roles

    def access(self, login: str) -> Access | None:
        return self.current().access(login)

    def mint(self, access: Access) -> str:
        return mint_client_token(self.key_sid, self.secret, access.user_id,
                                 subscribe=access.subscribe, attributes=access.attributes,
                                 display_name=access.display_name, ttl_s=self.ttl_s)


def sweep_stale_session_files(prefix: str = "monitor-ssh") -> None:
    """Remove the session directories of doors that died without cleaning up (SIGKILL)."""
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}-*-*"):
        pid = path.name.split("-")[2]
        try:
            if not pid.isdigit() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            log.info("event=stale_session_files_removed path=%s", path)
        except OSError:
            continue


class SessionFiles:
    """Each session's private directory (mode 0700): its token file, rewritten before the
    token expires, and its home, so whatever the monitor saves (a screenshot) stays
    there and goes with the session."""

    def __init__(self, mint: Callable[[Access], str], refresh_s: float = TOKEN_REFRESH_S,
                 prefix: str = "monitor-ssh") -> None:
        """``prefix`` names the door (``monitor-ssh``, ``monitor-web``) in the directory."""
        sweep_stale_session_files(prefix)
        # mode 0700; the door's pid in the name lets a later door clear up after a crash
        self.directory = tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-")
        self._mint = mint
        self._refresh_s = refresh_s
        self._active: dict[int, Access] = {}
        self._task = asyncio.create_task(self._refresh_forever(), name=f"{prefix}-token-refresh")

    def home(self, session_id: int) -> Path:
        return Path(self.directory) / f"session-{session_id}"

    def token_path(self, session_id: int) -> Path:
        return self.home(session_id) / "token"

    def create(self, session_id: int, access: Access) -> Path:
        """Make the session's directory with a fresh token for ``access``; the directory."""
        self.home(session_id).mkdir(mode=0o700)
        self._active[session_id] = access
        self._write(session_id)
        return self.home(session_id)

    def _write(self, session_id: int) -> None:
        path = self.token_path(session_id)
        new = path.with_suffix(".new")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self._mint(self._active[session_id]) + "\n")
        os.replace(new, path)  # a reader never sees half a token

    def remove(self, session_id: int) -> None:
        self._active.pop(session_id, None)
        shutil.rmtree(self.home(session_id), ignore_errors=True)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            for session_id in list(self._active):
                try:
                    self._write(session_id)
                except OSError as exc:
                    log.warning("event=token_refresh_failed session=%d error=%r",
                                session_id, str(exc))

    def close(self) -> None:
        self._task.cancel()
        shutil.rmtree(self.directory, ignore_errors=True)



def hub_url_from_config(host: str, ws_port: int) -> str:
    """The WebSocket URL of a hub configured to listen on ``host``:``ws_port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{ws_port}/"
