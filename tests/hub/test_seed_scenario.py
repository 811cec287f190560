"""The seed scenario of the spec, end to end over real sockets.

A supervisor (A) subscribes to a team's topics; an agent (B) changes ``manual_status``;
A receives the message with every field; B's presence reaches A; the REST API reads and
changes B and its changes reach A too.
"""

from __future__ import annotations

import time

import jwt

from tests.hub.wire import OTHER_DEVICE_AUTHEN, authen, open_wire, session, user_of
from tests.hubproc import KEY_SECRET, KEY_SID, PROJECT_ID, HubProcess

ONLINE_TOPIC = "online_status_GRDHG0HI"
STATUS_TOPIC = "manual_status_GRDHG0HI"
CALL_TOPIC = "call_GRDHG0HI"
SUPERVISOR_SUBSCRIBE = [ONLINE_TOPIC, STATUS_TOPIC, "ALL_CALL_STATUS"]
AGENT_GRANTS = [("manual_status", STATUS_TOPIC), ("onlineStatus", ONLINE_TOPIC),
                ("call", CALL_TOPIC)]


def now_ms() -> int:
    return int(time.time() * 1000)


def test_tokens_are_shaped_like_the_spec(quick_hub: HubProcess) -> None:
    token = quick_hub.client_token("seed_agent", attributes=AGENT_GRANTS)
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "alg": "HS256",
                                                "cty": "stringee-api;v=1"}
    claims = jwt.decode(token, KEY_SECRET, algorithms=["HS256"])
    assert claims["iss"] == KEY_SID
    assert claims["jti"].startswith(KEY_SID + "-")
    assert claims["userId"] == "seed_agent"
    assert claims["attributes"] == [{"attribute": a, "topic": t} for a, t in AGENT_GRANTS]
    sup = jwt.decode(quick_hub.client_token("seed_sup", subscribe=SUPERVISOR_SUBSCRIBE),
                     KEY_SECRET, algorithms=["HS256"])
    assert sup["subscribe"] == ",".join(SUPERVISOR_SUBSCRIBE)
    rest = jwt.decode(quick_hub.rest_token(), KEY_SECRET, algorithms=["HS256"])
    assert rest["rest_api"] is True and "userId" not in rest


async def test_seed_scenario(quick_hub: HubProcess) -> None:
    sup_token = quick_hub.client_token("supervisor_1", subscribe=SUPERVISOR_SUBSCRIBE,
                                       display_name="Sup One")
    agent_token = quick_hub.client_token("agent_1", attributes=AGENT_GRANTS,
                                         display_name="Agent One")
    before = now_ms()
    async with session(quick_hub, sup_token, deviceId="sup-device",
                       browserId="firefox") as a:
        reply = a.authen
        # The AUTHEN reply, field by field.
        assert reply["r"] == 0 and reply["message"] == "SUCCESS"
        assert reply["userId"] == "supervisor_1"
        assert reply["projectId"] == PROJECT_ID
        assert isinstance(reply["connectionId"], str) and reply["connectionId"]
        assert reply["clients"] == [{"clientId": "sup-device", "deviceId": "sup-device",
                                     "browserId": "firefox"}]
        assert reply["ice_servers"] == []
        assert reply["ping_after_ms"] == 15000
        assert before <= reply["loginTime"] <= now_ms()
        assert reply["subscribe"] == SUPERVISOR_SUBSCRIBE
        assert reply["attributes"] == []
        assert set(reply["topics"]) == set(SUPERVISOR_SUBSCRIBE)
        for position in reply["topics"].values():
            assert isinstance(position["epoch"], str) and position["epoch"]
            assert isinstance(position["seq"], int) and position["seq"] >= 0
        online_seq = reply["topics"][ONLINE_TOPIC]["seq"]
        status_seq = reply["topics"][STATUS_TOPIC]["seq"]

        # B connects: A sees B online.
        b = await open_wire(quick_hub)
        b_reply = await authen(b, agent_token)
        assert b_reply["r"] == 0
        assert b_reply["attributes"] == [{"attribute": a_, "topic": t} for a_, t in AGENT_GRANTS]
        assert b_reply["subscribe"] == []
        online = await a.message(ONLINE_TOPIC)
        assert online["seq"] == online_seq + 1
        assert online["message"]["attribute"] == "onlineStatus"
        assert online["message"]["newValue"] == "online"
        assert online["message"]["oldValue"] == "offline"
        assert online["message"]["userId"] == "agent_1"
        assert online["message"]["projectId"] == PROJECT_ID
        assert online["message"]["callEnded"] is True

        # B changes manual_status: A receives the message with every field.
        t0 = now_ms()
        assert (await b.change("manual_status", "Available"))["r"] == 0
        body = await a.message(STATUS_TOPIC)
        assert set(body) == {"topic", "seq", "message"}
        assert body["topic"] == STATUS_TOPIC
        assert body["seq"] == status_seq + 1
        message = body["message"]
        assert message["attribute"] == "manual_status"
        assert message["newValue"] == "Available"
        assert message["oldValue"] is None
        assert message["userId"] == "agent_1"
        assert message["projectId"] == PROJECT_ID
        assert t0 <= message["timestamp"] <= now_ms()
        assert message["callEnded"] is True
        assert message["displayName"] == "Agent One"

        assert (await b.change("manual_status", "Break"))["r"] == 0
        body = await a.message(STATUS_TOPIC)
        assert body["seq"] == status_seq + 2
        assert (body["message"]["oldValue"], body["message"]["newValue"]) == \
            ("Available", "Break")

        # REST GET answers the documented shape while B is online.
        with quick_hub.rest() as rest:
            got = rest.get("/v1/users/agent_1")
            assert got.status_code == 200, got.text
            user = got.json()
            assert user["userId"] == "agent_1"
            assert user["chatCustomer"] is False
            assert user["loginTime"] == b_reply["loginTime"]
            assert user["displayName"] == "Agent One"
            assert user["attributes"] == [
                {"attribute": "onlineStatus", "value": "online"},
                {"attribute": "call"},  # no call yet: listed without a value
                {"attribute": "manual_status", "value": "Break"},
            ]

        # B disconnects: A sees B offline.
        await b.close()
        offline = await a.message(ONLINE_TOPIC)
        assert offline["seq"] == online_seq + 2
        assert offline["message"]["attribute"] == "onlineStatus"
        assert (offline["message"]["oldValue"], offline["message"]["newValue"]) == \
            ("online", "offline")
        assert offline["message"]["userId"] == "agent_1"

        # REST PUT changes B (offline now) and publishes through B's grants.
        with quick_hub.rest() as rest:
            put = rest.put("/v1/users/agent_1/attributes",
                           json=[{"attribute": "manual_status", "value": "Lunch"}])
            assert put.status_code == 200, put.text
            assert put.json()["userId"] == "agent_1"
            assert user_of(put.json()) == {"onlineStatus": "offline", "call": None,
                                           "manual_status": "Lunch"}
            body = await a.message(STATUS_TOPIC)
            assert body["seq"] == status_seq + 3
            assert body["message"]["attribute"] == "manual_status"
            assert (body["message"]["oldValue"], body["message"]["newValue"]) == \
                ("Break", "Lunch")
            assert body["message"]["userId"] == "agent_1"
            assert body["message"]["projectId"] == PROJECT_ID

            got = rest.get("/v1/users/agent_1").json()
            assert user_of(got)["manual_status"] == "Lunch"
            assert user_of(got)["onlineStatus"] == "offline"

        # The supervisor itself published nothing and saw no other-device notice.
        await a.quiet(0.2, services=(OTHER_DEVICE_AUTHEN,))
