"""The real feed: :class:`monitor.client.HubClient` turned into the monitor's feed events.

The client reconnects with backoff, resumes topics and re-reads them when the hub cannot
replay; this adapter snapshots every subscribed topic on the first connect and reports
the link's state, including when the next attempt is due.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from monitor.client import Backoff, HubClient, HubError
from monitor.tokens import decode_unverified
from monitor.tui.feed import (
    CONNECTED,
    CONNECTING,
    OFFLINE,
    RECONNECTING,
    RESYNCING,
    ChangeRefused,
    FeedEvent,
    Link,
    Session,
    Snapshot,
    TopicMessage,
)

_CLOSED = object()


class _ReportingBackoff(Backoff):
    """The client's backoff, telling the feed each delay it picks (for "reconnecting in N s")."""

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        chosen = super().delay(attempt, rng)
        report = self.__dict__.get("report")
        if report is not None:
            report(chosen)
        return chosen


def session_from_authen(reply: dict[str, Any], token: str | None) -> Session:
    """Who the AUTHEN reply says we are, and what the token grants."""
    publishes: dict[str, tuple[str, ...]] = {}
    for grant in reply.get("attributes") or ():
        if isinstance(grant, dict) and isinstance(grant.get("attribute"), str) \
                and isinstance(grant.get("topic"), str):
            name = grant["attribute"]
            publishes[name] = (*publishes.get(name, ()), grant["topic"])
    subscribe = tuple(t for t in reply.get("subscribe") or () if isinstance(t, str))
    display_name = role = None
    if token:
        try:
            claims = decode_unverified(token)[1]
        except Exception:  # a token the hub accepted is readable; be safe anyway
            claims = {}
        name, claimed = claims.get("displayName"), claims.get("role")
        display_name = name if isinstance(name, str) and name else None
        role = claimed if isinstance(claimed, str) and claimed else None
    supervise = tuple(t for t in reply.get("supervise") or () if isinstance(t, str))
    return Session(str(reply.get("userId") or "?"), subscribe, publishes, display_name,
                   role, supervise)


def snapshot_event(topic: str, reply: dict[str, Any]) -> Snapshot:
    values = reply.get("values")
    seq = reply.get("seq")
    return Snapshot(topic, values if isinstance(values, list) else [],
                    seq if isinstance(seq, int) else None, reply.get("epoch"))


class HubFeed:
    """Feed events from a live hub connection."""

    def __init__(self, url: str, token: str, *,
                 token_provider: Callable[[], str] | None = None,
                 backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        base = backoff or Backoff(base=0.5, cap=15.0)
        reporting = _ReportingBackoff(base.base, base.cap, base.factor, base.max_attempts)
        object.__setattr__(reporting, "report", self._retry_in)
        self.client = HubClient(url, token, token_provider=token_provider, backoff=reporting)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._state = CONNECTING
        self._retry_at: float | None = None
        self._ever_connected = False
        self._resyncing: set[str] = set()  # topics whose snapshot is still on its way
        self._starter: asyncio.Task[None] | None = None
        self.client.on("authen", self._on_authen)
        self.client.on("disconnect", self._on_disconnect)
        self.client.on("messagefromtopic", self._on_message)
        self.client.on("resync", self._on_resync)

    # -- feed API --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[FeedEvent]:
        if self._starter is None:
            self._starter = asyncio.create_task(self._start())
        while True:
            event = await self._queue.get()
            if event is _CLOSED:
                return
            yield event

    async def change_attribute(self, name: str, value: Any) -> None:
        try:
            await self.client.change_attribute(name, value)
        except HubError as exc:
            raise ChangeRefused(exc.r, exc.message) from None

    async def set_user_attribute(self, user_id: str, name: str, value: Any,
                                 reason: str | None = None) -> None:
        """A supervisor's change of another user's attribute (service 1020)."""
        try:
            await self.client.set_user_attribute(user_id, name, value, reason=reason)
        except HubError as exc:
            raise ChangeRefused(exc.r, exc.message) from None

    async def log_out_user(self, user_id: str, reason: str) -> None:
        """A supervisor's logout of another user (service 1021)."""
        try:
            await self.client.log_out_user(user_id, reason=reason)
        except HubError as exc:
            raise ChangeRefused(exc.r, exc.message) from None

    def reconnect(self) -> None:
        """Connect again after the client stopped for good (a supervisor's logout, a
        refused token): only when the operator asks."""
        if self.client.running or (self._starter is not None and not self._starter.done()):
            return
        self._starter = asyncio.create_task(self._start())

    async def resync(self, topic: str) -> None:
        try:
            reply = await self.client.snapshot(topic)
        except HubError:
            return  # the client resyncs by itself after it reconnects
        self._queue.put_nowait(snapshot_event(topic, reply))

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
        await self.client.close()
        self._queue.put_nowait(_CLOSED)

    # -- the client's events ---------------------------------------------------------------

    def _link(self, state: str, detail: str = "") -> None:
        self._state = state
        retry_at = self._retry_at if state in (CONNECTING, RECONNECTING) else None
        self._queue.put_nowait(Link(state, retry_at, detail))

    def _retry_in(self, seconds: float) -> None:
        self._retry_at = self._clock() + seconds
        if self._state in (CONNECTING, RECONNECTING):
            self._link(self._state)

    async def _start(self) -> None:
        self._link(CONNECTING)
        try:
            await self.client.connect(retry=True)
        except HubError as exc:
            self._link(OFFLINE, str(exc))

    async def _on_authen(self, reply: dict[str, Any]) -> None:
        if reply.get("r") != 0:
            self._link(OFFLINE, f"refused: {reply.get('message')} (r={reply.get('r')})")
            return
        self._retry_at = None
        session = session_from_authen(reply, self.client.token)
        self._queue.put_nowait(session)
        if not self._ever_connected:
            # Handlers run one at a time: messages wait behind these snapshots, and the
            # client drops those the snapshots already cover.
            for topic in session.subscribe:
                try:
                    snapshot = await self.client.snapshot(topic)
                except HubError as exc:
                    self._link(CONNECTING, f"snapshot of {topic} failed: {exc}")
                    continue
                self._queue.put_nowait(snapshot_event(topic, snapshot))
            self._ever_connected = True
        else:
            # Back after a drop: topics the hub could not replay come back as snapshots
            # (resync events). Until then the grid is not whole: it stays marked stale.
            recovered = reply.get("recovered")
            self._resyncing = {topic for topic, ok in recovered.items() if not ok} \
                if isinstance(recovered, dict) else set()
            if self._resyncing:
                self._link(RESYNCING)
                return
        self._link(CONNECTED)

    def _on_disconnect(self, payload: dict[str, Any]) -> None:
        if payload.get("reconnecting"):
            self._link(RECONNECTING, str(payload.get("reason") or ""))
        else:
            error = self.client.error
            self._link(OFFLINE, str(error) if error else str(payload.get("reason") or ""))

    def _on_message(self, body: dict[str, Any]) -> None:
        message = body.get("message")
        topic = body.get("topic")
        if isinstance(message, dict) and isinstance(topic, str):
            seq = body.get("seq")
            self._queue.put_nowait(TopicMessage(topic, message,
                                                seq if isinstance(seq, int) else None))

    def _on_resync(self, payload: dict[str, Any]) -> None:
        snapshot = payload.get("snapshot")
        topic = payload.get("topic")
        if not isinstance(topic, str):
            return
        if isinstance(snapshot, dict):
            self._queue.put_nowait(snapshot_event(topic, snapshot))
            if topic in self._resyncing:
                self._resyncing.discard(topic)
                if not self._resyncing and self._state == RESYNCING:
                    self._link(CONNECTED)
        elif self._state == RESYNCING:  # still not whole: say why
            self._link(RESYNCING, f"snapshot of {topic} failed: {payload.get('error')}")
