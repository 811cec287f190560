"""The day from the hub in the monitor: the agent detail's bar and changes, the Today
screen, today's figures on the wallboard; the pure pieces, and the app through Textual's
pilot with a history source that answers from memory (and one test against a real hub)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.style import Style

from monitor.tui.feed import CONNECTED, Link, Session, Snapshot
from monitor.tui.history import (
    NO_SOURCE,
    AgentDayDetail,
    HistorySource,
    HistoryUnavailable,
    Segment,
    api_url_of,
    bar_states,
    day_segments,
    day_start,
)
from monitor.tui.settings import Settings
from monitor.tui.today import (
    Row,
    TodayScreen,
    TodayWallboard,
    calls_line,
    rows_of,
    sorted_rows,
    stacked_bar,
    status_glyphs,
    team_total,
    today_text,
)
from tests.hub.wire import hub_with, login
from tests.tui.scenario import (
    CALLS,
    NOW,
    TEAM,
    answered,
    make_app,
    screen_text,
    settle,
    value,
)

MIDNIGHT = day_start(NOW, dt.UTC)
H = 3600.0


def ms(seconds: float) -> int:
    return int(seconds * 1000)


# -- pure pieces ------------------------------------------------------------------------


def test_the_day_as_states_from_the_changes() -> None:
    events = [
        {"attribute": "onlineStatus", "value": "online", "oldValue": "offline",
         "timestamp": ms(MIDNIGHT + 8 * H)},
        {"attribute": "manual_status", "value": "available", "oldValue": "lunch",
         "timestamp": ms(MIDNIGHT + 8 * H)},
        {"attribute": "call", "value": "Ringing", "oldValue": None,
         "timestamp": ms(MIDNIGHT + 9 * H)},
        {"attribute": "call", "value": "Answered", "oldValue": "Ringing",
         "timestamp": ms(MIDNIGHT + 9 * H + 10)},
        {"attribute": "mood", "value": 3, "oldValue": 2, "timestamp": ms(MIDNIGHT + 9.2 * H)},
        {"attribute": "call", "value": "Ended", "oldValue": "Answered",
         "timestamp": ms(MIDNIGHT + 9.75 * H)},
        {"attribute": "manual_status", "value": "break", "oldValue": "available",
         "timestamp": ms(MIDNIGHT + 10 * H)},
    ]
    end = MIDNIGHT + 11 * H
    segments = day_segments(events, MIDNIGHT, end, {"onlineStatus": "online"},
                            "manual_status", "available")
    assert segments == [
        Segment(MIDNIGHT, MIDNIGHT + 8 * H, "offline"),  # the first oldValue
        Segment(MIDNIGHT + 8 * H, MIDNIGHT + 9 * H, "available"),
        Segment(MIDNIGHT + 9 * H, MIDNIGHT + 9 * H + 10, "ringing"),
        Segment(MIDNIGHT + 9 * H + 10, MIDNIGHT + 9.75 * H, "talking"),
        Segment(MIDNIGHT + 9.75 * H, MIDNIGHT + 10 * H, "available"),
        Segment(MIDNIGHT + 10 * H, end, "away")]
    cells = bar_states(segments, MIDNIGHT, MIDNIGHT + 12 * H, 12)
    assert cells == ["offline"] * 8 + ["available", "talking", "away", ""]
    # No change of an attribute today: its value now held all day.
    quiet = day_segments([], MIDNIGHT, end, {"onlineStatus": "online",
                                             "manual_status": "available"},
                         "manual_status", "available")
    assert quiet == [Segment(MIDNIGHT, end, "available")]


def report() -> dict[str, Any]:
    def agent(user: str, team: str, online_h: float, split: dict[str, float], handled: int,
              talk_h: float) -> dict[str, Any]:
        return {"userId": user, "displayName": user.title(), "group": team,
                "onlineMs": ms(online_h * H),
                "statusMs": {k: ms(v * H) for k, v in split.items()},
                "calls": {"handled": handled, "missed": 1, "ringMs": 1000,
                          "talkMs": ms(talk_h * H)},
                "occupancy": talk_h / online_h}
    return {"agents": [
        agent("ann", "sales", 8, {"available": 6, "break": 2}, 40, 4),
        agent("bob", "sales", 4, {"available": 1, "lunch": 3}, 5, 1),
        agent("cat", "support", 6, {"available": 6}, 30, 5)]}


def test_rows_totals_sorting_and_bars() -> None:
    rows = rows_of(report())
    assert [r.key for r in sorted_rows(rows, "online", False)] == ["ann", "cat", "bob"]
    assert [r.key for r in sorted_rows(rows, "name", False)] == ["ann", "bob", "cat"]
    assert [r.key for r in sorted_rows(rows, "occupancy", True)] == ["bob", "ann", "cat"]
    sales = team_total("sales", rows[:2])
    assert (sales.agents, sales.online_ms, sales.handled) == (2, ms(12 * H), 45)
    assert sales.status_ms == {"available": ms(7 * H), "break": ms(2 * H),
                               "lunch": ms(3 * H)}
    assert sales.aht_ms == round(ms(5 * H) / 45) and round(sales.occupancy, 4) == 0.4167
    order = ["available", "break", "lunch"]
    glyphs = status_glyphs(order, "available")
    bar = stacked_bar(rows[0], order, glyphs, ms(8 * H), 16, {})
    assert bar.plain == "█" * 12 + glyphs["break"][0] * 4
    half = stacked_bar(rows[1], order, glyphs, ms(8 * H), 16, {})
    assert half.plain == "██" + glyphs["lunch"][0] * 6 + " " * 8
    text = today_text(rows, "online", False, True, "team", order, "available", {}, 100).plain
    assert text.index("sales (2)") < text.index("Ann") < text.index("Bob") \
        < text.index("support (1)") < text.index("Cat")
    assert "(no status)" not in text and "█ available" in text
    empty = Row("x", "X")
    assert stacked_bar(empty, order, glyphs, 0, 5, {}).plain == "     "


def test_the_calls_line() -> None:
    assert calls_line(None) == "calls today: -"
    line = calls_line({"slaSeconds": 20, "intervals": [{
        "start": 0, "offered": 10, "answered": 8, "abandoned": 2, "answeredWithinSla": 7,
        "avgSpeedOfAnswerMs": 12_000, "avgHandleMs": 271_000}]})
    assert line == ("calls today: 10 offered · 8 answered · 2 abandoned · service level "
                    "70% (20 s) · ASA 0:12 · AHT 4:31")


def test_where_the_history_comes_from() -> None:
    assert api_url_of(Settings()) == "http://127.0.0.1:6900"
    assert api_url_of(Settings(url="wss://hub.example.com/")) == "https://hub.example.com:6900"
    assert api_url_of(Settings(api_url="https://api.example.com/")) == \
        "https://api.example.com"
    assert HistorySource.from_settings(Settings(), {}) is None
    assert HistorySource.from_settings(Settings(), {"MONITOR_REST_TOKEN": "t"}) is not None
    missing = HistorySource.from_settings(Settings(rest_token_file="/nonexistent/t"), {})
    assert missing is not None


# -- in the app -----------------------------------------------------------------------------


class MemorySource:
    """Answers like the hub, from memory."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def day(self, user_id: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        self.asked.append(f"day {user_id}")
        return [{"attribute": "onlineStatus", "value": "online", "oldValue": "offline",
                 "timestamp": start_ms + ms(7 * H)},
                {"attribute": "call", "value": "Answered", "oldValue": "Ringing",
                 "timestamp": start_ms + ms(8 * H), "callId": "c-9"}]

    async def agents(self, start_ms: int, end_ms: int, group_attribute: str | None
                     ) -> dict[str, Any]:
        self.asked.append("agents")
        return report()

    async def calls(self, start_ms: int, end_ms: int, sla_seconds: int = 20
                    ) -> dict[str, Any]:
        self.asked.append("calls")
        return {"slaSeconds": 20, "intervals": [{
            "start": start_ms, "offered": 12, "answered": 11, "abandoned": 1,
            "answeredWithinSla": 9, "avgSpeedOfAnswerMs": 8000, "avgHandleMs": 200_000}]}


class BrokenSource(MemorySource):
    async def agents(self, start_ms: int, end_ms: int, group_attribute: str | None
                     ) -> dict[str, Any]:
        raise HistoryUnavailable("the hub answered: r=9 nope")


async def test_today_screen_shows_the_day_per_team_and_sorts() -> None:
    app = make_app()
    source = MemorySource()
    app.use_history(source)  # type: ignore[arg-type]  # a stand-in for the hub
    async with app.run_test(size=(130, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, TodayScreen)
        await answered(app, "today")
        await pilot.pause()
        text = screen_text(app)
        assert "Today since 00:00 · 3 agents" in text and "sorted by online time" in text
        assert "12 offered · 11 answered · 1 abandoned · service level 75%" in text
        assert text.index("sales (2)") < text.index("support (1)")
        assert "Ann" in text and "40" in text
        await pilot.press("o")
        await pilot.pause()
        assert "sorted by calls handled" in screen_text(app)
        await pilot.press("g")
        await pilot.pause()
        assert "sales (2)" not in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TodayScreen)
    assert source.asked[:2] == ["agents", "calls"]


class FloorSource(MemorySource):
    """A day with two agents and three users who are not agents: the operator (a
    supervisor by the token's role claim), a team lead (by the ``role`` attribute on the
    topic) and a user named in ``not_agents`` whom the topics do not carry."""

    async def agents(self, start_ms: int, end_ms: int, group_attribute: str | None
                     ) -> dict[str, Any]:
        def entry(user: str, name: str, team: str, online_h: float) -> dict[str, Any]:
            return {"userId": user, "displayName": name, "group": team,
                    "onlineMs": ms(online_h * H), "statusMs": {"available": ms(online_h * H)},
                    "calls": {"handled": 3, "missed": 0, "ringMs": 0, "talkMs": ms(H)}}
        return {"agents": [entry("s1", "Ana Berg", "sales", 6),
                           entry("p1", "Kemi Dang", "support", 5),
                           entry("sam", "Sam Super", "sales", 9),
                           entry("lead", "Lou Lead", "support", 8),
                           entry("supervisor", "Night Desk", "support", 7)]}


async def test_today_leaves_out_who_the_grid_does_not_count() -> None:
    team = [value("s1", "onlineStatus", "online", 600, "Ana Berg"),
            value("s1", "team", "sales", 600),
            value("p1", "onlineStatus", "online", 600, "Kemi Dang"),
            value("p1", "team", "support", 600),
            value("sam", "onlineStatus", "online", 600, "Sam Super"),
            value("sam", "team", "sales", 600),
            value("lead", "onlineStatus", "online", 600, "Lou Lead"),
            value("lead", "team", "support", 600),
            value("lead", "role", "supervisor", 600)]
    app = make_app([Session("sam", (TEAM, CALLS), {"manual_status": (TEAM,)},
                            display_name="Sam Super", role="supervisor"),
                    Snapshot(TEAM, team, seq=1, epoch="e1"), Link(CONNECTED)])
    app.use_history(FloorSource())  # type: ignore[arg-type]
    async with app.run_test(size=(130, 30)) as pilot:
        await settle(app, pilot)
        assert "2 agents (+2 not counted)" in screen_text(app)  # the grid: sam and lead
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, TodayScreen)
        await answered(app, "today")
        await pilot.pause()
        text = screen_text(app)
        assert "Today since 00:00 · 2 agents (+3 not counted)" in text
        assert "sales (1)" in text and "support (1)" in text
        assert "Ana Berg" in text and "Kemi Dang" in text
        for left_out in ("Sam Super", "Lou Lead", "Night Desk"):
            assert left_out not in text
        # the teams' figures are their agents' alone: 6 h and 5 h online, 3 calls each
        assert text.count(" 6:00:00       3") == 2 and text.count(" 5:00:00       3") == 2


async def test_today_screen_says_what_is_missing() -> None:
    app = make_app()
    async with app.run_test(size=(130, 30)) as pilot:
        await settle(app, pilot)
        app.use_history(None)  # no REST token configured
        await pilot.press("d")
        await pilot.pause()
        assert NO_SOURCE[:40] in screen_text(app)
    broken = make_app()
    broken.use_history(BrokenSource())  # type: ignore[arg-type]
    async with broken.run_test(size=(130, 30)) as pilot:
        await settle(broken, pilot)
        await pilot.press("d")
        await answered(broken, "today")
        await pilot.pause()
        assert "the hub answered: r=9 nope" in screen_text(broken)


async def test_the_agent_detail_shows_the_day_from_the_hub() -> None:
    app = make_app()
    app.use_history(MemorySource())  # type: ignore[arg-type]
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        app.push_screen(app.detail_screen("agent_5"))
        await pilot.pause()
        assert isinstance(app.screen, AgentDayDetail)
        await answered(app, "day")
        await pilot.pause()
        text = screen_text(app)
        assert "The day (from the hub)" in text and "Seen by this monitor" in text
        assert "call: Ringing → Answered  [c-9]" in text
        assert "2 changes" in text and "█ talking" in text


async def test_the_wallboard_has_today_from_the_hub() -> None:
    app = make_app()
    app.use_history(MemorySource())  # type: ignore[arg-type]
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, TodayWallboard)
        await answered(app, "today")
        await pilot.pause()
        assert "Today: 12 offered · 11 answered · 1 abandoned" in screen_text(app)


async def test_the_source_reads_a_real_hub(tmp_path: Any) -> None:
    hub = hub_with(tmp_path / "hub", offline_grace_ms=0)
    try:
        token = tmp_path / "rest.token"
        token.write_text(hub.rest_token())
        source = HistorySource.from_settings(Settings(
            url=hub.ws_url, api_url=hub.api_url, rest_token_file=str(token)), {})
        assert source is not None
        wire = await login(hub, hub.client_token("eve", attributes=[("manual_status", "t")]))
        assert (await wire.change("manual_status", "available"))["r"] == 0
        now = int(dt.datetime.now().timestamp() * 1000)
        day = await source.day("eve", now - 60_000, now + 1000)
        assert [e["attribute"] for e in day] == ["onlineStatus", "manual_status"]
        agents = await source.agents(now - 60_000, now + 1000, "team")
        assert [a["userId"] for a in agents["agents"]] == ["eve"]
        calls = await source.calls(now - 60_000, now + 1000)
        assert calls["intervals"][0]["offered"] == 0
        token.write_text(hub.rest_token(other_project=True))
        try:
            await source.day("eve", now - 60_000, now + 1000)
            raise AssertionError("another project's token read eve's day")
        except HistoryUnavailable as exc:
            assert "not found" in str(exc)
        await wire.close()
    finally:
        hub.kill()


def test_state_styles_are_the_themes() -> None:
    # A bar's cell with no state (after now) is drawn in the offline style, dotted.
    from monitor.tui.history import day_bar
    bar = day_bar([Segment(0, 10, "talking")], 0, 20, 4, {"talking": Style(bold=True)})
    assert bar.plain == "██··"


async def test_without_a_rest_token_the_detail_and_wallboard_are_as_they_were() -> None:
    from monitor.tui.screens import AgentDetail
    from monitor.tui.wallboard import Wallboard
    app = make_app()
    app.use_history(None)
    assert type(app.detail_screen("agent_1")) is AgentDetail
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("w")
        await pilot.pause()
        assert type(app.screen) is Wallboard
