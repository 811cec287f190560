"""Drive the SSH door for tests: ``monitor ssh-serve`` in a child process, client keys,
and the OpenSSH client in tmux (a real terminal) or plainly (no terminal)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncssh
import pytest

from tests.hubproc import free_port

REPO = Path(__file__).resolve().parents[2]


def make_key(path: Path) -> str:
    """Write a new ed25519 private key (mode 0600, as ssh wants); its public line."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return key.export_public_key().decode("ascii").strip()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0,
               explain: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n{explain()}")


class DoorProcess:
    """``monitor ssh-serve`` in a child process with its own host key and data dir."""

    def __init__(self, workdir: Path, args: Sequence[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "door.log"
        self.host_key = workdir / "host_key"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DoorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update(PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(self.workdir / "data"),
                   XDG_CONFIG_HOME=str(self.workdir / "config"))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "ssh-serve", "--port", str(self.port),
                 "--host-key", str(self.host_key), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                start_new_session=True)
        wait_until(lambda: "event=ssh_listening" in self.log() or self.proc.poll() is not None,
                   "the door to listen", timeout, self.log)
        if self.proc.poll() is not None:
            pytest.fail(f"ssh-serve exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""

    def events(self, event: str) -> list[dict[str, str]]:
        """The ``key=value`` fields of every log line of ``event``."""
        found = []
        for line in self.log().splitlines():
            if f"event={event} " in line + " ":
                found.append(dict(re.findall(r"(\w+)=('[^']*'|\S+)", line)))
        return found

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as a service manager would, and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def ssh_args(self, user: str, key: Path | None, *extra: str,
                 command: Sequence[str] = ()) -> list[str]:
        return ssh_command(self.port, user, key, *extra, command=command)

    def ssh(self, user: str, key: Path | None, *extra: str, command: Sequence[str] = (),
            timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run ``ssh`` without a terminal and return what it did."""
        return subprocess.run(self.ssh_args(user, key, *extra, command=command),
                              capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)


def ssh_command(port: int, user: str, key: Path | None, *extra: str,
                command: Sequence[str] = ()) -> list[str]:
    """An OpenSSH command line for a door on 127.0.0.1, touching no user config or agent."""
    args = ["ssh", "-F", "/dev/null", "-p", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none"]
    if key is not None:
        args += ["-i", str(key)]
    return [*args, *extra, f"{user}@127.0.0.1", *command]


class Tmux:
    """A private tmux server (its own socket): one window per SSH session."""

    def __init__(self, tmux: str, name: str) -> None:
        self.tmux = tmux
        self.socket = name

    def run(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=False)
        return done.stdout

    def start(self, name: str, argv: Sequence[str], width: int = 110,
              height: int = 30) -> None:
        command = " ".join(_quote(a) for a in argv)
        # keep the pane after ssh exits, to read what the door said last
        self.run("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                 f"{command}; echo '[ssh exited '$?']'; sleep 60")

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def keys(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def resize(self, name: str, width: int, height: int) -> None:
        self.run("resize-window", "-t", name, "-x", str(width), "-y", str(height))

    def close(self, name: str) -> None:
        """Kill the window: the ssh client dies with it, as when a laptop lid closes."""
        self.run("kill-session", "-t", name)

    def stop(self) -> None:
        self.run("kill-server")


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def process_gone(pid: int) -> bool:
    """True when neither ``pid`` nor anything in its process group is still running."""
    for probe in (lambda: os.kill(pid, 0), lambda: os.killpg(pid, 0)):
        try:
            probe()
        except ProcessLookupError:
            continue
        except PermissionError:
            return False
        return False
    return True
