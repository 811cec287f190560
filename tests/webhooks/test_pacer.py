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


def delivery_share(hub_busy: bool, seconds: float = 1.5) -> tuple[float, float]:
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
    if hub_busy:
        spin(seconds + 0.2)
    thread.join()
    return out["share"], out["paused"]


def test_delivery_keeps_to_its_share_while_the_hub_is_busy() -> None:
    share, paused = delivery_share(hub_busy=True)
    assert paused > 0.5  # of 1.5 s: at a share of 0.1, about 1.2 s
    assert share < 0.25, share


def test_delivery_runs_freely_while_the_hub_is_idle() -> None:
    share, paused = delivery_share(hub_busy=False)
    assert paused == 0
    assert share > 0.3, share  # (the machine may be busy with other work)
