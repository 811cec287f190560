"""History and reports over REST, on a real hub (one node on SQLite, or a node on Redis):
the shapes of docs/protocol.md, paging, errors, projects kept apart, and kill -9."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import RedisServer, node_settings
from tests.conftest import require_program
from tests.hub.wire import login
from tests.hubproc import HubProcess

DAY = 86_400_000
HubMaker = Callable[..., HubProcess]


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubMaker]:
    """Hubs of one engine: a single node on SQLite, or nodes on one redis-server."""
    started: list[HubProcess] = []
    redis: RedisServer | None = None
    if request.param == "redis":
        redis = RedisServer(tmp_path / "redis",
                            require_program("redis-server", "redis-server")).start()

    def make_hub(**settings: Any) -> HubProcess:
        workdir = tmp_path / f"hub{len(started)}"
        workdir.mkdir()
        settings.setdefault("offline_grace_ms", 0)
        if redis is not None:
            extra = node_settings(redis, **settings)
        else:
            extra = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in settings.items())
        hub = HubProcess(workdir, extra_hub=extra)
        started.append(hub)
        return hub.start()

    try:
        yield make_hub
    finally:
        for hub in started:
            hub.kill()
        if redis is not None:
            redis.kill()


def now_ms() -> int:
    return int(time.time() * 1000)


def agent_token(hub: HubProcess, user: str) -> str:
    return hub.client_token(user, display_name=f"Agent {user}",
                            attributes=[("manual_status", "team"), ("team", "team")])


async def test_a_day_in_the_history_and_the_reports(make: HubMaker) -> None:
    hub = make()
    start = now_ms() - 1
    wire = await login(hub, agent_token(hub, "ann"))
    assert (await wire.change("team", "sales"))["r"] == 0
    assert (await wire.change("manual_status", "available"))["r"] == 0
    with hub.rest() as rest:
        for status in ("Ringing", "Answered"):
            answer = rest.put("/v1/calls/x1", json={"from": "+331", "to": "ann",
                                                     "status": status})
            assert answer.status_code == 200, answer.text
        time.sleep(0.05)
        assert rest.put("/v1/calls/x1", json={"status": "Ended"}).status_code == 200
        assert rest.put("/v1/calls/x2", json={"from": "+332", "to": "ann",
                                              "status": "Ringing"}).status_code == 200
        assert rest.put("/v1/calls/x2", json={"status": "Ended"}).status_code == 200
        assert (await wire.change("manual_status", "break"))["r"] == 0
        assert rest.put("/v1/users/ann/attributes",
                        json=[{"attribute": "mood", "value": 3}]).status_code == 200
        end = now_ms() + 1

        body = rest.get("/v1/users/ann/history", params={"from": start, "to": end}).json()
        assert body["userId"] == "ann" and "nextCursor" not in body
        events = body["events"]
        assert [(e["attribute"], e["value"]) for e in events] == [
            ("onlineStatus", "online"), ("team", "sales"), ("manual_status", "available"),
            ("call", "Ringing"), ("call", "Answered"), ("call", "Ended"),
            ("call", "Ringing"), ("call", "Ended"), ("manual_status", "break"),
            ("mood", 3)]
        assert events[0]["oldValue"] == "offline"
        assert events[8]["oldValue"] == "available"
        assert [e.get("callId") for e in events[3:8]] == ["x1", "x1", "x1", "x2", "x2"]
        stamps = [e["timestamp"] for e in events]
        assert stamps == sorted(stamps) and start <= stamps[0] and stamps[-1] < end

        only = rest.get("/v1/users/ann/history", params={
            "from": start, "to": end, "attribute": "manual_status"}).json()["events"]
        assert [e["value"] for e in only] == ["available", "break"]
        custom = rest.get("/v1/users/ann/history", params={
            "from": start, "to": end, "attribute": "mood"}).json()["events"]
        assert [e["value"] for e in custom] == [3]

        # Pages of three, joined: the same events.
        pages: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"from": start, "to": end, "limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = rest.get("/v1/users/ann/history", params=params).json()
            pages += page["events"]
            cursor = page.get("nextCursor")
            if cursor is None:
                break
        assert pages == events

        report = rest.get("/v1/reports/agents", params={
            "from": start, "to": end, "groupAttribute": "team"}).json()
        assert report["from"] == start and report["to"] == end and "clipped" not in report
        (ann,) = report["agents"]
        assert ann["userId"] == "ann" and ann["displayName"] == "Agent ann"
        assert ann["group"] == "sales"
        talk = stamps[5] - stamps[4]
        ring = (stamps[4] - stamps[3]) + (stamps[7] - stamps[6])
        assert ann["calls"] == {"handled": 1, "missed": 1, "ringMs": ring, "talkMs": talk}
        assert talk >= 50
        assert sum(ann["statusMs"].values()) == ann["onlineMs"] > 0
        assert ann["statusMs"]["available"] == stamps[8] - stamps[2]
        assert ann["occupancy"] == round(talk / ann["onlineMs"], 4)
        assert rest.get("/v1/reports/agents", params={
            "from": start, "to": end, "groupAttribute": "team", "group": "support"}
        ).json()["agents"] == []

        calls = rest.get("/v1/reports/calls", params={
            "from": start, "to": end, "interval": "1d", "slaSeconds": 20}).json()
        (day,) = calls["intervals"]
        assert day == {"start": start, "offered": 2, "answered": 1, "abandoned": 1,
                       "answeredWithinSla": 1, "avgSpeedOfAnswerMs": stamps[4] - stamps[3],
                       "avgHandleMs": talk}
    await wire.close()


async def test_bad_ranges_and_unknown_users_are_refused(make: HubMaker) -> None:
    hub = make()
    wire = await login(hub, agent_token(hub, "bob"))
    now = now_ms()
    with hub.rest() as rest:
        for path in ("/v1/users/bob/history", "/v1/reports/agents", "/v1/reports/calls"):
            for params in ({}, {"from": now}, {"from": now, "to": now},
                           {"from": now, "to": now - 1}, {"from": -1, "to": now},
                           {"from": "soon", "to": now}, {"from": 0, "to": 2**70}):
                answer = rest.get(path, params=params)
                assert answer.status_code == 400, (path, params, answer.text)
                assert answer.json()["r"] == 21, answer.text
        for params in ({"interval": "2h"}, {"interval": "15m", "slaSeconds": -1}):
            answer = rest.get("/v1/reports/calls", params={"from": now - 1000, "to": now,
                                                           **params})
            assert answer.status_code == 400 and answer.json()["r"] == 21
        answer = rest.get("/v1/users/bob/history",
                          params={"from": now - 1000, "to": now, "cursor": "nonsense"})
        assert answer.status_code == 400 and answer.json()["r"] == 21
        answer = rest.get("/v1/reports/agents", params={"from": 0, "to": now, "group": "x"})
        assert answer.status_code == 400
        answer = rest.get("/v1/users/nobody/history", params={"from": 0, "to": now})
        assert answer.status_code == 404 and answer.json()["r"] == 25
        # Older than the retention: clipped to it, and said so.
        body = rest.get("/v1/reports/agents", params={"from": 0, "to": now + 1000}).json()
        assert body["clipped"] is True and abs(body["from"] - (now - 35 * DAY)) < 60_000
        assert rest.get("/v1/reports/calls", params={
            "from": 0, "to": now + 1000, "interval": "1d"}).json()["clipped"] is True
        answer = rest.get("/v1/reports/agents", params={"from": 0, "to": 1000})
        assert answer.status_code == 400  # ends before anything is kept
    for path in ("/v1/users/bob/history", "/v1/reports/agents", "/v1/reports/calls"):
        answer = httpx.get(hub.api_url + path, params={"from": 0, "to": now})
        assert answer.status_code == 401
        # Another project's REST token sees nothing of this one.
        other = httpx.get(hub.api_url + path, params={"from": now - 1000, "to": now + 1000},
                          headers={"X-STRINGEE-AUTH": hub.rest_token(other_project=True)})
        if path.endswith("history"):
            assert other.status_code == 404
        else:
            assert other.status_code == 200
            assert other.json().get("agents", []) == []
            assert all(i["offered"] == 0 for i in other.json().get("intervals", []))
    await wire.close()


async def test_an_acknowledged_change_survives_kill_9(make: HubMaker) -> None:
    hub = make()
    start = now_ms() - 1
    wire = await login(hub, agent_token(hub, "cat"))
    assert (await wire.change("manual_status", "after kill"))["r"] == 0
    hub.kill()  # SIGKILL straight after the acknowledgement
    await wire.close()
    hub.start()
    with hub.rest() as rest:
        deadline = time.monotonic() + 10
        while True:
            events = rest.get("/v1/users/cat/history", params={
                "from": start, "to": now_ms() + 1}).json()["events"]
            values = [(e["attribute"], e["value"]) for e in events]
            # The node of many sees the user go offline once its dead lease is swept.
            if values[-1] == ("onlineStatus", "offline") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert values == [("onlineStatus", "online"), ("manual_status", "after kill"),
                          ("onlineStatus", "offline")], values
        (cat,) = rest.get("/v1/reports/agents", params={
            "from": start, "to": now_ms() + 1}).json()["agents"]
        assert sum(cat["statusMs"].values()) == cat["onlineMs"]
        assert cat["statusMs"]["after kill"] > 0


def test_the_routes_are_in_the_openapi_description(make: HubMaker) -> None:
    hub = make()
    paths = httpx.get(hub.api_url + "/openapi.json").json()["paths"]
    for path in ("/v1/users/{userId}/history", "/v1/reports/agents", "/v1/reports/calls"):
        assert "get" in paths[path], path


async def test_no_history_kept_with_a_retention_of_0(make: HubMaker) -> None:
    hub = make(history_retention_days=0)
    wire = await login(hub, agent_token(hub, "dee"))
    assert (await wire.change("manual_status", "unlogged"))["r"] == 0
    with hub.rest() as rest:
        for path in ("/v1/users/dee/history", "/v1/reports/agents", "/v1/reports/calls"):
            answer = rest.get(path, params={"from": now_ms() - 1000, "to": now_ms()})
            assert answer.status_code == 400 and "no history" in answer.json()["message"]
    await wire.close()
    if (hub.data_dir / "hub.sqlite3").exists():
        import sqlite3
        with sqlite3.connect(hub.data_dir / "hub.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
