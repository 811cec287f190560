"""Delivery's share of the interpreter: bounded while the hub's loop (the main thread) is
busy, free while it is idle.

The share is a matter of CPU time against wall time, so it is checked on simulated
clocks: on a real machine, what each thread gets depends on what else runs there (a
loaded machine gives the hub's thread too little to count as busy, and delivery's too
little to need pausing). The real clocks are checked on their own: the hub's is the main
thread's, not the process's."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from monitor.hub.webhook_delivery import Pacer, _hub_cpu


@dataclass
class Machine:
    """Simulated clocks. Delivery, when it runs, gets ``delivery`` of the wall time and
    the hub's loop ``hub_with``; while delivery waits, the loop gets ``hub_alone``."""

    delivery: float
    hub_with: float
    hub_alone: float
    wall: float = 0.0
    delivery_cpu: float = 0.0
    hub_cpu: float = 0.0

    def run(self, cpu_s: float) -> None:
        """Delivery does ``cpu_s`` of work (a request's worth)."""
        wall = cpu_s / self.delivery
        self.wall += wall
        self.delivery_cpu += cpu_s
        self.hub_cpu += self.hub_with * wall

    async def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.hub_cpu += self.hub_alone * seconds


async def deliver(machine: Machine, seconds: float = 10.0) -> tuple[float, float]:
    """(delivery's share of the wall time, its pauses in s) over ``seconds``, pacing
    between requests of 1 ms of work at a share of 0.1."""
    pacer = Pacer(0.1, window_s=0.05, clock=lambda: machine.wall,
                  cpu=lambda: machine.delivery_cpu, hub_cpu=lambda: machine.hub_cpu,
                  sleep=machine.sleep)
    while machine.wall < seconds:
        await pacer.pace()
        machine.run(0.001)
    return machine.delivery_cpu / machine.wall, pacer.paused_s


async def test_delivery_keeps_to_its_share_while_the_hub_is_busy() -> None:
    # Both want the interpreter: each gets half; the loop gets it all while delivery waits.
    share, paused = await deliver(Machine(delivery=0.5, hub_with=0.5, hub_alone=1.0))
    assert 0.08 < share < 0.12, share
    assert 7.0 < paused < 8.5, paused  # of 10 s: at a share of 0.1 of 0.5, about 8 s


async def test_on_a_loaded_machine_too() -> None:
    # A loaded machine: each thread gets less, but the loop still gets over 0.25.
    share, paused = await deliver(Machine(delivery=0.3, hub_with=0.3, hub_alone=0.5))
    assert 0.08 < share < 0.12, share
    assert paused > 5.0, paused  # of 10 s: at a share of 0.1 of 0.3, about 6.7 s


async def test_delivery_runs_freely_while_the_hub_is_idle() -> None:
    share, paused = await deliver(Machine(delivery=0.9, hub_with=0.0, hub_alone=0.0))
    assert paused == 0
    assert abs(share - 0.9) < 1e-9, share


async def test_delivery_below_its_share_is_not_paused() -> None:
    share, paused = await deliver(Machine(delivery=0.08, hub_with=0.9, hub_alone=0.9))
    assert paused == 0
    assert abs(share - 0.08) < 1e-9, share


def test_the_hubs_clock_is_the_main_threads() -> None:
    """Spent on another thread, CPU time does not count as the hub's loop's."""
    hub = _hub_cpu()
    spent: dict[str, float] = {}

    def work() -> None:
        start = time.thread_time()
        while time.thread_time() - start < 0.05:  # CPU time: as long as the machine takes
            sum(range(200))
        spent["cpu"] = time.thread_time() - start

    before = hub()
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    waiting = hub() - before
    assert spent["cpu"] >= 0.05
    assert waiting < 0.02, waiting
    before = hub()
    start = time.thread_time()
    while time.thread_time() - start < 0.05:
        sum(range(200))
    assert hub() - before >= 0.05


async def test_a_real_pacer_does_not_pause_an_idle_hub() -> None:
    """On the real clocks, from a thread of its own, as delivery runs: the hub's loop
    waits (this test's thread joins), so delivery is never paused."""
    out: dict[str, float] = {}

    def run() -> None:
        async def paced() -> None:
            pacer = Pacer(0.1, window_s=0.05)
            start = time.monotonic()
            while time.monotonic() - start < 0.5:
                await pacer.pace()
                sum(range(2000))
            out["paused"] = pacer.paused_s

        asyncio.run(paced())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert out["paused"] == 0
