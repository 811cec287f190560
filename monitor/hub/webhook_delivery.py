"""Webhook delivery: each endpoint reads the event log from its durable cursor and POSTs
each event it wants (:mod:`monitor.hub.webhooks` decides what, how signed, when retried).

At least once: the cursor moves past an event only once it and every event before it
are delivered or dead-lettered, and it is saved a moment later; after a crash the
events past the saved cursor are sent again (a receiver de-duplicates on
``webhook-id``). In order per user: a user's next event waits until the previous one is
delivered or dead-lettered; other users' go meanwhile, at most ``max_in_flight``
requests at once per endpoint. A slow or huge answer costs one slot of one endpoint
until the timeout, never the event loop or another endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from monitor.config import Project, Webhook
from monitor.hub.logs import log_field
from monitor.hub.metrics import HubMetrics
from monitor.hub.webhooks import (
    Delivery,
    DeliveryStore,
    Lanes,
    Lease,
    Outbox,
    Outcome,
    endpoint_id,
    headers,
    message_id,
    next_wait_ms,
    order_keys,
    outcome_of,
    payload,
    retry_after_ms,
    wanted,
)

log = logging.getLogger("monitor.hub")

WINDOW = 10_000  # events of one endpoint read and not yet done
PAGE = 1000  # events read from the log at once
POLL_S = 0.05  # how often an idle endpoint looks for new events
SAVE_EVERY_S = 0.25  # a moved cursor is saved at most this often
CONNECT_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 1024  # read of an answer's body (the rest is dropped)
MAX_ERROR_CHARS = 300


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Endpoint:
    """One configured endpoint and its progress."""

    project_id: int
    hook: Webhook
    id: str
    client: httpx.AsyncClient
    slots: asyncio.Semaphore
    cursor: int = 0
    read: int = 0
    # Positions read and not yet passed by the cursor, in log order, and those done.
    window: deque[int] = field(default_factory=deque)
    finished: set[int] = field(default_factory=set)
    bodies: dict[int, bytes] = field(default_factory=dict)
    lanes: Lanes = field(default_factory=Lanes)
    failing: dict[int, int] = field(default_factory=dict)  # position: first failure (ms)
    saved: int = 0
    delivered: int = 0
    dead: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sending: bool = False  # this node sends for the endpoint (holds its lease)
    valid_until: float = float("inf")  # monotonic: the lease surely held until then
    generation: int = 0  # deliveries of an earlier turn of sending are dropped
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    save_at: float = 0.0  # monotonic: when the cursor may be saved again

    def reset(self) -> None:
        self.window.clear()
        self.finished.clear()
        self.bodies.clear()
        self.lanes = Lanes()
        self.failing.clear()

    def state(self) -> dict[str, Any]:
        since = min(self.failing.values()) if self.failing else None
        return {"id": self.id, "url": self.hook.url.split("?", 1)[0],
                "state": "retrying" if since is not None else "healthy",
                "retryingSince": since, "pending": len(self.bodies),
                "delivered": self.delivered}


class WebhookDispatcher:
    """Every endpoint of every project, delivering from ``outbox``."""

    def __init__(self, projects: Sequence[Project], outbox: Outbox, store: DeliveryStore,
                 metrics: HubMetrics, lease: Lease | None = None, lease_ms: int = 0) -> None:
        self._outbox = outbox
        self._store = store
        self._lease = lease
        self._lease_ms = lease_ms
        self._metrics = metrics
        self._random = random.SystemRandom()
        self.endpoints: dict[str, Endpoint] = {}
        for project in projects:
            for hook in project.webhooks:
                timeout = hook.timeout_ms / 1000
                client = httpx.AsyncClient(
                    follow_redirects=False, trust_env=False,
                    timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
                    limits=httpx.Limits(max_connections=hook.max_in_flight,
                                        max_keepalive_connections=hook.max_in_flight))
                eid = endpoint_id(project.id, hook.url)
                self.endpoints[eid] = Endpoint(project.id, hook, eid, client,
                                               asyncio.Semaphore(hook.max_in_flight))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runners: list[asyncio.Task[Any]] = []
        self._stopping = False

    # -- running ---------------------------------------------------------------------

    async def start(self) -> None:
        for ep in self.endpoints.values():
            if self._lease is None:
                await self._begin(ep)
            self._runners.append(asyncio.create_task(self._run(ep)))

    async def _begin(self, ep: Endpoint) -> None:
        """Start sending for ``ep`` from its saved cursor."""
        cursor = await self._store.cursor(ep.project_id, ep.id)
        if cursor is None:  # a new endpoint: from now on, not the whole history
            cursor = await self._store.last_position(ep.project_id)
            await self._store.save_cursor(ep.project_id, ep.id, cursor)
        ep.reset()
        ep.generation += 1
        ep.cursor = ep.read = ep.saved = cursor
        ep.dead = await self._store.dead_count(ep.project_id, ep.id)
        ep.sending = True
        log.info("event=webhook_sending endpoint=%s project=%d cursor=%d", ep.id,
                 ep.project_id, cursor)

    def _halt(self, ep: Endpoint) -> None:
        """Stop sending for ``ep`` (its lease is lost): what was not done is another's."""
        ep.sending = False
        ep.generation += 1
        for task in list(ep.tasks):
            task.cancel()
        ep.reset()
        log.warning("event=webhook_lease_lost endpoint=%s project=%d", ep.id, ep.project_id)

    async def _run(self, ep: Endpoint) -> None:
        if self._lease is None:
            await self._send(ep)
            return
        lease, lease_ms = self._lease, self._lease_ms
        while not self._stopping:
            asked = time.monotonic()
            try:
                got = await lease.acquire(ep.project_id, ep.id, lease_ms)
            except Exception as exc:
                log.warning("event=webhook_lease_failed endpoint=%s error=%s", ep.id,
                            log_field(str(exc)))
                got = False
            if got:
                ep.valid_until = asked + lease_ms * 2 / 3000
                try:
                    await self._begin(ep)
                    await self._send(ep)
                except Exception as exc:
                    log.warning("event=webhook_sending_failed endpoint=%s error=%s", ep.id,
                                log_field(str(exc)))
                if not self._stopping:
                    self._halt(ep)
            await asyncio.sleep(lease_ms / 3000)

    async def _renew(self, ep: Endpoint) -> bool:
        """Whether this node still sends for ``ep`` (renewing its lease when due)."""
        if self._lease is None:
            return True
        lease_ms = self._lease_ms
        if ep.valid_until - time.monotonic() < lease_ms / 3000:
            asked = time.monotonic()
            try:
                if not await self._lease.renew(ep.project_id, ep.id, lease_ms):
                    return False
                ep.valid_until = asked + lease_ms * 2 / 3000
            except Exception as exc:
                log.warning("event=webhook_lease_failed endpoint=%s error=%s", ep.id,
                            log_field(str(exc)))
        return time.monotonic() < ep.valid_until

    async def _send(self, ep: Endpoint) -> None:
        while not self._stopping and await self._renew(ep):
            room = WINDOW - len(ep.window)
            got = 0
            if room > 0:
                try:
                    rows = await self._outbox.events_after(ep.project_id, ep.read,
                                                           min(PAGE, room))
                except Exception as exc:  # the log unreadable for a moment: try again
                    log.warning("event=webhook_read_failed endpoint=%s error=%s", ep.id,
                                log_field(str(exc)))
                    rows = []
                got = len(rows)
                for position, event in rows:
                    self._add(ep, position, event)
            await self._save(ep)
            if got == 0 or got < min(PAGE, room):
                ep.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ep.wake.wait(), POLL_S)

    def _add(self, ep: Endpoint, position: int, event: dict[str, Any]) -> None:
        ep.read = position
        ep.window.append(position)
        if not wanted(ep.hook, event):
            ep.finished.add(position)
            self._advance(ep)
            return
        ep.bodies[position] = payload(ep.project_id, event)
        if ep.lanes.add(position, order_keys(event)):
            self._go(ep, position)

    def _go(self, ep: Endpoint, position: int) -> None:
        task = asyncio.create_task(self._deliver(ep, position, ep.generation))
        ep.tasks.add(task)
        task.add_done_callback(ep.tasks.discard)

    def _done(self, ep: Endpoint, position: int) -> None:
        ep.finished.add(position)
        ep.bodies.pop(position, None)
        ep.failing.pop(position, None)
        for nxt in ep.lanes.done(position):
            self._go(ep, nxt)
        self._advance(ep)

    def _advance(self, ep: Endpoint) -> None:
        full = len(ep.window) >= WINDOW
        window, finished = ep.window, ep.finished
        while window and window[0] in finished:
            first = window.popleft()
            finished.discard(first)
            ep.cursor = first
        if full and len(ep.window) < WINDOW:
            ep.wake.set()

    async def _save(self, ep: Endpoint, now: bool = False) -> None:
        if ep.cursor != ep.saved and (now or time.monotonic() >= ep.save_at):
            ep.save_at = time.monotonic() + SAVE_EVERY_S
            cursor = ep.cursor
            try:
                await self._store.save_cursor(ep.project_id, ep.id, cursor)
            except Exception as exc:
                log.warning("event=webhook_cursor_not_saved endpoint=%s error=%s", ep.id,
                            log_field(str(exc)))
                return
            ep.saved = cursor

    def _current(self, ep: Endpoint, generation: int) -> bool:
        """Whether a delivery of ``generation`` may still act for ``ep``."""
        return not self._stopping and ep.generation == generation and \
            time.monotonic() < ep.valid_until

    async def _deliver(self, ep: Endpoint, position: int, generation: int) -> None:
        body = ep.bodies[position]
        try:
            ok, attempts, error = await self._attempts(ep, position, body, generation)
            if not self._current(ep, generation):
                return  # stopping, or the lease lost: not done, sent again
            if not ok:
                await self._dead_letter(ep, position, body, attempts, error)
        except asyncio.CancelledError:
            return  # stopping: not done, sent again after the restart
        except Exception:
            log.exception("event=webhook_delivery_crashed endpoint=%s", ep.id)
            return
        if ep.generation == generation and not self._stopping:
            self._done(ep, position)

    async def _attempts(self, ep: Endpoint, position: int, body: bytes,
                        generation: int | None = None) -> tuple[bool, int, str]:
        """Attempt until delivered, final, or out of retries; (delivered, attempts, error).
        A delivery of ``generation`` stops once it may no longer act for ``ep``."""
        hook = ep.hook
        msg_id = message_id(ep.project_id, position)
        first_failure: float | None = None
        attempt = 0
        while True:
            if generation is not None and not self._current(ep, generation):
                return False, attempt, "stopped sending"
            attempt += 1
            outcome, error, wait_hint = await self._post(ep, msg_id, body)
            if outcome == "delivered":
                ep.delivered += 1
                self._count(ep, "delivered")
                return True, attempt, ""
            self._count(ep, "failed_attempt")
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
                ep.failing[position] = _now_ms()
            log.info("event=webhook_attempt_failed endpoint=%s id=%s attempt=%d error=%s", ep.id,
                     msg_id, attempt, log_field(error))
            if outcome == "final" or now - first_failure >= hook.retry_for_s \
                    or self._stopping:
                return False, attempt, error
            wait = next_wait_ms(attempt, hook, self._random.random(), wait_hint)
            await asyncio.sleep(wait / 1000)

    async def _post(self, ep: Endpoint, msg_id: str, body: bytes
                    ) -> tuple[Outcome, str, int | None]:
        sent = headers(ep.hook.secret, msg_id, int(time.time()), body)
        async with ep.slots:
            try:
                async with asyncio.timeout(ep.hook.timeout_ms / 1000):
                    async with ep.client.stream("POST", ep.hook.url, content=body,
                                                headers=sent) as answer:
                        text = b""
                        async for chunk in answer.aiter_raw():
                            text += chunk
                            if len(text) >= MAX_ANSWER_BYTES:
                                break
            except TimeoutError:
                return "retry", "timed out", None
            except httpx.HTTPError as exc:
                return "retry", f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], None
        outcome = outcome_of(answer.status_code)
        error = "" if outcome == "delivered" else \
            f"HTTP {answer.status_code}: " + text[:MAX_ANSWER_BYTES].decode(
                "utf-8", "replace")[:MAX_ERROR_CHARS]
        hint = retry_after_ms(answer.headers.get("retry-after"), _now_ms()) \
            if answer.status_code in (429, 503) else None
        return outcome, error, hint

    async def _dead_letter(self, ep: Endpoint, position: int, body: bytes, attempts: int,
                           error: str) -> None:
        delivery_id = await self._store.dead_letter(ep.project_id, ep.id, position, body,
                                                    attempts, error, _now_ms())
        ep.dead += 1
        self._count(ep, "dead_lettered")
        log.warning("event=webhook_dead_lettered endpoint=%s id=%s delivery=%d attempts=%d "
                    "error=%s", ep.id, message_id(ep.project_id, position), delivery_id, attempts,
                    log_field(error))

    def _count(self, ep: Endpoint, result: str) -> None:
        key = (ep.id, result)
        self._metrics.webhooks[key] = self._metrics.webhooks.get(key, 0) + 1

    # -- what REST asks ----------------------------------------------------------------

    async def project_endpoints(self, project_id: int) -> list[dict[str, Any]]:
        """The project's endpoints as this node sees them (on a hub of many, the node
        sending for an endpoint knows whether it is retrying)."""
        out = []
        for ep in self.endpoints.values():
            if ep.project_id == project_id:
                dead = await self._store.dead_count(project_id, ep.id)
                out.append(dict(ep.state(), deadLettered=dead, sending=ep.sending))
        return out

    async def deliveries(self, project_id: int, status: str | None, limit: int
                         ) -> list[Delivery]:
        return await self._store.deliveries(project_id, status, limit)

    async def retry(self, project_id: int, delivery_id: int) -> Delivery | None:
        """Send a dead letter again (out of its user's order: it was given up on), with
        the endpoint's retries; None if there is no such failed delivery."""
        found = await self._store.delivery(project_id, delivery_id)
        ep = self.endpoints.get(found.endpoint) if found is not None else None
        if found is None or ep is None or found.status != "failed":
            return None
        now = _now_ms()
        await self._store.set_status(project_id, found.id, "retrying", found.attempts,
                                     found.error, now)
        ep.dead -= 1

        async def resend() -> None:
            ok, attempts, error = await self._attempts(ep, found.position, found.body)
            ep.failing.pop(found.position, None)
            if not ok:
                ep.dead += 1
            await self._store.set_status(project_id, found.id,
                                         "delivered" if ok else "failed",
                                         found.attempts + attempts, error, _now_ms())

        task = asyncio.create_task(resend())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Delivery(found.id, found.project_id, found.endpoint, found.position,
                        found.body, found.attempts, found.error, "retrying",
                        found.failed_ms, now)

    async def stop(self) -> None:
        """Stop sending; save each cursor (events not yet done are sent after a restart)."""
        self._stopping = True
        tasks = [*self._runners, *self._tasks,
                 *(t for ep in self.endpoints.values() for t in ep.tasks)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ep in self.endpoints.values():
            if ep.sending:
                await self._save(ep, now=True)
                if self._lease is not None:
                    with contextlib.suppress(Exception):
                        await self._lease.release(ep.project_id, ep.id)
            await ep.client.aclose()
