"""REST routes of the history and reports (docs/protocol.md, "History and reports").

Answered from the engine's event log through :class:`~monitor.hub.history.HistoryReader`:
a user's logged changes, per-agent figures and per-interval call figures over a range.
Ranges are epoch milliseconds ``[from, to)``; one older than the retention is clipped to
it and the answer says so (``"clipped": true``).
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time,
# and ``Project`` is the caller's dependency.
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from monitor.hub import history
from monitor.hub.history import RangeError, clip_range, status_key
from monitor.hub.port import HubPort
from monitor.hub.rest import ERRORS, ApiError
from monitor.protocol import Result

MAX_MS = 1 << 44  # epoch ms well past any date a report asks about (year 2527)
# A report of a large centre takes tenths of a second of the store's time: each API key
# may have this many history or report requests in progress, the node this many in all.
IN_FLIGHT_PER_KEY = 2
IN_FLIGHT = 4


class InFlight:
    """History and report requests in progress, per API key and in all (HTTP 429,
    r = 26, beyond the caps: checked before the work starts)."""

    def __init__(self, per_key: int = IN_FLIGHT_PER_KEY, total: int = IN_FLIGHT) -> None:
        self.per_key = per_key
        self.total = total
        self.running: dict[str, int] = {}

    @contextmanager
    def slot(self, key: str) -> Iterator[None]:
        if self.running.get(key, 0) >= self.per_key or \
                sum(self.running.values()) >= self.total:
            raise ApiError(Result.RATE_LIMITED, "too many history or report requests in "
                           "progress: retry when one has been answered",
                           headers={"Retry-After": "1"})
        self.running[key] = self.running.get(key, 0) + 1
        try:
            yield
        finally:
            self.running[key] -= 1
            if not self.running[key]:
                del self.running[key]


class HistoryEvent(BaseModel):
    attribute: str
    value: str | int | float | bool | None = None
    oldValue: str | int | float | bool | None = None
    timestamp: int
    callId: str | None = None


class HistoryBody(BaseModel):
    userId: str
    events: list[HistoryEvent]
    nextCursor: str | None = None
    clipped: bool | None = None


class CallFigures(BaseModel):
    handled: int
    missed: int
    ringMs: int
    talkMs: int


class AgentFigures(BaseModel):
    userId: str
    displayName: str
    group: str | None = None
    onlineMs: int
    statusMs: dict[str, int]
    calls: CallFigures
    occupancy: float


class AgentsReport(BaseModel):
    from_: int = Field(alias="from")
    to: int
    agents: list[AgentFigures]
    clipped: bool | None = None


class Interval(BaseModel):
    start: int
    offered: int
    answered: int
    abandoned: int
    answeredWithinSla: int
    avgSpeedOfAnswerMs: int
    avgHandleMs: int


class CallsReport(BaseModel):
    from_: int = Field(alias="from")
    to: int
    interval: str
    slaSeconds: int
    intervals: list[Interval]
    clipped: bool | None = None


def add_history_routes(app: FastAPI, hub: HubPort,
                       project_of: Callable[..., Awaitable[int]]) -> None:
    """The routes, on ``app``; ``project_of``: the dependency giving a request's project
    (and checking its REST token)."""
    Project = Annotated[int, Depends(project_of)]
    in_flight = InFlight()

    def answer_range(start: int | None, end: int | None) -> history.Range:
        try:
            return clip_range(start, end, hub.now_ms(), hub.history.retention_days)
        except RangeError as exc:
            raise ApiError(Result.INVALID_REQUEST, str(exc)) from None

    def clipped(out: dict[str, Any], span: history.Range) -> dict[str, Any]:
        if span.clipped:
            out["clipped"] = True
        return out

    @app.get("/v1/users/{userId}/history", response_model=HistoryBody,
             response_model_exclude_unset=True, responses=ERRORS)
    async def user_history(
        userId: str, project_id: Project, request: Request,
        from_: Annotated[int | None, Query(alias="from", ge=0, le=MAX_MS)] = None,
        to: Annotated[int | None, Query(ge=0, le=MAX_MS)] = None,
        attribute: str | None = None,
        limit: Annotated[int, Query(ge=1, le=history.MAX_HISTORY_PAGE)] = history.HISTORY_PAGE,
        cursor: Annotated[str | None, Query(max_length=24)] = None,
    ) -> dict[str, Any]:
        """The user's attribute changes in `[from, to)` (epoch ms), oldest first, at most
        `limit` (1-10000, default 1000); `nextCursor` fetches the next page."""
        if hub.state.user(project_id, userId) is None:
            raise ApiError(Result.USER_NOT_FOUND, f"user {userId!r} not found")
        span = answer_range(from_, to)
        try:
            with in_flight.slot(request.state.key_sid):
                page = await hub.history.user_events(project_id, userId, span.start,
                                                     span.end, attribute, limit, cursor)
        except RangeError as exc:
            raise ApiError(Result.INVALID_REQUEST, str(exc)) from None
        out: dict[str, Any] = {"userId": userId, "events": page.events}
        if page.next_cursor is not None:
            out["nextCursor"] = page.next_cursor
        return clipped(out, span)

    @app.get("/v1/reports/agents", response_model=AgentsReport,
             response_model_exclude_unset=True, responses=ERRORS)
    async def report_agents(
        project_id: Project, request: Request,
        from_: Annotated[int | None, Query(alias="from", ge=0, le=MAX_MS)] = None,
        to: Annotated[int | None, Query(ge=0, le=MAX_MS)] = None,
        groupAttribute: str | None = None,
        group: str | None = None,
    ) -> dict[str, Any]:
        """Per agent over `[from, to)`: time online, split by the value of the status
        attribute (setting `status_attribute`); calls handled and missed, time ringing and
        talking; occupancy (talk / online). Agents neither online nor in a call then are
        left out; `groupAttribute` adds each agent's value of it, `group` keeps one."""
        span = answer_range(from_, to)
        if group is not None and groupAttribute is None:
            raise ApiError(Result.INVALID_REQUEST, "group needs groupAttribute")
        users = hub.state.project_users(project_id)
        groups: dict[str, str] = {}
        if groupAttribute is not None:
            for user in users:
                if groupAttribute in user.attributes:
                    groups[user.user_id] = status_key(user.value(groupAttribute))
            if group is not None:
                users = [u for u in users if groups.get(u.user_id) == group]
        ids = sorted(u.user_id for u in users)
        with in_flight.slot(request.state.key_sid):
            report = await history.agents_report(hub.history, project_id, ids, span.start,
                                                 span.end, hub.now_ms())
        agents = []
        for user_id, figures in report.items():
            known = hub.state.user(project_id, user_id)
            entry: dict[str, Any] = {"userId": user_id, "displayName":
                                     (known.display_name if known else None) or user_id}
            if groupAttribute is not None:
                entry["group"] = groups.get(user_id)
            entry.update(figures)
            agents.append(entry)
        return clipped({"from": span.start, "to": span.end, "agents": agents}, span)

    @app.get("/v1/reports/calls", response_model=CallsReport,
             response_model_exclude_unset=True, responses=ERRORS)
    async def report_calls(
        project_id: Project, request: Request,
        from_: Annotated[int | None, Query(alias="from", ge=0, le=MAX_MS)] = None,
        to: Annotated[int | None, Query(ge=0, le=MAX_MS)] = None,
        interval: Annotated[str, Query(pattern="^(15m|30m|1h|1d)$")] = "1h",
        slaSeconds: Annotated[int, Query(ge=0, le=86_400)] = history.DEFAULT_SLA_SECONDS,
    ) -> dict[str, Any]:
        """Calls offered in each interval of `[from, to)` (15m, 30m, 1h or 1d from
        `from`), with what became of them so far: answered (within `slaSeconds` of being
        offered), abandoned (ended unanswered), average speed of answer, average handle
        time (answer to end)."""
        span = answer_range(from_, to)
        try:
            with in_flight.slot(request.state.key_sid):
                intervals = await history.calls_report(
                    hub.history, project_id, span.start, span.end,
                    history.INTERVALS[interval], slaSeconds * 1000)
        except RangeError as exc:
            raise ApiError(Result.INVALID_REQUEST, str(exc)) from None
        return clipped({"from": span.start, "to": span.end, "interval": interval,
                        "slaSeconds": slaSeconds, "intervals": intervals}, span)
