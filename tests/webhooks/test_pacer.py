"""Delivery's share of the interpreter: bounded while the hub's loop (the main thread) is
busy, free while it is idle."""

from __future__ import annotations

import asyncio
import threading
import time

from monitor.hub.webhook_delivery import Pacer


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(200))


def delivery_share(main_busy: bool, seconds: float = 1.0) -> tuple[float, float]:
    """(the share of the wall time a CPU-bound delivery thread got, its pauses in s)."""
    out: dict[str, float] = {}

    def deliver() -> None:
        async def run() -> None:
            pacer = Pacer(0.1, window_s=0.05)
            start, cpu = time.monotonic(), time.thread_time()
            while time.monotonic() - start < seconds:
                await pacer.pace()
                spin(0.001)  # a request's worth of work
            out["share"] = (time.thread_time() - cpu) / (time.monotonic() - start)
            out["paused"] = pacer.paused_s

        asyncio.run(run())

    thread = threading.Thread(target=deliver)
    thread.start()
    if main_busy:
        spin(seconds + 0.2)
    thread.join()
    return out["share"], out["paused"]


def test_delivery_keeps_to_its_share_while_the_hub_is_busy_and_runs_free_otherwise() -> None:
    share, paused = delivery_share(main_busy=True)
    assert paused > 0.3
    assert share < 0.2, share
    share, paused = delivery_share(main_busy=False)
    assert paused == 0
    assert share > 0.2, share  # (the machine may be busy with other work)
