"""A real terminal that keeps evidence: tmux with every byte the program writes recorded.

What a terminal *did* with the program's output is read back from tmux: the pane's title
(OSC 0/2 change it), whether the alternate screen is on (``CSI ?1049l`` leaves it), and
the paste buffers (with ``set-clipboard on``, OSC 52 writes one). The program waits for a
go file before it starts, so the recording and the clipboard option are in place first.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


class RecordedTmux:
    """A private tmux server (its own socket, no user config) running one program."""

    def __init__(self, tmux: str, name: str, workdir: Path) -> None:
        self.tmux = tmux
        self.socket = name
        self.go = workdir / f"{name}.go"
        self.raw_path = workdir / f"{name}.raw"
        self.initial_title = ""

    def run(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=10, check=False)
        return done.stdout

    def start(self, command: str, width: int, height: int) -> None:
        """Start ``command`` (a shell command line) once recording is set up."""
        gate = f"while [ ! -e {shlex.quote(str(self.go))} ]; do sleep 0.05; done; {command}"
        self.run("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height),
                 f"{gate}; echo '[exited '$?']'; sleep 60")
        self.run("set-option", "-s", "set-clipboard", "on")
        self.run("pipe-pane", "-O", "-t", "tui", f"cat >> {shlex.quote(str(self.raw_path))}")
        self.initial_title = self.title()
        self.go.touch()

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "tui", *keys)

    def title(self) -> str:
        """The pane's title: what an OSC 0 or 2 from the program would have set."""
        return self.run("display-message", "-p", "-t", "tui", "#{pane_title}").rstrip("\n")

    def alternate_on(self) -> bool:
        """Whether the program's alternate screen is still on (a TUI runs in it)."""
        return self.run("display-message", "-p", "-t", "tui",
                        "#{alternate_on}").strip() == "1"

    def buffers(self) -> str:
        """tmux's paste buffers: an OSC 52 clipboard write would have made one."""
        return self.run("list-buffers")

    def raw(self) -> bytes:
        """Every byte the program wrote to the terminal so far."""
        return self.raw_path.read_bytes() if self.raw_path.exists() else b""

    def stop(self) -> None:
        self.run("kill-server")
