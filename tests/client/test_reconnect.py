"""Reconnect, backoff, resume, dedupe and gap handling, against the fake hub."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from monitor.client import Backoff, ConnectionLostError, HubUnreachableError
from monitor.protocol import Service
from tests.client.conftest import Recorder
from tests.client.fakehub import eventually, token

TEAM = "team_a"


def watcher_token() -> str:
    return token("sup", subscribe=[TEAM])


async def publish(fake, *values: str, user: str = "agent_1", lose: bool = False) -> None:
    for value in values:
        await fake.publish(TEAM, user, "manual_status", value, lose=lose)


async def test_reconnects_after_a_drop_and_resumes_without_loss(fake, make_client):
    client = make_client(fake.url, watcher_token())
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a", "b", "c")
    await events.wait("messagefromtopic", 3)
    fake.drop_connections()
    await publish(fake, "d", "e")  # while the client is away
    await events.wait("authen", 2)
    await events.wait("messagefromtopic", 5)
    await publish(fake, "f")
    await events.wait("messagefromtopic", 6)
    assert events.seqs() == [1, 2, 3, 4, 5, 6]
    assert events.values() == ["a", "b", "c", "d", "e", "f"]
    assert fake.authens[1]["resume"] == {TEAM: {"epoch": fake.epoch, "seq": 3}}
    assert events.of("authen")[1]["recovered"] == {TEAM: True}
    assert events.of("resync") == []
    disconnect = events.of("disconnect")[0]
    assert disconnect["reconnecting"] is True
    assert events.names().index("disconnect") < events.names().index("authen", 2)
    assert client.stats.reconnects == 1


async def test_replayed_duplicates_are_dropped(fake, make_client):
    fake.replay_overlap = 2  # the hub replays two messages the client already has
    client = make_client(fake.url, watcher_token())
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a", "b", "c")
    await events.wait("messagefromtopic", 3)
    fake.drop_connections()
    await publish(fake, "d")
    await events.wait("messagefromtopic", 4)
    await publish(fake, "e")
    await events.wait("messagefromtopic", 5)
    assert events.seqs() == [1, 2, 3, 4, 5]
    assert client.stats.duplicates == 2


async def test_live_duplicate_is_dropped(fake, make_client):
    client = make_client(fake.url, watcher_token())
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a", "b")
    await fake.resend(TEAM, 2)
    await fake.resend(TEAM, 1)
    await publish(fake, "c")
    await events.wait("messagefromtopic", 3)
    await asyncio.sleep(0.02)
    assert events.seqs() == [1, 2, 3]
    assert client.stats.duplicates == 2


async def test_gap_in_the_live_stream_emits_resync_with_a_snapshot(fake, make_client):
    client = make_client(fake.url, watcher_token())
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a")
    await publish(fake, "lost", user="agent_2", lose=True)  # seq 2 never reaches the client
    await publish(fake, "c")                                # seq 3: a gap
    resync = (await events.wait("resync"))[0]
    await publish(fake, "d")
    await events.wait("messagefromtopic", 2)
    assert [n for n in events.names() if n in ("messagefromtopic", "resync")] == [
        "messagefromtopic", "resync", "messagefromtopic"]
    assert resync["resync"] is True and resync["topic"] == TEAM
    assert resync["reason"] == "gap" and resync["lastSeq"] == 1
    snapshot = resync["snapshot"]
    assert snapshot["seq"] == 3 and snapshot["epoch"] == fake.epoch
    assert {(v["userId"], v["value"]) for v in snapshot["values"]} == {
        ("agent_1", "c"), ("agent_2", "lost")}
    # 2 and 3 are in the snapshot; after it only newer messages, none repeated
    assert events.seqs() == [1, 4]
    assert client.stats.gaps == 1 and client.stats.resyncs == 1
    assert next(f for f in fake.frames if f[0] == Service.TOPIC_SNAPSHOT)[1]["topic"] == TEAM


async def test_resume_not_recovered_falls_back_to_a_snapshot(fake, make_client):
    fake.recover = False
    client = make_client(fake.url, watcher_token())
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a")
    await events.wait("messagefromtopic")
    fake.drop_connections()
    await publish(fake, "b", "c")
    resync = (await events.wait("resync"))[0]
    assert events.of("authen")[1]["recovered"] == {TEAM: False}
    assert resync["reason"] == "not_recovered" and resync["lastSeq"] == 1
    assert resync["snapshot"]["seq"] == 3
    assert [v["value"] for v in resync["snapshot"]["values"]] == ["c"]
    await publish(fake, "d")
    await events.wait("messagefromtopic", 2)
    assert events.seqs() == [1, 4]  # 2 and 3 are in the snapshot, not delivered again


async def test_restart_with_a_new_epoch_resyncs_and_accepts_lower_seqs(fake, make_client):
    client = make_client(fake.url, watcher_token())
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a", "b", "c")
    await events.wait("messagefromtopic", 3)
    old_epoch = fake.epoch
    await fake.restart(new_epoch=True)
    resync = (await events.wait("resync"))[0]
    assert fake.authens[-1]["resume"] == {TEAM: {"epoch": old_epoch, "seq": 3}}
    assert resync["snapshot"]["epoch"] == fake.epoch != old_epoch
    await publish(fake, "x")  # seq 1 of the new epoch: not a duplicate
    await events.wait("messagefromtopic", 4)
    assert events.seqs() == [1, 2, 3, 1]
    assert client.positions()[TEAM].epoch == fake.epoch


async def test_reconnect_without_changes_needs_no_snapshot(fake, make_client):
    client = make_client(fake.url, watcher_token(), resume=False)
    events = Recorder(client)
    await client.connect()
    await publish(fake, "a")
    await events.wait("messagefromtopic")
    fake.drop_connections()
    await events.wait("authen", 2)
    assert "resume" not in fake.authens[1]
    await publish(fake, "b")
    await events.wait("messagefromtopic", 2)
    assert events.of("resync") == []
    assert not any(f[0] == Service.TOPIC_SNAPSHOT for f in fake.frames)


async def test_snapshot_hides_queued_messages_it_already_covers(fake, make_client):
    client = make_client(fake.url, watcher_token())
    release = asyncio.Event()
    seen: list[int] = []

    async def slow(body: dict[str, Any]) -> None:
        seen.append(body["seq"])
        await release.wait()

    client.on("messagefromtopic", slow)
    await client.connect()
    await publish(fake, "a", "b", "c")   # 1 is in the handler; 2 and 3 wait in the queue
    await eventually(lambda: seen == [1])
    snap = await client.snapshot(TEAM)
    assert snap["seq"] == 3
    release.set()
    await publish(fake, "d")
    await eventually(lambda: 4 in seen)
    assert seen == [1, 4]
    assert client.stats.stale == 2


async def test_backoff_is_exponential_with_full_jitter_and_resets_after_success(
        fake, make_client):
    bounds: list[tuple[float, float]] = []

    class RecordingRandom(random.Random):
        def uniform(self, a: float, b: float) -> float:
            bounds.append((a, b))
            return b  # the longest wait the backoff allows

    client = make_client(fake.url, watcher_token(), rng=RecordingRandom(),
                         backoff=Backoff(base=0.01, cap=0.04))
    events = Recorder(client)
    await client.connect()
    await fake.stop()
    await eventually(lambda: len(bounds) >= 5, message="5 reconnect attempts")
    assert bounds[:5] == [(0.0, 0.01), (0.0, 0.02), (0.0, 0.04), (0.0, 0.04), (0.0, 0.04)]
    await fake.start()
    await events.wait("authen", 2)
    count = len(bounds)
    fake.drop_connections()
    await events.wait("authen", 3)
    assert bounds[count] == (0.0, 0.01)  # a new outage starts from the base again
    assert client.stats.reconnects == 2


async def test_gives_up_after_max_attempts_and_says_so(fake, make_client):
    client = make_client(fake.url, watcher_token(),
                         backoff=Backoff(base=0.001, cap=0.002, max_attempts=3))
    events = Recorder(client)
    stream = client.messages()
    await client.connect()
    await fake.stop()
    with pytest.raises(HubUnreachableError, match="gave up after 3"):
        await asyncio.wait_for(client.wait_closed(), 2)
    assert not client.running
    with pytest.raises(HubUnreachableError):
        await asyncio.wait_for(anext(stream), 1)
    with pytest.raises(HubUnreachableError):
        await client.change_attribute("manual_status", "ready")
    assert events.of("disconnect")[0]["reconnecting"] is True


async def test_close_during_a_reconnect_wait_returns_at_once(fake, make_client):
    client = make_client(fake.url, watcher_token(), backoff=Backoff(base=5.0, cap=5.0))
    events = Recorder(client)
    await client.connect()
    fake.drop_connections()
    await events.wait("disconnect")
    assert client.retry_at is not None and client.running
    await asyncio.wait_for(client.close(), 1)
    assert not client.running and client.retry_at is None
    assert len(fake.authens) == 1


async def test_request_in_flight_fails_with_connection_lost(fake, make_client):
    client = make_client(fake.url, token("agent_1", attributes=[("manual_status", TEAM)]))
    await client.connect()
    fake.conns[0].hold_replies = True
    change = asyncio.create_task(client.change_attribute("manual_status", "ready"))
    await eventually(lambda: any(f[0] == Service.CHANGE_ATTRIBUTE for f in fake.frames))
    fake.drop_connections()
    with pytest.raises(ConnectionLostError):
        await change


async def test_request_during_reconnect_waits_for_the_connection(fake, make_client):
    class Longest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    client = make_client(fake.url, token("agent_1", attributes=[("manual_status", TEAM)]),
                         backoff=Backoff(base=0.2, cap=0.2), rng=Longest())
    events = Recorder(client)
    await client.connect()
    fake.drop_connections()
    await events.wait("disconnect")
    assert not client.connected  # 0.2 s before the next attempt
    reply = await client.change_attribute("manual_status", "ready")
    assert reply["r"] == 0 and client.stats.reconnects == 1
    assert fake.values[("agent_1", "manual_status")] == "ready"


async def test_silent_hub_is_detected_and_the_client_reconnects(fake, make_client):
    client = make_client(fake.url, watcher_token(), silence_timeout=0.3)
    events = Recorder(client)
    await client.connect()
    conn = fake.conns[0]
    conn.silent = True
    await events.wait("disconnect", timeout=2)
    assert events.of("disconnect")[0]["reason"] == "hub silent for 0.3 s"
    assert client.stats.silent_hub == 1
    # before giving up, the client PINGed the hub (with a requestId)
    pings = [b for s, b in conn.frames if s == Service.PING]
    assert pings and "requestId" in pings[0]
    await events.wait("authen", 2)
    assert client.connected


async def test_hub_pings_keep_a_quiet_connection_alive(make_client):
    from tests.client.fakehub import FakeHub
    hub = FakeHub(ping_after_ms=100)
    hub.send_pings = True
    await hub.start()
    try:
        client = make_client(hub.url, watcher_token(), silence_timeout=0.6)
        await client.connect()
        await asyncio.sleep(1.0)
        assert client.connected and client.stats.silent_hub == 0
        answers = [b for s, b in hub.conns[0].frames if s == Service.PING]
        assert len(answers) >= 5 and all(b == {} for b in answers)
    finally:
        await hub.stop()
