"""An async iterator over a client's topic messages, for code that prefers ``async for``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from monitor.client.errors import HubError

_END = object()

#: ``(payload, epoch) -> True`` when a message is already covered by a snapshot.
StaleCheck = Callable[[dict[str, Any], "str | None"], bool]


class MessageStream:
    """The ``messagefromtopic`` bodies and ``resync`` events of one client, in order.

    Made by :meth:`HubClient.messages`; it receives everything from that call on. A
    resync item is a dict with ``"resync": True`` (see the ``resync`` event). Iteration
    ends when the client is closed, and raises the client's error when it stopped on
    one (for example a refused token on reconnect). Call :meth:`close` to stop early.
    """

    def __init__(self, is_stale: StaleCheck, unregister: Callable[[MessageStream], None]
                 ) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._is_stale = is_stale
        self._unregister = unregister
        self._error: HubError | None = None
        self._ended = False

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # every later call ends too
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            payload, epoch = item
            if payload.get("resync") or not self._is_stale(payload, epoch):
                return payload  # type: ignore[no-any-return]  # queue items are untyped

    def pending(self) -> int:
        """How many items wait to be read."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stop receiving; iteration ends after what is already queued."""
        self._unregister(self)
        self._end(None)

    def _put(self, payload: dict[str, Any], epoch: str | None) -> None:
        if not self._ended:
            self._queue.put_nowait((payload, epoch))

    def _end(self, error: HubError | None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._queue.put_nowait(_END)
