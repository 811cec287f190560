"""The agent grid at scale: a window of the rows over thousands of agents, drawn fast."""

from __future__ import annotations

from typing import Any

import pytest
from textual import events
from textual.widgets import DataTable

from monitor.tui.feed import CONNECTED, Link, Snapshot
from monitor.tui.widgets import AgentGrid
from tests.tui.scenario import (
    NOW,
    TEAM,
    Clock,
    make_app,
    message_event,
    operator_session,
    screen_text,
    settle,
    team_events,
    value,
)

MANY = 500


def crowd(count: int = MANY) -> list[Any]:
    """``count`` agents named ``Agent NNNN``, every fifth on a break."""
    values = []
    for i in range(count):
        user = f"a{i:04d}"
        values.append(value(user, "onlineStatus", "online", 600, f"Agent {i:04d}"))
        values.append(value(user, "manual_status", "break" if i % 5 == 0 else "available",
                            300 + i))
    return [operator_session(), Snapshot(TEAM, values, seq=1, epoch="e1"), Link(CONNECTED)]


def grid(app: Any) -> AgentGrid:
    return app.query_one(AgentGrid)


def flat(pair: Any) -> list[tuple[str, Any]]:
    fixed, scrollable = pair
    return [(ch, segment.style) for cell in [*fixed, *scrollable] for segment in cell
            for ch in segment.text]


@pytest.mark.parametrize("theme", ["monitor-dark", "monitor-light", "monitor-high-contrast",
                                   "monitor-ansi16", "textual-dark"])
async def test_rows_are_drawn_exactly_as_datatable_draws_them(theme: str) -> None:
    clock = Clock()
    app = make_app(clock=clock, theme=theme)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(app, pilot)
        clock.advance(90)  # some cells over their limit: reversed styles
        app.reconcile()
        table = grid(app)
        table.move_cursor(row=2)
        table.hover_coordinate = table.hover_coordinate._replace(row=3)
        base = table.rich_style
        keys = [table._header_row_key, *(row.key for row in table.ordered_rows)]
        for key in keys:
            table._row_render_cache.clear()
            ours = flat(table._render_line_in_row(key, 0, base, table.cursor_coordinate,
                                                  table.hover_coordinate))
            table._row_render_cache.clear()
            theirs = flat(DataTable._render_line_in_row(
                table, key, 0, base, table.cursor_coordinate, table.hover_coordinate))
            assert ours == theirs, key
        # narrow: names cut with an ellipsis; then the grid without focus (the filter
        # box has it): the cursor in its blurred style
        for step in ("narrow", "blurred"):
            if step == "narrow":
                await pilot.resize_terminal(60, 24)
            else:
                await pilot.press("slash")
                assert not table.has_focus
            await settle(app, pilot)
            base = table.rich_style
            for key in [table._header_row_key, *(row.key for row in table.ordered_rows)]:
                table._row_render_cache.clear()
                ours = flat(table._render_line_in_row(
                    key, 0, base, table.cursor_coordinate, table.hover_coordinate))
                table._row_render_cache.clear()
                theirs = flat(DataTable._render_line_in_row(
                    table, key, 0, base, table.cursor_coordinate, table.hover_coordinate))
                assert ours == theirs, (step, key)


async def test_the_table_holds_only_the_rows_on_screen() -> None:
    app = make_app(crowd())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        table = grid(app)
        size = table.window_size
        assert 10 < size < 30 and table.row_count == size
        assert table.shown_users[:2] == ["a0000", "a0001"]
        text = screen_text(app)
        assert f"{MANY} agents │ rows 1-{size}" in text
        assert "Agent 0000" in text and f"Agent {size:04d}" not in text


async def test_cursor_keys_page_and_wheel_move_the_window() -> None:
    app = make_app(crowd())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        table = grid(app)
        size = table.window_size
        table.move_cursor(row=size - 1)
        await pilot.press("down")
        await pilot.pause()
        assert table.top == 1 and table.cursor_row == size - 1
        assert table.selected_user == f"a{size:04d}"
        assert f"Agent {size:04d}" in screen_text(app)
        assert f"rows 2-{size + 1}" in screen_text(app)  # the view line follows at once
        await pilot.press("pagedown")
        await pilot.pause()
        assert table.top == 1 + size and table.selected_user == f"a{2 * size:04d}"
        await pilot.press("ctrl+end")
        await pilot.pause()
        assert table.selected_user == f"a{MANY - 1:04d}" and table.top == MANY - size
        await pilot.press("pageup")
        await pilot.pause()
        assert table.top == MANY - 2 * size
        await pilot.press("ctrl+home")
        await pilot.pause()
        assert table.top == 0 and table.selected_user == "a0000"
        await pilot.press("up")  # at the very top: nothing moves
        assert table.top == 0 and table.cursor_row == 0
        table.post_message(events.MouseScrollDown(table, 5, 5, 0, 1, 0, False, False, False))
        await pilot.pause()
        assert table.top == AgentGrid.WHEEL_ROWS
        assert table.selected_user == f"a{AgentGrid.WHEEL_ROWS:04d}"  # kept on screen


async def test_the_cursor_follows_its_agent_out_of_the_window_and_back() -> None:
    clock = Clock()
    app = make_app(crowd(), clock=clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        table = grid(app)
        table.move_cursor(row=3)
        assert table.selected_user == "a0003"
        app.set_sort("name", reverse=True)  # a0003 is now near the end
        await settle(app, pilot)
        size = table.window_size  # a0003 is 4th from the end: the window ends the list
        assert table.selected_user == "a0003" and table.top == MANY - size
        assert table.cursor_row == size - 4
        app.set_sort("status")  # available first: a0001, a0002, a0003, ...
        await settle(app, pilot)
        assert table.selected_user == "a0003" and table.top == 0 and table.cursor_row == 2
        app.set_sort("name")  # a0003 again at index 3: back on the line it is on
        await settle(app, pilot)
        assert table.selected_user == "a0003" and table.top == 1 and table.cursor_row == 2
        await pilot.press("b")  # status filter: available (a0003 stays)
        await settle(app, pilot)
        assert table.selected_user == "a0003"
        # its status changes: filtered out, the cursor stays on that line
        app.feed.push(message_event(2, "a0003", "manual_status", "lunch", "available",
                                    at=clock.now))
        await settle(app, pilot)
        assert "a0003" not in table.shown_users
        assert table.row_count == table.window_size


async def test_live_changes_are_on_screen_not_only_in_the_table() -> None:
    clock = Clock()
    app = make_app(crowd(), clock=clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        line = next(x for x in screen_text(app).splitlines() if "Agent 0002" in x)
        assert "✔ available" in line and "5:02" in line
        clock.advance(60)
        app.feed.push(message_event(2, "a0002", "manual_status", "meeting", "available",
                                    at=clock.now))
        await settle(app, pilot)
        lines = screen_text(app).splitlines()
        line = next(x for x in lines if "Agent 0002" in x)
        assert "◐ meeting" in line and "0:00" in line
        assert "6:01" in next(x for x in lines if "Agent 0001" in x)  # time ticked
        # fewer rows than lines after a filter, then all of them again
        await pilot.press("slash", *"meeting", "enter")
        await settle(app, pilot)
        assert grid(app).shown_users == ["a0002"]
        await pilot.press("escape")
        await settle(app, pilot)
        assert grid(app).row_count == grid(app).window_size
        assert "Agent 0002" in screen_text(app)


async def test_small_teams_look_as_before() -> None:
    app = make_app(team_events())
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(app, pilot)
        assert grid(app).row_count == 6 and "rows" not in screen_text(app)
        assert NOW
