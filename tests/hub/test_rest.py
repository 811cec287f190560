"""The REST API: auth, user reads and changes, listing, disconnect, health, metrics."""

from __future__ import annotations

import re
import time

import httpx
import jwt
import pytest

from tests.hub.conftest import HubFactory
from tests.hub.wire import authen, login, open_wire, user_of
from tests.hubproc import KEY_SECRET, KEY_SID, HubProcess


def bare(hub: HubProcess) -> httpx.Client:
    return httpx.Client(base_url=hub.api_url, timeout=10)


# -- auth --------------------------------------------------------------------------------


def _rest_tokens(hub: HubProcess) -> list[tuple[str, str | None, int]]:
    now = int(time.time())
    rest_claims = {"jti": f"{KEY_SID}-{now}", "iss": KEY_SID, "exp": now + 600,
                   "rest_api": True}
    return [
        ("none", None, 1),
        ("empty", "", 1),
        ("garbage", "not-a-token", 2),
        ("HS384", jwt.encode(rest_claims, KEY_SECRET * 2, algorithm="HS384"), 4),
        ("unknown key", jwt.encode({**rest_claims, "iss": "SKNOPE"}, KEY_SECRET,
                                   algorithm="HS256"), 5),
        ("expired", jwt.encode({**rest_claims, "exp": now - 120}, KEY_SECRET,
                               algorithm="HS256"), 6),
        ("wrong secret", jwt.encode(rest_claims, "x" * 40, algorithm="HS256"), 10),
        ("client token", hub.client_token("rest_someone"), 9),
        ("rest_api false", jwt.encode({**rest_claims, "rest_api": False}, KEY_SECRET,
                                      algorithm="HS256"), 9),
    ]


@pytest.mark.parametrize("how", ["header", "query"])
def test_bad_rest_tokens_are_401_with_the_authen_code(module_hub: HubProcess,
                                                      how: str) -> None:
    with bare(module_hub) as rest:
        for name, token, code in _rest_tokens(module_hub):
            if how == "header":
                answer = rest.get("/v1/users", headers={"X-STRINGEE-AUTH": token}
                                  if token is not None else {})
            else:
                answer = rest.get("/v1/users", params={"access_token": token}
                                  if token is not None else {})
            assert answer.status_code == 401, (name, answer.text)
            body = answer.json()
            assert body["r"] == code, (name, body)
            assert isinstance(body["message"], str) and body["message"]


def test_rest_token_in_the_query_works(module_hub: HubProcess) -> None:
    with bare(module_hub) as rest:
        answer = rest.get("/v1/users", params={"access_token": module_hub.rest_token()})
        assert answer.status_code == 200, answer.text


def test_every_v1_route_needs_a_token(module_hub: HubProcess) -> None:
    with bare(module_hub) as rest:
        for method, path, body in (("GET", "/v1/users/x", None), ("GET", "/v1/users", None),
                                   ("PUT", "/v1/users/x/attributes",
                                    [{"attribute": "a", "value": 1}]),
                                   ("POST", "/v1/users/x/disconnect", None),
                                   ("GET", "/v1/calls", None)):
            answer = rest.request(method, path, json=body)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["r"] == 1


# -- users -------------------------------------------------------------------------------


async def test_get_unknown_user_is_404_r25(module_hub: HubProcess) -> None:
    with module_hub.rest() as rest:
        for call in (rest.get("/v1/users/rest_nobody"),
                     rest.put("/v1/users/rest_nobody/attributes",
                              json=[{"attribute": "a", "value": 1}])):
            assert call.status_code == 404, call.text
            assert call.json()["r"] == 25


async def test_put_is_atomic_and_validated(module_hub: HubProcess) -> None:
    topic = "rest_put_t"
    watcher = await login(module_hub, module_hub.client_token("rest_put_w", subscribe=[topic]))
    agent = await login(module_hub, module_hub.client_token(
        "rest_put", attributes=[("manual_status", topic), ("skill", topic)]))
    with module_hub.rest() as rest:
        ok = rest.put("/v1/users/rest_put/attributes", json=[
            {"attribute": "manual_status", "value": "Available"},
            {"attribute": "skill", "value": "sales"},
            {"attribute": "level", "value": 3},
        ])
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["userId"] == "rest_put" and body["chatCustomer"] is False
        assert isinstance(body["loginTime"], int)
        assert user_of(body) == {"onlineStatus": "online", "call": None,
                                 "level": 3, "manual_status": "Available", "skill": "sales"}
        first, second = await watcher.messages(2, topic)
        assert (first["message"]["attribute"], second["message"]["attribute"]) == \
            ("manual_status", "skill")
        assert second["seq"] == first["seq"] + 1

        refused = [
            ([], 400, 21),
            ([{"attribute": "x", "value": i} for i in range(51)], 400, 21),
            ({"attribute": "x", "value": 1}, 400, 21),
            ([{"attribute": "x"}], 400, 21),
            ([{"value": 1}], 400, 21),
            ([{"attribute": "x", "value": {"nested": 1}}], 400, 21),
            ([{"attribute": "manual_status", "value": "Break"},
              {"attribute": "onlineStatus", "value": "offline"}], 400, 22),
            ([{"attribute": "manual_status", "value": "Break"},
              {"attribute": "call", "value": "Ended"}], 400, 22),
            ([{"attribute": "manual_status", "value": "Break"},
              {"attribute": "bad name", "value": 1}], 400, 23),
            ([{"attribute": "manual_status", "value": "Break"},
              {"attribute": "skill", "value": "y" * 1025}], 400, 23),
        ]
        for payload, status, code in refused:
            answer = rest.put("/v1/users/rest_put/attributes", json=payload)
            assert answer.status_code == status, (payload, answer.text)
            assert answer.json()["r"] == code, (payload, answer.json())
        not_json = rest.put("/v1/users/rest_put/attributes", content=b"{oops",
                            headers={"content-type": "application/json"})
        assert not_json.status_code == 400 and not_json.json()["r"] == 21
        # Nothing of the refused requests was applied or published.
        after = user_of(rest.get("/v1/users/rest_put").json())
        assert after["manual_status"] == "Available" and after["skill"] == "sales"
        assert "x" not in after
        await watcher.quiet(0.2)

        # 50 changes is the maximum, and fine.
        fifty = rest.put("/v1/users/rest_put/attributes",
                         json=[{"attribute": f"k{i}", "value": i} for i in range(50)])
        assert fifty.status_code == 200, fifty.text
        assert user_of(fifty.json())["k49"] == 49
        # The same value again: answered, nothing published.
        same = rest.put("/v1/users/rest_put/attributes",
                        json=[{"attribute": "manual_status", "value": "Available"}])
        assert same.status_code == 200
        await watcher.quiet(0.2)
    for w in (watcher, agent):
        await w.close()


async def test_list_users_paging_filter_and_offline(make_hub: HubFactory) -> None:
    hub = make_hub(offline_grace_ms=0)
    names = [f"lu_{i:02d}" for i in range(7)]
    wires = {}
    for i, name in enumerate(names):
        wires[name] = await login(hub, hub.client_token(name))
        assert (await wires[name].change("team", "red" if i % 2 else "blue"))["r"] == 0
        assert (await wires[name].change("level", i))["r"] == 0
    for name in names[5:]:
        await wires.pop(name).close()
    # Wait until the two are offline (grace 0).
    with hub.rest() as rest:
        deadline = time.monotonic() + 3
        while rest.get("/v1/users").json()["count"] != 5 and time.monotonic() < deadline:
            time.sleep(0.02)

        online = rest.get("/v1/users").json()
        assert online["count"] == 5 and online["pageSize"] == 100
        assert [u["userId"] for u in online["users"]] == names[:5]
        assert all(user_of(u)["onlineStatus"] == "online" for u in online["users"])

        everyone = rest.get("/v1/users", params={"includeOffline": "true"}).json()
        assert everyone["count"] == 7
        assert [u["userId"] for u in everyone["users"]] == names

        pages = [rest.get("/v1/users", params={"includeOffline": "true", "limit": 3,
                                               "page": p}).json() for p in (1, 2, 3, 4)]
        assert [p["count"] for p in pages] == [7, 7, 7, 7]
        assert [p["pageSize"] for p in pages] == [3, 3, 3, 3]
        assert [[u["userId"] for u in p["users"]] for p in pages] == \
            [names[0:3], names[3:6], names[6:7], []]

        red = rest.get("/v1/users", params={"attribute": "team", "value": "red"}).json()
        assert [u["userId"] for u in red["users"]] == ["lu_01", "lu_03"]
        red_all = rest.get("/v1/users", params={"attribute": "team", "value": "red",
                                                "includeOffline": "true"}).json()
        assert red_all["count"] == 3
        level = rest.get("/v1/users", params={"attribute": "level", "value": "4"}).json()
        assert [u["userId"] for u in level["users"]] == ["lu_04"]
        has_team = rest.get("/v1/users", params={"attribute": "team"}).json()
        assert has_team["count"] == 5
        offline = rest.get("/v1/users", params={"attribute": "onlineStatus",
                                                "value": "offline",
                                                "includeOffline": "true"}).json()
        assert [u["userId"] for u in offline["users"]] == names[5:]

        for params in ({"limit": 101}, {"limit": 0}, {"page": 0}, {"limit": "x"}):
            answer = rest.get("/v1/users", params=params)
            assert answer.status_code == 400, (params, answer.text)
            assert answer.json()["r"] == 21
        assert rest.get("/v1/users", params={"limit": 100}).status_code == 200
    for w in wires.values():
        await w.close()


def test_invalid_call_reports_are_27(module_hub: HubProcess) -> None:
    with module_hub.rest() as rest:
        ended = rest.put("/v1/calls/rest_call_unknown",
                         json={"from": "a", "to": "b", "status": "Ended"})
        assert ended.status_code == 400 and ended.json()["r"] == 27, ended.text
        started = rest.put("/v1/calls/rest_call_1",
                           json={"from": "a", "to": "b", "status": "Answered"})
        assert started.status_code == 200, started.text
        back = rest.put("/v1/calls/rest_call_1", json={"status": "Calling"})
        assert back.status_code == 400 and back.json()["r"] == 27, back.text
        assert rest.put("/v1/calls/rest_call_1", json={"status": "Ended"}).status_code == 200


async def test_call_reports_reach_all_call_status_whoever_grants_it(
        module_hub: HubProcess) -> None:
    watcher = await login(module_hub, module_hub.client_token(
        "rest_calls_w", subscribe=["ALL_CALL_STATUS", "rest_calls_agent_call"]))
    agent = await login(module_hub, module_hub.client_token(
        "rest_calls_agent", attributes=[("call", "rest_calls_agent_call")]))
    with module_hub.rest() as rest:
        put = rest.put("/v1/calls/rest_calls_1", json={"from": "+15550001",
                                                        "to": "rest_calls_agent",
                                                        "status": "Ringing"})
        assert put.status_code == 200, put.text
        seen = {m["topic"]: m["message"] for m in await watcher.messages(2)}
        assert set(seen) == {"ALL_CALL_STATUS", "rest_calls_agent_call"}
        for message in seen.values():
            assert message["attribute"] == "call" and message["newValue"] == "Ringing"
            assert message["callId"] == "rest_calls_1"
            assert (message["from"], message["to"]) == ("+15550001", "rest_calls_agent")
            assert message["callEnded"] is False
        assert rest.get("/v1/calls").json()["count"] >= 1
        assert user_of(rest.get("/v1/users/rest_calls_agent").json())["call"] == "Ringing"
        assert rest.put("/v1/calls/rest_calls_1", json={"status": "Ended"}).status_code == 200
        ended = {m["topic"]: m["message"] for m in await watcher.messages(2)}
        assert all(m["callEnded"] is True and m["newValue"] == "Ended" for m in ended.values())
    for w in (watcher, agent):
        await w.close()


# -- health, metrics, OpenAPI --------------------------------------------------------------


def test_healthz_needs_no_token(module_hub: HubProcess) -> None:
    with bare(module_hub) as rest:
        answer = rest.get("/healthz")
        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"


def test_openapi_is_served(module_hub: HubProcess) -> None:
    with bare(module_hub) as rest:
        answer = rest.get("/openapi.json")
        assert answer.status_code == 200
        spec = answer.json()
        assert spec["openapi"].startswith("3.")
        for path in ("/v1/users/{userId}", "/v1/users/{userId}/attributes", "/v1/users",
                     "/v1/users/{userId}/disconnect", "/v1/calls/{callId}", "/v1/calls"):
            assert path in spec["paths"], path


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert found, f"{name}{labels} not in /metrics:\n{text}"
    return float(found.group(1))


async def test_metrics(make_hub: HubFactory) -> None:
    hub = make_hub()
    with bare(hub) as rest:
        before = rest.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        text = before.text
    assert _metric(text, "monitor_connections") == 0
    assert _metric(text, "monitor_deliveries_total") == 0
    assert _metric(text, "monitor_slow_consumers_dropped_total") == 0
    assert re.search(r"^# TYPE monitor_auth_failures(_total)? counter$", text, re.MULTILINE)

    watchers = [await login(hub, hub.client_token(f"met_w{i}", subscribe=["met_t"]))
                for i in range(3)]
    agent = await login(hub, hub.client_token("met_a", attributes=[("x", "met_t")]))
    assert (await agent.change("x", 1))["r"] == 0
    for w in watchers:
        await w.message("met_t")
    for code, token in ((10, jwt.encode({"iss": KEY_SID, "userId": "u",
                                         "exp": int(time.time()) + 60}, "y" * 40)),
                        (10, jwt.encode({"iss": KEY_SID, "userId": "u",
                                         "exp": int(time.time()) + 60}, "z" * 40)),
                        (5, jwt.encode({"iss": "SKNONE", "userId": "u"}, "y" * 40))):
        bad = await open_wire(hub)
        assert (await authen(bad, token))["r"] == code
        await bad.closed()
    with bare(hub) as rest:
        text = rest.get("/metrics").text
    assert _metric(text, "monitor_connections") == 4
    # 3 topic deliveries and 4 AUTHEN replies, at least, went to connections.
    assert _metric(text, "monitor_deliveries_total") >= 3 + 4 + 1
    assert _metric(text, "monitor_auth_failures_total", 'code="10"') == 2
    assert _metric(text, "monitor_auth_failures_total", 'code="5"') == 1
    assert _metric(text, "monitor_users_online") == 4
    for w in (*watchers, agent):
        await w.close()
