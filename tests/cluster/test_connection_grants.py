"""Nodes on one Redis: a change goes to the topics of the token of the connection that
made it, even when the user's latest login (on another node) grants other topics."""

from __future__ import annotations

from tests.hub.wire import login
from tests.hubproc import HubProcess


async def test_a_connection_publishes_through_its_own_tokens_grants(
        nodes: list[HubProcess]) -> None:
    watcher = await login(nodes[2], nodes[2].client_token("cg_watch",
                                                          subscribe=["cg_a", "cg_b"]))
    first = await login(nodes[0], nodes[0].client_token("cg_user",
                                                         attributes=[("st", "cg_a")]))
    second = await login(nodes[1], nodes[1].client_token("cg_user",
                                                         attributes=[("st", "cg_b")]))
    assert (await first.change("st", "from first"))["r"] == 0
    assert (await watcher.message())["topic"] == "cg_a"
    await watcher.quiet(0.3)
    assert (await second.change("st", "from second"))["r"] == 0
    assert (await watcher.message())["topic"] == "cg_b"
    await watcher.quiet(0.3)
    with nodes[0].rest() as rest:  # REST: the user's latest grants (the second login's)
        assert rest.put("/v1/users/cg_user/attributes",
                        json=[{"attribute": "st", "value": "rest"}]).status_code == 200
    assert (await watcher.message())["topic"] == "cg_b"
    await watcher.quiet(0.3)
    for wire in (watcher, first, second):
        await wire.close()
