"""Fixtures of the call tests: real hubs whose users go offline as soon as they leave."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.calls.callwire import Users
from tests.hub.conftest import make_hub  # hubs with their own [hub] settings, one test each
from tests.hub.wire import hub_with
from tests.hubproc import HubProcess


@pytest.fixture(scope="session")
def call_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub shared by the call tests (each uses user and call ids of its own); calls
    ring for 30 s (the default) before "no answer". Never stopped by a test."""
    process = hub_with(tmp_path_factory.mktemp("callhub"), offline_grace_ms=0)
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def rest(call_hub: HubProcess) -> Iterator[httpx.Client]:
    """The shared hub's REST API, with a REST token."""
    with call_hub.rest() as client:
        yield client


@pytest.fixture
async def users(call_hub: HubProcess) -> AsyncIterator[Users]:
    """Users of the shared hub for one test; their connections close when it ends."""
    opened = Users(call_hub)
    yield opened
    await opened.close_all()


__all__ = ["call_hub", "make_hub", "rest", "users"]
