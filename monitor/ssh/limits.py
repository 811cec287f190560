"""How much the SSH door lets a client try before it is in. Pure (no asyncssh here:
``monitor ssh-serve --help`` reads the defaults without loading it).

Two limits, as OpenSSH has them: failed attempts per connection (``MaxAuthTries``), and
failed logins per client address (``PerSourcePenalties``), the latter in bounded memory.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_AUTH_TRIES = 6  # OpenSSH's MaxAuthTries default
MAX_LOGIN_FAILURES = 10
LOGIN_FAILURE_WINDOW_S = 300.0
MAX_THROTTLED_ADDRESSES = 10_000


class LoginThrottle:
    """Failed logins per client address, in bounded memory.

    An address with ``max_failures`` failed logins within the last ``window`` seconds is
    refused until the oldest of them is that old: a steady ``max_failures`` guesses per
    window at most, and a user who mistyped is let in again by waiting. IPv6 addresses
    count by their /64 (one host commonly holds a whole /64). At most ``max_addresses``
    are remembered; beyond that the one whose last failure is oldest is forgotten.
    ``max_failures`` 0 turns the throttle off.
    """

    def __init__(self, max_failures: int = MAX_LOGIN_FAILURES,
                 window: float = LOGIN_FAILURE_WINDOW_S, *,
                 max_addresses: int = MAX_THROTTLED_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        """Address -> times of its latest failures; least recently failed first."""

    def __len__(self) -> int:
        return len(self._failures)

    @staticmethod
    def key(host: str) -> str:
        """What failures are counted by: the address, or an IPv6 address's /64."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def _prune(self, now: float) -> None:
        """Forget addresses whose every failure is older than the window."""
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if now - times[-1] < self.window:
                break
            del self._failures[key]

    def blocked_for(self, host: str) -> float:
        """Seconds until ``host`` may try again (0: now)."""
        times = self._failures.get(self.key(host))
        if not self.max_failures or times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window - self._clock())

    def failed(self, host: str) -> bool:
        """Count a failed login from ``host``; True when it blocks the address."""
        if not self.max_failures:
            return False
        now = self._clock()
        self._prune(now)
        key = self.key(host)
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        times.append(now)
        self._failures[key] = times  # now the most recently failed
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        return self.blocked_for(host) > 0
