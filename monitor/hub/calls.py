"""Calls: a pure state machine and the book of a hub's calls. No sockets, no clocks.

``Calling → Ringing → Answered → Ended``, and ``Calling → Ended``, ``Ringing → Ended``.
Anything else is refused with ``r = 27``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from monitor.protocol import Result


class CallStatus(StrEnum):
    CALLING = "Calling"
    RINGING = "Ringing"
    ANSWERED = "Answered"
    ENDED = "Ended"


class EndReason(StrEnum):
    HANGUP = "hangup"
    REJECTED = "rejected"
    BUSY = "busy"
    NO_ANSWER = "no answer"
    PARTY_DISCONNECTED = "party disconnected"
    HUB_SHUTDOWN = "hub shutdown"
    HUB_RESTART = "hub restart"
    REPORTED = "reported"  # a telephony system said it ended


class Direction(StrEnum):
    INTERNAL = "internal"  # between two hub users, driven by their clients
    EXTERNAL = "external"  # reported by a telephony system through REST


NEXT: dict[CallStatus, frozenset[CallStatus]] = {
    CallStatus.CALLING: frozenset({CallStatus.RINGING, CallStatus.ENDED}),
    CallStatus.RINGING: frozenset({CallStatus.ANSWERED, CallStatus.ENDED}),
    CallStatus.ANSWERED: frozenset({CallStatus.ENDED}),
    CallStatus.ENDED: frozenset(),
}


class CallError(Exception):
    """A refused call operation; ``r`` is 27 (or 25 for an unknown party)."""

    def __init__(self, message: str, r: Result = Result.INVALID_CALL) -> None:
        super().__init__(message)
        self.r = r
        self.message = message


@dataclass(frozen=True, slots=True)
class Call:
    """One call at one moment: every transition makes a new value."""

    project_id: int
    call_id: str
    from_: str
    to: str
    status: CallStatus
    direction: Direction
    started_ms: int
    updated_ms: int
    ringing_ms: int | None = None
    answered_ms: int | None = None
    ended_ms: int | None = None
    end_reason: EndReason | None = None
    answered_by: str | None = None  # clientId of the device that answered

    @property
    def active(self) -> bool:
        return self.status is not CallStatus.ENDED

    def parties(self) -> tuple[str, ...]:
        return (self.from_,) if self.from_ == self.to else (self.from_, self.to)

    def to_json(self) -> dict[str, Any]:
        """The call as REST and the call-control notices show it."""
        out: dict[str, Any] = {
            "callId": self.call_id, "from": self.from_, "to": self.to,
            "status": self.status.value, "direction": self.direction.value,
            "startedAt": self.started_ms, "updatedAt": self.updated_ms,
        }
        for key, value in (("ringingAt", self.ringing_ms), ("answeredAt", self.answered_ms),
                           ("endedAt", self.ended_ms), ("answeredBy", self.answered_by)):
            if value is not None:
                out[key] = value
        if self.end_reason is not None:
            out["endReason"] = self.end_reason.value
        return out

    @classmethod
    def from_json(cls, project_id: int, data: dict[str, Any]) -> Call:
        """Inverse of :meth:`to_json` (trusted input from the store)."""
        reason = data.get("endReason")
        return cls(project_id, data["callId"], data["from"], data["to"],
                   CallStatus(data["status"]), Direction(data["direction"]),
                   data["startedAt"], data["updatedAt"], data.get("ringingAt"),
                   data.get("answeredAt"), data.get("endedAt"),
                   EndReason(reason) if reason else None, data.get("answeredBy"))


def parse_status(raw: object) -> CallStatus:
    """A status as a client or REST caller spells it (case-insensitive)."""
    if isinstance(raw, str):
        for status in CallStatus:
            if raw.strip().lower() == status.value.lower():
                return status
    raise CallError(f"unknown call status {raw!r} (Calling, Ringing, Answered, Ended)",
                    Result.INVALID_REQUEST)


def advance(call: Call, status: CallStatus, now_ms: int, reason: EndReason | None = None,
            answered_by: str | None = None) -> Call:
    """``call`` moved to ``status``, or :class:`CallError` when the move is not allowed."""
    if status not in NEXT[call.status]:
        raise CallError(f"call {call.call_id}: {call.status.value} → {status.value} "
                        "is not a valid transition")
    changes: dict[str, Any] = {"status": status, "updated_ms": now_ms}
    if status is CallStatus.RINGING:
        changes["ringing_ms"] = now_ms
    elif status is CallStatus.ANSWERED:
        changes["answered_ms"] = now_ms
        changes["answered_by"] = answered_by
    elif status is CallStatus.ENDED:
        changes["ended_ms"] = now_ms
        changes["end_reason"] = reason or EndReason.HANGUP
    return replace(call, **changes)


ENDED_KEPT = 10_000


@dataclass
class CallBook:
    """The calls of every project on this hub: active ones, and the latest ended ones.

    Ended calls are kept (the newest ``ended_kept``) so that a late or repeated report
    about a call that has ended is refused or ignored, not taken for a new call.
    """

    calls: dict[tuple[int, str], Call] = field(default_factory=dict)  # in progress
    ended: dict[tuple[int, str], Call] = field(default_factory=dict)  # oldest first
    ended_kept: int = ENDED_KEPT

    def find(self, project_id: int, call_id: str) -> Call | None:
        """A call in progress or recently ended, or None."""
        key = (project_id, call_id)
        return self.calls.get(key) or self.ended.get(key)

    def get(self, project_id: int, call_id: str) -> Call:
        call = self.find(project_id, call_id)
        if call is None:
            raise CallError(f"call {call_id!r} not found")
        return call

    def start(self, call: Call) -> Call:
        if self.find(call.project_id, call.call_id) is not None:
            raise CallError(f"call {call.call_id!r} already exists")
        self.calls[(call.project_id, call.call_id)] = call
        return call

    def put(self, call: Call) -> Call:
        """Record a call's new value; ended calls leave the calls in progress."""
        key = (call.project_id, call.call_id)
        if call.active:
            self.calls[key] = call
        else:
            self.calls.pop(key, None)
            self.ended.pop(key, None)
            self.ended[key] = call
            while len(self.ended) > self.ended_kept:
                del self.ended[next(iter(self.ended))]
        return call

    def revert(self, call: Call, before: Call | None) -> Call | None:
        """Put ``before`` back where ``call`` was put, unless something newer replaced
        ``call`` meanwhile; the call's value now (None: no such call)."""
        key = (call.project_id, call.call_id)
        current = self.calls.get(key) or self.ended.get(key)
        if current is not call:
            return current
        self.calls.pop(key, None)
        self.ended.pop(key, None)
        return self.put(before) if before is not None else None

    def replace_project(self, project_id: int, calls: list[Call]) -> None:
        """Make ``calls`` the project's calls in progress (a node loading the shared book)."""
        for key in [k for k in self.calls if k[0] == project_id]:
            del self.calls[key]
        for call in calls:
            self.put(call)

    def active(self, project_id: int) -> list[Call]:
        return sorted((c for (pid, _), c in self.calls.items() if pid == project_id),
                      key=lambda c: c.started_ms)

    def of_user(self, project_id: int, user_id: str) -> list[Call]:
        """The user's calls in progress, in the order they were made."""
        return [c for (pid, _), c in self.calls.items()
                if pid == project_id and user_id in c.parties()]
