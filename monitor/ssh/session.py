"""One SSH session: the monitor in its own process on a pty, relayed to the SSH channel.

The monitor's terminal driver owns its process (one app per process), so every session
gets ``python -m monitor.ssh.child tui ...``. The access token goes in a private file
(mode 0600 in a 0700 directory) named by ``--token-file``, never on the command line; the
door rewrites it before it expires and removes it when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from monitor.ssh.access import SessionFiles
from monitor.ssh.roles import Access
from monitor.ssh.terminal import PtyProcess

log = logging.getLogger("monitor.ssh")

DEFAULT_TERM = "xterm-256color"
_TERM_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}")
#: Where the ``monitor`` package lives: the child imports the same code as the door.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: Leave every mode a killed full-screen app may have left on: mouse reports, focus
#: events, bracketed paste, the kitty keyboard protocol, colours, a hidden cursor, the
#: alternate screen.
TERMINAL_RESET = ("\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?1004l"
                  "\x1b[?2004l\x1b[<u\x1b[0m\x1b[?25h\x1b[?1049l")

NO_PTY_TEXT = ("monitor: this door shows the live monitor, which needs a terminal: "
               "connect with `ssh -t`.\r\n")
NO_COMMAND_TEXT = ("monitor: this door runs only the live monitor, no commands: "
                   "connect without one.\r\n")
_session_ids = itertools.count(1)


def child_env(term: str | None, client_env: Mapping[str, str], home: str) -> dict[str, str]:
    """The child's environment: built fresh, so nothing of the door's (tokens, secrets)
    leaks into it; ``TERM`` from the client, UTF-8 everywhere; ``home`` its own."""
    env = {
        "TERM": term if term and _TERM_RE.fullmatch(term) else DEFAULT_TERM,
        "LANG": "C.UTF-8",
        "PYTHONUTF8": "1",
        "PYTHONIOENCODING": "utf-8",
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": os.pathsep.join(
            p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p),
        "HOME": home,
        # Themes are read from the door's user's config dir; nothing is written there.
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME")
        or os.path.join(os.path.expanduser("~"), ".config"),
    }
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    colorterm = client_env.get("COLORTERM", "")
    if colorterm in ("truecolor", "24bit"):
        env["COLORTERM"] = colorterm
    if "NO_COLOR" in client_env:
        env["NO_COLOR"] = "1"
    return env


class SessionDoor(Protocol):
    """What a session needs of its door (:class:`monitor.ssh.server.Door`)."""

    hub_url: str
    settings_path: str
    files: SessionFiles
    sessions: set[MonitorSession]

    @property
    def max_sessions(self) -> int: ...

    @property
    def idle_timeout(self) -> float: ...

    def admit(self, session: MonitorSession) -> bool: ...

    def release(self, session: MonitorSession) -> None: ...

    def forget(self, session: MonitorSession) -> None: ...


class MonitorSession(asyncssh.SSHServerSession):  # type: ignore[type-arg]  # generic at run time only
    """Runs the monitor for one SSH channel of an authenticated user."""

    def __init__(self, door: SessionDoor, access: Access, login: str, peer: str) -> None:
        self._door = door
        self.access = access
        self.login = login  # the SSH user name (the userId, except in the demo)
        self.peer = peer
        self.id = next(_session_ids)
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._term: str | None = None
        self._size = (80, 24, 0, 0)
        self._command: str | None = None
        self._process: PtyProcess | None = None
        self._typed_early = bytearray()  # keys typed while the process starts
        self._last_input = time.monotonic()
        self._gone = False  # the channel is closed
        self._ending: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    # -- asyncssh callbacks ---------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        self._term = term_type or DEFAULT_TERM
        if term_size[0] > 0 and term_size[1] > 0:
            self._size = term_size
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True  # accepted, to explain why it will not run

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"ssh-session-{self.id}")

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._last_input = time.monotonic()
        if self._process is not None:
            self._process.write(data)
        elif len(self._typed_early) < 4096:
            self._typed_early += data

    def terminal_size_changed(self, width: int, height: int, pixwidth: int,
                              pixheight: int) -> None:
        if width > 0 and height > 0:
            self._size = (width, height, pixwidth, pixheight)
            if self._process is not None:
                self._process.resize(width, height, pixwidth, pixheight)

    def eof_received(self) -> bool:
        return True  # the monitor keeps running until it quits or the session closes

    def pause_writing(self) -> None:
        if self._process is not None:
            self._process.pause_output()

    def resume_writing(self) -> None:
        if self._process is not None:
            self._process.resume_output()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self.end("disconnect")
        if self.task is None:
            self._door.forget(self)

    # -- running --------------------------------------------------------------------------

    def end(self, reason: str) -> None:
        """End the session (``disconnect``, ``idle``, ``shutdown``); its process goes."""
        if not self._ending.done():
            self._ending.set_result(reason)

    async def _run(self) -> None:
        assert self._chan is not None
        try:
            if self._command is not None:
                self._finish(1, NO_COMMAND_TEXT)
            elif self._term is None:
                self._finish(1, NO_PTY_TEXT)
            elif not self._door.admit(self):
                log.warning("event=login_refused user=%s peer=%s reason=session_cap "
                            "max_sessions=%d", self.login, self.peer,
                            self._door.max_sessions)
                self._finish(1, f"monitor: all {self._door.max_sessions} sessions are in "
                                "use; try again later.\r\n")
            else:
                try:
                    await self._serve()
                finally:
                    self._door.release(self)
        except Exception:
            log.exception("event=session_failed user=%s", self.login)
            self._finish(1, TERMINAL_RESET + "monitor: the session failed.\r\n")
        finally:
            self._door.forget(self)

    async def _serve(self) -> None:
        assert self._chan is not None
        started = time.monotonic()
        home = self._door.files.create(self.id, self.access)
        process = PtyProcess(self._output)
        argv = [sys.executable, "-m", "monitor.ssh.child", "tui", "--url", self._door.hub_url,
                "--token-file", str(home / "token"), "--settings", self._door.settings_path]
        if self.access.read_only:
            argv.append("--read-only")
        exited: asyncio.Task[int] | None = None
        idle = asyncio.create_task(self._idle())
        reason = "failed"
        try:
            env = child_env(self._term, self._chan.get_environment(), str(home))
            await process.start(argv, env, self._size[:2], cwd=str(home))
            self._process = process
            process.write(bytes(self._typed_early))
            log.info("event=session_start user=%s peer=%s pid=%s term=%s size=%dx%d "
                     "sessions=%d", self.login, self.peer, process.pid, self._term,
                     self._size[0], self._size[1], len(self._door.sessions))
            exited = asyncio.create_task(process.wait())
            waited: set[asyncio.Future[Any]] = {exited, idle, self._ending}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                reason = "quit"
                self._finish(exited.result())
            else:
                reason = self._ending.result() if self._ending.done() else "idle"
                await process.terminate()
                if reason != "disconnect":
                    why = ("no input for " + _minutes(self._door.idle_timeout)
                           if reason == "idle" else "the server is shutting down")
                    self._finish(0, f"{TERMINAL_RESET}\r\nmonitor: session closed: {why}.\r\n")
        finally:
            idle.cancel()
            if exited is not None:
                exited.cancel()
            await process.terminate()
            process.close()
            self._process = None
            self._door.files.remove(self.id)
            log.info("event=session_end user=%s peer=%s reason=%s seconds=%.1f",
                     self.login, self.peer, reason, time.monotonic() - started)

    async def _idle(self) -> None:
        """Return once no input has come for the door's idle timeout (never if 0)."""
        timeout = self._door.idle_timeout
        if not timeout:
            await asyncio.Event().wait()
        while (left := self._last_input + timeout - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def _output(self, data: bytes) -> None:
        if self._chan is not None and not self._gone:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._chan.write(data)

    def _finish(self, status: int, text: str = "") -> None:
        """Say ``text`` and close the channel with exit ``status``."""
        if self._chan is None or self._gone:
            return
        if status < 0:  # killed by a signal: the shell's convention
            status = 128 - status
        with contextlib.suppress(asyncssh.Error, OSError):
            if text:
                self._chan.write(text.encode("utf-8"))
            self._chan.exit(status)


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"
