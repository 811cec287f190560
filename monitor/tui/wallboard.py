"""The wallboard: the floor's numbers in big digits, and the same per group, readable
from across the room. Everything comes from the model, fed by the live topics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import Digits, Footer, Static

from monitor.tui.cells import format_clock, format_duration, group_name
from monitor.tui.model import AgentTable, Summary
from monitor.tui.text import safe_text

TILES = (
    ("idle", "available, idle", "available"),
    ("talking", "on a call", "talking"),
    ("ringing", "ringing now", "ringing"),
    ("longest", "longest ring", "ringing"),
    ("after_call", "after-call work", "away"),
    ("away", "on a break", "away"),
    ("offline", "offline", "offline"),
    ("answered", "answered", "online"),
    ("abandoned", "abandoned", "breach"),
    ("breaches", "over a limit", "breach"),
)
"""Each tile: its key, its words, and the state whose theme colour paints it."""


def tile_values(summary: Summary) -> dict[str, str]:
    """What each tile shows, as the digits draw it."""
    floor = summary.by_floor
    longest = summary.longest_ringing
    return {
        "idle": str(floor.get("idle", 0)),
        "talking": str(floor.get("talking", 0)),
        "ringing": str(floor.get("ringing", 0)),
        "longest": "-" if longest is None else format_duration(longest),
        "after_call": str(floor.get("after_call", 0)),
        "away": str(floor.get("away", 0)),
        "offline": str(floor.get("offline", 0)),
        "answered": str(summary.answered),
        "abandoned": str(summary.abandoned),
        "breaches": str(summary.breaches),
    }


TABLE = (("idle", "idle"), ("talking", "on call"), ("ringing", "ringing"),
         ("longest", "longest"), ("after_call", "ACW"), ("away", "break"),
         ("offline", "offline"), ("answered", "answered"), ("abandoned", "abandoned"),
         ("breaches", "over"))


def group_table(model: AgentTable, summary: Summary, width: int) -> Text:
    """One line per group and one for the floor: the tiles' numbers side by side (the
    columns that do not fit the width are left out, from the right)."""
    rows: list[tuple[str, dict[str, str]]] = [
        (group_name(key, model.group_attribute), tile_values(group))
        for key, group in sorted(summary.groups.items(),
                                 key=lambda item: (item[0] == "", item[0].casefold()))]
    rows.append(("all", tile_values(summary)))
    name_width = max(8, min(20, max(len(name) for name, _ in rows)))
    columns = []
    used = name_width
    for key, label in TABLE:
        cell = max(len(label), *(len(values[key]) for _, values in rows)) + 2
        if used + cell > width:
            break
        columns.append((key, label, cell))
        used += cell
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(model.group_attribute[:name_width].ljust(name_width), Style(bold=True))
    for _, label, cell in columns:
        text.append(label.rjust(cell), Style(bold=True))
    for name, values in rows:
        text.append("\n")
        text.append(safe_text(name)[:name_width].ljust(name_width),
                    Style(bold=name == "all"))
        for key, _, cell in columns:
            text.append(values[key].rjust(cell), Style(bold=name == "all"))
    return text


class Wallboard(Screen[None]):
    """Big numbers for the floor, then a line per group; Esc goes back to the grid."""

    DEFAULT_CSS = """
    Wallboard { layout: vertical; }
    Wallboard #wallboard-title { height: 1; padding: 0 1; background: $panel;
                                 text-style: bold; }
    Wallboard Grid { grid-size: 5; grid-gutter: 0 1; height: auto; padding: 0 1; }
    Wallboard .tile { height: 5; }
    Wallboard .tile-label { height: 1; color: $text-muted; text-wrap: nowrap;
                            text-overflow: ellipsis; }
    Wallboard Digits { width: 1fr; }
    Wallboard #wallboard-groups { height: 1fr; padding: 1 1 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,w", "close", "Back to the grid")]

    def __init__(self, model: AgentTable, clock: Callable[[], float],
                 tz: dt.tzinfo | None, summary: Callable[[float], Summary],
                 styles: Callable[[], Mapping[str, Style]], since: float) -> None:
        super().__init__()
        self.since = since
        """When the monitor started: calls answered and abandoned are counted since."""
        self.model = model
        self.clock = clock
        self.tz = tz
        self.summary = summary
        self.state_styles = styles
        """The theme's state styles (they follow a theme change)."""
        self._shown: dict[str, str] = {}
        self._painted: Mapping[str, Style] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="wallboard-title", markup=False)
        with Grid():
            for key, words, _ in TILES:
                with Vertical(classes="tile"):
                    yield Static(words, classes="tile-label", markup=False)
                    yield Digits("", id=f"tile-{key}")
        yield Static(id="wallboard-groups", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_board()
        self.set_interval(1.0, self.refresh_board)

    def values(self) -> Mapping[str, str]:
        """What the tiles show now (tests read it)."""
        return dict(self._shown)

    def refresh_board(self) -> None:
        """Put the latest numbers up (once a second, and when the app reconciles).

        The app may reconcile between the push of the board and its composition: the
        tiles are not there yet and ``query_one`` raises ``NoMatches`` (which the app
        lets pass). What is painted and shown is noted only once it is, so the next
        refresh does it all."""
        if not self.is_attached:
            return
        now = self.clock()
        summary = self.summary(now)
        styles = self.state_styles()
        if styles is not self._painted:  # the theme's state colours, on the digits
            for key, _, state in TILES:
                colour = styles.get(state, Style()).color
                if colour is not None:
                    self.query_one(f"#tile-{key}", Digits).styles.color = \
                        Color.from_rich_color(colour)
            self._painted = styles
        values = tile_values(summary)
        for key, value in values.items():
            if self._shown.get(key) != value:
                self.query_one(f"#tile-{key}", Digits).update(value)
                self._shown[key] = value
        others = f" · {summary.uncounted} not counted" if summary.uncounted else ""
        self.query_one("#wallboard-title", Static).update(Text(
            f"Wallboard · {summary.total} agents{others} · {format_clock(now, self.tz)} · "
            f"calls since {format_clock(self.since, self.tz)} · Esc: back to the grid",
            no_wrap=True, overflow="ellipsis"))
        table = self.query_one("#wallboard-groups", Static)
        table.update(group_table(self.model, summary, max(20, table.size.width - 2)))

    def action_close(self) -> None:
        self.dismiss(None)
