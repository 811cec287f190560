"""RateLimiter: a token bucket per key (here, per client IP)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from monitor.hub.limits import RateLimiter


def attempts(limiter: RateLimiter, address: Any, count: int, now: float) -> list[bool]:
    return [limiter.refuse(address, now) for _ in range(count)]


def test_burst_is_allowed_then_refused() -> None:
    limiter = RateLimiter(per_second=1, burst=5)
    assert attempts(limiter, "10.0.0.1", 5, 100.0) == [False] * 5
    assert attempts(limiter, "10.0.0.1", 3, 100.0) == [True] * 3


def test_tokens_come_back_at_the_rate() -> None:
    limiter = RateLimiter(per_second=2, burst=4)
    attempts(limiter, "ip", 4, 0.0)
    assert limiter.refuse("ip", 0.25)          # half a token
    assert not limiter.refuse("ip", 0.5)       # one token
    assert limiter.refuse("ip", 0.5)
    assert attempts(limiter, "ip", 3, 2.0) == [False, False, False]
    assert limiter.refuse("ip", 2.0)


def test_refused_attempts_cost_nothing() -> None:
    limiter = RateLimiter(per_second=1, burst=1)
    assert not limiter.refuse("ip", 0.0)
    for t in (0.1, 0.2, 0.3, 0.9):
        assert limiter.refuse("ip", t)
    assert not limiter.refuse("ip", 1.0)


def test_tokens_never_exceed_the_burst() -> None:
    limiter = RateLimiter(per_second=100, burst=3)
    assert not limiter.refuse("ip", 0.0)
    assert attempts(limiter, "ip", 4, 10_000.0) == [False, False, False, True]


def test_each_ip_has_its_own_bucket() -> None:
    limiter = RateLimiter(per_second=1, burst=2)
    assert attempts(limiter, "a", 3, 0.0) == [False, False, True]
    assert attempts(limiter, "b", 3, 0.0) == [False, False, True]


def test_the_port_of_a_socket_address_does_not_matter() -> None:
    limiter = RateLimiter(per_second=1, burst=2)
    assert not limiter.refuse(("10.0.0.1", 50000), 0.0)
    assert not limiter.refuse(("10.0.0.1", 50001), 0.0)
    assert limiter.refuse("10.0.0.1", 0.0)
    assert not limiter.refuse(("::1", 1, 0, 0), 0.0)  # IPv6 addresses have four fields


@pytest.mark.parametrize("address", [None, (), "", ("",)])
def test_odd_addresses_do_not_break_it(address: Any) -> None:
    limiter = RateLimiter(per_second=1, burst=1)
    assert not limiter.refuse(address, 0.0)
    assert limiter.refuse(address, 0.0)


def test_memory_is_bounded_by_max_tracked() -> None:
    limiter = RateLimiter(per_second=1, burst=1, max_tracked=10)
    for i in range(10):
        assert not limiter.refuse(f"ip{i}", 0.0)
    assert limiter.refuse("ip0", 0.0)  # still tracked, still limited
    assert len(limiter._buckets) == 10
    assert not limiter.refuse("newcomer", 0.0)  # the table is full: start over
    assert len(limiter._buckets) == 1
    assert not limiter.refuse("ip0", 0.0)  # forgotten, so allowed again


def test_a_known_ip_at_the_bound_keeps_the_table() -> None:
    limiter = RateLimiter(per_second=1, burst=2, max_tracked=3)
    for ip in ("a", "b", "c"):
        limiter.refuse(ip, 0.0)
    limiter.refuse("a", 0.0)
    assert sorted(limiter._buckets) == ["a", "b", "c"]
    assert limiter.refuse("a", 0.0)


def test_defaults_use_the_monotonic_clock() -> None:
    limiter = RateLimiter()
    assert (limiter.per_second, limiter.burst) == (50.0, 200.0)
    assert [limiter.refuse("ip") for _ in range(200)] == [False] * 200
    # Far in the monotonic future the bucket is full again, never fuller.
    later = time.monotonic() + 3600
    assert attempts(limiter, "ip", 201, later) == [False] * 200 + [True]


def test_a_burst_below_one_refuses_everything() -> None:
    limiter = RateLimiter(per_second=10, burst=0.5)
    assert limiter.refuse("ip", 0.0)
    assert limiter.refuse("ip", 100.0)


def test_wait_says_how_long_until_the_next_token() -> None:
    limiter = RateLimiter(per_second=4, burst=2)
    assert limiter.wait("key", 0.0) == 0.0
    assert limiter.wait("key", 0.0) == 0.0
    assert limiter.wait("key", 0.0) == pytest.approx(0.25)
    assert limiter.wait("key", 0.125) == pytest.approx(0.125)
    assert limiter.wait("key", 0.25) == 0.0
    assert limiter.wait("other", 0.25) == 0.0  # keys are independent
