"""RestClient and AsyncRestClient against an in-test REST API (httpx.MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from monitor.client import (
    AsyncRestClient,
    AuthenticationError,
    HubError,
    HubUnreachableError,
    NotFoundError,
    RateLimitedError,
    RefusedError,
    RestClient,
    rest_client,
)
from monitor.tokens import TokenError, mint_rest_token, verify_rest_token
from tests.hubproc import KEY_SECRET, KEY_SID

BASE = "http://hub.test:6900"


class FakeApi:
    """Enough of section 5 of the spec: users, attributes, paging, disconnect, calls."""

    def __init__(self, users: int = 0) -> None:
        self.users: dict[str, dict[str, Any]] = {
            f"u{i:03}": {"onlineStatus": "online", "manual_status": "ready" if i % 2 else 7}
            for i in range(users)}
        self.seen: list[httpx.Request] = []
        self.tokens: list[str] = []
        self.status_override: tuple[int, Any, dict[str, str]] | None = None

    def user_body(self, user_id: str) -> dict[str, Any]:
        attrs = [{"attribute": k, "value": v} for k, v in self.users[user_id].items()]
        return {"userId": user_id, "loginTime": 1, "attributes": attrs, "chatCustomer": False}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.status_override is not None:
            status, body, headers = self.status_override
            if isinstance(body, str):
                return httpx.Response(status, text=body, headers=headers)
            return httpx.Response(status, json=body, headers=headers)
        token = request.headers.get("X-STRINGEE-AUTH")
        self.tokens.append(token or "")
        try:
            verify_rest_token(token, lambda sid: KEY_SECRET if sid == KEY_SID else None)
        except TokenError as exc:
            return httpx.Response(401, json={"r": int(exc.code), "message": exc.message})
        parts = request.url.raw_path.decode().split("?")[0].split("/")[1:]
        if parts[:2] == ["v1", "users"] and len(parts) == 2:
            return self.list_users(request.url.params)
        if parts[:2] == ["v1", "users"]:
            user_id = httpx.URL("/" + parts[2]).path[1:]
            if user_id not in self.users:
                return httpx.Response(404, json={"r": 25, "message": f"user {user_id!r} not found"})
            if len(parts) == 4 and parts[3] == "attributes" and request.method == "PUT":
                for item in json.loads(request.content):
                    self.users[user_id][item["attribute"]] = item["value"]
            if len(parts) == 4 and parts[3] == "disconnect":
                return httpx.Response(200, json={"r": 0, "message": "SUCCESS", "closed": 2})
            return httpx.Response(200, json=self.user_body(user_id))
        if parts[:2] == ["v1", "calls"] and request.method == "PUT":
            report = json.loads(request.content)
            return httpx.Response(200, json={"callId": parts[2], **report})
        if parts[:2] == ["v1", "calls"]:
            return httpx.Response(200, json={"count": 1, "calls": [{"callId": "c1"}]})
        return httpx.Response(404, json={"r": 21, "message": "no such endpoint"})

    def list_users(self, params: httpx.QueryParams) -> httpx.Response:
        page, limit = int(params.get("page", 1)), int(params.get("limit", 100))
        ids = sorted(self.users)
        if "attribute" in params:
            wanted = params.get("value")
            ids = [u for u in ids if params["attribute"] in self.users[u] and (
                wanted is None or (lambda v: v == wanted if isinstance(v, str)
                                   else json.dumps(v) == wanted)(
                    self.users[u][params["attribute"]]))]
        chunk = ids[(page - 1) * limit:page * limit]
        return httpx.Response(200, json={"count": len(ids), "pageSize": limit,
                                         "users": [self.user_body(u) for u in chunk]})


def rest_token() -> str:
    return mint_rest_token(KEY_SID, KEY_SECRET)


def sync_client(api: FakeApi, **options: Any) -> RestClient:
    if "key" not in options:
        options.setdefault("rest_token", rest_token())
    return RestClient(BASE, transport=httpx.MockTransport(api), **options)


def test_get_user_sends_the_token_header_and_answers_the_user():
    api = FakeApi(users=3)
    with sync_client(api) as rest:
        user = rest.get_user("u001")
    assert user["userId"] == "u001"
    assert {a["attribute"] for a in user["attributes"]} == {"onlineStatus", "manual_status"}
    assert api.seen[0].headers["X-STRINGEE-AUTH"] == api.tokens[0]
    assert api.seen[0].url.path == "/v1/users/u001"


def test_user_ids_are_escaped_in_paths():
    api = FakeApi()
    api.users["a b/c"] = {}
    with sync_client(api) as rest:
        assert rest.get_user("a b/c")["userId"] == "a b/c"
    assert api.seen[0].url.raw_path == b"/v1/users/a%20b%2Fc"


def test_errors_carry_r_status_and_message():
    api = FakeApi(users=1)
    with sync_client(api) as rest:
        with pytest.raises(NotFoundError) as missing:
            rest.get_user("nobody")
        assert (missing.value.r, missing.value.status) == (25, 404)
        assert missing.value.message == "user 'nobody' not found"
        api.status_override = (429, {"r": 26, "message": "rate limited"}, {"Retry-After": "2"})
        with pytest.raises(RateLimitedError) as limited:
            rest.get_user("u000")
        assert (limited.value.r, limited.value.status, limited.value.retry_after) == (26, 429, 2.0)
        api.status_override = (400, {"r": 22, "message": "attribute is read-only"}, {})
        with pytest.raises(RefusedError) as refused:
            rest.change_attributes("u000", {"onlineStatus": "offline"})
        assert (refused.value.r, refused.value.status) == (22, 400)
        api.status_override = (502, "<html>bad gateway</html>", {})
        with pytest.raises(HubError) as gateway:
            rest.get_user("u000")
        assert type(gateway.value) is HubError
        assert (gateway.value.r, gateway.value.status) == (None, 502)
        assert "bad gateway" in gateway.value.message


def test_a_refused_token_raises_authentication_error():
    api = FakeApi(users=1)
    forged = mint_rest_token(KEY_SID, "a-different-secret-of-a-decent-length-0123")
    with sync_client(api, rest_token=forged) as rest, \
            pytest.raises(AuthenticationError) as refused:
        rest.get_user("u000")
    assert (refused.value.r, refused.value.status) == (10, 401)
    assert "signature" in str(refused.value) and "HTTP 401" in str(refused.value)


def test_unreachable_hub_raises_hub_unreachable():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with RestClient(BASE, rest_token(), transport=httpx.MockTransport(refuse)) as rest, \
            pytest.raises(HubUnreachableError):
        rest.get_user("u000")


def test_key_mints_tokens_and_renews_them_near_expiry(monkeypatch):
    minted: list[int] = []

    def counting_mint(sid: str, secret: str, *, ttl_s: int) -> str:
        minted.append(ttl_s)
        return mint_rest_token(sid, secret, ttl_s=ttl_s)

    monkeypatch.setattr(rest_client, "mint_rest_token", counting_mint)
    api = FakeApi(users=1)
    with sync_client(api, key=(KEY_SID, KEY_SECRET)) as rest:
        rest.get_user("u000")
        rest.get_user("u000")
        assert minted == [3600]  # minted once, reused while far from exp
    verify_rest_token(api.tokens[0], lambda sid: KEY_SECRET)

    class ApiKey:
        sid, secret = KEY_SID, KEY_SECRET

    minted.clear()
    with sync_client(FakeApi(users=1), key=ApiKey(), token_ttl_s=30) as rest:
        rest.get_user("u000")
        rest.get_user("u000")
    assert minted == [30, 30]  # always within a minute of exp: renewed for every call
    with pytest.raises(ValueError):
        RestClient(BASE)
    with pytest.raises(ValueError):
        RestClient(BASE, rest_token(), key=(KEY_SID, KEY_SECRET))


def test_change_attributes_sends_the_list_and_answers_the_user():
    api = FakeApi(users=1)
    with sync_client(api) as rest:
        user = rest.change_attributes("u000", {"manual_status": "away", "skill": 3})
        rest.change_attributes("u000", [{"attribute": "note", "value": None}])
    assert json.loads(api.seen[0].content) == [
        {"attribute": "manual_status", "value": "away"}, {"attribute": "skill", "value": 3}]
    assert api.seen[0].method == "PUT" and api.seen[0].url.path == "/v1/users/u000/attributes"
    assert {"attribute": "manual_status", "value": "away"} in user["attributes"]
    assert json.loads(api.seen[1].content) == [{"attribute": "note", "value": None}]


def test_list_users_walks_every_page():
    api = FakeApi(users=250)
    with sync_client(api) as rest:
        users = list(rest.list_users(page_size=100))
    assert [u["userId"] for u in users] == [f"u{i:03}" for i in range(250)]
    assert [r.url.params["page"] for r in api.seen] == ["1", "2", "3"]
    assert {r.url.params["limit"] for r in api.seen} == {"100"}


def test_list_users_filters_and_includes_offline():
    api = FakeApi(users=10)
    with sync_client(api) as rest:
        ready = list(rest.list_users(attribute="manual_status", value="ready", page_size=3))
        sevens = list(rest.list_users(attribute="manual_status", value=7,
                                      include_offline=True))
    assert [u["userId"] for u in ready] == ["u001", "u003", "u005", "u007", "u009"]
    assert [u["userId"] for u in sevens] == ["u000", "u002", "u004", "u006", "u008"]
    last = api.seen[-1].url.params
    assert (last["value"], last["includeOffline"]) == ("7", "true")  # non-strings as JSON


def test_disconnect_and_calls_endpoints():
    api = FakeApi(users=1)
    with sync_client(api) as rest:
        assert rest.disconnect_user("u000")["closed"] == 2
        call = rest.report_call("call 1", "Ringing", from_="u000", to="+84900000000")
        assert rest.list_calls() == [{"callId": "c1"}]
    assert api.seen[0].method == "POST" and api.seen[0].url.path == "/v1/users/u000/disconnect"
    assert api.seen[1].url.raw_path == b"/v1/calls/call%201"
    assert json.loads(api.seen[1].content) == {"status": "Ringing", "from": "u000",
                                                "to": "+84900000000"}
    assert call["status"] == "Ringing"


async def test_async_client_has_the_same_api():
    api = FakeApi(users=150)
    async with AsyncRestClient(BASE, key=(KEY_SID, KEY_SECRET),
                               transport=httpx.MockTransport(api)) as rest:
        assert (await rest.get_user("u007"))["userId"] == "u007"
        users = [u async for u in rest.list_users(page_size=100)]
        assert len(users) == 150 and users[-1]["userId"] == "u149"
        await rest.change_attributes("u007", {"manual_status": "away"})
        assert api.users["u007"]["manual_status"] == "away"
        assert (await rest.disconnect_user("u007"))["closed"] == 2
        assert (await rest.list_users_page(2, limit=100))["count"] == 150
        with pytest.raises(NotFoundError) as missing:
            await rest.get_user("nobody")
    assert (missing.value.r, missing.value.status) == (25, 404)
