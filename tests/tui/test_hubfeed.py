"""HubFeed against a real hub: first snapshots, live messages, a drop and the way back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from monitor.client import Backoff, HubClient
from monitor.tui.feed import (
    CONNECTED,
    CONNECTING,
    RECONNECTING,
    RESYNCING,
    ChangeRefused,
    Link,
    Session,
    Snapshot,
    TopicMessage,
)
from monitor.tui.hubfeed import HubFeed
from tests.hubproc import HubProcess

pytestmark = pytest.mark.slow
GRANTS = [("manual_status", "team_a"), ("onlineStatus", "team_a")]


async def next_of(events: AsyncIterator[Any], kind: type, timeout: float = 15.0,
                  where: Any = None) -> Any:
    """The next event of ``kind`` (that satisfies ``where``), skipping others."""
    async def find() -> Any:
        async for event in events:
            if isinstance(event, kind) and (where is None or where(event)):
                return event
        raise AssertionError(f"feed ended before a {kind.__name__}")
    return await asyncio.wait_for(find(), timeout)


async def test_first_connect_snapshots_then_live_messages_and_change(
        hub: HubProcess) -> None:
    teammate = HubClient(hub.ws_url, hub.client_token("agent_2", subscribe=["team_a"],
                                                      attributes=GRANTS))
    await teammate.connect()
    await teammate.change_attribute("manual_status", "break")
    feed = HubFeed(hub.ws_url, hub.client_token("agent_1", subscribe=["team_a"],
                                                attributes=GRANTS, display_name="Ann"))
    events = feed.events()
    try:
        first = await next_of(events, Link)
        assert first.state == CONNECTING
        session = await next_of(events, Session)
        assert session.user_id == "agent_1" and session.display_name == "Ann"
        assert session.subscribe == ("team_a",)
        assert session.publishes["manual_status"] == ("team_a",)
        snapshot = await next_of(events, Snapshot)
        assert snapshot.topic == "team_a" and isinstance(snapshot.seq, int)
        values = {(v["userId"], v["attribute"]): v["value"] for v in snapshot.values}
        assert values[("agent_2", "manual_status")] == "break"
        assert (await next_of(events, Link)).state == CONNECTED

        await teammate.change_attribute("manual_status", "lunch")
        message = await next_of(events, TopicMessage,
                                where=lambda e: e.message.get("newValue") == "lunch")
        assert message.topic == "team_a" and message.seq is not None
        assert message.seq > snapshot.seq
        assert message.message["userId"] == "agent_2"

        await feed.change_attribute("manual_status", "available")
        with pytest.raises(ChangeRefused) as refused:
            await feed.change_attribute("onlineStatus", "offline")  # owned by the hub
        assert refused.value.r == 22
    finally:
        await feed.close()
        await teammate.close()


async def test_drop_reports_reconnecting_with_a_delay_then_connected(
        hub: HubProcess) -> None:
    feed = HubFeed(hub.ws_url, hub.client_token("agent_1", subscribe=["team_a"],
                                                attributes=GRANTS),
                   backoff=Backoff(base=0.2, cap=0.5))
    events = feed.events()
    try:
        await next_of(events, Link, where=lambda e: e.state == CONNECTED)
        hub.restart()
        down = await next_of(events, Link, where=lambda e: e.state == RECONNECTING
                             and e.retry_at is not None, timeout=20)
        assert down.retry_at is not None
        # A restarted hub starts a new epoch: nothing can be replayed, every topic comes
        # back as a snapshot, and the link says so until the last one is in.
        back = await next_of(events, Link, where=lambda e: e.state != RECONNECTING,
                             timeout=30)
        assert back.state == RESYNCING
        snapshot = await next_of(events, Snapshot, timeout=10)
        assert snapshot.topic == "team_a"
        await next_of(events, Link, where=lambda e: e.state == CONNECTED, timeout=10)
    finally:
        await feed.close()


def test_the_session_carries_the_tokens_role_claim_when_it_has_one() -> None:
    import jwt

    from monitor.tui.hubfeed import session_from_authen

    reply = {"r": 0, "userId": "sup_1", "subscribe": ["team_a"]}
    token = jwt.encode({"userId": "sup_1", "displayName": "Sam", "role": "supervisor"},
                       "a secret of thirty-two bytes at least", algorithm="HS256")
    session = session_from_authen(reply, token)
    assert (session.user_id, session.display_name, session.role) == \
        ("sup_1", "Sam", "supervisor")
    plain = jwt.encode({"userId": "sup_1"}, "a secret of thirty-two bytes at least",
                       algorithm="HS256")
    assert session_from_authen(reply, plain).role is None
