"""The agent's day from the hub: where the monitor gets history and reports, and the
agent detail that shows the day as a bar coloured by state, with the list of changes.

The monitor follows the hub over the WebSocket with a client token; the history and the
reports are REST routes, which take a REST token. With one (``rest_token_file`` in
monitor.toml, ``--rest-token-file`` or ``$MONITOR_REST_TOKEN``), the agent detail shows
the whole day as the hub logged it and the Today screen fills; without, they show what
this monitor saw and say how to have more.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from monitor.client import AsyncRestClient, HubError
from monitor.tui.cells import format_clock, format_duration
from monitor.tui.model import AgentTable, value_text
from monitor.tui.screens import AgentDetail
from monitor.tui.settings import Settings
from monitor.tui.text import safe_data, safe_text

REST_TOKEN_ENV = "MONITOR_REST_TOKEN"
DAY_S = 86_400
BAR_WIDTH = 72
NO_SOURCE = ("The day from the hub needs a REST token: rest_token_file in monitor.toml, "
             f"--rest-token-file or ${REST_TOKEN_ENV}.")


# -- where history comes from ---------------------------------------------------------------


class HistoryUnavailable(Exception):
    """The history cannot be had (no REST token, the hub refused or is away): ``str()``
    says why, in a line for the screen."""


def api_url_of(settings: Settings) -> str:
    """``api_url``, else the host of the WebSocket ``url`` on port 6900 (http for ws,
    https for wss)."""
    if settings.api_url:
        return settings.api_url.rstrip("/")
    parts = urlsplit(settings.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:6900"


class HistorySource:
    """The hub's history and reports, for the monitor: each call reads the REST token
    afresh (a token file may be renewed while the monitor runs)."""

    def __init__(self, api_url: str, token: Callable[[], str]) -> None:
        self.api_url = api_url
        self._token = token

    @classmethod
    def from_settings(cls, settings: Settings,
                      environ: Mapping[str, str] | None = None) -> HistorySource | None:
        """A source when the settings or the environment give a REST token, else None."""
        environ = os.environ if environ is None else environ
        path = settings.rest_token_file
        if path:
            return cls(api_url_of(settings), lambda: _read(Path(path).expanduser()))
        token = environ.get(REST_TOKEN_ENV, "").strip()
        if token:
            return cls(api_url_of(settings), lambda: token)
        return None

    async def _ask(self, ask: Callable[[AsyncRestClient], Any]) -> Any:
        try:
            async with AsyncRestClient(self.api_url, self._token(), timeout=20) as client:
                return safe_data(await ask(client))
        except HubError as exc:
            raise HistoryUnavailable(safe_text(f"the hub answered: {exc}")) from None

    async def day(self, user_id: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """The user's changes in ``[start_ms, end_ms)``, oldest first (text made safe)."""
        events: list[dict[str, Any]] = await self._ask(
            lambda c: c.user_history(user_id, start_ms, end_ms))
        return events

    async def agents(self, start_ms: int, end_ms: int, group_attribute: str | None
                     ) -> dict[str, Any]:
        report: dict[str, Any] = await self._ask(
            lambda c: c.agents_report(start_ms, end_ms, group_attribute=group_attribute))
        return report

    async def calls(self, start_ms: int, end_ms: int, sla_seconds: int = 20
                    ) -> dict[str, Any]:
        report: dict[str, Any] = await self._ask(
            lambda c: c.calls_report(start_ms, end_ms, interval="1d",
                                     sla_seconds=sla_seconds))
        return report


def _read(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HistoryUnavailable(f"{path}: cannot read the REST token: {exc.strerror}") \
            from None
    if not token:
        raise HistoryUnavailable(f"{path}: the REST token file is empty")
    return token


def day_start(now: float, tz: dt.tzinfo | None) -> float:
    """Epoch seconds of the local midnight that began the day of ``now``."""
    moment = dt.datetime.fromtimestamp(now, tz).astimezone(tz)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


# -- the day as states ------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """``[start, end)`` in epoch seconds, and the state the agent was in then."""

    start: float
    end: float
    state: str


def agent_state(online: bool, status: Any, call: Any, available_status: str) -> str:
    """The theme state an agent is in: talking and ringing first, then offline, then
    available or away by the status."""
    if call == "Answered":
        return "talking"
    if call in ("Calling", "Ringing"):
        return "ringing"
    if not online:
        return "offline"
    return "available" if status == available_status else "away"


def day_segments(events: Sequence[Mapping[str, Any]], start: float, end: float,
                 now_values: Mapping[str, Any], status_attribute: str,
                 available_status: str) -> list[Segment]:
    """The agent's states over ``[start, end)`` (epoch s) from the day's logged
    changes. The state at ``start`` is each attribute's first ``oldValue`` of the day,
    or its value now when it did not change (``now_values``: onlineStatus, the status
    attribute and call)."""
    watched = ("onlineStatus", status_attribute, "call")
    values = dict(now_values)
    seen: set[str] = set()
    for event in events:
        name = event.get("attribute")
        if name in watched and name not in seen:
            seen.add(name)
            values[name] = event.get("oldValue")

    def state() -> str:
        return agent_state(values.get("onlineStatus") == "online",
                           values.get(status_attribute), values.get("call"),
                           available_status)

    segments: list[Segment] = []
    at, current = start, state()
    for event in events:
        name = event.get("attribute")
        if name not in watched:
            continue
        t = min(max(event.get("timestamp", 0) / 1000, at), end)
        values[name] = event.get("value")
        new = state()
        if new != current:
            if t > at:
                segments.append(Segment(at, t, current))
            at, current = t, new
    if end > at:
        segments.append(Segment(at, end, current))
    return segments


def bar_states(segments: Sequence[Segment], start: float, end: float, width: int
               ) -> list[str]:
    """The state of each of ``width`` cells over ``[start, end)``: the one held longest
    in it ("" for a cell after the last segment)."""
    cells: list[str] = []
    span = (end - start) / width if width else 0
    i = 0
    for k in range(width):
        low, high = start + k * span, start + (k + 1) * span
        held: dict[str, float] = {}
        while i < len(segments) and segments[i].end <= low:
            i += 1
        j = i
        while j < len(segments) and segments[j].start < high:
            s = segments[j]
            held[s.state] = held.get(s.state, 0.0) + min(s.end, high) - max(s.start, low)
            j += 1
        cells.append(max(held, key=lambda state: held[state]) if held else "")
    return cells


def day_bar(segments: Sequence[Segment], start: float, end: float, width: int,
            styles: Mapping[str, Style]) -> Text:
    """The day as a bar of ``width`` cells, each in its state's colour."""
    text = Text(no_wrap=True)
    for state in bar_states(segments, start, end, width):
        text.append("█" if state else "·", styles.get(state or "offline", Style()))
    return text


def hour_scale(start: float, end: float, width: int, tz: dt.tzinfo | None) -> Text:
    """Hour marks under a day bar of ``width`` cells over ``[start, end)``."""
    line = [" "] * width
    hours = max(1.0, (end - start) / 3600)
    step = 1 if hours <= 12 else 2 if hours <= 24 else 6
    mark = dt.datetime.fromtimestamp(start, tz).replace(minute=0, second=0, microsecond=0)
    while mark.timestamp() < end:
        t = mark.timestamp()
        if t >= start and mark.hour % step == 0:
            at = int((t - start) / (end - start) * width)
            label = f"{mark.hour:02d}"
            if at + len(label) <= width and all(c == " " for c in line[at:at + 3]):
                line[at:at + len(label)] = label
        mark += dt.timedelta(hours=1)
    return Text("".join(line), style=Style(dim=True), no_wrap=True)


def legend(styles: Mapping[str, Style]) -> Text:
    text = Text(no_wrap=True)
    for state, words in (("available", "available"), ("away", "other status"),
                         ("ringing", "ringing"), ("talking", "talking"),
                         ("offline", "offline")):
        text.append("█ ", styles.get(state, Style()))
        text.append(words + "  ")
    return text


def change_line(event: Mapping[str, Any], tz: dt.tzinfo | None) -> Text:
    """One logged change: when, what, from, to (text already made safe)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(format_clock(event.get("timestamp", 0) / 1000, tz) + "  ")
    text.append(f"{event.get('attribute')}: ")
    text.append(f"{value_text(event.get('oldValue')) or '–'} → ", Style(dim=True))
    text.append(value_text(event.get("value")) or "–", Style(bold=True))
    if event.get("callId"):
        text.append(f"  [{event['callId']}]", Style(dim=True))
    return text


# -- the agent detail, with the day ----------------------------------------------------------


class AgentDayDetail(AgentDetail):
    """:class:`AgentDetail`, with the agent's day from the hub: a bar from midnight to now
    coloured by state, the time online and on calls, and every change the hub logged.
    Read again every minute while open."""

    DEFAULT_CSS = """
    AgentDayDetail > Vertical { width: 100; }
    AgentDayDetail #day-list { height: auto; max-height: 14; }
    """

    def __init__(self, model: AgentTable, user_id: str, clock: Callable[[], float],
                 tz: dt.tzinfo | None, source: HistorySource | None,
                 styles: Callable[[], Mapping[str, Style]], available_status: str) -> None:
        super().__init__(model, user_id, clock, tz)
        self.source = source
        self.state_styles = styles
        self.available_status = available_status
        self.events: list[dict[str, Any]] | None = None
        self.problem = "" if source is not None else NO_SOURCE
        self._day: tuple[float, float] = (0.0, 0.0)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="detail-head", classes="title", markup=False)
            yield Static(id="detail-now", markup=False)
            yield Static("The day (from the hub)", classes="hint")
            yield Static(id="day-bar", markup=False)
            yield Static(id="day-scale", markup=False)
            yield Static(id="day-legend", markup=False)
            yield Static(id="day-figures", markup=False)
            with VerticalScroll(id="day-list"):
                yield Static(id="day-changes", markup=False)
            yield Static("Seen by this monitor", classes="hint")
            with VerticalScroll():
                yield Static(id="detail-timeline", markup=False)
            yield Static("Esc closes", classes="hint")

    def on_mount(self) -> None:
        super().on_mount()
        self.load_day()
        self.set_interval(60.0, self.load_day)

    def load_day(self) -> None:
        if self.source is not None:
            self.run_worker(self._load(), exclusive=True, group="day")
        self.draw_day()

    async def _load(self) -> None:
        assert self.source is not None
        now = self.clock()
        start = day_start(now, self.tz)
        try:
            self.events = await self.source.day(self.user_id, int(start * 1000),
                                                int(now * 1000) + 1)
            self.problem = ""
        except (HistoryUnavailable, OSError) as exc:
            self.problem = str(exc) or "the hub cannot be reached"
        self._day = (start, now)
        self.draw_day()

    def now_values(self) -> dict[str, Any]:
        agent = self.model.agents.get(self.user_id)
        if agent is None:
            return {}
        return {name: agent.values[name] for name in
                ("onlineStatus", self.model.status_attribute, "call")
                if name in agent.values}

    def draw_day(self) -> None:
        if not self.is_attached:
            return
        styles = self.state_styles()
        changes = self.query_one("#day-changes", Static)
        if self.events is None:
            changes.update(Text(self.problem or "reading the day from the hub…"))
            return
        start, now = self._day
        end = day_start(now, self.tz) + DAY_S if now else now
        segments = day_segments(self.events, start, now, self.now_values(),
                                self.model.status_attribute, self.available_status)
        width = max(24, min(BAR_WIDTH, self.query_one("#day-bar", Static).size.width or
                            BAR_WIDTH))
        self.query_one("#day-bar", Static).update(day_bar(segments, start, end, width,
                                                          styles))
        self.query_one("#day-scale", Static).update(hour_scale(start, end, width, self.tz))
        self.query_one("#day-legend", Static).update(legend(styles))
        spent: dict[str, float] = {}
        for s in segments:
            spent[s.state] = spent.get(s.state, 0.0) + s.end - s.start
        online = sum(v for k, v in spent.items() if k != "offline")
        self.query_one("#day-figures", Static).update(Text(
            f"online {format_duration(online)} · talking "
            f"{format_duration(spent.get('talking', 0.0))} · ringing "
            f"{format_duration(spent.get('ringing', 0.0))} · "
            f"{len(self.events)} changes" + (f" · {self.problem}" if self.problem else ""),
            no_wrap=True, overflow="ellipsis"))
        lines = [change_line(e, self.tz) for e in self.events] or [Text("no change today")]
        changes.update(Text("\n").join(lines))
