"""CommitPipeline: durable first, sends after, in submission order; group commit; failures.

Tests that need nothing but the order run both ways of writing (writer thread, inline);
those that hold a write open use the writer thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.hub.pipeline import CommitPipeline
from monitor.hub.state import AttributeRow, Effects, Send, StoreOp
from monitor.hub.store.sqlite import SqliteStore, StoreError
from tests.hub_unit.builders import PROJECT, T0, change, login, make_state


class Disk:
    """A store double: records each write; can hold a write open or fail it."""

    def __init__(self) -> None:
        self.writes: list[list[StoreOp]] = []
        self.failing = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.thread_names: set[str] = set()

    def hold(self) -> None:
        self.gate = threading.Event()
        self.entered.clear()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()
        self.gate = None

    def write(self, ops: list[StoreOp]) -> None:
        self.thread_names.add(threading.current_thread().name)
        failing = self.failing  # decided when the write starts
        self.entered.set()
        gate = self.gate
        if gate is not None:
            assert gate.wait(5), "test never released the write"
        if failing:
            raise StoreError("disk on fire")
        self.writes.append(list(ops))

    def failed(self, ops: list[StoreOp], error: BaseException) -> None:
        self.failed_batches = getattr(self, "failed_batches", 0) + 1


class Wire:
    """The emit side: every send in the order it was released."""

    def __init__(self) -> None:
        self.sends: list[Send] = []

    def emit(self, sends: list[Send]) -> None:
        self.sends += sends

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.sends]


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
def wire() -> Wire:
    return Wire()


async def _running(disk: Disk, wire: Wire, threaded: bool) -> AsyncIterator[CommitPipeline]:
    pipe = CommitPipeline(disk, wire.emit, threaded=threaded)
    yield pipe
    if disk.gate is not None:
        disk.release()
    await asyncio.wait_for(pipe.drain(), 5)
    pipe.close()


@pytest.fixture(params=[True, False], ids=["threaded", "inline"])
async def pipeline(request: pytest.FixtureRequest, disk: Disk,
                   wire: Wire) -> AsyncIterator[CommitPipeline]:
    """Both ways of writing: on the writer thread, and on the loop at the turn's end."""
    async for pipe in _running(disk, wire, request.param):
        yield pipe


@pytest.fixture
async def threaded(disk: Disk, wire: Wire) -> AsyncIterator[CommitPipeline]:
    """The writer-thread pipeline, whose writes a test can hold open."""
    async for pipe in _running(disk, wire, True):
        yield pipe


def op(tag: str) -> AttributeRow:
    return AttributeRow(PROJECT, tag, "a", tag, T0)


def effects(tag: str, *, durable: bool = True, log: list[str] | None = None) -> Effects:
    """Effects that send ``tag`` (``tag!`` on failure); with a store op when ``durable``."""
    out = Effects(sends=[(("h",), tag)], failure_sends=[(("h",), tag + "!")])
    if durable:
        out.ops.append(op(tag))
    if log is not None:
        out.undo.append(lambda: log.append("undo " + tag))
    return out


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def wait_entered(disk: Disk) -> None:
    assert await asyncio.to_thread(disk.entered.wait, 5)


# -- order --------------------------------------------------------------------------------------


async def test_sends_go_out_only_after_the_write(threaded: CommitPipeline, disk: Disk,
                                                 wire: Wire) -> None:
    disk.hold()
    future = threaded.submit(effects("A"))
    await wait_entered(disk)
    await next_turn()
    assert wire.sends == [] and not future.done()
    disk.release()
    assert await asyncio.wait_for(future, 5) is True
    assert wire.texts == ["A"]
    assert disk.writes == [[op("A")]]


async def test_order_is_kept_across_batches_with_and_without_ops(
        threaded: CommitPipeline, disk: Disk, wire: Wire) -> None:
    disk.hold()
    futures = [threaded.submit(effects("A"))]
    await wait_entered(disk)
    for tag, durable in [("B", False), ("C", True), ("D", False), ("E", False)]:
        futures.append(threaded.submit(effects(tag, durable=durable)))
        await next_turn()
    # Nothing, not even the batches without ops, overtakes the write in flight.
    assert wire.sends == []
    disk.release()
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [True] * 5
    assert wire.texts == ["A", "B", "C", "D", "E"]


async def test_order_is_kept_without_holding_the_writer(pipeline: CommitPipeline,
                                                        wire: Wire) -> None:
    futures = []
    tags = [f"m{i}" for i in range(60)]
    for i, tag in enumerate(tags):
        futures.append(pipeline.submit(effects(tag, durable=i % 3 != 0)))
        if i % 4 == 0:
            await asyncio.sleep(0)
    assert all(await asyncio.wait_for(asyncio.gather(*futures), 5))
    assert wire.texts == tags


async def test_batches_without_ops_do_not_touch_the_store(pipeline: CommitPipeline,
                                                          disk: Disk, wire: Wire) -> None:
    first = pipeline.submit(effects("A", durable=False))
    second = pipeline.submit(Effects())
    assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [True, True]
    assert disk.writes == [] and not disk.entered.is_set()
    assert wire.texts == ["A"]


async def test_one_turn_is_one_batch_and_one_transaction(pipeline: CommitPipeline,
                                                         disk: Disk, wire: Wire) -> None:
    futures = [pipeline.submit(effects(tag)) for tag in "ABC"]
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [True] * 3
    assert disk.writes == [[op("A"), op("B"), op("C")]]
    assert wire.texts == ["A", "B", "C"]


async def test_each_effects_sends_are_released_in_their_own_order(
        pipeline: CommitPipeline, wire: Wire) -> None:
    many = Effects(ops=[op("x")], sends=[(("h1",), "1"), (("h2", "h3"), "2"), (("h1",), "3")])
    assert await asyncio.wait_for(pipeline.submit(many), 5)
    assert wire.sends == [(("h1",), "1"), (("h2", "h3"), "2"), (("h1",), "3")]


async def test_writes_run_on_the_writer_thread(threaded: CommitPipeline, disk: Disk) -> None:
    await asyncio.wait_for(threaded.submit(effects("A")), 5)
    [name] = disk.thread_names
    assert name.startswith("store-writer") and name != threading.current_thread().name


# -- group commit ---------------------------------------------------------------------------------


async def test_batches_queued_during_a_write_are_merged_into_the_next(
        threaded: CommitPipeline, disk: Disk, wire: Wire) -> None:
    disk.hold()
    futures = [threaded.submit(effects("A"))]
    await wait_entered(disk)
    for tag in "BCD":
        futures.append(threaded.submit(effects(tag)))
        await next_turn()
    disk.release()
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [True] * 4
    assert disk.writes == [[op("A")], [op("B"), op("C"), op("D")]]
    assert wire.texts == ["A", "B", "C", "D"]


async def test_merged_batch_keeps_batches_without_ops_in_place(
        threaded: CommitPipeline, disk: Disk, wire: Wire) -> None:
    disk.hold()
    futures = [threaded.submit(effects("A"))]
    await wait_entered(disk)
    for tag, durable in [("B", True), ("C", False), ("D", True)]:
        futures.append(threaded.submit(effects(tag, durable=durable)))
        await next_turn()
    disk.release()
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert disk.writes == [[op("A")], [op("B"), op("D")]]
    assert wire.texts == ["A", "B", "C", "D"]


# -- failures ------------------------------------------------------------------------------------


async def test_failed_write_runs_undo_sends_failure_sends_and_resolves_false(
        pipeline: CommitPipeline, disk: Disk, wire: Wire) -> None:
    disk.failing = True
    log: list[str] = []
    failing = effects("A", log=log)
    failing.undo.append(lambda: log.append("undo A second"))
    assert await asyncio.wait_for(pipeline.submit(failing), 5) is False
    assert log == ["undo A second", "undo A"]  # undone in reverse
    assert wire.texts == ["A!"]
    assert pipeline.failures == 1


async def test_a_failed_group_fails_every_batch_in_it(threaded: CommitPipeline, disk: Disk,
                                                      wire: Wire) -> None:
    log: list[str] = []
    disk.hold()
    first = threaded.submit(effects("A", log=log))
    await wait_entered(disk)
    disk.failing = True
    later = []
    for tag, durable in [("B", True), ("C", False)]:
        later.append(threaded.submit(effects(tag, durable=durable, log=log)))
        await next_turn()
    disk.release()
    assert await asyncio.wait_for(first, 5) is True
    assert await asyncio.wait_for(asyncio.gather(*later), 5) == [False, False]
    assert wire.texts == ["A", "B!", "C!"]
    assert log == ["undo C", "undo B"]  # newest first
    assert threaded.failures == 1


async def test_the_pipeline_recovers_after_a_failed_write(pipeline: CommitPipeline,
                                                          disk: Disk, wire: Wire) -> None:
    disk.failing = True
    assert await asyncio.wait_for(pipeline.submit(effects("A")), 5) is False
    disk.failing = False
    assert await asyncio.wait_for(pipeline.submit(effects("B")), 5) is True
    assert wire.texts == ["A!", "B"]
    assert disk.writes == [[op("B")]]
    assert pipeline.failures == 1


async def test_batch_queued_behind_a_failed_write_is_written_on_its_own(
        threaded: CommitPipeline, disk: Disk, wire: Wire) -> None:
    disk.hold()
    disk.failing = True
    first = threaded.submit(effects("A"))
    await wait_entered(disk)
    second = threaded.submit(effects("B"))
    await next_turn()
    disk.failing = False
    disk.release()
    assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [False, True]
    assert wire.texts == ["A!", "B"]
    assert disk.writes == [[op("B")]]


async def test_undo_of_a_failed_batch_runs_newest_first_across_effects(
        pipeline: CommitPipeline, disk: Disk, wire: Wire) -> None:
    # Two changes of one attribute in one batch: undoing them must restore the first value.
    state = make_state()
    login(state, "c", "a")
    change(state, "a", "status", "v1", T0)
    disk.failing = True
    futures = [pipeline.submit(change(state, "a", "status", value, T0 + i))
               for i, value in enumerate(["v2", "v3", "v4"])]
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [False] * 3
    assert state.users[(PROJECT, "a")].value("status") == "v1"


# -- drain and close -----------------------------------------------------------------------------


async def test_drain_waits_for_everything_submitted(threaded: CommitPipeline, disk: Disk,
                                                    wire: Wire) -> None:
    disk.hold()
    futures = [threaded.submit(effects("A"))]
    await wait_entered(disk)
    futures.append(threaded.submit(effects("B", durable=False)))
    drained = asyncio.create_task(threaded.drain())
    await asyncio.sleep(0.05)
    assert not drained.done()
    disk.release()
    await asyncio.wait_for(drained, 5)
    assert all(f.done() for f in futures)
    assert wire.texts == ["A", "B"]


async def test_drain_of_an_idle_pipeline_returns(pipeline: CommitPipeline) -> None:
    await asyncio.wait_for(pipeline.drain(), 1)


async def test_drain_right_after_submit_includes_the_unsealed_batch(
        pipeline: CommitPipeline, wire: Wire) -> None:
    pipeline.submit(effects("A"))
    await asyncio.wait_for(pipeline.drain(), 5)
    assert wire.texts == ["A"]


async def test_close_waits_for_the_write_in_flight(disk: Disk, wire: Wire) -> None:
    pipe = CommitPipeline(disk, wire.emit, threaded=True)
    disk.hold()
    pipe.submit(effects("A"))
    await wait_entered(disk)
    threading.Timer(0.05, disk.release).start()
    pipe.close()  # returns once the writer thread is done
    assert disk.writes == [[op("A")]]


# -- with the real state and store ----------------------------------------------------------


async def test_state_changes_through_the_pipeline_into_sqlite(tmp_path: Path,
                                                              wire: Wire) -> None:
    store = SqliteStore(tmp_path / "hub.sqlite3")
    pipe = CommitPipeline(store, wire.emit, threaded=True)
    state = make_state()
    try:
        assert await pipe.submit(login(state, "sup", "sup", subscribe=["team"]).effects)
        assert await pipe.submit(login(state, "c", "a", attributes=[("status", "team")]).effects)
        assert await pipe.submit(change(state, "a", "status", "busy", T0 + 1))
        await pipe.drain()
    finally:
        pipe.close()
        store.close()
    reopened = SqliteStore(tmp_path / "hub.sqlite3")
    users, attributes = reopened.load()
    reopened.close()
    assert {u.user_id for u in users} == {"sup", "a"}
    assert [(a.user_id, a.name, a.value) for a in attributes] == [("a", "status", "busy")]
    assert [text for _, text in wire.sends if '"busy"' in text]


async def test_a_send_that_cannot_be_emitted_does_not_stall_the_pipeline(
        disk: Disk, wire: Wire) -> None:
    # e.g. a reply echoing a requestId with a lone surrogate, which no socket can carry.
    def emit(sends: list[Send]) -> None:
        for _, text in sends:
            text.encode("utf-8")
        wire.emit(sends)

    for threaded_mode in (True, False):
        pipe = CommitPipeline(disk, emit, threaded=threaded_mode)
        futures = [pipe.submit(effects("A")), pipe.submit(effects("bad \ud800")),
                   pipe.submit(effects("C", durable=False))]
        assert await asyncio.wait_for(asyncio.gather(*futures), 5) == [True, True, True]
        assert await asyncio.wait_for(pipe.submit(effects("D")), 5) is True
        await asyncio.wait_for(pipe.drain(), 5)
        pipe.close()
    assert wire.texts == ["A", "C", "D"] * 2
