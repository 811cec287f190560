"""Supervisor actions in the monitor (monitor/tui/supervise.py): the grid's keys for a
token that may act, a status picked for the agent under the cursor, a logout confirmed
with a reason, the hub's answer in the status line and the event log; and an agent's
monitor after a supervisor's logout (pilot on a scripted feed, then HubFeed on a real
hub)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from textual.widgets import Input

from monitor.client import HubClient
from monitor.tui.app import MonitorApp
from monitor.tui.feed import CONNECTED, OFFLINE, ChangeRefused, Link, ScriptedFeed, Session
from monitor.tui.hubfeed import HubFeed
from monitor.tui.settings import Settings
from monitor.tui.supervise import AgentStatusPicker, LogoutConfirm
from monitor.tui.themes import load_themes, shipped_themes_dir
from monitor.tui.widgets import AgentGrid
from tests.hub.wire import hub_with
from tests.hubproc import HubProcess
from tests.tui.scenario import (
    CALLS,
    TEAM,
    Clock,
    answered,
    calls_snapshot,
    operator_session,
    screen_text,
    settle,
    team_snapshot,
)
from tests.tui.test_hubfeed import next_of

WIDE = (150, 32)


class ActingFeed(ScriptedFeed):
    """A scripted feed that records supervisor actions and answers them with ``r``."""

    def __init__(self, events: list[Any], r: int = 0) -> None:
        super().__init__(events, url="ws://127.0.0.1:6899/")
        self.r = r
        self.sets: list[tuple[str, str, Any]] = []
        self.logouts: list[tuple[str, str]] = []
        self.reconnects = 0

    def _refuse(self) -> None:
        if self.r:
            raise ChangeRefused(self.r, "not permitted: \x1b[31mteam_b\x1b[0m")

    async def set_user_attribute(self, user_id: str, name: str, value: Any,
                                 reason: str | None = None) -> None:
        self.sets.append((user_id, name, value))
        self._refuse()

    async def log_out_user(self, user_id: str, reason: str) -> None:
        self.logouts.append((user_id, reason))
        self._refuse()

    def reconnect(self) -> None:
        self.reconnects += 1


def supervisor_events(supervise: tuple[str, ...] = (TEAM,)) -> list[Any]:
    return [replace(operator_session(), supervise=supervise), team_snapshot(),
            calls_snapshot(), Link(CONNECTED)]


def make(feed: ScriptedFeed) -> MonitorApp:
    import datetime as dt
    return MonitorApp(feed, Settings(), themes=load_themes([shipped_themes_dir()]),
                      theme_name="monitor-dark", clock=Clock(), tz=dt.UTC)


def keys(app: MonitorApp) -> list[str]:
    return [description for _, description in app.help_keys()]


async def cursor_on(app: MonitorApp, pilot: Any, user_id: str) -> None:
    grid = app.query_one(AgentGrid)
    for _ in range(len(grid.shown_rows) + 1):
        if grid.selected_user == user_id:
            return
        await pilot.press("down")
    raise AssertionError(f"{user_id} not in the grid")


async def test_no_keys_without_the_claim() -> None:
    feed = ActingFeed([operator_session(), team_snapshot(), calls_snapshot(),
                       Link(CONNECTED)])
    app = make(feed)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert "Agent's status" not in keys(app) and "Log agent out" not in keys(app)
        await pilot.press("S", "L")
        await settle(app, pilot)
        assert not isinstance(app.screen, AgentStatusPicker | LogoutConfirm)
        assert feed.sets == [] and feed.logouts == []
        assert "Agent's status" not in screen_text(app)


async def test_no_keys_with_a_feed_that_cannot_act() -> None:
    app = make(ScriptedFeed(supervisor_events()))
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert "Agent's status" not in keys(app)


async def test_a_supervisor_sets_the_status_of_the_agent_under_the_cursor() -> None:
    feed = ActingFeed(supervisor_events())
    app = make(feed)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert {"Agent's status", "Log agent out"} <= set(keys(app))
        assert "Log in again" not in keys(app)  # connected
        await cursor_on(app, pilot, "agent_2")
        await pilot.press("S")
        await settle(app, pilot)
        assert isinstance(app.screen, AgentStatusPicker)
        label = app.screen.agent
        assert f"Set the status of {label}" in screen_text(app)
        await pilot.press("2")  # the second configured status
        await settle(app, pilot)
        await answered(app, "supervise")
        status = Settings().statuses[1]
        assert feed.sets == [("agent_2", Settings().status_attribute, status)]
        app.reconcile()
        await pilot.pause()
        text = screen_text(app)
        assert "hub: ✔" in text and "(r=0)" in text and label in text
        await pilot.press("l")  # the event log
        await settle(app, pilot)
        assert f"{label} you set manual_status: – → {status} (r=0)" in screen_text(app)


async def test_a_logout_asks_first_and_takes_a_reason_picked_or_typed() -> None:
    feed = ActingFeed(supervisor_events(("*",)))
    app = make(feed)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await cursor_on(app, pilot, "agent_3")
        await pilot.press("L")
        await settle(app, pilot)
        assert isinstance(app.screen, LogoutConfirm)
        assert "Log out" in screen_text(app) and "End of shift" in screen_text(app)
        await pilot.press("escape")  # cancelled: nothing sent
        await settle(app, pilot)
        assert not isinstance(app.screen, LogoutConfirm) and feed.logouts == []

        await pilot.press("L")
        await settle(app, pilot)
        await pilot.press("enter")  # the highlighted reason
        await settle(app, pilot)
        await answered(app, "supervise")
        assert feed.logouts == [("agent_3", "End of shift")]

        await pilot.press("L")
        await settle(app, pilot)
        app.screen.query_one(Input).focus()
        await pilot.press(*"coaching", "enter")
        await settle(app, pilot)
        await answered(app, "supervise")
        assert feed.logouts[-1] == ("agent_3", "coaching")
        app.reconcile()
        await pilot.pause()
        assert "hub: ✔ log out" in screen_text(app)


async def test_a_refusal_shows_the_hubs_r_in_the_status_line_and_the_log() -> None:
    feed = ActingFeed(supervisor_events(), r=24)
    app = make(feed)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        await cursor_on(app, pilot, "agent_2")
        await pilot.press("S", "1")
        await settle(app, pilot)
        await answered(app, "supervise")
        app.reconcile()
        await pilot.press("l")
        await settle(app, pilot)
        text = screen_text(app)
        assert "hub: ✕" in text and "r=24: not permitted" in text
        assert "\x1b" not in text and "\\x1b[31m" in text  # the hub's words, made safe
        assert "you set manual_status" in text and "(r=24: not permitted" in text
        assert any("r=24" in n.message for n in app._notifications)


async def test_an_agent_logged_out_sees_why_and_logs_in_again_when_asked() -> None:
    feed = ActingFeed([operator_session(subscribe=()), Link(CONNECTED)])
    app = make(feed)
    async with app.run_test(size=WIDE) as pilot:
        await settle(app, pilot)
        assert "Log in again" not in keys(app)
        feed.push(Link(OFFLINE, detail="logged out by sup_1: end of shift"))
        await settle(app, pilot)
        text = screen_text(app)
        assert "✕ offline: logged out by sup_1: end of shift" in text
        assert "Log in again" in keys(app)
        assert feed.reconnects == 0
        await pilot.press("R")
        await settle(app, pilot)
        assert feed.reconnects == 1


# -- HubFeed on a real hub -------------------------------------------------------------


@pytest.fixture(scope="module")
def holding_hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    process = hub_with(tmp_path_factory.mktemp("hub"), offline_grace_ms=0,
                       logout_hold_ms=1500)
    try:
        yield process
    finally:
        process.kill()


async def test_hubfeed_after_a_logout_stays_offline_with_the_reason_until_asked(
        holding_hub: HubProcess) -> None:
    hub = holding_hub
    grants = [("manual_status", TEAM)]
    feed = HubFeed(hub.ws_url, hub.client_token("tf_agent", attributes=grants))
    events = feed.events()
    sup = HubClient(hub.ws_url, hub.client_token("tf_sup", subscribe=[TEAM, CALLS],
                                                 supervise=[TEAM]))
    try:
        await next_of(events, Link, where=lambda e: e.state == CONNECTED)
        supervisor_feed = HubFeed(hub.ws_url, sup.token or "")
        sup_events = supervisor_feed.events()
        session = await next_of(sup_events, Session)
        assert session.supervise == (TEAM,)
        await next_of(sup_events, Link, where=lambda e: e.state == CONNECTED)
        await supervisor_feed.set_user_attribute("tf_agent", "manual_status", "break")
        with pytest.raises(ChangeRefused) as refused:
            await supervisor_feed.log_out_user("tf_nobody", "x")
        assert refused.value.r == 25
        await supervisor_feed.log_out_user("tf_agent", "end of shift")
        offline = await next_of(events, Link, where=lambda e: e.state == OFFLINE)
        assert "logged out by tf_sup: end of shift" in offline.detail
        await asyncio.sleep(2.0)  # past the hold: still nothing by itself
        assert not feed.client.running and not feed.client.connected
        feed.reconnect()  # the operator asks
        await next_of(events, Link, where=lambda e: e.state == CONNECTED)
        await supervisor_feed.close()
    finally:
        await feed.close()
