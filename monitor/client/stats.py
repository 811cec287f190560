"""Counters of one client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClientStats:
    """Counters of one :class:`~monitor.client.HubClient`, for tests, logs and benchmarks."""

    authenticated: int = 0       #: successful AUTHENs (first connect included)
    reconnects: int = 0          #: successful AUTHENs after a drop
    delivered: int = 0           #: topic messages handed to the application
    duplicates: int = 0          #: topic messages dropped as already delivered
    gaps: int = 0                #: seq jumps seen in the live stream
    resyncs: int = 0             #: resync events emitted
    stale: int = 0               #: queued messages skipped as covered by a snapshot
    silent_hub: int = 0          #: connections dropped because the hub fell silent
    token_refreshes: int = 0     #: new tokens taken (set_token, provider, handler)
