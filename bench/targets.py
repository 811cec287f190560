"""The servers under test, each started in its own process pinned to core 0.

``hub``: ``python -m monitor hub`` with a one-project config (log level warning).
``baseline``: ``bench/baseline_ws_server.py`` (minimal ``websockets`` server), or with
mode ``rest`` ``bench/baseline_rest_server.py`` (FastAPI on uvicorn, fixed answers).
``mosquitto``: ``mosquitto -c`` a copy of ``bench/mosquitto.conf`` (websockets listener).
``Cluster``: N hub nodes sharing one ``redis-server`` (``RedisServer``, started here on a
free 127.0.0.1 port in a temporary directory), or one hub on SQLite for comparison.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from monitor.tokens import mint_client_token, mint_rest_token

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROJECT_ID = 25
KEY_SID = "SKBENCH000000001"
KEY_SECRET = "bench-secret-0123456789-abcdefghijklmnop"
SERVER_CPU = 0
CLIENT_CPU = 1
TARGETS = ("hub", "baseline", "mosquitto")


def free_port() -> int:
    """A port free on every local address: mosquitto's listener binds without
    SO_REUSEADDR, so a port still in TIME_WAIT as some client's source port (a previous
    run's, on 127.0.0.2 say) would make it fail."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _pinned_child() -> None:
    """In the server child before exec: core 0, as many descriptors as allowed."""
    os.sched_setaffinity(0, {SERVER_CPU})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_fd_limit() -> int:
    """Lift this process's descriptor limit to the hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def client_token(user_id: str, subscribe: tuple[str, ...] = (),
                 attributes: tuple[tuple[str, str], ...] = ()) -> str:
    return mint_client_token(KEY_SID, KEY_SECRET, user_id, subscribe=subscribe,
                             attributes=attributes, ttl_s=6 * 3600)


def rest_token() -> str:
    return mint_rest_token(KEY_SID, KEY_SECRET, ttl_s=6 * 3600)


def hub_available() -> bool:
    """True when this checkout has a hub to start."""
    return (REPO / "monitor" / "hub").is_dir() or (REPO / "monitor" / "hub.py").exists()


class Target:
    """A server process under test."""

    def __init__(self, kind: str, mode: str = "broadcast", hub_settings: str = "") -> None:
        if kind not in TARGETS:
            raise ValueError(kind)
        self.kind = kind
        self.mode = mode
        self.hub_settings = hub_settings
        self.port = free_port()
        self.api_port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _command(self) -> list[str]:
        if self.kind == "baseline" and self.mode == "rest":
            return [sys.executable, str(BENCH / "baseline_rest_server.py"),
                    "--port", str(self.api_port)]
        if self.kind == "baseline":
            return [sys.executable, str(BENCH / "baseline_ws_server.py"),
                    "--port", str(self.port), "--mode", self.mode]
        if self.kind == "mosquitto":
            exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            conf = self.workdir / "mosquitto.conf"
            conf.write_text((BENCH / "mosquitto.conf").read_text()
                            .replace("MQTT_PORT", str(free_port()))
                            .replace("PORT", str(self.port)))
            return [exe, "-c", str(conf)]
        conf = self.workdir / "hub.toml"
        conf.write_text(f"""
[hub]
host = "127.0.0.1"
ws_port = {self.port}
api_port = {self.api_port}
data_dir = "{self.workdir / 'data'}"
log_level = "warning"
# all load comes from a few loopback addresses: the per-IP AUTHEN limiter would
# measure itself, not the hub
auth_rate_per_ip = 1000000
auth_burst_per_ip = 1000000
{self.hub_settings}

[[projects]]
id = {PROJECT_ID}
name = "bench"
keys = [{{ sid = "{KEY_SID}", secret = "{KEY_SECRET}" }}]
""")
        return [sys.executable, "-m", "monitor", "hub", "--config", str(conf)]

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Target:
        """Start and wait until ready; on a failed start, retry on fresh ports."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                self.port, self.api_port = free_port(), free_port()
        return self

    def _start(self, timeout: float) -> Target:
        log = self.log_path.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                     preexec_fn=_pinned_child, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self.proc.returncode}: {self.log()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready within {timeout} s: {self.log()}")

    def _ready(self) -> bool:
        if self.kind == "hub" or self.mode == "rest":
            try:
                return httpx.get(self.api_url + "/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] \
            if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every started server is stopped on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class RedisServer:
    """``redis-server`` on a free 127.0.0.1 port, pinned to core 0, its AOF in a
    temporary directory (``appendonly yes``; ``appendfsync`` as given: ``everysec``
    survives a crash of the process like the hub's SQLite ``synchronous=NORMAL``)."""

    def __init__(self, appendfsync: str = "everysec") -> None:
        self.appendfsync = appendfsync
        self.port = free_port()
        self.workdir: Path | None = None  # created by start()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "redis.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync,
             "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_pinned_child, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            if self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server not ready within {timeout} s: {self.log()}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command_calls(self) -> dict[str, int]:
        """Calls per command so far (``INFO commandstats``), e.g. {"evalsha": 1200}."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"INFO commandstats\r\n")
            data = b""
            while True:
                data += s.recv(65536)
                head, _, rest = data.partition(b"\r\n")
                if head.startswith(b"$") and len(rest) >= int(head[1:]):
                    break
        out = {}
        for line in rest.decode().splitlines():
            if line.startswith("cmdstat_"):
                name, _, fields = line[8:].partition(":")
                out[name] = int(fields.split(",")[0].split("=")[1])
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] \
            if self.workdir is not None and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class Cluster:
    """``nodes`` hub nodes on one fresh redis-server, or (``redis=False``) one hub on
    SQLite; every process pinned to core 0. ``ports`` are the nodes' WebSocket ports,
    ``pids`` names every server process (``node0``, ``node1``, ..., ``redis``)."""

    def __init__(self, nodes: int = 1, redis: bool = True, hub_settings: str = "",
                 appendfsync: str = "everysec") -> None:
        if nodes < 1 or (not redis and nodes != 1):
            raise ValueError("one SQLite node, or one or more nodes on Redis")
        self.redis = RedisServer(appendfsync) if redis else None
        self.hub_settings = hub_settings
        self.nodes: list[Target] = []
        self.size = nodes

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def pids(self) -> dict[str, int]:
        out = {f"node{i}": n.pid for i, n in enumerate(self.nodes)}
        if self.redis is not None:
            out["redis"] = self.redis.pid
        return out

    def log(self) -> str:
        return "\n".join(n.log()[-600:] for n in self.nodes) + \
            (self.redis.log()[-600:] if self.redis else "")

    def start(self) -> Cluster:
        try:
            settings = self.hub_settings
            if self.redis is not None:
                self.redis.start()
                settings = f'redis_url = "{self.redis.url}"\n{settings}'
            for _ in range(self.size):
                self.nodes.append(Target("hub", hub_settings=settings).start())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for n in self.nodes:
            n.__exit__()
        if self.redis is not None:
            self.redis.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
