"""The monitor's widgets. Each reads the model and redraws only what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from monitor.tui.cells import (
    AVAILABLE_SYMBOL,
    AWAY_SYMBOL,
    BREACH_MARK,
    CALL_SYMBOLS,
    ONLINE_SYMBOLS,
    Cell,
    Column,
    fit_columns,
    format_clock,
    row_cells,
    sparkline,
)
from monitor.tui.model import Agent, AgentTable, Change, Summary, value_text
from monitor.tui.themes import STATES, rich_colour


def state_styles(colours: Mapping[str, str]) -> dict[str, Style]:
    """Rich styles for each state colour of the theme; breaches are reversed."""
    styles = {state: Style(color=rich_colour(colours[state])) for state in STATES}
    styles["breach"] = Style(color=rich_colour(colours["breach"]), bold=True, reverse=True)
    styles[""] = Style()
    return styles


def styled(parts: Sequence[tuple[str, str]], styles: Mapping[str, Style]) -> Text:
    """One line of plain text pieces, each painted with its state's style."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for words, state in parts:
        text.append(words, styles.get(state, Style()))
    return text


class NameText(Text):
    """A name cell that knows its row, so the grid can reorder rows with ``sort``."""

    def __init__(self, text: str, style: Style, user_id: str) -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis")
        self.user_id = user_id


class AgentGrid(DataTable):
    """One row per agent, keyed by userId, reconciled from the model cell by cell."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Agent detail", show=False)]
    DEFAULT_CSS = """
    AgentGrid { height: 1fr; }
    AgentGrid.-stale { text-opacity: 60%; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", **kwargs)  # type: ignore[arg-type]
        self.layout_key: tuple[object, ...] = ()
        self.shown_columns: list[str] = []
        self._cells: dict[tuple[str, str], Cell] = {}
        self.styles_by_state: dict[str, Style] = {}
        self.rebuilds = 0
        """How many times the columns were laid out anew (tests watch this)."""

    def forget_cells(self) -> None:
        """Repaint every cell on the next reconcile (after a theme change)."""
        self._cells.clear()

    @property
    def selected_user(self) -> str | None:
        """The userId of the row under the cursor."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # the cursor can briefly point past the last row
            return None
        return row_key.value

    def _text(self, user_id: str, column: str, cell: Cell) -> Text:
        style = self.styles_by_state.get(cell[1], Style())
        if column == "name":
            return NameText(cell[0], style, user_id)
        return Text(cell[0], style=style, no_wrap=True, overflow="ellipsis")

    def _relayout(self, columns: Sequence[Column]) -> None:
        self.rebuilds += 1
        self.clear(columns=True)
        self._cells.clear()
        for column in columns:
            self.add_column(Text(column.label, no_wrap=True), width=column.width,
                            key=column.key)
        self.shown_columns = [c.key for c in columns]

    def reconcile(self, model: AgentTable, rows: Sequence[Agent], columns: Sequence[Column],
                  now: float, tz: dt.tzinfo | None) -> None:
        """Bring the table in line with ``rows``: add, remove, update cells, reorder."""
        width = self.scrollable_content_region.width or self.size.width
        fitted = fit_columns(columns, max(1, width - 1))
        key = tuple((c.key, c.width) for c in fitted)
        selected = self.selected_user
        if key != self.layout_key:
            self.layout_key = key
            self._relayout(fitted)
        wanted = [a.user_id for a in rows]
        wanted_set = set(wanted)
        present = {row.key.value for row in self.ordered_rows}
        for user_id in present - wanted_set:
            self.remove_row(user_id)
            for column in self.shown_columns:
                self._cells.pop((user_id, column), None)
        for agent in rows:
            cells = row_cells(model, agent, self.shown_columns, now, tz)
            if agent.user_id not in present:
                self.add_row(*(self._text(agent.user_id, c, cells[c])
                               for c in self.shown_columns), key=agent.user_id)
                for column in self.shown_columns:
                    self._cells[(agent.user_id, column)] = cells[column]
                continue
            for column in self.shown_columns:
                cell = cells[column]
                if self._cells.get((agent.user_id, column)) != cell:
                    self._cells[(agent.user_id, column)] = cell
                    self.update_cell(agent.user_id, column,
                                     self._text(agent.user_id, column, cell))
        order = [row.key.value for row in self.ordered_rows]
        if order != wanted:
            rank = {user_id: i for i, user_id in enumerate(wanted)}
            self.sort("name", key=lambda cell: rank[cell.user_id])
        if selected in wanted_set:
            index = self.get_row_index(RowKey(selected))
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)


class OwnStatusBar(Static):
    """Top line: who you are, your own status, and the hub's answer to your last change."""

    DEFAULT_CSS = """
    OwnStatusBar { height: 1; background: $panel; padding: 0 1; }
    """


class ConnectionLine(Static):
    """Connected / reconnecting in N s / offline, hub URL, user, last message age."""

    DEFAULT_CSS = """
    ConnectionLine { height: 1; padding: 0 1; color: $text-muted; }
    """


class SummaryBar(Static):
    """Totals by online state, status and call state; the available / on-call chart."""

    DEFAULT_CSS = """
    SummaryBar { height: 3; padding: 0 1; background: $surface; }
    """


class ViewLine(Static):
    """How the grid is sorted and filtered, and how many agents it shows."""

    DEFAULT_CSS = """
    ViewLine { height: 1; padding: 0 1; color: $text-muted; }
    """


class EventLog(Static):
    """The latest topic messages, newest last."""

    DEFAULT_CSS = """
    EventLog { height: 8; border-top: solid $primary; padding: 0 1; display: none; }
    EventLog.-shown { display: block; }
    """


def summary_text(summary: Summary, model: AgentTable, statuses: Sequence[str],
                 styles: Mapping[str, Style], width: int) -> Text:
    """Three lines: presence, calls and breaches; totals by status; the chart."""
    online = summary.by_online
    first: list[tuple[str, str]] = [
        (f"{ONLINE_SYMBOLS['online']} {online.get('online', 0)} online", "online"),
        ("  ", ""),
        (f"{ONLINE_SYMBOLS['offline']} {online.get('offline', 0)} offline", "offline"),
    ]
    if online.get("unknown"):
        first.append((f"  ? {online['unknown']} unknown", "unknown"))
    first += [("  │ ", ""), (f"{CALL_SYMBOLS['Answered']} {summary.on_call} on call", "talking")]
    ringing = summary.by_call.get("Ringing", 0) + summary.by_call.get("Calling", 0)
    if ringing:
        first.append((f"  {CALL_SYMBOLS['Ringing']} {ringing} ringing", "ringing"))
    first.append(("  │ ", ""))
    if summary.breaches:
        first.append((f"{BREACH_MARK} {summary.breaches} over limit", "breach"))
    else:
        first.append(("✔ none over limit", "idle"))
    second: list[tuple[str, str]] = []
    ordered = [s for s in statuses if s in summary.by_status]
    ordered += sorted(s for s in summary.by_status if s not in statuses)
    for status in ordered:
        available = status == model.available_status
        symbol = AVAILABLE_SYMBOL if available else AWAY_SYMBOL
        second += [(f"{symbol} {summary.by_status[status]} {status}",
                    "available" if available else "away"), ("  ", "")]
    chart_width = max(4, min(30, (width - 34) // 2))
    avail = [s.available for s in model.history]
    busy = [s.on_call for s in model.history]
    third = [
        ("available ", ""), (sparkline(avail, chart_width).ljust(chart_width), "available"),
        (f" {summary.available:<3}", "available"), ("  on call ", ""),
        (sparkline(busy, chart_width).ljust(chart_width), "talking"),
        (f" {summary.on_call}", "talking"),
    ]
    lines = [styled(first, styles), styled(second or [("no status set yet", "idle")], styles),
             styled(third, styles)]
    text = Text("\n").join(lines)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def event_line(change: Change, tz: dt.tzinfo | None, styles: Mapping[str, Style]) -> Text:
    """``12:01:02 team_a agent_1 manual_status: available → break``."""
    old = value_text(change.old) or "–"
    new = value_text(change.new) or "–"
    parts = [(format_clock(change.time, tz) + " ", ""), (f"{change.topic or 'snapshot'} ", "idle"),
             (f"{change.user_id} ", ""), (f"{change.attribute}: {old} → {new}", "")]
    if change.call is not None and (change.call.caller or change.call.callee):
        parts.append((f"  ({change.call.caller or '?'} → {change.call.callee or '?'})", "idle"))
    return styled(parts, styles)
