"""A child process on its own pseudo-terminal, driven from asyncio.

The child runs in a new session whose controlling terminal is the pty (see
:mod:`monitor.ssh.child`), so a window size set on the master reaches it as SIGWINCH,
and one ``killpg`` ends it and anything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Callable, Mapping, Sequence

READ_SIZE = 65536


def set_window_size(fd: int, columns: int, rows: int, xpixels: int = 0,
                    ypixels: int = 0) -> None:
    """Tell the pty behind ``fd`` its size (the kernel signals SIGWINCH to its foreground)."""
    columns, rows = max(1, min(columns, 0xFFFF)), max(1, min(rows, 0xFFFF))
    winsize = struct.pack("HHHH", rows, columns, min(xpixels, 0xFFFF), min(ypixels, 0xFFFF))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, winsize)


class PtyProcess:
    """``argv`` on a fresh pty; output goes to ``on_output``, input comes from :meth:`write`."""

    def __init__(self, on_output: Callable[[bytes], None]) -> None:
        self._on_output = on_output
        self._master = -1
        self._process: asyncio.subprocess.Process | None = None
        self._pending = bytearray()  # input the pty could not take yet
        self._reading = False
        self._output_done = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self, argv: Sequence[str], env: Mapping[str, str], size: tuple[int, int],
                    cwd: str | None = None) -> None:
        """Open the pty at ``size`` (columns, rows) and start ``argv`` on it."""
        master, slave = os.openpty()
        try:
            set_window_size(slave, *size)
            attrs = termios.tcgetattr(slave)
            attrs[0] |= getattr(termios, "IUTF8", 0)  # erase whole UTF-8 characters
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=dict(env), cwd=cwd,
                start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._master = master
        os.set_blocking(master, False)
        self.resume_output()

    # -- output ---------------------------------------------------------------------------

    def pause_output(self) -> None:
        """Stop reading the child's output (the SSH channel's buffer is full)."""
        if self._reading:
            self._loop.remove_reader(self._master)
            self._reading = False

    def resume_output(self) -> None:
        """Read the child's output again."""
        if not self._reading and self._master >= 0 and not self._output_done.is_set():
            self._loop.add_reader(self._master, self._read)
            self._reading = True

    def _read(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: every process holding the slave side has gone.
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.pause_output()
            self._output_done.set()
            return
        self._on_output(data)

    # -- input ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send keystrokes to the child (buffered while the pty is full)."""
        if self._master < 0 or self._output_done.is_set():
            return
        had_pending = bool(self._pending)
        self._pending += data
        if not had_pending:
            self._flush()

    def _flush(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            written = 0
        except OSError:
            self._pending.clear()
            written = 0
        del self._pending[:written]
        if self._pending:
            self._loop.add_writer(self._master, self._on_writable)

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._master)
        self._flush()

    def resize(self, columns: int, rows: int, xpixels: int = 0, ypixels: int = 0) -> None:
        """Change the terminal's size; the child gets SIGWINCH."""
        if self._master >= 0:
            with contextlib.suppress(OSError):
                set_window_size(self._master, columns, rows, xpixels, ypixels)

    # -- end ------------------------------------------------------------------------------

    async def wait(self) -> int:
        """Wait for the child to exit and its output to be read; its exit status."""
        assert self._process is not None
        code = await self._process.wait()
        # The output still in the pty is wanted (a last error message, the screen reset).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._output_done.wait(), 1.0)
        return code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (it leads one of its own)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signum)

    async def terminate(self, grace: float = 2.0) -> None:
        """End the child's process group: SIGHUP, as a closed terminal would, then SIGKILL."""
        if self._process is None:
            return
        self.signal_group(signal.SIGHUP)
        try:
            await asyncio.wait_for(self._process.wait(), grace)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            await self._process.wait()
        # Whatever the child started in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Release the pty (after the child is gone)."""
        if self._master >= 0:
            self.pause_output()
            self._loop.remove_writer(self._master)
            os.close(self._master)
            self._master = -1
