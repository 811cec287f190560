"""What each cell of the agent grid says, and in which state colour. Pure.

A cell is ``(text, state)``: the words and symbol shown, and the name of the state whose
theme colour paints it (or ``""``). Meaning never rests on colour alone: every state has
a symbol or a word too. Text from the wire stays plain text, never markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from monitor.protocol import CALL, OFFLINE, ONLINE
from monitor.tui.model import CALL_WORDS, Agent, AgentTable, Breach, value_text

Cell = tuple[str, str]
BREACH_MARK = "⚠"
ONLINE_SYMBOLS = {ONLINE: "●", OFFLINE: "○"}
CALL_SYMBOLS = {"Calling": "↗", "Ringing": "☎", "Answered": "▶"}
AVAILABLE_SYMBOL = "✔"
AWAY_SYMBOL = "◐"
NONE = "–"


@dataclass(frozen=True)
class Column:
    """A grid column: ``priority`` decides which columns go first when space is short."""

    key: str
    label: str
    width: int
    priority: int


BUILTIN = {
    "name": Column("name", "Agent", 14, 100),
    "online": Column("online", "Online", 9, 80),
    "status": Column("status", "Status", 13, 90),
    "status_time": Column("status_time", "For", 7, 85),
    "call": Column("call", "Call", 15, 70),
    "call_time": Column("call_time", "In call", 7, 60),
    "last_change": Column("last_change", "Changed", 8, 20),
}
CUSTOM_WIDTH = 12
CUSTOM_PRIORITY = 10
GROW = {"call": 22, "name": 28}
"""Columns that take spare width, in this order, up to these widths: the call column
first, so the other party shows in full."""
CELL_PADDING = 2


def custom_column(attribute: str) -> Column:
    return Column(attribute, attribute, CUSTOM_WIDTH, CUSTOM_PRIORITY)


def fit_columns(columns: Sequence[Column], width: int) -> list[Column]:
    """The columns that fit in ``width`` cells, dropping the lowest priority first (the
    rightmost first among equals); spare width widens the ``GROW`` columns."""
    shown = list(columns)

    def need(cols: Sequence[Column]) -> int:
        return sum(c.width + CELL_PADDING for c in cols)

    while len(shown) > 1 and need(shown) > width:
        victim = min(reversed(shown), key=lambda c: c.priority)
        shown.remove(victim)
    spare = max(0, width - need(shown))
    for key, limit in GROW.items():
        for index, column in enumerate(shown):
            if column.key == key and limit > column.width and spare:
                extra = min(spare, limit - column.width)
                shown[index] = replace(column, width=column.width + extra)
                spare -= extra
    return shown


def format_duration(seconds: float | None) -> str:
    """``m:ss`` under an hour, ``h:mm:ss`` under a day, ``Nd hh h`` beyond."""
    if seconds is None:
        return NONE
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_age(seconds: float) -> str:
    """A short age: ``4 s``, ``12 min``, ``3 h``."""
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"


def format_clock(epoch: float | None, tz: dt.tzinfo | None) -> str:
    """``HH:MM:SS`` in ``tz`` (local time when ``None``)."""
    if epoch is None:
        return NONE
    return dt.datetime.fromtimestamp(epoch, tz).strftime("%H:%M:%S")


def online_cell(agent: Agent) -> Cell:
    state = agent.online
    return f"{ONLINE_SYMBOLS.get(state, '?')} {state}", state


def status_cell(table: AgentTable, agent: Agent) -> Cell:
    status = table.status_of(agent)
    if status is None:
        return NONE, "idle"
    if status == table.available_status:
        return f"{AVAILABLE_SYMBOL} {status}", "available"
    return f"{AWAY_SYMBOL} {status}", "away"


def call_cell(agent: Agent) -> Cell:
    state = agent.call_state
    if not agent.on_call:
        return "· idle", "idle"
    info = agent.call_info
    party = agent.other_party
    arrow = ""
    if info is not None and party:
        arrow = "→ " if info.caller == agent.user_id else "← "
    text = f"{CALL_SYMBOLS.get(state, '?')} {CALL_WORDS.get(state, state)}"
    if party:
        text += f" {arrow}{party}"
    return text, "talking" if state == "Answered" else "ringing"


def _timed(seconds: float | None, breach: Breach | None, state: str) -> Cell:
    if breach is not None:
        return f"{BREACH_MARK} {format_duration(seconds)}", "breach"
    return format_duration(seconds), state


def row_cells(table: AgentTable, agent: Agent, columns: Sequence[str], now: float,
              tz: dt.tzinfo | None) -> dict[str, Cell]:
    """Every requested cell of ``agent``'s row."""
    breaches = {b.kind: b for b in table.breaches(agent, now)}
    cells: dict[str, Cell] = {}
    for column in columns:
        if column == "name":
            mark = f"{BREACH_MARK} " if breaches else ""
            cells[column] = (mark + agent.name, "breach" if breaches else "")
        elif column == "online":
            cells[column] = online_cell(agent)
        elif column == "status":
            cells[column] = status_cell(table, agent)
        elif column == "status_time":
            seconds = table.time_in(agent, table.status_attribute, now)
            cells[column] = _timed(seconds, breaches.get("status"), "")
        elif column == "call":
            cells[column] = call_cell(agent)
        elif column == "call_time":
            seconds = table.time_in(agent, CALL, now) if agent.on_call else None
            cells[column] = _timed(seconds, breaches.get("call"), "")
        elif column == "last_change":
            cells[column] = (format_clock(agent.last_change, tz), "")
        else:
            cells[column] = (value_text(agent.values.get(column)) or NONE, "")
    return cells


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], width: int) -> str:
    """The last ``width`` values as block characters, scaled to their maximum."""
    shown = list(values)[-width:] if width > 0 else []
    if not shown:
        return ""
    top = max(shown)
    if top <= 0:
        return SPARK[0] * len(shown)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))]
                   for v in shown)
