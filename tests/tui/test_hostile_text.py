"""Hostile text from the hub, through the feed, the model and every widget: what reaches
the terminal holds no control character of it, and shows it escaped and never as markup."""

from __future__ import annotations

import io
import re
import unicodedata
from typing import Any

from rich.console import Console
from textual.content import Content

from monitor.protocol import CALL
from monitor.tui.app import MonitorApp
from monitor.tui.feed import (
    CONNECTED,
    RECONNECTING,
    ChangeRefused,
    Link,
    ScriptedFeed,
    Session,
    Snapshot,
)
from monitor.tui.settings import Settings
from monitor.tui.text import UNSAFE_CATEGORIES
from monitor.tui.widgets import AgentGrid
from tests.tui.hostile_hub import REVIEW_VALUE, REVIEW_VISIBLE
from tests.tui.scenario import (
    CALLS,
    NOW,
    TEAM,
    answered,
    make_app,
    message_event,
    screen_text,
    settle,
    value,
)

WIDE = (200, 40)
BAD_ID = "agent_9\x1b[31m"
BAD_NAME = "Mal\x1b]0;NAME\x07 [bold red]Lory[/] [link=https://evil.example]x[/link]"
BAD_PARTY = "+1555\x1b]52;c;ZWNobyBwd25lZAo=\x1b\\"
BAD_CALL_ID = "c-\x9b2J\u2028"
BAD_ATTRIBUTE = "skill\x1b[8m"
BIDI = "\u202eevil\u2066"
BAD_MESSAGE = "no\x1b]0;T\x07 [bold]way[/] [link=https://evil.example]x[/link]"
# What a terminal driver legitimately writes for a screen update: colours and styles
# (SGR) and cursor positioning. Anything else with an ESC came from the text.
_DRIVER_SEQUENCES = re.compile(r"\x1b\[[0-9;:]*[mH]")


def hostile_events(user_id: str = "sup\x1b]0;U\x07") -> list[Any]:
    session = Session(user_id, (TEAM, CALLS), {"manual_status": (TEAM,)},
                      display_name="Sue\x1b[2J")
    team = Snapshot(TEAM, [
        value(BAD_ID, "onlineStatus", "online", 600, BAD_NAME),
        value(BAD_ID, "manual_status", REVIEW_VALUE, 300),
        value(BAD_ID, BAD_ATTRIBUTE, BIDI, 300),
        value("agent_1", "onlineStatus", "online", 3600, "Ann Lee"),
        value("agent_1", "manual_status", "available", 125),
    ], seq=40, epoch="e1")
    calls = Snapshot(CALLS, [value(BAD_ID, CALL, "Answered", 95, callId=BAD_CALL_ID,
                                   **{"from": BAD_PARTY, "to": BAD_ID})], seq=7, epoch="e1")
    return [session, team, calls, Link(CONNECTED)]


def terminal_output(app: MonitorApp) -> str:
    """What the app would write to the terminal for its whole screen, toasts and modal
    screens included (the render a screenshot takes, through a terminal console)."""
    width, height = app.size
    out = io.StringIO()
    console = Console(width=width, height=height, file=out, force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return out.getvalue()


def assert_nothing_raw(app: MonitorApp) -> None:
    """No control, format or separator character of the hub's text reaches the terminal."""
    written = _DRIVER_SEQUENCES.sub("", terminal_output(app))
    unsafe = {ch for ch in written
              if ch != "\n" and unicodedata.category(ch) in UNSAFE_CATEGORIES}
    assert not unsafe, sorted(unsafe)
    grid = app.query_one(AgentGrid)
    if grid.size.height:  # the grid's own lines too (not on an agent's own screen)
        lines = "".join(grid.render_line(y).text for y in range(grid.size.height))
        assert lines.strip()
        assert not any(unicodedata.category(ch) in UNSAFE_CATEGORIES for ch in lines)


async def test_the_grid_status_lines_and_event_log_show_hostile_text_escaped() -> None:
    app = make_app(hostile_events())
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("l")
        app.feed.push(message_event(41, "agent_1", "manual_status", REVIEW_VALUE,
                                    "available", at=NOW, topic=TEAM))
        await settle(app, pilot)
        assert_nothing_raw(app)
        grid = app.query_one(AgentGrid)
        user = r"agent_9\x1b[31m"
        assert grid.user_cell(user, "name").plain.startswith(r"Mal\x1b]0;NAME\x07 [bold red]")
        assert grid.user_cell(user, "status").plain == "◐ " + REVIEW_VISIBLE
        assert grid.user_cell(user, r"skill\x1b[8m").plain == r"\u202eevil\u2066"
        # (too long for the column: the state's word gives way to the party)
        assert grid.user_cell(user, "call").plain == \
            "▶ ← +1555" + r"\x1b]52;c;ZWNobyBwd25lZAo=\x1b" + "\\"
        text = screen_text(app)
        assert r"you: Sue\x1b[2J (sup\x1b]0;U\x07)" in text          # own status bar
        assert r"as sup\x1b]0;U\x07" in text                           # connection line
        assert r"skill\x1b[8m" in text                                 # a column header
        assert "◐ 2 " + REVIEW_VISIBLE in text                         # the summary
        assert f"Ann Lee manual_status: available → {REVIEW_VISIBLE}" in text  # the log

        # the hub's words when the link drops, in the connection line
        app.feed.push(Link(RECONNECTING, NOW + 5, "closed: \x1b]0;DROP\x07 [b]x[/b]"))
        await settle(app, pilot)
        assert r"closed: \x1b]0;DROP\x07 [b]x[/b]" in screen_text(app)
        assert_nothing_raw(app)


async def test_the_agent_detail_shows_hostile_text_escaped() -> None:
    app = make_app(hostile_events())
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        grid = app.query_one(AgentGrid)
        grid.move_cursor(row=grid.shown_users.index(r"agent_9\x1b[31m"))
        await pilot.press("enter")
        await settle(app, pilot)
        text = screen_text(app)  # (long lines wrap in the pane)
        assert r"Mal\x1b]0;NAME\x07 [bold red]Lory[/] [link=https://evil.example]x[/link]" \
            in text
        assert r"(agent_9\x1b[31m)" in text
        assert r"◐ " + REVIEW_VISIBLE in text
        assert r"call: Answered  +1555\x1b]52;c;ZWNobyBwd25lZAo=\x1b\ → agent_9\x1b[31m" \
            in text
        assert r"[c-\x9b2J\u2028]  (snapshot)" in text
        assert r"skill\x1b[8m: \u202eevil\u2066  (snapshot)" in text
        assert_nothing_raw(app)


class RefusingFeed(ScriptedFeed):
    """A feed whose hub refuses every change with hostile words."""

    async def change_attribute(self, name: str, value: Any) -> None:
        self.changes.append((name, value))
        raise ChangeRefused(23, BAD_MESSAGE)


async def test_an_agents_own_screen_shows_a_hostile_refusal_escaped_and_as_text() -> None:
    feed = RefusingFeed([Session("agent_7\u202e", (), {"manual_status": (TEAM,)},
                                 display_name="Gus\x1b]0;G\x07"), Link(CONNECTED)])
    app = make_app(settings=Settings(statuses=("available", "b\x1b[5mreak")))
    app.feed = feed
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("1")
        await answered(app)
        await settle(app, pilot)
        await pilot.pause(0.1)  # the toast is shown a moment later
        text = screen_text(app)
        refusal = r"no\x1b]0;T\x07 [bold]way[/] [link=https://evil.example]x[/link]"
        assert r"you: Gus\x1b]0;G\x07 (agent_7\u202e)" in text
        assert f"hub: ✕ r=23: {refusal}" in text                     # the status bar
        assert r"available: r=23: no\x1b]0;T\x07 [bold]way[/]" in text  # the notification
        assert r"2  b\x1b[5mreak" in text                             # the compact screen
        await pilot.press("s")                                       # the status picker
        await settle(app, pilot)
        assert r"2  b\x1b[5mreak" in screen_text(app)
        assert_nothing_raw(app)


async def test_palette_titles_with_names_from_the_hub_are_not_markup() -> None:
    events = hostile_events()
    events.insert(2, Snapshot("more", [value("agent_1", "[bold]x\x1b[8m", "1", 5)], seq=1))
    app = make_app(events)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        titles = [Content.from_markup(command.title).plain
                  for command in app.get_system_commands(app.screen)]
        assert r"Sort by [bold]x\x1b[8m" in titles
        assert r"Sort by skill\x1b[8m" in titles


async def test_team_names_the_wallboard_and_alerts_show_hostile_text_escaped() -> None:
    evil_team = "sa\x1b]0;TEAM\x07les [b]x[/b]"
    events = hostile_events()
    events.insert(2, Snapshot("teams", [value(BAD_ID, "team", evil_team, 300),
                                        value("agent_1", "team", evil_team, 300)], seq=1))
    app = make_app(events)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        grid = app.query_one(AgentGrid)
        shown = r"sa\x1b]0;TEAM\x07les [b]x[/b]"
        assert grid.group_text(shown).startswith(f"▾ {shown}  2 agents")
        await pilot.press("a")  # the alert list: the hostile name, over its break limit
        await settle(app, pilot)
        assert_nothing_raw(app)
        await pilot.press("w")
        await settle(app, pilot)
        assert shown[:20] in screen_text(app)  # (the name column is 20 wide)
        assert_nothing_raw(app)
