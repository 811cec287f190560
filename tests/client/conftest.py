"""Fixtures of the client SDK tests: a fake hub, fast clients, an event recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from monitor.client import EVENTS, Backoff, HubClient
from tests.client.fakehub import FakeHub, eventually

FAST = Backoff(base=0.01, cap=0.05)


class Recorder:
    """Every event of a client, in order: ``(name, payload)``."""

    def __init__(self, client: HubClient) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in sorted(EVENTS):
            client.on(name, self._handler(name))  # type: ignore[arg-type]

    def _handler(self, name: str) -> Callable[[Any], None]:
        def record(payload: Any) -> None:
            self.events.append((name, payload))
        return record

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    def of(self, name: str) -> list[Any]:
        return [p for n, p in self.events if n == name]

    def seqs(self, topic: str | None = None) -> list[int]:
        return [p["seq"] for p in self.of("messagefromtopic")
                if topic is None or p["topic"] == topic]

    def values(self) -> list[Any]:
        return [p["message"]["newValue"] for p in self.of("messagefromtopic")]

    async def wait(self, name: str, count: int = 1, timeout: float = 3.0) -> list[Any]:
        await eventually(lambda: len(self.of(name)) >= count, timeout,
                         lambda: f"{count} {name} event(s); got {self.names()}")
        return self.of(name)


@pytest.fixture
async def fake() -> AsyncIterator[FakeHub]:
    hub = await FakeHub().start()
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., HubClient]]:
    """``make_client(url, token, **options)``: a client with fast timings, closed at the end."""
    clients: list[HubClient] = []

    def make(url: str, token: str | None = None, **options: Any) -> HubClient:
        options.setdefault("backoff", FAST)
        options.setdefault("request_timeout", 2.0)
        client = HubClient(url, token, **options)
        clients.append(client)
        return client

    yield make
    await asyncio.gather(*(c.close() for c in clients))
