"""Simulated agents: each a real :class:`HubClient` over a real socket, behaving like one.

Customer calls come from :class:`Switchboard`, which plays a telephony system reporting
calls through the REST API; calls between colleagues go through the clients' own call
control. All waits are in simulated seconds, divided by the demo's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from monitor.client import Backoff, HubClient, HubError
from monitor.demo.scenario import (
    AFTER_CALL_WORK,
    AVAILABLE,
    TEAM_ATTRIBUTE,
    AgentProfile,
    Timing,
)

log = logging.getLogger("monitor.demo")


@dataclass
class DemoStats:
    """What the simulation did (the hub's view is checked separately by tests)."""

    logins: int = 0
    status_changes: int = 0
    drops: int = 0
    calls_by_status: dict[str, int] = field(default_factory=dict)

    def call(self, status: str) -> None:
        self.calls_by_status[status] = self.calls_by_status.get(status, 0) + 1


class Clock:
    """Simulated time: ``sleep(s)`` waits ``s / speed`` real seconds."""

    def __init__(self, speed: float) -> None:
        self.speed = speed

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(simulated_s, 0.0) / self.speed)


class Agent:
    """One agent's working day."""

    def __init__(self, profile: AgentProfile, url: str, token: str, clock: Clock,
                 rng: random.Random, stats: DemoStats,
                 colleagues: Callable[[], list[Agent]]) -> None:
        self.profile = profile
        self.url = url
        self.token = token
        self.clock = clock
        self.timing = Timing(rng)
        self.rng = rng
        self.stats = stats
        self.colleagues = colleagues
        self.client: HubClient | None = None
        self.status: str | None = None
        self.in_call = False
        self.call_ended = asyncio.Event()
        self.call_offered = asyncio.Event()
        self.call_answered = asyncio.Event()

    @property
    def user_id(self) -> str:
        return self.profile.user_id

    @property
    def free(self) -> bool:
        """Logged in, available and not on a call: can take a customer call."""
        return (self.client is not None and self.client.connected
                and self.status == AVAILABLE and not self.in_call)

    # -- the day ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Log in at the shift's start, work, log out at its end, come back later."""
        await self.clock.sleep(self.profile.shift_start_s)
        opening = self.profile.opening
        while True:
            await self._shift(self.profile.shift_length_s, opening)
            opening = AVAILABLE
            await self.clock.sleep(self.rng.uniform(1800, 3600))  # off between shifts

    async def _shift(self, length_s: float, opening: str = AVAILABLE) -> None:
        client = HubClient(self.url, self.token, device_id=f"demo-{self.user_id}",
                           backoff=Backoff(base=0.2, cap=3.0))
        client.on("incomingcall", self._on_incoming_call)
        client.on("callstate", self._on_call_state)
        self.client = client
        try:
            await client.connect(retry=True)
            self.stats.logins += 1
            await self._set(TEAM_ATTRIBUTE, self.profile.team)
            if opening in ("after_call", "break"):  # the demo starts mid-way through it
                await self._set_status(AFTER_CALL_WORK if opening == "after_call" else
                                       self.timing.pick_break()[0])
                await self.clock.sleep(self.profile.opening_s)
            await self._set_status(AVAILABLE)
            work = asyncio.create_task(self._work())
            flaky = asyncio.create_task(self._flaky()) if self.profile.flaky else None
            await self.clock.sleep(length_s)
            for task in (work, flaky):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            self.client = None
            self.status = None
            self.end_call()
            await client.close()

    async def _work(self) -> None:
        while True:
            # Available: wait for a call, or go and do something else.
            self.call_offered.clear()
            try:
                await asyncio.wait_for(self.call_offered.wait(),
                                       self.timing.idle_before_break() / self.clock.speed)
                took_call = True
            except TimeoutError:
                took_call = self.in_call or (self.rng.random() < 0.25
                                             and await self._call_a_colleague())
            if took_call:
                await self._until_call_ends()
                await self._set_status(AFTER_CALL_WORK)
                await self.clock.sleep(self.timing.after_call_work())
                await self._set_status(AVAILABLE)
                continue
            name, length = self.timing.pick_break()
            await self._set_status(name)
            await self.clock.sleep(length)
            await self._set_status(AVAILABLE)

    def start_call(self) -> None:
        """The agent is on a call from now on (until :meth:`end_call`)."""
        self.in_call = True
        self.call_ended.clear()
        self.call_answered.clear()
        self.call_offered.set()

    def end_call(self) -> None:
        self.in_call = False
        self.call_ended.set()

    async def _until_call_ends(self) -> None:
        while self.in_call:
            await self.call_ended.wait()

    async def _set_status(self, status: str) -> None:
        if await self._set("manual_status", status):
            self.status = status
            self.stats.status_changes += 1

    async def _set(self, attribute: str, value: str) -> bool:
        client = self.client
        if client is None:
            return False
        try:
            await client.change_attribute(attribute, value)
        except HubError as exc:
            log.info("agent %s could not set %s to %s: %s", self.user_id, attribute, value,
                     exc)
            return False
        return True

    async def _flaky(self) -> None:
        """Now and then the agent's network drops; the client reconnects and resumes."""
        while True:
            await self.clock.sleep(self.timing.network_drop_gap())
            if self.client is not None and self.client.drop_connection():
                self.stats.drops += 1

    # -- calls between colleagues ---------------------------------------------------------

    async def _call_a_colleague(self) -> bool:
        candidates = [a for a in self.colleagues() if a is not self and a.free]
        if not candidates or self.client is None:
            return False
        callee = self.rng.choice(candidates)
        try:
            reply = await self.client.make_call(callee.user_id)
        except HubError:
            return False
        call = reply.get("call", {})
        if call.get("status") == "Ended":
            return False
        self.start_call()
        # Talk once the callee answers; give up on ringing after 45 s (the hub's own
        # no-answer timeout may end the call first).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.call_answered.wait(), 45 / self.clock.speed)
        if self.in_call:
            if self.call_answered.is_set():
                await self.clock.sleep(self.timing.talk())
            with contextlib.suppress(HubError):
                await self.client.hangup(call["callId"])
        return True

    async def _on_incoming_call(self, body: dict[str, Any]) -> None:
        call = body.get("call", {})
        client = self.client
        if client is None:
            return
        call_id = call.get("callId")
        if self.in_call or self.status != AVAILABLE:
            with contextlib.suppress(HubError):
                await client.reject(call_id)
            return
        self.start_call()
        with contextlib.suppress(HubError):
            await client.ringing(call_id)
            await self.clock.sleep(self.timing.ring())
            if self.in_call:
                await client.answer(call_id)

    def _on_call_state(self, body: dict[str, Any]) -> None:
        call = body.get("call", {})
        status = call.get("status")
        if call.get("direction") == "internal" and call.get("from") == self.user_id:
            self.stats.call(status)
        if status == "Answered":
            self.call_answered.set()
        elif status == "Ended" and self.in_call:
            self.end_call()


class Switchboard:
    """Customer calls: a telephony system reporting them through the REST API."""

    def __init__(self, api_url: str, rest_token: str, agents: list[Agent], clock: Clock,
                 rng: random.Random, stats: DemoStats) -> None:
        self.api_url = api_url
        self.rest_token = rest_token
        self.agents = agents
        self.clock = clock
        self.timing = Timing(rng)
        self.rng = rng
        self.stats = stats
        self._calls: set[asyncio.Task[None]] = set()
        self._next = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=10,
                                     headers={"X-STRINGEE-AUTH": self.rest_token}) as http:
            try:
                for agent in self.agents:  # the calls already going when the demo starts
                    if agent.profile.opening in ("talking", "ringing"):
                        self._start(self._opening_call(http, agent))
                while True:
                    online = sum(1 for a in self.agents if a.client is not None)
                    await self.clock.sleep(self.timing.inbound_gap(online))
                    free = [a for a in self.agents if a.free]
                    if free:
                        self._start(self._customer_call(http, self.rng.choice(free)))
            finally:
                # Every call still going ends before the HTTP client closes: none is left
                # to report through a closed client when the demo stops.
                for task in list(self._calls):
                    task.cancel()
                await asyncio.gather(*self._calls, return_exceptions=True)

    def _start(self, call: Any) -> None:
        task = asyncio.create_task(call)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _opening_call(self, http: httpx.AsyncClient, agent: Agent) -> None:
        """A call that was already going when the demo started: talking (rung a moment
        ago) or still ringing, with its time left."""
        for _ in range(200):  # the agent is signing in; a call needs them free
            if agent.free:
                break
            await asyncio.sleep(0.05)
        else:
            return
        left = agent.profile.opening_s
        if agent.profile.opening == "talking":
            await self._customer_call(http, agent, ring=0.2, talk=left)
        else:  # a customer who has waited this long waits on until answered
            await self._customer_call(http, agent, ring=left, patient=True)

    async def _report(self, http: httpx.AsyncClient, call_id: str, body: dict[str, Any]) -> bool:
        try:
            response = await http.put(f"/v1/calls/{call_id}", json=body)
        except httpx.HTTPError as exc:
            log.info("telephony report failed: %s", exc)
            return False
        if response.status_code == 200:
            self.stats.call(body["status"])
            return True
        log.info("telephony report refused: %s", response.text)
        return False

    async def _customer_call(self, http: httpx.AsyncClient, agent: Agent, *,
                             ring: float | None = None, talk: float | None = None,
                             patient: bool = False) -> None:
        """A customer calls ``agent``: it rings (``ring`` s, else a drawn time) until the
        agent answers, or the customer's patience runs out first (abandoned), or now and
        then nobody picks up; an answered call lasts ``talk`` s (else a drawn time)."""
        self._next += 1
        call_id = f"pstn-{self._next:05d}"
        customer = f"+44 20 7946 {self.rng.randint(0, 9999):04d}"
        agent.start_call()
        try:
            if not await self._report(http, call_id, {"from": customer, "to": agent.user_id,
                                                      "status": "Calling"}):
                return
            await self.clock.sleep(0.5 if ring is None else 0.1)
            await self._report(http, call_id, {"status": "Ringing"})
            rings = self.timing.ring() if ring is None else ring
            patience = self.timing.patience()
            if patience < rings and not patient:  # the customer hangs up: abandoned
                await self.clock.sleep(patience)
            else:
                await self.clock.sleep(rings)
                if (patient or self.timing.answers()) and agent.client is not None:
                    await self._report(http, call_id, {"status": "Answered"})
                    await self.clock.sleep(self.timing.talk() if talk is None else talk)
            await self._report(http, call_id, {"status": "Ended"})
        finally:
            agent.end_call()
