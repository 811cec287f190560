"""A node's writes to Redis: commands packed by hiredis, byte for byte as redis-py packs
them, and a batch's changes in the event log in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from monitor.hub.cluster.history import RedisHistory
from monitor.hub.cluster.ops import Change
from monitor.hub.cluster.redis_store import RedisStore, connect
from tests.cluster.conftest import RedisServer


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    client = connect("redis://127.0.0.1:1/0")
    packed = client.connection_pool.make_connection()
    plain = Connection()
    assert type(packed) is not Connection and isinstance(packed, Connection)
    for args in [("EVALSHA", "abc", 1, "hub:{1}:log", "hub:{1}:", 100_000, "C", 8, "ü",
                  '"v1"', 1_700_000_000_000, 0, "", 1.5, 2**70, b"raw"),
                 ("SCRIPT EXISTS", "abc"), ("PING",)]:
        assert b"".join(packed.pack_command(*args)) == b"".join(plain.pack_command(*args))
    with pytest.raises(DataError):  # what hiredis does not take, redis-py refuses as before
        packed.pack_command("SET", "k", True)


def test_tls_and_unix_urls_keep_their_connection_class() -> None:
    for url, base in [("rediss://127.0.0.1:1/0", "SSLConnection"),
                      ("unix:///tmp/none.sock", "UnixDomainSocketConnection")]:
        cls = connect(url).connection_pool.connection_class
        assert [c.__name__ for c in cls.__mro__][2] == base


def test_a_batch_logs_changes_in_order_whatever_their_clocks(redis_server: RedisServer
                                                              ) -> None:
    """One script call carries a node's batch; the event log takes each change at its
    own time, never before the last entry (nodes' clocks differ), in batch order."""

    async def run() -> list[tuple[str, dict[str, Any]]]:
        store = RedisStore(redis_server.url, "node-a")
        history = RedisHistory(store.redis, "manual_status", 35)
        try:
            await history.configure([1])
            t = 1_700_000_000_000
            first = [Change(1, "u1", "manual_status", "Busy", t + 500, topics=("team",))]
            await store.write(first, lambda p, c: None)
            # A second batch, from a node whose clock is behind, then ahead.
            ops = [Change(1, f"u{i}", "manual_status", f"s{i}", t + ms, topics=("team",))
                   for i, ms in enumerate((100, 900, 300, 900, 1000))]
            await store.write(ops, lambda p, c: None)
            return await history.events_after(1, "0-0", 100)
        finally:
            await store.close()

    events = asyncio.run(run())
    assert [e["value"] for _, e in events] == ["Busy", "s0", "s1", "s2", "s3", "s4"]
    assert [int(i.split("-")[0]) - 1_700_000_000_000 for i, _ in events] == \
        [500, 500, 900, 900, 900, 1000]
