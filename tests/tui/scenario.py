"""A scripted contact-centre team for the monitor's tests: a frozen clock and a known feed."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from typing import Any

from rich.console import Console
from textual.command import CommandPalette

from monitor.tui.app import MonitorApp
from monitor.tui.feed import CONNECTED, Link, ScriptedFeed, Session, Snapshot, TopicMessage
from monitor.tui.settings import Settings
from monitor.tui.themes import load_themes, shipped_themes_dir

NOW = 1_760_000_000.0
"""The frozen clock: every test sees the same time."""
MS = 1000
TEAM = "team_a"
CALLS = "ALL_CALL_STATUS"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def value(user: str, attribute: str, val: Any, ago: float, name: str | None = None,
          **extra: Any) -> dict[str, Any]:
    item = {"userId": user, "attribute": attribute, "value": val,
            "timestamp": int((NOW - ago) * MS), **extra}
    if name:
        item["displayName"] = name
    return item


def message(user: str, attribute: str, new: Any, old: Any = None, at: float = NOW,
            **extra: Any) -> dict[str, Any]:
    return {"attribute": attribute, "newValue": new, "oldValue": old, "userId": user,
            "projectId": 25, "timestamp": int(at * MS), "callEnded": True, **extra}


def team_snapshot() -> Snapshot:
    """Six agents in every kind of state, one of them over the break threshold."""
    values = [
        value("agent_1", "onlineStatus", "online", 3600, "Ann Lee"),
        value("agent_1", "manual_status", "available", 125),
        value("agent_2", "onlineStatus", "online", 7200, "Bob <b>[bold]Marley"),
        value("agent_2", "manual_status", "break", 1000),
        value("agent_3", "onlineStatus", "online", 600, "Chloé Durand"),
        value("agent_3", "manual_status", "after_call_work", 40),
        value("agent_4", "onlineStatus", "offline", 5400, "Dev Patel"),
        value("agent_4", "manual_status", "lunch", 5400),
        value("agent_5", "onlineStatus", "online", 300, "Eve Adams"),
        value("agent_5", "manual_status", "available", 290),
        value("agent_6", "onlineStatus", "online", 900),
        value("agent_6", "manual_status", "available", 800),
        value("agent_1", "skill", "billing", 3600),
        value("agent_3", "skill", "sales", 600),
    ]
    return Snapshot(TEAM, values, seq=40, epoch="e1")


def calls_snapshot() -> Snapshot:
    values = [
        value("agent_5", "call", "Answered", 95, callId="c-17", **{"from": "+15550100",
                                                                   "to": "agent_5"}),
        value("agent_6", "call", "Ringing", 25, callId="c-18", **{"from": "agent_6",
                                                                  "to": "agent_1"}),
    ]
    return Snapshot(CALLS, values, seq=7, epoch="e1")


def operator_session(subscribe: tuple[str, ...] = (TEAM, CALLS),
                     publishes: dict[str, tuple[str, ...]] | None = None) -> Session:
    return Session("agent_1", subscribe,
                   {"manual_status": (TEAM,)} if publishes is None else publishes,
                   display_name="Ann Lee")


def team_events() -> list[Any]:
    return [operator_session(), team_snapshot(), calls_snapshot(), Link(CONNECTED)]


def make_app(events: list[Any] | None = None, *, clock: Clock | None = None,
             theme: str = "monitor-dark", settings: Settings | None = None,
             answer: Any = None, read_only: bool | None = None) -> MonitorApp:
    """The monitor on a scripted feed, frozen clock and UTC, with the shipped themes."""
    feed = ScriptedFeed(team_events() if events is None else events,
                        url="ws://127.0.0.1:6899/", answer=answer)
    return MonitorApp(feed, settings or Settings(), themes=load_themes([shipped_themes_dir()]),
                      theme_name=theme, clock=clock or Clock(), tz=dt.UTC,
                      read_only=read_only)


async def settle(app: MonitorApp, pilot: Any) -> None:
    """Let the app take every queued event, look for alerts and redraw (as the clock's
    tick does: the frozen clock never moves it, the real one might or might not)."""
    await app.feed.drained()  # type: ignore[attr-defined]
    app.tick()
    await pilot.pause()


def screen_text(app: MonitorApp) -> str:
    """Everything on screen (modal screens included) as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False)
    # The same render that App.export_screenshot makes, exported as text instead of SVG.
    update = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens)
    console.print(update)
    return console.export_text()


def message_event(seq: int, *args: Any, topic: str = TEAM, **kwargs: Any) -> TopicMessage:
    return TopicMessage(topic, message(*args, **kwargs), seq)


async def answered(app: MonitorApp, group: str = "status") -> None:
    """Wait for the app's workers of ``group`` (not the endless feed consumer)."""
    for _ in range(3):  # a worker may start a moment after the key that asks for it
        await asyncio.sleep(0.01)
    workers = [w for w in app.workers if w.group == group]
    if workers:  # (an empty list would mean "every worker", the feed's included)
        await app.workers.wait_for_complete(workers)


async def palette_search(app: MonitorApp, pilot: Any, typed: str) -> None:
    """Open the command palette, type ``typed`` and wait until its search is done (it
    runs in a worker, each key cancelling the last one's): then Enter picks its best
    hit, however long the search took."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(app.screen, CommandPalette)
    await pilot.press(*typed)  # the last key's Input.Changed has started its search
    searches = [w for w in app.workers if w.group == CommandPalette._GATHER_COMMANDS_GROUP
                and w.node is app.screen and not w.is_cancelled]
    if searches:  # (none: it is over already)
        await app.workers.wait_for_complete(searches)
    await pilot.pause()


def floor_snapshot() -> Snapshot:
    """Two teams and a supervisor: agents with a ``team``, two of them named alike."""
    values = []
    people = [
        ("s1", "Ana Berg", "sales", "online", "available", 300),
        ("s2", "Kemi Dang", "sales", "online", "after_call_work", 150),
        ("s3", "Luca Rossi", "sales", "offline", "lunch", 4000),
        ("p1", "Kemi Dang", "support", "online", "break", 1000),
        ("p2", "Omar Haddad", "support", "online", "available", 60),
        ("p3", "Wen Tran", "support", "online", "available", 30),
    ]
    for user, name, team, online, status, ago in people:
        values += [value(user, "onlineStatus", online, ago + 600, name),
                   value(user, "manual_status", status, ago),
                   value(user, "team", team, ago + 600)]
    values += [value("supervisor", "onlineStatus", "online", 900, "Sam Super"),
               value("supervisor", "manual_status", "available", 900)]
    return Snapshot(TEAM, values, seq=10, epoch="e1")


def floor_calls() -> Snapshot:
    values = [
        value("p2", "call", "Answered", 40, callId="c-1", **{"from": "+44 20 7946 0001",
                                                             "to": "p2"}),
        value("p3", "call", "Ringing", 12, callId="c-2", **{"from": "s1", "to": "p3"}),
        value("s1", "call", "Calling", 12, callId="c-2", **{"from": "s1", "to": "p3"}),
    ]
    return Snapshot(CALLS, values, seq=3, epoch="e1")


def supervisor_session() -> Session:
    return Session("supervisor", (TEAM, CALLS), {"manual_status": ("supervisors",)},
                   display_name="Sam Super", role="supervisor")


def floor_events() -> list[Any]:
    return [supervisor_session(), floor_snapshot(), floor_calls(), Link(CONNECTED)]
