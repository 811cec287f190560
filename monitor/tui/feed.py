"""What the monitor consumes: an async stream of feed events and a way to change an attribute.

The app never talks to the wire itself. :class:`HubFeed` (in ``hubfeed.py``) wraps the real
client; :class:`ScriptedFeed` plays events given to it, for tests and demos.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from monitor.protocol import MESSAGES, Result
from monitor.tui.text import safe_data, safe_text


@dataclass(frozen=True)
class Session:
    """Authenticated: who the token is for and what it grants."""

    user_id: str
    subscribe: tuple[str, ...] = ()
    publishes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Attribute name -> the topics a change of it goes to."""
    display_name: str | None = None
    role: str | None = None
    """The token's ``role`` claim, if it has one (``supervisor``, ``agent``...)."""
    supervise: tuple[str, ...] = ()
    """The topics whose members the token may act on (``*``: everyone), as the AUTHEN
    reply says: supervisor actions are offered only when there are some."""


@dataclass(frozen=True)
class Snapshot:
    """A TOPIC_SNAPSHOT reply: every current value on ``topic`` as of ``seq``."""

    topic: str
    values: Sequence[Mapping[str, Any]]
    seq: int | None = None
    epoch: Any = None


@dataclass(frozen=True)
class TopicMessage:
    """One SUBSCRIBE_FROM_SERVER (102) body."""

    topic: str
    message: Mapping[str, Any]
    seq: int | None = None


CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
RESYNCING = "resyncing"  # back, waiting for snapshots of topics the hub could not replay
OFFLINE = "offline"


@dataclass(frozen=True)
class Link:
    """The connection's state. ``connected`` comes once the data is whole again."""

    state: str
    retry_at: float | None = None
    """Epoch seconds of the next attempt, while reconnecting."""
    detail: str = ""


FeedEvent = Session | Snapshot | TopicMessage | Link


def safe_event(event: FeedEvent) -> FeedEvent:
    """``event`` with every string from the hub passed through :func:`safe_text`: what
    the app does first with each event, whichever feed it came from, so that the model
    and every widget only ever hold text that is safe to draw. Unchanged events are
    returned as they are."""
    if isinstance(event, TopicMessage):
        message = safe_data(event.message)
        topic = safe_text(event.topic)
        if message is event.message and topic is event.topic:
            return event
        return replace(event, topic=topic, message=cast(Mapping[str, Any], message))
    if isinstance(event, Snapshot):
        values = safe_data(list(event.values))
        return replace(event, topic=safe_text(event.topic),
                       values=cast(Sequence[Mapping[str, Any]], values))
    if isinstance(event, Session):
        publishes = {safe_text(name): tuple(safe_text(t) for t in topics)
                     for name, topics in event.publishes.items()}
        return replace(event, user_id=safe_text(event.user_id),
                       subscribe=tuple(safe_text(t) for t in event.subscribe),
                       publishes=publishes,
                       display_name=None if event.display_name is None
                       else safe_text(event.display_name),
                       role=None if event.role is None else safe_text(event.role),
                       supervise=tuple(safe_text(t) for t in event.supervise))
    if isinstance(event, Link) and event.detail:
        return replace(event, detail=safe_text(event.detail))
    return event


class ChangeRefused(Exception):
    """The hub answered a CHANGE_ATTRIBUTE with ``r != 0``, or could not be reached."""

    def __init__(self, r: int | None, message: str) -> None:
        super().__init__(message)
        self.r = r
        self.message = message

    def __str__(self) -> str:
        return self.message if self.r is None else f"r={self.r}: {self.message}"


class Feed(Protocol):
    """The monitor's source of data and its one way of acting."""

    url: str

    def events(self) -> AsyncIterator[FeedEvent]:
        """Events in order, until the feed is closed."""
        ...

    async def change_attribute(self, name: str, value: Any) -> None:
        """Set an attribute of the token's user; raise :class:`ChangeRefused`."""
        ...

    async def resync(self, topic: str) -> None:
        """Read ``topic`` again; the answer arrives as a :class:`Snapshot` event."""
        ...

    async def close(self) -> None:
        ...


_CLOSED = object()
Answer = Callable[[str, Any], Awaitable[int | None] | int | None]


class ScriptedFeed:
    """A feed that plays the events pushed to it. ``answer(name, value)`` gives ``r``."""

    def __init__(self, events: Sequence[FeedEvent] = (), *, url: str = "ws://scripted/",
                 answer: Answer | None = None) -> None:
        self.url = url
        self.changes: list[tuple[str, Any]] = []
        self.resyncs: list[str] = []
        self._answer = answer
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        for event in events:
            self.push(event)

    def push(self, *events: FeedEvent) -> None:
        """Queue events for the app."""
        for event in events:
            self._queue.put_nowait(event)

    async def drained(self) -> None:
        """Wait until the app has handled every event pushed so far."""
        await self._queue.join()

    async def events(self) -> AsyncIterator[FeedEvent]:
        while True:
            event = await self._queue.get()
            try:
                if event is _CLOSED:
                    return
                yield event
            finally:
                self._queue.task_done()

    async def change_attribute(self, name: str, value: Any) -> None:
        self.changes.append((name, value))
        r: int | None = 0
        if self._answer is not None:
            answered = self._answer(name, value)
            r = await answered if isinstance(answered, Awaitable) else answered
        if r is None:
            raise ChangeRefused(None, "no answer from the hub")
        if r != 0:
            try:
                message = MESSAGES[Result(r)]
            except ValueError:
                message = "refused"
            raise ChangeRefused(r, message)

    async def resync(self, topic: str) -> None:
        self.resyncs.append(topic)

    async def close(self) -> None:
        self._queue.put_nowait(_CLOSED)
