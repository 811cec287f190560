"""The event log and the reports made from it. Pure: no store, no clock.

Every change the hub publishes or stores is logged, per project, in the same commit as
the change (acknowledged means logged): an :class:`AttributeEvent` for each attribute
change (``onlineStatus``, ``call`` and every custom attribute) and a :class:`CallEvent` for
each call transition. Each engine gives the log its own position (``id``): increasing
within a project, its time part the event's millisecond (never before the previous
event's). The log is the history (``GET /v1/users/{id}/history``) and the outbox of
anything that must follow every event (webhooks read it from a position).

Reports must answer over a day of a large contact centre (a million events) in well
under a second, so they never scan the events. Each engine keeps, per user, a
:class:`Checkpoint` after each change that matters to the agents report (``onlineStatus``,
the status attribute, ``call``, and the calls offered to the user): the user's state then
and running totals since the first (time online, per status, talking, ringing; calls
handled and missed). A total over ``[from, to)`` is the difference of the totals at ``to``
and at ``from``, each read from the last checkpoint before that instant: two lookups per
user, whatever the number of events. Engines apply the same rules
(:func:`after_attribute`, :func:`after_call`); the Redis engine in Lua
(:mod:`monitor.hub.cluster.scripts`), tested against these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor.protocol import CALL, ONLINE, ONLINE_STATUS, from_json, to_json

DAY_MS = 86_400_000
DEFAULT_RETENTION_DAYS = 35
DEFAULT_STATUS_ATTRIBUTE = "manual_status"
# Distinct status values whose time a user's totals keep apart; further ones are added
# up under OTHER_STATUS (a status attribute is a short list of states, but clients may
# write any value).
MAX_STATUS_KEYS = 16
OTHER_STATUS = "(other)"
ANSWERED = "Answered"
RINGING = "Ringing"
ENDED = "Ended"
INTERVALS = {"15m": 15 * 60_000, "30m": 30 * 60_000, "1h": 3_600_000, "1d": DAY_MS}
MAX_INTERVALS = 10_000
DEFAULT_SLA_SECONDS = 20
HISTORY_PAGE = 1000
MAX_HISTORY_PAGE = 10_000


# -- what is logged ---------------------------------------------------------------------


# Not frozen: one of these is made for every change, and a frozen dataclass takes six
# times as long to build (1.8 µs against 0.3). Never changed once made.
@dataclass(slots=True)
class AttributeEvent:
    """One attribute change, as logged (``extra``: a call's ``callId``, ``from``, ``to``,
    ``endReason``; a supervisor's ``changedBy``, ``reason``)."""

    project_id: int
    user_id: str
    attribute: str
    value: Any
    old_value: Any
    timestamp: int
    topics: tuple[str, ...] = ()
    extra: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as the log keeps it (a webhook's payload, less ``projectId``)."""
        out: dict[str, Any] = {"type": "attribute.changed", "userId": self.user_id,
                               "attribute": self.attribute, "value": self.value,
                               "oldValue": self.old_value, "timestamp": self.timestamp,
                               "topics": list(self.topics)}
        if self.extra:
            out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out


@dataclass(slots=True)
class CallEvent:
    """One call transition: ``call`` is the call as REST shows it (parties, direction,
    times, ``endReason`` once ended); ``users`` the parties who are hub users."""

    project_id: int
    call: Mapping[str, Any]
    timestamp: int
    users: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": "call.state", "timestamp": self.timestamp, "call": dict(self.call)}


LogEvent = AttributeEvent | CallEvent


def history_entry(event: Mapping[str, Any]) -> dict[str, Any]:
    """One logged attribute change as ``GET /v1/users/{id}/history`` shows it."""
    out = {"attribute": event["attribute"], "value": event.get("value"),
           "oldValue": event.get("oldValue"), "timestamp": event["timestamp"]}
    if "callId" in event:
        out["callId"] = event["callId"]
    return out


# -- a user's running totals ------------------------------------------------------------


def status_key(value: Any) -> str:
    """A status value as a key of ``statusMs``: a string as it is, no value (or null) as
    ``""``, anything else as its JSON text (``true``, ``3``)."""
    if isinstance(value, str):
        return value
    return "" if value is None else to_json(value)


@dataclass(slots=True)
class Checkpoint:
    """A user's state at time ``t`` and the running totals up to it."""

    t: int
    online: bool = False
    status: str = ""
    call: str = ""  # the call attribute's value ("" none)
    callee: bool = False  # the call shown is to this user
    online_ms: int = 0
    talk_ms: int = 0
    ring_ms: int = 0
    handled: int = 0
    missed: int = 0
    status_ms: dict[str, int] = field(default_factory=dict)

    def at(self, t: int) -> Checkpoint:
        """The totals at ``t`` (no earlier than ``self.t``), nothing having changed."""
        out = Checkpoint(self.t, self.online, self.status, self.call, self.callee,
                         self.online_ms, self.talk_ms, self.ring_ms, self.handled,
                         self.missed, dict(self.status_ms))
        out.advance(t)
        return out

    def advance(self, t: int) -> None:
        """Add the time up to ``t`` to the totals of the state held since ``self.t``."""
        dt = t - self.t
        if dt <= 0:  # the clock stepped back: the time is the latest seen
            return
        self.t = t
        if self.online:
            self.online_ms += dt
            key = self.status
            if key not in self.status_ms and len(self.status_ms) >= MAX_STATUS_KEYS:
                key = OTHER_STATUS
            self.status_ms[key] = self.status_ms.get(key, 0) + dt
        if self.call == ANSWERED:
            self.talk_ms += dt
        elif self.call == RINGING and self.callee:
            self.ring_ms += dt

    def to_text(self) -> str:
        return to_json([self.t, int(self.online), self.status, self.call, int(self.callee),
                        self.online_ms, self.talk_ms, self.ring_ms, self.handled,
                        self.missed, self.status_ms])

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        (t, online, status, call, callee, online_ms, talk_ms, ring_ms, handled, missed,
         status_ms) = from_json(text)
        return cls(int(t), bool(online), status, call, bool(callee), int(online_ms),
                   int(talk_ms), int(ring_ms), int(handled), int(missed),
                   {k: int(v) for k, v in status_ms.items()} if status_ms else {})


def tracked(attribute: str, status_attribute: str) -> bool:
    """Whether a change of ``attribute`` moves a user's checkpoint."""
    return attribute in (ONLINE_STATUS, CALL, status_attribute)


def after_attribute(previous: Checkpoint | None, event: AttributeEvent,
                    status_attribute: str) -> Checkpoint:
    """The user's checkpoint after ``event`` (one of the :func:`tracked` attributes)."""
    cp = Checkpoint(event.timestamp) if previous is None else previous.at(event.timestamp)
    if event.attribute == ONLINE_STATUS:
        cp.online = event.value == ONLINE
    elif event.attribute == CALL:
        cp.call = event.value if isinstance(event.value, str) else ""
        cp.callee = (event.extra or {}).get("to") == event.user_id
    else:
        cp.status = status_key(event.value)
    return cp


def call_counts(call: Mapping[str, Any]) -> tuple[int, int]:
    """What a call transition adds to its callee's (handled, missed): answered, or
    ended unanswered after it rang."""
    status = call.get("status")
    if status == ANSWERED:
        return 1, 0
    if status == ENDED and call.get("answeredAt") is None and call.get("ringingAt") is not None:
        return 0, 1
    return 0, 0


def after_call(previous: Checkpoint | None, event: CallEvent) -> Checkpoint | None:
    """The callee's checkpoint after ``event``, or None when it counts nothing."""
    handled, missed = call_counts(event.call)
    if not (handled or missed):
        return None
    cp = Checkpoint(event.timestamp) if previous is None else previous.at(event.timestamp)
    cp.handled += handled
    cp.missed += missed
    return cp


# -- reports ----------------------------------------------------------------------------


class RangeError(ValueError):
    """A report's or a history's range that cannot be answered (HTTP 400, r = 21)."""


@dataclass(frozen=True, slots=True)
class Range:
    """``[start, end)`` in epoch ms; ``clipped``: the start asked for was older than the
    retention, and moved to its start."""

    start: int
    end: int
    clipped: bool = False


def clip_range(start: int | None, end: int | None, now_ms: int, retention_days: int
               ) -> Range:
    """Check a requested range and clip it to what the log keeps."""
    if retention_days <= 0:
        raise RangeError("this hub keeps no history (history_retention_days = 0)")
    if start is None or end is None:
        raise RangeError("from and to are required (epoch milliseconds)")
    if start < 0 or end < 0:
        raise RangeError("from and to must be epoch milliseconds")
    if start >= end:
        raise RangeError("from must be before to")
    oldest = now_ms - retention_days * DAY_MS
    if start < oldest:
        if end <= oldest:
            raise RangeError(f"the range ends before the history kept "
                             f"({retention_days} days)")
        return Range(oldest, end, True)
    return Range(start, end)


def agent_figures(at_from: Checkpoint | None, at_to: Checkpoint | None, start: int,
                  end: int, now_ms: int) -> dict[str, Any] | None:
    """One user's figures over ``[start, end)`` from the last checkpoints before
    ``start`` and before ``end``; None if the user was neither online nor in a call then.
    Time after ``now_ms`` has not happened yet."""
    if at_to is None:
        return None
    zero = Checkpoint(start)
    low = zero if at_from is None else at_from.at(min(start, now_ms))
    high = at_to.at(min(end, now_ms))
    online = high.online_ms - low.online_ms
    talk = high.talk_ms - low.talk_ms
    ring = high.ring_ms - low.ring_ms
    handled = high.handled - low.handled
    missed = high.missed - low.missed
    if not (online or talk or ring or handled or missed):
        return None
    status = {k: v - low.status_ms.get(k, 0) for k, v in high.status_ms.items()}
    return {"onlineMs": online,
            "statusMs": {k: v for k, v in sorted(status.items()) if v > 0},
            "calls": {"handled": handled, "missed": missed, "ringMs": ring, "talkMs": talk},
            "occupancy": round(talk / online, 4) if online > 0 else 0.0}


@dataclass(frozen=True, slots=True)
class CallSummary:
    """A call as the calls report needs it (its latest state)."""

    call_id: str
    started: int
    answered: int | None
    ended: int | None


def call_intervals(calls: Iterable[CallSummary], start: int, end: int, interval_ms: int,
                   sla_ms: int) -> list[dict[str, Any]]:
    """Calls offered in each interval ``[start + k·interval, …)`` (the last one cut at
    ``end``), with what became of them: answered (within ``sla_ms`` of being offered),
    abandoned (ended unanswered), average speed of answer, average handle time (answer to
    end, of those answered and ended)."""
    count = max(1, -(-(end - start) // interval_ms))
    if count > MAX_INTERVALS:
        raise RangeError(f"more than {MAX_INTERVALS} intervals: choose a longer interval")
    rows = [[0, 0, 0, 0, 0, 0, 0] for _ in range(count)]
    for call in calls:
        if not start <= call.started < end:
            continue
        row = rows[(call.started - start) // interval_ms]
        row[0] += 1
        if call.answered is not None:
            wait = call.answered - call.started
            row[1] += 1
            row[3] += wait <= sla_ms
            row[4] += wait
            if call.ended is not None:
                row[5] += call.ended - call.answered
                row[6] += 1
        elif call.ended is not None:
            row[2] += 1
    return [{"start": start + i * interval_ms, "offered": offered, "answered": answered,
             "abandoned": abandoned, "answeredWithinSla": within,
             "avgSpeedOfAnswerMs": round(waits / answered) if answered else 0,
             "avgHandleMs": round(handle / handled) if handled else 0}
            for i, (offered, answered, abandoned, within, waits, handle, handled)
            in enumerate(rows)]


def summary_of(call: Mapping[str, Any]) -> CallSummary:
    """The calls report's view of a call (``Call.to_json()``)."""
    return CallSummary(str(call["callId"]), int(call["startedAt"]),
                       call.get("answeredAt"), call.get("endedAt"))


# -- what the edges may read ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Logged events of one user, oldest first; ``next_cursor`` when more follow."""

    events: list[dict[str, Any]]
    next_cursor: str | None = None


class HistoryReader(Protocol):
    """What an engine answers from its event log (off the event loop, or awaited)."""

    @property
    def retention_days(self) -> int: ...

    async def user_events(self, project_id: int, user_id: str, start: int, end: int,
                          attribute: str | None, limit: int, cursor: str | None
                          ) -> HistoryPage:
        """Attribute changes of one user in ``[start, end)``, after ``cursor`` if given
        (raises :class:`RangeError` for a cursor it did not make)."""
        ...

    async def checkpoints(self, project_id: int, user_ids: Sequence[str], at: int
                          ) -> dict[str, Checkpoint]:
        """Each user's last checkpoint before ``at`` (users with none are left out)."""
        ...

    async def call_summaries(self, project_id: int, start: int, end: int
                             ) -> list[CallSummary]:
        """The calls offered in ``[start, end)``, as they are now."""
        ...


async def agents_report(reader: HistoryReader, project_id: int, user_ids: Sequence[str],
                        start: int, end: int, now_ms: int) -> dict[str, dict[str, Any]]:
    """Each user's figures over ``[start, end)``, for those online or in a call then."""
    at_from = await reader.checkpoints(project_id, user_ids, start)
    at_to = await reader.checkpoints(project_id, user_ids, end)
    out = {}
    for user_id in user_ids:
        figures = agent_figures(at_from.get(user_id), at_to.get(user_id), start, end, now_ms)
        if figures is not None:
            out[user_id] = figures
    return out


async def calls_report(reader: HistoryReader, project_id: int, start: int, end: int,
                       interval_ms: int, sla_ms: int) -> list[dict[str, Any]]:
    """The calls offered in each interval of ``[start, end)`` (see :func:`call_intervals`)."""
    if -(-(end - start) // interval_ms) > MAX_INTERVALS:
        raise RangeError(f"more than {MAX_INTERVALS} intervals: choose a longer interval")
    calls = await reader.call_summaries(project_id, start, end)
    return call_intervals(calls, start, end, interval_ms, sla_ms)
