"""Start a real hub process on free 127.0.0.1 ports, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx

from monitor.tokens import AttributeGrant, mint_client_token, mint_rest_token

PROJECT_ID = 25
KEY_SID = "SKTEST0000000001"
KEY_SECRET = "test-secret-0123456789-abcdefghijklmnop"
OTHER_PROJECT_ID = 26
OTHER_KEY_SID = "SKTEST0000000002"
OTHER_KEY_SECRET = "other-secret-0123456789-abcdefghijklmno"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_test_config(path: Path, data_dir: Path, ws_port: int, api_port: int,
                      extra_hub: str = "") -> None:
    """A hub.toml with two isolated projects."""
    path.write_text(f"""
[hub]
host = "127.0.0.1"
ws_port = {ws_port}
api_port = {api_port}
data_dir = "{data_dir}"
log_level = "debug"
{extra_hub}

[[projects]]
id = {PROJECT_ID}
name = "test"
keys = [{{ sid = "{KEY_SID}", secret = "{KEY_SECRET}" }}]

[[projects]]
id = {OTHER_PROJECT_ID}
name = "other"
keys = [{{ sid = "{OTHER_KEY_SID}", secret = "{OTHER_KEY_SECRET}" }}]
""", encoding="utf-8")


class HubProcess:
    """``monitor hub`` in a child process; restartable on the same ports and data."""

    def __init__(self, workdir: Path, extra_hub: str = "",
                 extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.ws_port = free_port()
        self.api_port = free_port()
        self.config_path = workdir / "hub.toml"
        self.log_path = workdir / "hub.log"
        self.extra_args = list(extra_args)
        write_test_config(self.config_path, self.data_dir, self.ws_port, self.api_port,
                          extra_hub)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 20.0) -> HubProcess:
        """Start the hub and wait until /healthz answers."""
        log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "hub", "--config", str(self.config_path),
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.api_url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"hub did not answer /healthz within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the hub printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: the crash path (no chance to flush or close)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> HubProcess:
        self.stop()
        return self.start()

    # -- tokens for this hub's test project ---------------------------------------------

    def client_token(self, user_id: str, subscribe: Iterable[str] = (),
                     attributes: Iterable[AttributeGrant | tuple[str, str]] = (),
                     ttl_s: int = 3600, display_name: str | None = None,
                     other_project: bool = False, supervise: Iterable[str] = ()) -> str:
        sid, secret = (OTHER_KEY_SID, OTHER_KEY_SECRET) if other_project \
            else (KEY_SID, KEY_SECRET)
        return mint_client_token(sid, secret, user_id, subscribe=subscribe,
                                 attributes=attributes, ttl_s=ttl_s,
                                 display_name=display_name, supervise=supervise)

    def rest_token(self, ttl_s: int = 3600, other_project: bool = False) -> str:
        sid, secret = (OTHER_KEY_SID, OTHER_KEY_SECRET) if other_project \
            else (KEY_SID, KEY_SECRET)
        return mint_rest_token(sid, secret, ttl_s=ttl_s)

    def rest(self) -> httpx.Client:
        """An httpx client for this hub's REST API, authenticated."""
        return httpx.Client(base_url=self.api_url,
                            headers={"X-STRINGEE-AUTH": self.rest_token()}, timeout=10)
