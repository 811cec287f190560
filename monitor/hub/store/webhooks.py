"""The single node's webhook bookkeeping, in the hub's SQLite file: the event log read as
the outbox, each endpoint's durable cursor in it, and its dead letters
(:mod:`monitor.hub.webhooks`).

A connection and a thread of its own, so no event loop waits for it; the commit
pipeline's writer is not involved (the events themselves are the event log's).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from monitor.hub.history import DAY_MS
from monitor.hub.store.history import last_event_id, read_events_after
from monitor.hub.webhooks import Delivery

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_cursors (
    project_id INTEGER NOT NULL,
    endpoint   TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (project_id, endpoint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    endpoint   TEXT NOT NULL,
    position   INTEGER NOT NULL,
    body       BLOB NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT NOT NULL,
    status     TEXT NOT NULL,
    failed_ms  INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_status
    ON webhook_deliveries (project_id, status, id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_age
    ON webhook_deliveries (project_id, failed_ms);
"""

COLUMNS = ("id, project_id, endpoint, position, body, attempts, error, status, failed_ms, "
           "updated_ms")
BUSY_TIMEOUT_MS = 10_000


class SqliteDeliveryStore:
    """:class:`~monitor.hub.webhooks.DeliveryStore` over the hub's database file."""

    def __init__(self, path: Path, keep: int = 10_000, keep_days: int = 30) -> None:
        self.path = path
        self.keep = keep  # dead letters per project, the newest
        self.keep_ms = keep_days * DAY_MS  # none dead-lettered longer ago
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="webhook-store")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Its commits take the database's write lock, which the hub's writer (on the event
        # loop) then waits for: never for an fsync. A cursor lost to a power cut means
        # events sent again, never events lost.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        # A re-send the hub stopped in the middle of is a failed delivery again.
        self._db.execute("UPDATE webhook_deliveries SET status = 'failed' "
                         "WHERE status = 'retrying'")

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work,
                                                                self._db)

    async def events_after(self, project_id: int, after: int, limit: int
                           ) -> list[tuple[int, dict[str, Any]]]:
        """The :class:`~monitor.hub.webhooks.Outbox`: events after position ``after``."""
        return await self._run(lambda db: read_events_after(db, project_id, after, limit))

    async def last_position(self, project_id: int) -> int:
        return await self._run(lambda db: last_event_id(db, project_id))

    async def cursor(self, project_id: int, endpoint: str) -> int | None:
        def work(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT position FROM webhook_cursors WHERE project_id = ? "
                             "AND endpoint = ?", (project_id, endpoint)).fetchone()
            return None if row is None else int(row[0])
        return await self._run(work)

    async def init_cursor(self, project_id: int, endpoint: str, position: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO webhook_cursors (project_id, endpoint, position) "
                       "VALUES (?, ?, ?) ON CONFLICT (project_id, endpoint) DO NOTHING",
                       (project_id, endpoint, position))
        await self._run(work)

    async def save_cursor(self, project_id: int, endpoint: str, position: int) -> bool:
        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO webhook_cursors (project_id, endpoint, position) "
                       "VALUES (?, ?, ?) ON CONFLICT (project_id, endpoint) DO UPDATE SET "
                       "position = MAX(position, excluded.position)",
                       (project_id, endpoint, position))
        await self._run(work)
        return True  # one node: no lease to lose

    async def dead_letter(self, project_id: int, endpoint: str, position: int, body: bytes,
                          attempts: int, error: str, now_ms: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO webhook_deliveries (project_id, endpoint, position, body, "
                "attempts, error, status, failed_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, 'failed', ?, ?)",
                (project_id, endpoint, position, body, attempts, error, now_ms, now_ms))
            self._prune(db, project_id, now_ms)
            return int(cur.lastrowid or 0)
        return await self._run(work)

    def _prune(self, db: sqlite3.Connection, project_id: int, now_ms: int) -> int:
        too_old = db.execute("DELETE FROM webhook_deliveries WHERE project_id = ? AND "
                             "failed_ms < ?", (project_id, now_ms - self.keep_ms)).rowcount
        row = db.execute("SELECT id FROM webhook_deliveries WHERE project_id = ? "
                         "ORDER BY id DESC LIMIT 1 OFFSET ?", (project_id, self.keep)
                         ).fetchone()
        if row is None:
            return int(too_old)
        return int(too_old) + int(db.execute(
            "DELETE FROM webhook_deliveries WHERE project_id = ? AND id <= ?",
            (project_id, row[0])).rowcount)

    async def prune_dead(self, project_id: int, now_ms: int) -> int:
        """Drop the project's dead letters beyond the newest ``keep`` and those older
        than ``keep_days``; how many."""
        return await self._run(lambda db: self._prune(db, project_id, now_ms))

    @staticmethod
    def _delivery(row: tuple[object, ...]) -> Delivery:
        i, pid, endpoint, position, body, attempts, error, status, failed, updated = row
        return Delivery(int(str(i)), int(str(pid)), str(endpoint), int(str(position)),
                        bytes(body) if isinstance(body, bytes | bytearray) else
                        str(body).encode(), int(str(attempts)), str(error), str(status),
                        int(str(failed)), int(str(updated)))

    async def deliveries(self, project_id: int, status: str | None, limit: int
                         ) -> list[Delivery]:
        def work(db: sqlite3.Connection) -> list[Delivery]:
            if status is None:
                rows = db.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE "
                                  "project_id = ? ORDER BY id DESC LIMIT ?",
                                  (project_id, limit))
            else:
                rows = db.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE "
                                  "project_id = ? AND status = ? ORDER BY id DESC LIMIT ?",
                                  (project_id, status, limit))
            return [self._delivery(row) for row in rows]
        return await self._run(work)

    async def delivery(self, project_id: int, delivery_id: int) -> Delivery | None:
        def work(db: sqlite3.Connection) -> Delivery | None:
            row = db.execute(f"SELECT {COLUMNS} FROM webhook_deliveries WHERE id = ? "
                             "AND project_id = ?", (delivery_id, project_id)).fetchone()
            return None if row is None else self._delivery(row)
        return await self._run(work)

    async def set_status(self, project_id: int, delivery_id: int, status: str,
                         attempts: int, error: str, now_ms: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("UPDATE webhook_deliveries SET status = ?, attempts = ?, error = ?, "
                       "updated_ms = ? WHERE id = ?",
                       (status, attempts, error, now_ms, delivery_id))
        await self._run(work)

    async def dead_count(self, project_id: int, endpoint: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE project_id = ? "
                             "AND endpoint = ? AND status = 'failed'",
                             (project_id, endpoint)).fetchone()
            return int(row[0])
        return await self._run(work)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._db.close()
