"""What a supervisor needs of the monitor: teams, the roster, names, who is counted,
the wallboard and alerts. Through Textual's pilot on a scripted floor of two teams."""

from __future__ import annotations

from typing import Any

from textual.color import Color
from textual.widgets import Digits

from monitor.tui.alerts import AlertBook, notification, pick_notifier
from monitor.tui.app import MonitorApp
from monitor.tui.feed import CONNECTED, Link, Session, Snapshot
from monitor.tui.model import OTHERS, AgentTable, Group, Thresholds
from monitor.tui.settings import Settings
from monitor.tui.wallboard import TILES, Wallboard
from monitor.tui.widgets import AgentGrid, AlertList
from tests.tui.scenario import (
    CALLS,
    NOW,
    TEAM,
    Clock,
    floor_events,
    make_app,
    message_event,
    palette_search,
    screen_text,
    settle,
    value,
)

WIDE = (120, 30)


def grid(app: MonitorApp) -> AgentGrid:
    return app.query_one(AgentGrid)


def lines(app: MonitorApp) -> list[str]:
    """What each line of the grid's window shows: a userId, or ``#group`` for a header."""
    return [f"#{row.key}" if isinstance(row, Group) else row.user_id
            for row in grid(app).shown_rows]


def floor_app(**kwargs: Any) -> MonitorApp:
    return make_app(floor_events(), **kwargs)


# -- teams -------------------------------------------------------------------------------


async def test_agents_are_grouped_by_team_under_headers_with_counts() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert lines(app) == ["#sales", "s1", "s2", "s3", "#support", "p1", "p2", "p3",
                              f"#{OTHERS}", "supervisor"]
        sales = grid(app).group_text("sales")
        assert sales.startswith("▾ sales  3 agents")
        for count in ("● 2 online", "✔ 1 available", "▶ 1 on call", "☎ 1 ringing",
                      "⚠ 1 over limit"):
            assert count in sales, count
        assert "● 3 online  ✔ 2 available  ▶ 2 on call" in grid(app).group_text("support")
        assert grid(app).group_text(OTHERS) == "▾ not counted (not agents)  1 agent"
        text = screen_text(app)
        assert "by team │ 6 agents (+1 not counted)" in text
        # the group attribute is a column too
        assert grid(app).user_cell("p1", "team").plain == "support"
        # sorting sorts within each group
        app.set_sort("status_time")
        await settle(app, pilot)
        assert lines(app)[:4] == ["#sales", "s2", "s1", "s3"]


async def test_enter_on_a_header_folds_and_opens_its_group_and_z_folds_them_all() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        table = grid(app)
        table.move_cursor(row=lines(app).index("#support"))
        await pilot.press("enter")
        await settle(app, pilot)
        assert lines(app) == ["#sales", "s1", "s2", "s3", "#support", f"#{OTHERS}",
                              "supervisor"]
        assert table.selected_group == "support"  # the cursor stays on the header
        assert table.group_text("support").startswith("▸ support  3 agents")
        await pilot.press("enter")
        await settle(app, pilot)
        assert "p3" in lines(app)
        await pilot.press("z")
        await settle(app, pilot)
        assert lines(app) == ["#sales", "#support", f"#{OTHERS}"]
        await pilot.press("z")
        await settle(app, pilot)
        assert len(lines(app)) == 10
        # a click on the cursor's header folds it too
        await pilot.click(AgentGrid, offset=(3, 1 + table.cursor_row))
        await settle(app, pilot)
        assert lines(app)[lines(app).index("#support") + 1] == f"#{OTHERS}"


async def test_team_filter_cycles_through_the_teams_and_the_palette_offers_each() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        assert app.filter.group == "sales"
        assert lines(app) == ["#sales", "s1", "s2", "s3"]
        assert "filter: team sales" in screen_text(app)
        assert "3 of 6 agents" in screen_text(app)
        await pilot.press("t")
        await settle(app, pilot)
        assert lines(app) == ["#support", "p1", "p2", "p3"]
        await pilot.press("t")  # past the last team: everyone again
        await settle(app, pilot)
        assert app.filter.group is None and len(lines(app)) == 10
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Filter: team support" in titles and "Group: fold / open sales" in titles
        titles["Filter: team support"].callback()
        await settle(app, pilot)
        assert lines(app) == ["#support", "p1", "p2", "p3"]
        # a text filter keeps the groups that have a match, with their counts
        await pilot.press("x", "slash", *"kemi", "enter")
        await settle(app, pilot)
        assert lines(app) == ["#sales", "s2", "#support", "p1"]
        assert grid(app).group_text("sales").startswith("▾ sales  1 of 3 agents")


async def test_g_switches_grouping_off_and_on() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await pilot.press("g")
        await settle(app, pilot)
        assert lines(app) == ["s1", "p1", "s2", "s3", "p2", "supervisor", "p3"]
        assert "by team" not in screen_text(app)
        await pilot.press("g")
        await settle(app, pilot)
        assert lines(app)[0] == "#sales"


async def test_no_team_anywhere_means_no_headers() -> None:
    app = make_app()  # the plain team of the other tests: no "team" attribute
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert not any(line.startswith("#") for line in lines(app))


async def test_a_cursor_key_walks_over_headers_and_agents_alike() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        table = grid(app)
        table.move_cursor(row=0)
        assert table.selected_group == "sales" and table.selected_user is None
        await pilot.press("down")
        assert table.selected_user == "s1"
        await pilot.press("end")
        assert table.selected_user == "supervisor"


# -- who is counted, and names -------------------------------------------------------------


async def test_the_supervisor_is_shown_but_never_counted() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        summary = app.summary(NOW)
        assert summary.total == 6 and summary.uncounted == 1
        assert summary.by_online == {"online": 5, "offline": 1}  # not 6 online
        assert "supervisor" in lines(app)


def test_not_agents_by_user_id_role_attribute_or_the_operators_token_role() -> None:
    table = AgentTable(not_agents={"boss", "supervisor"})
    table.apply_snapshot(TEAM, [value("a1", "onlineStatus", "online", 5),
                                value("boss", "onlineStatus", "online", 5),
                                value("lead", "onlineStatus", "online", 5),
                                value("lead", "role", "supervisor", 5),
                                value("me", "onlineStatus", "online", 5)], now=NOW)
    assert table.summary(NOW).total == 2  # a1, me (boss by id, lead by role: not)
    table.set_operator("me", "supervisor")
    assert table.summary(NOW).total == 1
    table.set_operator("me", "agent")  # an agent watching their own team is counted
    assert table.summary(NOW).total == 2


async def test_names_everywhere_and_a_shared_name_is_told_apart() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        cell = grid(app).user_cell
        assert cell("s2", "name").plain == "⚠ Kemi Dang (s2)"
        assert cell("p1", "name").plain == "⚠ Kemi Dang (p1)"
        assert cell("p2", "name").plain == "Omar Haddad"  # no one else is called so
        # the other party of a call between agents, by name
        assert cell("p3", "call").plain == "☎ ringing ← Ana Berg"
        assert cell("s1", "call").plain == "↗ calling → Wen Tran"
        # the user id: in a column of its own, on demand
        assert "user" not in grid(app).shown_columns
        await pilot.press("u")
        await settle(app, pilot)
        assert cell("p3", "user").plain == "p3"
        # the event log, by name too
        app.feed.push(message_event(4, "p3", "call", "Answered", "Ringing", topic=CALLS,
                                    callId="c-2", **{"from": "s1", "to": "p3"}))
        await pilot.press("l")
        await settle(app, pilot)
        assert "Wen Tran call: Ringing → Answered  (Ana Berg → Wen Tran)" in screen_text(app)


async def test_at_80x24_the_other_party_stays_readable() -> None:
    app = floor_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        cell = grid(app).user_cell
        assert cell("p3", "call").plain == "☎ ← Ana Berg"
        assert cell("s2", "name").plain == "⚠ Kemi D. (s2)"
        assert "⚠ Kemi D. (s2)" in screen_text(app)


async def test_status_labels_from_the_settings_and_words_for_underscores() -> None:
    app = floor_app(settings=Settings(status_labels={"break": "on a break"}))
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert grid(app).user_cell("s2", "status").plain == "◐ after call work"
        assert grid(app).user_cell("p1", "status").plain == "◐ on a break"
        assert "◐ 1 on a break" in screen_text(app)


# -- the wallboard ---------------------------------------------------------------------------


async def test_the_wallboard_shows_the_floor_and_each_team_and_esc_goes_back() -> None:
    clock = Clock()
    app = floor_app(clock=clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        board = app.screen
        assert isinstance(board, Wallboard)
        assert board.values() == {"idle": "0", "talking": "1", "ringing": "2",
                                  "longest": "0:12", "after_call": "1", "away": "1",
                                  "offline": "1", "answered": "0", "abandoned": "0",
                                  "breaches": "2"}
        text = screen_text(app)
        assert "Wallboard · 6 agents · 1 not counted" in text
        assert "sales" in text and "support" in text and "all" in text
        # calls answered and abandoned since start, from the live call topic
        clock.advance(5)
        app.feed.push(message_event(4, "p3", "call", "Answered", "Ringing", topic=CALLS,
                                    callId="c-2", at=clock.now, **{"from": "s1", "to": "p3"}),
                      message_event(5, "s1", "call", "Answered", "Calling", topic=CALLS,
                                    callId="c-2", at=clock.now, **{"from": "s1", "to": "p3"}),
                      message_event(6, "s2", "call", "Ringing", topic=CALLS, callId="c-9",
                                    at=clock.now, **{"from": "+1555", "to": "s2"}))
        await settle(app, pilot)
        clock.advance(30)
        app.feed.push(message_event(7, "s2", "call", "Ended", "Ringing", topic=CALLS,
                                    callId="c-9", at=clock.now, **{"from": "+1555",
                                                                   "to": "s2"}))
        await settle(app, pilot)
        values = board.values()
        assert values["answered"] == "1"  # one call, though two agents said so
        assert values["abandoned"] == "1"  # ended before it was answered
        assert values["ringing"] == "0" and values["longest"] == "-"
        await pilot.press("escape")
        assert not isinstance(app.screen, Wallboard)


async def test_the_wallboard_is_coloured_when_a_tick_comes_before_it_is_composed() -> None:
    """The clock's tick may reconcile between the push of the wallboard and its
    composition (its snapshot came out uncoloured now and then, on a loaded machine):
    the tiles still take the theme's colours, and their numbers."""
    app = floor_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.action_wallboard()  # `w`
        board = app.screen
        assert isinstance(board, Wallboard) and not board.query(Digits)  # not composed
        app.tick()
        await settle(app, pilot)
        for key, _, state in TILES:
            colour = app.styles_by_state[state].color
            assert colour is not None
            assert board.query_one(f"#tile-{key}", Digits).styles.color == \
                Color.from_rich_color(colour), key
        assert board.values()["ringing"] == "2"


async def test_the_wallboard_is_in_the_palette() -> None:
    app = floor_app()
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await palette_search(app, pilot, "wallboard")
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, Wallboard)


# -- alerts ---------------------------------------------------------------------------------


class Terminal:
    """Stands for the terminal driver: keeps what the app writes to it."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, data: str) -> None:
        self.written.append(data)


async def test_an_alert_fires_once_when_a_row_crosses_a_threshold_and_clears() -> None:
    clock = Clock()
    settings = Settings(desktop_notifications="osc777")
    app = floor_app(clock=clock, settings=settings)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        terminal = Terminal()
        app.terminal_driver = terminal  # type: ignore[assignment]
        await settle(app, pilot)
        app.tick()  # alerts are looked for on the clock's tick
        # over already at start: listed, not announced
        assert len(app.alerts.active) == 2 and terminal.written == []
        clock.advance(10)  # Wen Tran's call has rung 22 s: over the 20 s limit
        app.tick()
        assert terminal.written == [
            "\x1b]777;notify;monitor alert;Wen Tran: ringing over 0:20\x07"]
        await settle(app, pilot)
        assert "│ alert 08:53:28 Wen Tran: ringing over 0:20" in screen_text(app)
        app.tick()
        assert len(terminal.written) == 1  # once

        await pilot.press("a")
        await settle(app, pilot)
        text = screen_text(app)
        assert "⚠ 08:53:28 Wen Tran · support ringing over 0:20, for 0:22 now" in text
        assert "⚠ 08:51:40 Kemi Dang (p1) · support break over 15:00, for 16:50" in text
        # answered: the alert clears
        app.feed.push(message_event(4, "p3", "call", "Answered", "Ringing", topic=CALLS,
                                    callId="c-2", at=clock.now, **{"from": "s1", "to": "p3"}))
        await settle(app, pilot)
        app.tick()
        assert "✔ 08:53:28 Wen Tran · support ringing over 0:20, ended 08:53:30 after " \
            "0:22" in screen_text(app)
        assert app.query_one(AlertList).display


async def test_alerts_close_together_are_announced_together() -> None:
    clock = Clock()
    app = floor_app(clock=clock, settings=Settings(desktop_notifications="osc9"))
    async with app.run_test(size=WIDE) as pilot:
        terminal = Terminal()
        app.terminal_driver = terminal  # type: ignore[assignment]
        await settle(app, pilot)
        clock.advance(10)
        app.tick()
        assert len(terminal.written) == 1  # Wen Tran's call rings too long
        clock.advance(2)  # a newcomer's break, begun over 15 min ago
        app.feed.push(message_event(11, "p4", "manual_status", "break", at=clock.now - 901,
                                    displayName="Pia Nowak"))
        await settle(app, pilot)
        assert len(terminal.written) == 1  # not within ALERT_GAP_S of the last one
        clock.advance(8)
        app.tick()
        assert terminal.written[-1] == \
            "\x1b]9;monitor alert: Pia Nowak: break over 15:00\x07"


async def test_alerts_fire_while_the_wallboard_is_up() -> None:
    clock = Clock()
    app = floor_app(clock=clock, settings=Settings(desktop_notifications="osc9"))
    async with app.run_test(size=(80, 24)) as pilot:
        terminal = Terminal()
        app.terminal_driver = terminal  # type: ignore[assignment]
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        clock.advance(10)
        app.tick()
        assert terminal.written == ["\x1b]9;monitor alert: Wen Tran: ringing over 0:20\x07"]
        assert isinstance(app.screen, Wallboard)
        footer = screen_text(app).splitlines()[-1]
        assert "Back to the grid" in footer and "Filter" not in footer


async def test_desktop_notifications_can_be_switched_off_and_are_safe() -> None:
    assert pick_notifier("off", {"TERM_PROGRAM": "iTerm.app"}) is None
    assert pick_notifier("auto", {"TERM_PROGRAM": "iTerm.app"}) == "osc9"
    assert pick_notifier("auto", {"TERM": "foot"}) == "osc777"
    assert pick_notifier("auto", {"TERM": "xterm-256color"}) is None  # unknown: none
    evil = "Mal\x07\x1b]0;x\x07; rm"
    assert notification("osc9", "t", evil) == "\x1b]9;t: Mal\\x07\\x1b]0,x\\x07; rm\x07" \
        .replace("0,x", "0;x")
    assert notification("osc777", "t;x", evil) == \
        "\x1b]777;notify;t,x;Mal\\x07\\x1b]0,x\\x07, rm\x07"


def test_the_alert_book_fires_a_new_stay_again() -> None:
    book = AlertBook()
    fired, _ = book.update([("a", ("status", "break", 100.0, 60.0))], 200.0)
    assert len(fired) == 1
    assert book.update([("a", ("status", "break", 100.0, 60.0))], 201.0) == ([], [])
    _, cleared = book.update([], 300.0)
    assert cleared[0].cleared == 300.0
    fired, _ = book.update([("a", ("status", "break", 400.0, 60.0))], 500.0)
    assert len(fired) == 1 and book.listed()[0].since == 400.0


# -- the roster -----------------------------------------------------------------------------


async def test_users_known_offline_are_rows_from_the_start() -> None:
    roster = Snapshot(TEAM, [value("late", "onlineStatus", "offline", 600, "Late Comer"),
                             value("late", "team", "sales", 600)], seq=1, epoch="e")
    app = make_app([Session("sup", (TEAM,), {}), roster, Link(CONNECTED)])
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert lines(app) == ["#sales", "late"]
        assert "○ 1 offline" in screen_text(app)


# -- the agent's own screen and the help --------------------------------------------------


async def test_an_agents_own_screen_offers_no_grid_keys() -> None:
    app = make_app([Session("agent_7", (), {"manual_status": ("team_a",)}),
                    Link(CONNECTED)])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "Quit" in footer and "My status" in footer
        for word in ("Filter", "Sort", "Log", "Wallboard", "Today"):
            assert word not in footer, word
        keys = dict(app.help_keys())
        assert "Filter" not in keys.values() and "Focus Next" not in keys.values()
        assert "Today" not in keys.values()


def test_the_model_tells_groups_in_order() -> None:
    table = AgentTable(not_agents={"sup"}, thresholds=Thresholds())
    table.apply_snapshot(TEAM, [value("b", "team", "Beta", 5), value("a", "team", "alpha", 5),
                                value("n", "onlineStatus", "online", 5),
                                value("sup", "onlineStatus", "online", 5)], now=NOW)
    assert table.group_keys() == ["alpha", "Beta", "", OTHERS]
