"""Snapshots of the monitor's main screens: frozen clock, scripted feed, several themes.

Update after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs in ``__snapshots__`` before committing them.
"""

from __future__ import annotations

from typing import Any

import pytest

from monitor.tui.feed import CONNECTED, RECONNECTING, Link, Session
from tests.tui.scenario import NOW, Clock, floor_events, make_app, message_event, settle


async def _settled(pilot: Any) -> None:
    await settle(pilot.app, pilot)


def _then(*keys: str) -> Any:
    async def run(pilot: Any) -> None:
        await settle(pilot.app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot.app, pilot)
    return run


@pytest.mark.parametrize("theme", ["monitor-dark", "monitor-high-contrast", "monitor-ansi16"])
def test_grid_80x24(snap_compare: Any, theme: str) -> None:
    assert snap_compare(make_app(theme=theme), terminal_size=(80, 24), run_before=_settled)


def test_grid_wide_light_with_log(snap_compare: Any) -> None:
    events = [*make_app().feed._queue._queue]  # type: ignore[attr-defined]
    events.append(message_event(41, "agent_1", "manual_status", "break", "available", at=NOW))
    assert snap_compare(make_app(events, theme="monitor-light"), terminal_size=(140, 34),
                        run_before=_then("l"))


def test_agent_detail(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=_then("down", "enter"))


def test_status_picker(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_then("s"))


def test_help(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 40), run_before=_then("question_mark"))


def test_reconnecting_stale_grid(snap_compare: Any) -> None:
    app = make_app()
    app.feed.push(Link(RECONNECTING, retry_at=NOW + 4, detail="connection lost"))  # type: ignore[attr-defined]
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settled)


def test_compact_own_status(snap_compare: Any) -> None:
    app = make_app([Session("agent_7", (), {"manual_status": ("team_a",)},
                            display_name="Gus Grant"), Link(CONNECTED)])
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settled)


def test_grouped_grid_80x24(snap_compare: Any) -> None:
    """Two teams under their headers, the supervisor not counted, a shared name."""
    assert snap_compare(make_app(floor_events()), terminal_size=(80, 24),
                        run_before=_settled)


def test_grouped_grid_wide_one_group_folded(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await settle(pilot.app, pilot)
        pilot.app.toggle_group("sales")
        await settle(pilot.app, pilot)
    assert snap_compare(make_app(floor_events(), theme="monitor-light"),
                        terminal_size=(140, 30), run_before=run)


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_wallboard(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(floor_events()), terminal_size=size, run_before=_then("w"))


def test_alert_list(snap_compare: Any) -> None:
    clock = Clock()

    async def run(pilot: Any) -> None:
        await settle(pilot.app, pilot)
        clock.advance(10)  # a call rings past its limit
        pilot.app.tick()
        await pilot.press("a")
        await settle(pilot.app, pilot)
        await pilot.pause(0.1)

    assert snap_compare(make_app(floor_events(), clock=clock), terminal_size=(100, 30),
                        run_before=run)
