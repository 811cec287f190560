"""``monitor web`` in a child process for tests, and the roles of its users."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.hubproc import free_port
from tests.ssh.door import wait_until

REPO = Path(__file__).resolve().parents[2]
ROLES = """
topic_prefix = "team_"

[[users]]
name = "alice"
role = "supervisor"
teams = ["sales"]
display_name = "Alice Moreau"

[[users]]
name = "ann"
role = "agent"
team = "sales"
display_name = "Ann Agent"
"""
#: Set in the door's environment: a session's process must not inherit it.
CANARY = "MONITOR_WEB_TEST_CANARY"


def monitor_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(workdir / "data"),
               XDG_CONFIG_HOME=str(workdir / "config"))
    return env


class WebDoorProcess:
    """``monitor web`` with its own state directory, on a free port."""

    def __init__(self, workdir: Path, args: Sequence[str], port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.state = workdir / "state"
        self.port = port or free_port()
        self.log_path = workdir / "web.log"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> WebDoorProcess:
        before = len(self.events("web_listening"))  # a restart logs to the same file
        env = monitor_env(self.workdir)
        env[CANARY] = "door-only"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "web", "--port", str(self.port),
                 "--state", str(self.state), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                start_new_session=True)
        proc = self.proc
        wait_until(lambda: len(self.events("web_listening")) > before
                   or proc.poll() is not None,
                   "the web door to listen", timeout, self.log)
        if proc.poll() is not None:
            pytest.fail(f"monitor web exited with {proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""

    def events(self, event: str) -> list[dict[str, str]]:
        """The ``key=value`` fields of every log line of ``event``."""
        return [dict(re.findall(r"(\w+)=('[^']*'|\S+)", line))
                for line in self.log().splitlines() if f"event={event} " in line + " "]

    def wait_for_event(self, event: str, count: int = 1, timeout: float = 20.0,
                       **fields: str) -> dict[str, str]:
        def found() -> list[dict[str, str]]:
            return [e for e in self.events(event)
                    if all(e.get(k) == v for k, v in fields.items())]

        wait_until(lambda: len(found()) >= count, f"{count} x event={event} {fields}",
                   timeout, self.log)
        return found()[count - 1]

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as a service manager would, and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``monitor web ACTION ... --state`` of this door."""
        return subprocess.run([sys.executable, "-m", "monitor", "web", *args,
                               "--state", str(self.state)],
                              capture_output=True, text=True, env=monitor_env(self.workdir),
                              cwd=REPO, timeout=30, check=False)

    def invite(self, user: str, *extra: str) -> str:
        done = self.command("invite", "--user", user, *extra)
        assert done.returncode == 0, done.stderr
        url = done.stdout.strip()
        assert url.startswith(self.url + "#invite="), url
        return url

    def revoke(self, user: str) -> None:
        done = self.command("revoke", "--user", user)
        assert done.returncode == 0, done.stderr
