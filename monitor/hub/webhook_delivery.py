"""Webhook delivery: each endpoint reads the event log from its durable cursor and POSTs
each event it wants (:mod:`monitor.hub.webhooks` decides what, how signed, when retried).

At least once: the cursor moves past an event only once it and every event before it
are delivered or dead-lettered, and it is saved a moment later; after a crash the
events past the saved cursor are sent again (a receiver de-duplicates on
``webhook-id``). In order per user: a user's next event waits until the previous one is
delivered or dead-lettered; other users' go meanwhile, at most ``max_in_flight``
requests at once per endpoint. A slow or huge answer costs one slot of one endpoint
until the timeout, never the event loop or another endpoint.

Delivery runs on a thread and event loop of its own (:class:`WebhookThread`): it reads
the log from the database, never from the hub's loop, so a hub saturated with changes
does not starve it, and the hub's loop only answers REST by asking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from monitor.config import HubSettings, Project, Webhook
from monitor.hub.logs import log_field
from monitor.hub.metrics import HubMetrics
from monitor.hub.webhooks import (
    Delivery,
    DeliveryStore,
    Lanes,
    Lease,
    LeaseLost,
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
    secret_key,
    wanted,
)

log = logging.getLogger("monitor.hub")

WINDOW = 10_000  # events of one endpoint read and not yet done
PAGE = 1000  # events read from the log at once
POLL_S = 0.05  # how often an idle endpoint looks for new events
SAVE_EVERY_S = 0.25  # a moved cursor is saved at most this often
PRUNE_EVERY_S = 3600.0  # dead letters past their age are dropped this often
CONNECT_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 1024  # read of an answer's body (the rest is dropped)
MAX_ERROR_CHARS = 300
BUSY_SHARE = 0.05  # of the time for delivery while the hub's loop is busy (Pacer)
T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _hub_cpu() -> Callable[[], float]:
    """The CPU time of the hub's loop (the main thread), or of the whole process where
    a thread's own clock cannot be read."""
    ident = threading.main_thread().ident
    try:
        clock = time.pthread_getcpuclockid(ident or 0)
        time.clock_gettime(clock)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return time.process_time
    return lambda: time.clock_gettime(clock)


class Pacer:
    """Delivery's share of the interpreter while the hub's loop is busy.

    Delivery runs on a thread of its own, but Python runs one thread at a time: delivery
    running flat out takes about half the interpreter from a hub loop saturated with
    changes. So, measured every ``window_s``: while the hub's loop (the main thread) is
    busy at least ``busy`` of the time, delivery keeps to ``share`` of the time, pausing
    between requests; otherwise it runs freely. (What the loop got is the measure, not
    what it wanted: a loop that delivery slows still counts as busy, as ``busy`` is well
    under the half it keeps when both want the interpreter.) Under a flood of changes,
    delivery goes on at a bounded pace rather than stalling, or stealing from them.
    """

    def __init__(self, share: float, busy: float = 0.25, window_s: float = 0.1, *,
                 clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.thread_time,
                 hub_cpu: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``clock``, ``cpu`` (delivery's thread), ``hub_cpu`` (the hub's loop) and
        ``sleep``: real ones unless a test gives its own."""
        self.share = share
        self.busy = busy
        self.window_s = window_s
        self._clock, self._cpu, self._sleep = clock, cpu, sleep
        self._hub = hub_cpu or _hub_cpu()
        self._since = clock()
        self._mine = cpu()
        self._theirs = self._hub()
        self._resume = 0.0
        self._credit = 0.0  # CPU seconds delivery may still use
        self.paused_s = 0.0

    async def pace(self) -> None:
        """Wait if delivery is over its share (call on the delivery thread)."""
        now = self._clock()
        if now < self._resume:
            await self._sleep(self._resume - now)
            return
        wall = now - self._since
        if wall < self.window_s:
            return
        mine, theirs = self._cpu(), self._hub()
        used, busy = mine - self._mine, theirs - self._theirs
        self._since, self._mine, self._theirs = now, mine, theirs
        if busy < self.busy * wall:
            self._credit = 0.0
            return
        # A bucket of CPU time, filled at the share (at most a window's worth ahead) and
        # drained by what delivery used; in debt, delivery waits until it is paid. The
        # next window includes the wait, and the loop's time in it.
        self._credit = min(self._credit + self.share * wall - used,
                           self.share * self.window_s)
        if self._credit < 0:
            wait = min(-self._credit / self.share, 10 * self.window_s)
            self._resume = now + wait
            self.paused_s += wait
            await self._sleep(wait)


@dataclass
class Endpoint:
    """One configured endpoint and its progress."""

    project_id: int
    hook: Webhook
    id: str
    key: bytes  # the secret's bytes
    slots: asyncio.Semaphore
    client: aiohttp.ClientSession | None = None  # made on the delivery loop, at start
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
        self.pacer = Pacer(BUSY_SHARE)
        self.endpoints: dict[str, Endpoint] = {}
        for project in projects:
            for hook in project.webhooks:
                eid = endpoint_id(project.id, hook.url)
                self.endpoints[eid] = Endpoint(project.id, hook, eid, secret_key(hook.secret),
                                               asyncio.Semaphore(hook.max_in_flight))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runners: list[asyncio.Task[Any]] = []
        self._stopping = False

    # -- running ---------------------------------------------------------------------

    @staticmethod
    def _client(hook: Webhook) -> aiohttp.ClientSession:
        """An endpoint's connections: at most ``max_in_flight``; no redirect followed
        (each request says so), no proxy from the environment, no cookies kept, the
        answer's body not decompressed (at most its first KiB is read)."""
        timeout = hook.timeout_ms / 1000
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=hook.max_in_flight, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=timeout,
                                          connect=min(timeout, CONNECT_TIMEOUT_S)),
            trust_env=False, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept-Encoding",))

    async def start(self) -> None:
        for ep in self.endpoints.values():
            ep.client = self._client(ep.hook)
            await self._start_cursor(ep)  # before the hub takes any change
            if self._lease is None:
                await self._begin(ep)
            self._runners.append(asyncio.create_task(self._run(ep)))
        self._runners.append(asyncio.create_task(self._prune_forever()))

    async def _prune_forever(self) -> None:
        """Bound the dead letters by age even when none is added (every node may)."""
        projects = sorted({ep.project_id for ep in self.endpoints.values()})
        while True:
            for project_id in projects:
                try:
                    await self._store.prune_dead(project_id, _now_ms())
                except Exception as exc:
                    log.warning("event=webhook_prune_failed project=%d error=%s",
                                project_id, log_field(str(exc)))
            await asyncio.sleep(PRUNE_EVERY_S)

    async def _start_cursor(self, ep: Endpoint) -> int:
        """The endpoint's saved cursor. A new endpoint's is the log's end: it gets what is
        logged from now on, not the whole history (set by whichever node is first)."""
        cursor = await self._store.cursor(ep.project_id, ep.id)
        if cursor is None:
            await self._store.init_cursor(ep.project_id, ep.id,
                                          await self._store.last_position(ep.project_id))
            cursor = await self._store.cursor(ep.project_id, ep.id)
            assert cursor is not None
        return cursor

    async def _begin(self, ep: Endpoint) -> None:
        """Start sending for ``ep`` from its saved cursor."""
        cursor = await self._start_cursor(ep)
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
                    if not self._stopping:
                        await self._wind_down(ep)
                except Exception as exc:
                    log.warning("event=webhook_sending_failed endpoint=%s error=%s", ep.id,
                                log_field(str(exc)))
                if not self._stopping:
                    self._halt(ep)
            await asyncio.sleep(lease_ms / 3000)

    async def _wind_down(self, ep: Endpoint) -> None:
        """Sending stopped a third of a lease before it could expire (no new request goes
        out): let the requests in flight end for a sixth of it, then save the cursor, if
        the lease is still this node's, so the next sender sends none of them again."""
        if ep.tasks:
            await asyncio.wait(list(ep.tasks), timeout=self._lease_ms / 6000)
        await self._save(ep, now=True)
        if self._lease is not None and ep.saved == ep.cursor:
            with contextlib.suppress(Exception):  # the next sender need not wait for expiry
                await self._lease.release(ep.project_id, ep.id)

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
                saved = await self._store.save_cursor(ep.project_id, ep.id, cursor)
            except Exception as exc:
                log.warning("event=webhook_cursor_not_saved endpoint=%s error=%s", ep.id,
                            log_field(str(exc)))
                return
            if not saved:  # fenced: another node holds the lease now
                self._fenced(ep)
                return
            ep.saved = cursor

    def _fenced(self, ep: Endpoint) -> None:
        """The store refused a write: the lease is another node's. Stop at once."""
        log.warning("event=webhook_fenced endpoint=%s project=%d", ep.id, ep.project_id)
        ep.valid_until = 0.0

    def _current(self, ep: Endpoint, generation: int) -> bool:
        """Whether a delivery of ``generation`` may still act for ``ep``."""
        return not self._stopping and ep.generation == generation and \
            time.monotonic() < ep.valid_until

    async def _deliver(self, ep: Endpoint, position: int, generation: int) -> None:
        """Deliver the event at ``position``, then mark it done. An attempt made while
        the lease was held counts even if it ends after sending stopped (in the same turn
        of sending): the cursor's save is fenced, so the count is kept only if the lease
        still is."""
        body = ep.bodies[position]
        try:
            result = await self._attempts(ep, position, body, generation)
            if result is None or ep.generation != generation or self._stopping:
                return  # stopping, or the lease lost: not done, sent again
            ok, attempts, error = result
            if not ok:
                await self._dead_letter(ep, position, body, attempts, error)
        except asyncio.CancelledError:
            return  # stopping: not done, sent again after the restart
        except LeaseLost:
            self._fenced(ep)
            return
        except Exception:
            log.exception("event=webhook_delivery_crashed endpoint=%s", ep.id)
            return
        if ep.generation == generation and not self._stopping:
            self._done(ep, position)

    async def _attempts(self, ep: Endpoint, position: int, body: bytes,
                        generation: int | None = None) -> tuple[bool, int, str] | None:
        """Attempt until delivered, final, or out of retries; (delivered, attempts, error).
        A delivery of ``generation`` stops (None) once it may no longer act for ``ep``:
        checked right before each request goes out."""
        hook = ep.hook
        msg_id = message_id(ep.project_id, position)
        first_failure: float | None = None
        attempt = 0
        while True:
            tried = await self._post(ep, msg_id, body, generation)
            if tried is None:
                return None
            attempt += 1
            outcome, error, wait_hint = tried
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

    async def _post(self, ep: Endpoint, msg_id: str, body: bytes, generation: int | None
                    ) -> tuple[Outcome, str, int | None] | None:
        """One attempt; None if a delivery of ``generation`` may no longer act (checked
        once it has its slot, right before it sends)."""
        sent = headers(ep.key, msg_id, int(time.time()), body)
        client = ep.client
        assert client is not None
        async with ep.slots:
            await self.pacer.pace()
            if generation is not None and not self._current(ep, generation):
                return None
            try:  # the session's total timeout covers connecting, sending and reading
                async with client.post(ep.hook.url, data=body, headers=sent,
                                       allow_redirects=False) as answer:
                    status = answer.status
                    retry_after = answer.headers.get("retry-after")
                    # At most this much of the body; the rest goes with the connection.
                    text = await answer.content.read(MAX_ANSWER_BYTES)
            except TimeoutError:
                return "retry", "timed out", None
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                return "retry", f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], None
        outcome = outcome_of(status)
        error = "" if outcome == "delivered" else \
            f"HTTP {status}: " + text.decode("utf-8", "replace")[:MAX_ERROR_CHARS]
        hint = retry_after_ms(retry_after, _now_ms()) if status in (429, 503) else None
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
            result = await self._attempts(ep, found.position, found.body)
            assert result is not None  # (stops early only for a generation)
            ok, attempts, error = result
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
            if ep.client is not None:
                await ep.client.close()


Build = Callable[[], Awaitable[tuple[WebhookDispatcher, Callable[[], Awaitable[None]]]]]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is there but on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class WebhookThread:
    """A :class:`WebhookDispatcher` on a thread and event loop of its own: a hub loop
    saturated with changes does not starve delivery, and delivery costs the hub's loop
    nothing but the REST questions it hands over.

    ``build`` runs on the delivery loop (database and Redis clients are bound to the loop
    that made them): the dispatcher, and what closes its stores once it has stopped.
    """

    def __init__(self, build: Build) -> None:
        self._build = build
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._dispatcher: WebhookDispatcher | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        ready: Future[None] = Future()

        def run() -> None:
            loop = self._loop = _new_loop()
            asyncio.set_event_loop(loop)
            try:
                self._dispatcher, self._close = loop.run_until_complete(self._build())
                loop.run_until_complete(self._dispatcher.start())
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="webhooks", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)

    async def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the delivery loop; its result."""
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    @property
    def dispatcher(self) -> WebhookDispatcher:
        assert self._dispatcher is not None
        return self._dispatcher

    async def project_endpoints(self, project_id: int) -> list[dict[str, Any]]:
        return await self._call(self.dispatcher.project_endpoints(project_id))

    async def deliveries(self, project_id: int, status: str | None, limit: int
                         ) -> list[Delivery]:
        return await self._call(self.dispatcher.deliveries(project_id, status, limit))

    async def retry(self, project_id: int, delivery_id: int) -> Delivery | None:
        return await self._call(self.dispatcher.retry(project_id, delivery_id))

    async def stop(self) -> None:
        """Stop delivery (each cursor saved), close the stores, end the thread."""
        loop, thread, dispatcher = self._loop, self._thread, self._dispatcher
        if loop is None or thread is None or dispatcher is None or not thread.is_alive():
            return

        async def finish() -> None:
            try:
                await dispatcher.stop()
            finally:
                if self._close is not None:
                    await self._close()

        try:
            await self._call(finish())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)


def sqlite_webhooks(projects: Sequence[Project], settings: HubSettings, path: Path,
                    metrics: HubMetrics) -> WebhookThread:
    """One node's delivery: the event log and the cursors in the hub's SQLite file."""
    from monitor.hub.store.webhooks import SqliteDeliveryStore

    async def build() -> tuple[WebhookDispatcher, Callable[[], Awaitable[None]]]:
        store = SqliteDeliveryStore(path, settings.webhook_dead_letters_max,
                                    settings.webhook_dead_letters_days)

        async def close() -> None:
            store.close()

        return WebhookDispatcher(projects, store, store, metrics), close

    return WebhookThread(build)


def redis_webhooks(projects: Sequence[Project], settings: HubSettings, node_id: str,
                   metrics: HubMetrics) -> WebhookThread:
    """A node of many's delivery: the log stream, cursors and leases in Redis, on a
    client of the delivery loop's own."""
    from monitor.hub.cluster.history import RedisHistory
    from monitor.hub.cluster.redis_store import connect
    from monitor.hub.cluster.webhooks import RedisDeliveryStore, RedisOutbox

    async def build() -> tuple[WebhookDispatcher, Callable[[], Awaitable[None]]]:
        redis = connect(settings.redis_url)
        store = RedisDeliveryStore(redis, node_id, settings.webhook_dead_letters_max,
                                   settings.webhook_dead_letters_days)
        outbox = RedisOutbox(RedisHistory(redis, settings.status_attribute,
                                          settings.history_retention_days))

        async def close() -> None:
            await redis.aclose()

        return WebhookDispatcher(projects, outbox, store, metrics, lease=store,
                                 lease_ms=settings.node_lease_ms), close

    return WebhookThread(build)
