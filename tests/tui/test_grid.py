"""The agent grid at scale: a window of the rows over thousands of agents, drawn fast."""

from __future__ import annotations

from typing import Any

import pytest
from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.strip import Strip
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


def drawn(strip: Strip) -> list[tuple[str, Style]]:
    """Each cell of a line with its style, as a terminal would paint it (the mouse's
    metadata left out: it paints nothing)."""
    return [(ch, segment.style.clear_meta_and_links() if segment.style else Style())
            for segment in strip for ch in segment.text]


def datatable_like(table: AgentGrid) -> DataTable[Any]:
    """A DataTable holding the cells of the grid's window, sized as the grid."""
    other: DataTable[Any] = DataTable(cursor_type="row")
    other.styles.height = table.size.height
    for column in table.columns:
        other.add_column(Text(column.label, no_wrap=True), width=column.width,
                         key=column.key)
    for user in table.shown_users:
        other.add_row(*(table.user_cell(user, c) for c in table.shown_columns))
    return other


async def lines_focused_and_not(widget: Any, pilot: Any) -> list[list[list[Any]]]:
    """Every line of ``widget``, focused, then with nothing focused."""
    seen = []
    for focused in (widget, None):
        widget.screen.set_focus(focused)
        await pilot.pause()
        seen.append([drawn(widget.render_line(y)) for y in range(widget.size.height)])
    return seen


@pytest.mark.parametrize("theme", ["monitor-dark", "monitor-light", "monitor-high-contrast",
                                   "monitor-ansi16", "textual-dark"])
async def test_lines_are_drawn_as_a_datatable_draws_the_same_cells(theme: str) -> None:
    """The grid looks as it did when it was a DataTable: header, cells, cut names,
    threshold colours and the cursor, focused and not, line for line."""
    clock = Clock()
    app = make_app(clock=clock, theme=theme)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(app, pilot)
        clock.advance(90)  # some cells over their limit: reversed styles
        app.reconcile()
        table = grid(app)
        table.move_cursor(row=2)
        for step in ("wide", "narrow"):
            if step == "narrow":  # names cut with an ellipsis
                await pilot.resize_terminal(60, 24)
                await settle(app, pilot)
            ours = await lines_focused_and_not(table, pilot)
            other = datatable_like(table)
            await app.push_screen(Screen())
            await app.screen.mount(other)
            other.move_cursor(row=table.cursor_row)
            await pilot.pause()
            assert other.size == table.size
            assert ours == await lines_focused_and_not(other, pilot), step
            app.pop_screen()
            await pilot.pause()
            table.focus()


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


async def test_a_grouped_crowd_windows_over_agents_and_headers_alike() -> None:
    events = crowd()
    snapshot = events[1]
    events[1] = Snapshot(TEAM, [*snapshot.values, *(
        value(f"a{i:04d}", "team", f"team_{i % 4}", 600) for i in range(MANY))], seq=1,
        epoch="e1")
    app = make_app(events)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        table = grid(app)
        size = table.window_size
        assert table.selected_group == "team_0" and table.total == MANY + 4
        assert f"by team │ {MANY} agents │ rows 1-{size} of {MANY + 4}" in screen_text(app)
        await pilot.press("ctrl+end")
        await pilot.pause()
        assert table.selected_user == f"a{MANY - 1:04d}"  # the last of team_3
        assert f"rows {MANY + 4 - size + 1}-{MANY + 4} of {MANY + 4}" in screen_text(app)
        await pilot.press("z")  # every team folded: four header lines
        await settle(app, pilot)
        assert table.total == 4 and table.selected_group == "team_3"
