"""CommitPipeline with ``threaded=False``: the write happens on the event loop at the end
of the turn, one transaction per turn, with the same ordering and failure rules."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from monitor.hub.pipeline import CommitPipeline
from monitor.hub.state import Effects
from monitor.hub.store.sqlite import SqliteStore
from tests.hub_unit.builders import change, login, make_state
from tests.hub_unit.test_pipeline import Disk, Wire, effects


async def test_one_turn_is_one_write_on_the_loop_thread() -> None:
    disk, wire = Disk(), Wire()
    pipe = CommitPipeline(disk, wire.emit, threaded=False)
    futures = [pipe.submit(effects(tag)) for tag in "ABC"]
    assert wire.sends == []  # nothing leaves before the write
    assert await asyncio.gather(*futures) == [True, True, True]
    assert [[o.user_id for o in ops] for ops in disk.writes] == [["A", "B", "C"]]
    assert disk.thread_names == {threading.current_thread().name}
    assert wire.texts == ["A", "B", "C"]
    pipe.close()


async def test_order_is_kept_across_turns_with_and_without_ops() -> None:
    disk, wire = Disk(), Wire()
    pipe = CommitPipeline(disk, wire.emit, threaded=False)
    first = [pipe.submit(effects("A")), pipe.submit(effects("b", durable=False))]
    await asyncio.gather(*first)
    second = [pipe.submit(effects("c", durable=False)), pipe.submit(effects("D"))]
    await asyncio.gather(*second)
    assert wire.texts == ["A", "b", "c", "D"]
    assert len(disk.writes) == 2
    pipe.close()


async def test_a_failed_write_undoes_newest_first_and_sends_failure_sends() -> None:
    disk, wire = Disk(), Wire()
    disk.failing = True
    log: list[str] = []
    pipe = CommitPipeline(disk, wire.emit, threaded=False)
    results = await asyncio.gather(pipe.submit(effects("A", log=log)),
                                   pipe.submit(effects("B", log=log)))
    assert results == [False, False]
    assert log == ["undo B", "undo A"]
    assert wire.texts == ["A!", "B!"]
    assert pipe.failures == 1
    disk.failing = False
    assert await pipe.submit(effects("C"))
    assert wire.texts[-1] == "C"
    pipe.close()


async def test_state_through_an_inline_pipeline_into_sqlite_with_background_checkpoints(
        tmp_path: Path) -> None:
    wire = Wire()
    store = SqliteStore(tmp_path / "hub.sqlite3", background_checkpoints=True)
    pipe = CommitPipeline(store, wire.emit, threaded=False)
    state = make_state()
    try:
        assert await pipe.submit(login(state, "c", "a", attributes=[("status", "team")]).effects)
        for i in range(50):
            result: Effects = change(state, "a", "status", f"v{i}")
            assert await pipe.submit(result)
    finally:
        pipe.close()
        store.close()
    reopened = SqliteStore(tmp_path / "hub.sqlite3")
    try:
        _, attributes = reopened.load()
    finally:
        reopened.close()
    assert {(a.user_id, a.name): a.value for a in attributes} == {("a", "status"): "v49"}
