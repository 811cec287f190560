"""The agent table the monitor shows, fed with topic snapshots and messages. Pure.

Nothing here touches a socket, a screen or the wall clock: every call that needs the time
is given ``now`` (epoch seconds). The screen reads this model a few times a second.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from monitor.protocol import CALL, OFFLINE, ONLINE, ONLINE_STATUS
from monitor.tui.text import safe_text

ACTIVE_CALL_STATES = ("Calling", "Ringing", "Answered")
CALL_ENDED = "Ended"
MAX_CALLS_PER_AGENT = 8
"""Calls in progress remembered per agent (a telephony system may never report an end)."""
CALL_WORDS = {"Calling": "calling", "Ringing": "ringing", "Answered": "talking"}
"""How the monitor names each active call state (the protocol's names match too)."""
IDLE = "idle"
UNKNOWN = "unknown"
DEFAULT_STATUS_ATTRIBUTE = "manual_status"
DEFAULT_GROUP_ATTRIBUTE = "team"
ROLE_ATTRIBUTE = "role"
"""An attribute that, where the topics carry it, says what a user is (``agent``,
``supervisor``...): users whose role is listed in ``not_agents`` are not counted."""
OTHERS = "\x00others"
"""The group of the users who are not counted (never a value: a value from the wire
cannot hold a NUL, it is shown escaped)."""
RINGING_STATES = ("Calling", "Ringing")
FLOOR_STATES = ("idle", "ringing", "talking", "after_call", "away", "offline", "unknown")
"""What an agent is doing, one of these at a time (the wallboard's numbers): available
and not on a call, a call ringing (or calling out), talking, in after-call work, in any
other status (a break, lunch, training...), offline, or online with no status yet."""
MAX_OPEN_CALLS = 20_000


def status_words(status: str, labels: Mapping[str, str] | None = None) -> str:
    """How a status reads on screen: its configured label, else its name with spaces
    for underscores (``after_call_work`` reads ``after call work``)."""
    if labels and status in labels:
        return labels[status]
    return status.replace("_", " ")


def value_text(value: Any) -> str:
    """How an attribute value reads on screen and in filters (safe to draw)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return safe_text(value)


def _seconds(timestamp: Any, fallback: float) -> float:
    """A hub timestamp (epoch ms) as epoch seconds; ``fallback`` when absent or bad."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return fallback
    if not math.isfinite(timestamp) or timestamp <= 0:
        return fallback
    return timestamp / 1000.0


class CallInfo(NamedTuple):
    """The latest call of an agent as the topics told it.

    This and :class:`Change` are named tuples rather than dataclasses: a monitor keeps
    hundreds of thousands of them (every agent's timeline), and tuples of plain values
    are left alone by Python's cycle collector, whose full passes over the agent table
    otherwise paused the screen for tens of milliseconds."""

    status: str
    call_id: str | None = None
    caller: str | None = None
    callee: str | None = None

    def other_party(self, user_id: str) -> str | None:
        """Who is at the other end, seen from ``user_id``."""
        if self.caller == user_id:
            return self.callee
        if self.callee == user_id:
            return self.caller
        return self.callee or self.caller


class Change(NamedTuple):
    """One attribute change of one agent (an event log line, a timeline entry)."""

    time: float
    """When it happened, hub time (epoch seconds)."""
    user_id: str
    attribute: str
    old: Any
    new: Any
    topic: str | None = None
    """The topic it came on; ``None`` for a snapshot."""
    call: CallInfo | None = None


@dataclass
class Agent:
    """Everything known of one user seen on the subscribed topics."""

    user_id: str
    display_name: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    """Attribute name -> when its current value was set (epoch seconds)."""
    call_info: CallInfo | None = None
    last_change: float | None = None
    timeline: deque[Change] = field(default_factory=lambda: deque(maxlen=500))
    group_key: str = ""
    """The group the agent is shown in (kept by :class:`AgentTable` as it changes)."""
    call_at: float = -math.inf
    """When the latest ``call`` value taken was set (orders call messages; ``since``
    says when the call shown entered its state)."""
    calls: dict[str, tuple[str, float]] | None = None
    """The agent's calls in progress seen: callId -> (status, since when)."""

    @property
    def name(self) -> str:
        return self.display_name or self.user_id

    @property
    def online(self) -> str:
        """``online``, ``offline`` or ``unknown`` (the topics carry no presence)."""
        value = self.values.get(ONLINE_STATUS)
        return value if value in (ONLINE, OFFLINE) else UNKNOWN

    @property
    def call_state(self) -> str:
        """The call status while a call is active, ``idle`` otherwise."""
        value = self.values.get(CALL)
        return value if value in ACTIVE_CALL_STATES else IDLE

    @property
    def on_call(self) -> bool:
        return self.call_state != IDLE

    @property
    def other_party(self) -> str | None:
        if not self.on_call or self.call_info is None:
            return None
        return self.call_info.other_party(self.user_id)


class Applied(Enum):
    """What :meth:`AgentTable.apply_message` did with a message."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    """Its seq was already covered (by a snapshot or an earlier message): ignored."""
    GAP = "gap"
    """Applied, but messages were missed before it: the topic needs a fresh snapshot."""
    INVALID = "invalid"


@dataclass(frozen=True)
class Thresholds:
    """Seconds after which a state is too long: per manual status, call state, online state."""

    status: Mapping[str, float] = field(default_factory=dict)
    call: Mapping[str, float] = field(default_factory=dict)
    online: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Breach:
    """An agent over a threshold."""

    kind: str
    """``status``, ``call`` or ``online``."""
    state: str
    limit: float
    elapsed: float


# Sort and filter ---------------------------------------------------------------------

BUILTIN_COLUMNS = ("name", "online", "status", "status_time", "call", "call_time",
                   "last_change", "user")
DEFAULT_COLUMNS = BUILTIN_COLUMNS[:-1]
"""The built-in columns shown unless the settings say otherwise (the user id is in the
agent's detail, and on a column of its own with ``u``)."""
_CALL_ORDER = {"Answered": 0, "Ringing": 1, "Calling": 2, IDLE: 3}
_ONLINE_ORDER = {ONLINE: 0, UNKNOWN: 1, OFFLINE: 2}


@dataclass(frozen=True)
class Sort:
    """Sort by ``column`` (a built-in column or a custom attribute name)."""

    column: str = "name"
    reverse: bool = False


@dataclass(frozen=True)
class Filter:
    """Which agents to show: all must hold."""

    text: str = ""
    """Case-insensitive substring of the name, userId or any state or attribute value."""
    online_only: bool = False
    on_call: bool = False
    status: str | None = None
    group: str | None = None
    """Only the agents of this group (a value of the group attribute; ``""``: none)."""

    @property
    def active(self) -> bool:
        return bool(self.text.strip() or self.online_only or self.on_call or self.status
                    or self.group is not None)


@dataclass(frozen=True)
class Summary:
    """Totals over every agent counted (not just the filtered ones; not the users who
    are not agents, see ``not_agents``): of the whole floor, or of one group."""

    total: int
    by_online: Mapping[str, int]
    by_status: Mapping[str, int]
    by_call: Mapping[str, int]
    available: int
    """Idle: online, in the available status and not on a call."""
    on_call: int
    breaches: int
    by_floor: Mapping[str, int] = field(default_factory=dict)
    """Agents per :data:`FLOOR_STATES` (each agent in exactly one)."""
    longest_ringing: float | None = None
    """Seconds the longest-ringing call now has rung (``None``: none rings)."""
    answered: int = 0
    """Calls answered since the monitor started."""
    abandoned: int = 0
    """Calls ended before they were answered, since the monitor started."""
    groups: Mapping[str, Summary] = field(default_factory=dict)
    """The same, per group (a value of the group attribute; ``""``: none)."""
    uncounted: int = 0
    """Users on the topics who are not agents (not in any total)."""


@dataclass(frozen=True)
class Group:
    """A group's header line among the rows: its agents follow unless it is collapsed."""

    key: str
    """The group attribute's value (``""``: agents without one; :data:`OTHERS`: users
    who are not agents)."""
    size: int
    """Its agents, all of them."""
    shown: int
    """Its agents that pass the filter."""
    collapsed: bool


Row = Agent | Group


@dataclass(frozen=True)
class Sample:
    """One point of the summary chart."""

    time: float
    available: int
    on_call: int


@dataclass
class _Order:
    agents: list[Agent]
    keys: dict[str, tuple[Any, ...]]
    dirty: set[str]
    """Agents changed (or new) since: their keys and places are out of date."""


Limit = tuple[str, str, float, float]
"""A state with a threshold an agent is in: (kind, state, since, limit)."""


@dataclass(frozen=True)
class _Tally:
    online: str
    status: str | None
    call: str
    on_call: bool
    available: bool
    limits: tuple[Limit, ...]
    group: str
    counted: bool
    floor: str


@dataclass
class _Totals:
    total: int = 0
    by_online: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    by_call: dict[str, int] = field(default_factory=dict)
    by_floor: dict[str, int] = field(default_factory=dict)
    available: int = 0
    on_call: int = 0
    answered: int = 0
    abandoned: int = 0

    def add(self, tally: _Tally, sign: int) -> None:
        self.total += sign
        self.by_online[tally.online] = self.by_online.get(tally.online, 0) + sign
        if tally.status is not None:
            self.by_status[tally.status] = self.by_status.get(tally.status, 0) + sign
        self.by_call[tally.call] = self.by_call.get(tally.call, 0) + sign
        self.by_floor[tally.floor] = self.by_floor.get(tally.floor, 0) + sign
        self.available += sign * tally.available
        self.on_call += sign * tally.on_call

    def summary(self, breaches: int, longest: float | None,
                groups: Mapping[str, Summary] | None = None, uncounted: int = 0) -> Summary:
        def kept(counts: dict[str, int]) -> dict[str, int]:
            return {k: v for k, v in counts.items() if v}
        return Summary(self.total, kept(self.by_online), kept(self.by_status),
                       kept(self.by_call), self.available, self.on_call, breaches,
                       kept(self.by_floor), longest, self.answered, self.abandoned,
                       groups or {}, uncounted)


@dataclass
class _Cursor:
    epoch: Any = None
    seq: int | None = None


class AgentTable:
    """Agents keyed by userId, updated from snapshots and topic messages."""

    def __init__(self, *, status_attribute: str = DEFAULT_STATUS_ATTRIBUTE,
                 available_status: str = "available",
                 after_call_status: str = "after_call_work",
                 thresholds: Thresholds | None = None,
                 group_attribute: str = DEFAULT_GROUP_ATTRIBUTE,
                 not_agents: Iterable[str] = (),
                 status_labels: Mapping[str, str] | None = None,
                 event_log_size: int = 200, timeline_size: int = 500,
                 history_seconds: float = 600.0, history_step: float = 10.0) -> None:
        self.status_attribute = status_attribute
        self.available_status = available_status
        self.after_call_status = after_call_status
        self.group_attribute = group_attribute
        self.not_agents = frozenset(not_agents)
        """User ids and roles of the users who are not agents: shown, never counted."""
        self.status_labels = dict(status_labels or {})
        self.thresholds = thresholds or Thresholds()
        self.agents: dict[str, Agent] = {}
        self.events: deque[Change] = deque(maxlen=event_log_size)
        self.history: deque[Sample] = deque(maxlen=max(1, int(history_seconds // history_step)))
        self.history_step = history_step
        self.stale = False
        self.version = 0
        """Bumped on every change of an agent: the screen skips work when it is unchanged."""
        self._timeline_size = timeline_size
        self._cursors: dict[str, _Cursor] = {}
        self._custom: dict[str, None] = {}
        self._orders: dict[str, _Order] = {}
        """Per column sorted by: every agent in order, kept from one call to the next."""
        self._tallies: dict[str, _Tally] = {}
        self._totals = _Totals()
        self._groups: dict[str, _Totals] = {}
        self._uncounted = 0
        self._limited: dict[str, tuple[str, tuple[Limit, ...]]] = {}
        """Agents in a state with a threshold: their group and their limits."""
        self._ringing: dict[str, tuple[str, float]] = {}
        """Agents with a call ringing: their group and since when it rings."""
        self._untallied: set[str] = set()
        self._names: dict[str, int] = {}
        """How many users go by each name (casefolded): a name two share is told apart."""
        self._open_calls: dict[str, list[Any]] = {}
        """Calls seen since start and not ended: callId -> [answered, group]."""
        self.operator: str | None = None
        self.operator_role: str | None = None

    # -- feeding -------------------------------------------------------------------------

    def _agent(self, user_id: str) -> Agent:
        agent = self.agents.get(user_id)
        if agent is None:
            agent = Agent(user_id, timeline=deque(maxlen=self._timeline_size))
            self.agents[user_id] = agent
            self._count_name(agent.name, 1)
            self._touch(user_id)
        return agent

    def _count_name(self, name: str, sign: int) -> None:
        key = name.casefold()
        count = self._names.get(key, 0) + sign
        if count > 0:
            self._names[key] = count
        else:
            self._names.pop(key, None)

    def _touch(self, user_id: str) -> None:
        """An agent changed: its sort keys and its part of the summary are out of date."""
        self._untallied.add(user_id)
        for order in self._orders.values():
            order.dirty.add(user_id)

    def _rename(self, agent: Agent, display_name: Any) -> None:
        if isinstance(display_name, str) and display_name \
                and display_name != agent.display_name:
            self._count_name(agent.name, -1)
            agent.display_name = display_name
            self._count_name(agent.name, 1)
            self._touch(agent.user_id)

    def _note_attribute(self, name: str) -> None:
        if name not in (ONLINE_STATUS, CALL, self.status_attribute):
            self._custom.setdefault(name, None)

    def _set(self, agent: Agent, attribute: str, value: Any, when: float,
             topic: str | None, call: CallInfo | None) -> bool:
        """Store one value; False when it is older than what is known (out of order)."""
        is_call = attribute == CALL
        if when < (agent.call_at if is_call else agent.since.get(attribute, -math.inf)):
            return False
        old = agent.values.get(attribute)
        changed = attribute not in agent.values or old != value
        agent.values[attribute] = value
        self._touch(agent.user_id)
        began = when
        if is_call:
            agent.call_at = when
            agent.call_info = call or CallInfo(value_text(value))
            if call is not None and call.call_id:
                began = _call_began(agent, call, when)
                if topic is not None:
                    self._count_call(agent, call)
        if not changed:
            return True
        agent.since[attribute] = began
        agent.last_change = max(agent.last_change or when, when)
        self._note_attribute(attribute)
        self.version += 1
        agent.timeline.append(Change(when, agent.user_id, attribute, old, value, topic, call))
        return True

    def apply_snapshot(self, topic: str, values: Iterable[Mapping[str, Any]], *,
                       seq: int | None = None, epoch: Any = None, now: float) -> int:
        """Take a TOPIC_SNAPSHOT reply's ``values``; returns how many were usable."""
        used = 0
        for item in values:
            user_id, attribute = item.get("userId"), item.get("attribute")
            if not isinstance(user_id, str) or not user_id or not isinstance(attribute, str):
                continue
            agent = self._agent(user_id)
            self._rename(agent, item.get("displayName"))
            value = item.get("value")
            call = _call_from(item, value) if attribute == CALL else None
            when = _seconds(item.get("timestamp"), now)
            # The timestamp orders it against messages: a newer message already applied
            # (seq > the snapshot's) keeps its value; anything older is overwritten.
            self._set(agent, attribute, value, when, None, call)
            self._note_attribute(attribute)
            used += 1
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        cursor = self._cursors.get(topic)
        if cursor is not None and cursor.epoch in (None, epoch) and cursor.seq is not None \
                and seq is not None:
            # Messages newer than the snapshot may have come first: keep the furthest.
            seq = max(seq, cursor.seq)
        self._cursors[topic] = _Cursor(epoch, seq)
        self.version += 1
        return used

    def apply_message(self, topic: str, message: Mapping[str, Any], *, seq: Any = None,
                      now: float) -> Applied:
        """Take one SUBSCRIBE_FROM_SERVER body's ``message`` (and the body's ``seq``)."""
        user_id, attribute = message.get("userId"), message.get("attribute")
        if not isinstance(user_id, str) or not user_id or not isinstance(attribute, str):
            return Applied.INVALID
        result = Applied.APPLIED
        if isinstance(seq, int) and not isinstance(seq, bool):
            cursor = self._cursors.setdefault(topic, _Cursor())
            if cursor.seq is not None:
                if seq <= cursor.seq:
                    return Applied.DUPLICATE
                if seq > cursor.seq + 1:
                    result = Applied.GAP
            cursor.seq = seq
        when = _seconds(message.get("timestamp"), now)
        value = message.get("newValue")
        call = _call_from(message, value) if attribute == CALL else None
        change = Change(when, user_id, attribute, message.get("oldValue"), value, topic, call)
        self.events.append(change)
        agent = self._agent(user_id)
        self._rename(agent, message.get("displayName"))
        self._set(agent, attribute, value, when, topic, call)
        self.version += 1
        return result

    def _count_call(self, agent: Agent, call: CallInfo) -> None:
        """Answered and abandoned calls since start, counted once per callId (a call
        between two agents comes once for each), for the group of the agent it first
        came for. Snapshots are not counted: they say how calls are, not what they did."""
        calls = self._open_calls
        entry = calls.get(call.call_id or "")
        if call.status == CALL_ENDED:
            calls.pop(call.call_id or "", None)
            if entry is not None and not entry[0]:
                self._call_totals(entry[1]).abandoned += 1
                self._totals.abandoned += 1
            return
        if entry is None:
            tally = self._tallies.get(agent.user_id)
            group = self.group_of(agent) if tally is None else tally.group
            entry = calls[call.call_id or ""] = [False, group]
            if len(calls) > MAX_OPEN_CALLS:  # calls whose end was never seen
                del calls[next(iter(calls))]
        if call.status == "Answered" and not entry[0]:
            entry[0] = True
            self._call_totals(entry[1]).answered += 1
            self._totals.answered += 1

    def _call_totals(self, group: str) -> _Totals:
        totals = self._groups.get(group)
        if totals is None:
            totals = self._groups[group] = _Totals()
        return totals

    def set_operator(self, user_id: str, role: str | None = None) -> None:
        """Who is watching, and the role their token claims: the operator is not
        counted when that role (or their user id) is in ``not_agents``."""
        for user in (self.operator, user_id):
            if user is not None:
                self._touch(user)
        self.operator, self.operator_role = user_id, role
        self.version += 1

    def topic_cursor(self, topic: str) -> tuple[Any, int | None]:
        """``(epoch, seq)`` last seen on ``topic`` (for resume)."""
        cursor = self._cursors.get(topic, _Cursor())
        return cursor.epoch, cursor.seq

    def set_stale(self, stale: bool) -> None:
        """Mark the data as possibly out of date (the link to the hub is down)."""
        if self.stale != stale:
            self.stale = stale
            self.version += 1

    # -- reading -------------------------------------------------------------------------

    @property
    def custom_attributes(self) -> list[str]:
        """Attributes other than presence, call and manual status, in order of appearance."""
        return list(self._custom)

    def status_of(self, agent: Agent) -> str | None:
        value = agent.values.get(self.status_attribute)
        return None if value is None else value_text(value)

    def status_label(self, status: str) -> str:
        """How ``status`` reads on screen (its configured label, else with spaces)."""
        return status_words(status, self.status_labels)

    def group_of(self, agent: Agent) -> str:
        """The agent's group: its value of the group attribute (``""``: none)."""
        return value_text(agent.values.get(self.group_attribute))

    def counts(self, agent: Agent) -> bool:
        """Whether the agent counts in totals: neither its user id nor its role (the
        ``role`` attribute, or the operator's token's role claim) is in ``not_agents``."""
        not_agents = self.not_agents
        if not not_agents:
            return True
        if agent.user_id in not_agents:
            return False
        role = agent.values.get(ROLE_ATTRIBUTE)
        if role is not None and value_text(role) in not_agents:
            return False
        return not (agent.user_id == self.operator and self.operator_role in not_agents)

    def label(self, agent: Agent) -> str:
        """The agent's name; with its user id when another user goes by the same name."""
        name = agent.name
        if name != agent.user_id and self._names.get(name.casefold(), 0) > 1:
            return f"{name} ({agent.user_id})"
        return name

    def party_label(self, party: str | None) -> str | None:
        """Who is at the other end of a call: an agent's name when it is a user here,
        else as the call said it (a number)."""
        if party is None:
            return None
        agent = self.agents.get(party)
        return party if agent is None else self.label(agent)

    def time_in(self, agent: Agent, attribute: str, now: float) -> float | None:
        """Seconds since ``attribute`` took its current value."""
        since = agent.since.get(attribute)
        return None if since is None else max(0.0, now - since)

    def breaches(self, agent: Agent, now: float) -> list[Breach]:
        """The thresholds this agent is over right now."""
        found: list[Breach] = []
        checks = ((
            "status", self.thresholds.status, self.status_of(agent), self.status_attribute),
            ("call", self.thresholds.call, agent.call_state if agent.on_call else None, CALL),
            ("online", self.thresholds.online, agent.values.get(ONLINE_STATUS), ONLINE_STATUS))
        for kind, limits, state, attribute in checks:
            if state is None or state not in limits:
                continue
            elapsed = self.time_in(agent, attribute, now)
            if elapsed is not None and elapsed > limits[state]:
                found.append(Breach(kind, state, limits[state], elapsed))
        return found

    def is_available(self, agent: Agent) -> bool:
        return (agent.online != OFFLINE and not agent.on_call
                and self.status_of(agent) == self.available_status)

    def matches(self, agent: Agent, flt: Filter) -> bool:
        """Whether ``agent`` passes ``flt``."""
        if flt.online_only and agent.online != ONLINE:
            return False
        if flt.on_call and not agent.on_call:
            return False
        if flt.status is not None and self.status_of(agent) != flt.status:
            return False
        if flt.group is not None and self._group_key(agent) != flt.group:
            return False
        needle = flt.text.strip().casefold()
        if not needle:
            return True
        status = self.status_of(agent)
        haystack = [agent.user_id, agent.display_name or "", agent.online, agent.call_state,
                    CALL_WORDS.get(agent.call_state, ""), agent.other_party or "",
                    self.party_label(agent.other_party) or "",
                    self.status_label(status) if status is not None else ""]
        haystack += [value_text(v) for v in agent.values.values()]
        return any(needle in text.casefold() for text in haystack)

    def sort_key(self, agent: Agent, column: str) -> tuple[Any, ...]:
        """The key ``column`` sorts ``agent`` by; unknown values sort last. Keys do not
        depend on the time: a duration sorts by when its state began (shortest first is
        latest first), so an order stays right as the clock runs."""
        name = (agent.name.casefold(), agent.user_id)
        if column == "online":
            key: Any = _ONLINE_ORDER.get(agent.online, 3)
        elif column == "status":
            status = self.status_of(agent)
            key = (status is None, (status or "").casefold())
        elif column == "status_time":
            key = _since_key(agent.since.get(self.status_attribute))
        elif column == "call":
            key = (_CALL_ORDER.get(agent.call_state, 4), (agent.other_party or "").casefold())
        elif column == "call_time":
            key = _since_key(agent.since.get(CALL) if agent.on_call else None)
        elif column == "last_change":
            key = _duration_key(None if agent.last_change is None else -agent.last_change)
        elif column == "user":
            key = (agent.user_id,)
        elif column == "name":
            key = ()
        else:
            value = agent.values.get(column)
            key = (value is None, value_text(value).casefold())
        return (key, *name)

    def _sorted(self, column: str) -> list[Agent]:
        """Every agent in ascending order of ``column``.

        Each column sorted by keeps its order and its agents' keys: only the keys of the
        agents changed since it was last asked for are computed again, and those agents
        are moved to their places (a sort over 5,000 agents a few times a second, and
        back and forth between columns, stays cheap)."""
        agents = self.agents
        order = self._orders.get(column)
        if order is None:
            keys = {user_id: self.sort_key(agent, column) for user_id, agent in agents.items()}
            order = self._orders[column] = _Order(
                sorted(agents.values(), key=lambda a: keys[a.user_id]), keys, set())
            return order.agents
        dirty = order.dirty
        if not dirty:
            return order.agents
        keys = order.keys
        # Most changes leave an agent's key in a column as it was (a status change, for
        # the name's order): only the agents whose key changed move.
        moved: list[tuple[Agent, tuple[Any, ...]]] = []
        for user_id in dirty:
            agent = agents.get(user_id)  # (the operator is touched before it is seen)
            if agent is None:
                continue
            new = self.sort_key(agent, column)
            if keys.get(user_id) != new:
                moved.append((agent, new))
        dirty.clear()
        if not moved:
            return order.agents

        def key(agent: Agent) -> tuple[Any, ...]:
            return keys[agent.user_id]

        ordered = order.agents
        if len(moved) * 8 < len(agents):  # a few moved: take them out, put them back
            for agent, _ in moved:  # found by their old keys, which still order the list
                old = keys.get(agent.user_id)
                if old is None:
                    continue  # new: not in the list yet
                i = bisect.bisect_left(ordered, old, key=key)
                if i == len(ordered) or ordered[i] is not agent:  # never: keys are unique
                    break
                del ordered[i]
            else:
                for agent, new in moved:
                    keys[agent.user_id] = new
                    bisect.insort(ordered, agent, key=key)
                return ordered
        for agent, new in moved:
            keys[agent.user_id] = new
        order.agents = sorted(agents.values(), key=key)
        return order.agents

    def prepare(self, column: str) -> None:
        """Bring the kept order of ``column`` up to date ahead of time (the screen does
        one column at a time while idle, so switching to a sort costs little)."""
        self._sorted(column)

    def rows(self, now: float, sort: Sort = Sort(), flt: Filter = Filter()) -> list[Agent]:
        """The agents to show, filtered and sorted."""
        ordered = self._sorted(sort.column)
        if sort.reverse:  # keys are unique (they end with the userId): reversed is exact
            ordered = ordered[::-1]
        if not flt.active:
            return list(ordered)
        if flt.text.strip():
            return [a for a in ordered if self.matches(a, flt)]
        # the quick filters alone, as :meth:`matches` decides them, without its calls
        shown = ordered
        if flt.online_only:
            shown = [a for a in shown if a.values.get(ONLINE_STATUS) == ONLINE]
        if flt.on_call:
            shown = [a for a in shown if a.values.get(CALL) in ACTIVE_CALL_STATES]
        if flt.status is not None:
            attribute, status = self.status_attribute, flt.status
            shown = [a for a in shown if (value := a.values.get(attribute)) is not None
                     and value_text(value) == status]
        if flt.group is not None:
            self._retally()
            group = flt.group
            shown = [a for a in shown if a.group_key == group]
        return list(shown)

    def _group_key(self, agent: Agent) -> str:
        return OTHERS if not self.counts(agent) else self.group_of(agent)

    @property
    def grouped_by(self) -> bool:
        """Whether any agent has a value of the group attribute (else there is nothing
        to group by)."""
        self._retally()
        return any(key and totals.total for key, totals in self._groups.items())

    def group_keys(self) -> list[str]:
        """Every group with agents in it, in the order shown: by name, then the agents
        without a group, then the users who are not agents."""
        self._retally()
        keys = sorted((k for k, t in self._groups.items() if k and t.total),
                      key=lambda k: (k.casefold(), k))
        if self._groups.get("") and self._groups[""].total:
            keys.append("")
        if self._uncounted:
            keys.append(OTHERS)
        return keys

    def grouped(self, rows: list[Agent], collapsed: Iterable[str] = (), *,
                hide_empty: bool = False) -> list[Row]:
        """``rows`` under a header line per group, in :meth:`group_keys` order (each
        group's agents in the order they had); a collapsed group's agents are left out.
        ``hide_empty``: leave out groups none of whose agents is in ``rows`` (a filter
        is on). Without a group attribute anywhere, ``rows`` as they are."""
        if not self.grouped_by:
            return list(rows)
        keys = self.group_keys()
        buckets: dict[str, list[Agent]] = {key: [] for key in keys}
        adders = {key: bucket.append for key, bucket in buckets.items()}
        for agent in rows:  # a stable partition: each group keeps the order of rows
            adders[agent.group_key](agent)
        folded = set(collapsed)
        shown: list[Row] = []
        for key in keys:
            bucket = buckets.get(key, [])
            if hide_empty and not bucket:
                continue
            size = self._uncounted if key == OTHERS else self._groups[key].total
            closed = key in folded
            shown.append(Group(key, size, len(bucket), closed))
            if not closed:
                shown.extend(bucket)
        return shown

    def _tally(self, agent: Agent) -> _Tally:
        """What one agent adds to the summary (the checks of :meth:`breaches` and
        :meth:`is_available`, for the summary's sake)."""
        values, since = agent.values, agent.since
        raw_online = values.get(ONLINE_STATUS)
        online = raw_online if raw_online in (ONLINE, OFFLINE) else UNKNOWN
        raw = values.get(self.status_attribute)
        status = None if raw is None else value_text(raw)
        call = values.get(CALL)
        if call not in ACTIVE_CALL_STATES:
            call = IDLE
        busy = call != IDLE
        available = not busy and online != OFFLINE and status == self.available_status
        limits: list[Limit] = []  # each state with a limit the agent is in
        thresholds = self.thresholds
        for kind, state, table, attribute in (
                ("status", status, thresholds.status, self.status_attribute),
                ("call", call if busy else None, thresholds.call, CALL),
                ("online", raw_online, thresholds.online, ONLINE_STATUS)):
            if state is not None and state in table:
                began = since.get(attribute)
                if began is not None:
                    limits.append((kind, state, began, table[state]))
        if online == OFFLINE:
            floor = "offline"
        elif call in RINGING_STATES:
            floor = "ringing"
        elif busy:
            floor = "talking"
        elif status is None:
            floor = UNKNOWN
        elif status == self.available_status:
            floor = "idle"
        elif status == self.after_call_status:
            floor = "after_call"
        else:
            floor = "away"
        return _Tally(online, status, call, busy, available, tuple(limits),
                      self.group_of(agent), self.counts(agent), floor)

    def _retally(self) -> None:
        """Bring the totals up to date with the agents changed since (each agent's part
        taken out as it was and put back as it is)."""
        for user_id in self._untallied:
            agent = self.agents.get(user_id)
            if agent is None:
                continue
            old = self._tallies.get(user_id)
            if old is not None:
                self._apply(user_id, old, -1)
            new = self._tallies[user_id] = self._tally(agent)
            agent.group_key = new.group if new.counted else OTHERS
            self._apply(user_id, new, 1)
        self._untallied.clear()

    def _apply(self, user_id: str, tally: _Tally, sign: int) -> None:
        if not tally.counted:
            self._uncounted += sign
            return
        self._totals.add(tally, sign)
        self._call_totals(tally.group).add(tally, sign)
        if sign < 0:
            self._limited.pop(user_id, None)
            self._ringing.pop(user_id, None)
            return
        if tally.limits:
            self._limited[user_id] = (tally.group, tally.limits)
        if tally.floor == "ringing":
            began = self.agents[user_id].since.get(CALL)
            if began is not None:
                self._ringing[user_id] = (tally.group, began)

    def summary(self, now: float) -> Summary:
        """Totals by online state, manual status, call state and what agents are doing,
        threshold breaches and the longest ringing call, for the floor and per group.

        Kept up to date agent by agent as they change (the screen asks for this a few
        times a second); only the breaches and the longest ring are found anew, among
        the agents in a state that has a limit and those with a call ringing."""
        self._retally()
        breaches: dict[str, int] = {}
        for group, limits in self._limited.values():
            if any(now - began > limit for _, _, began, limit in limits):
                breaches[group] = breaches.get(group, 0) + 1
        longest: dict[str, float] = {}
        for group, began in self._ringing.values():
            rung = max(0.0, now - began)
            if rung > longest.get(group, -1.0):
                longest[group] = rung
        groups = {key: totals.summary(breaches.get(key, 0), longest.get(key))
                  for key, totals in self._groups.items() if totals.total}
        return self._totals.summary(sum(breaches.values()),
                                    max(longest.values()) if longest else None,
                                    groups, self._uncounted)

    def breaching(self, now: float) -> list[tuple[str, Limit]]:
        """Every (userId, limit) an agent counted is over right now."""
        self._retally()
        return [(user_id, limit) for user_id, (_, limits) in self._limited.items()
                for limit in limits if now - limit[2] > limit[3]]

    def sample(self, now: float) -> bool:
        """Record a chart point if ``history_step`` has passed since the last; True if so."""
        if self.history and now - self.history[-1].time < self.history_step:
            return False
        summary = self.summary(now)
        self.history.append(Sample(now, summary.available, summary.on_call))
        return True

    def timeline(self, user_id: str) -> list[Change]:
        """An agent's changes since the monitor started, oldest first."""
        agent = self.agents.get(user_id)
        return list(agent.timeline) if agent else []


def _duration_key(seconds: float | None) -> tuple[bool, float]:
    return (seconds is None, seconds or 0.0)


def _since_key(since: float | None) -> tuple[bool, float]:
    """Shortest time in the state first: the latest start first (as ``_duration_key``
    of the time elapsed would order them, at any time)."""
    return (since is None, -(since or 0.0))


def _call_began(agent: Agent, call: CallInfo, when: float) -> float:
    """Since when ``call`` is in its state: a call shown again (the agent's other call
    ended meanwhile: the hub shows the call going on) keeps the time it entered it."""
    calls = agent.calls
    assert call.call_id is not None
    if call.status not in ACTIVE_CALL_STATES:
        if calls:
            calls.pop(call.call_id, None)
        return when
    if calls is None:
        calls = agent.calls = {}
    seen = calls.get(call.call_id)
    if seen is not None and seen[0] == call.status:
        return seen[1]
    calls[call.call_id] = (call.status, when)
    if len(calls) > MAX_CALLS_PER_AGENT:  # calls whose end was never seen
        del calls[next(iter(calls))]
    return when


def _call_from(source: Mapping[str, Any], value: Any) -> CallInfo:
    def text(key: str) -> str | None:
        item = source.get(key)
        return item if isinstance(item, str) and item else None
    return CallInfo(value_text(value), text("callId"), text("from"), text("to"))
