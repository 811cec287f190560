"""What a failed webhook test leaves behind: each receiver's requests and the tail of each
hub's log, as sections of the failure's report (a timeout otherwise says nothing of what
did arrive, or of what the hub did meanwhile)."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

import pytest

from tests.hubproc import HubProcess
from tests.webhooks.receiver import Receiver

LOG_LINES = 80
REQUESTS = 80

_watched: list[HubProcess | Receiver] = []
W = TypeVar("W", HubProcess, Receiver)


def watch(thing: W) -> W:
    """Report on ``thing`` if the running test fails."""
    _watched.append(thing)
    return thing


@pytest.fixture(autouse=True)
def _forget_watched() -> Iterator[None]:
    _watched.clear()
    yield
    _watched.clear()


def describe(receiver: Receiver) -> str:
    """One line a request: its webhook-id, the answer's status, what the event was."""
    with receiver.lock:
        requests = list(receiver.requests)
    lines = [f"{len(requests)} requests to {receiver.url}"]
    if len(requests) > REQUESTS:
        lines.append(f"(the last {REQUESTS})")
    for r in requests[-REQUESTS:]:
        try:
            event: Any = json.loads(r.body)
        except ValueError:
            event = r.body[:80]
        if isinstance(event, dict):
            fields = ("type", "userId", "attribute", "value")
            event = " ".join(f"{k}={event[k]}" for k in fields if k in event) or event
        lines.append(f"{r.headers.get('webhook-id')} -> {r.status or 'no answer'}: {event}")
    return "\n".join(lines)


def log_tail(hub: HubProcess) -> str:
    lines = hub.log().splitlines()
    return "\n".join(lines[-LOG_LINES:]) or "(empty)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    hubs = 0
    for thing in _watched:
        if isinstance(thing, Receiver):
            report.sections.append((f"receiver {thing.url}", describe(thing)))
        else:
            hubs += 1
            report.sections.append((f"hub {hubs} log (last {LOG_LINES} lines, "
                                    f"{thing.log_path})", log_tail(thing)))
