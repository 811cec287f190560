"""End to end: a real hub, ``monitor tui`` in tmux, keys in, screen and REST checked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.client import HubClient
from tests.conftest import require_program
from tests.hubproc import HubProcess

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Tmux:
    """A private tmux server (its own socket) running one program in one pane."""

    def __init__(self, tmux: str, name: str) -> None:
        self.tmux = tmux
        self.socket = name

    def run(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=False)
        return done.stdout

    def start(self, command: str, width: int = 100, height: int = 30) -> None:
        self.run("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height),
                 command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "tui", *keys)

    def alive(self) -> bool:
        return "tui" in self.run("list-sessions", "-F", "#{session_name}")

    def stop(self) -> None:
        self.run("kill-server")


async def wait_for(check: Callable[[], bool], what: str, tmux: Tmux,
                   timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; the screen:\n{tmux.screen()}")


async def test_monitor_in_tmux_shows_the_team_and_sets_the_status(
        hub: HubProcess, tmp_path: Path) -> None:
    tmux_path = require_program("tmux", "tmux")
    grants = [("manual_status", "team_a"), ("onlineStatus", "team_a")]
    teammate = HubClient(hub.ws_url, hub.client_token(
        "agent_2", subscribe=["team_a"], attributes=grants, display_name="Bob Stone"))
    await teammate.connect()
    await teammate.change_attribute("manual_status", "break")
    token_file = tmp_path / "operator.token"
    token_file.write_text(hub.client_token("agent_1", subscribe=["team_a"], attributes=grants,
                                           display_name="Ann Lee"), encoding="utf-8")
    token_file.chmod(0o600)
    command = (f"cd {REPO} && exec {sys.executable} -m monitor tui --url {hub.ws_url} "
               f"--token-file {token_file} --settings {tmp_path / 'monitor.toml'} "
               f"--theme monitor-ansi16")
    tmux = Tmux(tmux_path, f"monitor-e2e-{os.getpid()}")
    tmux.start(command)
    try:
        await wait_for(lambda: "● connected" in tmux.screen() and "Bob Stone" in tmux.screen(),
                       "the grid", tmux)
        screen = tmux.screen()
        assert "you: Ann Lee (agent_1)" in screen
        assert "◐ break" in screen and "● online" in screen
        assert hub.ws_url in screen

        tmux.keys("3")  # the third configured status: lunch
        await wait_for(lambda: "hub: ✔ ok" in tmux.screen(), "the hub's answer", tmux)
        with hub.rest() as rest:
            user = rest.get("/v1/users/agent_1").json()
        values = {a["attribute"]: a.get("value") for a in user["attributes"]}
        assert values["manual_status"] == "lunch"
        # the hub published it on team_a: the operator's own row shows it too
        await wait_for(lambda: "Ann Lee" in tmux.screen().split("Agent", 1)[-1],
                       "the operator's row", tmux)

        # the teammate changes: the grid follows live
        await teammate.change_attribute("manual_status", "available")
        await wait_for(lambda: "✔ available" in tmux.screen(), "the teammate's change", tmux)

        tmux.keys("q")
        await wait_for(lambda: not tmux.alive(), "the app to quit", tmux)
    finally:
        tmux.stop()
        await teammate.close()
