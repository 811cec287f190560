"""Shrinking and growing the terminal: the summary, its chart and the status lines."""

from __future__ import annotations

import pytest
from rich.cells import cell_len

from monitor.tui.app import MonitorApp
from monitor.tui.settings import Settings
from tests.tui.scenario import Clock, make_app, screen_text, settle

SLOW = Settings(refresh_per_second=0.02)
"""The screen's own reconcile, every 50 s: only the resize can redraw within a test."""

BLOCKS = set("▁▂▃▄▅▆▇█")


async def charted(app: MonitorApp, clock: Clock, pilot: object) -> None:
    """Settle, then give the chart some history."""
    await settle(app, pilot)
    for _ in range(40):
        clock.advance(10)
        app.reconcile()


def summary_rows(app: MonitorApp) -> list[str]:
    return screen_text(app).splitlines()[2:5]


@pytest.mark.parametrize(("width", "height"), [(120, 30), (90, 24), (80, 24), (70, 20), (52, 16)])
async def test_after_shrinking_the_chart_fits_at_once_and_nothing_wraps(
        width: int, height: int) -> None:
    clock = Clock()
    app = make_app(clock=clock, settings=SLOW)
    async with app.run_test(size=(160, 40)) as pilot:
        await charted(app, clock, pilot)
        await pilot.resize_terminal(width, height)
        await pilot.pause()  # no reconcile by the clock: the resize alone redraws
        lines = screen_text(app).splitlines()
        first, second, chart = summary_rows(app)
        # one line each, cut with an ellipsis when too long, never wrapped onto the next
        assert first.startswith(" ● 5 online") and second.startswith(" ✔ 3 available")
        assert chart.startswith(" idle ")
        # the chart is drawn for the new width, with both counts, and nowhere else
        assert chart.rstrip().endswith(" 2") or chart.rstrip().endswith("…")
        assert cell_len(chart.rstrip()) <= width
        if width >= 70:
            assert chart.rstrip().endswith(" 2")
        assert [i for i, line in enumerate(lines) if BLOCKS & set(line)] == [4]
        assert lines[5].startswith(" sort: ")


async def test_growing_back_widens_the_chart_again() -> None:
    clock = Clock()
    app = make_app(clock=clock, settings=SLOW)
    async with app.run_test(size=(70, 20)) as pilot:
        await charted(app, clock, pilot)
        narrow = summary_rows(app)[2].count("█") + summary_rows(app)[2].count("▁")
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        wide = summary_rows(app)[2].count("█") + summary_rows(app)[2].count("▁")
        assert wide > narrow
        assert summary_rows(app)[2].rstrip().endswith(" 2")
