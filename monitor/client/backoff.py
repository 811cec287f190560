"""Reconnect delays: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How long to wait before reconnect attempt ``n`` (0-based).

    The delay is drawn uniformly from ``[0, min(cap, base * factor**n)]`` ("full jitter"),
    so that many clients dropped at once by a hub restart do not come back in step.
    ``max_attempts`` bounds the attempts of one outage (``None``: keep trying).
    """

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1:
            raise ValueError("Backoff needs base >= 0, cap >= 0 and factor >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Backoff.max_attempts must be at least 1 (or None)")

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` may wait."""
        # the exponent is clamped: past ~64 doublings every base is above any sane cap
        return min(self.cap, self.base * self.factor ** min(max(attempt, 0), 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A delay for attempt ``attempt``, drawn with ``rng`` (default: the module's)."""
        return (rng or random).uniform(0.0, self.ceiling(attempt))

    def gives_up_after(self, attempts: int) -> bool:
        """True when ``attempts`` failed attempts exhaust ``max_attempts``."""
        return self.max_attempts is not None and attempts >= self.max_attempts
