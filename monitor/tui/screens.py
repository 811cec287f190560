"""Modal screens: the status picker, an agent's detail, the help generated from bindings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from monitor.tui.cells import format_clock, row_cells
from monitor.tui.model import AgentTable, Change, value_text
from monitor.tui.text import safe_text

MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 70; max-width: 100%; height: auto; max-height: 90%;
    border: round $primary; background: $surface; padding: 0 1;
}}
{name} .title {{ text-style: bold; }}
{name} .hint {{ color: $text-muted; }}
"""


class StatusPicker(ModalScreen[str | None]):
    """Pick your own status from the configured list; answers the status or ``None``."""

    DEFAULT_CSS = MODAL_CSS.format(name="StatusPicker") + """
    StatusPicker > Vertical { width: 44; }
    StatusPicker OptionList { height: auto; max-height: 14; border: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, statuses: Sequence[str], current: str | None,
                 label: Callable[[str], str] = str) -> None:
        super().__init__()
        self.statuses = list(statuses)
        self.current = current
        self.label = label
        """How a status reads (its configured label)."""

    def compose(self) -> ComposeResult:
        options = []
        for i, status in enumerate(self.statuses, 1):
            mark = " (current)" if status == self.current else ""
            digit = str(i) if i <= 9 else " "
            options.append(Option(Text(f"{digit}  {safe_text(self.label(status))}{mark}"),
                                  id=f"status-{i - 1}"))
        with Vertical():
            yield Static("Set my status", classes="title")
            yield OptionList(*options, markup=False)
            yield Static("Enter picks · digits pick directly · Esc cancels", classes="hint")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.current in self.statuses:
            option_list.highlighted = self.statuses.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.statuses[event.option_index])

    def on_key(self, event: events.Key) -> None:
        key = event.key
        if key.isdigit() and 1 <= int(key) <= min(9, len(self.statuses)):
            event.stop()
            self.dismiss(self.statuses[int(key) - 1])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def timeline_line(change: Change, tz: dt.tzinfo | None) -> Text:
    """One timeline entry: when, what changed, and from where (wire text made safe)."""
    old = value_text(change.old) or "–"
    new = value_text(change.new) or "–"
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(format_clock(change.time, tz) + "  ")
    text.append(f"{safe_text(change.attribute)}: ")
    text.append(old if change.topic else "", Style(dim=True))
    text.append(" → " if change.topic else "", Style(dim=True))
    text.append(new, Style(bold=True))
    call = change.call
    if call is not None and (call.caller or call.callee):
        text.append(f"  {safe_text(call.caller or '?')} → {safe_text(call.callee or '?')}")
        if call.call_id:
            text.append(f" [{safe_text(call.call_id)}]", Style(dim=True))
    text.append(f"  ({safe_text(change.topic or 'snapshot')})", Style(dim=True))
    return text


class AgentDetail(ModalScreen[None]):
    """One agent's current state and timeline of status and call changes since start."""

    DEFAULT_CSS = MODAL_CSS.format(name="AgentDetail") + """
    AgentDetail > Vertical { width: 90; }
    AgentDetail VerticalScroll { height: auto; max-height: 16; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, model: AgentTable, user_id: str, clock: Callable[[], float],
                 tz: dt.tzinfo | None) -> None:
        super().__init__()
        self.model = model
        self.user_id = user_id
        self.clock = clock
        self.tz = tz
        self._version = -1

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="detail-head", classes="title", markup=False)
            yield Static(id="detail-now", markup=False)
            with VerticalScroll():
                yield Static(id="detail-timeline", markup=False)
            yield Static("Esc closes", classes="hint")

    def on_mount(self) -> None:
        self.refresh_detail()
        self.set_interval(1.0, self.refresh_detail)

    def refresh_detail(self) -> None:
        agent = self.model.agents.get(self.user_id)
        if agent is None:
            return
        now = self.clock()
        head = agent.name if agent.name == agent.user_id else f"{agent.name} ({agent.user_id})"
        group = self.model.group_of(agent)
        if group:
            head += f" · {self.model.group_attribute} {group}"
        if not self.model.counts(agent):
            head += " · not counted (not an agent)"
        self.query_one("#detail-head", Static).update(Text(safe_text(head)))
        cells = row_cells(self.model, agent, ["online", "status", "status_time", "call",
                                              "call_time"], now, self.tz)
        self.query_one("#detail-now", Static).update(Text(safe_text(
            f"{cells['online'][0]} │ {cells['status'][0]} for {cells['status_time'][0]}"
            f" │ {cells['call'][0]}"
            + (f" for {cells['call_time'][0]}" if agent.on_call else ""))))
        if self._version != self.model.version:
            self._version = self.model.version
            entries = sorted(self.model.timeline(self.user_id), key=lambda c: c.time)
            lines = [timeline_line(change, self.tz) for change in entries] or \
                [Text("no changes yet")]
            self.query_one("#detail-timeline", Static).update(Text("\n").join(lines))

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The keys of the screen below, generated from its active bindings."""

    DEFAULT_CSS = MODAL_CSS.format(name="HelpScreen") + """
    HelpScreen > Vertical { width: 60; }
    HelpScreen VerticalScroll { height: auto; max-height: 30; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, keys: Sequence[tuple[str, str]], extra: Mapping[str, str]) -> None:
        super().__init__()
        self.keys = list(keys)
        self.extra = dict(extra)

    def compose(self) -> ComposeResult:
        width = max([len(k) for k, _ in self.keys] + [len(k) for k in self.extra] + [4])
        text = Text()
        for key, description in [*self.keys, *self.extra.items()]:
            text.append(key.ljust(width + 2), Style(bold=True))
            text.append(description + "\n")
        with Vertical():
            yield Static("Keys", classes="title")
            with VerticalScroll():
                text.rstrip()
                yield Static(text, markup=False)
            yield Static("Esc closes · Ctrl+P opens the command palette", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
