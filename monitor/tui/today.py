"""The Today screen: how the day went, per agent and per team, from the hub's reports;
today's service level on the wallboard; and what the app adds to reach them.

Per agent: a bar of the day's online time split by status (its length the agent's online
time against the longest), online time, calls handled, AHT (talk time per call handled),
occupancy (talk / online). Per team: the same added up. Sortable; read again every
minute from ``GET /v1/reports/agents`` and ``/v1/reports/calls`` (see
:mod:`monitor.tui.history` for the REST token it needs). Like the grid, it leaves out
the users who are not agents (``not_agents``: a supervisor), and says how many.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from monitor.tui.cells import format_clock, format_duration
from monitor.tui.history import (
    NO_SOURCE,
    AgentDayDetail,
    HistorySource,
    HistoryUnavailable,
    day_start,
)
from monitor.tui.model import Agent, AgentTable
from monitor.tui.screens import AgentDetail
from monitor.tui.settings import Settings
from monitor.tui.wallboard import Wallboard

REFRESH_S = 60.0
BAR_CELLS = 30
GLYPHS = ("█", "▓", "▒", "░")
SORTS = ("name", "online", "handled", "aht", "occupancy")
SORT_WORDS = {"name": "name", "online": "online time", "handled": "calls handled",
              "aht": "AHT", "occupancy": "occupancy"}


# -- the figures --------------------------------------------------------------------------


@dataclass
class Row:
    """One agent's day, or a team's (``agents`` > 0)."""

    key: str
    name: str
    group: str = ""
    online_ms: int = 0
    status_ms: dict[str, int] = field(default_factory=dict)
    handled: int = 0
    missed: int = 0
    talk_ms: int = 0
    agents: int = 0

    @property
    def aht_ms(self) -> int:
        return round(self.talk_ms / self.handled) if self.handled else 0

    @property
    def occupancy(self) -> float:
        return self.talk_ms / self.online_ms if self.online_ms else 0.0

    def sort_key(self, by: str) -> Any:
        if by == "name":
            return self.name.casefold()
        if by == "aht":
            return self.aht_ms
        return {"online": self.online_ms, "handled": self.handled,
                "occupancy": self.occupancy}[by]


def rows_of(report: Mapping[str, Any]) -> list[Row]:
    """The agents report's entries as rows."""
    rows = []
    for entry in report.get("agents", []):
        calls = entry.get("calls", {})
        group = entry.get("group")
        rows.append(Row(str(entry["userId"]), str(entry.get("displayName") or entry["userId"]),
                        "" if group is None else str(group), int(entry.get("onlineMs", 0)),
                        {str(k): int(v) for k, v in entry.get("statusMs", {}).items()},
                        int(calls.get("handled", 0)), int(calls.get("missed", 0)),
                        int(calls.get("talkMs", 0))))
    return rows


def is_agent(model: AgentTable, user_id: str) -> bool:
    """Whether the grid counts ``user_id`` as an agent: not when its user id or role (a
    ``role`` attribute on the topics, or the operator's token's role claim) is in
    ``not_agents``. A user the topics do not carry is judged by its user id alone, or as
    the operator."""
    agent = model.agents.get(user_id)
    return model.counts(agent if agent is not None else Agent(user_id))


def team_total(name: str, rows: Sequence[Row]) -> Row:
    """A team's row: its agents' figures added up."""
    total = Row(f"team:{name}", name, name, agents=len(rows))
    for row in rows:
        total.online_ms += row.online_ms
        total.handled += row.handled
        total.missed += row.missed
        total.talk_ms += row.talk_ms
        for status, ms in row.status_ms.items():
            total.status_ms[status] = total.status_ms.get(status, 0) + ms
    return total


def sorted_rows(rows: Iterable[Row], by: str, reverse: bool) -> list[Row]:
    """By ``by`` (largest first for figures, A-Z for names; ``reverse`` turns it)."""
    descending = (by != "name") != reverse
    return sorted(rows, key=lambda r: (r.sort_key(by), r.name.casefold()),
                  reverse=descending)


def status_order(rows: Iterable[Row], configured: Sequence[str]) -> list[str]:
    """Statuses in the configured order, then any other seen, by name."""
    seen = {s for row in rows for s in row.status_ms}
    return [s for s in configured if s in seen] + sorted(seen - set(configured))


def status_glyphs(order: Sequence[str], available: str) -> dict[str, tuple[str, str]]:
    """Each status's (glyph, theme state): the available status solid green, the others
    in the away colour, told apart by their shading."""
    out: dict[str, tuple[str, str]] = {}
    others = 0
    for status in order:
        if status == available:
            out[status] = ("█", "available")
        else:
            out[status] = (GLYPHS[(others + 1) % len(GLYPHS)], "away")
            others += 1
    return out


def stacked_bar(row: Row, order: Sequence[str], glyphs: Mapping[str, tuple[str, str]],
                scale_ms: int, width: int, styles: Mapping[str, Style]) -> Text:
    """``row``'s online time as ``width`` cells at most (``scale_ms`` fills them all),
    split by status in ``order``: each status its glyph and colour."""
    text = Text(no_wrap=True)
    if scale_ms <= 0 or row.online_ms <= 0:
        return text.append(" " * width)
    length = max(1, round(width * row.online_ms / scale_ms))
    done = 0.0
    used = 0
    for status in order:
        done += row.status_ms.get(status, 0)
        upto = round(length * done / row.online_ms)
        if upto > used:
            glyph, state = glyphs[status]
            text.append(glyph * (upto - used), styles.get(state, Style()))
            used = upto
    return text.append(" " * (width - used))


def calls_line(report: Mapping[str, Any] | None) -> str:
    """Today's calls in one line: offered, answered, abandoned, service level, ASA, AHT."""
    if not report or not report.get("intervals"):
        return "calls today: -"
    i = report["intervals"][0]
    offered = i["offered"]
    level = f"{i['answeredWithinSla'] / offered:.0%}" if offered else "-"
    return (f"calls today: {offered} offered · {i['answered']} answered · "
            f"{i['abandoned']} abandoned · service level {level} "
            f"({report.get('slaSeconds', 20)} s) · ASA "
            f"{format_duration(i['avgSpeedOfAnswerMs'] / 1000)} · AHT "
            f"{format_duration(i['avgHandleMs'] / 1000)}")


def today_text(rows: Sequence[Row], by: str, reverse: bool, grouped: bool,
               group_attribute: str, configured: Sequence[str], available: str,
               styles: Mapping[str, Style], width: int) -> Text:
    """The screen's table: a line per agent under a line per team (when ``grouped``)."""
    order = status_order(rows, configured)
    glyphs = status_glyphs(order, available)
    name_width = max([len(r.name) for r in rows] + [12])
    name_width = min(name_width, max(12, width - BAR_CELLS - 40))
    scale = max([r.online_ms for r in rows] + [1])
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(f"{'':{name_width}}  {'online split by status':{BAR_CELLS}}  "
               f"{'online':>8} {'handled':>7} {'missed':>6} {'AHT':>7} {'occ.':>5}\n",
               Style(dim=True))

    def line(row: Row, bar_scale: int, indent: str, bold: bool) -> None:
        name = (indent + row.name)[:name_width]
        out.append(f"{name:{name_width}}  ", Style(bold=bold))
        out.append_text(stacked_bar(row, order, glyphs, bar_scale, BAR_CELLS, styles))
        out.append(f"  {format_duration(row.online_ms / 1000):>8} {row.handled:>7} "
                   f"{row.missed:>6} {format_duration(row.aht_ms / 1000):>7} "
                   f"{row.occupancy:>5.0%}\n", Style(bold=bold))

    if grouped:
        teams: dict[str, list[Row]] = {}
        for row in rows:
            teams.setdefault(row.group, []).append(row)
        totals = {team_total(name or f"no {group_attribute}", members).key: name
                  for name, members in teams.items()}
        made = [team_total(name or f"no {group_attribute}", teams[name])
                for name in totals.values()]
        team_scale = max([t.online_ms for t in made] + [1])
        for total in sorted_rows(made, by, reverse):
            members = teams[totals[total.key]]
            total.name = f"{total.name} ({total.agents})"
            line(total, team_scale, "", True)
            for row in sorted_rows(members, by, reverse):
                line(row, scale, "  ", False)
    else:
        for row in sorted_rows(rows, by, reverse):
            line(row, scale, "", False)
    if not rows:
        out.append("nobody online today yet\n")
    out.append("\n")
    for status in order:
        glyph, state = glyphs[status]
        out.append(glyph, styles.get(state, Style()))
        out.append(f" {status or '(no status)'}  ")
    out.rstrip()
    return out


# -- the screen ---------------------------------------------------------------------------


class TodayScreen(Screen[None]):
    """How the day went, per agent and per team; Esc goes back to the grid."""

    DEFAULT_CSS = """
    TodayScreen { layout: vertical; }
    TodayScreen #today-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    TodayScreen #today-calls { height: 1; padding: 0 1; }
    TodayScreen VerticalScroll { height: 1fr; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,d", "close", "Back to the grid"),
        Binding("o", "sort_next", "Sort"),
        Binding("r", "sort_reverse", "Reverse"),
        Binding("g", "toggle_groups", "By team"),
        Binding("f5", "reload", "Read again"),
    ]

    def __init__(self, source: HistorySource | None, settings: Settings,
                 clock: Callable[[], float], tz: dt.tzinfo | None,
                 styles: Callable[[], Mapping[str, Style]], grouped: bool,
                 counts: Callable[[str], bool] = lambda user_id: True) -> None:
        super().__init__()
        self.source = source
        self.counts = counts
        """Whether a user id is an agent's (the others are left out, as on the grid)."""
        self.settings = settings
        self.clock = clock
        self.tz = tz
        self.state_styles = styles
        self.grouped = grouped
        self.by = "online"
        self.reverse = False
        self.rows: list[Row] | None = None
        self.calls: dict[str, Any] | None = None
        self.read_at: float | None = None
        self.problem = "" if source is not None else NO_SOURCE

    def compose(self) -> ComposeResult:
        yield Static(id="today-title", markup=False)
        yield Static(id="today-calls", markup=False)
        with VerticalScroll():
            yield Static(id="today-table", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_reload()
        self.set_interval(REFRESH_S, self.action_reload)

    def action_reload(self) -> None:
        if self.source is not None:
            self.run_worker(self._load(), exclusive=True, group="today")
        self.draw()

    async def _load(self) -> None:
        assert self.source is not None
        now = self.clock()
        start = int(day_start(now, self.tz) * 1000)
        end = int(now * 1000) + 1
        try:
            report = await self.source.agents(start, end, self.settings.group_attribute)
            self.calls = await self.source.calls(start, end)
            self.rows = rows_of(report)
            self.read_at = now
            self.problem = ""
        except (HistoryUnavailable, OSError) as exc:
            self.problem = str(exc) or "the hub cannot be reached"
        self.draw()

    def draw(self) -> None:
        if not self.is_attached:
            return
        since = format_clock(day_start(self.clock(), self.tz), self.tz)[:5]
        read = f" · read {format_clock(self.read_at, self.tz)}" if self.read_at else ""
        rows: list[Row] | None = None
        count = ""
        if self.rows is not None:  # as on the grid: users who are not agents left out
            rows = [row for row in self.rows if self.counts(row.key)]
            count = f" · {len(rows)} agent{'' if len(rows) == 1 else 's'}"
            if len(rows) < len(self.rows):
                count += f" (+{len(self.rows) - len(rows)} not counted)"
        self.query_one("#today-title", Static).update(Text(
            f"Today since {since}{count}{read} · sorted by {SORT_WORDS[self.by]}"
            f"{' (reversed)' if self.reverse else ''} · o sort · g teams · Esc back",
            no_wrap=True, overflow="ellipsis"))
        self.query_one("#today-calls", Static).update(Text(
            self.problem or calls_line(self.calls), no_wrap=True, overflow="ellipsis"))
        table = self.query_one("#today-table", Static)
        if rows is None:
            table.update(Text("" if self.problem else "reading the day from the hub…"))
            return
        table.update(today_text(rows, self.by, self.reverse, self.grouped,
                                self.settings.group_attribute, self.settings.statuses,
                                self.settings.available_status, self.state_styles(),
                                max(60, self.size.width)))

    def action_sort_next(self) -> None:
        self.by = SORTS[(SORTS.index(self.by) + 1) % len(SORTS)]
        self.draw()

    def action_sort_reverse(self) -> None:
        self.reverse = not self.reverse
        self.draw()

    def action_toggle_groups(self) -> None:
        self.grouped = not self.grouped
        self.draw()

    def action_close(self) -> None:
        self.dismiss(None)


class TodayWallboard(Wallboard):
    """The wallboard, with today's service level, abandoned calls and average speed of
    answer from the hub's calls report (read every minute) under its tiles."""

    DEFAULT_CSS = """
    TodayWallboard #wallboard-today { height: 1; padding: 0 1; text-style: bold; }
    """
    source: HistorySource | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="wallboard-today", markup=False)
        yield from super().compose()

    def on_mount(self) -> None:
        super().on_mount()
        self.read_today()
        self.set_interval(REFRESH_S, self.read_today)

    def read_today(self) -> None:
        if self.source is None:
            self.query_one("#wallboard-today", Static).update(
                Text("today from the hub: needs a REST token (see the Today screen)"))
            return
        self.run_worker(self._load(), exclusive=True, group="today")

    async def _load(self) -> None:
        assert self.source is not None
        now = self.clock()
        start = int(day_start(now, self.tz) * 1000)
        try:
            report: dict[str, Any] | None = await self.source.calls(start, int(now * 1000) + 1)
            line = calls_line(report)
        except (HistoryUnavailable, OSError) as exc:
            line = f"today from the hub: {exc}"
        if self.is_attached:
            self.query_one("#wallboard-today", Static).update(
                Text(line.replace("calls today", "Today"), no_wrap=True,
                     overflow="ellipsis"))


# -- what the app adds ------------------------------------------------------------------------


class HistoryViews(App[None]):
    """The day from the hub in the monitor: the Today screen (``d``, and in the command
    palette), the day in the agent detail, today's service level on the wallboard. The
    app provides the attributes below."""

    # The app binds `d` to action_today, among its own keys (the footer's order).

    model: AgentTable
    settings: Settings
    clock: Callable[[], float]
    tz: dt.tzinfo | None
    styles_by_state: dict[str, Style]
    group_by: bool
    _history_source: HistorySource | None = None
    _history_chosen = False

    @property
    def history_source(self) -> HistorySource | None:
        """Where the day comes from (None: no REST token configured)."""
        if not self._history_chosen:
            self.use_history(HistorySource.from_settings(self.settings))
        return self._history_source

    def use_history(self, source: HistorySource | None) -> None:
        """Read the day from ``source`` (the demo gives its hub's), or nowhere."""
        self._history_source = source
        self._history_chosen = True

    def _styles(self) -> Mapping[str, Style]:
        return self.styles_by_state

    def action_today(self) -> None:
        if not isinstance(self.screen, TodayScreen):
            self.push_screen(TodayScreen(self.history_source, self.settings, self.clock,
                                         self.tz, self._styles, self.group_by,
                                         lambda user_id: is_agent(self.model, user_id)))

    def detail_screen(self, user_id: str) -> AgentDetail:
        """The agent detail, with the day from the hub when there is a REST token (else
        as it was: what this monitor saw)."""
        if self.history_source is None:
            return AgentDetail(self.model, user_id, self.clock, self.tz)
        return AgentDayDetail(self.model, user_id, self.clock, self.tz,
                              self.history_source, self._styles,
                              self.settings.available_status)

    def wallboard_screen(self, *args: Any) -> Wallboard:
        """The wallboard, with today's figures from the hub when there is a REST token."""
        if self.history_source is None:
            return Wallboard(*args)
        board = TodayWallboard(*args)
        board.source = self.history_source
        return board

    def history_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Today", "How the day went, per agent and per team, from the "
                            "hub (d)", self.action_today)
