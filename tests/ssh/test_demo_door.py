"""The demo over SSH: anyone, any name, with a key or none, watches read-only."""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.hubproc import free_port
from tests.ssh.door import (
    DoorProcess,
    Tmux,
    make_key,
    process_gone,
    ssh_command,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    require_program("ssh", "openssh-client")
    mux = Tmux(require_program("tmux", "tmux"), f"monitor-ssh-{uuid.uuid4().hex[:12]}")
    try:
        yield mux
    finally:
        mux.stop()


def test_ssh_serve_demo_lets_anyone_watch_read_only(tmux: Tmux, tmp_path: Path) -> None:
    door = DoorProcess(tmp_path / "door", ["--demo", "--demo-agents", "8"]).start()
    try:
        assert f"ssh -p {door.port} demo@127.0.0.1" in door.log()
        key = tmp_path / "visitor_key"
        make_key(key)
        tmux.start("nokey", door.ssh_args("demo", None, "-tt"), 110, 30)
        tmux.start("key", door.ssh_args("visitor", key, "-tt"), 110, 30)
        for window in ("nokey", "key"):
            wait_until(lambda w=window: "● connected" in tmux.screen(w)
                       and "● online" in tmux.screen(w), f"the demo grid ({window})",
                       explain=lambda w=window: tmux.screen(w) + door.log())
            screen = tmux.screen(window)
            assert "you: Supervisor (supervisor)" in screen and "read-only" in screen
        assert {e["user"] for e in door.events("login")} == {"demo", "visitor"}
        pids = [int(e["pid"]) for e in door.events("session_start")]
        assert len(pids) == 2
        # still no terminal, no monitor
        done = door.ssh("demo", None, "-T")
        assert done.returncode == 1 and "needs a terminal" in done.stdout
        # a connection that never logs in does not hold the door open when it stops
        lingering = socket.create_connection(("127.0.0.1", door.port))
    finally:
        started = time.monotonic()
        assert door.stop() == 0
        assert time.monotonic() - started < 10
    lingering.close()
    assert all(process_gone(pid) for pid in pids)
    assert "the server is shutting down" in tmux.screen("key")


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        top = todo.pop()
        below = [child for child, parent in parents.items() if parent == top]
        found += below
        todo += below
    return found


def test_monitor_demo_ssh_opens_the_door_beside_the_local_monitor(
        tmux: Tmux, tmp_path: Path) -> None:
    port = free_port()
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    tmux.start("local", ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable,
                         "-m", "monitor", "demo", "--agents", "6", "--data",
                         str(tmp_path / "demo"), "--ssh", str(port)], 110, 30)
    wait_until(lambda: "● connected" in tmux.screen("local"), "the local monitor",
               explain=lambda: tmux.screen("local"))
    tmux.start("remote", ssh_command(port, "guest", None, "-tt"), 100, 24)
    wait_until(lambda: "● connected" in tmux.screen("remote")
               and "read-only" in tmux.screen("remote"), "the demo over SSH",
               explain=lambda: tmux.screen("remote"))
    pane = int(tmux.run("list-panes", "-t", "local", "-F", "#{pane_pid}").strip())
    sessions = [p for p in descendants(pane)
                if b"monitor.ssh.child" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(sessions) == 1
    # q in the local monitor stops the demo, its door and the SSH session's process
    tmux.keys("local", "q")
    wait_until(lambda: "[ssh exited" in tmux.screen("remote"), "the SSH session's end",
               explain=lambda: tmux.screen("remote"))
    assert "the server is shutting down" in tmux.screen("remote")
    wait_until(lambda: "[ssh exited 0]" in tmux.screen("local"), "the demo's exit",
               explain=lambda: tmux.screen("local"))
    assert process_gone(sessions[0])
