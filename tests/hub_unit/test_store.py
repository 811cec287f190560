"""SqliteStore: round trips, upserts, reopening, atomic batches, and a disk that says no."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.hub.state import AttributeRow, CallRow, StoreOp, UserRow
from monitor.hub.store import sqlite as sqlite_store
from monitor.hub.store.sqlite import SqliteStore, StoreError
from tests.hub_unit.builders import OTHER_PROJECT, PROJECT, T0, grants

ROOT = Path(__file__).resolve().parents[2]
LINUX = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and RLIMIT_FSIZE")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hub.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(path)
    yield opened
    with contextlib.suppress(sqlite3.ProgrammingError):  # the test closed it already
        opened.close()


def user(user_id: str, **kwargs: Any) -> UserRow:
    fields: dict[str, Any] = {"project_id": PROJECT, "user_id": user_id, "display_name": None,
                              "login_time": T0, "grants": grants()}
    fields.update(kwargs)
    return UserRow(**fields)


def attr(user_id: str, name: str, value: Any, updated: int = T0,
         project: int = PROJECT) -> AttributeRow:
    return AttributeRow(project, user_id, name, value, updated)


def loaded(store: SqliteStore) -> tuple[set[UserRow], dict[tuple[int, str, str], Any]]:
    users, attributes = store.load()
    assert len(users) == len(set(users))
    return set(users), {(a.project_id, a.user_id, a.name): (a.value, a.updated_ms)
                        for a in attributes}


VALUES: list[Any] = ["", "busy", "é✓ \U0001f600 \"quoted\" \\ \n", "x" * 1024, 0, -7, 2**62,
                     2**64, 10**30, 1.5, -0.25, 1e300, 1.0, True, False, None]


# -- round trips -----------------------------------------------------------------------------------


def test_a_new_store_is_empty_and_creates_its_directory(store: SqliteStore, path: Path) -> None:
    assert path.parent.is_dir() and path.exists()
    assert store.load() == ([], [])
    assert store.load_calls() == []


def test_users_with_grants_round_trip(store: SqliteStore) -> None:
    rows = {
        user("plain"),
        user("named", display_name="Ngọc Ánh ✓", login_time=None),
        user("granted", grants=grants(["a", "b:c", "ALL_CALL_STATUS"],
                                      [("status", "team"), ("call", "call_x"),
                                       ("status", "other")])),
        user("plain", project_id=OTHER_PROJECT, login_time=0),
    }
    store.write(list(rows))
    assert loaded(store)[0] == rows


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_attribute_values_of_every_json_type_round_trip(store: SqliteStore,
                                                        value: Any) -> None:
    store.write([attr("u", "a", value, T0 + 3)])
    [(stored, updated)] = loaded(store)[1].values()
    assert stored == value and type(stored) is type(value)
    assert updated == T0 + 3


def test_many_values_in_one_batch(store: SqliteStore) -> None:
    rows = [attr("u", f"a{i}", value, T0 + i) for i, value in enumerate(VALUES)]
    store.write(rows)
    _, attributes = store.load()
    assert sorted(attributes, key=lambda a: a.name) == sorted(rows, key=lambda a: a.name)


def test_attributes_are_keyed_by_project_user_and_name(store: SqliteStore) -> None:
    store.write([attr("u", "a", 1), attr("u", "b", 2), attr("v", "a", 3),
                 attr("u", "a", 4, project=OTHER_PROJECT)])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): (1, T0), (PROJECT, "u", "b"): (2, T0),
                                (PROJECT, "v", "a"): (3, T0),
                                (OTHER_PROJECT, "u", "a"): (4, T0)}


def test_an_empty_batch_is_fine(store: SqliteStore) -> None:
    store.write([])
    store.write(iter(()))
    assert store.load() == ([], [])


# -- upserts ---------------------------------------------------------------------------------------


def test_user_upsert_replaces_every_field(store: SqliteStore) -> None:
    store.write([user("u", display_name="Old", login_time=1, grants=grants(["a"]))])
    newer = user("u", display_name=None, login_time=2, grants=grants(attributes=[("s", "t")]))
    store.write([newer])
    assert loaded(store)[0] == {newer}


def test_attribute_upsert_keeps_the_latest(store: SqliteStore) -> None:
    store.write([attr("u", "a", "first", T0)])
    store.write([attr("u", "a", None, T0 + 1)])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): (None, T0 + 1)}


def test_later_rows_of_one_batch_win(store: SqliteStore) -> None:
    store.write([user("u", login_time=1), attr("u", "a", 1), user("u", login_time=2),
                 attr("u", "a", 2, T0 + 1)])
    users, attributes = loaded(store)
    assert {u.login_time for u in users} == {2}
    assert attributes == {(PROJECT, "u", "a"): (2, T0 + 1)}


def test_user_and_attribute_rows_are_independent(store: SqliteStore) -> None:
    store.write([attr("u", "a", 1)])
    assert loaded(store) == (set(), {(PROJECT, "u", "a"): (1, T0)})
    store.write([user("u")])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): (1, T0)}


# -- calls -----------------------------------------------------------------------------------------


CALL = {"callId": "c1", "from": "a", "to": "b", "status": "Ringing"}


def test_calls_round_trip_and_end(store: SqliteStore) -> None:
    store.write([CallRow(PROJECT, "c1", CALL), CallRow(PROJECT, "c2", {**CALL, "callId": "c2"})])
    assert sorted(store.load_calls(), key=lambda c: c.call_id) == [
        CallRow(PROJECT, "c1", CALL), CallRow(PROJECT, "c2", {**CALL, "callId": "c2"})]
    answered = {**CALL, "status": "Answered"}
    store.write([CallRow(PROJECT, "c1", answered), CallRow(PROJECT, "c2", None)])
    assert store.load_calls() == [CallRow(PROJECT, "c1", answered)]
    store.write([CallRow(PROJECT, "gone", None)])  # ending an unknown call is harmless
    assert store.load_calls() == [CallRow(PROJECT, "c1", answered)]


def test_a_call_started_and_ended_in_one_batch_is_not_kept(store: SqliteStore) -> None:
    store.write([CallRow(PROJECT, "c1", CALL), CallRow(PROJECT, "c1", None)])
    assert store.load_calls() == []


def test_a_call_ended_then_started_again_in_one_batch_is_kept(store: SqliteStore) -> None:
    store.write([CallRow(PROJECT, "c1", CALL)])
    again = {**CALL, "status": "Calling"}
    store.write([CallRow(PROJECT, "c1", None), CallRow(PROJECT, "c1", again)])
    assert store.load_calls() == [CallRow(PROJECT, "c1", again)]


# -- reopening -------------------------------------------------------------------------------------


def test_reopen_after_close_finds_everything(store: SqliteStore, path: Path) -> None:
    rows = [user("u", display_name="Ann", grants=grants(["t"], [("s", "t")])),
            attr("u", "s", "busy"), attr("u", "n", 3.5)]
    store.write(rows)
    store.write([CallRow(PROJECT, "c1", CALL)])
    store.close()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed into the main file
    reopened = SqliteStore(path)
    try:
        users, attributes = reopened.load()
        assert users == [rows[0]]
        assert sorted(attributes, key=lambda a: a.name) == [rows[2], rows[1]]
        assert reopened.load_calls() == [CallRow(PROJECT, "c1", CALL)]
        reopened.write([attr("u", "s", "idle", T0 + 1)])
    finally:
        reopened.close()
    third = SqliteStore(path)
    try:
        assert loaded(third)[1][(PROJECT, "u", "s")] == ("idle", T0 + 1)
    finally:
        third.close()


def test_reopen_without_close_still_has_committed_batches(path: Path) -> None:
    # What a kill -9 leaves: the WAL, never checkpointed.
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from monitor.hub.state import AttributeRow
        from monitor.hub.store.sqlite import SqliteStore
        store = SqliteStore(Path({str(path)!r}))
        store.write([AttributeRow({PROJECT}, "u", "s", "durable", 1)])
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)
    reopened = SqliteStore(path)
    try:
        assert loaded(reopened)[1] == {(PROJECT, "u", "s"): ("durable", 1)}
    finally:
        reopened.close()


def test_synchronous_full_is_accepted(path: Path) -> None:
    full = SqliteStore(path, synchronous="FULL")
    try:
        full.write([attr("u", "a", 1)])
        assert full._db.execute("PRAGMA synchronous").fetchone() == (2,)
        assert full._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        full.close()


# -- failed batches --------------------------------------------------------------------------------


def test_a_failing_batch_is_rolled_back_leaving_earlier_data(store: SqliteStore) -> None:
    store.write([user("u", login_time=1), attr("u", "a", "kept")])
    bad = [user("u", login_time=2), attr("u", "a", "lost", T0 + 1), attr("v", "b", 1),
           user(None)]  # type: ignore[arg-type]  # NOT NULL user_id: the batch fails
    with pytest.raises(StoreError, match="NOT NULL"):
        store.write(bad)
    users, attributes = loaded(store)
    assert {u.login_time for u in users} == {1}
    assert attributes == {(PROJECT, "u", "a"): ("kept", T0)}
    store.write([attr("u", "a", "after", T0 + 2)])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): ("after", T0 + 2)}


def test_store_error_names_the_path(store: SqliteStore, path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        store.write([user(None)])  # type: ignore[arg-type]
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


@pytest.mark.parametrize("bad", [
    attr("u", "a", "\ud800"),            # a lone surrogate cannot be encoded as UTF-8
    user("u", login_time=2**70),         # too large for an SQLite integer
], ids=["surrogate", "overflow"])
def test_a_batch_failing_outside_sqlite_is_rolled_back_too(store: SqliteStore,
                                                           bad: StoreOp) -> None:
    store.write([attr("u", "a", "kept")])
    with pytest.raises(StoreError):
        store.write([attr("u", "a", "lost", T0 + 1), bad])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): ("kept", T0)}
    # The next batch is not poisoned by the failed one.
    store.write([attr("u", "a", "after", T0 + 2)])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): ("after", T0 + 2)}


def test_a_read_only_database_gives_store_error(store: SqliteStore, path: Path) -> None:
    store.write([attr("u", "a", "kept")])
    # The file turns read-only under the hub (a remount, a permission change).
    store._db.close()
    store._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                isolation_level=None)
    with pytest.raises(StoreError, match="readonly"):
        store.write([attr("u", "a", "lost", T0 + 1)])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): ("kept", T0)}


@LINUX
def test_opening_in_a_read_only_location_gives_store_error() -> None:
    # /proc refuses new files even to root.
    with pytest.raises(StoreError, match="/proc/self"):
        SqliteStore(Path("/proc/self/hub.sqlite3"))


def test_opening_where_a_file_blocks_the_directory_gives_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="file"):
        SqliteStore(tmp_path / "file" / "hub.sqlite3")


def test_opening_a_file_that_is_not_a_database_gives_store_error(tmp_path: Path) -> None:
    junk = tmp_path / "hub.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a database"):
        SqliteStore(junk)


def test_a_full_database_gives_store_error(store: SqliteStore) -> None:
    store.write([attr("u", "a", "kept")])
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="full"):
        store.write([attr(f"u{i}", "a", "x" * 1000, T0 + 1) for i in range(200)])
    assert loaded(store)[1] == {(PROJECT, "u", "a"): ("kept", T0)}


@LINUX
def test_a_full_disk_gives_store_error_and_recovers(path: Path) -> None:
    # A file-size limit makes every write past it fail with EFBIG, as a full disk would.
    code = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from monitor.hub.state import AttributeRow
        from monitor.hub.store.sqlite import SqliteStore, StoreError
        store = SqliteStore(Path({str(path)!r}))
        store.write([AttributeRow(1, "u", "a", "kept", 1)])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        failed = None
        for i in range(500):
            try:
                store.write([AttributeRow(1, f"u{{i}}", "a", "x" * 1000, 2)])
            except StoreError as exc:
                failed = i
                break
        assert failed is not None, "the limit was never hit"
        users, attributes = store.load()
        assert len(attributes) == failed + 1, (failed, len(attributes))
        resource.setrlimit(resource.RLIMIT_FSIZE,
                           (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        store.write([AttributeRow(1, "u", "a", "after", 3)])
        store.close()
        print("failed at", failed)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "failed at" in done.stdout
    reopened = SqliteStore(path)
    try:
        assert loaded(reopened)[1][(1, "u", "a")] == ("after", 3)
    finally:
        reopened.close()



# -- background checkpoints ---------------------------------------------------------------------


def test_background_checkpoints_copy_the_wal_into_the_database(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_S", 0.01)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_WAL_BYTES", 0)
    store = SqliteStore(path, background_checkpoints=True)
    try:
        # The writer never checkpoints by itself: that is the checkpointer's job.
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        before = path.stat().st_size
        store.write([attr(f"u{i}", "a", "x" * 1000) for i in range(300)])
        deadline = time.monotonic() + 5
        while path.stat().st_size < before + 300_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size >= before + 300_000
        store.write([attr("u0", "a", "after")])
    finally:
        store.close()
    assert not any(t.name == "store-checkpointer" for t in threading.enumerate())
    reopened = SqliteStore(path)
    try:
        values = loaded(reopened)[1]
        assert len(values) == 300 and values[(PROJECT, "u0", "a")] == ("after", T0)
    finally:
        reopened.close()


def test_without_background_checkpoints_no_thread_is_started(path: Path) -> None:
    store = SqliteStore(path)
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        assert not any(t.name == "store-checkpointer" for t in threading.enumerate())
    finally:
        store.close()


# -- the WAL stays bounded -------------------------------------------------------------------------


def test_the_wal_is_truncated_under_a_steady_stream_of_writes(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client writing 1 KiB values flat out grew the WAL without bound (890 MB): a
    PASSIVE checkpoint never finished while writes kept coming, and nothing truncated it."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY_S", 0.05)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_WAL_BYTES", 256 * 1024)
    monkeypatch.setattr(sqlite_store, "WAL_TRUNCATE_BYTES", 2 * 1024 * 1024)
    monkeypatch.setattr(sqlite_store, "JOURNAL_SIZE_LIMIT", 1024 * 1024)
    store = SqliteStore(path, background_checkpoints=True)
    wal = Path(str(path) + "-wal")
    largest = 0
    try:
        deadline = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < deadline:  # ~ 100 distinct 1 KiB values per batch
            store.write([attr(f"u{i % 500}", f"a{j}", "x" * 1000, T0 + i) for j in range(100)])
            i += 1
            largest = max(largest, wal.stat().st_size)
        time.sleep(0.3)
        store.write([attr("u0", "a0", "last")])
        assert i > 50  # the stream was long enough to need checkpoints
        final = wal.stat().st_size
    finally:
        store.close()
    assert largest < 32 * 1024 * 1024, largest
    assert final <= 4 * 1024 * 1024, final


def test_database_files_are_private(path: Path) -> None:
    store = SqliteStore(path)
    store.write([attr("u", "a", 1)])
    try:
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        for suffix in ("", "-wal", "-shm"):
            assert (Path(str(path) + suffix).stat().st_mode & 0o777) == 0o600, suffix
    finally:
        store.close()
