"""Every feature of the monitor, driven through Textual's pilot on a scripted feed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from textual.app import ScreenStackError
from textual.widgets import Input

from monitor.tui.app import MonitorApp
from monitor.tui.feed import CONNECTED, CONNECTING, OFFLINE, RECONNECTING, Link, Session
from monitor.tui.screens import AgentDetail, HelpScreen, StatusPicker
from monitor.tui.settings import Settings
from monitor.tui.themes import LoadedThemes, load_themes, shipped_themes_dir
from monitor.tui.today import TodayScreen
from monitor.tui.widgets import AgentGrid, EventLog
from tests.tui.scenario import (
    CALLS,
    NOW,
    TEAM,
    Clock,
    answered,
    calls_snapshot,
    make_app,
    message_event,
    operator_session,
    palette_search,
    screen_text,
    settle,
    team_events,
)

WIDE = (140, 30)


def grid(app: MonitorApp) -> AgentGrid:
    return app.query_one(AgentGrid)


def row_ids(app: MonitorApp) -> list[str]:
    return list(grid(app).shown_users)


def cell(app: MonitorApp, user: str, column: str) -> str:
    return grid(app).user_cell(user, column).plain


def notes(app: MonitorApp) -> str:
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


async def test_grid_shows_one_row_per_agent_from_the_snapshots() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert row_ids(app) == ["agent_6", "agent_1", "agent_2", "agent_3", "agent_4",
                                "agent_5"]
        assert cell(app, "agent_1", "name") == "Ann Lee"
        assert cell(app, "agent_6", "name") == "⚠ agent_6"
        assert cell(app, "agent_5", "call") == "▶ talking ← +15550100"
        assert cell(app, "agent_1", "skill") == "billing"  # a custom attribute's column
        text = screen_text(app)
        # wire text is shown as it is, never read as markup
        assert "Bob <b>[bold]Marley" in text
        assert "you: Ann Lee (agent_1) │ ✔ available 2:05" in text
        assert "● connected │ ws://127.0.0.1:6899/ │ as agent_1" in text
        assert "● 5 online  ○ 1 offline" in text
        assert "▶ 2 on call  ☎ 1 ringing" in text
        assert "⚠ 2 over limit" in text
        assert "✔ 3 available  ◐ 1 break  ◐ 1 lunch  ◐ 1 after call work" in text


async def test_live_messages_update_cells_in_place_and_time_ticks() -> None:
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        rebuilds = grid(app).rebuilds
        clock.advance(10)
        app.feed.push(message_event(41, "agent_1", "manual_status", "break", "available",
                                    at=clock.now))
        await settle(app, pilot)
        assert cell(app, "agent_1", "status") == "◐ break"
        assert cell(app, "agent_1", "status_time") == "0:00"
        clock.advance(75)
        app.reconcile()
        assert cell(app, "agent_1", "status_time") == "1:15"
        assert cell(app, "agent_2", "status_time") == "⚠ 18:05"
        assert grid(app).rebuilds == rebuilds  # updated cell by cell, never rebuilt
        assert len(row_ids(app)) == 6
        # a new custom attribute brings its own column
        app.feed.push(message_event(42, "agent_2", "queue", "vip"))
        await settle(app, pilot)
        assert "queue" in grid(app).shown_columns
        assert cell(app, "agent_2", "queue") == "vip"


async def test_sort_by_key_and_by_header_click_keeps_the_cursor_on_the_agent() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        table = grid(app)
        table.move_cursor(row=row_ids(app).index("agent_3"))
        await pilot.press("o")  # next column: online
        await settle(app, pilot)
        assert app.sort.column == "online"
        assert row_ids(app)[-1] == "agent_4"  # offline last
        assert table.selected_user == "agent_3"
        await pilot.press("r")
        await settle(app, pilot)
        assert row_ids(app)[0] == "agent_4" and app.sort.reverse
        assert table.selected_user == "agent_3"
        # click the "Status" header
        header = screen_text(app).splitlines()[6]
        await pilot.click(AgentGrid, offset=(header.index("Status") + 1, 0))
        await settle(app, pilot)
        assert app.sort.column == "status" and not app.sort.reverse
        assert row_ids(app)[0] == "agent_3"  # after_call_work
        await pilot.click(AgentGrid, offset=(header.index("Status") + 1, 0))
        await settle(app, pilot)
        assert app.sort.reverse
        assert table.selected_user == "agent_3"
        assert "sort: Status ▼" in screen_text(app)


async def test_cursor_follows_its_agent_when_rows_move() -> None:
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        app.set_sort("status_time")
        await settle(app, pilot)
        table = grid(app)
        table.move_cursor(row=row_ids(app).index("agent_5"))
        # agent_1 changes status: the order changes under the cursor
        app.feed.push(message_event(41, "agent_1", "manual_status", "break", at=clock.now))
        await settle(app, pilot)
        assert row_ids(app)[0] == "agent_1"
        assert table.selected_user == "agent_5"


async def test_filter_with_slash_matches_name_or_state_and_escape_clears() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"break")
        await settle(app, pilot)
        assert row_ids(app) == ["agent_2"]
        assert "filter: “break”" in screen_text(app) and "1 of 6 agents" in screen_text(app)
        await pilot.press("enter")
        assert isinstance(app.focused, AgentGrid)
        assert row_ids(app) == ["agent_2"]
        await pilot.press("slash", "ctrl+a", "backspace", *"ann")  # ctrl+a: start of line
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert len(row_ids(app)) == 6
        assert app.filter.text == ""


async def test_a_filter_that_hid_the_cursors_agent_gives_it_back_when_cleared() -> None:
    """Typing a filter moves the cursor onto what still shows; clearing it puts the
    cursor back on the agent it was on, in view, not on whatever matched last."""
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        grid(app).move_cursor(row=row_ids(app).index("agent_5"))
        await pilot.press("slash", *"break")
        await settle(app, pilot)
        assert grid(app).selected_user == "agent_2"
        await pilot.press("escape")
        await settle(app, pilot)
        assert grid(app).selected_user == "agent_5"
        assert grid(app).cursor_row == row_ids(app).index("agent_5")


async def test_quick_filters_online_on_call_status_and_clear() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        grid(app).move_cursor(row=row_ids(app).index("agent_5"))
        await pilot.press("n")
        await settle(app, pilot)
        assert "agent_4" not in row_ids(app)
        await pilot.press("c")
        await settle(app, pilot)
        assert row_ids(app) == ["agent_6", "agent_5"]
        assert grid(app).selected_user == "agent_5"  # the cursor stayed on its agent
        await pilot.press("x")
        await settle(app, pilot)
        assert len(row_ids(app)) == 6
        await pilot.press("b")  # first configured status: available
        await settle(app, pilot)
        assert app.filter.status == "available"
        assert row_ids(app) == ["agent_6", "agent_1", "agent_5"]
        await pilot.press("b")
        await settle(app, pilot)
        assert app.filter.status == "break" and row_ids(app) == ["agent_2"]
        assert "status break" in screen_text(app)


async def test_thresholds_highlight_rows_and_count_in_the_summary() -> None:
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert cell(app, "agent_3", "name") == "Chloé Durand"
        clock.advance(81)  # after_call_work passes its 2 min
        app.reconcile()
        assert cell(app, "agent_3", "name") == "⚠ Chloé Durand"
        assert cell(app, "agent_3", "status_time").startswith("⚠ ")
        assert grid(app).user_cell("agent_3", "name").style.reverse  # highlighted
        assert "⚠ 3 over limit" in screen_text(app)


async def test_event_log_toggles_and_lists_topic_messages() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        log = app.query_one(EventLog)
        assert not log.display
        await pilot.press("l")
        await settle(app, pilot)
        assert log.display
        assert "no topic messages yet" in screen_text(app)
        app.feed.push(message_event(41, "agent_1", "manual_status", "lunch", "available",
                                    at=NOW + 1))
        await settle(app, pilot)
        assert "08:53:21 team_a Ann Lee manual_status: available → lunch" in screen_text(app)
        await pilot.press("l")
        await settle(app, pilot)
        assert not log.display


async def test_enter_opens_the_agents_timeline() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        app.feed.push(message_event(8, "agent_5", "call", "Ended", "Answered", at=NOW,
                                    topic=CALLS, callId="c-17",
                                    **{"from": "+15550100", "to": "agent_5"}))
        await settle(app, pilot)
        grid(app).move_cursor(row=row_ids(app).index("agent_5"))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, AgentDetail)
        text = screen_text(app)
        assert "Eve Adams (agent_5)" in text
        assert "manual_status: available" in text
        assert "call: Answered → Ended  +15550100 → agent_5 [c-17]  (ALL_CALL_STATUS)" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, AgentDetail)


async def test_own_status_from_picker_and_digits_goes_through_change_attribute() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("s")
        assert isinstance(app.screen, StatusPicker)
        await pilot.press("down", "enter")  # from available (current) to break
        await settle(app, pilot)
        await answered(app)
        assert app.feed.changes == [("manual_status", "break")]  # type: ignore[attr-defined]
        assert "hub: ✔ ok 08:53:20" in screen_text(app)
        assert "you: Ann Lee (agent_1) │ ◐ break" in screen_text(app)
        await pilot.press("3")  # lunch, directly
        await answered(app)
        assert app.feed.changes[-1] == ("manual_status", "lunch")  # type: ignore[attr-defined]
        await pilot.press("9")  # only 6 statuses: nothing happens
        await answered(app)
        assert len(app.feed.changes) == 2  # type: ignore[attr-defined]
        # the hub's own message about it updates the grid row too
        app.feed.push(message_event(41, "agent_1", "manual_status", "lunch", "available",
                                    at=NOW))
        await settle(app, pilot)
        assert cell(app, "agent_1", "status") == "◐ lunch"


async def test_refused_change_shows_the_hubs_answer() -> None:
    app = make_app(answer=lambda name, value: 23)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        await answered(app)
        await settle(app, pilot)
        text = screen_text(app)
        assert "hub: ✕ r=23: attribute name or value invalid" in text
        assert "you: Ann Lee (agent_1) │ ✔ available" in text  # unchanged
        assert "Status refused" in notes(app)


async def test_slow_answer_shows_sending_until_the_hub_replies() -> None:
    gate = asyncio.Event()

    async def answer(name: str, value: Any) -> int:
        await gate.wait()
        return 0

    app = make_app(answer=answer)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        await pilot.pause()
        assert "→ break: sending…" in screen_text(app)
        gate.set()
        await answered(app)
        await settle(app, pilot)
        assert "hub: ✔ ok" in screen_text(app)


async def test_token_without_a_topic_for_the_status_says_so() -> None:
    events = team_events()
    events[0] = operator_session(publishes={})
    app = make_app(events)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert "token publishes manual_status to no topic" in screen_text(app)
        await pilot.press("2")
        await answered(app)
        assert "No topic for your status" in notes(app)
        assert app.feed.changes == [("manual_status", "break")]  # type: ignore[attr-defined]


async def test_read_only_never_changes_the_status() -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("s", "2")
        await pilot.pause()
        assert not isinstance(app.screen, StatusPicker)
        assert app.feed.changes == []  # type: ignore[attr-defined]
        assert "read-only" in screen_text(app)


async def test_agent_without_team_topics_gets_the_compact_own_status_screen() -> None:
    app = make_app([Session("agent_7", (), {"manual_status": ("team_a",)}),
                    Link(CONNECTED)])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert not grid(app).display or not grid(app).region.height
        text = screen_text(app)
        assert "My status: – not set" in text
        assert "subscribes to no team topic" in text
        assert "2  break" in text
        await pilot.press("2")
        await answered(app)
        await settle(app, pilot)
        assert "My status: ◐ break" in screen_text(app)
        assert "2  break  ◀ current" in screen_text(app)


async def test_a_token_with_only_all_call_status_still_gets_the_grid() -> None:
    """ALL_CALL_STATUS counts as a topic: the grid lists the agents with calls, their
    call state and the other party; online state and status are unknown there."""
    app = make_app([Session("sup", (CALLS,), {}), calls_snapshot(), Link(CONNECTED)])
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert not app.screen.has_class("-compact")
        assert grid(app).display and grid(app).region.height
        assert row_ids(app) == ["agent_5", "agent_6"]
        assert cell(app, "agent_5", "call") == "▶ talking ← +15550100"
        assert cell(app, "agent_6", "online") == "? unknown"
        assert cell(app, "agent_6", "status") == "–"
        text = screen_text(app)
        assert "? 2 unknown" in text and "no status set yet" in text
        assert "subscribes to no team topic" not in text


async def test_connection_line_reconnecting_stale_and_back() -> None:
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        clock.advance(30)
        app.feed.push(Link(RECONNECTING, retry_at=clock.now + 4, detail="going away"))
        await settle(app, pilot)
        text = screen_text(app)
        assert "◌ reconnecting in 4 s: going away" in text
        assert "last message 30 s ago" in text
        assert "⧗ STALE since 08:53:50" in text
        assert grid(app).has_class("-stale")
        assert len(row_ids(app)) == 6  # the grid stays on screen
        app.feed.push(Link(CONNECTED))
        await settle(app, pilot)
        assert "● connected" in screen_text(app) and "STALE" not in screen_text(app)
        assert not grid(app).has_class("-stale")
        app.feed.push(Link(CONNECTING, retry_at=clock.now + 2.4))
        await settle(app, pilot)
        assert "◌ connecting in 2 s" in screen_text(app)
        app.feed.push(Link(OFFLINE, detail="token expired (r=6)"))
        await settle(app, pilot)
        assert "✕ offline: token expired (r=6)" in screen_text(app)


async def test_a_gap_asks_the_feed_for_a_fresh_snapshot() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        app.feed.push(message_event(45, "agent_1", "manual_status", "lunch"))
        await settle(app, pilot)
        await answered(app, "resync")
        assert app.feed.resyncs == [TEAM]  # type: ignore[attr-defined]


async def test_help_is_generated_from_the_bindings() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        listed = {key: words for keys, words in help_screen.keys
                  for key in keys.split(", ")} | help_screen.extra
        for key, words in (("/", "Filter"), ("s", "My status"), ("n", "Online only"),
                           ("c", "On a call only"), ("b", "Filter by status"),
                           ("r", "Reverse sort"), ("l", "Log"), ("q", "Quit"),
                           ("d", "Today"), ("w", "Wallboard"), ("a", "Alerts"),
                           ("⏎", "Agent detail (a group: fold / open)")):
            assert listed.get(key) == words, key
        assert "6=training" in listed["1-6"]
        text = screen_text(app)
        assert "Quit" in text and "Filter" in text and "Keys" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_the_footer_shows_every_view_of_the_grid_at_80x24() -> None:
    """The Today view is found like the wallboard: its key in the footer, whole, at the
    smallest size the monitor supports, and the key opens it."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        words = ["Quit", "Help", "Filter", "My status", "Sort", "Wallboard", "Today",
                 "Alerts", "Log"]
        assert [footer.find(word) >= 0 for word in words] == [True] * len(words), footer
        assert "…" not in footer
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, TodayScreen)
        await pilot.press("escape")
        await settle(app, pilot)
        assert not isinstance(app.screen, TodayScreen)


async def test_help_leaves_out_status_keys_when_read_only() -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        keys = dict(app.help_keys())
        assert "My status" not in keys.values()
        assert "Filter" in keys.values()


async def test_command_palette_offers_actions_filters_sorts_and_themes() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        for title in ("Sort by For", "Filter: online only", "Filter: status break",
                      "Filter: clear all", "Event log: show / hide", "My status: set lunch",
                      "Theme: monitor-high-contrast", "Theme: monitor-ansi16", "Help: keys"):
            assert title in titles, title
        titles["Filter: status break"].callback()
        await settle(app, pilot)
        assert row_ids(app) == ["agent_2"]
        # through the palette itself, as a person would
        await palette_search(app, pilot, "monitor-light")
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "monitor-light"
        assert app.styles_by_state["online"].color.name == "#1a7f37"  # type: ignore[union-attr]


async def test_theme_flag_bad_files_and_unknown_names_are_reported() -> None:
    themes = load_themes([shipped_themes_dir()])
    broken = LoadedThemes(themes.themes, ["themes/broken.toml: primary: required"])
    app = MonitorApp(make_app().feed, Settings(), themes=broken, theme_name="nope",
                     clock=Clock())
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert "themes/broken.toml: primary: required" in notes(app)
        assert "no theme named 'nope'" in notes(app)
        assert app.theme == "monitor-dark"
    app = make_app(theme="monitor-high-contrast")
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert app.theme == "monitor-high-contrast"
        assert app.use_theme("monitor-ansi16")
        await settle(app, pilot)
        assert app.styles_by_state["breach"].color.number == 9  # type: ignore[union-attr]


async def test_columns_drop_at_80x24_and_come_back_when_wider() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert grid(app).shown_columns == ["name", "online", "status", "status_time",
                                           "call", "call_time"]
        assert "2 columns hidden" in screen_text(app)
        rows = row_ids(app)
        await pilot.resize_terminal(160, 30)
        await settle(app, pilot)
        assert grid(app).shown_columns[-2:] == ["last_change", "skill"]
        assert row_ids(app) == rows
        assert cell(app, "agent_1", "skill") == "billing"
        await pilot.resize_terminal(50, 20)
        await settle(app, pilot)
        assert grid(app).shown_columns[:2] == ["name", "status"]


async def test_q_quits_cleanly_and_closes_the_feed() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    # the feed was told to close: its stream ends
    assert [e async for e in app.feed.events()] == []


async def test_a_tick_or_a_session_during_the_shutdown_does_nothing() -> None:
    """Textual closes the app's screens before it stops the app's timers: a clock tick
    could come with no screen left, raise ScreenStackError, and fail whichever pilot
    test was ending (now and then, on a loaded machine). Once the app has shut down it
    is in that state for good: a tick, a reconcile and a feed's late events do
    nothing."""
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert app.screen.query_one(AgentGrid)
    with pytest.raises(ScreenStackError):
        app.screen  # noqa: B018  # every screen closed
    app.tick()
    app.reconcile()
    app.handle_event(replace(operator_session(), subscribe=()))
    app.handle_event(Link(RECONNECTING))
    assert app.session is not None and app.session.subscribe == ()
    assert app.link.state == RECONNECTING


async def test_header_clicked_message_sorts_too() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        table = grid(app)
        table.post_message(AgentGrid.HeaderClicked(table, "call"))
        await settle(app, pilot)
        assert app.sort.column == "call"
        assert row_ids(app)[:2] == ["agent_5", "agent_6"]
