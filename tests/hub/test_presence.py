"""Grants, project isolation and presence: several devices, the grace period, and a
supervisor's force-offline."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.hub.conftest import HubFactory
from tests.hub.wire import OTHER_DEVICE_AUTHEN, SUBSCRIBE_FROM_SERVER, login, user_of
from tests.hubproc import OTHER_PROJECT_ID, PROJECT_ID, HubProcess

CLOSE_KICKED = 4005


# -- grants ------------------------------------------------------------------------------


async def test_a_change_goes_only_to_the_topic_its_grant_names(quick_hub: HubProcess) -> None:
    both = await login(quick_hub, quick_hub.client_token(
        "gr_both", subscribe=["gr_status", "gr_skill", "gr_online"]))
    status_only = await login(quick_hub, quick_hub.client_token(
        "gr_status_only", subscribe=["gr_status"]))
    nothing = await login(quick_hub, quick_hub.client_token("gr_nothing",
                                                            subscribe=["gr_other"]))
    agent = await login(quick_hub, quick_hub.client_token(
        "gr_agent", attributes=[("manual_status", "gr_status"), ("skill", "gr_skill")]))

    assert (await agent.change("manual_status", "Available"))["r"] == 0
    assert (await agent.change("skill", "sales"))["r"] == 0
    assert (await agent.change("mood", "ok"))["r"] == 0  # no grant: stored, not published

    status = await both.message("gr_status")
    skill = await both.message("gr_skill")
    assert (status["message"]["attribute"], status["message"]["newValue"]) == \
        ("manual_status", "Available")
    assert (skill["message"]["attribute"], skill["message"]["newValue"]) == ("skill", "sales")
    only = await status_only.message()
    assert only["topic"] == "gr_status"
    for wire in (both, status_only, nothing):
        await wire.quiet(0.2)  # no onlineStatus (not granted), no mood, no skill
    with quick_hub.rest() as rest:
        values = user_of(rest.get("/v1/users/gr_agent").json())
    assert values["mood"] == "ok"
    for wire in (both, status_only, nothing, agent):
        await wire.close()


async def test_grants_follow_the_latest_authen(quick_hub: HubProcess) -> None:
    watcher = await login(quick_hub, quick_hub.client_token(
        "gr_w", subscribe=["gr_team1", "gr_team2"]))
    first = await login(quick_hub, quick_hub.client_token(
        "gr_mover", attributes=[("manual_status", "gr_team1")]))
    await first.close()
    second = await login(quick_hub, quick_hub.client_token(
        "gr_mover", attributes=[("manual_status", "gr_team2")]))
    with quick_hub.rest() as rest:
        put = rest.put("/v1/users/gr_mover/attributes",
                       json=[{"attribute": "manual_status", "value": "Away"}])
        assert put.status_code == 200, put.text
    message = await watcher.message()
    assert message["topic"] == "gr_team2"
    await watcher.quiet(0.2)
    # Snapshots follow the grants too: the value belongs to team2 only now.
    assert [v["userId"] for v in (await watcher.snapshot("gr_team2"))["values"]] == \
        ["gr_mover"]
    assert (await watcher.snapshot("gr_team1"))["values"] == []
    await second.close()
    await watcher.close()


async def test_projects_are_isolated(quick_hub: HubProcess) -> None:
    """The same userIds and topic names in the other project see nothing of the first."""
    topics = ["iso_online", "iso_status"]
    grants = [("onlineStatus", "iso_online"), ("manual_status", "iso_status")]
    watcher_other = await login(quick_hub, quick_hub.client_token(
        "iso_watcher", subscribe=topics, other_project=True))
    assert watcher_other.authen["projectId"] == OTHER_PROJECT_ID
    watcher = await login(quick_hub, quick_hub.client_token("iso_watcher", subscribe=topics))
    assert watcher.authen["projectId"] == PROJECT_ID
    # Two connections of "iso_watcher", one per project: not the same user.
    await watcher_other.quiet(0.1, services=(OTHER_DEVICE_AUTHEN,))

    agent = await login(quick_hub, quick_hub.client_token("iso_agent", attributes=grants))
    assert (await agent.change("manual_status", "Available"))["r"] == 0
    assert (await watcher.message("iso_online"))["message"]["projectId"] == PROJECT_ID
    assert (await watcher.message("iso_status"))["message"]["newValue"] == "Available"
    await watcher_other.quiet(0.3)
    other_snapshot = await watcher_other.snapshot("iso_status")
    assert other_snapshot["r"] == 0 and other_snapshot["values"] == []

    # The same agent id in the other project is someone else.
    agent_other = await login(quick_hub, quick_hub.client_token(
        "iso_agent", attributes=grants, other_project=True))
    online = await watcher_other.message("iso_online")
    assert online["message"]["projectId"] == OTHER_PROJECT_ID
    assert online["message"]["oldValue"] == "offline"
    assert (await agent_other.change("manual_status", "Available"))["r"] == 0
    other_status = await watcher_other.message("iso_status")
    assert other_status["message"]["oldValue"] is None  # not the first project's value
    await watcher.quiet(0.2)
    await agent.close()
    assert (await watcher.message("iso_online"))["message"]["newValue"] == "offline"
    await watcher_other.quiet(0.2)

    with quick_hub.rest() as rest:
        assert user_of(rest.get("/v1/users/iso_agent").json())["onlineStatus"] == "offline"
    other_rest_headers = {"X-STRINGEE-AUTH": quick_hub.rest_token(other_project=True)}
    with httpx.Client(base_url=quick_hub.api_url, headers=other_rest_headers) as rest:
        assert user_of(rest.get("/v1/users/iso_agent").json())["onlineStatus"] == "online"
        assert rest.get("/v1/users/gr_agent").status_code == 404  # only in the first
        listed = rest.get("/v1/users", params={"includeOffline": "true"}).json()
        assert {u["userId"] for u in listed["users"]} == {"iso_watcher", "iso_agent"}
    for wire in (watcher, watcher_other, agent_other):
        await wire.close()


# -- presence ----------------------------------------------------------------------------


async def test_two_devices_of_one_user(quick_hub: HubProcess) -> None:
    watcher = await login(quick_hub, quick_hub.client_token("md_w", subscribe=["md_online"]))
    token = quick_hub.client_token("md_agent", attributes=[("onlineStatus", "md_online")])
    phone = await login(quick_hub, token, deviceId="phone", browserId="app")
    assert phone.authen["clients"] == [{"clientId": "phone", "deviceId": "phone",
                                        "browserId": "app"}]
    online = await watcher.message("md_online")
    assert online["message"]["newValue"] == "online"

    desk = await login(quick_hub, token, browserId="chrome")
    desk_id = desk.authen["connectionId"]
    # Both connections listed; the new one has the connection id as its clientId.
    assert sorted(c["clientId"] for c in desk.authen["clients"]) == sorted(["phone", desk_id])
    notice = (await phone.until(OTHER_DEVICE_AUTHEN))["body"]
    assert notice["status"] == "connected"
    assert notice["clientId"] == desk_id
    assert notice["userId"] == "md_agent"
    assert notice["browserId"] == "chrome"
    await watcher.quiet(0.2)  # already online: nothing published
    await desk.quiet(0.1, services=(OTHER_DEVICE_AUTHEN,))  # not told about itself

    await phone.close()
    notice = (await desk.until(OTHER_DEVICE_AUTHEN))["body"]
    assert notice["status"] == "disconnected"
    assert notice["clientId"] == "phone"
    assert notice["userId"] == "md_agent"
    await watcher.quiet(0.3)  # one device left: still online
    with quick_hub.rest() as rest:
        body = rest.get("/v1/users/md_agent").json()
        assert user_of(body)["onlineStatus"] == "online"
        # loginTime is the latest successful AUTHEN's.
        assert body["loginTime"] == desk.authen["loginTime"] >= phone.authen["loginTime"]

    await desk.close()
    offline = await watcher.message("md_online")
    assert (offline["message"]["oldValue"], offline["message"]["newValue"]) == \
        ("online", "offline")
    assert offline["seq"] == online["seq"] + 1
    await watcher.close()


async def test_grace_period(make_hub: HubFactory) -> None:
    grace = 0.8
    hub = make_hub(offline_grace_ms=int(grace * 1000))
    watcher = await login(hub, hub.client_token("gp_w", subscribe=["gp_online"]))
    token = hub.client_token("gp_agent", attributes=[("onlineStatus", "gp_online")])
    agent = await login(hub, token)
    assert (await watcher.message("gp_online"))["message"]["newValue"] == "online"

    # Back within the grace period: nothing is published.
    await agent.close()
    await asyncio.sleep(grace / 3)
    agent = await login(hub, token)
    await watcher.quiet(grace * 1.5)
    with hub.rest() as rest:
        assert user_of(rest.get("/v1/users/gp_agent").json())["onlineStatus"] == "online"

    # Gone for longer: offline is published once the grace period has run out.
    await agent.close()
    gone = time.monotonic()
    offline = await watcher.message("gp_online", timeout=5)
    waited = time.monotonic() - gone
    assert offline["message"]["newValue"] == "offline"
    assert grace * 0.9 <= waited < grace + 1.0, waited
    await watcher.close()


async def test_grace_period_of_users_leaving_at_different_times(make_hub: HubFactory) -> None:
    """Each user goes offline one grace period after its own last connection closed."""
    grace = 0.8
    hub = make_hub(offline_grace_ms=int(grace * 1000))
    watcher = await login(hub, hub.client_token("gs_w", subscribe=["gs_online"]))
    agents = {}
    for name in ("gs_a", "gs_b"):
        agents[name] = await login(hub, hub.client_token(
            name, attributes=[("onlineStatus", "gs_online")]))
        assert (await watcher.message("gs_online"))["message"]["userId"] == name
    left = {}
    await agents["gs_a"].close()
    left["gs_a"] = time.monotonic()
    await asyncio.sleep(grace / 2)
    await agents["gs_b"].close()
    left["gs_b"] = time.monotonic()
    for _ in range(2):
        offline = await watcher.message("gs_online", timeout=5)
        name = offline["message"]["userId"]
        waited = time.monotonic() - left[name]
        assert offline["message"]["newValue"] == "offline"
        assert grace * 0.9 <= waited < grace + 0.3, (name, waited)
    await watcher.close()


async def test_rest_disconnect_closes_every_connection_and_goes_offline_at_once(
        module_hub: HubProcess) -> None:
    """module_hub keeps the default 3 s grace period: a force-offline skips it."""
    watcher = await login(module_hub, module_hub.client_token("kick_w",
                                                              subscribe=["kick_online"]))
    token = module_hub.client_token("kick_agent", attributes=[("onlineStatus", "kick_online")])
    first = await login(module_hub, token)
    second = await login(module_hub, token)
    bystander = await login(module_hub, module_hub.client_token("kick_bystander"))
    assert (await watcher.message("kick_online"))["message"]["newValue"] == "online"

    started = time.monotonic()
    with module_hub.rest() as rest:
        answer = rest.post("/v1/users/kick_agent/disconnect")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"r": 0, "message": "SUCCESS", "closed": 2}
        assert await first.closed() == CLOSE_KICKED
        assert await second.closed() == CLOSE_KICKED
        offline = await watcher.message("kick_online", timeout=2)
        assert offline["message"]["newValue"] == "offline"
        assert time.monotonic() - started < 1.5  # well inside the 3 s grace
        assert user_of(rest.get("/v1/users/kick_agent").json())["onlineStatus"] == "offline"
        # Nobody connected: nothing to close, still an answer.
        again = rest.post("/v1/users/kick_agent/disconnect")
        assert again.json()["closed"] == 0
        missing = rest.post("/v1/users/kick_nobody/disconnect")
        assert missing.status_code == 404 and missing.json()["r"] == 25
    assert (await bystander.change("note", "unaffected"))["r"] == 0
    # The user may come back at once.
    back = await login(module_hub, token)
    assert (await watcher.message("kick_online"))["message"]["newValue"] == "online"
    for wire in (back, bystander, watcher):
        await wire.close()


async def test_unsubscribed_messages_never_arrive(quick_hub: HubProcess) -> None:
    """A client without subscriptions receives no topic message whatever happens."""
    lonely = await login(quick_hub, quick_hub.client_token("lonely"))
    agent = await login(quick_hub, quick_hub.client_token(
        "lonely_agent", attributes=[("onlineStatus", "lonely_t"), ("x", "lonely_t")]))
    assert (await agent.change("x", 1))["r"] == 0
    await agent.close()
    await lonely.quiet(0.3, services=(SUBSCRIBE_FROM_SERVER, OTHER_DEVICE_AUTHEN))
    await lonely.close()
