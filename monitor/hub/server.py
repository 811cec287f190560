"""Wiring: config, engine, state, pipeline, WebSocket endpoint and REST API in one loop.

The engine is chosen here, once: one node (the state decides, SQLite stores) or one node
of many (Redis decides and stores: :mod:`monitor.hub.cluster`). Everything else talks to
the :class:`Hub` through :class:`~monitor.hub.port.HubPort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from monitor.config import Config, check_webhooks
from monitor.hub.calls import EndReason
from monitor.hub.callservice import Calls
from monitor.hub.history import HistoryReader
from monitor.hub.limits import RateLimiter
from monitor.hub.metrics import HubMetrics
from monitor.hub.pipeline import CommitPipeline
from monitor.hub.rest import build_app, http_protocol
from monitor.hub.rest_history import add_history_routes
from monitor.hub.rest_webhooks import webhook_routes
from monitor.hub.state import Coordinator, Effects, HubState, Send
from monitor.hub.store.sqlite import SqliteStore
from monitor.hub.webhook_delivery import WebhookThread, redis_webhooks, sqlite_webhooks
from monitor.hub.webhooks import endpoint_ids
from monitor.hub.ws import (
    Endpoint,
    Peer,
    Peers,
)
from monitor.protocol import ONLINE_STATUS, CloseCode

if TYPE_CHECKING:
    from monitor.hub.cluster.node import ClusterNode

log = logging.getLogger("monitor.hub")

WS_BACKLOG = 1024
GC_YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython: 700)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the hub owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Hub:
    """One hub node: the :class:`~monitor.hub.port.HubPort` its edges share."""

    def __init__(self, config: Config) -> None:
        check_webhooks(config)  # a hub that cannot deliver them refuses to start
        self.config = config
        self.metrics = HubMetrics()
        settings = config.hub
        coordinator: Coordinator | None = None
        if settings.redis_url:  # one node of many: Redis decides, the state follows
            from monitor.hub.cluster.coordinator import RedisCoordinator
            coordinator = RedisCoordinator()
        self.state = HubState([p.id for p in config.projects],
                              history_size=settings.history_size,
                              offline_grace_ms=settings.offline_grace_ms,
                              ping_after_ms=settings.ping_after_ms,
                              max_attributes_per_user=settings.max_attributes_per_user,
                              coordinator=coordinator)
        self.auth_limiter = RateLimiter(settings.auth_rate_per_ip, settings.auth_burst_per_ip)
        self.kicked: set[Peer] = set()
        self.calls: Calls | None = None
        self.store: SqliteStore | None = None
        self.cluster: ClusterNode | None = None
        self.pipeline: CommitPipeline | None = None
        self.webhooks: WebhookThread | None = None
        self.peers: Peers | None = None
        self.ws_server: asyncio.Server | None = None
        self.rest_server: _EmbeddedUvicorn | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._stopping = asyncio.Event()
        self.started_at = time.time()

    # -- shared services ----------------------------------------------------------------

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    def secret_for(self, sid: str) -> str | None:
        found = self.config.key(sid)
        return found[1].secret if found else None

    def submit(self, effects: Effects) -> asyncio.Future[bool]:
        """Store, then send: the only way state changes leave the hub."""
        assert self.pipeline is not None
        return self.pipeline.submit(effects)

    def emit(self, sends: Sequence[Send]) -> None:
        """Send frames now (what the log already decided, on a node of many)."""
        assert self.peers is not None
        self.peers.emit(sends)

    @property
    def history(self) -> HistoryReader:
        """The event log's reader (the engine's)."""
        if self.cluster is not None:
            return self.cluster.history
        assert self.store is not None
        return self.store.log

    def store_failures(self) -> int:
        return self.pipeline.failures if self.pipeline is not None else 0

    def users_online(self) -> int:
        return sum(1 for u in self.state.users.values()
                   if u.value(ONLINE_STATUS) == "online")

    def health(self) -> dict[str, Any]:
        out = {"status": "ok", "connections": self.metrics.connections,
               "usersOnline": self.users_online(),
               "storeFailures": self.store_failures(),
               "uptimeS": round(time.time() - self.started_at, 1)}
        if self.cluster is not None:
            out.update(self.cluster.health())
        return out

    def schedule_offline_expiry(self) -> None:
        """Run the grace-period expiry when the next one is due."""
        if self._expiry is not None:
            return
        grace = self.config.hub.offline_grace_ms / 1000
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._expiry = None
            self.submit(self.state.expire_offline(self.now_ms()))
            if self.state.next_offline_due_ms() is not None:
                self.schedule_offline_expiry()

        # The earliest user due, not a full grace from now: users leave at different times.
        due = self.state.next_offline_due_ms()
        delay = (due - self.now_ms()) / 1000 if due is not None else grace
        self._expiry = loop.call_later(max(delay, 0.0) + 0.01, expire)

    def connection_closed(self, peer: Peer) -> None:
        """A connection is gone: presence, then the calls of a user with none left."""
        session = peer.session
        if session is None:
            return
        immediate = peer in self.kicked
        self.kicked.discard(peer)
        self.submit(self.state.disconnect(peer, self.now_ms(), immediate=immediate))
        self.schedule_offline_expiry()
        user = session.user
        # On several nodes, Redis says when the last connection anywhere closed.
        if not user.sessions and self.calls is not None \
                and self.state.coordinator.presence_is_local:
            self.calls.party_gone(user.project_id, user.user_id)

    def kick(self, project_id: int, user_id: str) -> int:
        """Close every connection of a user, on every node; they go offline without the
        grace period. The connections closed on this node."""
        if self.cluster is not None:
            return self.cluster.kick(project_id, user_id)
        return self.close_user(project_id, user_id)

    def close_user(self, project_id: int, user_id: str, code: int = CloseCode.KICKED,
                   reason: str = "disconnected by an administrator") -> int:
        """Close a user's connections on this node (offline without the grace period)."""
        assert self.peers is not None
        handles = self.state.user_handles(project_id, user_id)
        closed = 0
        for peer in handles:
            assert isinstance(peer, Peer)
            if peer.closing:
                continue
            self.kicked.add(peer)
            self.peers.close(peer, code, reason)
            closed += 1
        log.info("event=kicked project=%s user=%s connections=%d code=%d", project_id,
                 user_id, closed, int(code))
        return closed

    def log_out(self, project_id: int, user_id: str, effects: Effects) -> asyncio.Future[bool]:
        """A forced logout: on one node, its connections close once ``effects`` are sent;
        on several, each node closes its own when the log brings the logout."""
        done = self.submit(effects)
        if self.cluster is None:
            def close(stored: asyncio.Future[bool]) -> None:
                if stored.result():
                    self.close_user(project_id, user_id, CloseCode.LOGGED_OUT,
                                    "logged out by a supervisor")
            done.add_done_callback(close)
        return done

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection of this node."""
        assert self.peers is not None
        for peer in list(self.peers.all):
            self.peers.close(peer, code, reason)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the store, then listen on both ports."""
        settings = self.config.hub
        data_dir = settings.resolved_data_dir()
        if settings.redis_url:
            from monitor.hub.cluster.node import ClusterNode
            self.peers = Peers(self)
            self.calls = Calls(self)
            self.cluster = ClusterNode(self)
            await self.cluster.load()
            self.pipeline = CommitPipeline(self.cluster.writer, self.peers.emit)
            await self.cluster.join()
            if any(p.webhooks for p in self.config.projects):
                self.cluster.history.webhook_endpoints = endpoint_ids(self.config.projects)
                self.webhooks = redis_webhooks(self.config.projects, settings,
                                               self.cluster.node_id, self.metrics)
        else:
            self._open_sqlite(data_dir)
        if self.webhooks is not None:
            # Before any change can come in: a new endpoint starts from the log's end.
            await self.webhooks.start()
        assert self.peers is not None
        endpoint = Endpoint(self, self.peers, open_timeout_s=settings.auth_timeout_ms / 1000)
        self.ws_server = await asyncio.get_running_loop().create_server(
            endpoint.protocol_factory, settings.host, settings.ws_port,
            # Room for a burst of connections (a restart's reconnects) before accept runs.
            backlog=WS_BACKLOG)
        app = build_app(self, [add_history_routes, webhook_routes(self.webhooks)])
        if self.cluster is not None:
            self.cluster.install(app)
        self.rest_server = _EmbeddedUvicorn(uvicorn.Config(
            app, host=settings.host, port=settings.api_port, log_level="warning",
            lifespan="off", access_log=False,
            http=http_protocol(self, settings.auth_timeout_ms / 1000)))
        self._tasks = [asyncio.create_task(self.peers.ping_forever()),
                       asyncio.create_task(self.rest_server.serve())]
        while not self.rest_server.started:
            if self._tasks[1].done():
                self._tasks[1].result()  # raises the reason it could not start
            await asyncio.sleep(0.01)
        log.info("event=started ws=ws://%s:%d/ api=http://%s:%d data=%s users=%d projects=%d",
                 settings.host, settings.ws_port, settings.host, settings.api_port, data_dir,
                 len(self.state.users), len(self.config.projects))

    def _open_sqlite(self, data_dir: Path) -> None:
        """One node: state in SQLite, loaded into memory."""
        full = self.config.hub.sqlite_synchronous == "full"
        # NORMAL commits do not wait for the disk: write them on the loop, checkpoint
        # elsewhere. FULL commits fsync: write them on a thread.
        settings = self.config.hub
        self.store = SqliteStore(data_dir / "hub.sqlite3", "FULL" if full else "NORMAL",
                                 background_checkpoints=not full,
                                 status_attribute=settings.status_attribute,
                                 retention_days=settings.history_retention_days)
        users, attributes = self.store.load()
        now = self.now_ms()
        for row in users:
            if row.project_id in self.state.project_ids:
                self.state.load_user(row, now)
        for attr in attributes:
            if attr.project_id in self.state.project_ids:
                self.state.load_attribute(attr)
        self.peers = Peers(self)
        self.pipeline = CommitPipeline(self.store, self.peers.emit, threaded=full)
        # Users the log last saw online were left so by a crash: offline in the log too.
        left = self.store.log.left_online(
            [(r.project_id, r.user_id) for r in users if r.project_id in self.state.project_ids],
            now)
        if left:
            self.pipeline.submit(Effects(log=list(left)))
        self.store.log.webhook_endpoints = endpoint_ids(self.config.projects)
        self.store.log.start_pruning(self.now_ms)
        self.calls = Calls(self)
        self.calls.restore(self.store.load_calls())
        if any(p.webhooks for p in self.config.projects):
            self.webhooks = sqlite_webhooks(self.config.projects, settings, self.store.path,
                                            self.metrics)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        await self._stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        """Close every connection with a close frame, flush, save, stop listening."""
        log.info("event=stopping connections=%d", self.metrics.connections)
        if self.calls is not None and self.cluster is None:
            # Parties learn their calls ended before their connections close (on a node
            # of many, calls live on: each party's calls end when its connections do).
            await asyncio.gather(*self.calls.end_all(EndReason.HUB_SHUTDOWN))
        if self.ws_server is not None:
            self.ws_server.close()  # stop listening
            assert self.peers is not None
            for peer in list(self.peers.all):
                self.peers.close(peer, CloseCode.GOING_AWAY, "hub shutting down")
            deadline = time.monotonic() + 10
            while self.peers.all and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if self.rest_server is not None:
            self.rest_server.should_exit = True
        for task in self._tasks:
            if task is not self._tasks[-1]:
                task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 10)
        if self.pipeline is not None:
            await self.pipeline.drain()
            self.pipeline.close()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.store is not None:
            self.store.close()
        log.info("event=stopped")


def tune_garbage_collector() -> None:
    """Collect less often, and never look at what was loaded at start again.

    Every request allocates a few dozen container objects, so with CPython's default
    threshold (700) a young collection ran every few dozen requests and, now and then,
    a full one walked every user, attribute and history frame in memory. Measured on
    100 clients changing attributes flat out: 41 µs of CPU per change before, 36 after,
    and p99 from 29 ms to 5 ms. State loaded at start lives as long as the hub, so it is
    frozen out of collections altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


async def run_hub(config: Config) -> None:
    """Run a hub until SIGINT or SIGTERM, then stop it cleanly."""
    hub = Hub(config)
    await hub.start()
    tune_garbage_collector()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, hub.request_stop)
    await hub.run_until_stopped()
