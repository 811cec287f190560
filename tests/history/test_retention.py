"""Retention: what is older than history_retention_days goes, in chunks, on both engines;
each user keeps the checkpoint their totals start from, so reports over what is kept
do not change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.hub.history import DAY_MS, AttributeEvent, CallEvent, agents_report, calls_report
from monitor.hub.state import UserRow
from monitor.hub.store import history as sqlite_history
from monitor.tokens import Grants
from tests.cluster.conftest import RedisServer
from tests.conftest import require_program
from tests.history.engines import PROJECT, T0, RedisEngine, SqliteEngine


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path / "redis",
                         require_program("redis-server", "redis-server")).start()
    try:
        yield server.url
    finally:
        server.kill()


def days_of_work(days: int) -> list[Any]:
    """One agent online all along (logged in on day 0), a status change and a call a day."""
    events: list[Any] = [AttributeEvent(PROJECT, "a0", "onlineStatus", "online", "offline", T0)]
    for day in range(days):
        t = T0 + day * DAY_MS + 3_600_000
        events.append(AttributeEvent(PROJECT, "a0", "manual_status", f"s{day % 3}",
                                     None if day == 0 else f"s{(day - 1) % 3}", t))
        call = {"callId": f"c{day}", "from": "+1", "to": "a0", "status": "Ended",
                "startedAt": t, "ringingAt": t, "answeredAt": t + 5000, "endedAt": t + 65_000}
        events.append(CallEvent(PROJECT, call, t + 65_000, ("a0",)))
        events.append(AttributeEvent(PROJECT, "a0", "mood", day, day - 1, t + 1))
    return events


async def check_pruning(engine: Any, prune: Any) -> None:
    for event in days_of_work(50):
        await engine.apply([event])
    now = T0 + 50 * DAY_MS
    kept_from = now - 35 * DAY_MS
    window = (kept_from + DAY_MS // 2, now)
    before = await agents_report(engine.reader, PROJECT, ["a0"], *window, now)
    calls_before = await calls_report(engine.reader, PROJECT, *window, DAY_MS, 20_000)
    assert before["a0"]["onlineMs"] == window[1] - window[0]
    removed = await prune(now)
    assert removed > 0
    raw = await engine.raw()
    assert raw and min(e["timestamp"] for e in raw) >= kept_from
    assert await agents_report(engine.reader, PROJECT, ["a0"], *window, now) == before
    assert await calls_report(engine.reader, PROJECT, *window, DAY_MS, 20_000) == calls_before
    assert await prune(now) == 0  # nothing more to do


async def test_sqlite_prunes_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_history, "PRUNE_CHUNK", 7)
    engine = SqliteEngine(tmp_path / "hub.sqlite3")
    # The pruner walks the users the store knows.
    engine.store.write([UserRow(PROJECT, "a0", None, T0, Grants())])

    async def prune(now: int) -> int:
        return engine.store.log.prune(now)

    try:
        await check_pruning(engine, prune)
    finally:
        await engine.close()


async def test_redis_prunes(redis_url: str) -> None:
    engine = await RedisEngine(redis_url).start()

    async def prune(now: int) -> int:
        return await engine.reader.prune([PROJECT], now)

    try:
        await check_pruning(engine, prune)
    finally:
        await engine.close()


def test_history_requests_in_progress_are_capped_per_key_and_in_all() -> None:
    from monitor.hub.rest import ApiError
    from monitor.hub.rest_history import InFlight

    caps = InFlight(per_key=2, total=3)
    with caps.slot("k1"), caps.slot("k1"):
        with pytest.raises(ApiError) as refused, caps.slot("k1"):
            pass
        assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
        with caps.slot("k2"), pytest.raises(ApiError), caps.slot("k3"):
            pass
    assert caps.running == {}
    with caps.slot("k1"):
        assert caps.running == {"k1": 1}
