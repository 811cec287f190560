"""The monitor's widgets. Each reads the model and redraws only what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from monitor.tui.alerts import Alert
from monitor.tui.cells import (
    AVAILABLE_SYMBOL,
    AWAY_SYMBOL,
    BREACH_MARK,
    CALL_SYMBOLS,
    CELL_PADDING,
    ONLINE_SYMBOLS,
    Cell,
    Column,
    fit_columns,
    format_clock,
    format_duration,
    group_parts,
    row_cells,
    sparkline,
)
from monitor.tui.model import AgentTable, Change, Group, Row, Summary, value_text
from monitor.tui.text import safe_text
from monitor.tui.themes import STATES, rich_colour


def state_styles(colours: Mapping[str, str]) -> dict[str, Style]:
    """Rich styles for each state colour of the theme; breaches are reversed."""
    styles = {state: Style(color=rich_colour(colours[state])) for state in STATES}
    styles["breach"] = Style(color=rich_colour(colours["breach"]), bold=True, reverse=True)
    styles[""] = Style()
    return styles


class GroupLine(tuple[Cell, ...]):
    """A group's header line in the grid: its parts, each in its state's colour."""

    __slots__ = ()


def styled(parts: Sequence[tuple[str, str]], styles: Mapping[str, Style]) -> Text:
    """One line of plain text pieces, each painted with its state's style. The pieces
    are drawn as they read: controls shown escaped (:func:`safe_text`), no markup."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for words, state in parts:
        text.append(safe_text(words), styles.get(state, Style()))
    return text


class AgentGrid(Widget, can_focus=True):
    """The agents, one line each, drawn through Textual's Line API from the model's rows.

    The grid is a window over the sorted, filtered agents (with a header line per group
    when they are grouped): ``top`` is the index of the first row on screen, and each
    line of the window shows one agent's cells (``(text, state)`` pairs,
    :func:`row_cells`) or a group's name and counts. A reconcile compares every line's
    cells with what was last drawn and refreshes only the lines that changed: a sort, a
    filter, a live reorder or a moved window changes which agent a line shows, never
    what the widget holds. :meth:`render_line` draws a line segment by segment into a
    :class:`Strip`, kept until that line, the cursor, the hover or the styles change.

    The cursor is a line of the window and stays on its agent through reconciles (on the
    same line of the screen when it can). Moving it past the window's edge, a page, to
    the first or the last agent, or the mouse wheel moves the window. Text is drawn as
    plain text, passed through :func:`safe_text` once more where it is drawn.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Previous agent", show=False),
        Binding("down", "cursor_down", "Next agent", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home,home", "first", "First agent", show=False),
        Binding("ctrl+end,end", "last", "Last agent", show=False),
        Binding("enter", "choose", "Agent detail (a group: fold / open)", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "agent-grid--header", "agent-grid--cursor", "agent-grid--hover", "agent-grid--group"}
    DEFAULT_CSS = """
    AgentGrid {
        height: 1fr;
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .agent-grid--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .agent-grid--header { background-tint: $foreground 5%; }
        }
        & > .agent-grid--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .agent-grid--header { background: ansi_bright_blue; color: ansi_default; }
        & > .agent-grid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .agent-grid--hover { background: $block-hover-background; }
        & > .agent-grid--group { text-style: bold; background: $boost; }
        &.-stale { text-opacity: 60%; }
    }
    """
    UNSIZED_WINDOW = 100
    """Rows held before the grid knows its height."""
    WHEEL_ROWS = 3
    PADDING = CELL_PADDING // 2
    """Blank cells on each side of a cell's text."""

    class WindowMoved(Message):
        """The window moved without a reconcile (cursor keys, wheel): the view line's
        "rows a-b" is out of date."""

    class HeaderClicked(Message):
        """A column's header was clicked: sort by it."""

        def __init__(self, grid: AgentGrid, column: str) -> None:
            super().__init__()
            self.grid = grid
            self.column = column

    class GroupToggled(Message):
        """Enter, or a click on the cursor's line, on a group's header: fold or open it."""

        def __init__(self, grid: AgentGrid, key: str) -> None:
            super().__init__()
            self.grid = grid
            self.key = key

    class AgentChosen(Message):
        """Enter, or a click on the cursor's line: the agent's detail."""

        def __init__(self, grid: AgentGrid, user_id: str) -> None:
            super().__init__()
            self.grid = grid
            self.user_id = user_id

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout_key: tuple[object, ...] = ()
        self.columns: list[Column] = []
        """The columns shown, as fitted to the width."""
        self.shown_columns: list[str] = []
        self.styles_by_state: dict[str, Style] = {}
        self.rebuilds = 0
        """How many times the columns were laid out anew (tests watch this)."""
        self.top = 0
        """Index, among every row the grid would show, of the first row on screen."""
        self.total = 0
        """How many rows the grid would show (filtered agents)."""
        self.shown_users: list[str | None] = []
        """The userId on each line of the window, top to bottom (``None``: a group)."""
        self.shown_rows: list[Row] = []
        """What each line of the window shows: an agent or a group's header."""
        self._rows: Sequence[Row] = ()
        self._groups: Mapping[str, Summary] = {}
        self._filtered = False
        self._widths: dict[str, int] = {}
        self._model: AgentTable | None = None
        self._now = 0.0
        self._tz: dt.tzinfo | None = None
        self._lines: list[tuple[Cell, ...]] = []
        """What each line of the window shows: its cells, one per shown column (or a
        :class:`GroupLine`)."""
        self._cursor = 0
        """The cursor's line in the window."""
        self._hover: int | None = None
        """The line under the mouse, while the mouse is over the grid."""
        self._anchor: tuple[str, str] | None = None
        """The row the operator last put the cursor on: ``("agent", userId)`` or
        ``("group", key)``."""
        self._strips: dict[int, Strip] = {}
        self._looks: tuple[Any, ...] | None = None
        self._segments: dict[tuple[Any, ...], list[Segment]] = {}
        self._metas: dict[tuple[int, int], Style] = {}

    # -- what it shows ------------------------------------------------------------------

    @property
    def cursor_row(self) -> int:
        """The cursor's line in the window (0 is the first agent on screen)."""
        return self._cursor

    @property
    def row_count(self) -> int:
        """How many lines of the window show an agent."""
        return len(self._lines)

    @property
    def selected_user(self) -> str | None:
        """The userId of the row under the cursor (``None`` on a group's header)."""
        return self.user_at(self._cursor)

    @property
    def selected_group(self) -> str | None:
        """The group whose header is under the cursor."""
        row = self.shown_rows[self._cursor] if self._cursor < len(self.shown_rows) else None
        return row.key if isinstance(row, Group) else None

    def user_at(self, line: int) -> str | None:
        """The userId shown on line ``line`` of the window."""
        return self.shown_users[line] if 0 <= line < len(self.shown_users) else None

    def line_of_group(self, key: str) -> int | None:
        """The window's line showing the header of group ``key``, if shown."""
        return next((i for i, row in enumerate(self.shown_rows)
                     if isinstance(row, Group) and row.key == key), None)

    def group_text(self, key: str) -> str:
        """What the header line of group ``key`` says (the group must be shown)."""
        line = self.line_of_group(key)
        assert line is not None, key
        return "".join(text for text, _ in self._lines[line])

    def user_cell(self, user_id: str, column: str) -> Text:
        """What the grid shows for ``user_id`` in ``column`` (the agent must be shown)."""
        text, state = self._lines[self.shown_users.index(user_id)][
            self.shown_columns.index(column)]
        return Text(safe_text(text), style=self.styles_by_state.get(state, Style()),
                    no_wrap=True, overflow="ellipsis")

    @property
    def window_size(self) -> int:
        """How many rows fit on screen (below the header)."""
        height = self.size.height - 1
        return height if height > 0 else self.UNSIZED_WINDOW

    def forget_cells(self) -> None:
        """Draw every line anew on the next reconcile (after a theme change)."""
        self._lines = []
        self._strips.clear()
        self._segments.clear()
        self.refresh()

    def reconcile(self, model: AgentTable, rows: Sequence[Row], columns: Sequence[Column],
                  now: float, tz: dt.tzinfo | None, *,
                  groups: Mapping[str, Summary] | None = None, filtered: bool = False
                  ) -> None:
        """Bring the grid in line with ``rows``: the cursor stays on its agent or group
        (and on the same line of the screen, when it can); the rows around it are shown.
        ``groups``: each group's totals, for its header; ``filtered``: a filter is on."""
        fitted = fit_columns(columns, max(1, self.size.width - 1))
        key = tuple((c.key, c.width) for c in fitted)
        selected, group = self.selected_user, self.selected_group
        line = self._cursor
        index = self.top + line
        if key != self.layout_key:
            self.layout_key = key
            self.rebuilds += 1
            self.columns = fitted
            self.shown_columns = [c.key for c in fitted]
            self._widths = {c.key: c.width for c in fitted}
            self._lines = []
            self._strips.clear()
            self.refresh()
        self._model, self._rows, self._now, self._tz = model, rows, now, tz
        self._groups, self._filtered = groups or {}, filtered
        # The row the operator put the cursor on comes first: a filter that hid it for a
        # while (typing, say) does not leave the cursor elsewhere once it is cleared.
        here = ("agent", selected) if selected is not None else \
            ("group", group) if group is not None else None
        for wanted in dict.fromkeys(k for k in (self._anchor, here) if k is not None):
            found = self._index_of(model, rows, wanted)
            if found is not None:
                index = found
                break
        index = max(0, min(index, len(rows) - 1))
        self._show(index - line, index)

    @staticmethod
    def _index_of(model: AgentTable, rows: Sequence[Row], wanted: tuple[str, str]
                  ) -> int | None:
        kind, key = wanted
        if kind == "agent":
            agent = model.agents.get(key)
            # the same object: compare identities, never the dataclass's fields
            return next((i for i, a in enumerate(rows) if a is agent), None)
        return next((i for i, g in enumerate(rows)
                     if isinstance(g, Group) and g.key == key), None)

    def _anchor_here(self) -> None:
        """The operator put the cursor on this row: the grid keeps to it from now on."""
        user, group = self.selected_user, self.selected_group
        self._anchor = ("agent", user) if user is not None else \
            ("group", group) if group is not None else None

    def _show(self, top: int, cursor: int) -> None:
        """Show the window of rows starting at ``top`` (clamped), cursor on row ``cursor``;
        refresh the lines whose cells changed."""
        model, rows = self._model, self._rows
        if model is None:
            return
        size = self.window_size
        top = max(0, min(top, len(rows) - size))
        self.top, self.total = top, len(rows)
        window = rows[top:top + size]
        columns, now, tz, widths = self.shown_columns, self._now, self._tz, self._widths
        old = self._lines
        lines: list[tuple[Cell, ...]] = []
        changed: list[int] = []
        for line, row in enumerate(window):
            if isinstance(row, Group):
                drawn: tuple[Cell, ...] = GroupLine(group_parts(
                    model, row, self._groups.get(row.key), self._filtered,
                    self.size.width - 2 * self.PADDING))
            else:
                cells = row_cells(model, row, columns, now, tz, widths)
                drawn = tuple(cells[c] for c in columns)
            lines.append(drawn)
            if line >= len(old) or old[line] != drawn \
                    or type(old[line]) is not type(drawn):
                changed.append(line)
        changed.extend(range(len(lines), len(old)))  # lines left empty
        self._lines = lines
        self.shown_rows = list(window)
        self.shown_users = [None if isinstance(r, Group) else r.user_id for r in window]
        changed.extend(self._place_cursor(cursor - top))
        self._refresh_lines(changed)

    def _place_cursor(self, line: int) -> list[int]:
        """Put the cursor on ``line`` of the window (clamped); the lines to draw again."""
        line = max(0, min(line, len(self._lines) - 1))
        if line == self._cursor:
            return []
        before, self._cursor = self._cursor, line
        return [before, line]

    def _refresh_lines(self, lines: Iterable[int]) -> None:
        """Draw these lines of the window again (the header is the screen's line 0)."""
        width = self.size.width
        regions = []
        for line in set(lines):
            self._strips.pop(line + 1, None)
            regions.append(Region(0, line + 1, width, 1))
        if regions:
            self.refresh(*regions)

    # -- drawing ------------------------------------------------------------------------

    def _current_looks(self) -> tuple[Any, ...]:
        """The styles every line is drawn with: when any changes, every line is drawn
        again (focus, theme, width)."""
        looks = (self.rich_style, self.get_component_rich_style("agent-grid--header"),
                 self.get_component_rich_style("agent-grid--cursor"),
                 self.get_component_rich_style("agent-grid--hover"), self.size.width,
                 self.get_component_rich_style("agent-grid--group"))
        if looks != self._looks:
            self._looks = looks
            self._strips.clear()
        return looks

    def render_lines(self, crop: Region) -> list[Strip]:
        self._current_looks()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        looks = self._looks or self._current_looks()
        strip = self._strips.get(y)
        if strip is None:
            strip = self._strips[y] = self._draw_line(y, looks)
        return strip

    def _meta(self, row: int, column: int) -> Style:
        """Where a cell is (``row`` -1: the header; ``column`` -1: the space after the
        last column), as mouse events find it in the cell's style."""
        key = (row, column)
        style = self._metas.get(key)
        if style is None:
            meta = {"row": row, "column": column} if column >= 0 else \
                {"row": row, "column": 0, "out_of_bounds": True}
            style = self._metas[key] = Style.from_meta(meta)
        return style

    def _draw_line(self, y: int, looks: tuple[Any, ...]) -> Strip:
        base, header, cursor_style, hover_style, width, _ = looks
        if 0 < y <= len(self._lines) and isinstance(self._lines[y - 1], GroupLine):
            return self._draw_group(y - 1, looks)
        if y == 0:
            row, row_style, component = -1, header, Style()
            cells: Sequence[Cell] = [(c.label, "") for c in self.columns]
        elif y - 1 < len(self._lines):
            row, row_style, component = y - 1, base, Style()
            cells = self._lines[row]
            if row == self._hover:
                component += hover_style
            if row == self._cursor:
                component += cursor_style
        else:
            return Strip.blank(width, base)
        # The cursor's colour wins over a cell's own; its background does not.
        post = Style.from_color(color=component.color)
        segments: list[Segment] = []
        used = 0
        for index, (column, cell) in enumerate(zip(self.columns, cells, strict=True)):
            pre = row_style + self._meta(row, index) + component
            segments += self._cell(cell, column.width, pre, post, header=row < 0)
            used += column.width + CELL_PADDING
        extend = row_style + component + self._meta(row, -1)
        segments.append(Segment(" " * max(0, width - used), extend))
        strip = Strip(segments)
        if used > width:
            strip = strip.crop(0, width)
        return strip.adjust_cell_length(width, base).simplify()

    def _draw_group(self, row: int, looks: tuple[Any, ...]) -> Strip:
        """A group's header line: its parts across the whole width, cut with an
        ellipsis when they do not fit."""
        base, _, cursor_style, hover_style, width, group_style = looks
        component = Style()
        if row == self._hover:
            component += hover_style
        if row == self._cursor:
            component += cursor_style
        post = Style.from_color(color=component.color)
        line_style = base + group_style + self._meta(row, 0) + component
        room = max(0, width - 2 * self.PADDING)
        segments = [Segment(" " * self.PADDING, line_style + post)]
        used = 0
        for text, state in self._lines[row]:
            text = safe_text(text)
            if used + cell_len(text) > room:
                text = set_cell_size(text, max(0, room - used - 1)) + "…"
                segments.append(Segment(text, line_style + self.styles_by_state.get(
                    state, Style()) + post))
                used = room
                break
            segments.append(Segment(text, line_style + self.styles_by_state.get(
                state, Style()) + post))
            used += cell_len(text)
        segments.append(Segment(" " * (width - self.PADDING - used), line_style + post))
        return Strip(segments).adjust_cell_length(width, base).simplify()

    def _cell(self, cell: Cell, width: int, pre: Style, post: Style, *, header: bool
              ) -> list[Segment]:
        """One cell: its text (cut to ``width``, with an ellipsis for a value), padded,
        in its state's style under the line's. The same text in the same place (the
        same styles) is drawn once."""
        text, state = cell
        style = self.styles_by_state.get(state, Style())
        key = (text, style, width, pre, post, header)
        segments = self._segments.get(key)
        if segments is None:
            segments = self._draw_cell(safe_text(text), style, width, pre, post, header)
            if len(self._segments) > 4096:
                self._segments.clear()
            self._segments[key] = segments
        return segments

    @classmethod
    def _draw_cell(cls, text: str, style: Style, width: int, pre: Style, post: Style,
                   header: bool) -> list[Segment]:
        plain = pre + post
        if cell_len(text) > width:  # values end with an ellipsis; labels are cut
            text = set_cell_size(text, width) if header or width < 2 \
                else set_cell_size(text, width - 1) + "…"
        used = cell_len(text)
        pad = " " * cls.PADDING
        segments = [Segment(pad, plain)]
        if text:
            segments.append(Segment(text, (pre + style) + post))
        if used < width:
            segments.append(Segment(" " * (width - used), plain))
        segments.append(Segment(pad, plain))
        return segments

    # -- keys, mouse and wheel ----------------------------------------------------------

    def _move_window(self, top: int, cursor: int) -> None:
        """Show the window from ``top``, the cursor on row ``cursor``; the mouse's
        highlight goes (the keys moved the cursor)."""
        self._set_hover(None)
        before = self.top
        if top == before and top <= cursor < top + len(self._lines):
            self._refresh_lines(self._place_cursor(cursor - top))
        else:
            self._show(top, cursor)
        self._anchor_here()
        if self.top != before:
            self.post_message(self.WindowMoved())

    def _move_to(self, index: int) -> None:
        """Put the cursor on row ``index``, moving the window as little as it must."""
        if not self.total:
            return
        index = max(0, min(index, self.total - 1))
        top = self.top
        if index < top:
            top = index
        elif index >= top + self.window_size:
            top = index - self.window_size + 1
        self._move_window(top, index)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on line ``row`` of the window."""
        self._move_to(self.top + row)

    def action_cursor_down(self) -> None:
        self._move_to(self.top + self._cursor + 1)

    def action_cursor_up(self) -> None:
        self._move_to(self.top + self._cursor - 1)

    def action_page_down(self) -> None:
        size = self.window_size
        self._move_window(self.top + size, min(self.total - 1, self.top + self._cursor + size))

    def action_page_up(self) -> None:
        size = self.window_size
        self._move_window(self.top - size, max(0, self.top + self._cursor - size))

    def action_first(self) -> None:
        self._move_window(0, 0)

    def action_last(self) -> None:
        self._move_window(self.total, self.total - 1)

    def action_choose(self) -> None:
        user_id, group = self.selected_user, self.selected_group
        if user_id is not None:
            self.post_message(self.AgentChosen(self, user_id))
        elif group is not None:
            self.post_message(self.GroupToggled(self, group))

    def _wheel(self, rows: int) -> bool:
        top = max(0, min(self.top + rows, self.total - self.window_size))
        if top == self.top:
            return False
        cursor = max(top, min(self.top + self._cursor, top + self.window_size - 1))
        before = self._hover
        self._move_window(top, cursor)
        self._set_hover(before)
        return True

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if not (event.ctrl or event.shift) and self._wheel(self.WHEEL_ROWS):
            event.stop()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if not (event.ctrl or event.shift) and self._wheel(-self.WHEEL_ROWS):
            event.stop()

    def _set_hover(self, line: int | None) -> None:
        if line is not None and not 0 <= line < len(self._lines):
            line = None
        if line != self._hover:
            lines = [x for x in (self._hover, line) if x is not None]
            self._hover = line
            self._refresh_lines(lines)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        offset = event.get_content_offset(self)
        self._set_hover(None if offset is None else offset.y - 1)

    def on_leave(self, event: events.Leave) -> None:
        self._set_hover(None)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            right = 0
            for column in self.columns:
                right += column.width + CELL_PADDING
                if offset.x < right:
                    self.post_message(self.HeaderClicked(self, column.key))
                    break
            return
        line = offset.y - 1
        if 0 <= line < len(self._lines):
            if line == self._cursor:
                self.action_choose()
            else:
                self._refresh_lines(self._place_cursor(line))
                self._anchor_here()
            event.stop()

    def on_resize(self, event: events.Resize) -> None:
        """More or fewer rows fit: fill the window anew around the cursor."""
        if self._model is not None:
            self._show(self.top, self.top + self._cursor)


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
                 styles: Mapping[str, Style], width: int, alert: str | None = None) -> Text:
    """Three lines: presence, calls, breaches and the latest ``alert``; totals by status;
    the chart of idle agents (online, available and not on a call) and of agents on a
    call."""
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
    if alert:
        first += [("  │ ", ""), (alert, "away")]
    second: list[tuple[str, str]] = []
    ordered = [s for s in statuses if s in summary.by_status]
    ordered += sorted(s for s in summary.by_status if s not in statuses)
    for status in ordered:
        available = status == model.available_status
        symbol = AVAILABLE_SYMBOL if available else AWAY_SYMBOL
        second += [(f"{symbol} {summary.by_status[status]} {model.status_label(status)}",
                    "available" if available else "away"), ("  ", "")]
    chart_width = max(4, min(30, (width - 34) // 2))
    avail = [s.available for s in model.history]
    busy = [s.on_call for s in model.history]
    third = [
        ("idle ", ""), (sparkline(avail, chart_width).ljust(chart_width), "available"),
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


def event_line(change: Change, tz: dt.tzinfo | None, styles: Mapping[str, Style],
               model: AgentTable | None = None) -> Text:
    """``12:01:02 team_a Ann Lee manual_status: available → break``: users by their
    names (with the user id where two share a name), call parties too."""

    def who(user_id: str | None) -> str:
        if user_id is None:
            return "?"
        return (model.party_label(user_id) if model is not None else None) or user_id

    old = value_text(change.old) or "–"
    new = value_text(change.new) or "–"
    parts = [(format_clock(change.time, tz) + " ", ""), (f"{change.topic or 'snapshot'} ", "idle"),
             (f"{who(change.user_id)} ", ""), (f"{change.attribute}: {old} → {new}", "")]
    if change.call is not None and (change.call.caller or change.call.callee):
        parts.append((f"  ({who(change.call.caller)} → {who(change.call.callee)})", "idle"))
    return styled(parts, styles)


class AlertList(Static):
    """The alerts: those active now, latest first, then those cleared lately."""

    DEFAULT_CSS = """
    AlertList { height: 8; border-top: solid $warning; padding: 0 1; display: none;
                text-wrap: nowrap; text-overflow: ellipsis; }
    AlertList.-shown { display: block; }
    """


def alert_line(alert: Alert, model: AgentTable, now: float, tz: dt.tzinfo | None,
               styles: Mapping[str, Style]) -> Text:
    """``⚠ 08:53:45 Chloé Durand · sales after call work over 2:00, for 2:15 now``; a
    cleared one says when it ended."""
    agent = model.agents.get(alert.user_id)
    name = model.label(agent) if agent is not None else alert.user_id
    group = model.group_of(agent) if agent is not None else ""
    who = f"{name} · {group}" if group else name
    what = alert.what(model.status_labels)
    if alert.cleared is None:
        took = format_duration(max(0.0, now - alert.since))
        return styled([(f"{BREACH_MARK} {format_clock(alert.fired, tz)} ", "breach"),
                       (f"{who} ", ""), (f"{what}, for {took} now", "breach")], styles)
    took = format_duration(max(0.0, alert.cleared - alert.since))
    return styled([(f"✔ {format_clock(alert.fired, tz)} ", "idle"), (f"{who} ", "idle"),
                   (f"{what}, ended {format_clock(alert.cleared, tz)} after {took}", "idle")],
                  styles)
