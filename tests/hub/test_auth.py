"""AUTHEN over a real socket: every failure code, the close after it, the auth timeout,
requests before AUTHEN, and the per-IP rate limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

import jwt
import pytest

from tests.hub.conftest import HubFactory
from tests.hub.wire import (
    AUTHEN,
    CHANGE_ATTRIBUTE,
    PING,
    TOPIC_SNAPSHOT,
    authen,
    login,
    open_wire,
)
from tests.hubproc import KEY_SECRET, KEY_SID, HubProcess

HEADER = {"typ": "JWT", "alg": "HS256", "cty": "stringee-api;v=1"}
CLOSE_AUTH_FAILED = 4001
CLOSE_AUTH_TIMEOUT = 4002


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict[str, Any], secret: str = KEY_SECRET, algorithm: str = "HS256",
           headers: dict[str, Any] | None = None) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the short test secret, for HS512
        return jwt.encode(payload, secret, algorithm=algorithm, headers=headers or HEADER)


def claims(user_id: str | None = "auth_user", ttl_s: int = 3600, **extra: Any
           ) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {"jti": f"{KEY_SID}-{now}", "iss": KEY_SID, "exp": now + ttl_s}
    if user_id is not None:
        out["userId"] = user_id
    out.update(extra)
    return out


def raw_token(header: object, payload: object) -> str:
    """A token with any JSON in its parts, signed with the test secret."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    sig = hmac.new(KEY_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


FAILURES: list[tuple[str, object, int]] = [
    ("missing", None, 1),
    ("empty", "", 1),
    ("blank", "   ", 1),
    ("not a string", 12345, 1),
    ("one part", "abcdef", 2),
    ("garbage parts", "a.b.c", 2),
    ("payload not base64 json", b64(json.dumps(HEADER).encode()) + ".!!!.sig", 2),
    ("payload not an object", raw_token(HEADER, [1, 2, 3]), 3),
    ("no iss", raw_token(HEADER, {"userId": "u", "exp": int(time.time()) + 3600}), 3),
    ("HS512", signed(claims(), algorithm="HS512",
                     headers={"typ": "JWT", "alg": "HS512"}), 4),
    ("alg none", jwt.encode(claims(), None, algorithm="none"), 4),
    ("unknown key", signed({**claims(), "iss": "SKUNKNOWN"}), 5),
    ("expired", signed(claims(ttl_s=-120)), 6),
    ("REST token on the socket", signed({**claims(None), "rest_api": True}), 7),
    ("no userId", signed(claims(None)), 7),
    ("userId too long", signed(claims("u" * 129)), 7),
    ("no exp", signed({k: v for k, v in claims().items() if k != "exp"}), 7),
    ("subscribe not a string", signed(claims(subscribe=42)), 7),
    ("bad topic name", signed(claims(subscribe="ok,bad topic")), 7),
    ("too many topics", signed(claims(subscribe=",".join(f"t{i}" for i in range(101)))), 7),
    ("attributes not an array", signed(claims(attributes={"attribute": "a"})), 7),
    ("grant to a bad topic", signed(claims(attributes=[{"attribute": "a",
                                                       "topic": "no spaces"}])), 7),
    ("built-in grant to ALL_CALL_STATUS",
     signed(claims(attributes=[{"attribute": "onlineStatus", "topic": "ALL_CALL_STATUS"}])), 7),
    ("too many grants", signed(claims(attributes=[{"attribute": f"a{i}", "topic": "t"}
                                                  for i in range(101)])), 7),
    ("token over 8 KiB", signed(claims(padding="x" * 9000)), 7),
    ("wrong secret", signed(claims(), secret="not-the-secret-0123456789-abcdefghijkl"), 10),
]


@pytest.mark.parametrize(("token", "code"), [(t, c) for _, t, c in FAILURES],
                         ids=[name for name, _, _ in FAILURES])
async def test_authen_failure_code_then_close(module_hub: HubProcess, token: object,
                                              code: int) -> None:
    wire = await open_wire(module_hub)
    body: dict[str, Any] = {} if token is None else {"accesstoken": token}
    reply = await wire.request(AUTHEN, body)
    assert reply["r"] == code, reply
    assert isinstance(reply["message"], str) and reply["message"]
    assert reply["requestId"] == wire.next_request
    assert "userId" not in reply
    assert await wire.closed() == CLOSE_AUTH_FAILED


async def test_failure_leaves_other_connections_alone(module_hub: HubProcess) -> None:
    good = await login(module_hub, module_hub.client_token("auth_bystander"))
    bad = await open_wire(module_hub)
    assert (await authen(bad, signed(claims(), secret="x" * 40)))["r"] == 10
    assert await bad.closed() == CLOSE_AUTH_FAILED
    assert (await good.change("note", "still here"))["r"] == 0
    await good.close()


async def test_requests_before_authen_are_refused_with_20(module_hub: HubProcess) -> None:
    wire = await open_wire(module_hub)
    for service, body in ((CHANGE_ATTRIBUTE, {"attribute": "a", "value": 1}),
                          (TOPIC_SNAPSHOT, {"topic": "t"}), (4242, {}), (1010, {"to": "x"})):
        reply = await wire.request(service, body)
        assert reply["r"] == 20, (service, reply)
        assert reply["requestId"] == wire.next_request
    # A client PING is answered, not refused.
    pong = await wire.request(PING, {})
    assert pong["r"] == 0
    # Nothing of the above harmed the connection: AUTHEN still works on it.
    reply = await authen(wire, module_hub.client_token("auth_late"))
    assert reply["r"] == 0
    assert reply["userId"] == "auth_late"
    # And a second AUTHEN on the same connection is refused without closing it.
    again = await authen(wire, module_hub.client_token("auth_late"))
    assert again["r"] == 21
    assert (await wire.change("note", "x"))["r"] == 0
    await wire.close()


async def test_array_subscribe_and_string_attributes_are_accepted(
        module_hub: HubProcess) -> None:
    """Section 1: subscribe as a JSON array, attributes as a JSON string."""
    grants = [{"attribute": "manual_status", "topic": "auth_topic_b"}]
    token = signed(claims("auth_forms", subscribe=["auth_topic_a", "auth_topic_b"],
                          attributes=json.dumps(grants)))
    wire = await login(module_hub, token)
    assert wire.authen["subscribe"] == ["auth_topic_a", "auth_topic_b"]
    assert wire.authen["attributes"] == grants
    assert (await wire.change("manual_status", "Available"))["r"] == 0
    message = await wire.message("auth_topic_b")
    assert message["message"]["newValue"] == "Available"
    await wire.close()


async def test_header_without_cty_and_every_topic_character(module_hub: HubProcess) -> None:
    topic = "Team_1.queue:sales-EU"
    token = signed(claims("auth_nocty", subscribe=topic,
                          attributes=[{"attribute": "x.y-z_1", "topic": topic}],
                          icc_api=True, avatarUrl="http://example.invalid/a.png"),
                   headers={"typ": "JWT", "alg": "HS256"})
    wire = await login(module_hub, token)
    assert wire.authen["subscribe"] == [topic]
    assert (await wire.change("x.y-z_1", "ok"))["r"] == 0
    assert (await wire.message(topic))["message"]["attribute"] == "x.y-z_1"
    await wire.close()


async def test_expiry_leeway_is_allowed(module_hub: HubProcess) -> None:
    """Expired 5 s ago is within the clock-skew leeway (≤ 30 s)."""
    wire = await login(module_hub, signed(claims("auth_skew", ttl_s=-5)))
    assert wire.authen["userId"] == "auth_skew"
    await wire.close()


async def test_auth_timeout_closes_the_connection(make_hub: HubFactory) -> None:
    hub = make_hub(auth_timeout_ms=500)
    started = time.monotonic()
    idle = await open_wire(hub)
    # A PING does not count as authenticating.
    await idle.send(PING, {})
    assert await idle.closed(timeout=5) == CLOSE_AUTH_TIMEOUT
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3, elapsed
    # A client that authenticates in time stays.
    wire = await login(hub, hub.client_token("auth_in_time"))
    await wire.quiet(0.8, services=())  # nothing closes it
    assert (await wire.change("note", "ok"))["r"] == 0
    await wire.close()


async def test_authen_rate_limit_answers_26(make_hub: HubFactory) -> None:
    hub = make_hub(auth_rate_per_ip=1, auth_burst_per_ip=3)
    wires = [await login(hub, hub.client_token(f"rate_{i}")) for i in range(3)]
    limited = await open_wire(hub)
    reply = await authen(limited, hub.client_token("rate_limited"))
    assert reply["r"] == 26, reply
    assert await limited.closed() == CLOSE_AUTH_FAILED
    # The refused user never logged in.
    with hub.rest() as rest:
        assert rest.get("/v1/users/rate_limited").status_code == 404
        metrics = rest.get("/metrics").text
    assert 'monitor_auth_failures_total{code="26"} 1.0' in metrics
    # Connections already in are unaffected.
    for wire in wires:
        assert (await wire.change("note", "fine"))["r"] == 0
        await wire.close()
    # The bucket refills at auth_rate_per_ip per second.
    await asyncio.sleep(1.1)
    again = await login(hub, hub.client_token("rate_later"))
    await again.close()
