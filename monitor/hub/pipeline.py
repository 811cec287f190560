"""The commit pipeline: store first, then send, in the order things happened.

Everything submitted in one event-loop turn becomes one batch, written as one transaction
(group commit), so durability does not cap throughput. A batch's sends go out only once
its writes are durable, and always in submission order.

Two ways to write: on the event loop at the end of the turn (``threaded=False``: for a
store whose commit does not wait for the disk, such as SQLite in WAL mode with
``synchronous=NORMAL``, where a thread handoff would cost more than the write), or on one
writer thread (``threaded=True``: for commits that fsync), where batches that queue up
while a write is in flight are merged into the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from monitor.hub.state import Effects, Send, StoreOp

log = logging.getLogger("monitor.hub")

Pending = tuple[Effects, "asyncio.Future[bool]"]


class CommitPipeline:
    """Orders :class:`Effects`: ``write`` their ops durably, then ``emit`` their sends."""

    def __init__(self, write: Callable[[list[StoreOp]], None],
                 emit: Callable[[list[Send]], None], *, threaded: bool = True) -> None:
        self._write = write
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix="store-writer")
                          if threaded else None)
        self._gathering: list[Pending] = []
        self._queued: deque[list[Pending]] = deque()
        self._writing = False
        self._sealing = False
        self.failures = 0

    def submit(self, effects: Effects) -> asyncio.Future[bool]:
        """Queue ``effects``; the future says whether they were made durable and sent."""
        future: asyncio.Future[bool] = self._loop.create_future()
        self._gathering.append((effects, future))
        if not self._sealing:
            self._sealing = True
            self._loop.call_soon(self._seal)
        return future

    def _seal(self) -> None:
        self._sealing = False
        batch, self._gathering = self._gathering, []
        if batch:
            self._queued.append(batch)
        self._pump()

    def _pump(self) -> None:
        # Release batches with nothing to write, until one needs the writer.
        while self._queued and not self._writing:
            if any(effects.ops for effects, _ in self._queued[0]):
                break
            self._release(self._queued.popleft(), True)
        if self._writing or not self._queued:
            return
        # Group commit: everything queued now goes in one transaction.
        batch = [pending for queued in self._queued for pending in queued]
        self._queued.clear()
        ops = [op for effects, _ in batch for op in effects.ops]
        if self._executor is None:
            try:
                self._write(ops)
            except Exception as exc:
                self._failed(exc, batch)
            else:
                self._release(batch, True)
            return
        self._writing = True
        future = self._loop.run_in_executor(self._executor, self._write, ops)
        future.add_done_callback(lambda f: self._written(batch, f))

    def _written(self, batch: list[Pending], future: asyncio.Future[None]) -> None:
        self._writing = False
        error = future.exception()
        if error is not None:
            self._failed(error, batch)
        else:
            self._release(batch, True)
        self._pump()

    def _failed(self, error: BaseException, batch: list[Pending]) -> None:
        self.failures += 1
        log.error("event=store_write_failed error=%r changes=%d", str(error), len(batch))
        self._release(batch, False)

    def _release(self, batch: list[Pending], durable: bool) -> None:
        if not durable:
            # Newest first across the whole batch: two changes of one value undo to the first.
            for effects, _ in reversed(batch):
                for undo in reversed(effects.undo):
                    undo()
        for effects, future in batch:
            try:
                self._emit(effects.sends if durable else effects.failure_sends)
            except Exception:  # one unsendable frame must not strand the rest of the batch
                log.exception("event=emit_failed")
            if not future.done():
                future.set_result(durable)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written and sent."""
        while self._gathering or self._queued or self._writing or self._sealing:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
