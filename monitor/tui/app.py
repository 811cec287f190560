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
from textual.app import ComposeResult, ScreenStackError, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.markup import escape as escape_markup
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Footer, Input, Static

from monitor.tui.alerts import Alert, AlertBook, notification, pick_notifier
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
    group_name,
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
from monitor.tui.model import OTHERS, Agent, AgentTable, Applied, Filter, Row, Sort, Summary
from monitor.tui.screens import HelpScreen, StatusPicker
from monitor.tui.settings import Settings
from monitor.tui.supervise import SUPERVISOR_ACTIONS, SupervisorActions
from monitor.tui.text import safe_text
from monitor.tui.themes import LoadedThemes, load_themes, state_colours
from monitor.tui.today import HistoryViews
from monitor.tui.wallboard import Wallboard
from monitor.tui.widgets import (
    AgentGrid,
    AlertList,
    ConnectionLine,
    EventLog,
    OwnStatusBar,
    SummaryBar,
    ViewLine,
    alert_line,
    event_line,
    state_styles,
    styled,
    summary_text,
)

FALLBACK_THEME = "textual-dark"
FREEZE_AGENTS = 1000
"""From this many agents on, a snapshot's objects are frozen out of the cycle collector."""
GRID_ACTIONS = frozenset({
    "filter", "clear_filter", "sort_next", "sort_reverse", "toggle_online",
    "toggle_on_call", "cycle_status_filter", "cycle_group_filter", "clear_filters",
    "toggle_log", "toggle_groups", "fold_all", "wallboard", "toggle_alerts",
    "toggle_user_column", "detail", "today"})
"""What only the grid screen offers (an agent's own screen has no grid, nor a floor's
day)."""
ALERT_GAP_S = 10.0
"""At most one announcement (toast, bell, desktop notification) in this many seconds:
alerts firing meanwhile are told together in the next one."""
TEXTUAL_KEYS = frozenset({"focus_next", "focus_previous", "copy_text", "command_palette"})
"""Textual's own keys, left out of the help (the palette gets a line of its own)."""


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


class MonitorApp(HistoryViews, SupervisorActions):
    """Watch the agents on your topics; set your own status."""

    TITLE = "monitor"
    CSS = """
    #filter { height: 1; border: none; padding: 0 1; display: none; }
    #filter.-shown { display: block; }
    Screen.-compact SummaryBar, Screen.-compact ViewLine, Screen.-compact AgentGrid,
    Screen.-compact #filter, Screen.-compact EventLog,
    Screen.-compact AlertList { display: none; }
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
        Binding("t", "cycle_group_filter", "Filter by team", show=False),
        Binding("x", "clear_filters", "Clear all filters", show=False),
        Binding("g", "toggle_groups", "Group by team", show=False),
        Binding("z", "fold_all", "Fold or open every group", show=False),
        Binding("u", "toggle_user_column", "User id column", show=False),
        Binding("w", "wallboard", "Wallboard"),
        Binding("d", "today", "Today"),
        Binding("a", "toggle_alerts", "Alerts"),
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
            after_call_status=self.settings.after_call_status,
            group_attribute=self.settings.group_attribute,
            not_agents=self.settings.not_agents,
            status_labels=self.settings.status_labels,
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
        self._shown_agents = 0
        self.group_by = self.settings.group_by
        self.collapsed: set[str] = set()
        """Groups folded to their header line."""
        self.user_column = "user" in self.settings.columns
        self.alerts = AlertBook()
        self.started_at = clock()
        self._unannounced: list[Alert] = []
        self._latest: tuple[int, Alert | None] = (-1, None)
        self._announced_at: float | None = None
        self._alerts_version = -1
        self.notifier = pick_notifier(self.settings.desktop_notifications)
        self.terminal_driver: Driver | None = None
        """The driver writing to the terminal (for desktop notifications)."""

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
            yield AlertList(id="alerts")
            yield EventLog(id="log")
        # Every key of the grid fits in 80 columns when the palette's is left to the help
        # (`?`), which lists Ctrl+P; the palette has its own key on the other screens.
        yield Footer(compact=True, show_command_palette=False)

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
            self.model.set_operator(event.user_id, event.role)
            if self.is_running:  # not once the app shuts down: its screens are closing
                self.screen.set_class(not event.subscribe, "-compact")
                self.refresh_bindings()
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
        """Every column the grid would show given room: configured (the user id's when
        switched on), then custom ones."""
        hidden = set(self.settings.hidden_attributes)
        builtin = [c for c in self.settings.columns if c != "user"]
        if self.user_column:
            builtin.insert(1, "user")
        return [BUILTIN[c] for c in builtin] + [
            custom_column(a) for a in self.model.custom_attributes if a not in hidden]

    def visible_rows(self, now: float) -> list[Agent]:
        return self.model.rows(now, self.sort, self.filter)

    def grid_rows(self, now: float) -> list[Row]:
        """The rows the grid shows: the agents, under their groups' headers when grouped."""
        rows = self.visible_rows(now)
        self._shown_agents = len(rows)
        if not self.group_by:
            return list(rows)
        return self.model.grouped(rows, self.collapsed, hide_empty=self.filter.active)

    def tick(self) -> None:
        """A few times a second: look for alerts, reconcile, then bring one other
        column's sort order up to date (alerts and sorts off the path of a key).

        Nothing once the app shuts down: Textual closes the screens first and stops the
        app's timers after, so a tick may still come when there is no screen left."""
        if not self.is_running:
            return
        try:
            self.check_alerts(self.clock())
        except NoMatches:  # the screen torn down under the timer
            return
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
        except ScreenStackError:  # every screen closed: the app is shutting down
            return

    def _reconcile(self) -> None:
        now = self.clock()
        self.model.sample(now)
        if isinstance(self.screen, Wallboard):
            self.screen.refresh_board()
        try:
            grid = self.query_one(AgentGrid)
        except NoMatches:  # not composed yet, another screen up, or torn down
            return
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
                  summary_text(summary, self.model, self.settings.statuses, styles, width,
                               self.latest_alert()))
        rows = self.grid_rows(now)
        grid.set_class(self.model.stale, "-stale")
        with self.batch_update():
            grid.reconcile(self.model, rows, self.columns(), now, self.tz,
                           groups=summary.groups, filtered=self.filter.active)
        self.show(self.query_one(ViewLine), self.view_text(len(rows)))
        log = self.query_one(EventLog)
        if log.has_class("-shown") and self._log_version != self.model.version:
            self._log_version = self.model.version
            lines = [event_line(change, self.tz, styles, self.model)
                     for change in list(self.model.events)[-max(1, log.size.height or 7):]]
            self.show(log, Text("\n").join(lines) if lines else Text("no topic messages yet"))
        pane = self.query_one(AlertList)
        if pane.has_class("-shown"):
            listed = self.alerts.listed()[:max(1, pane.size.height or 7)]
            lines = [alert_line(alert, self.model, now, self.tz, styles) for alert in listed]
            self.show(pane, Text("\n").join(lines) if lines else Text(
                "no alerts: an agent over a threshold (thresholds in the settings) "
                "fires one here"))

    def show(self, widget: Static, text: Text) -> None:
        """Put ``text`` in one of the fixed-height lines or panes, if it changed: an
        update repaints the widget, and there is no need to lay the screen out again."""
        if self._shown.get(widget.id) != text:
            self._shown[widget.id] = text
            widget.update(text, layout=False)

    def check_alerts(self, now: float) -> None:
        """Fire the alerts of agents who just crossed a threshold (the list, a toast,
        the bell, a desktop notification) and clear those who left the state. On the
        clock's tick, whatever screen is up: the wallboard runs all day."""
        fired, _ = self.alerts.update(self.model.breaching(now), now)
        # Agents already over a threshold when the monitor started are listed, not
        # announced: nobody saw them cross it.
        self._unannounced += [alert for alert in fired if alert.fired >= self.started_at]
        if not self._unannounced or (self._announced_at is not None
                                     and now - self._announced_at < ALERT_GAP_S):
            return
        fired, self._unannounced, self._announced_at = self._unannounced, [], now
        first = fired[0]
        agent = self.model.agents.get(first.user_id)
        name = self.model.label(agent) if agent is not None else first.user_id
        what = first.what(self.model.status_labels)
        more = f" (and {len(fired) - 1} more)" if len(fired) > 1 else ""
        if self.settings.alert_bell:
            self.bell()
        if self.notifier is not None and self.terminal_driver is not None:
            self.terminal_driver.write(notification(self.notifier, "monitor alert",
                                                    f"{name}: {what}{more}"))

    def latest_alert(self) -> str | None:
        """The alert fired last among those still on, in words, for the summary line (no
        toast: one would cover the grid and cost a layout of the screen). Found again
        only when an alert fires or clears."""
        if self._latest[0] != self.alerts.version:
            active = self.alerts.active.values()
            latest = max(active, key=lambda a: a.fired) if active else None
            self._latest = (self.alerts.version, latest)
        alert = self._latest[1]
        if alert is None:
            return None
        agent = self.model.agents.get(alert.user_id)
        name = self.model.label(agent) if agent is not None else alert.user_id
        return (f"alert {format_clock(alert.fired, self.tz)} {name}: "
                f"{alert.what(self.model.status_labels)}")

    def get_driver_class(self) -> type[Driver]:
        """The platform's driver, made to tell the app it is the one writing to the
        terminal (the way out for a desktop notification's escape sequence)."""
        base = super().get_driver_class()
        app = self

        class NotifyingDriver(base):  # type: ignore[valid-type,misc]  # a class known at run time
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                app.terminal_driver = self

        return NotifyingDriver

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
            return f"{AVAILABLE_SYMBOL} {self.model.status_label(status)}", "available"
        return f"{AWAY_SYMBOL} {self.model.status_label(status)}", "away"

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
                parts.append((f" │ → {self.model.status_label(answer.status)}: sending…",
                              "ringing"))
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

    def view_text(self, lines: int) -> Text:
        """How the grid is sorted, filtered and grouped; how many agents it shows (and
        how many users on the topics are not counted); which rows are on screen."""
        summary = self.summary(self.clock())
        uncounted = summary.uncounted
        total = len(self.model.agents) - uncounted
        grid = self.query_one(AgentGrid)
        grouped = self.group_by and self.model.grouped_by
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
            filters.append(f"status {self.model.status_label(flt.status)}")
        if flt.group is not None:
            filters.append(f"{self.model.group_attribute} "
                           f"{group_name(flt.group, self.model.group_attribute)}")
        if filters:
            parts.append((" │ filter: " + " · ".join(filters), "away"))
        if grouped:
            parts.append((f" │ by {self.model.group_attribute}", ""))
        noun = "agent" if total == 1 else "agents"
        count = f"{self._shown_agents} of {total} {noun}" if flt.active else f"{total} {noun}"
        if uncounted:
            count += f" (+{uncounted} not counted)"
        parts.append((f" │ {count}", ""))
        if grid.row_count < lines:
            span = f"rows {grid.top + 1}-{grid.top + grid.row_count}"
            parts.append((f" │ {span} of {lines}" if grouped else f" │ {span}", ""))
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
            lines.append(Text(f"  {key}  {safe_text(self.model.status_label(name))}{mark}"))
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
        if action in SUPERVISOR_ACTIONS:  # a supervisor's keys (monitor/tui/supervise.py)
            return self.supervisor_check(action)
        if action in ("pick_status", "set_status") and self.read_only:
            return False
        if action in GRID_ACTIONS and (self.screen.has_class("-compact")
                                       or isinstance(self.screen, Wallboard)):
            return False  # an agent's own screen, or the wallboard: no grid here
        if action == "set_status":
            index = parameters[0] if parameters else 0
            return isinstance(index, int) and index < len(self.settings.statuses)
        return True

    def action_pick_status(self) -> None:
        current, _ = self.own_status()

        def chosen(status: str | None) -> None:
            if status is not None:
                self.change_status(status)

        self.push_screen(StatusPicker(self.settings.statuses, current,
                                      self.model.status_label), chosen)

    def action_set_status(self, index: int) -> None:
        if 0 <= index < len(self.settings.statuses):
            self.change_status(self.settings.statuses[index])

    def show_answer(self, what: str, ok: bool | None, text: str) -> None:
        """The hub's answer to a supervisor's action, in the status line."""
        self.answer = HubAnswer(what, ok, text, self.clock())
        self.reconcile()

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

    def action_cycle_group_filter(self) -> None:
        """Only the next group's agents (after the last: every group again)."""
        keys = [k for k in self.model.group_keys() if k != OTHERS]
        current = self.filter.group
        index = keys.index(current) + 1 if current in keys else 0
        self.set_filter(group=keys[index] if index < len(keys) else None)

    def action_clear_filters(self) -> None:
        self.action_clear_filter()
        self.set_filter(online_only=False, on_call=False, status=None, group=None)

    # -- groups ----------------------------------------------------------------------------

    def action_toggle_groups(self) -> None:
        self.group_by = not self.group_by
        self.reconcile()

    def toggle_group(self, key: str) -> None:
        """Fold a group to its header line, or open it again."""
        self.collapsed.symmetric_difference_update({key})
        self.reconcile()

    @on(AgentGrid.GroupToggled)
    def group_toggled(self, event: AgentGrid.GroupToggled) -> None:
        self.toggle_group(event.key)

    def action_fold_all(self) -> None:
        """Fold every group; when all are folded already, open them all."""
        keys = set(self.model.group_keys())
        self.collapsed = set() if keys <= self.collapsed else keys
        self.reconcile()

    def action_toggle_user_column(self) -> None:
        self.user_column = not self.user_column
        self.reconcile()

    # -- panes and screens ---------------------------------------------------------------

    def action_toggle_log(self) -> None:
        log = self.query_one(EventLog)
        log.toggle_class("-shown")
        self._log_version = -1
        self.reconcile()

    def action_toggle_alerts(self) -> None:
        self.query_one(AlertList).toggle_class("-shown")
        self._shown.pop("alerts", None)
        self.reconcile()

    def action_wallboard(self) -> None:
        if not isinstance(self.screen, Wallboard):
            self.push_screen(self.wallboard_screen(
                self.model, self.clock, self.tz, self.summary, lambda: self.styles_by_state,
                self.started_at))

    def action_detail(self) -> None:
        user_id = self.query_one(AgentGrid).selected_user
        if user_id is not None:
            self.push_screen(self.detail_screen(user_id))

    @on(AgentGrid.AgentChosen)
    def agent_chosen(self, event: AgentGrid.AgentChosen) -> None:
        self.push_screen(self.detail_screen(event.user_id))

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
                    or binding.action.startswith("set_status(") \
                    or binding.action.rpartition(".")[2] in TEXTUAL_KEYS:
                continue
            keys.setdefault(binding.action, []).append(self.get_key_display(binding))
            descriptions.setdefault(binding.action, binding.description)
        return [(", ".join(keys[action]), descriptions[action]) for action in keys]

    def action_help(self) -> None:
        extra: dict[str, str] = {}
        if not self.read_only:
            count = min(9, len(self.settings.statuses))
            extra[f"1-{count}"] = "Set my status directly: " + ", ".join(
                f"{i}={self.model.status_label(s)}"
                for i, s in enumerate(self.settings.statuses[:count], 1))
        if not self.screen.has_class("-compact"):
            extra["click header"] = "Sort by that column (again: reverse)"
            extra["click row"] = "Put the cursor there (again: its detail, or fold it)"
        extra["ctrl+p"] = "Command palette: every action, filter, sort and theme"
        self.push_screen(HelpScreen(self.help_keys(), extra))

    async def action_quit(self) -> None:
        await self.feed.close()
        self.exit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: keys", "Show every key of this screen", self.action_help)
        label = self.model.status_label
        if not self.read_only:
            yield SystemCommand("My status: pick…", "Change your own status",
                                self.action_pick_status)
            for status in self.settings.statuses:
                yield SystemCommand(_palette(f"My status: set {label(status)}"),
                                    _palette(f"Send {self.settings.status_attribute} = "
                                             f"{status}"),
                                    lambda s=status: self.change_status(s))
        if self.screen.has_class("-compact"):
            yield from self._theme_commands()
            return
        yield SystemCommand("Wallboard", "Big numbers for the floor and per "
                            f"{_palette(self.model.group_attribute)} (w; Esc goes back)",
                            self.action_wallboard)
        yield from self.history_commands()
        yield SystemCommand("Alerts: show / hide", "Agents over a threshold, as they "
                            "crossed it, and when it ended (a)", self.action_toggle_alerts)
        for column in self.columns():
            yield SystemCommand(_palette(f"Sort by {column.label}"),
                                "Ascending; again to reverse",
                                lambda c=column.key: self.set_sort(c))
        attribute = _palette(self.model.group_attribute)
        yield SystemCommand(f"Group by {attribute}: on / off",
                            f"A header line per {attribute} with its counts (g)",
                            self.action_toggle_groups)
        yield SystemCommand("Groups: fold all / open all",
                            "Every group to its header line, or all open again (z)",
                            self.action_fold_all)
        for key in self.model.group_keys():
            name = group_name(key, self.model.group_attribute)
            yield SystemCommand(_palette(f"Group: fold / open {name}"),
                                "Its header line only, or its agents again",
                                lambda k=key: self.toggle_group(k))
            if key != OTHERS:
                yield SystemCommand(_palette(f"Filter: {self.model.group_attribute} {name}"),
                                    f"Only the agents of this {attribute} (t: the next)",
                                    lambda k=key: self.set_filter(group=k))
        yield SystemCommand("Filter: online only", "Only agents online; again: everyone (n)",
                            self.action_toggle_online)
        yield SystemCommand("Filter: on a call", "Only agents on a call; again: everyone (c)",
                            self.action_toggle_on_call)
        for status in self.settings.statuses:
            yield SystemCommand(_palette(f"Filter: status {label(status)}"),
                                "Only agents in this status (b: the next)",
                                lambda s=status: self.set_filter(status=s))
        yield SystemCommand("Filter: clear all", "Show every agent (x)",
                            self.action_clear_filters)
        yield SystemCommand("Column: user id, show / hide",
                            "Each agent's user id in a column of its own (u)",
                            self.action_toggle_user_column)
        yield SystemCommand("Agent detail", "Timeline of the agent under the cursor (Enter)",
                            self.action_detail)
        yield SystemCommand("Event log: show / hide", "Latest topic messages (l)",
                            self.action_toggle_log)
        yield from self._theme_commands()

    def _theme_commands(self) -> Iterable[SystemCommand]:
        for name in sorted(self.available_themes):
            yield SystemCommand(_palette(f"Theme: {name}"), "Switch to this theme",
                                lambda n=name: self.use_theme(n))


def _palette(title: str) -> str:
    """A command palette title holding names from the hub or the settings: the palette
    reads titles as markup, so ``[link=...]`` in an attribute name must stay text."""
    return escape_markup(safe_text(title))
