"""The Redis side of a multi-node hub: proposals in, state out.

:meth:`RedisStore.write` turns a batch of store ops and proposals into one pipeline of
EVALSHA calls (one round trip per batch, whatever its size). :meth:`RedisStore.load`
reads a project's state and the point of the log it corresponds to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from monitor.hub.cluster import scripts
from monitor.hub.cluster.ops import (
    Change,
    Connect,
    Disconnect,
    Expire,
    Guarded,
    Introduce,
    Kick,
    Notify,
)
from monitor.hub.history import CallEvent, call_counts
from monitor.hub.state import CallRow, UserRow
from monitor.protocol import ALL_CALL_STATUS, CALL
from monitor.tokens import Grants

log = logging.getLogger("monitor.hub")

LOG_MAXLEN = 100_000  # entries kept in a project's log (approximately)
LOAD_CHUNK = 500
HISTORY_WINDOW = 20_000  # log entries read at start to rebuild topic histories
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """A value as stored and compared in Redis: the same text on every node."""
    return _dumps(value)


def prefix(project_id: int) -> str:
    """Key prefix of a project; ``{P}`` keeps its keys in one Redis Cluster slot."""
    return f"hub:{{{project_id}}}:"


def stream_id(text: str) -> tuple[int, int]:
    """A log entry id as a comparable pair."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def grant_map(grants: Grants) -> list[str]:
    """Attribute, "topic topic" pairs for the LOGIN script (what each change publishes to)."""
    out: list[str] = []
    for name in dict.fromkeys(g.attribute for g in grants.attributes):
        topics = [t for t in grants.topics_for(name) if not (name == CALL and
                                                              t == ALL_CALL_STATUS)]
        if topics:
            out += [name, " ".join(dict.fromkeys(topics))]
    return out


def hcall_args(event: CallEvent) -> list[Any]:
    """The arguments of a call transition's event log entry (``hist_call``)."""
    call = event.call
    handled, missed = call_counts(call)
    callee = call.get("to")
    counted = callee if (handled or missed) and callee in event.users else ""
    summary = " ".join("-" if call.get(k) is None else str(int(call[k]))
                       for k in ("startedAt", "answeredAt", "endedAt"))
    return [event.timestamp, dumps(event.to_json()), call["callId"], int(call["startedAt"]),
            summary, counted, handled, missed]


def connect(url: str, timeout_s: float = 5.0) -> Redis:
    """A client that never retries by itself: a write that may have happened is reported
    failed, not sent twice. Its commands are packed by hiredis in one C call."""
    client = Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                            socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
                            health_check_interval=0)
    pool = client.connection_pool
    pool.connection_class = _packed(pool.connection_class)
    return client


class _HiredisPacking:
    """Packs a command's arguments with ``hiredis.pack_command``: redis-py encodes each
    argument in Python first, 6.6 µs per change of a batch against 1.1."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " not in args[0]:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # an argument hiredis does not take: redis-py's error says which
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]  # mixin
        return packed


_PACKED: dict[type[Any], type[Any]] = {}


def _packed(base: type[Any]) -> type[Any]:
    """``base`` (TCP, TLS or Unix socket connection) with :class:`_HiredisPacking`."""
    if base not in _PACKED:
        _PACKED[base] = type("Packed" + base.__name__, (_HiredisPacking, base), {})
    return _PACKED[base]


@dataclass
class ProjectState:
    """One project as read at start or resync."""

    project_id: int
    epoch: str
    last_id: str
    seqs: dict[str, int]
    fresh_epoch: bool
    history: list[dict[str, str]] = field(default_factory=list)  # log entries, oldest first
    users: dict[str, dict[str, str]] = field(default_factory=dict)  # user id -> u:USER hash
    calls: dict[str, str] = field(default_factory=dict)


class RedisStore:
    """Scripts and reads of one node."""

    def __init__(self, url: str, node_id: str) -> None:
        self.url = url
        self.node_id = node_id
        self.redis = connect(url)
        self.scripts = {name: self.redis.register_script(getattr(scripts, name))
                        for name in ("BATCH", "SWEEP", "DUE", "LEASE", "RELEASE", "STATE")}

    async def close(self) -> None:
        await self.redis.aclose()

    async def run(self, name: str, project_id: int, *args: Any) -> Any:
        """One script, now."""
        p = prefix(project_id)
        return await self.scripts[name](keys=[p + "log"], args=[p, LOG_MAXLEN, *args])

    # -- writes ---------------------------------------------------------------------------

    def _ops(self, ops: Sequence[Any], find_call: Callable[[int, str], Any]
             ) -> dict[int, list[tuple[str, list[Any], Any]]]:
        """Each project's ops as (kind, args, op) for the BATCH script, in order;
        consecutive changes of one user merge into one (a REST PUT of several attributes
        is applied all or none)."""
        out: dict[int, list[tuple[str, list[Any], Any]]] = {}
        mergeable = False
        for op in ops:
            batch = out.setdefault(op.project_id, [])
            if isinstance(op, Change):
                group = [op.name, dumps(op.value), op.updated_ms, int(op.always),
                         dumps(op.extra) if op.extra else "",
                         ALL_CALL_STATUS if op.name == CALL else "",
                         "" if op.topics is None else "=" + " ".join(op.topics)]
                last = batch[-1] if batch else None
                if mergeable and last and last[0] == "C" and last[1][0] == op.user_id:
                    last[1].extend(group)
                else:
                    batch.append(("C", [op.user_id, *group], op))
                mergeable = True
                continue
            mergeable = False
            if isinstance(op, Guarded):
                guarded = self._ops(op.ops, find_call).get(op.project_id, [])
                checks = [text for check in op.checks for text in check]
                batch.append(("G", [len(guarded), *checks], op))
                batch += guarded
            elif isinstance(op, UserRow):
                login = "" if op.login_time is None else op.login_time
                batch.append(("L", [op.user_id, op.display_name or "", login,
                                    dumps(op.grants.to_json()), *grant_map(op.grants)], op))
            elif isinstance(op, Connect):
                batch.append(("O", [op.user_id, op.connection_id, op.now_ms, op.client], op))
            elif isinstance(op, Disconnect):
                batch.append(("D", [op.user_id, op.connection_id, op.now_ms, op.grace_ms],
                              op))
            elif isinstance(op, Introduce):
                batch.append(("I", [op.user_id, op.now_ms], op))
            elif isinstance(op, Expire):
                batch.append(("E", [op.user_id, op.now_ms], op))
            elif isinstance(op, CallRow):
                data = op.data
                if data is None:  # ended: other nodes keep the ended call, like this one
                    ended = find_call(op.project_id, op.call_id)
                    data = ended.to_json() if ended is not None else {"callId": op.call_id}
                batch.append(("A", [op.call_id, dumps(data), int(op.data is not None),
                                    data.get("endedAt") or 0], op))
            elif isinstance(op, Notify):
                batch.append(("N", [dumps(list(op.user_ids)), op.frame, op.skip,
                                    int(op.if_others)], op))
            elif isinstance(op, CallEvent):
                batch.append(("H", hcall_args(op), op))
            elif isinstance(op, Kick):
                hold = dumps([op.hold_until_ms, op.by, op.reason]) if op.hold_until_ms else ""
                batch.append(("K", [op.user_id, hold], op))
            else:
                raise TypeError(f"cannot store {op!r}")
        return out

    async def write(self, ops: Sequence[Any], find_call: Callable[[int, str], Any]
                    ) -> tuple[dict[int, str], set[int]]:
        """Run each project's ops as one BATCH script call (one round trip for them
        all): the last log id of each project touched, and the ``id()`` of each
        :class:`Guarded` op Redis refused. Raises if Redis did not answer every script
        (the batch is then refused)."""
        batches = self._ops(ops, find_call)
        if not batches:
            return {}, set()
        calls = []
        for project_id, batch in batches.items():
            p = prefix(project_id)
            args: list[Any] = [p, LOG_MAXLEN, self.node_id]
            for kind, op_args, _ in batch:
                args += [kind, len(op_args), *op_args]
            calls.append((project_id, batch, args))
        script = self.scripts["BATCH"]
        if len(calls) == 1:
            project_id, _, args = calls[0]
            results = [await script(keys=[prefix(project_id) + "log"], args=args)]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for project_id, _, args in calls:
                await script(keys=[prefix(project_id) + "log"], args=args, client=pipe)
            results = await pipe.execute(raise_on_error=True)
        last: dict[int, str] = {}
        refused: set[int] = set()
        for (project_id, batch, _), result in zip(calls, results, strict=True):
            last[project_id] = result[0]
            for i in range(1, len(result) - 1, 2):
                op = batch[int(result[i]) - 1][2]
                out = result[i + 1]
                if isinstance(op, Guarded) and out == "!":
                    refused.add(id(op))
                elif isinstance(op, Connect) and isinstance(out, list):
                    op.others[:] = [str(text) for text in out]
        return last, refused

    # -- reads ----------------------------------------------------------------------------

    async def load(self, project_id: int, new_epoch: str) -> ProjectState:
        """A project's state, consistent with the log up to ``last_id``: seqs and epoch
        exactly, users and calls at least as new (the log after ``last_id`` is applied on
        top; it sets absolute values, so the view converges)."""
        p = prefix(project_id)
        epoch, last_id, flat, fresh = await self.run("STATE", project_id, new_epoch)
        seqs = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
        state = ProjectState(project_id, epoch, last_id, seqs, bool(fresh))
        # The client decodes replies (decode_responses): strings, whatever the stubs say.
        if last_id != "0-0":
            entries = cast("list[tuple[str, dict[str, str]]]", await self.redis.xrevrange(
                p + "log", last_id, "-", count=HISTORY_WINDOW))
            state.history = [fields for _, fields in reversed(entries)]
        user_ids = sorted(cast("set[str]", await self.redis.smembers(p + "users")))
        for i in range(0, len(user_ids), LOAD_CHUNK):
            chunk = user_ids[i:i + LOAD_CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for user_id in chunk:
                pipe.hgetall(p + "u:" + user_id)
            for user_id, fields in zip(chunk, await pipe.execute(), strict=True):
                state.users[user_id] = fields
        state.calls = cast("dict[str, str]", await self.redis.hgetall(p + "calls"))
        return state

    async def last_ids(self, project_ids: Sequence[int]) -> dict[int, str]:
        """The last log id of each project now (a read barrier's target)."""
        pipe = self.redis.pipeline(transaction=False)
        for project_id in project_ids:
            pipe.xrevrange(prefix(project_id) + "log", "+", "-", count=1)
        out = {}
        for project_id, entries in zip(project_ids, await pipe.execute(), strict=True):
            out[project_id] = entries[0][0] if entries else "0-0"
        return out

    async def log_info(self, project_id: int) -> tuple[str | None, str]:
        """The project's epoch (None: Redis lost it) and the highest log id ever trimmed."""
        p = prefix(project_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(p + "epoch")
        pipe.xinfo_stream(p + "log")
        epoch, info = await pipe.execute(raise_on_error=False)
        if isinstance(epoch, Exception):
            raise epoch
        trimmed = "0-0"
        if isinstance(info, dict):
            trimmed = info.get("max-deleted-entry-id") or "0-0"
        return epoch, trimmed
