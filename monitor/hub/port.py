"""What the hub's edges may ask of the hub, and nothing more.

The WebSocket endpoint, the REST API, the call service and a cluster node are each given
a :class:`HubPort` (the :class:`~monitor.hub.server.Hub` is one) instead of the whole hub:
its settings, its metrics, the state, submitting effects, the time, and the few
connection-wide actions below. None of them imports the server or reads another's
private fields; this module imports nothing above the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from monitor.config import Config
from monitor.hub.calls import Call, CallBook
from monitor.hub.history import HistoryReader
from monitor.hub.limits import RateLimiter
from monitor.hub.metrics import HubMetrics
from monitor.hub.state import Effects, HubState, Send, Session


class CallPort(Protocol):
    """What the edges may ask of the call service."""

    @property
    def book(self) -> CallBook: ...

    def handles(self, service: int) -> bool:
        """Whether ``service`` is a call-control request."""
        ...

    def request(self, peer: Any, session: Session, service: int, body: dict[str, Any],
                request_id: Any) -> None:
        """Answer one call-control request of a connection."""
        ...

    def report(self, project_id: int, call_id: str, from_: object, to: object,
               status: object) -> tuple[Call, Effects]:
        """A telephony system reports a call's status."""
        ...

    def party_gone(self, project_id: int, user_id: str) -> None:
        """A user has no connection left: end their client-driven calls."""
        ...

    def learn(self, call: Call) -> None:
        """A call's latest value, decided on another node."""
        ...

    def load_project(self, project_id: int, calls: list[Call]) -> None:
        """Make ``calls`` the project's calls in progress (a node loading the shared book)."""
        ...


class HubPort(Protocol):
    """The hub as its edges see it."""

    @property
    def config(self) -> Config: ...

    @property
    def metrics(self) -> HubMetrics: ...

    @property
    def state(self) -> HubState: ...

    @property
    def calls(self) -> CallPort | None: ...

    @property
    def auth_limiter(self) -> RateLimiter: ...

    @property
    def history(self) -> HistoryReader:
        """The event log: history and reports."""
        ...

    def now_ms(self) -> int:
        """Epoch milliseconds (the one clock of the hub's decisions)."""
        ...

    def submit(self, effects: Effects) -> asyncio.Future[bool]:
        """Store, then send: the only way state changes leave the hub."""
        ...

    def emit(self, sends: Sequence[Send]) -> None:
        """Send frames now, with no store behind them (what the log already decided)."""
        ...

    def secret_for(self, sid: str) -> str | None:
        """The secret of API key ``sid``, if the hub has it."""
        ...

    def connection_closed(self, peer: Any) -> None:
        """A connection is gone: presence, then the calls of a user with none left."""
        ...

    def kick(self, project_id: int, user_id: str) -> int:
        """Close every connection of a user, everywhere; the connections closed here."""
        ...

    def close_user(self, project_id: int, user_id: str, code: int = ...,
                   reason: str = ...) -> int:
        """Close a user's connections on this node (offline without the grace period),
        with ``code`` (default 4005, disconnected by an administrator)."""
        ...

    def log_out(self, project_id: int, user_id: str, effects: Effects) -> asyncio.Future[bool]:
        """Submit a forced logout's ``effects`` (the core's: the hold, LOGGED_OUT to the
        user's connections), then close the user's connections everywhere with 4006."""
        ...

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection of this node."""
        ...

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` answers."""
        ...

    def users_online(self) -> int:
        """Users whose onlineStatus is online, on every node."""
        ...

    def store_failures(self) -> int:
        """Batches the store could not make durable since the start."""
        ...
