"""The monitor app: a live agent grid over the hub's topics, and your own status.

Feed events update the model (:class:`AgentTable`) at once; the screen reconciles from it a
few times a second, cell by cell, inside one batch update.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.markup import escape as escape_markup
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Footer, Input, Static

from monitor.tui.cells import (
    AVAILABLE_SYMBOL,
    AWAY_SYMBOL,
    BREACH_MARK,
    BUILTIN,
    Column,
    custom_column,
    format_age,
    format_clock,
    format_duration,
)
from monitor.tui.feed import (
    CONNECTED,
    CONNECTING,
    OFFLINE,
    RECONNECTING,
    RESYNCING,
    ChangeRefused,
    Feed,
    FeedEvent,
    Link,
    Session,
    Snapshot,
    TopicMessage,
    safe_event,
)
from monitor.tui.model import Agent, AgentTable, Applied, Filter, Sort, Summary
from monitor.tui.screens import AgentDetail, HelpScreen, StatusPicker
from monitor.tui.settings import Settings
from monitor.tui.text import safe_text
from monitor.tui.themes import LoadedThemes, load_themes, state_colours
from monitor.tui.widgets import (
    AgentGrid,
    ConnectionLine,
    EventLog,
    OwnStatusBar,
    SummaryBar,
    ViewLine,
    event_line,
    state_styles,
    styled,
    summary_text,
)

FALLBACK_THEME = "textual-dark"
FREEZE_AGENTS = 1000
"""From this many agents on, a snapshot's objects are frozen out of the cycle collector."""


@dataclass(frozen=True)
class HubAnswer:
    """The hub's answer to the operator's last status change."""

    status: str
    ok: bool | None
    """``None`` while the change is on its way."""
    text: str
    at: float


class OwnStatusPanel(Static):
    """The compact screen of an agent whose token subscribes to no topic: just your status."""

    DEFAULT_CSS = """
    OwnStatusPanel { height: 1fr; padding: 1 2; display: none; }
    """


class MonitorApp(App[None]):
    """Watch the agents on your topics; set your own status."""

    TITLE = "monitor"
    CSS = """
    #filter { height: 1; border: none; padding: 0 1; display: none; }
    #filter.-shown { display: block; }
    Screen.-compact SummaryBar, Screen.-compact ViewLine, Screen.-compact AgentGrid,
    Screen.-compact #filter, Screen.-compact EventLog { display: none; }
    Screen.-compact OwnStatusPanel { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "pick_status", "My status"),
        *(Binding(str(i), f"set_status({i - 1})", f"Set my status to #{i}", show=False)
          for i in range(1, 10)),
        Binding("o", "sort_next", "Sort"),
        Binding("r", "sort_reverse", "Reverse sort", show=False),
        Binding("n", "toggle_online", "Online only", show=False),
        Binding("c", "toggle_on_call", "On a call only", show=False),
        Binding("b", "cycle_status_filter", "Filter by status", show=False),
        Binding("x", "clear_filters", "Clear all filters", show=False),
        Binding("l", "toggle_log", "Log"),
    ]

    def __init__(self, feed: Feed, settings: Settings | None = None, *,
                 themes: LoadedThemes | None = None, theme_name: str | None = None,
                 clock: Callable[[], float] = time.time, tz: dt.tzinfo | None = None,
                 read_only: bool | None = None) -> None:
        super().__init__()
        self.feed = feed
        self.settings = settings or Settings()
        self.clock = clock
        self.tz = tz
        self.read_only = self.settings.read_only if read_only is None else read_only
        self.loaded_themes = themes if themes is not None else load_themes()
        self.requested_theme = theme_name or self.settings.theme
        self.model = AgentTable(
            status_attribute=self.settings.status_attribute,
            available_status=self.settings.available_status,
            thresholds=self.settings.thresholds,
            event_log_size=self.settings.event_log_size,
            history_seconds=self.settings.history_minutes * 60.0,
            history_step=max(5.0, self.settings.history_minutes * 60.0 / 60))
        self.session: Session | None = None
        self.link = Link(CONNECTING)
        self.last_message_at: float | None = None
        self.stale_since: float | None = None
        self.sort = Sort()
        self.filter = Filter()
        self.answer: HubAnswer | None = None
        self._own_value: str | None = None
        self._own_since: float | None = None
        self._log_version = -1
        self.styles_by_state: dict[str, Style] = {}
        self._shown: dict[str | None, Text] = {}
        self._summary: tuple[tuple[int, int], Summary] | None = None
        self._prepared = 0

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical():
            yield OwnStatusBar(id="own")
            yield ConnectionLine(id="connection")
            yield SummaryBar(id="summary")
            yield ViewLine(id="view")
            yield Input(placeholder="filter: name or any state (Esc clears)", id="filter")
            yield AgentGrid(id="grid")
            yield OwnStatusPanel(id="own-panel")
            yield EventLog(id="log")
        yield Footer()

    def on_mount(self) -> None:
        for theme in self.loaded_themes.themes.values():
            self.register_theme(theme)
        for error in self.loaded_themes.errors:
            self.notify(error, title="Theme skipped", severity="warning", timeout=8,
                        markup=False)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.use_theme(self.requested_theme)
        self._apply_theme_styles(self.current_theme)
        self.query_one(AgentGrid).focus()
        self.run_worker(self._consume(), name="feed", group="feed", exclusive=True)
        self.set_interval(1.0 / self.settings.refresh_per_second, self.tick)
        self.reconcile()

    def use_theme(self, name: str) -> bool:
        """Switch to theme ``name``; report an unknown one and keep the current theme."""
        if name in self.available_themes:
            self.theme = name
            return True
        self.notify(f"no theme named {name!r}", title="Theme", severity="error",
                    markup=False)
        if self.theme not in self.available_themes or self.theme == FALLBACK_THEME:
            fallback = "monitor-dark" if "monitor-dark" in self.available_themes \
                else FALLBACK_THEME
            self.theme = fallback
        return False

    def _theme_changed(self, theme: Theme) -> None:
        self._apply_theme_styles(theme)
        self.reconcile()

    def _apply_theme_styles(self, theme: Theme) -> None:
        self.styles_by_state = state_styles(state_colours(theme))
        grid = self.query_one(AgentGrid)
        grid.styles_by_state = self.styles_by_state
        grid.forget_cells()
        self._shown.clear()
        self._log_version = -1

    # -- the feed ------------------------------------------------------------------------

    async def _consume(self) -> None:
        try:
            async for event in self.feed.events():
                self.handle_event(event)
        finally:
            if self.link.state != OFFLINE:
                self.handle_event(Link(OFFLINE, detail="feed ended"))

    def handle_event(self, event: FeedEvent) -> None:
        """Apply one feed event to the model at once; the screen follows on the next tick.

        Every string in it is made safe to draw first (:func:`safe_event`): the model
        and the widgets never hold a control character or an escape sequence."""
        now = self.clock()
        raw = event
        event = safe_event(event)
        if isinstance(event, TopicMessage):
            self.last_message_at = now
            result = self.model.apply_message(event.topic, event.message, seq=event.seq,
                                              now=now)
            if result is Applied.GAP and isinstance(raw, TopicMessage):
                # the hub knows the topic by its own name, not the one shown
                self.run_worker(self.feed.resync(raw.topic), group="resync")
        elif isinstance(event, Snapshot):
            self.last_message_at = now
            self.model.apply_snapshot(event.topic, event.values, seq=event.seq,
                                      epoch=event.epoch, now=now)
            # The agent table just grew by a topic's worth of long-lived objects: keep
            # them out of the cycle collector's full passes, which otherwise scan them all
            # every few seconds (a pause of tens of milliseconds at 5,000 agents). They are
            # still freed as usual once nothing refers to them.
            if len(self.model.agents) >= FREEZE_AGENTS:
                gc.freeze()
        elif isinstance(event, Session):
            self.session = event
            self.screen.set_class(not event.subscribe, "-compact")
        elif isinstance(event, Link):
            self.link = event
            stale = event.state != CONNECTED and bool(self.model.agents)
            if stale and self.stale_since is None:
                self.stale_since = now
            if not stale:
                self.stale_since = None
            self.model.set_stale(stale)

    # -- reconcile -----------------------------------------------------------------------

    def columns(self) -> list[Column]:
        """Every column the grid would show given room: configured, then custom ones."""
        hidden = set(self.settings.hidden_attributes)
        return [BUILTIN[c] for c in self.settings.columns] + [
            custom_column(a) for a in self.model.custom_attributes if a not in hidden]

    def visible_rows(self, now: float) -> list[Agent]:
        return self.model.rows(now, self.sort, self.filter)

    def tick(self) -> None:
        """A few times a second: reconcile, then bring one other column's sort order up
        to date (off the path of a key, so switching sorts finds it ready)."""
        self.reconcile()
        columns = self.sortable_columns()
        if columns:
            self._prepared = (self._prepared + 1) % len(columns)
            self.model.prepare(columns[self._prepared])

    def reconcile(self) -> None:
        """Bring every widget in line with the model. Called a few times a second."""
        try:
            self._reconcile()
        except NoMatches:  # a timer that fires while the screen is torn down, widget by widget
            return

    def _reconcile(self) -> None:
        try:
            grid = self.query_one(AgentGrid)
        except NoMatches:  # not composed yet, or already torn down
            return
        now = self.clock()
        self.model.sample(now)
        styles = self.styles_by_state
        self.show(self.query_one(OwnStatusBar), self.own_status_text(now))
        self.show(self.query_one(ConnectionLine), self.connection_text(now))
        compact = self.screen.has_class("-compact")
        if compact:
            self.show(self.query_one(OwnStatusPanel), self.own_panel_text(now))
            return
        summary = self.summary(now)
        width = self.query_one(SummaryBar).size.width or self.size.width
        self.show(self.query_one(SummaryBar),
                  summary_text(summary, self.model, self.settings.statuses, styles, width))
        rows = self.visible_rows(now)
        grid.set_class(self.model.stale, "-stale")
        with self.batch_update():
            grid.reconcile(self.model, rows, self.columns(), now, self.tz)
        self.show(self.query_one(ViewLine), self.view_text(len(rows)))
        log = self.query_one(EventLog)
        if log.has_class("-shown") and self._log_version != self.model.version:
            self._log_version = self.model.version
            lines = [event_line(change, self.tz, styles)
                     for change in list(self.model.events)[-max(1, log.size.height or 7):]]
            self.show(log, Text("\n").join(lines) if lines else Text("no topic messages yet"))

    def show(self, widget: Static, text: Text) -> None:
        """Put ``text`` in one of the fixed-height lines or panes, if it changed: an
        update repaints the widget, and there is no need to lay the screen out again."""
        if self._shown.get(widget.id) != text:
            self._shown[widget.id] = text
            widget.update(text, layout=False)

    def summary(self, now: float) -> Summary:
        """The model's summary, computed again when the model or the second changed
        (a key pressed within the same second reuses it)."""
        key = (self.model.version, int(now))
        if self._summary is None or self._summary[0] != key:
            self._summary = (key, self.model.summary(now))
        return self._summary[1]

    # -- texts ---------------------------------------------------------------------------

    def own_status(self) -> tuple[str | None, float | None]:
        """The operator's status and since when: from the topics, or from the hub's answer."""
        if self.session is not None:
            agent = self.model.agents.get(self.session.user_id)
            if agent is not None:
                status = self.model.status_of(agent)
                since = agent.since.get(self.model.status_attribute)
                if status is not None and (self._own_since is None or since is None
                                           or since >= self._own_since - 1):
                    return status, since
        return self._own_value, self._own_since

    def _status_parts(self, status: str | None) -> tuple[str, str]:
        if status is None:
            return "– not set", "idle"
        if status == self.settings.available_status:
            return f"{AVAILABLE_SYMBOL} {status}", "available"
        return f"{AWAY_SYMBOL} {status}", "away"

    def grants_status(self) -> bool:
        """Whether the token publishes the status attribute to any topic."""
        return self.session is None or bool(
            self.session.publishes.get(self.settings.status_attribute))

    def own_status_text(self, now: float) -> Text:
        if self.session is None:
            return styled([("monitor │ signing in…", "")], self.styles_by_state)
        session = self.session
        who = session.user_id if not session.display_name \
            else f"{session.display_name} ({session.user_id})"
        status, since = self.own_status()
        words, state = self._status_parts(status)
        parts = [(f"you: {who} │ ", ""), (words, state)]
        if since is not None and status is not None:
            parts.append((f" {format_duration(max(0.0, now - since))}", ""))
        answer = self.answer
        if answer is not None:
            if answer.ok is None:
                parts.append((f" │ → {answer.status}: sending…", "ringing"))
            elif answer.ok:
                parts.append((f" │ hub: ✔ {answer.text} {format_clock(answer.at, self.tz)}",
                              "available"))
            else:
                parts.append((f" │ hub: ✕ {answer.text}", "breach"))
        if self.read_only:
            parts.append((" │ read-only", "idle"))
        elif not self.grants_status():
            parts.append((f" │ {BREACH_MARK} token publishes "
                          f"{self.settings.status_attribute} to no topic", "away"))
        return styled(parts, self.styles_by_state)

    def connection_text(self, now: float) -> Text:
        link = self.link
        if link.state == CONNECTED:
            head = [("● connected", "online")]
        elif link.state in (CONNECTING, RECONNECTING, RESYNCING):
            wait = "" if link.retry_at is None or link.retry_at <= now else \
                f" in {max(1, round(link.retry_at - now))} s"
            head = [(f"◌ {link.state}{wait}", "stale")]
        else:
            head = [("✕ offline", "breach")]
        if link.detail and link.state != CONNECTED:
            head.append((f": {link.detail}", ""))
        parts = [*head, (f" │ {self.feed.url}", "")]
        if self.session is not None:
            parts.append((f" │ as {self.session.user_id}", ""))
        if self.last_message_at is not None:
            age = format_age(max(0.0, now - self.last_message_at))
            parts.append((f" │ last message {age} ago", ""))
        if self.model.stale:
            since = format_clock(self.stale_since, self.tz)
            parts.append((f" │ ⧗ STALE since {since}", "stale"))
        return styled(parts, self.styles_by_state)

    def sort_label(self) -> str:
        column = BUILTIN.get(self.sort.column)
        label = column.label if column else self.sort.column
        return f"{label} {'▼' if self.sort.reverse else '▲'}"

    def view_text(self, shown: int) -> Text:
        total = len(self.model.agents)
        parts = [(f"sort: {self.sort_label()}", "")]
        flt = self.filter
        filters = []
        if flt.text.strip():
            filters.append(f"“{flt.text.strip()}”")
        if flt.online_only:
            filters.append("online only")
        if flt.on_call:
            filters.append("on a call")
        if flt.status:
            filters.append(f"status {flt.status}")
        if filters:
            parts.append((" │ filter: " + " · ".join(filters), "away"))
        noun = "agent" if total == 1 else "agents"
        count = f"{shown} of {total} {noun}" if flt.active else f"{total} {noun}"
        parts.append((f" │ {count}", ""))
        grid = self.query_one(AgentGrid)
        if grid.row_count < shown:
            parts.append((f" │ rows {grid.top + 1}-{grid.top + grid.row_count}", ""))
        hidden = len(self.columns()) - len(grid.shown_columns)
        if hidden > 0:
            parts.append((f" │ {hidden} column{'s' if hidden > 1 else ''} hidden", "idle"))
        return styled(parts, self.styles_by_state)

    def own_panel_text(self, now: float) -> Text:
        status, since = self.own_status()
        words, state = self._status_parts(status)
        lines = [styled([("My status: ", ""), (words, state)], self.styles_by_state)]
        if since is not None and status is not None:
            lines.append(Text(f"for {format_duration(max(0.0, now - since))}"))
        lines.append(Text(""))
        lines.append(Text("Your token subscribes to no team topic, so there is no grid to "
                          "show. Set your status:"))
        for i, name in enumerate(self.settings.statuses, 1):
            mark = "  ◀ current" if name == status else ""
            key = str(i) if i <= 9 else " "
            lines.append(Text(f"  {key}  {safe_text(name)}{mark}"))
        lines.append(Text(""))
        lines.append(Text("s opens the picker · digits set directly · q quits"))
        return Text("\n").join(lines)

    @on(SummaryBar.Resized)
    def summary_resized(self) -> None:
        self.reconcile()

    @on(AgentGrid.WindowMoved)
    def window_moved(self) -> None:
        self.show(self.query_one(ViewLine), self.view_text(self.query_one(AgentGrid).total))

    # -- own status ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pick_status", "set_status") and self.read_only:
            return False
        if action == "set_status":
            index = parameters[0] if parameters else 0
            return isinstance(index, int) and index < len(self.settings.statuses)
        return True

    def action_pick_status(self) -> None:
        current, _ = self.own_status()

        def chosen(status: str | None) -> None:
            if status is not None:
                self.change_status(status)

        self.push_screen(StatusPicker(self.settings.statuses, current), chosen)

    def action_set_status(self, index: int) -> None:
        if 0 <= index < len(self.settings.statuses):
            self.change_status(self.settings.statuses[index])

    def change_status(self, status: str) -> None:
        """Send the operator's new status through CHANGE_ATTRIBUTE; the header shows the answer."""
        if self.read_only:
            self.notify("read-only: your status cannot be changed here", severity="warning")
            return
        if not self.grants_status():
            self.notify(f"Your token publishes {self.settings.status_attribute} to no topic: "
                        "the hub keeps it, but nobody watching a topic will see it.",
                        title="No topic for your status", severity="warning", timeout=8)
        self.answer = HubAnswer(status, None, "sending", self.clock())
        self.run_worker(self._send_status(status), group="status", exclusive=True)
        self.reconcile()

    async def _send_status(self, status: str) -> None:
        try:
            await self.feed.change_attribute(self.settings.status_attribute, status)
        except ChangeRefused as exc:
            self.answer = HubAnswer(status, False, str(exc), self.clock())
            # the hub's words: shown as they read, never as markup or control codes
            self.notify(safe_text(f"{status}: {exc}"), title="Status refused",
                        severity="error", markup=False)
        else:
            now = self.clock()
            self.answer = HubAnswer(status, True, "ok", now)
            self._own_value, self._own_since = status, now
        self.reconcile()

    # -- sorting and filtering ------------------------------------------------------------

    def sortable_columns(self) -> list[str]:
        return [c.key for c in self.columns()]

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort.reverse if column == self.sort.column else False
        self.sort = Sort(column, reverse)
        self.reconcile()

    def action_sort_next(self) -> None:
        columns = self.sortable_columns()
        index = columns.index(self.sort.column) if self.sort.column in columns else -1
        self.set_sort(columns[(index + 1) % len(columns)], False)

    def action_sort_reverse(self) -> None:
        self.set_sort(self.sort.column, not self.sort.reverse)

    @on(AgentGrid.HeaderClicked)
    def header_clicked(self, event: AgentGrid.HeaderClicked) -> None:
        self.set_sort(event.column)

    def set_filter(self, **changes: Any) -> None:
        self.filter = replace(self.filter, **changes)
        self.reconcile()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def filter_typed(self, event: Input.Changed) -> None:
        self.set_filter(text=event.value)

    @on(Input.Submitted, "#filter")
    def filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("-shown")
        self.query_one(AgentGrid).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-shown")
        self.set_filter(text="")
        self.query_one(AgentGrid).focus()

    def action_toggle_online(self) -> None:
        self.set_filter(online_only=not self.filter.online_only)

    def action_toggle_on_call(self) -> None:
        self.set_filter(on_call=not self.filter.on_call)

    def action_cycle_status_filter(self) -> None:
        statuses = list(self.settings.statuses)
        statuses += sorted(s for s in self.summary(self.clock()).by_status
                           if s not in statuses)
        current = self.filter.status
        index = statuses.index(current) + 1 if current in statuses else 0
        self.set_filter(status=statuses[index] if index < len(statuses) else None)

    def action_clear_filters(self) -> None:
        self.action_clear_filter()
        self.set_filter(online_only=False, on_call=False, status=None)

    # -- panes and screens ---------------------------------------------------------------

    def action_toggle_log(self) -> None:
        log = self.query_one(EventLog)
        log.toggle_class("-shown")
        self._log_version = -1
        self.reconcile()

    def action_detail(self) -> None:
        user_id = self.query_one(AgentGrid).selected_user
        if user_id is not None:
            self.push_screen(AgentDetail(self.model, user_id, self.clock, self.tz))

    @on(AgentGrid.AgentChosen)
    def agent_chosen(self, event: AgentGrid.AgentChosen) -> None:
        self.push_screen(AgentDetail(self.model, event.user_id, self.clock, self.tz))

    def help_keys(self, screen: Screen[Any] | None = None) -> list[tuple[str, str]]:
        """(keys, description) of every enabled binding of ``screen``: the keys of one
        action joined with commas, the status digits left to one line of their own."""
        screen = screen or self.screen
        by_node: dict[int, list[Any]] = {}
        for active in screen.active_bindings.values():
            by_node.setdefault(id(active.node), []).append(active)
        keys: dict[str, list[str]] = {}
        descriptions: dict[str, str] = {}
        # The app's own keys first, then the screen's, then the focused widget's.
        for active in [a for group in reversed(list(by_node.values())) for a in group]:
            binding = active.binding
            if not active.enabled or not binding.description \
                    or binding.action.startswith("set_status("):
                continue
            keys.setdefault(binding.action, []).append(self.get_key_display(binding))
            descriptions.setdefault(binding.action, binding.description)
        return [(", ".join(keys[action]), descriptions[action]) for action in keys]

    def action_help(self) -> None:
        extra: dict[str, str] = {}
        if not self.read_only:
            count = min(9, len(self.settings.statuses))
            extra[f"1-{count}"] = "Set my status directly: " + ", ".join(
                f"{i}={s}" for i, s in enumerate(self.settings.statuses[:count], 1))
        extra["click header"] = "Sort by that column (again: reverse)"
        extra["ctrl+p"] = "Command palette: actions, filters, sorts, themes"
        self.push_screen(HelpScreen(self.help_keys(), extra))

    async def action_quit(self) -> None:
        await self.feed.close()
        self.exit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: keys", "Show every key of this screen", self.action_help)
        if not self.read_only:
            yield SystemCommand("My status: pick…", "Change your own status",
                                self.action_pick_status)
            for status in self.settings.statuses:
                yield SystemCommand(_palette(f"My status: set {status}"),
                                    _palette(f"Send {self.settings.status_attribute} = "
                                             f"{status}"),
                                    lambda s=status: self.change_status(s))
        for column in self.columns():
            yield SystemCommand(_palette(f"Sort by {column.label}"),
                                "Ascending; again to reverse",
                                lambda c=column.key: self.set_sort(c))
        yield SystemCommand("Filter: online only", "Toggle", self.action_toggle_online)
        yield SystemCommand("Filter: on a call", "Toggle", self.action_toggle_on_call)
        for status in self.settings.statuses:
            yield SystemCommand(_palette(f"Filter: status {status}"),
                                "Only agents in this status",
                                lambda s=status: self.set_filter(status=s))
        yield SystemCommand("Filter: clear all", "Show every agent", self.action_clear_filters)
        yield SystemCommand("Agent detail", "Timeline of the agent under the cursor",
                            self.action_detail)
        yield SystemCommand("Event log: show / hide", "Latest topic messages",
                            self.action_toggle_log)
        for name in sorted(self.available_themes):
            yield SystemCommand(_palette(f"Theme: {name}"), "Switch to this theme",
                                lambda n=name: self.use_theme(n))


def _palette(title: str) -> str:
    """A command palette title holding names from the hub or the settings: the palette
    reads titles as markup, so ``[link=...]`` in an attribute name must stay text."""
    return escape_markup(safe_text(title))
