"""Fixtures of the hub's acceptance tests: real hub processes with chosen settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hub.wire import hub_with
from tests.hubproc import HubProcess

HubFactory = Callable[..., HubProcess]


@pytest.fixture(scope="module")
def quick_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub shared by one module, where a user goes offline as soon as its last
    connection closes (``offline_grace_ms = 0``)."""
    process = hub_with(tmp_path_factory.mktemp("hub"), offline_grace_ms=0)
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[HubFactory]:
    """Start hubs with their own [hub] settings for one test: ``make_hub(history_size=5)``."""
    started: list[HubProcess] = []

    def make(**settings: int | str) -> HubProcess:
        process = hub_with(tmp_path / f"hub{len(started)}", **settings)
        started.append(process)
        return process

    try:
        yield make
    finally:
        for process in started:
            process.kill()
