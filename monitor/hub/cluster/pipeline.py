"""The commit pipeline of a multi-node hub: propose to Redis, read it back, then send.

Same contract as :class:`monitor.hub.pipeline.CommitPipeline`: what is submitted in one
event-loop turn is one batch; a batch's ops go to Redis as one pipeline of scripts (one
round trip), and its sends go out, in submission order, once Redis has answered and this
node has read the outcome from the log. Without Redis, the batch fails: its
``failure_sends`` go out (r = 29) and nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitor.hub.cluster.ops import Connect, Disconnect, Expire
from monitor.hub.state import Effects, Send

if TYPE_CHECKING:
    from monitor.hub.cluster.node import ClusterNode

log = logging.getLogger("monitor.hub")

Pending = tuple[Effects, "asyncio.Future[bool]"]
READ_BACK_S = 5.0  # longest wait for this node to read its own change from the log


class ClusterPipeline:
    """Orders :class:`Effects` through Redis."""

    def __init__(self, node: ClusterNode, emit: Callable[[list[Send]], None]) -> None:
        self.node = node
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._gathering: list[Pending] = []
        self._queued: list[Pending] = []
        self._sealing = False
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        self.batches = 0

    def submit(self, effects: Effects) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = self._loop.create_future()
        self._gathering.append((effects, future))
        if not self._sealing:
            self._sealing = True
            self._loop.call_soon(self._seal)
        return future

    def _seal(self) -> None:
        self._sealing = False
        self._queued += self._gathering
        self._gathering = []
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._pump())

    async def _pump(self) -> None:
        while self._queued:
            # Everything queued while the previous batch was out goes in one round trip.
            batch, self._queued = self._queued, []
            ops: list[Any] = [op for effects, _ in batch for op in effects.ops]
            if not ops:
                self._release(batch, True)
                continue
            try:
                last = await self.node.store.write(ops, self.node.find_call)
            except asyncio.CancelledError:
                self._release(batch, False)
                raise
            except Exception as exc:
                self.failures += 1
                self.node.write_failed(exc)
                log.error("event=store_write_failed error=%r changes=%d", str(exc), len(batch))
                self._release(batch, False)
                continue
            self.batches += 1
            self.node.last_error = ""
            if not await self.node.reader.reached(last, READ_BACK_S):
                log.warning("event=read_back_slow targets=%s", last)
            self._release(batch, True)

    def _release(self, batch: list[Pending], durable: bool) -> None:
        if not durable:
            # Newest first across the whole batch: two changes of one value undo to the first.
            for effects, _ in reversed(batch):
                for undo in reversed(effects.undo):
                    undo()
        for effects, future in batch:
            if durable:
                for op in effects.ops:
                    if isinstance(op, Connect) and op.after is not None:
                        self._send(op.after)
                self._send(effects.sends)
            else:
                # Connections that left while Redis was away must leave there too.
                self.node.retry_later([op for op in effects.ops
                                       if isinstance(op, Disconnect | Expire)])
                self._send(effects.failure_sends)
            if not future.done():
                future.set_result(durable)

    def _send(self, sends: list[Send] | Callable[[], list[Send]]) -> None:
        """Emit ``sends`` (or what it returns: a Connect's answer); a failure is logged, so
        one unsendable frame cannot strand the rest of the batch."""
        try:
            self._emit(sends() if callable(sends) else sends)
        except Exception:
            log.exception("event=emit_failed")

    async def drain(self) -> None:
        """Wait until everything submitted so far is written and sent."""
        while self._gathering or self._queued or self._sealing or (
                self._task is not None and not self._task.done()):
            await asyncio.sleep(0.005)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
