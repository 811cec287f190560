"""A send that cannot go out, in a batch of the commit pipeline, with either writer (one
node's store, written on a thread or inline, or a node of many's Redis writer).

Whatever one change's send does, every change of its batch is resolved and the others'
sends go out; when the batch cannot be stored, its undos run newest first across the
whole batch, so two changes of one value undo to the first. The Redis writer runs here
over a small stand-in for its node (no Redis): only the order is under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import pytest

from monitor.hub.cluster.ops import Connect, Disconnect, Expire
from monitor.hub.cluster.pipeline import RedisWriter
from monitor.hub.pipeline import CommitPipeline
from monitor.hub.state import Effects, Send
from tests.hub_unit.builders import PROJECT, T0
from tests.hub_unit.test_pipeline import Disk, Wire, effects

if TYPE_CHECKING:
    from monitor.hub.cluster.node import ClusterNode

Pipeline = CommitPipeline


class RefusingWire(Wire):
    """The emit side, refusing (raising) any batch of sends with a text starting "bad"."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def emit(self, sends: list[Send]) -> None:
        if any(text.startswith("bad") for _, text in sends):
            self.refused += 1
            raise ValueError("a frame no socket can carry")
        super().emit(sends)


class FakeNode:
    """What :class:`RedisWriter` uses of its node, over the ``Disk`` double."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.store = self
        self.reader = self
        self.last_error = ""
        self.retried: list[Any] = []

    async def write(self, ops: list[Any], find_call: Callable[[int, str], Any]
                    ) -> tuple[dict[int, str], set[int]]:
        self.disk.write(ops)
        return {PROJECT: f"{len(self.disk.writes)}-0"}, set()

    def find_call(self, project_id: int, call_id: str) -> None:
        return None

    async def reached(self, targets: dict[int, str], timeout: float) -> bool:
        return True

    def write_failed(self, exc: BaseException) -> None:
        self.last_error = str(exc)

    def retry_later(self, ops: list[Any]) -> None:
        self.retried += ops


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
def wire() -> RefusingWire:
    return RefusingWire()


@pytest.fixture
def node(disk: Disk) -> FakeNode:
    return FakeNode(disk)


@pytest.fixture(params=["threaded", "inline", "cluster"])
async def pipeline(request: pytest.FixtureRequest, disk: Disk, wire: RefusingWire,
                   node: FakeNode) -> AsyncIterator[Pipeline]:
    """The pipeline over one node's store both ways of writing, and over Redis."""
    pipe: Pipeline
    if request.param == "cluster":
        pipe = CommitPipeline(RedisWriter(cast("ClusterNode", node)), wire.emit)
    else:
        pipe = CommitPipeline(disk, wire.emit, threaded=request.param == "threaded")
    yield pipe
    await asyncio.wait_for(pipe.drain(), 5)
    pipe.close()


async def resolved(futures: list[asyncio.Future[bool]]) -> list[bool]:
    """The futures' results; fails (times out) if any of them is never resolved."""
    return list(await asyncio.wait_for(asyncio.gather(*futures), 2))


async def test_a_refused_send_leaves_the_rest_of_the_batch_sent_and_resolved(
        pipeline: Pipeline, wire: RefusingWire, disk: Disk) -> None:
    futures = [pipeline.submit(effects(tag)) for tag in ("A", "bad", "C", "D")]
    assert await resolved(futures) == [True] * 4
    assert wire.texts == ["A", "C", "D"] and wire.refused == 1
    assert len(disk.writes) == 1
    assert await resolved([pipeline.submit(effects("E"))]) == [True]
    assert wire.texts[-1] == "E"


async def test_a_refused_failure_send_leaves_the_rest_of_the_failed_batch_resolved(
        pipeline: Pipeline, wire: RefusingWire, disk: Disk) -> None:
    disk.failing = True
    log: list[str] = []
    futures = [pipeline.submit(effects(tag, log=log)) for tag in ("A", "bad", "C")]
    assert await resolved(futures) == [False] * 3
    assert wire.texts == ["A!", "C!"] and wire.refused == 1
    assert log == ["undo C", "undo bad", "undo A"]
    disk.failing = False
    assert await resolved([pipeline.submit(effects("D"))]) == [True]
    assert wire.texts[-1] == "D"


async def test_undo_of_a_failed_batch_runs_newest_first_across_its_changes(
        pipeline: Pipeline, wire: RefusingWire, disk: Disk) -> None:
    disk.failing = True
    log: list[str] = []
    first, second = effects("first", log=log), effects("second", log=log)
    first.undo.append(lambda: log.append("undo first, its second step"))
    futures = [pipeline.submit(first), pipeline.submit(second)]
    assert await resolved(futures) == [False, False]
    assert log == ["undo second", "undo first, its second step", "undo first"]
    assert wire.texts == ["first!", "second!"]


# -- sends made once durable, and the Redis writer's own steps -----------------------------


def connect(user_id: str) -> Connect:
    return Connect(PROJECT, user_id, f"conn-{user_id}", T0)


async def test_a_failing_then_send_leaves_the_rest_of_the_batch_sent_and_resolved(
        pipeline: Pipeline, wire: RefusingWire) -> None:
    def broken() -> list[Send]:
        raise RuntimeError("the connection went away meanwhile")

    pipe = pipeline
    batch = [Effects(ops=[connect("a")], then=[lambda: [(("a",), "AUTHEN a")]],
                     sends=[(("x",), "a online")]),
             Effects(ops=[connect("b")], then=[broken], sends=[(("x",), "b online")]),
             Effects(ops=[connect("c")], then=[lambda: [(("c",), "AUTHEN c")]],
                     sends=[(("x",), "c online")])]
    futures = [pipe.submit(one) for one in batch]
    assert await resolved(futures) == [True] * 3
    assert wire.texts == ["AUTHEN a", "a online", "b online", "AUTHEN c", "c online"]


async def test_a_failed_batch_still_leaves_redis_later(node: FakeNode, disk: Disk,
                                                      wire: RefusingWire) -> None:
    disk.failing = True
    gone = Disconnect(PROJECT, "a", "conn-a", T0, 0)
    expired = Expire(PROJECT, "b", T0)
    pipe = CommitPipeline(RedisWriter(cast("ClusterNode", node)), wire.emit)
    futures = [pipe.submit(Effects(ops=[gone], failure_sends=[(("a",), "bad")])),
               pipe.submit(Effects(ops=[connect("c"), expired]))]
    assert await resolved(futures) == [False, False]
    assert node.retried == [gone, expired]
    assert node.last_error == "disk on fire" and pipe.failures == 1
    await asyncio.wait_for(pipe.drain(), 5)
    pipe.close()


async def test_an_undo_that_raises_leaves_the_other_undos_run_and_the_batch_resolved(
        pipeline: Pipeline, wire: RefusingWire, disk: Disk) -> None:
    disk.failing = True
    log: list[str] = []

    def broken() -> None:
        raise RuntimeError("undo of a value that moved on")

    first, second = effects("first", log=log), effects("second", log=log)
    second.undo.insert(0, broken)
    futures = [pipeline.submit(first), pipeline.submit(second)]
    assert await resolved(futures) == [False, False]
    assert log == ["undo second", "undo first"]
    assert wire.texts == ["first!", "second!"]


class RefusingNode(FakeNode):
    """A Redis stand-in that refuses the ops named (as Redis refuses a guarded call
    transition another node got in first)."""

    def __init__(self, disk: Disk, refuse: set[str]) -> None:
        super().__init__(disk)
        self.refuse = refuse

    async def write(self, ops: list[Any], find_call: Callable[[int, str], Any]
                    ) -> tuple[dict[int, str], set[int]]:
        last, _ = await super().write(ops, find_call)
        return last, {id(o) for o in ops if repr(o) in self.refuse}


async def test_refused_ops_fail_their_effects_alone(disk: Disk, wire: RefusingWire) -> None:
    refused_op = effects("B").ops[0]
    node = RefusingNode(disk, {repr(refused_op)})
    pipe = CommitPipeline(RedisWriter(cast("ClusterNode", node)), wire.emit)
    log: list[str] = []
    batch = [effects(tag, log=log) for tag in ("A", "B", "C")]
    batch[1].refused_sends = [(("h",), "B?")]
    futures = [pipe.submit(e) for e in batch]
    assert await resolved(futures) == [True, False, True]
    # The refused one's undo ran and its refused sends went out instead of its sends;
    # the batch was not a store failure.
    assert log == ["undo B"]
    assert sorted(wire.texts) == ["A", "B?", "C"]
    assert pipe.refused == 1 and pipe.failures == 0 and node.last_error == ""
    await asyncio.wait_for(pipe.drain(), 5)
    pipe.close()
