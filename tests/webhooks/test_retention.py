"""What the webhooks keep, on both engines: the event log is not pruned past an endpoint's
cursor (events not yet delivered stay, whatever their age), and the dead letters are
bounded by count and by age."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.hub.cluster.history import position_of
from monitor.hub.cluster.webhooks import RedisDeliveryStore
from monitor.hub.history import DAY_MS
from monitor.hub.state import UserRow
from monitor.hub.store.webhooks import SqliteDeliveryStore
from monitor.hub.webhooks import DeliveryStore
from monitor.tokens import Grants
from tests.cluster.conftest import RedisServer
from tests.conftest import require_program
from tests.history.engines import PROJECT, T0, RedisEngine, SqliteEngine
from tests.history.test_retention import days_of_work

Prune = Callable[[int], Awaitable[int]]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path / "redis",
                         require_program("redis-server", "redis-server")).start()
    try:
        yield server.url
    finally:
        server.kill()


async def check_cursor_holds_the_log(engine: Any, store: DeliveryStore, positions: Any,
                                     prune: Prune, hold: Callable[[], None]) -> None:
    """50 days logged, 35 kept: an endpoint's cursor on day 10 keeps everything after it
    (Redis trims whole nodes of its stream: maybe a little before it too); once the
    cursor passes the cut, the rest goes. A cursor of an endpoint no longer configured
    holds nothing."""
    for event in days_of_work(50):
        await engine.apply([event])
    now = T0 + 50 * DAY_MS
    logged = await engine.raw()
    day10 = [i for i, e in enumerate(logged) if e["timestamp"] < T0 + 10 * DAY_MS][-1]
    all_positions = await positions()
    await store.save_cursor(PROJECT, "e1", all_positions[day10])
    await store.save_cursor(PROJECT, "gone", 0)  # not configured: holds nothing
    hold()
    assert await prune(now) > 0
    kept = await engine.raw()
    after = logged[day10 + 1:]
    assert kept[-len(after):] == after  # every event the endpoint has not passed, in order
    assert len(after) <= len(kept) < len(logged)
    await store.save_cursor(PROJECT, "e1", all_positions[-1])
    assert await prune(now) > 0
    assert min(e["timestamp"] for e in await engine.raw()) >= now - 35 * DAY_MS


async def test_sqlite_pruning_keeps_what_a_cursor_has_not_passed(tmp_path: Path) -> None:
    engine = SqliteEngine(tmp_path / "hub.sqlite3")
    engine.store.write([UserRow(PROJECT, "a0", None, T0, Grants())])
    store = SqliteDeliveryStore(engine.store.path)

    async def positions() -> list[int]:
        return [p for p, _ in await store.events_after(PROJECT, 0, 10**9)]

    async def prune(now: int) -> int:
        return engine.store.log.prune(now)

    def hold() -> None:
        engine.store.log.webhook_endpoints = {PROJECT: ("e1",)}

    try:
        await check_cursor_holds_the_log(engine, store, positions, prune, hold)
    finally:
        store.close()
        await engine.close()


async def test_redis_pruning_keeps_what_a_cursor_has_not_passed(redis_url: str) -> None:
    engine = await RedisEngine(redis_url).start()
    store = RedisDeliveryStore(engine.store.redis, "node")

    async def positions() -> list[int]:
        return [position_of(i) for i, _ in await engine.reader.events_after(PROJECT, "0-0",
                                                                           10**9)]

    async def prune(now: int) -> int:
        return await engine.reader.prune([PROJECT], now)

    def hold() -> None:
        engine.reader.webhook_endpoints = {PROJECT: ("e1",)}

    for endpoint in ("e1", "gone"):  # writes are fenced by the endpoint's lease
        assert await store.acquire(PROJECT, endpoint, 60_000)
    try:
        await check_cursor_holds_the_log(engine, store, positions, prune, hold)
    finally:
        await engine.close()


async def check_dead_letters_bounded(store: DeliveryStore) -> None:
    """At most 3 kept (the newest), none older than a day; other projects untouched."""
    for n in range(5):
        await store.dead_letter(PROJECT, "e1", n, b"{}", 1, f"HTTP 500 #{n}", T0 + n)
    await store.dead_letter(PROJECT + 1, "e2", 1, b"{}", 1, "other", T0)
    kept = await store.deliveries(PROJECT, None, 100)
    assert [d.error for d in kept] == ["HTTP 500 #4", "HTTP 500 #3", "HTTP 500 #2"]
    assert await store.dead_count(PROJECT, "e1") == 3
    await store.dead_letter(PROJECT, "e1", 9, b"{}", 1, "late", T0 + DAY_MS // 2)
    assert [d.error for d in await store.deliveries(PROJECT, None, 100)] == [
        "late", "HTTP 500 #4", "HTTP 500 #3"]
    assert await store.prune_dead(PROJECT, T0 + DAY_MS + 10) == 2  # #3 and #4: too old
    assert [d.error for d in await store.deliveries(PROJECT, None, 100)] == ["late"]
    assert await store.prune_dead(PROJECT, T0 + DAY_MS + 10) == 0
    assert await store.prune_dead(PROJECT, T0 + 2 * DAY_MS) == 1
    assert await store.deliveries(PROJECT, None, 100) == []
    assert len(await store.deliveries(PROJECT + 1, None, 100)) == 1


async def test_sqlite_dead_letters_are_bounded(tmp_path: Path) -> None:
    engine = SqliteEngine(tmp_path / "hub.sqlite3")  # the schema of the hub's file
    store = SqliteDeliveryStore(engine.store.path, keep=3, keep_days=1)
    try:
        await check_dead_letters_bounded(store)
    finally:
        store.close()
        await engine.close()


async def test_redis_dead_letters_are_bounded(redis_url: str) -> None:
    engine = await RedisEngine(redis_url).start()
    store = RedisDeliveryStore(engine.store.redis, "node", keep=3, keep_days=1)
    assert await store.acquire(PROJECT, "e1", 60_000)
    assert await store.acquire(PROJECT + 1, "e2", 60_000)
    try:
        await check_dead_letters_bounded(store)
    finally:
        await engine.close()
