"""One node of a multi-node hub: its Redis store, log reader, writer and presence.

The hub (server.py) calls :meth:`ClusterNode.load` instead of opening SQLite, runs its
commit pipeline over the node's :class:`RedisWriter`, then :meth:`ClusterNode.join`: from
then on every change is decided by Redis and every node's view follows the log. When
Redis goes away, writes are refused (r = 29), ``/healthz`` says ``degraded``, and the
reader reconnects with backoff; when Redis is back, the node checks that it missed
nothing (same epoch, log not trimmed past it, not rolled back) and carries on, or
resyncs: it reloads its view and closes its connections, so that clients resume or
re-read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

from monitor.hub.calls import Call
from monitor.hub.cluster.bus import BACKOFF_MAX_S, BACKOFF_MIN_S, LogReader
from monitor.hub.cluster.coordinator import RedisCoordinator, connect_op
from monitor.hub.cluster.history import RedisHistory
from monitor.hub.cluster.ops import Kick
from monitor.hub.cluster.pipeline import READ_BACK_S, RedisWriter
from monitor.hub.cluster.presence import Presence
from monitor.hub.cluster.redis_store import RedisStore, stream_id
from monitor.hub.port import HubPort
from monitor.hub.state import Effects, LoginHold, Send, new_epoch
from monitor.protocol import CloseCode

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

log = logging.getLogger("monitor.hub")



class ClusterNode:
    """What makes a hub one node of many."""

    def __init__(self, hub: HubPort) -> None:
        coordinator = hub.state.coordinator
        assert isinstance(coordinator, RedisCoordinator)
        self.hub = hub
        self.state = hub.state
        self.coordinator = coordinator
        settings = hub.config.hub
        self.url = settings.redis_url
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.project_ids = sorted(self.state.project_ids)
        self.store = RedisStore(self.url, self.node_id)
        self.reader = LogReader(self.url, self._apply, self._flush, self._lost, self._back)
        self.presence = Presence(self, settings.node_lease_ms)
        self.writer = RedisWriter(self)
        self.history = RedisHistory(self.store.redis, settings.status_attribute,
                                    settings.history_retention_days)
        self._positions: dict[int, str] = {}
        self.resyncs = 0
        self.last_error = ""
        self._sends: list[Send] = []
        self._retry: list[Any] = []

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    # -- lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        """Wait for Redis, then load this node's view."""
        delay = BACKOFF_MIN_S
        while True:
            try:
                await self.store.redis.ping()
                break
            except Exception as exc:
                log.warning("event=redis_unreachable url=%s error=%r retry_in_s=%.1f",
                            self.url, str(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        self._positions = await self._load()

    async def join(self) -> None:
        """Hold a lease and follow the log (the hub's pipeline runs by now: a lease
        found lost registers this node's connections again)."""
        positions = self._positions
        await self.presence.renew()
        self.reader.start(positions)
        self.presence.start()
        self.history.start_pruning(self.project_ids, self.now_ms)
        log.info("event=cluster_joined node=%s redis=%s projects=%s users=%d lease_ms=%d",
                 self.node_id, self.url, self.project_ids, len(self.state.users),
                 self.presence.lease_ms)

    async def stop(self) -> None:
        """After the pipeline drained: give up the lease, stop reading."""
        await self.presence.stop()
        try:
            for project_id in self.project_ids:
                await self.store.run("RELEASE", project_id, self.node_id)
        except Exception as exc:
            log.warning("event=lease_release_failed node=%s error=%r", self.node_id, str(exc))
        await self.reader.stop()
        await self.history.stop()
        await self.store.close()

    async def _load(self) -> dict[int, str]:
        """Read every project's state; the log position it corresponds to."""
        positions: dict[int, str] = {}
        await self.history.configure(self.project_ids)
        for project_id in self.project_ids:
            loaded = await self.store.load(project_id, new_epoch())
            if loaded.fresh_epoch:
                log.info("event=epoch_created project=%s epoch=%s", project_id, loaded.epoch)
            coordinator, state = self.coordinator, self.state
            coordinator.reset_topics(state, project_id, loaded.epoch, loaded.seqs)
            coordinator.load_history(state, project_id, loaded.history, loaded.seqs)
            for user_id, fields in loaded.users.items():
                coordinator.load_user_fields(state, project_id, user_id, fields)
            if self.hub.calls is not None:
                self.hub.calls.load_project(project_id, [
                    Call.from_json(project_id, json.loads(text))
                    for text in loaded.calls.values()])
            positions[project_id] = loaded.last_id
        return positions

    # -- the log ------------------------------------------------------------------------

    def _apply(self, project_id: int, entry_id: str, fields: dict[str, str]) -> None:
        kind = fields.get("k")
        if kind in ("a", "l"):
            self._sends += self.coordinator.apply(self.state, project_id, fields)
        elif kind == "c" and self.hub.calls is not None:
            data = json.loads(fields["v"])
            if "status" in data:
                self.hub.calls.learn(Call.from_json(project_id, data))
        elif kind == "g" and self.hub.calls is not None:
            # The user's last connection, on any node, closed: every node proposes to end
            # the user's calls; Redis lets one proposal per call win.
            self.hub.calls.party_gone(project_id, fields["u"])
        elif kind == "n":
            skip = fields.get("x")
            targets = [handle for user_id in json.loads(fields["u"])
                       for handle, session in self.state.user_sessions(project_id, user_id)
                       if session.connection_id != skip]
            if targets:
                self._sends.append((targets, fields["f"]))
        elif kind == "k":
            self._flush()  # the notices before it go out first
            if fields.get("h"):  # a supervisor's logout: hold the user's logins here too
                until, by, reason = json.loads(fields["h"])
                user = self.state.user_or_new(project_id, fields["u"])
                user.hold = LoginHold(int(until), str(by), str(reason))
                self.hub.close_user(project_id, fields["u"], CloseCode.LOGGED_OUT,
                                    "logged out by a supervisor")
            else:
                self.hub.close_user(project_id, fields["u"])

    def _flush(self) -> None:
        sends, self._sends = self._sends, []
        if sends:
            self.hub.emit(sends)

    def find_call(self, project_id: int, call_id: str) -> Call | None:
        return self.hub.calls.book.find(project_id, call_id) if self.hub.calls else None

    async def caught_up(self) -> None:
        """A read barrier: return once this node has read every change Redis had when
        called (so a read here sees a write acknowledged by any node before it)."""
        if not self.reader.connected:
            return
        try:
            targets = await self.store.last_ids(self.project_ids)
        except Exception:
            return  # answer from the view; /healthz says why
        await self.reader.reached(targets, READ_BACK_S)

    # -- Redis away and back ------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        self.last_error = str(exc)

    def write_failed(self, exc: BaseException) -> None:
        self.last_error = str(exc)

    def retry_later(self, ops: list[Any]) -> None:
        self._retry += ops

    async def _back(self) -> None:
        """Redis answers again: carry on from where this node was, or resync."""
        await self.store.redis.ping()
        reasons = []
        for project_id in self.project_ids:
            epoch, trimmed = await self.store.log_info(project_id)
            position = self.reader.positions.get(project_id, "0-0")
            last = (await self.store.last_ids([project_id]))[project_id]
            if epoch != self.coordinator.epochs.get(project_id):
                reasons.append(f"{project_id}:epoch")
            elif stream_id(trimmed) > stream_id(position):
                reasons.append(f"{project_id}:trimmed")
            elif stream_id(last) < stream_id(position):
                reasons.append(f"{project_id}:rolled_back")
        if reasons:
            await self._resync(reasons)
        self.presence.hold_off()
        await self.presence.renew()
        # Connections that stayed, or came while Redis was away, are registered again
        # (idempotent); those that left then leave now.
        self.register_connections()
        retry, self._retry = self._retry, []
        if retry:
            self.hub.submit(Effects(ops=retry))
        self.last_error = ""

    async def _resync(self, reasons: list[str]) -> None:
        self.resyncs += 1
        log.warning("event=resync node=%s reasons=%s connections=%d", self.node_id,
                    ",".join(reasons), len(self.state.sessions))
        self.reader.positions = await self._load()
        # Messages may be lost to them: clients reconnect, then resume or re-read.
        self.hub.close_all(CloseCode.SERVICE_RESTART, "hub resync: reconnect")

    def register_connections(self) -> None:
        now = self.now_ms()
        ops = [connect_op(s, now) for s in self.state.sessions.values()]
        if ops:
            self.hub.submit(Effects(ops=ops))

    # -- supervisor actions ---------------------------------------------------------------

    def kick(self, project_id: int, user_id: str) -> int:
        """Close the user's connections here now, and on the other nodes through the log."""
        closed = self.hub.close_user(project_id, user_id)
        self.hub.submit(Effects(ops=[Kick(project_id, user_id)]))
        return closed

    # -- REST ---------------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        """REST reads wait for the read barrier: any node answers what any node wrote."""

        @app.middleware("http")
        async def read_barrier(request: Request, call_next: Any) -> Response:
            if request.method == "GET" and request.url.path.startswith("/v1/"):
                await self.caught_up()
            response: Response = await call_next(request)
            return response

    def health(self) -> dict[str, Any]:
        ok = self.reader.connected and not self.last_error
        out: dict[str, Any] = {"status": "ok" if ok else "degraded", "node": self.node_id,
                               "redis": "ok" if ok else "down", "resyncs": self.resyncs,
                               "sweptConnections": self.presence.swept}
        if not ok:
            out["redisError"] = self.last_error or "reconnecting"
        return out
