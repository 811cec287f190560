"""Property test: the reports, on both engines, against a brute force over the raw log.

Random days (logins, logouts, quick returns within what would be a grace period, status
changes, other attributes, overlapping calls between agents and customers, several
changes in one millisecond and in one batch) are written through each engine; then, for
random ranges (before the first event, across everything, after the last, one
millisecond), every agent's figures and every interval's call figures must equal what
the brute force finds in the events the engine logged, to the millisecond.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.hub.history import agents_report, calls_report
from tests.cluster.conftest import RedisServer
from tests.conftest import require_program
from tests.history.engines import (
    AGENTS,
    PROJECT,
    T0,
    RedisEngine,
    SqliteEngine,
    brute_agents,
    brute_calls,
    scenario,
)

EXAMPLES = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"),
                         require_program("redis-server", "redis-server")).start()
    try:
        yield server.url
    finally:
        server.kill()


async def check(engine: Any, seed: int) -> None:
    rng = random.Random(seed)
    batches, last = scenario(rng, rng.randrange(20, 160))
    for batch in batches:
        await engine.apply(batch)
    raw = await engine.raw()
    assert len(raw) == sum(len(b) for b in batches)
    now = last + rng.choice((0, 1, 5000))
    ranges = [(T0 - 10_000, now + 10_000), (T0, T0 + 1), (now + 1, now + 50_000)]
    for _ in range(6):
        a, b = sorted(rng.randrange(T0 - 5000, now + 5000) for _ in range(2))
        ranges.append((a, b + 1))
    for start, end in ranges:
        got = await agents_report(engine.reader, PROJECT, list(AGENTS), start, end, now)
        assert got == brute_agents(raw, AGENTS, start, end, now), (seed, start, end)
        interval = rng.choice((1000, 60_000, 900_000))
        sla = rng.choice((0, 20_000))
        if (end - start) // interval < 5000:
            got_calls = await calls_report(engine.reader, PROJECT, start, end, interval, sla)
            assert got_calls == brute_calls(raw, start, end, interval, sla), (seed, start, end)


@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
async def test_sqlite_reports_equal_the_brute_force(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"{seed}" / "hub.sqlite3"
    engine = SqliteEngine(path)
    try:
        await check(engine, seed)
    finally:
        await engine.close()


@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1))
async def test_redis_reports_equal_the_brute_force(redis_url: str, seed: int) -> None:
    engine = await RedisEngine(redis_url).start()
    try:
        await check(engine, seed)
    finally:
        await engine.close()


async def test_a_day_worked_out_by_hand(tmp_path: Path) -> None:
    """One agent: online 09:00-12:00, available then break from 10:00; a call rings 10 s
    and is answered, talk 5 min; another rings and is missed."""
    from monitor.hub.history import AttributeEvent, CallEvent
    h = 3_600_000
    day = T0 - T0 % 86_400_000
    nine = day + 9 * h
    events = [
        AttributeEvent(PROJECT, "a0", "onlineStatus", "online", "offline", nine),
        AttributeEvent(PROJECT, "a0", "manual_status", "available", None, nine),
        AttributeEvent(PROJECT, "a0", "call", "Ringing", None, nine + 600_000,
                       extra={"callId": "c1", "from": "+1", "to": "a0"}),
        AttributeEvent(PROJECT, "a0", "call", "Answered", "Ringing", nine + 610_000,
                       extra={"callId": "c1", "from": "+1", "to": "a0"}),
        CallEvent(PROJECT, {"callId": "c1", "from": "+1", "to": "a0", "status": "Answered",
                            "startedAt": nine + 600_000, "ringingAt": nine + 600_000,
                            "answeredAt": nine + 610_000}, nine + 610_000, ("a0",)),
        AttributeEvent(PROJECT, "a0", "call", "Ended", "Answered", nine + 910_000,
                       extra={"callId": "c1", "from": "+1", "to": "a0"}),
        CallEvent(PROJECT, {"callId": "c1", "from": "+1", "to": "a0", "status": "Ended",
                            "startedAt": nine + 600_000, "ringingAt": nine + 600_000,
                            "answeredAt": nine + 610_000, "endedAt": nine + 910_000},
                  nine + 910_000, ("a0",)),
        AttributeEvent(PROJECT, "a0", "manual_status", "break", "available", nine + h),
        CallEvent(PROJECT, {"callId": "c2", "from": "+2", "to": "a0", "status": "Ended",
                            "startedAt": nine + h, "ringingAt": nine + h,
                            "endedAt": nine + h + 20_000}, nine + h + 20_000, ("a0",)),
        AttributeEvent(PROJECT, "a0", "onlineStatus", "offline", "online", nine + 3 * h),
    ]
    engine = SqliteEngine(tmp_path / "hub.sqlite3")
    try:
        await engine.apply(events)
        report = await agents_report(engine.reader, PROJECT, ["a0"], day, day + 24 * h,
                                     day + 24 * h)
        assert report == {"a0": {
            "onlineMs": 3 * h, "statusMs": {"available": h, "break": 2 * h},
            "calls": {"handled": 1, "missed": 1, "ringMs": 10_000, "talkMs": 300_000},
            "occupancy": round(300_000 / (3 * h), 4)}}
        # Clipped, not dropped: 10:30-11:00 is half an hour of break.
        half = await agents_report(engine.reader, PROJECT, ["a0"], nine + 5 * h // 2 - h,
                                   nine + 2 * h, day + 24 * h)
        assert half["a0"]["onlineMs"] == h // 2 and half["a0"]["statusMs"] == {
            "break": h // 2}
        calls = await calls_report(engine.reader, PROJECT, nine, nine + 2 * h, h, 20_000)
        assert calls == [
            {"start": nine, "offered": 1, "answered": 1, "abandoned": 0,
             "answeredWithinSla": 1, "avgSpeedOfAnswerMs": 10_000, "avgHandleMs": 300_000},
            {"start": nine + h, "offered": 1, "answered": 0, "abandoned": 1,
             "answeredWithinSla": 0, "avgSpeedOfAnswerMs": 0, "avgHandleMs": 0}]
    finally:
        await engine.close()


async def test_more_status_values_than_kept_apart_add_up_under_other(
        tmp_path: Path, redis_url: str) -> None:
    from monitor.hub.history import MAX_STATUS_KEYS, OTHER_STATUS, AttributeEvent
    events = [AttributeEvent(PROJECT, "a0", "onlineStatus", "online", "offline", T0)]
    for i in range(MAX_STATUS_KEYS + 4):
        events.append(AttributeEvent(PROJECT, "a0", "manual_status", f"s{i}", None,
                                     T0 + 1000 * (i + 1)))
    end = T0 + 1000 * (MAX_STATUS_KEYS + 6)
    reports = []
    for engine in (SqliteEngine(tmp_path / "hub.sqlite3"), await RedisEngine(redis_url).start()):
        try:
            await engine.apply(events)
            reports.append(await agents_report(engine.reader, PROJECT, ["a0"], T0, end, end))
        finally:
            await engine.close()
    assert reports[0] == reports[1]
    spent = reports[0]["a0"]["statusMs"]
    # "" (before the first status), s0..s14 apart; s15..s19 (the last until the end) not.
    assert len(spent) == MAX_STATUS_KEYS + 1 and spent[OTHER_STATUS] == 6000
    assert sum(spent.values()) == end - T0
