"""Fixtures of the multi-node tests: a real redis-server and hub nodes that use it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.hubproc import HubProcess, free_port


class RedisServer:
    """``redis-server`` on a free 127.0.0.1 port, its data (AOF) in ``workdir``;
    restartable on the same port and data."""

    def __init__(self, workdir: Path, program: str) -> None:
        self.workdir = workdir
        self.program = program
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer within {timeout} s: {self.log()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM: redis-server writes its AOF and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


NodeFactory = Callable[..., HubProcess]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test."""
    program = require_program("redis-server", "redis-server")
    server = RedisServer(tmp_path / "redis", program).start()
    try:
        yield server
    finally:
        server.kill()


def node_settings(redis: RedisServer, **settings: int | str) -> str:
    """The [hub] lines of a node of the cluster on ``redis``."""
    lines = {"redis_url": redis.url, "offline_grace_ms": 0, "node_lease_ms": 1500,
             **settings}
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in lines.items())


@pytest.fixture
def make_node(tmp_path: Path, redis_server: RedisServer) -> Iterator[NodeFactory]:
    """Start hub nodes on the test's redis-server: ``make_node(offline_grace_ms=500)``."""
    started: list[HubProcess] = []

    def make(**settings: int | str) -> HubProcess:
        workdir = tmp_path / f"node{len(started)}"
        workdir.mkdir()
        node = HubProcess(workdir, extra_hub=node_settings(redis_server, **settings))
        started.append(node)
        return node.start()

    try:
        yield make
    finally:
        for node in started:
            node.kill()


@pytest.fixture
def nodes(make_node: NodeFactory) -> list[HubProcess]:
    """Three hub nodes on one redis-server."""
    return [make_node() for _ in range(3)]
