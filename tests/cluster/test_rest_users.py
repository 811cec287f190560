"""Users made known by REST (``PUT /v1/users/{id}``) on several nodes."""

from __future__ import annotations

from tests.calls.callwire import uid
from tests.hub.wire import login
from tests.hubproc import HubProcess


async def test_a_user_made_known_on_one_node_is_offline_everywhere(
        nodes: list[HubProcess]) -> None:
    team, ana = uid("team"), uid("ana")
    watcher = await login(nodes[1], nodes[1].client_token(uid("sup"), subscribe=[team]))
    with nodes[0].rest() as rest:
        created = rest.put(f"/v1/users/{ana}", json={
            "displayName": "Ana Berg",
            "publish": [{"attribute": "onlineStatus", "topic": team}]})
    assert created.status_code == 201, created.text
    assert created.json()["loginTime"] is None
    message = (await watcher.message(team))["message"]
    assert (message["userId"], message["attribute"], message["newValue"]) == (
        ana, "onlineStatus", "offline")
    with nodes[2].rest() as rest:
        read = rest.get(f"/v1/users/{ana}").json()
    assert read["displayName"] == "Ana Berg" and read["loginTime"] is None
    assert {a["attribute"]: a.get("value") for a in read["attributes"]}["onlineStatus"] \
        == "offline"
    # Made known again (a new name): nothing more is published.
    with nodes[2].rest() as rest:
        again = rest.put(f"/v1/users/{ana}", json={"displayName": "Ana B."})
    assert again.status_code == 200, again.text
    await watcher.quiet(1.0)
    await watcher.close()


async def test_making_known_a_user_connected_on_another_node_changes_no_presence(
        nodes: list[HubProcess]) -> None:
    team, bo = uid("team"), uid("bo")
    watcher = await login(nodes[1], nodes[1].client_token(uid("sup"), subscribe=[team]))
    agent = await login(nodes[2], nodes[2].client_token(
        bo, attributes=[("onlineStatus", team)]))
    assert (await watcher.message(team))["message"]["newValue"] == "online"
    with nodes[0].rest() as rest:
        answer = rest.put(f"/v1/users/{bo}", json={"displayName": "Bo"})
    assert answer.status_code == 200, answer.text
    await watcher.quiet(1.0)
    with nodes[0].rest() as rest:
        read = rest.get(f"/v1/users/{bo}").json()
    assert {a["attribute"]: a.get("value") for a in read["attributes"]}["onlineStatus"] \
        == "online"
    await agent.close()
    await watcher.close()
