"""The single node's event log, in the SQLite database of :mod:`monitor.hub.store.sqlite`.

:class:`EventLog` turns a batch's :mod:`monitor.hub.history` events into rows written in the
batch's own transaction (acknowledged means logged), keeps each user's latest checkpoint
in memory once read, answers the history and reports on a connection of its own on a
thread, and prunes what is older than the retention, a little at a time.

Tables (every one keyed by project first)::

    events       (project_id, id) -> user_id, attribute, data: every event, id order;
                 data is the JSON array [ms, value, old value, topics, extras] (a call's:
                 user_id and attribute '', [ms, the call])
    checkpoints  (project_id, user_id, id) -> data: a user's running totals after an event
    call_log     (project_id, started_ms, call_id) -> answered_ms, ended_ms: each call's
                 latest state, by when it was offered (the calls report)

An event's ``id`` is ``ms << 12 | n``: its millisecond (never before the previous event's)
and a counter, so a time range is an id range, and ``id`` is the log's order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from monitor.hub.history import (
    DAY_MS,
    AttributeEvent,
    CallEvent,
    CallSummary,
    Checkpoint,
    HistoryPage,
    RangeError,
    after_attribute,
    after_call,
    history_entry,
    tracked,
)
from monitor.protocol import OFFLINE, ONLINE, ONLINE_STATUS, from_json, to_json

log = logging.getLogger("monitor.hub")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    project_id INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    attribute  TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    project_id INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    id         INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_log (
    project_id  INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    call_id     TEXT NOT NULL,
    answered_ms INTEGER,
    ended_ms    INTEGER,
    PRIMARY KEY (project_id, started_ms, call_id)
) WITHOUT ROWID;
"""

# Few columns: each bound parameter costs the writer more than encoding one JSON array.
INSERT_EVENT = ("INSERT INTO events (project_id, id, user_id, attribute, data) "
                "VALUES (?, ?, ?, ?, ?)")
EVENT_COLUMNS = "id, user_id, attribute, data"
EventRow = tuple[int, int, str, str, str]
INSERT_CHECKPOINT = "INSERT INTO checkpoints (project_id, user_id, id, data) VALUES (?, ?, ?, ?)"
UPSERT_CALL = """
INSERT INTO call_log (project_id, started_ms, call_id, answered_ms, ended_ms)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (project_id, started_ms, call_id) DO UPDATE SET
    answered_ms = excluded.answered_ms, ended_ms = excluded.ended_ms
"""
LAST_CHECKPOINT = ("SELECT id, data FROM checkpoints WHERE project_id = ? AND user_id = ? "
                   "AND id < ? ORDER BY id DESC LIMIT 1")

ID_BITS = 12  # events per millisecond before the id runs ahead of the clock: 4096
NO_END = 1 << 62
PRUNE_EVERY_S = 3600.0
PRUNE_FIRST_S = 60.0
PRUNE_CHUNK = 2000  # rows deleted per transaction: a few ms of the writer's lock
PRUNE_PAUSE_S = 0.02  # between chunks, so writes interleave

T = TypeVar("T")


def position(ms: int) -> int:
    """The first id of millisecond ``ms``."""
    return ms << ID_BITS


def event_of(user_id: str, attribute: str, data: str) -> dict[str, Any]:
    """A logged event as :meth:`AttributeEvent.to_json` or :meth:`CallEvent.to_json`
    made it, from its row (the columns of ``EVENT_COLUMNS`` after ``id``)."""
    fields = from_json(data)
    if not attribute:
        return {"type": "call.state", "timestamp": fields[0], "call": fields[1]}
    ts, value, old, topics, extra = fields
    out = {"type": "attribute.changed", "userId": user_id, "attribute": attribute,
           "value": value, "oldValue": old, "timestamp": ts, "topics": topics}
    if extra:
        out.update((k, v) for k, v in extra.items() if k not in out)
    return out


def read_events_after(db: sqlite3.Connection, project_id: int, after: int, limit: int
                      ) -> list[tuple[int, dict[str, Any]]]:
    """The project's events after position ``after``, in log order (an outbox's read)."""
    return [(row[0], event_of(*row[1:])) for row in db.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND id > ? "
        "ORDER BY id LIMIT ?", (project_id, after, limit))]


def last_event_id(db: sqlite3.Connection, project_id: int) -> int:
    """The position of the project's latest event (0: none)."""
    row = db.execute("SELECT MAX(id) FROM events WHERE project_id = ?",
                     (project_id,)).fetchone()
    return int(row[0] or 0)


@dataclass
class Staged:
    """A batch's rows, and what memory becomes once they are committed."""

    events: list[EventRow] = field(default_factory=list)
    checkpoints: list[tuple[int, str, int, str]] = field(default_factory=list)
    calls: list[tuple[int, int, str, int | None, int | None]] = field(default_factory=list)
    last: dict[int, int] = field(default_factory=dict)
    ledger: dict[tuple[int, str], Checkpoint] = field(default_factory=dict)


class EventLog:
    """The event log of a :class:`~monitor.hub.store.sqlite.SqliteStore`.

    ``db`` and ``lock`` are the store's writer connection and its lock: :meth:`stage` and
    :meth:`insert` run inside the store's transaction, under its lock.
    """

    def __init__(self, path: Path, db: sqlite3.Connection, lock: threading.Lock, *,
                 status_attribute: str, retention_days: int) -> None:
        self.path = path
        self._db = db
        self._lock = lock
        self.status_attribute = status_attribute
        self._retention_days = retention_days
        self.enabled = retention_days > 0  # 0: the hub keeps no event log
        self._last: dict[int, int] = {}
        self._ledger: dict[tuple[int, str], Checkpoint | None] = {}
        self._reader: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None
        self.pruned = 0
        # project -> its webhook endpoints: pruning keeps what their cursors have not passed
        self.webhook_endpoints: dict[int, tuple[str, ...]] = {}

    @property
    def retention_days(self) -> int:
        return self._retention_days

    # -- writing (in the store's transaction) ---------------------------------------------

    def _checkpoint(self, staged: Staged, project_id: int, user_id: str) -> Checkpoint | None:
        key = (project_id, user_id)
        if key in staged.ledger:
            return staged.ledger[key]
        if key not in self._ledger:
            row = self._db.execute(LAST_CHECKPOINT, (project_id, user_id, NO_END)).fetchone()
            self._ledger[key] = None if row is None else Checkpoint.from_text(row[1])
        return self._ledger[key]

    def _next_id(self, staged: Staged, project_id: int, ms: int) -> int:
        last = staged.last.get(project_id)
        if last is None:
            last = self._last.get(project_id)
            if last is None:
                last = self._last[project_id] = last_event_id(self._db, project_id)
        new = ms << ID_BITS
        if new <= last:
            new = last + 1
        staged.last[project_id] = new
        return new

    def stage(self, events: Iterable[AttributeEvent | CallEvent]) -> Staged:
        """The rows of ``events`` and the checkpoints they move (memory untouched)."""
        staged = Staged()
        status = self.status_attribute
        rows = staged.events
        for event in events:
            pid = event.project_id
            event_id = self._next_id(staged, pid, event.timestamp)
            if isinstance(event, AttributeEvent):
                uid = event.user_id
                rows.append((pid, event_id, uid, event.attribute, to_json(
                    [event.timestamp, event.value, event.old_value, event.topics,
                     event.extra])))
                if tracked(event.attribute, status):
                    cp = after_attribute(self._checkpoint(staged, pid, uid), event, status)
                    staged.ledger[(pid, uid)] = cp
                    staged.checkpoints.append((pid, uid, event_id, cp.to_text()))
                continue
            call = event.call
            rows.append((pid, event_id, "", "", to_json([event.timestamp, call])))
            staged.calls.append((pid, int(call["startedAt"]), str(call["callId"]),
                                 call.get("answeredAt"), call.get("endedAt")))
            callee = call.get("to")
            if isinstance(callee, str) and callee in event.users:
                moved = after_call(self._checkpoint(staged, pid, callee), event)
                if moved is not None:
                    staged.ledger[(pid, callee)] = moved
                    staged.checkpoints.append((pid, callee, event_id, moved.to_text()))
        return staged

    def insert(self, staged: Staged) -> None:
        db = self._db
        if staged.events:
            db.executemany(INSERT_EVENT, staged.events)
        if staged.checkpoints:
            db.executemany(INSERT_CHECKPOINT, staged.checkpoints)
        if staged.calls:
            db.executemany(UPSERT_CALL, staged.calls)

    def committed(self, staged: Staged) -> None:
        """The batch is durable: memory follows."""
        self._last.update(staged.last)
        self._ledger.update(staged.ledger)

    # -- at start -------------------------------------------------------------------------

    def left_online(self, users: Iterable[tuple[int, str]], now_ms: int
                    ) -> list[AttributeEvent]:
        """Users the log last saw online: the hub stopped without logging them off (a
        crash). Their offline events, to log now (everyone starts offline)."""
        out: list[AttributeEvent] = []
        if not self.enabled:
            return out
        with self._lock:
            for project_id, user_id in users:
                cp = self._checkpoint(Staged(), project_id, user_id)
                if cp is not None and cp.online:
                    out.append(AttributeEvent(project_id, user_id, ONLINE_STATUS, OFFLINE,
                                              ONLINE, max(now_ms, cp.t)))
        return out

    # -- reading (a connection and a thread of its own) -----------------------------------

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="history-reader")
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA query_only = 1")
            self._reader = db
        reader = self._reader
        assert reader is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, work, reader)

    async def user_events(self, project_id: int, user_id: str, start: int, end: int,
                          attribute: str | None, limit: int, cursor: str | None
                          ) -> HistoryPage:
        first = position(start)
        if cursor is not None:
            if not cursor.isdigit() or not first <= int(cursor) < position(end):
                raise RangeError("cursor is not one this range gave")
            first = int(cursor) + 1

        def work(db: sqlite3.Connection) -> HistoryPage:
            if attribute is not None and tracked(attribute, self.status_attribute):
                # A tracked attribute: straight to the user's checkpoints, then each event.
                rows = db.execute(
                    "SELECT e.id, e.user_id, e.attribute, e.data FROM checkpoints c JOIN events e "
                    "ON e.project_id = c.project_id AND e.id = c.id "
                    "WHERE c.project_id = ? AND c.user_id = ? AND c.id >= ? AND c.id < ? "
                    "AND e.user_id = ? AND e.attribute = ? ORDER BY c.id LIMIT ?",
                    (project_id, user_id, first, position(end), user_id, attribute,
                     limit + 1)).fetchall()
            elif attribute is not None:
                rows = db.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND id >= ? "
                    "AND id < ? AND user_id = ? AND attribute = ? ORDER BY id LIMIT ?",
                    (project_id, first, position(end), user_id, attribute, limit + 1)
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND id >= ? "
                    "AND id < ? AND user_id = ? ORDER BY id LIMIT ?",
                    (project_id, first, position(end), user_id, limit + 1)).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            return HistoryPage([history_entry(event_of(*row[1:])) for row in rows],
                               str(rows[-1][0]) if more else None)

        return await self._read(work)

    async def checkpoints(self, project_id: int, user_ids: Sequence[str], at: int
                          ) -> dict[str, Checkpoint]:
        def work(db: sqlite3.Connection) -> dict[str, Checkpoint]:
            out = {}
            limit = position(at)
            for user_id in user_ids:
                row = db.execute(LAST_CHECKPOINT, (project_id, user_id, limit)).fetchone()
                if row is not None:
                    out[user_id] = Checkpoint.from_text(row[1])
            return out

        return await self._read(work)

    async def call_summaries(self, project_id: int, start: int, end: int
                             ) -> list[CallSummary]:
        def work(db: sqlite3.Connection) -> list[CallSummary]:
            return [CallSummary(call_id, started, answered, ended)
                    for started, call_id, answered, ended in db.execute(
                        "SELECT started_ms, call_id, answered_ms, ended_ms FROM call_log "
                        "WHERE project_id = ? AND started_ms >= ? AND started_ms < ?",
                        (project_id, start, end))]

        return await self._read(work)

    async def events_after(self, project_id: int, after: int, limit: int
                           ) -> list[tuple[int, dict[str, Any]]]:
        """Events after position ``after``, in log order (an outbox reads from here)."""
        return await self._read(lambda db: read_events_after(db, project_id, after, limit))

    # -- retention ------------------------------------------------------------------------

    def prune(self, now_ms: int, pause_s: float = 0.0) -> int:
        """Delete what is older than the retention, a chunk per transaction; each user
        keeps the last checkpoint before the cut (the totals start from it). The rows
        deleted."""
        cut = now_ms - self._retention_days * DAY_MS
        deleted = 0
        with self._lock:
            projects = [r[0] for r in self._db.execute(
                "SELECT DISTINCT project_id FROM users")]
            users = self._db.execute("SELECT project_id, user_id FROM users").fetchall()
        for project_id in projects:
            deleted += self._chunks(
                "SELECT id FROM events WHERE project_id = ? AND id < ? ORDER BY id "
                "LIMIT 1 OFFSET ?", "DELETE FROM events WHERE project_id = ? AND id <= ?",
                project_id, self._kept_from(project_id, position(cut)), pause_s)
            deleted += self._chunks(
                "SELECT started_ms FROM call_log WHERE project_id = ? AND started_ms < ? "
                "ORDER BY started_ms LIMIT 1 OFFSET ?",
                "DELETE FROM call_log WHERE project_id = ? AND started_ms <= ?",
                project_id, cut, pause_s)
        for i in range(0, len(users), 200):
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for project_id, user_id in users[i:i + 200]:
                        deleted += self._db.execute(
                            "DELETE FROM checkpoints WHERE project_id = ? AND user_id = ? "
                            "AND id < (SELECT id FROM checkpoints WHERE project_id = ? "
                            "AND user_id = ? AND id < ? ORDER BY id DESC LIMIT 1)",
                            (project_id, user_id, project_id, user_id, position(cut))
                        ).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            if pause_s:
                self._stop.wait(pause_s)
        self.pruned += deleted
        if deleted:
            log.info("event=history_pruned rows=%d before_ms=%d", deleted, cut)
        return deleted

    def _kept_from(self, project_id: int, cut: int) -> int:
        """The first position to keep: ``cut``, or the first event a webhook endpoint's
        cursor has not passed (the log is the endpoints' outbox)."""
        endpoints = self.webhook_endpoints.get(project_id)
        if not endpoints:
            return cut
        marks = ", ".join("?" * len(endpoints))
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT MIN(position) FROM webhook_cursors WHERE project_id = ? AND "
                    f"endpoint IN ({marks})", (project_id, *endpoints)).fetchone()
        except sqlite3.OperationalError:  # no cursor table yet: no cursor to keep for
            return cut
        return cut if row[0] is None else min(cut, int(row[0]) + 1)

    def _chunks(self, bound_sql: str, delete_sql: str, project_id: int, cut: int,
                pause_s: float) -> int:
        deleted = 0
        while not self._stop.is_set():
            with self._lock:
                row = self._db.execute(bound_sql, (project_id, cut, PRUNE_CHUNK - 1)).fetchone()
                bound = cut - 1 if row is None else row[0]
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    count = self._db.execute(delete_sql, (project_id, bound)).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            deleted += count
            if row is None:
                break
            if pause_s:
                self._stop.wait(pause_s)
        return deleted

    def start_pruning(self, clock: Callable[[], int]) -> None:
        """Prune on a thread of its own: soon after start, then every hour."""
        if not self.enabled:
            return

        def run() -> None:
            wait = PRUNE_FIRST_S
            while not self._stop.wait(wait):
                wait = PRUNE_EVERY_S
                try:
                    self.prune(clock(), PRUNE_PAUSE_S)
                except (sqlite3.Error, OSError) as exc:
                    log.warning("event=history_prune_failed path=%s error=%r", self.path,
                                str(exc))

        self._pruner = threading.Thread(target=run, name="history-pruner", daemon=True)
        self._pruner.start()

    def close(self) -> None:
        self._stop.set()
        if self._pruner is not None:
            self._pruner.join()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
