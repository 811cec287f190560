"""Resume (AUTHEN with positions) and TOPIC_SNAPSHOT: no gap, no duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hub.conftest import HubFactory
from tests.hub.wire import (
    AUTHEN,
    SUBSCRIBE_FROM_SERVER,
    Wire,
    authen,
    hub_with,
    login,
    open_wire,
)
from tests.hubproc import HubProcess

HISTORY = 5


@pytest.fixture(scope="module")
def small_history_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = hub_with(tmp_path_factory.mktemp("hub"), history_size=HISTORY,
                       offline_grace_ms=0)
    try:
        yield process
    finally:
        process.kill()


async def _agent(hub: HubProcess, name: str, topic: str) -> Wire:
    return await login(hub, hub.client_token(name, attributes=[("manual_status", topic)]))


async def _position(hub: HubProcess, user: str, topic: str) -> dict[str, Any]:
    wire = await login(hub, hub.client_token(user, subscribe=[topic]))
    position = wire.authen["topics"][topic]
    await wire.close()
    return position


async def test_resume_sends_the_missed_messages_first(small_history_hub: HubProcess) -> None:
    hub, topic = small_history_hub, "rs_gap"
    agent = await _agent(hub, "rs_gap_agent", topic)
    position = await _position(hub, "rs_gap_w", topic)
    for value in ("a", "b", "c"):
        assert (await agent.change("manual_status", value))["r"] == 0

    # Resume while the agent keeps changing: the reply, then the missed messages in
    # order, then live ones, with seq contiguous from the position onwards.
    wire = await open_wire(hub)
    rid = wire.request_id()
    await wire.send(AUTHEN, {"accesstoken": hub.client_token("rs_gap_w", subscribe=[topic]),
                             "requestId": rid, "resume": {topic: position}})
    live = asyncio.gather(*(agent.change("manual_status", v) for v in ("d",)))
    reply = await wire.recv()
    assert reply["service"] == AUTHEN and reply["body"]["requestId"] == rid
    assert reply["body"]["r"] == 0
    assert reply["body"]["recovered"] == {topic: True}
    assert all(r["r"] == 0 for r in await live)
    frames = [await wire.recv() for _ in range(4)]
    assert all(f["service"] == SUBSCRIBE_FROM_SERVER for f in frames), frames
    assert [f["body"]["seq"] for f in frames] == [position["seq"] + i for i in range(1, 5)]
    assert [f["body"]["message"]["newValue"] for f in frames] == ["a", "b", "c", "d"]
    assert frames[0]["body"]["message"]["oldValue"] is None
    await wire.quiet(0.2)  # no duplicate
    await wire.close()
    await agent.close()


async def test_resume_without_a_gap(small_history_hub: HubProcess) -> None:
    hub, topic = small_history_hub, "rs_nogap"
    agent = await _agent(hub, "rs_nogap_agent", topic)
    assert (await agent.change("manual_status", "a"))["r"] == 0
    position = await _position(hub, "rs_nogap_w", topic)
    assert position["seq"] == 1
    wire = await login(hub, hub.client_token("rs_nogap_w", subscribe=[topic]),
                       resume={topic: position})
    assert wire.authen["recovered"] == {topic: True}
    assert wire.authen["topics"][topic] == position
    await wire.quiet(0.2)
    assert (await agent.change("manual_status", "b"))["r"] == 0
    assert (await wire.message(topic))["seq"] == position["seq"] + 1
    await wire.close()
    await agent.close()


async def test_resume_from_before_the_history_is_not_recovered(
        small_history_hub: HubProcess) -> None:
    hub, topic = small_history_hub, "rs_old"
    agent = await _agent(hub, "rs_old_agent", topic)
    position = await _position(hub, "rs_old_w", topic)
    for i in range(HISTORY + 2):
        assert (await agent.change("manual_status", f"v{i}"))["r"] == 0
    wire = await login(hub, hub.client_token("rs_old_w", subscribe=[topic]),
                       resume={topic: position})
    assert wire.authen["recovered"] == {topic: False}
    assert wire.authen["topics"][topic]["seq"] == position["seq"] + HISTORY + 2
    await wire.quiet(0.2)  # nothing replayed: the client re-reads with a snapshot
    snapshot = await wire.snapshot(topic)
    assert snapshot["seq"] == wire.authen["topics"][topic]["seq"]
    assert [v["value"] for v in snapshot["values"]] == [f"v{HISTORY + 1}"]
    # Exactly as far back as the history reaches still recovers.
    edge = {"epoch": position["epoch"], "seq": position["seq"] + 2}
    again = await login(hub, hub.client_token("rs_old_w", subscribe=[topic]),
                        resume={topic: edge})
    assert again.authen["recovered"] == {topic: True}
    replayed = [await again.recv() for _ in range(HISTORY)]
    assert [f["body"]["seq"] for f in replayed] == list(range(edge["seq"] + 1,
                                                              edge["seq"] + HISTORY + 1))
    for w in (wire, again, agent):
        await w.close()


@pytest.mark.parametrize("position", [
    {"epoch": "not-the-epoch", "seq": 0},
    {"epoch": None, "seq": 0},
    "garbage",
    {"seq": 0},
])
async def test_resume_with_a_wrong_position_is_not_recovered(
        small_history_hub: HubProcess, position: Any) -> None:
    hub, topic = small_history_hub, "rs_wrong"
    wire = await login(hub, hub.client_token("rs_wrong_w", subscribe=[topic]),
                       resume={topic: position})
    assert wire.authen["recovered"] == {topic: False}
    await wire.close()


async def test_resume_from_the_future_is_not_recovered(small_history_hub: HubProcess) -> None:
    hub, topic = small_history_hub, "rs_future"
    position = await _position(hub, "rs_future_w", topic)
    ahead = {"epoch": position["epoch"], "seq": position["seq"] + 10}
    wire = await login(hub, hub.client_token("rs_future_w", subscribe=[topic]),
                       resume={topic: ahead})
    assert wire.authen["recovered"] == {topic: False}
    await wire.close()


async def test_resume_never_reveals_a_topic_not_granted(small_history_hub: HubProcess) -> None:
    hub, topic = small_history_hub, "rs_secret"
    agent = await _agent(hub, "rs_secret_agent", topic)
    position = await _position(hub, "rs_secret_insider", topic)
    assert (await agent.change("manual_status", "secret"))["r"] == 0
    outsider = await open_wire(hub)
    reply = await authen(outsider, hub.client_token("rs_outsider", subscribe=["rs_public"]),
                         resume={topic: position})
    assert reply["r"] == 0
    assert reply.get("recovered", {}).get(topic) is not True
    await outsider.quiet(0.2)
    await outsider.close()
    await agent.close()


async def test_resume_after_a_restart_is_not_recovered(make_hub: HubFactory) -> None:
    hub = make_hub(offline_grace_ms=0)
    topic = "rs_restart"
    agent = await _agent(hub, "rs_restart_agent", topic)
    assert (await agent.change("manual_status", "before"))["r"] == 0
    await agent.close()
    position = await _position(hub, "rs_restart_w", topic)
    hub.restart()
    wire = await login(hub, hub.client_token("rs_restart_w", subscribe=[topic]),
                       resume={topic: position})
    assert wire.authen["recovered"] == {topic: False}
    assert wire.authen["topics"][topic]["epoch"] != position["epoch"]
    snapshot = await wire.snapshot(topic)
    assert [(v["userId"], v["value"]) for v in snapshot["values"]] == \
        [("rs_restart_agent", "before")]
    await wire.close()


# -- snapshots ---------------------------------------------------------------------------


async def test_snapshot_lists_current_values_offline_users_included(
        quick_hub: HubProcess) -> None:
    topic = "sn_team"
    grants = [("manual_status", topic), ("onlineStatus", topic)]
    gone = await login(quick_hub, quick_hub.client_token("sn_gone", attributes=grants,
                                                         display_name="Gone Agent"))
    assert (await gone.change("manual_status", "Lunch"))["r"] == 0
    await gone.close()
    here = await login(quick_hub, quick_hub.client_token("sn_here", attributes=grants))
    assert (await here.change("manual_status", "Available"))["r"] == 0
    watcher = await login(quick_hub, quick_hub.client_token("sn_w", subscribe=[topic]))
    await asyncio.sleep(0.1)  # sn_gone's offline is published (grace 0)
    snapshot = await watcher.snapshot(topic)
    assert snapshot["r"] == 0
    assert snapshot["topic"] == topic
    assert snapshot["epoch"] == watcher.authen["topics"][topic]["epoch"]
    assert snapshot["seq"] >= watcher.authen["topics"][topic]["seq"]
    values = {(v["userId"], v["attribute"]): v for v in snapshot["values"]}
    assert {k: v["value"] for k, v in values.items()} == {
        ("sn_gone", "manual_status"): "Lunch", ("sn_gone", "onlineStatus"): "offline",
        ("sn_here", "manual_status"): "Available", ("sn_here", "onlineStatus"): "online",
    }
    assert values[("sn_gone", "manual_status")]["displayName"] == "Gone Agent"
    assert all(isinstance(v["timestamp"], int) for v in values.values())
    for w in (watcher, here):
        await w.close()


async def test_snapshot_then_live_messages_have_no_gap_and_no_duplicate(
        quick_hub: HubProcess) -> None:
    topic = "sn_flow"
    agents = [await _agent(quick_hub, f"sn_flow_{i}", topic) for i in range(3)]
    watcher = await login(quick_hub, quick_hub.client_token("sn_flow_w", subscribe=[topic]))

    async def churn(agent: Wire, tag: str) -> None:
        for i in range(40):
            assert (await agent.change("manual_status", f"{tag}-{i}"))["r"] == 0

    # Changes flow while the watcher takes its snapshot.
    busy = asyncio.gather(*(churn(a, str(i)) for i, a in enumerate(agents)))
    await asyncio.sleep(0.05)
    snapshot = await watcher.snapshot(topic)
    await busy
    state = {v["userId"]: v["value"] for v in snapshot["values"]}
    last_seq = snapshot["seq"]
    # Everything after the snapshot: seq S+1, S+2, ... until the last change.
    with quick_hub.rest() as rest:
        final = {f"sn_flow_{i}": rest.get(f"/v1/users/sn_flow_{i}").json() for i in range(3)}
    expected = {u: next(a["value"] for a in body["attributes"]
                        if a["attribute"] == "manual_status") for u, body in final.items()}
    # What came before the reply is in the snapshot already; nothing after it is.
    before, watcher.backlog = watcher.backlog, []
    assert all(f["body"]["seq"] <= snapshot["seq"] for f in before), before
    while state != expected:
        body = (await watcher.recv(timeout=3))["body"]
        assert body["seq"] == last_seq + 1, (body["seq"], last_seq)
        last_seq = body["seq"]
        state[body["message"]["userId"]] = body["message"]["newValue"]
    assert last_seq == 3 * 40 + watcher.authen["topics"][topic]["seq"]
    await watcher.quiet(0.2)
    for w in (watcher, *agents):
        await w.close()
