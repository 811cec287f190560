"""Event dispatch of a client: handlers run one event at a time, in the order the events
happened, off the socket reader (a slow handler never delays a PING answer)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Literal, get_args

from monitor.client.errors import HubError
from monitor.client.stream import MessageStream, StaleCheck

log = logging.getLogger("monitor.client")

EventName = Literal["messagefromtopic", "authen", "disconnect", "connect",
                    "requestnewtoken", "otherdeviceauthen", "resync",
                    "incomingcall", "callstate", "loggedout"]
#: The events :meth:`HubClient.on` accepts.
EVENTS: frozenset[str] = frozenset(get_args(EventName))

#: A handler gets the event's payload (a dict); it may be a plain or an async function.
Handler = Callable[[dict[str, Any]], Any]

_STOP = object()


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; True if it was set.

    Unlike ``asyncio.wait_for`` on Python 3.11, never swallows a cancellation that
    arrives together with the event.
    """
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
_END_STREAMS = object()


class EventDispatcher:
    """Handlers and message streams of one client, fed through one ordered queue.

    ``skip`` says whether a topic message is stale (already covered by a snapshot) when
    its turn comes; ``on_result`` sees what each handler returned.
    """

    def __init__(self, skip: StaleCheck, is_stale: StaleCheck,
                 on_result: Callable[[str, Any], None]) -> None:
        self._skip = skip
        self._is_stale = is_stale
        self._on_result = on_result
        self._handlers: dict[str, list[Handler]] = {}
        self._streams: set[MessageStream] = set()
        self._queue: asyncio.Queue[tuple[Any, Any, str | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def on(self, event: str, handler: Handler) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {sorted(EVENTS)}")
        self._handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Handler) -> None:
        with suppress(ValueError):
            self._handlers.get(event, []).remove(handler)

    def has_handlers(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def stream(self) -> MessageStream:
        stream = MessageStream(self._is_stale, self._streams.discard)
        self._streams.add(stream)
        return stream

    def emit(self, event: str, payload: dict[str, Any], epoch: str | None = None) -> None:
        """Queue an event; ``epoch`` tags topic messages for the stale check."""
        self._queue.put_nowait((event, payload, epoch))

    def end_streams(self, error: HubError | None) -> None:
        """After the events queued so far, end every stream (raising ``error`` if any)."""
        self._queue.put_nowait((_END_STREAMS, error, None))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(self._queue))

    def stop(self) -> asyncio.Task[None] | None:
        """Finish the events queued so far, then stop; return the task to await. Later
        events wait in a fresh queue for the next :meth:`start`."""
        task, self._task = self._task, None
        if task is not None:
            self._queue.put_nowait((_STOP, None, None))
            self._queue = asyncio.Queue()
        return task

    async def _run(self, queue: asyncio.Queue[tuple[Any, Any, str | None]]) -> None:
        while True:
            event, payload, epoch = await queue.get()
            if event is _STOP:
                return
            if event is _END_STREAMS:
                for stream in list(self._streams):
                    stream._end(payload)
                self._streams.clear()
                continue
            if event == "messagefromtopic" and self._skip(payload, epoch):
                continue
            if event in ("messagefromtopic", "resync"):
                for stream in list(self._streams):
                    stream._put(payload, epoch)
            for handler in list(self._handlers.get(event, ())):
                try:
                    result = handler(payload)
                    if inspect.isawaitable(result):
                        result = await result
                except Exception:
                    log.exception("%s handler %r failed", event, handler)
                    continue
                self._on_result(event, result)
