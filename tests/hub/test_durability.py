"""Durability: an acknowledged change survives ``kill -9``; a clean stop closes every
connection with a close frame; after any restart everyone is offline."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.hub.conftest import HubFactory
from tests.hub.wire import CHANGE_ATTRIBUTE, Wire, login, user_of

CLOSE_GOING_AWAY = 1001


async def _pipelined_changes(wire: Wire, changes: list[tuple[str, Any]]) -> list[int]:
    """Send every change at once, then read every reply; the r of each, in order."""
    first = wire.next_request + 1
    for attribute, value in changes:
        await wire.send(CHANGE_ATTRIBUTE, {"attribute": attribute, "value": value,
                                           "requestId": wire.request_id()})
    results = []
    for rid in range(first, wire.next_request + 1):
        frame = await wire.until(lambda f, rid=rid: f["service"] == CHANGE_ATTRIBUTE
                                 and f["body"].get("requestId") == rid)
        results.append(frame["body"]["r"])
    return results


async def test_acknowledged_changes_survive_kill_9(make_hub: HubFactory) -> None:
    hub = make_hub(offline_grace_ms=0)
    users = [f"dur_{i}" for i in range(4)]
    grants = [("manual_status", "dur_team"), ("onlineStatus", "dur_online")]
    wires = [await login(hub, hub.client_token(u, attributes=grants, display_name=u.upper()))
             for u in users]
    expected: dict[str, dict[str, Any]] = {u: {} for u in users}
    batches = []
    for i, user in enumerate(users):
        changes: list[tuple[str, Any]] = []
        for n in range(60):
            attribute = ("manual_status", "skill", f"counter_{n % 3}", "note")[n % 4]
            value: Any = (f"{user}-{n}", n, n * 1.5, n % 2 == 0, None)[(n + i) % 5]
            changes.append((attribute, value))
            expected[user][attribute] = value
        batches.append(changes)
    # REST changes too, while the clients flood.
    with hub.rest() as rest:
        results = await asyncio.gather(*(_pipelined_changes(w, b)
                                         for w, b in zip(wires, batches, strict=True)))
        assert all(r == 0 for rs in results for r in rs)
        put = rest.put("/v1/users/dur_0/attributes", json=[
            {"attribute": "via_rest", "value": "yes"}, {"attribute": "skill", "value": "x"}])
        assert put.status_code == 200, put.text
        expected["dur_0"]["via_rest"] = "yes"
        expected["dur_0"]["skill"] = "x"
    # Crash right after the last acknowledgement: no close, no flush, no goodbye.
    hub.kill()
    for w in wires:
        await w.closed()
    hub.start()
    with hub.rest() as rest:
        for user in users:
            body = rest.get(f"/v1/users/{user}").json()
            values = user_of(body)
            for attribute, value in expected[user].items():
                assert values[attribute] == value, (user, attribute)
            assert values["onlineStatus"] == "offline"
            assert body["displayName"] == user.upper()
            assert isinstance(body["loginTime"], int)
        assert rest.get("/v1/users").json()["count"] == 0
        assert rest.get("/v1/users", params={"includeOffline": "true"}).json()["count"] == 4


async def test_grants_survive_a_restart(make_hub: HubFactory) -> None:
    """REST changes after a restart publish through the user's last grants."""
    hub = make_hub(offline_grace_ms=0)
    agent = await login(hub, hub.client_token("dg_agent",
                                              attributes=[("manual_status", "dg_team")]))
    assert (await agent.change("manual_status", "Available"))["r"] == 0
    hub.kill()
    await agent.closed()
    hub.start()
    watcher = await login(hub, hub.client_token("dg_w", subscribe=["dg_team"]))
    with hub.rest() as rest:
        put = rest.put("/v1/users/dg_agent/attributes",
                       json=[{"attribute": "manual_status", "value": "Break"}])
        assert put.status_code == 200, put.text
    message = await watcher.message("dg_team")
    assert (message["message"]["oldValue"], message["message"]["newValue"]) == \
        ("Available", "Break")
    assert message["seq"] == watcher.authen["topics"]["dg_team"]["seq"] + 1
    # The snapshot after the restart has the stored value of the offline agent.
    snapshot = await watcher.snapshot("dg_team")
    assert [(v["userId"], v["value"]) for v in snapshot["values"]] == [("dg_agent", "Break")]
    await watcher.close()


async def test_sigterm_closes_connections_with_1001_and_keeps_everything(
        make_hub: HubFactory) -> None:
    hub = make_hub(offline_grace_ms=0)
    watcher = await login(hub, hub.client_token("st_w", subscribe=["st_online"]))
    agent = await login(hub, hub.client_token("st_agent",
                                              attributes=[("onlineStatus", "st_online")]))
    assert (await agent.change("manual_status", "Available"))["r"] == 0
    assert (await watcher.message("st_online"))["message"]["newValue"] == "online"
    code = await asyncio.to_thread(hub.stop)
    assert code == 0
    assert await watcher.closed() == CLOSE_GOING_AWAY
    assert await agent.closed() == CLOSE_GOING_AWAY
    assert agent.ws.close_reason
    log = hub.log()
    assert "event=stopped" in log
    hub.start()
    with hub.rest() as rest:
        values = user_of(rest.get("/v1/users/st_agent").json())
        assert values["manual_status"] == "Available"
        assert values["onlineStatus"] == "offline"
        assert rest.get("/v1/users").json() == {"count": 0, "pageSize": 100, "users": []}

