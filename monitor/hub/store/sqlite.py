"""SQLite store (WAL): users, their latest grants, attribute values, calls in progress, and
the event log (:mod:`monitor.hub.store.history`).

Writes come in batches from the commit pipeline (its :class:`~monitor.hub.pipeline.Writer`),
one transaction each: on the event loop with ``synchronous=NORMAL`` (a commit that does not
wait for the disk; checkpoints, which do, run on a thread of their own), on the
pipeline's writer thread with ``FULL``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from monitor.hub.history import (
    DEFAULT_RETENTION_DAYS,
    DEFAULT_STATUS_ATTRIBUTE,
    AttributeEvent,
    CallEvent,
)
from monitor.hub.state import AttributeRow, CallRow, StoreOp, UserRow
from monitor.hub.store import history
from monitor.protocol import to_json
from monitor.tokens import Grants

log = logging.getLogger("monitor.hub")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    project_id   INTEGER NOT NULL,
    user_id      TEXT NOT NULL,
    display_name TEXT,
    login_time   INTEGER,
    grants       TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attributes (
    project_id INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    project_id INTEGER NOT NULL,
    call_id    TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (project_id, call_id)
) WITHOUT ROWID;
"""

UPSERT_USER = """
INSERT INTO users (project_id, user_id, display_name, login_time, grants)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (project_id, user_id) DO UPDATE SET
    display_name = excluded.display_name, login_time = excluded.login_time,
    grants = excluded.grants
"""

UPSERT_ATTRIBUTE = """
INSERT INTO attributes (project_id, user_id, name, value, updated_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (project_id, user_id, name) DO UPDATE SET
    value = excluded.value, updated_ms = excluded.updated_ms
"""


UPSERT_CALL = """
INSERT INTO calls (project_id, call_id, data) VALUES (?, ?, ?)
ON CONFLICT (project_id, call_id) DO UPDATE SET data = excluded.data
"""


CHECKPOINT_EVERY_S = 0.5
CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024
# A WAL past this size is checkpointed with TRUNCATE by the writer itself, after its
# commit (the next write waits for it): under a steady stream of writes the background
# PASSIVE checkpoint never finds a moment when every frame is copied, and the WAL grows.
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
# What SQLite keeps of the WAL file after a checkpoint resets it.
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
# The database holds every user's attributes and the hub.toml next to it the keys: the
# data directory is the hub's alone, its files the hub user's alone.
DATA_DIR_MODE = 0o700
DATA_FILE_MODE = 0o600


class StoreError(Exception):
    """The store could not make a batch durable (disk full, I/O error...)."""


def _private_files(path: Path) -> None:
    """Create the data directory 0700 and the database 0600 before SQLite opens it
    (SQLite gives the -wal and -shm files the database file's mode); tighten the files
    of an existing database too. An existing directory the operator chose is left as it
    is, but for a warning when others may read it."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=DATA_DIR_MODE)
        directory.chmod(DATA_DIR_MODE)  # mkdir's mode is filtered by the umask
    elif directory.stat().st_mode & 0o077:
        log.warning("event=data_dir_not_private path=%s mode=%s", directory,
                    oct(directory.stat().st_mode & 0o777))
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, DATA_FILE_MODE))
    for suffix in ("", "-wal", "-shm"):
        file = Path(str(path) + suffix)
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(DATA_FILE_MODE)


class SqliteStore:
    """The embedded store. ``synchronous=NORMAL`` survives a crash of the process
    (``kill -9``); ``FULL`` also survives power loss, at the price of an fsync per batch."""

    def __init__(self, path: Path, synchronous: str = "NORMAL",
                 background_checkpoints: bool = False, *,
                 status_attribute: str = DEFAULT_STATUS_ATTRIBUTE,
                 retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.path = path
        self._wal = str(path) + "-wal"
        self._lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        db = None
        try:
            _private_files(path)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            db.executescript(SCHEMA)
            db.executescript(history.SCHEMA)
            if background_checkpoints:
                db.execute("PRAGMA wal_autocheckpoint=0")
        except (OSError, sqlite3.Error) as exc:  # read-only, missing, not a database...
            if db is not None:
                db.close()
            raise StoreError(f"{path}: {exc}") from exc
        self._db = db
        # The event log: its rows go in each batch's transaction.
        self.log = history.EventLog(path, db, self._lock, status_attribute=status_attribute,
                                    retention_days=retention_days)
        if background_checkpoints:
            self._checkpointer = threading.Thread(target=self._checkpoint_forever,
                                                  name="store-checkpointer", daemon=True)
            self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        """Copy the WAL into the database on a thread of its own, so the writer (on the
        event loop) never waits for the fsync a checkpoint does."""
        wal = Path(str(self.path) + "-wal")
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            while not self._stop.wait(CHECKPOINT_EVERY_S):
                try:
                    # PASSIVE only: a TRUNCATE here would hold the checkpoint lock while
                    # it waited for the writer, and starve the writer's own (below).
                    if wal.exists() and wal.stat().st_size > CHECKPOINT_WAL_BYTES:
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except (OSError, sqlite3.Error) as exc:
                    log.warning("event=checkpoint_failed path=%s error=%r", self.path, str(exc))
        finally:
            db.close()

    def load(self) -> tuple[list[UserRow], list[AttributeRow]]:
        """Everything stored, to rebuild the in-memory state at start."""
        with self._lock:
            users = [UserRow(pid, uid, name, login, Grants.from_json(json.loads(grants)))
                     for pid, uid, name, login, grants in self._db.execute(
                         "SELECT project_id, user_id, display_name, login_time, grants "
                         "FROM users")]
            attributes = [AttributeRow(pid, uid, name, json.loads(value), updated)
                          for pid, uid, name, value, updated in self._db.execute(
                              "SELECT project_id, user_id, name, value, updated_ms "
                              "FROM attributes")]
        return users, attributes

    def load_calls(self) -> list[CallRow]:
        """The calls that were in progress when the hub last stopped."""
        with self._lock:
            return [CallRow(pid, cid, json.loads(data)) for pid, cid, data in
                    self._db.execute("SELECT project_id, call_id, data FROM calls")]

    def write(self, ops: Iterable[StoreOp | AttributeEvent | CallEvent]) -> None:
        """Make a batch durable in one transaction; raise :class:`StoreError` if not."""
        users, attributes, calls = [], [], []
        events: list[AttributeEvent | CallEvent] = []
        ended: dict[tuple[int, str], None] = {}  # ordered set: ended, unless started again
        for op in ops:
            if isinstance(op, AttributeEvent | CallEvent):
                events.append(op)
            elif isinstance(op, UserRow):
                users.append((op.project_id, op.user_id, op.display_name, op.login_time,
                              to_json(op.grants.to_json())))
            elif isinstance(op, CallRow):
                if op.data is None:
                    ended[(op.project_id, op.call_id)] = None
                else:
                    calls.append((op.project_id, op.call_id, to_json(op.data)))
                    ended.pop((op.project_id, op.call_id), None)
            else:
                attributes.append((op.project_id, op.user_id, op.name,
                                   to_json(op.value), op.updated_ms))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if users:
                    self._db.executemany(UPSERT_USER, users)
                if attributes:
                    self._db.executemany(UPSERT_ATTRIBUTE, attributes)
                if calls:
                    self._db.executemany(UPSERT_CALL, calls)
                if ended:
                    self._db.executemany(
                        "DELETE FROM calls WHERE project_id = ? AND call_id = ?", list(ended))
                staged = self.log.stage(events) if events and self.log.enabled else None
                if staged is not None:
                    self.log.insert(staged)
                self._db.execute("COMMIT")
                if staged is not None:
                    self.log.committed(staged)
                self._bound_wal()
            # Not only sqlite3.Error: a value SQLite cannot take (a lone surrogate, an int
            # over 64 bits) must not leave the transaction open for the next batch.
            except Exception as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: {exc}") from exc

    def failed(self, ops: Sequence[StoreOp], error: BaseException) -> None:
        """Nothing to do: a failed transaction was rolled back (the pipeline logs it)."""

    def _bound_wal(self) -> None:
        """Past ``WAL_TRUNCATE_BYTES``, checkpoint and truncate the WAL now, as the
        writer: under writes that never pause, the background checkpoint never finds a
        moment when it has copied every frame, and the WAL would grow without end."""
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        if size > WAL_TRUNCATE_BYTES:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            log.info("event=wal_truncated path=%s bytes=%d done=%s", self.path, size,
                     "no" if busy else "yes")

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self.log.close()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
