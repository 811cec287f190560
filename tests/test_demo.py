"""`monitor demo --headless`: a real run, watched from outside through the hub itself."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict

import httpx
import pytest
from websockets.asyncio.client import connect

from monitor.demo.scenario import TEAMS, team_topic

AGENTS = 8


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Lines of the demo's stdout up to the one holding ``marker``."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"demo never printed {marker!r}; got:\n{''.join(seen)}")


async def _watch(ws_url: str, token: str, seconds: float) -> list[dict]:
    """Everything the supervisor's token receives for ``seconds``."""
    messages: list[dict] = []
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"service": 2, "body": {"accesstoken": token, "requestId": 1}}))
        reply = json.loads(await ws.recv())
        assert reply["body"]["r"] == 0, reply
        for i, topic in enumerate([*(team_topic(t) for t in TEAMS), "ALL_CALL_STATUS"]):
            await ws.send(json.dumps({"service": 1001,
                                      "body": {"topic": topic, "requestId": 10 + i}}))
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), remaining))
            except TimeoutError:
                break
            messages.append(frame)
    return messages


def test_headless_demo_runs_agents_statuses_and_calls_then_leaves_nothing() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--headless", "--agents", str(AGENTS),
         "--speed", "40", "--seed", "7", "--duration", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    try:
        banner = _read_until(proc, "Ctrl-C stops the demo", 30)
        ws_url = re.search(r"WebSocket\s+(ws://\S+)", banner).group(1)  # type: ignore[union-attr]
        api_url = re.search(r"REST API\s+(http://\S+)", banner).group(1)  # type: ignore[union-attr]
        supervisor = re.search(r"MONITOR_TOKEN=(\S+) monitor tui", banner).group(1)  # type: ignore[union-attr]
        rest_token = banner.split("REST token:")[1].split()[0]

        frames = asyncio.run(_watch(ws_url, supervisor, 25))

        online: set[str] = set()
        statuses: dict[str, set[str]] = defaultdict(set)
        call_statuses: set[str] = set()
        for frame in frames:
            body = frame.get("body", {})
            if frame.get("service") == 1001:
                for value in body.get("values", []):
                    if value["attribute"] == "onlineStatus" and value["value"] == "online":
                        online.add(value["userId"])
            if frame.get("service") != 102:
                continue
            message = body["message"]
            if message["attribute"] == "onlineStatus" and message["newValue"] == "online":
                online.add(message["userId"])
            elif message["attribute"] == "manual_status":
                statuses[message["userId"]].add(message["newValue"])
            elif message["attribute"] == "call":
                assert body["topic"] == "ALL_CALL_STATUS"
                assert {"callId", "from", "to", "callEnded"} <= set(message)
                call_statuses.add(message["newValue"])
        agents = {f"agent_{i:03d}" for i in range(1, AGENTS + 1)}
        assert agents <= online, f"never seen online: {sorted(agents - online)}"
        assert sum(len(s) for s in statuses.values()) >= AGENTS, statuses
        assert any(len(s) > 1 for s in statuses.values()), "no agent changed status twice"
        assert {"Calling", "Ringing", "Answered", "Ended"} <= call_statuses, call_statuses

        # The hub agrees through REST.
        users = httpx.get(f"{api_url}/v1/users", params={"limit": 100},
                          headers={"X-STRINGEE-AUTH": rest_token}, timeout=10).json()
        assert agents <= {u["userId"] for u in users["users"]}

        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "demo summary:" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Nothing is left behind: the process group is gone and the ports are closed.
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api_url}/healthz", timeout=2)


def test_most_agents_start_the_demo_mid_task_and_only_those_at_work() -> None:
    import random

    from monitor.demo.scenario import OPENINGS, Timing, make_agents

    agents = make_agents(400, random.Random(5))
    at_work = [a for a in agents if a.shift_start_s == 0]
    assert all(a.opening == "available" for a in agents if a.shift_start_s > 0)
    busy = [a for a in at_work if a.opening in ("talking", "ringing", "after_call")]
    assert len(busy) > 0.6 * len(at_work)
    assert {a.opening for a in at_work} == {name for name, _ in OPENINGS}
    assert all(a.opening_s > 0 for a in at_work if a.opening != "available")
    rings = [Timing(random.Random(i)).ring() for i in range(300)]
    assert sum(r > 20 for r in rings) > 30  # some customers wait: alerts fire early


async def _floor(api_url: str, rest_token: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=api_url,
                                 headers={"X-STRINGEE-AUTH": rest_token}) as http:
        reply = await http.get("/v1/users", params={"includeOffline": "true", "limit": 100})
    return [{a["attribute"]: a.get("value") for a in user["attributes"]}
            for user in reply.json()["users"]]


async def test_the_floor_is_busy_within_15_s_at_speed_1_and_everyone_is_known() -> None:
    from monitor.demo.run import Demo, DemoOptions

    demo = Demo(DemoOptions(agents=40, speed=1.0, seed=11, headless=True))
    started = time.monotonic()
    await demo.start()
    try:
        users = await _floor(demo.api_url, demo.rest_token())
        # the roster: agents whose shift starts later are known (offline) already
        assert len(users) == 40 and all(u.get("team") in TEAMS for u in users)
        assert any(u.get("onlineStatus") == "offline" for u in users)
        while True:
            users = await _floor(demo.api_url, demo.rest_token())
            online = [u for u in users if u.get("onlineStatus") == "online"]
            busy = [u for u in online if u.get("call") in ("Calling", "Ringing", "Answered")
                    or u.get("manual_status") == "after_call_work"]
            if online and 2 * len(busy) >= len(online):
                break
            assert time.monotonic() - started < 15, (len(busy), len(online))
            await asyncio.sleep(0.5)
    finally:
        await demo.stop()
