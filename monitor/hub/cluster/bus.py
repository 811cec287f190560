"""The message bus between nodes: each node reads every project's log, in order.

One reader task per node (``XREAD BLOCK`` on every project's stream). Each entry is
applied to the node's view and its frames go to this node's connections, in log order:
so every connection gets each topic message once, in seq order, whichever node caused
it. Writers wait here (:meth:`LogReader.reached`) until the node has read their change,
so what a node answers after a write includes it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from monitor.hub.cluster.redis_store import connect, prefix, stream_id

log = logging.getLogger("monitor.hub")

BLOCK_MS = 2000
READ_COUNT = 2000
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0

Apply = Callable[[int, str, dict[str, str]], None]


class LogReader:
    """Reads the logs of ``positions`` (project -> last id read) and applies each entry."""

    def __init__(self, url: str, apply: Apply, flush: Callable[[], None],
                 lost: Callable[[BaseException], None],
                 back: Callable[[], Awaitable[None]]) -> None:
        self.url = url
        self.positions: dict[int, str] = {}
        self.connected = True
        self._apply = apply
        self._flush = flush
        self._lost = lost
        self._back = back
        self._client = connect(url, BLOCK_MS / 1000 + 5)
        # XREAD's reply as hiredis parses it (nested lists): redis-py's own callback
        # turns each entry into a dict in Python (2.3 µs per entry read without it, 4.0 with).
        self._client.set_response_callback("XREAD", _raw)
        self._command: Callable[..., Awaitable[Any]] = self._client.execute_command
        self._waiters: list[tuple[dict[int, str], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._streams: dict[str, int] = {}  # stream key -> project id

    def start(self, positions: Mapping[int, str]) -> None:
        self.positions = dict(positions)
        self._streams = {prefix(p) + "log": p for p in self.positions}
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        await self._client.aclose()

    # -- waiting for a point of the log ---------------------------------------------------

    def has_read(self, targets: Mapping[int, str]) -> bool:
        return all(stream_id(self.positions.get(p, "0-0")) >= stream_id(i)
                   for p, i in targets.items())

    async def reached(self, targets: Mapping[int, str], timeout: float) -> bool:
        """Wait until this node has applied each project's log up to ``targets``."""
        if self.has_read(targets):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((dict(targets), future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False

    def _wake(self) -> None:
        waiting = []
        for targets, future in self._waiters:
            if future.done():
                continue
            if self.has_read(targets):
                future.set_result(None)
            else:
                waiting.append((targets, future))
        self._waiters = waiting

    # -- reading --------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            try:
                if not self.connected:
                    await self._back()  # raises while Redis is still away
                    self.connected = True
                    delay = BACKOFF_MIN_S
                    log.info("event=redis_reconnected url=%s", self.url)
                keys = [prefix(p) + "log" for p in self.positions]
                reply = await self._command(
                    "XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", *keys,
                    *self.positions.values(), keys=keys)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    self.connected = False
                    log.warning("event=redis_down url=%s error=%r", self.url, str(exc))
                    self._lost(exc)
                wait = delay * random.uniform(0.5, 1.0)
                log.info("event=redis_reconnecting retry_in_s=%.2f error=%r", wait, str(exc))
                await asyncio.sleep(wait)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self._read(reply)

    def _read(self, reply: Any) -> None:
        """Apply a raw XREAD reply: [[stream, [[id, [field, value, ...]], ...]], ...]
        (RESP3 servers answer a map of stream to entries)."""
        if not reply:
            return
        items = reply.items() if isinstance(reply, dict) else reply
        apply, positions = self._apply, self.positions
        for stream, entries in items:
            project_id = self._streams.get(stream)
            if project_id is None or not entries:
                continue
            for entry_id, flat in entries:
                pairs = iter(flat)
                apply(project_id, entry_id, dict(zip(pairs, pairs, strict=True)))
                positions[project_id] = entry_id
        self._flush()
        self._wake()


def _raw(response: Any, **options: Any) -> Any:
    return response
