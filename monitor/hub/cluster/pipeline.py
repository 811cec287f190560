"""The writer of a multi-node hub: propose to Redis, then read the outcome back.

The one commit pipeline (:mod:`monitor.hub.pipeline`) runs a node's batches through
:class:`RedisWriter`: a batch's ops go to Redis as one pipeline of scripts (one round
trip), and the write completes once this node has read the outcome from the log, so the
batch's sends (and its ``then`` sends, such as AUTHEN replies) go out after every node can
see what they announce. Without Redis the batch fails: its ``failure_sends`` go out
(r = 29) and nothing is acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from monitor.hub.calls import Call
from monitor.hub.cluster.bus import LogReader
from monitor.hub.cluster.ops import Disconnect, Expire
from monitor.hub.cluster.redis_store import RedisStore

log = logging.getLogger("monitor.hub")

READ_BACK_S = 5.0  # longest wait for this node to read its own change from the log


class WriterNode(Protocol):
    """What the writer needs of its node (:class:`~monitor.hub.cluster.node.ClusterNode`)."""

    store: RedisStore
    reader: LogReader
    last_error: str

    def find_call(self, project_id: int, call_id: str) -> Call | None: ...

    def write_failed(self, exc: BaseException) -> None: ...

    def retry_later(self, ops: list[Any]) -> None: ...


class RedisWriter:
    """A :class:`~monitor.hub.pipeline.Writer` over a node's Redis store and log reader."""

    def __init__(self, node: WriterNode) -> None:
        self.node = node

    async def write(self, ops: list[Any]) -> set[int]:
        node = self.node
        last, refused = await node.store.write(ops, node.find_call)
        node.last_error = ""
        if not await node.reader.reached(last, READ_BACK_S):
            log.warning("event=read_back_slow targets=%s", last)
        return refused

    def failed(self, ops: Sequence[Any], error: BaseException) -> None:
        self.node.write_failed(error)
        # Connections that left while Redis was away must leave there too.
        self.node.retry_later([op for op in ops if isinstance(op, Disconnect | Expire)])
