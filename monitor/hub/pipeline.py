"""The commit pipeline: store first, then send, in the order things happened.

Everything submitted in one event-loop turn becomes one batch, written as one transaction
(group commit), so durability does not cap throughput. A batch's sends go out only once
its writes are durable, and always in submission order. Batches that queue up while a
write is in flight are merged into the next one.

One pipeline for every store, through the :class:`Writer` protocol. Three ways to write:
on the event loop at the end of the turn (a store whose commit does not wait for the
disk, such as SQLite in WAL mode with ``synchronous=NORMAL``, where a thread handoff
would cost more than the write); on one writer thread (``threaded=True``: commits that
fsync); or awaited (a writer whose ``write`` returns an awaitable: a store across the
network, such as Redis).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from monitor.hub.state import Effects, Send

log = logging.getLogger("monitor.hub")

Pending = tuple[Effects, "asyncio.Future[bool]"]


Refused = Collection[int]
"""The ``id()`` of each op an engine shared by several nodes refused (a guarded op whose
guard failed: see :meth:`~monitor.hub.state.Coordinator.guard`); the rest were written."""


class Writer(Protocol):
    """What the pipeline needs of a store."""

    def write(self, ops: list[Any]) -> Awaitable[Refused | None] | None:
        """Make ``ops`` durable in one transaction, or raise. Return None once done, or
        an awaitable that completes (or raises) when it is, with the ops refused, if any.
        Each :class:`Effects`' ``log`` entries follow its ``ops``."""
        ...

    def failed(self, ops: Sequence[Any], error: BaseException) -> None:
        """A batch could not be made durable (its undos have run)."""
        ...


class CommitPipeline:
    """Orders :class:`Effects`: ``writer`` makes their ops durable, then ``emit`` sends."""

    def __init__(self, writer: Writer, emit: Callable[[list[Send]], None], *,
                 threaded: bool = False) -> None:
        self._writer = writer
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix="store-writer")
                          if threaded else None)
        self._gathering: list[Pending] = []
        self._queued: deque[list[Pending]] = deque()
        self._writing: asyncio.Future[Any] | None = None
        self._sealing = False
        self.failures = 0
        self.refused = 0  # effects an engine shared by several nodes refused
        self.batches = 0

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
        while self._queued and self._writing is None:
            if any(effects.ops or effects.log for effects, _ in self._queued[0]):
                break
            self._release(self._queued.popleft(), True)
        if self._writing is not None or not self._queued:
            return
        # Group commit: everything queued now goes in one transaction.
        batch = [pending for queued in self._queued for pending in queued]
        self._queued.clear()
        # The event log's entries go in the same transaction as the changes they record.
        ops = [op for effects, _ in batch for op in (*effects.ops, *effects.log)]
        if self._executor is not None:
            self._wait(batch, ops, self._loop.run_in_executor(
                self._executor, self._writer.write, ops))
            return
        try:
            written = self._writer.write(ops)
        except Exception as exc:
            self._failed(exc, batch, ops)
            return
        if written is None:
            self._done(batch)
        else:
            self._wait(batch, ops, asyncio.ensure_future(written))

    def _wait(self, batch: list[Pending], ops: list[Any], writing: asyncio.Future[Any]) -> None:
        self._writing = writing
        writing.add_done_callback(lambda f: self._written(batch, ops, f))

    def _written(self, batch: list[Pending], ops: list[Any],
                 future: asyncio.Future[Any]) -> None:
        self._writing = None
        error = asyncio.CancelledError() if future.cancelled() else future.exception()
        if error is not None:
            self._failed(error, batch, ops)
        else:
            self._done(batch, future.result())
        self._pump()

    def _done(self, batch: list[Pending], refused: Refused | None = None) -> None:
        self.batches += 1
        if not refused:
            self._release(batch, True)
            return
        # Refused effects fail alone (another node won); the others were written.
        lost = {id(p) for p in batch if any(id(op) in refused for op in p[0].ops)}
        self.refused += len(lost)
        self._release([p for p in batch if id(p) not in lost], True)
        self._release([p for p in batch if id(p) in lost], False, refused=True)

    def _failed(self, error: BaseException, batch: list[Pending], ops: list[Any]) -> None:
        self.failures += 1
        log.error("event=store_write_failed error=%r changes=%d", str(error), len(batch))
        self._release(batch, False)
        try:
            self._writer.failed(ops, error)
        except Exception:
            log.exception("event=store_failure_handling_failed")

    def _release(self, batch: list[Pending], durable: bool, refused: bool = False) -> None:
        if not durable:
            # Newest first across the whole batch: two changes of one value undo to the first.
            for effects, _ in reversed(batch):
                for undo in reversed(effects.undo):
                    try:
                        undo()
                    except Exception:  # one broken undo must not strand the rest
                        log.exception("event=undo_failed")
        for effects, future in batch:
            if durable:
                for make in effects.then:
                    self._send(make)
            if durable:
                self._send(partial(getattr, effects, "sends"))
            elif refused and effects.refused_sends:
                self._send(partial(getattr, effects, "refused_sends"))
            else:
                self._send(partial(getattr, effects, "failure_sends"))
            if not future.done():
                future.set_result(durable)

    def _send(self, make: Callable[[], list[Send]]) -> None:
        """Emit what ``make`` makes; one unsendable frame must not strand the batch."""
        try:
            self._emit(make())
        except Exception:
            log.exception("event=emit_failed")

    async def drain(self) -> None:
        """Wait until everything submitted so far is written and sent."""
        while self._gathering or self._queued or self._writing is not None or self._sealing:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        if self._writing is not None and self._executor is None:
            self._writing.cancel()  # an awaited write: its batch fails, unacknowledged
        if self._executor is not None:
            self._executor.shutdown(wait=True)
