"""The monitor's widgets. Each reads the model and redraws only what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual._types import SegmentLines
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey, RowKey

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
from monitor.tui.text import safe_text
from monitor.tui.themes import STATES, rich_colour


def state_styles(colours: Mapping[str, str]) -> dict[str, Style]:
    """Rich styles for each state colour of the theme; breaches are reversed."""
    styles = {state: Style(color=rich_colour(colours[state])) for state in STATES}
    styles["breach"] = Style(color=rich_colour(colours["breach"]), bold=True, reverse=True)
    styles[""] = Style()
    return styles


def styled(parts: Sequence[tuple[str, str]], styles: Mapping[str, Style]) -> Text:
    """One line of plain text pieces, each painted with its state's style. The pieces
    are drawn as they read: controls shown escaped (:func:`safe_text`), no markup."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for words, state in parts:
        text.append(safe_text(words), styles.get(state, Style()))
    return text


class AgentGrid(DataTable):
    """The agents, one row each, reconciled from the model cell by cell.

    The table holds only the rows on screen: a window of the sorted, filtered agents.
    Its rows are the lines of the window (keyed by position, ``"0"``, ``"1"``…), and what
    changes is which agent each line shows: a sort, a filter, a live reorder or a moved
    window is cell updates, never rows added, removed or sorted (each of which makes a
    DataTable lay the screen out and repaint it whole, at a cost growing with its rows).
    Moving the cursor past the window's edge, a page, to the top or the bottom, or the
    mouse wheel moves the window.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Agent detail", show=False)]
    DEFAULT_CSS = """
    AgentGrid { height: 1fr; }
    AgentGrid.-stale { text-opacity: 60%; }
    """
    UNSIZED_WINDOW = 100
    """Rows held before the table knows its height."""
    WHEEL_ROWS = 3

    class WindowMoved(Message):
        """The window moved without a reconcile (cursor keys, wheel): the view line's
        "rows a-b" is out of date."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", **kwargs)  # type: ignore[arg-type]
        self.layout_key: tuple[object, ...] = ()
        self.shown_columns: list[str] = []
        self._cells: dict[tuple[str, str], Cell] = {}
        self.styles_by_state: dict[str, Style] = {}
        self.rebuilds = 0
        """How many times the columns were laid out anew (tests watch this)."""
        self.top = 0
        """Index, among every row the grid would show, of the first row in the table."""
        self.total = 0
        """How many rows the grid would show (filtered agents)."""
        self._rows: Sequence[Agent] = ()
        self._model: AgentTable | None = None
        self._now = 0.0
        self._tz: dt.tzinfo | None = None
        self._metas: dict[tuple[int, int], Style] = {}
        self._cell_lines: dict[tuple[Any, ...], list[Segment]] = {}
        self._line_style: Style | None = None
        self.shown_users: list[str] = []
        """The userId on each line of the window, top to bottom."""

    def forget_cells(self) -> None:
        """Repaint every cell on the next reconcile (after a theme change)."""
        self._cells.clear()

    @property
    def selected_user(self) -> str | None:
        """The userId of the row under the cursor."""
        return self.user_at(self.cursor_row)

    def user_at(self, line: int) -> str | None:
        """The userId shown on line ``line`` of the window."""
        return self.shown_users[line] if 0 <= line < len(self.shown_users) else None

    def user_cell(self, user_id: str, column: str) -> Text:
        """What the grid shows for ``user_id`` in ``column`` (the agent must be shown)."""
        return self.get_cell(str(self.shown_users.index(user_id)), column)

    @property
    def window_size(self) -> int:
        """How many rows fit on screen."""
        height = self.scrollable_content_region.height - (
            self.header_height if self.show_header else 0)
        return height if height > 0 else self.UNSIZED_WINDOW

    def _text(self, cell: Cell) -> Text:
        style = self.styles_by_state.get(cell[1], Style())
        return Text(safe_text(cell[0]), style=style, no_wrap=True, overflow="ellipsis")

    def _relayout(self, columns: Sequence[Column]) -> None:
        self.rebuilds += 1
        self.clear(columns=True)
        self._cells.clear()
        self.shown_users = []
        for column in columns:
            self.add_column(Text(safe_text(column.label), no_wrap=True), width=column.width,
                            key=column.key)
        self.shown_columns = [c.key for c in columns]

    def reconcile(self, model: AgentTable, rows: Sequence[Agent], columns: Sequence[Column],
                  now: float, tz: dt.tzinfo | None) -> None:
        """Bring the table in line with ``rows``: the cursor stays on its agent (and on
        the same line of the screen, when it can); the rows around it are shown."""
        width = self.scrollable_content_region.width or self.size.width
        fitted = fit_columns(columns, max(1, width - 1))
        key = tuple((c.key, c.width) for c in fitted)
        selected = self.selected_user
        line = self.cursor_row if self.row_count else 0
        index = self.top + line
        if key != self.layout_key:
            self.layout_key = key
            self._relayout(fitted)
        self._model, self._rows, self._now, self._tz = model, rows, now, tz
        if selected is not None:
            agent = model.agents.get(selected)
            # the same object: compare identities, never the dataclass's fields
            found = next((i for i, a in enumerate(rows) if a is agent), None)
            if found is not None:
                index = found
        index = max(0, min(index, len(rows) - 1))
        self._show(index - line, index)

    def _show(self, top: int, cursor: int) -> None:
        """Show the window of rows starting at ``top`` (clamped), cursor on row ``cursor``."""
        model, rows, now, tz = self._model, self._rows, self._now, self._tz
        if model is None:
            return
        size = self.window_size
        top = max(0, min(top, len(rows) - size))
        self.top, self.total = top, len(rows)
        window = rows[top:top + size]
        while self.row_count > len(window):  # fewer rows than lines: only after a filter
            self.remove_row(str(self.row_count - 1))
            for column in self.shown_columns:
                self._cells.pop((str(self.row_count), column), None)
        columns = self.shown_columns
        changed: list[tuple[str, str, Text]] = []
        for line, agent in enumerate(window):
            key = str(line)
            cells = row_cells(model, agent, columns, now, tz)
            if line >= self.row_count:
                self.add_row(*(self._text(cells[c]) for c in columns), key=key)
                for column in columns:
                    self._cells[(key, column)] = cells[column]
                continue
            for column in columns:
                cell = cells[column]
                if self._cells.get((key, column)) != cell:
                    self._cells[(key, column)] = cell
                    changed.append((key, column, self._text(cell)))
        self.shown_users = [a.user_id for a in window]
        self._update_cells(changed)
        if window:
            line = max(0, min(cursor - top, len(window) - 1))
            if line != self.cursor_row:
                self.move_cursor(row=line, animate=False)

    def _update_cells(self, changed: Sequence[tuple[str, str, Text]]) -> None:
        """Put new texts in cells and repaint only the rows they are in.

        ``DataTable.update_cell`` bumps a counter that every render cache of the table is
        keyed on: one changed cell re-renders every row. Here, where the time columns
        change some cell of most rows every second, that was most of the app's CPU; so
        the cells' data is set directly and only the cached renders of the changed cells,
        rows and lines are dropped (every row is one line high; the window never scrolls).
        """
        if not changed:
            return
        rows: set[RowKey] = set()
        cells: set[tuple[RowKey, ColumnKey]] = set()
        for line, column, text in changed:
            row_key, column_key = RowKey(line), ColumnKey(column)
            self._data[row_key][column_key] = text
            rows.add(row_key)
            cells.add((row_key, column_key))
        indices = {self._row_locations.get(key) for key in rows}
        header = self.header_height if self.show_header else 0
        lines = {index + header for index in indices if index is not None}
        caches: list[tuple[Any, Callable[[Any], bool]]] = [
            (self._row_renderable_cache, lambda key: key[1] in indices),
            (self._cell_render_cache, lambda key: (key[0], key[1]) in cells),
            (self._row_render_cache, lambda key: key[0] in rows),
            (self._line_cache, lambda key: key[0] in lines),
        ]
        for cache, stale in caches:
            if 2 * len(rows) > self.row_count:  # most rows changed: cheaper to drop all
                cache.clear()
                continue
            for key in [key for key in cache.keys() if stale(key)]:  # noqa: SIM118 (not a dict)
                cache.discard(key)
        for index in indices:
            if index is not None:
                self.refresh_row(index)

    # Rendering: DataTable renders every cell through Rich (Padding, Styled, a console
    # render), about a millisecond per row here; a full repaint of the window after a sort
    # or a cursor move cost tens of milliseconds. Our cells are one-line Texts without
    # spans, so a row is put together here directly, segment by segment, exactly as that
    # path would (tests compare both); anything else takes DataTable's own path.

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style,
                            cursor_location: Coordinate, hover_location: Coordinate
                            ) -> tuple[SegmentLines, SegmentLines]:
        if line_no != 0 or self.fixed_columns or self.fixed_rows or self.zebra_stripes \
                or self.cursor_type != "row" or self.cell_padding < 0 \
                or (self._labelled_row_exists and self.show_row_labels):
            return super()._render_line_in_row(row_key, line_no, base_style,
                                               cursor_location, hover_location)
        cache_key = (row_key, line_no, base_style, cursor_location, hover_location,
                     self.cursor_type, self.show_cursor, self._show_hover_cursor,
                     self._update_count, self._pseudo_class_state)
        cached = self._row_render_cache.get(cache_key)
        if cached is not None:
            return cached
        header = row_key is self._header_row_key
        row_index = -1 if header else self._row_locations.get(row_key)
        if row_index is None:
            row_index = -1
        if header:
            row_style = self.get_component_styles("datatable--header").rich_style
            labels: list[Any] = [column.label for column in self.ordered_columns]
            cells = labels
        else:
            cells = list(self._data[row_key].get(column.key) for column in self.ordered_columns)
        row = self.rows.get(row_key)
        if not header and (row is None or row.height != 1):
            return super()._render_line_in_row(row_key, line_no, base_style,
                                               cursor_location, hover_location)
        if not header:
            row_style = base_style
        cursor = cursor_location.row == row_index
        hover = hover_location.row == row_index
        component, post = self._get_styles_to_render_cell(
            header, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css")
        padding = self.cell_padding
        line: list[list[Segment]] = []
        for column_index, (column, cell) in enumerate(zip(self.ordered_columns, cells,
                                                          strict=True)):
            segments = self._fast_cell(cell, column.get_render_width(self), padding,
                                       row_style + self._meta(row_index, column_index)
                                       + component, post, header)
            if segments is None:
                return super()._render_line_in_row(row_key, line_no, base_style,
                                                   cursor_location, hover_location)
            line.append(segments)
        # the rest of the line, as DataTable extends it for a row cursor
        table_width = sum(column.get_render_width(self) for column in self.ordered_columns)
        extend, _ = self._get_styles_to_render_cell(
            row_index == -1, False, False,
            self._should_highlight(hover_location, Coordinate(row_index or 0, 0), "row"),
            row_index == cursor_location.row, self.show_cursor, self._show_hover_cursor,
            False, False)
        extend = row_style + extend + self._meta(row_index, -1)
        line.append([Segment(" " * max(0, self.size.width - table_width), extend)])
        pair: tuple[SegmentLines, SegmentLines] = ([], line)
        self._row_render_cache[cache_key] = pair
        return pair

    def _meta(self, row: int, column: int) -> Style:
        """The meta DataTable gives a cell (mouse clicks find it); column -1: the space
        after the last column."""
        key = (row, column)
        style = self._metas.get(key)
        if style is None:
            meta = {"row": row, "column": column} if column >= 0 else \
                {"row": row, "column": 0, "out_of_bounds": True}
            style = self._metas[key] = Style.from_meta(meta)
        return style

    def render_lines(self, crop: Region) -> list[Strip]:
        self._line_style = self.rich_style  # DataTable asks for it line by line
        try:
            return super().render_lines(crop)
        finally:
            self._line_style = None

    def render_line(self, y: int) -> Strip:
        if self.fixed_rows or self._line_style is None:
            return super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        if y >= (self.header_height if self.show_header else 0):
            y += scroll_y
        return self._render_line(y, scroll_x, scroll_x + self.size.width, self._line_style)

    def _fast_cell(self, cell: object, width: int, padding: int, pre: Style, post: Style,
                   header: bool) -> list[Segment] | None:
        """One cell's line as DataTable renders a one-line Text without spans (Padding
        around it, styles layered pre + text + post); ``None`` for anything else. The
        same text in the same place (the same styles) is drawn once."""
        if not isinstance(cell, Text):
            return None
        key = (cell.plain, cell.style, cell.overflow, width, padding, pre, post)
        segments = self._cell_lines.get(key)
        if segments is None:
            segments = self._draw_cell(cell, width, padding, pre, post)
            if segments is not None:
                if len(self._cell_lines) > 4096:
                    self._cell_lines.clear()
                self._cell_lines[key] = segments
        return segments

    @staticmethod
    def _draw_cell(cell: Text, width: int, padding: int, pre: Style, post: Style
                   ) -> list[Segment] | None:
        if cell.spans or not cell.plain \
                or "\n" in cell.plain or "\t" in cell.plain or cell.end != "\n":
            return None
        inner = width - 2 * padding
        if inner <= 0:
            return None
        text = cell.plain
        overflow = cell.overflow or "fold"
        if overflow not in ("fold", "ellipsis", "crop"):
            return None
        if cell_len(text) > inner:
            text = set_cell_size(text, inner - 1) + "…" if overflow == "ellipsis" \
                else set_cell_size(text, inner)
        if isinstance(cell.style, str) and cell.style:
            return None
        used = cell_len(text)
        plain = pre + post
        text_style = (pre + cell.style) + post if isinstance(cell.style, Style) else plain
        segments = []
        if padding:
            segments.append(Segment(" " * padding, plain))
        segments.append(Segment(text, text_style))
        if used < inner:
            segments.append(Segment(" " * (inner - used), plain))
        if padding:
            segments.append(Segment(" " * padding, plain))
        return segments

    def _move_window(self, top: int, cursor: int) -> None:
        before = self.top
        self._show(top, cursor)
        if self.top != before:
            self.post_message(self.WindowMoved())

    # Keys and the wheel move the window where the table alone would stop at its edge.

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1 \
                and self.top + self.row_count < self.total:
            self._set_hover_cursor(False)
            self._move_window(self.top + 1, self.top + self.cursor_row + 1)
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row == 0 and self.top > 0:
            self._set_hover_cursor(False)
            self._move_window(self.top - 1, self.top - 1)
        else:
            super().action_cursor_up()

    def action_page_down(self) -> None:
        self._set_hover_cursor(False)
        size = self.window_size
        self._move_window(self.top + size, min(self.total - 1, self.top + self.cursor_row + size))

    def action_page_up(self) -> None:
        self._set_hover_cursor(False)
        size = self.window_size
        self._move_window(self.top - size, max(0, self.top + self.cursor_row - size))

    def action_scroll_top(self) -> None:
        self._set_hover_cursor(False)
        self._move_window(0, 0)

    def action_scroll_bottom(self) -> None:
        self._set_hover_cursor(False)
        self._move_window(self.total, self.total - 1)

    def _wheel(self, rows: int) -> bool:
        top = max(0, min(self.top + rows, self.total - self.window_size))
        if top == self.top:
            return False
        cursor = max(top, min(self.top + self.cursor_row, top + self.window_size - 1))
        self._move_window(top, cursor)
        return True

    def _on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if not (event.ctrl or event.shift) and self._wheel(self.WHEEL_ROWS):
            event.prevent_default()
            event.stop()

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if not (event.ctrl or event.shift) and self._wheel(-self.WHEEL_ROWS):
            event.prevent_default()
            event.stop()

    def _on_resize(self, event: events.Resize) -> None:
        """More or fewer rows fit: fill the window anew around the cursor."""
        if self._model is not None:
            self._show(self.top, self.top + self.cursor_row)


class OwnStatusBar(Static):
    """Top line: who you are, your own status, and the hub's answer to your last change."""

    DEFAULT_CSS = """
    OwnStatusBar { height: 1; background: $panel; padding: 0 1;
                   text-wrap: nowrap; text-overflow: ellipsis; }
    """


class ConnectionLine(Static):
    """Connected / reconnecting in N s / offline, hub URL, user, last message age."""

    DEFAULT_CSS = """
    ConnectionLine { height: 1; padding: 0 1; color: $text-muted;
                     text-wrap: nowrap; text-overflow: ellipsis; }
    """


class SummaryBar(Static):
    """Totals by online state, status and call state; the available / on-call chart.

    Its lines never wrap (Rich's ``no_wrap`` does not survive into Textual's content: the
    CSS says it), and its chart is sized for its width: when the width changes it asks
    for its text again at once, so a chart drawn for a wider screen is never shown."""

    class Resized(Message):
        """The bar's width changed: its text must be made again for the new width."""

    DEFAULT_CSS = """
    SummaryBar { height: 3; padding: 0 1; background: $surface;
                 text-wrap: nowrap; text-overflow: ellipsis; }
    """


    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.Resized())


class ViewLine(Static):
    """How the grid is sorted and filtered, and how many agents it shows."""

    DEFAULT_CSS = """
    ViewLine { height: 1; padding: 0 1; color: $text-muted;
               text-wrap: nowrap; text-overflow: ellipsis; }
    """


class EventLog(Static):
    """The latest topic messages, newest last."""

    DEFAULT_CSS = """
    EventLog { height: 8; border-top: solid $primary; padding: 0 1; display: none;
               text-wrap: nowrap; text-overflow: ellipsis; }
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
