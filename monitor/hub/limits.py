"""Rate limits: AUTHEN attempts per client IP."""

from __future__ import annotations

import time
from typing import Any


class AuthRateLimiter:
    """A token bucket per IP: ``burst`` attempts at once, then ``per_second``."""

    def __init__(self, per_second: float = 50.0, burst: float = 200.0,
                 max_tracked: int = 100_000) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}

    def refuse(self, address: Any, now: float | None = None) -> bool:
        """Take one attempt for ``address``; True when it is over its limit."""
        ip = str(address[0]) if isinstance(address, tuple) and address else str(address)
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if len(self._buckets) >= self.max_tracked and ip not in self._buckets:
            self._buckets.clear()  # bounded memory beats perfect fairness under a flood
        if tokens < 1:
            self._buckets[ip] = (tokens, now)
            return True
        self._buckets[ip] = (tokens - 1, now)
        return False
