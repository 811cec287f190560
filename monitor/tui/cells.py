"""What each cell of the agent grid says, and in which state colour. Pure.

A cell is ``(text, state)``: the words and symbol shown, and the name of the state whose
theme colour paints it (or ``""``). Meaning never rests on colour alone: every state has
a symbol or a word too. Text from the wire stays plain text, never markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from monitor.protocol import CALL, OFFLINE, ONLINE
from monitor.tui.model import (
    CALL_WORDS,
    OTHERS,
    Agent,
    AgentTable,
    Breach,
    Group,
    Summary,
    value_text,
)

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
    "user": Column("user", "User id", 12, 15),
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
        return f"{AVAILABLE_SYMBOL} {table.status_label(status)}", "available"
    return f"{AWAY_SYMBOL} {table.status_label(status)}", "away"


def short_name(name: str) -> str:
    """``Kemi D.`` for ``Kemi Dang``: the first word, then initials (a number or an id
    in parentheses is kept whole)."""
    words = name.split(" ")
    if len(words) < 2 or not words[0][:1].isalpha():
        return name
    rest = [w if w.startswith("(") or not w[:1].isalpha() else f"{w[0]}." for w in words[1:]]
    return " ".join([words[0], *rest])


def name_text(table: AgentTable, agent: Agent, width: int | None) -> str:
    """The agent's name; where two share it, with the user id, which stays whole when
    the column is short (the name gives way: ``Kemi D. (agent_7)``, ``Ke… (agent_7)``)."""
    label = table.label(agent)
    if width is None or len(label) <= width or label == agent.name:
        return label
    tail = f" ({agent.user_id})"
    name = short_name(agent.name)
    room = width - len(tail)
    if len(name) > room:
        name = name[:max(1, room - 1)] + "…"
    return name + tail


def call_cell(agent: Agent, table: AgentTable | None = None, width: int | None = None
              ) -> Cell:
    """The call state and the other party (a name when the party is a user here). When
    ``width`` is short, the party stays readable: the state's word goes first (its
    symbol stays), then the party's name is shortened."""
    state = agent.call_state
    if not agent.on_call:
        return "· idle", "idle"
    info = agent.call_info
    party = agent.other_party
    arrow = ""
    if info is not None and party:
        arrow = "→ " if info.caller == agent.user_id else "← "
    if party and table is not None:
        party = table.party_label(party)
    symbol = CALL_SYMBOLS.get(state, "?")
    colour = "talking" if state == "Answered" else "ringing"
    text = f"{symbol} {CALL_WORDS.get(state, state)}"
    if not party:
        return text, colour
    full = f"{text} {arrow}{party}"
    if width is None or len(full) <= width:
        return full, colour
    compact = f"{symbol} {arrow}{party}"
    if len(compact) <= width:
        return compact, colour
    return f"{symbol} {arrow}{short_name(party)}", colour


def _timed(seconds: float | None, breach: Breach | None, state: str) -> Cell:
    if breach is not None:
        return f"{BREACH_MARK} {format_duration(seconds)}", "breach"
    return format_duration(seconds), state


def row_cells(table: AgentTable, agent: Agent, columns: Sequence[str], now: float,
              tz: dt.tzinfo | None, widths: Mapping[str, int] | None = None
              ) -> dict[str, Cell]:
    """Every requested cell of ``agent``'s row (``widths``: of the columns shown, for
    the cells that can say less when short of room)."""
    breaches = {b.kind: b for b in table.breaches(agent, now)}
    cells: dict[str, Cell] = {}
    for column in columns:
        if column == "name":
            mark = f"{BREACH_MARK} " if breaches else ""
            width = None if widths is None else widths.get(column)
            cells[column] = (mark + name_text(table, agent, width and width - len(mark)),
                             "breach" if breaches else "")
        elif column == "user":
            cells[column] = (agent.user_id, "idle")
        elif column == "online":
            cells[column] = online_cell(agent)
        elif column == "status":
            cells[column] = status_cell(table, agent)
        elif column == "status_time":
            seconds = table.time_in(agent, table.status_attribute, now)
            cells[column] = _timed(seconds, breaches.get("status"), "")
        elif column == "call":
            cells[column] = call_cell(agent, table, None if widths is None
                                      else widths.get(column))
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


def group_name(key: str, attribute: str) -> str:
    """How a group is named on its header line and elsewhere."""
    if key == OTHERS:
        return "not counted (not agents)"
    return key or f"no {attribute}"


def group_parts(table: AgentTable, group: Group, summary: Summary | None,
                filtered: bool, width: int | None = None) -> list[Cell]:
    """A group's header line: open or folded, its name, and its counts (of all its
    agents: online, available, on a call, ringing, over a limit). Short of ``width``,
    the counts keep their symbols and lose their words."""
    name = group_name(group.key, table.group_attribute)
    sign = "▸" if group.collapsed else "▾"
    noun = "agent" if group.size == 1 else "agents"
    shown = f"{group.shown} of {group.size} {noun}" if filtered else f"{group.size} {noun}"
    head: list[Cell] = [(f"{sign} {name}", ""), (f"  {shown}", "idle")]
    if summary is None or group.key == OTHERS:
        return head
    ringing = summary.by_floor.get("ringing", 0)
    counts = [
        (ONLINE_SYMBOLS[ONLINE], summary.by_online.get(ONLINE, 0), "online", "online"),
        (AVAILABLE_SYMBOL, summary.by_status.get(table.available_status, 0), "available",
         "available"),
        (CALL_SYMBOLS["Answered"], summary.on_call, "on call", "talking"),
        (CALL_SYMBOLS["Ringing"], ringing, "ringing", "ringing"),
        (BREACH_MARK, summary.breaches, "over limit", "breach"),
    ]
    counts = [c for c in counts if c[1] or c[2] in ("online", "available", "on call")]
    for words in (True, False):
        parts = [*head, ("  │", "")]
        for symbol, count, word, state in counts:
            parts += [("  ", ""), (f"{symbol} {count} {word}" if words
                                   else f"{symbol} {count}", state)]
        if width is None or sum(len(text) for text, _ in parts) <= width:
            break
    return parts
