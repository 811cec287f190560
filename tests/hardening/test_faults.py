"""Faults: kill -9 of the hub under load, and a full disk under the SQLite file.

A slow subscriber dropped at its bound while the rest carry on is tested in
tests/hub/test_slow_consumer.py; 10,000 clients reconnecting after a restart and the
10-minute churn soak are scripts in tests/soak/ (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hub.conftest import HubFactory
from tests.hub.wire import CHANGE_ATTRIBUTE, Closed, Wire, authen, login, open_wire, user_of
from tests.hubproc import HubProcess

CLIENTS = 8
WINDOW = 16


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def metric(hub: HubProcess, name: str) -> float:
    text = httpx.get(hub.api_url + "/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class Writer:
    """A client that keeps WINDOW changes of ``counter`` in flight, values 1, 2, 3...;
    remembers the highest value sent and the highest acknowledged."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.sent = 0
        self.acked = 0
        self.refused: list[Any] = []

    async def run(self) -> None:
        wire = self.wire
        try:
            while True:
                while self.sent - self.acked < WINDOW:
                    self.sent += 1
                    await wire.send(CHANGE_ATTRIBUTE, {"attribute": "counter",
                                                       "value": self.sent,
                                                       "requestId": self.sent})
                frame = await wire.until(CHANGE_ATTRIBUTE, timeout=10)
                if frame["body"]["r"] != 0:
                    self.refused.append(frame)
                    return
                # Replies come in order: this one acknowledges its value and every earlier.
                assert frame["body"]["requestId"] == self.acked + 1, frame
                self.acked = frame["body"]["requestId"]
        except (Closed, ConnectionError):
            return


async def test_kill_9_under_load_loses_no_acknowledged_change(make_hub: HubFactory) -> None:
    hub = make_hub(offline_grace_ms=0)
    users = [f"k9_{i}" for i in range(CLIENTS)]
    watcher = await login(hub, hub.client_token("k9_watch", subscribe=["k9_team"]))
    wires = [await login(hub, hub.client_token(u, attributes=[("counter", "k9_team"),
                                                              ("onlineStatus", "k9_team")]))
             for u in users]
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=10,
                                 headers={"X-STRINGEE-AUTH": hub.rest_token()}) as rest:
        # A call in progress when the hub dies.
        put = await rest.put("/v1/calls/k9-call", json={"from": users[0], "to": "+84900000000",
                                                        "status": "Answered"})
        assert put.status_code == 200, put.text
        rest_sent = rest_acked = 0

        async def rest_writer() -> None:
            nonlocal rest_sent, rest_acked
            with contextlib.suppress(httpx.HTTPError):
                while True:
                    rest_sent += 1
                    response = await rest.put(f"/v1/users/{users[1]}/attributes", json=[
                        {"attribute": "via_rest", "value": rest_sent}])
                    assert response.status_code == 200, response.text
                    rest_acked = rest_sent

        writers = [Writer(w) for w in wires]
        tasks = [asyncio.create_task(w.run()) for w in writers]
        tasks.append(asyncio.create_task(rest_writer()))
        await asyncio.sleep(2.0)
        assert all(w.acked > 50 for w in writers), [w.acked for w in writers]
        await asyncio.to_thread(hub.kill)  # SIGKILL: nothing flushed, nobody told
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    assert not [w.refused for w in writers if w.refused]
    assert rest_acked > 0
    hub.start()
    db = hub.data_dir / "hub.sqlite3"
    assert integrity(db) == "ok"
    with hub.rest() as rest:
        for user, writer in zip(users, writers, strict=True):
            stored = user_of(rest.get(f"/v1/users/{user}").json())
            # Every acknowledged change is there; at most the unacknowledged ones after it.
            assert writer.acked <= stored["counter"] <= writer.sent, (user, stored, writer.acked,
                                                                      writer.sent)
            assert stored["onlineStatus"] == "offline"
        via_rest = user_of(rest.get(f"/v1/users/{users[1]}").json())["via_rest"]
        assert rest_acked <= via_rest <= rest_sent
        # Nobody is online after the crash, and the call that was in progress ended.
        assert rest.get("/v1/users").json()["count"] == 0
        assert rest.get("/v1/calls").json()["count"] == 0
        assert user_of(rest.get(f"/v1/users/{users[0]}").json())["call"] == "Ended"
    # Presence after the restart: those who come back are online, the others are not.
    back = [await login(hub, hub.client_token(u, attributes=[("counter", "k9_team")]))
            for u in users[:3]]
    with hub.rest() as rest:
        online = {u["userId"] for u in rest.get("/v1/users").json()["users"]}
    assert online == set(users[:3])
    watcher2 = await login(hub, hub.client_token("k9_watch", subscribe=["k9_team"]))
    snapshot = await watcher2.snapshot("k9_team")
    counters = {v["userId"]: v["value"] for v in snapshot["values"]
                if v["attribute"] == "counter"}
    with hub.rest() as rest:
        for user in users:
            assert counters[user] == user_of(rest.get(f"/v1/users/{user}").json())["counter"]
    for wire in (*back, watcher2):
        await wire.close()
    with contextlib.suppress(Exception):
        await watcher.close()


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs where the hub keeps its database (root can mount; others skip)."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


async def test_disk_full_is_a_clear_error_and_corrupts_nothing(tiny_disk: Path,
                                                               tmp_path: Path) -> None:
    hub = HubProcess(tmp_path, extra_hub="offline_grace_ms = 0")
    assert hub.data_dir == tiny_disk
    hub.start()
    try:
        watcher = await login(hub, hub.client_token("df_watch", subscribe=["df_team"]))
        agent = await login(hub, hub.client_token("df_agent", attributes=[("note", "df_team")]))
        assert (await agent.change("note", "before"))["r"] == 0
        assert (await watcher.message("df_team"))["message"]["newValue"] == "before"
        filler = await asyncio.to_thread(fill, tiny_disk)

        # Writes are refused with r = 29 (HTTP 500), said once in the log; nothing published.
        reply = await agent.change("note", "x" * 1000)
        assert reply["r"] == 29, reply
        assert reply["message"] == "change could not be stored"
        with hub.rest() as rest:
            put = rest.put("/v1/users/df_agent/attributes",
                           json=[{"attribute": "note", "value": "y" * 1000}])
            assert put.status_code == 500 and put.json()["r"] == 29, put.text
            # Reads carry on, and show the last durable value.
            assert user_of(rest.get("/v1/users/df_agent").json())["note"] == "before"
            health = rest.get("/healthz").json()
            assert health["status"] == "ok" and health["storeFailures"] >= 2
        assert metric(hub, "monitor_store_failures_total") >= 2
        log = hub.log()
        assert "event=store_write_failed" in log
        assert re.search(r"database or disk is full|disk I/O error", log), log[-2000:]
        # A login must store the user's grants: refused with r = 29, then closed.
        newcomer = await open_wire(hub)
        reply = await authen(newcomer, hub.client_token("df_new"))
        assert reply["r"] == 29 and reply["message"] == "could not store the login", reply
        assert await newcomer.closed() == 1001
        snapshot = await watcher.snapshot("df_team")
        assert [v["value"] for v in snapshot["values"]] == ["before"]
        await watcher.quiet(0.3)
        assert (await watcher.request(1, {}))["r"] == 0

        # Space comes back: so do writes, without a restart.
        filler.unlink()
        assert (await agent.change("note", "after"))["r"] == 0
        assert (await watcher.message("df_team"))["message"]["newValue"] == "after"
        await agent.close()
        await watcher.close()
        assert await asyncio.to_thread(hub.stop) == 0
        assert integrity(tiny_disk / "hub.sqlite3") == "ok"
        hub.start()
        with hub.rest() as rest:
            assert user_of(rest.get("/v1/users/df_agent").json())["note"] == "after"
    finally:
        hub.kill()


async def test_kill_9_while_the_disk_is_full(tiny_disk: Path, tmp_path: Path) -> None:
    """A crash on a full disk: after it, what was acknowledged is there and the database
    is sound."""
    hub = HubProcess(tmp_path, extra_hub="offline_grace_ms = 0").start()
    try:
        agent = await login(hub, hub.client_token("dk_agent"))
        for i in range(20):
            assert (await agent.change(f"a{i}", "v" * 500))["r"] == 0
        filler = await asyncio.to_thread(fill, tiny_disk)
        refused = 0
        for i in range(20):
            refused += (await agent.change(f"b{i}", "w" * 500))["r"] == 29
        assert refused == 20
        hub.kill()
        filler.unlink()
        assert integrity(tiny_disk / "hub.sqlite3") == "ok"
        hub.start()
        with hub.rest() as rest:
            values = user_of(rest.get("/v1/users/dk_agent").json())
        assert all(values[f"a{i}"] == "v" * 500 for i in range(20))
        assert not any(f"b{i}" in values for i in range(20))
    finally:
        hub.kill()
        os.sync()


async def test_restart_with_clients_reconnecting_with_jitter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The soak of tests/soak/soak_restart.py at CI size: 300 clients through a network
    blip (every one resumes, no gap) and a kill -9 (every one resyncs by snapshot and
    finds itself online), then half leave: no ghost online, nobody missing."""
    from tests.soak.soak_restart import run

    monkeypatch.setenv("MONITOR_LOG_LEVEL", "info")
    results = await run(300, jitter=2.0, workdir=tmp_path, log=lambda *_: None)
    assert results["blip_resumed"] == 300 and results["blip_gaps"] == 0
    assert results["restart_resynced"] >= 301  # every client and the probe's, by snapshot
    assert results["ghosts"] == 0 and results["missing"] == 0
    assert results["hub_errors"] == 0
