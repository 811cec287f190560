"""New tokens: before ``exp`` and on ``r = 6``, from a provider or the requestnewtoken event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.client import AuthenticationError, token_expiry
from tests.client.conftest import Recorder
from tests.client.fakehub import eventually, token

TEAM = "team_a"


def fresh(ttl_s: int = 3600) -> str:
    return token("agent_1", subscribe=[TEAM], ttl_s=ttl_s)


def test_token_expiry_reads_exp_without_verifying():
    tok = fresh(ttl_s=100)
    exp = token_expiry(tok)
    assert exp is not None and token_expiry(fresh(ttl_s=200)) == exp + 100
    assert token_expiry("not a token") is None and token_expiry(None) is None


async def test_provider_is_asked_before_exp_and_its_token_used_on_reconnect(fake, make_client):
    issued: list[str] = []

    async def provider() -> str:
        issued.append(fresh())
        return issued[-1]

    # a token 30 s from exp with refresh_before 60 s: due at once
    client = make_client(fake.url, fresh(ttl_s=30), token_provider=provider,
                         refresh_before=60)
    await client.connect()
    await eventually(lambda: len(issued) == 1, message="a refresh")
    assert client.token == issued[0]
    await asyncio.sleep(0.05)
    assert len(issued) == 1  # the new token is far from exp: no more asking
    fake.drop_connections()
    await eventually(lambda: len(fake.authens) == 2)
    assert fake.authens[1]["accesstoken"] == issued[0]
    assert client.stats.token_refreshes == 1


async def test_requestnewtoken_handler_may_return_the_token(fake, make_client):
    first = fresh(ttl_s=30)
    client = make_client(fake.url, first, refresh_before=60)
    new = fresh()
    requests: list[dict[str, Any]] = []

    @client.on("requestnewtoken")
    def supply(payload: dict[str, Any]) -> str:
        requests.append(payload)
        return new

    await client.connect()
    await eventually(lambda: client.token == new)
    assert requests[0]["reason"] == "expiring"
    assert requests[0]["exp"] == token_expiry(first)


async def test_expired_on_reconnect_asks_for_a_token_and_retries(fake, make_client):
    old = fresh()
    client = make_client(fake.url, old)
    events = Recorder(client)
    new = fresh(ttl_s=7200)

    async def supply_later(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        client.set_token(new)  # the other way to answer

    client.on("requestnewtoken", supply_later)
    await client.connect()
    fake.expired_tokens.add(old)
    fake.drop_connections()
    await events.wait("authen", 3)
    assert [a["r"] for a in events.of("authen")] == [0, 6, 0]
    assert events.of("requestnewtoken")[0]["reason"] == "expired"
    assert fake.authens[-1]["accesstoken"] == new and client.connected


async def test_expired_with_no_new_token_stops_the_client(fake, make_client):
    old = fresh()
    client = make_client(fake.url, old, token_wait=0.1)
    stream = client.messages()
    await client.connect()
    fake.expired_tokens.add(old)
    fake.drop_connections()
    with pytest.raises(AuthenticationError) as stopped:
        await asyncio.wait_for(client.wait_closed(), 2)
    assert stopped.value.r == 6 and client.error is stopped.value
    with pytest.raises(AuthenticationError):
        await asyncio.wait_for(anext(stream), 1)


async def test_expired_at_first_connect_uses_the_provider(fake, make_client):
    old, new = fresh(), fresh(ttl_s=7200)
    fake.expired_tokens.add(old)
    client = make_client(fake.url, old, token_provider=lambda: new)
    reply = await client.connect()
    assert reply["r"] == 0 and client.token == new
    assert [a["accesstoken"] for a in fake.authens] == [old, new]


async def test_provider_alone_supplies_the_first_token(fake, make_client):
    client = make_client(fake.url, token_provider=fresh)
    await client.connect()
    assert client.connected and fake.authens[0]["accesstoken"] == client.token
