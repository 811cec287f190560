"""Rate limits: token buckets by key (AUTHEN attempts per client IP, REST changes per
API key). The per-connection request limit is a bucket on the connection itself
(:meth:`monitor.hub.ws.Peer.take_allowance`), with no table to look up."""

from __future__ import annotations

import time
from typing import Any


class RateLimiter:
    """A token bucket per key: ``burst`` at once, then ``per_second``."""

    def __init__(self, per_second: float = 50.0, burst: float = 200.0,
                 max_tracked: int = 100_000) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait(self, key: str, now: float | None = None) -> float:
        """Take one for ``key``: 0.0 when allowed, else the seconds until it would be."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if len(self._buckets) >= self.max_tracked and key not in self._buckets:
            self._buckets.clear()  # bounded memory beats perfect fairness under a flood
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.per_second if self.per_second > 0 else float("inf")
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def refuse(self, address: Any, now: float | None = None) -> bool:
        """Take one attempt for the IP of ``address``; True when it is over its limit."""
        ip = str(address[0]) if isinstance(address, tuple) and address else str(address)
        return self.wait(ip, now) > 0
