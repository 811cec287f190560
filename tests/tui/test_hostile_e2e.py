"""End to end: hostile text from a hub reaches ``monitor tui`` in a real terminal (tmux)
and the terminal shows it, escaped, without acting on it: its title, clipboard and
alternate screen stay as they were, and no escape sequence of the text is written."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.client import HubClient
from tests.conftest import require_program
from tests.hubproc import HubProcess
from tests.tui.hostile_hub import RAW_MARKERS, REVIEW_VALUE, REVIEW_VISIBLE, HostileHub, value
from tests.tui.recorded_tmux import RecordedTmux

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

BAD_NAME = "Bob\x1b]0;NAME\x07 [bold red]Stone[/]"
BAD_PARTY = "+1555\x1b]0;TITLE\x1b\\\x1b]52;c;ZWNobyBwd25lZAo=\x1b\\\x1b[?1049l"
BIDI_VALUE = "busy\u202egnikrow"


@pytest.fixture
def term(tmp_path: Path) -> Iterator[RecordedTmux]:
    tmux = RecordedTmux(require_program("tmux", "tmux"), f"monitor-hostile-{os.getpid()}",
                        tmp_path)
    try:
        yield tmux
    finally:
        tmux.stop()


async def wait_for(check: Callable[[], bool], what: str, term: RecordedTmux,
                   timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; the screen:\n{term.screen()}")


def monitor_command(url: str, token_file: Path, tmp_path: Path) -> str:
    token_file.chmod(0o600)
    return (f"cd {REPO} && {sys.executable} -m monitor tui --url {url} "
            f"--token-file {token_file} --settings {tmp_path / 'monitor.toml'} "
            f"--theme monitor-ansi16")


def assert_terminal_untouched(term: RecordedTmux) -> None:
    """Nothing of the hostile text acted on the terminal."""
    assert term.title() == term.initial_title and "TITLE" not in term.title()
    assert term.alternate_on(), "the alternate screen was left"
    assert term.buffers() == "", "the clipboard was written (OSC 52)"
    raw = term.raw()
    assert raw, "nothing was recorded"
    for marker in RAW_MARKERS:
        assert marker not in raw, marker


async def test_a_hostile_hub_cannot_drive_the_terminal(term: RecordedTmux,
                                                       tmp_path: Path) -> None:
    hub = await HostileHub("sup", ["team_a"], {"team_a": [
        value("agent_2", "onlineStatus", "online", BAD_NAME),
        value("agent_2", "manual_status", REVIEW_VALUE),
        value("agent_3", "onlineStatus", "online", "Chloé Durand"),
        value("agent_3", "manual_status", "available"),
    ]}).start()
    token_file = tmp_path / "sup.token"
    token_file.write_text("x.y.z", encoding="utf-8")  # this hub takes any token
    term.start(monitor_command(hub.ws_url, token_file, tmp_path), 200, 30)
    try:
        await wait_for(lambda: "● connected" in term.screen()
                       and "Chloé Durand" in term.screen() and "busy" in term.screen(),
                       "the grid", term)
        await asyncio.sleep(0.5)  # what a terminal would do with the text is done by now
        assert_terminal_untouched(term)
        # a live message too, shown whole in the event log
        term.keys("l")
        await hub.publish("team_a", {"userId": "agent_3", "attribute": "manual_status",
                                     "oldValue": "available", "newValue": REVIEW_VALUE,
                                     "timestamp": int(time.time() * 1000)})
        await wait_for(lambda: f"Chloé Durand manual_status: available → {REVIEW_VISIBLE}"
                       in term.screen(), "the message in the event log", term)
        screen = term.screen()
        assert r"◐ busy\x1b]0" in screen  # the status cell (cut to the column)
        assert r"Bob\x1b]0;NAME\x07 [bold re…" in screen, screen  # no markup either
        assert_terminal_untouched(term)
        term.keys("q")
        await wait_for(lambda: "[exited 0]" in term.screen(), "the monitor to quit", term)
    finally:
        await hub.close()


async def test_hostile_text_through_the_real_hub(hub: HubProcess, term: RecordedTmux,
                                                 tmp_path: Path) -> None:
    """What the hub lets through today: a bidi override in a value; control characters
    in a call party reported over REST, unless the hub refuses them."""
    grants = [("manual_status", "team_a"), ("onlineStatus", "team_a")]
    agent = HubClient(hub.ws_url, hub.client_token("agent_2", attributes=grants,
                                                   display_name="Bob Stone"))
    await agent.connect()
    await agent.change_attribute("manual_status", BIDI_VALUE)
    token_file = tmp_path / "sup.token"
    token_file.write_text(hub.client_token("sup", subscribe=["team_a", "ALL_CALL_STATUS"],
                                           display_name="Sue Park"), encoding="utf-8")
    term.start(monitor_command(hub.ws_url, token_file, tmp_path), 200, 30)
    try:
        await wait_for(lambda: "● connected" in term.screen() and "Bob Stone" in term.screen(),
                       "the grid", term)
        await wait_for(lambda: "busy" in term.screen(), "the bidi value", term)
        assert "\u202e" not in term.screen()  # shown as \u202e, and in its place
        assert r"busy\u202egnikrow" in term.screen()
        term.keys("l")
        # the parties of a call come with the live message only (not in snapshots)
        with hub.rest() as rest:
            reported = rest.put("/v1/calls/c-1", json={"from": BAD_PARTY, "to": "agent_2",
                                                       "status": "Ringing"})
        assert reported.status_code in (200, 400, 422), reported.text
        if reported.status_code == 200:
            await wait_for(lambda: r"call: – → Ringing  (+1555\x1b]0;TITLE\x1b\\x1b]52;c;"
                           in term.screen(), "the call in the event log", term)
            # cut to the column: the state's word gives way to the party
            assert r"☎ ← +1555\x1b]0;TITLE…" in term.screen()
        assert "\u202e" not in term.screen()
        assert_terminal_untouched(term)
    finally:
        await agent.close()
