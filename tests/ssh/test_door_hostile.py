"""End to end through the SSH door: hostile text from a hub reaches a supervisor's and an
agent's monitor over ``ssh`` in a real terminal (tmux), shown escaped; the terminal's
title, clipboard and alternate screen stay as they were."""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.hubproc import HubProcess
from tests.ssh.door import DoorProcess, make_key
from tests.tui.hostile_hub import RAW_MARKERS, REVIEW_VALUE, REVIEW_VISIBLE, HostileHub, value
from tests.tui.recorded_tmux import RecordedTmux

pytestmark = pytest.mark.slow

ROLES = """
[[users]]
name = "sup"
role = "supervisor"
teams = ["a"]

[[users]]
name = "agent_1"
role = "agent"
team = "a"
"""
REFUSAL = "no\x1b]0;TITLE\x07\x1b]52;c;ZWNobyBwd25lZAo=\x07 [link=https://evil.example]x[/link]"


@pytest.fixture
def term(tmp_path: Path) -> Iterator[RecordedTmux]:
    tmux = RecordedTmux(require_program("tmux", "tmux"), f"monitor-door-hostile-{os.getpid()}",
                        tmp_path)
    try:
        yield tmux
    finally:
        tmux.stop()


async def wait_for(check: Callable[[], bool], what: str, term: RecordedTmux,
                   door: DoorProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; the screen:\n{term.screen()}\n{door.log()}")


def door_for(hub: HostileHub, module_hub: HubProcess, workdir: Path, user: str
             ) -> tuple[DoorProcess, list[str]]:
    """A door whose sessions connect to ``hub``; the ssh command line of ``user``."""
    require_program("ssh", "openssh-client")
    keys = workdir / "keys"
    keys.mkdir()
    (keys / f"{user}.pub").write_text(make_key(workdir / "key") + "\n")
    (workdir / "roles.toml").write_text(ROLES)
    door = DoorProcess(workdir / "door", [
        "--config", str(module_hub.config_path), "--hub", hub.ws_url,
        "--roles", str(workdir / "roles.toml"), "--authorized-keys", str(keys)]).start()
    return door, ["env", "TERM=xterm-256color",
                  *door.ssh_args(user, workdir / "key", "-tt")]


def assert_terminal_untouched(term: RecordedTmux) -> None:
    assert term.title() == term.initial_title and "TITLE" not in term.title()
    assert term.alternate_on(), "the alternate screen was left"
    assert term.buffers() == "", "the clipboard was written (OSC 52)"
    raw = term.raw()
    assert raw and not [marker for marker in RAW_MARKERS if marker in raw]


async def test_a_supervisor_over_ssh_sees_hostile_values_escaped(
        module_hub: HubProcess, term: RecordedTmux, tmp_path: Path) -> None:
    hub = await HostileHub("sup", ["team_a"], {"team_a": [
        value("agent_2", "onlineStatus", "online", "Bob\x1b]0;TITLE\x07"),
        value("agent_2", "manual_status", REVIEW_VALUE),
    ]}).start()
    door, ssh = door_for(hub, module_hub, tmp_path, "sup")
    try:
        term.start(shlex.join(ssh), 200, 30)
        await wait_for(lambda: "● connected" in term.screen() and "busy" in term.screen(),
                       "the supervisor's grid", term, door)
        await asyncio.sleep(0.5)  # what a terminal would do with the text is done by now
        assert_terminal_untouched(term)
        term.keys("l")
        await hub.publish("team_a", {"userId": "agent_2", "attribute": "manual_status",
                                     "oldValue": "away", "newValue": REVIEW_VALUE,
                                     "timestamp": int(time.time() * 1000)})
        await wait_for(lambda: f"manual_status: away → {REVIEW_VISIBLE}" in term.screen(),
                       "the message in the event log", term, door)
        assert r"Bob\x1b]0;TITLE\x07" in term.screen()
        assert_terminal_untouched(term)
        term.keys("q")
        await wait_for(lambda: "[exited 0]" in term.screen(), "the session's end", term, door)
    finally:
        door.stop()
        await hub.close()


async def test_an_agent_over_ssh_sees_a_hostile_refusal_escaped(
        module_hub: HubProcess, term: RecordedTmux, tmp_path: Path) -> None:
    hub = await HostileHub("agent_1\x1b[?1049l", [], {}, refusal=REFUSAL).start()
    door, ssh = door_for(hub, module_hub, tmp_path, "agent_1")
    try:
        term.start(shlex.join(ssh), 200, 30)
        await wait_for(lambda: "My status:" in term.screen(), "the agent's screen", term, door)
        term.keys("3")  # lunch: the hub refuses it, in its own words
        await wait_for(lambda: "hub: ✕ r=23: no" in term.screen(), "the refusal", term, door)
        screen = term.screen()
        assert r"r=23: no\x1b]0;TITLE\x07\x1b]52;c;ZWNobyBwd25lZAo=\x07 [link=https" in screen
        assert r"you: agent_1\x1b[?1049l │" in screen
        assert_terminal_untouched(term)
    finally:
        door.stop()
        await hub.close()
