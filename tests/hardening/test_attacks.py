"""Attacks on a real hub: each is refused with its documented code, logged and counted in
/metrics, and nothing else notices. (The plain AUTHEN failure codes, r = 20-27 on the
socket and REST, 1007/1009/1003 closes and the AUTHEN rate limit itself are in
tests/hub; here are the attacks around them.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.hub.conftest import HubFactory
from tests.hub.wire import (
    AUTHEN,
    CHANGE_ATTRIBUTE,
    TOPIC_SNAPSHOT,
    Wire,
    authen,
    hub_with,
    login,
    open_wire,
    user_of,
)
from tests.hubproc import KEY_SECRET, KEY_SID, OTHER_KEY_SECRET, OTHER_KEY_SID, HubProcess

CLOSE_AUTH_FAILED = 4001


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(header: dict[str, Any] | str, payload: dict[str, Any] | str,
          secret: str = KEY_SECRET, digest: Any = hashlib.sha256) -> str:
    """Any header and payload, HMAC-signed with ``secret``."""
    parts = [b64((p if isinstance(p, str) else json.dumps(p)).encode()) for p in (header,
                                                                                   payload)]
    signing_input = ".".join(parts)
    return signing_input + "." + b64(hmac.new(secret.encode(), signing_input.encode(),
                                              digest).digest())


def payload(user_id: str = "atk_user", iss: str = KEY_SID, **extra: Any) -> dict[str, Any]:
    return {"jti": f"{iss}-1", "iss": iss, "exp": int(time.time()) + 3600, "userId": user_id,
            **extra}


HS256 = {"typ": "JWT", "alg": "HS256"}


def metric(hub: HubProcess, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    text = httpx.get(hub.api_url + "/metrics", timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if found and ",".join(sorted((found.group(1) or "").split(","))) == wanted:
            return float(found.group(2))
    return 0.0


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true (a counter or a log line that follows a close)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = hub_with(tmp_path_factory.mktemp("attacks"), offline_grace_ms=0,
                       auth_burst_per_ip=100_000, auth_rate_per_ip=100_000)
    try:
        yield process
    finally:
        process.kill()


# -- tokens -------------------------------------------------------------------------------

TOKEN_ATTACKS: list[tuple[str, str, int]] = [
    ("alg none, no signature", b64(json.dumps({"alg": "none"}).encode()) + "."
     + b64(json.dumps(payload()).encode()) + ".", 4),
    ("alg None (case)", token({"alg": "None"}, payload()), 4),
    ("alg hs256 (case)", token({"alg": "hs256"}, payload()), 4),
    ("alg with a space", token({"alg": "HS256 "}, payload()), 4),
    ("alg as a list", token({"alg": ["HS256"]}, payload()), 4),
    ("no alg", token({"typ": "JWT"}, payload()), 4),
    # Algorithm confusion: an RS256/ES256 token "signed" with the shared secret, as if it
    # were a public key, must not be taken for HS256.
    ("RS256 confusion", token({"alg": "RS256"}, payload()), 4),
    ("ES256 confusion", token({"alg": "ES256"}, payload()), 4),
    ("HS512 signature under an HS256 header", token(HS256, payload(), digest=hashlib.sha512),
     10),
    ("tampered payload", (lambda t: t.split(".")[0] + "." + b64(json.dumps(
        payload("atk_admin")).encode()) + "." + t.split(".")[2])(token(HS256, payload())), 10),
    ("signature stripped", token(HS256, payload()).rsplit(".", 1)[0] + ".", 10),
    ("signature of another token", token(HS256, payload()).rsplit(".", 1)[0] + "."
     + token(HS256, payload("x")).rsplit(".", 1)[1], 10),
    ("this project's SID, another project's secret", token(HS256, payload(),
                                                           secret=OTHER_KEY_SECRET), 10),
    ("another project's SID, this project's secret", token(HS256, payload(iss=OTHER_KEY_SID)),
     10),
    ("expired past the leeway", token(HS256, {**payload(), "exp": int(time.time()) - 31}), 6),
    ("exp as a string", token(HS256, {**payload(), "exp": str(int(time.time()) + 60)}), 7),
    ("deeply nested claim", token(HS256, json.dumps(payload())[:-1] + ', "x": '
                                  + "[" * 2000 + "]" * 2000 + "}"), 2),
    ("deeply nested attributes string", token(HS256, payload(
        attributes="[" * 2000 + "]" * 2000)), 7),
    ("nested header", token('{"alg":"HS256","x":' + "[" * 2000 + "]" * 2000 + "}",
                            payload()), 2),
    ("base64 with padding and junk", token(HS256, payload()).replace(".", "=.", 1), 2),
    ("large, just under 8 KiB", token(HS256, payload(pad="x" * 5800)), 0),
    ("userId with a right-to-left override", token(HS256, payload("\u202eadmin")), 7),
    ("userId with a zero-width space", token(HS256, payload("agent\u200b")), 7),
    ("userId with NUL", token(HS256, payload("agent\x00")), 7),
    ("userId with a newline", token(HS256, payload("agent\nlevel=ERROR")), 7),
    ("userId with a leading blank", token(HS256, payload(" agent")), 7),
    ("subscribe item with a comma", token(HS256, payload(subscribe=["a,b"])), 7),
    ("subscribe with a slash", token(HS256, payload(subscribe="team/1")), 7),
    ("subscribe with MQTT wildcards", token(HS256, payload(subscribe="team/#,+")), 7),
    ("fullwidth ALL_CALL_STATUS", token(HS256, payload(subscribe="ＡＬＬ_CALL_STATUS")), 7),
    ("attribute name with a colon", token(HS256, payload(
        attributes=[{"attribute": "a:b", "topic": "t"}])), 7),
    ("attribute grant to a topic with a comma", token(HS256, payload(
        attributes=[{"attribute": "a", "topic": "t,u"}])), 7),
    ("onlineStatus published to ALL_CALL_STATUS", token(HS256, payload(
        attributes=[{"attribute": "onlineStatus", "topic": "ALL_CALL_STATUS"}])), 7),
]


@pytest.mark.parametrize(("bad", "code"), [(t, c) for _, t, c in TOKEN_ATTACKS],
                         ids=[n for n, _, _ in TOKEN_ATTACKS])
async def test_token_attack_is_refused_logged_and_counted(hub: HubProcess, bad: str,
                                                          code: int) -> None:
    before = metric(hub, "monitor_auth_failures_total", code=str(code))
    wire = await open_wire(hub)
    reply = await authen(wire, bad)
    assert reply["r"] == code, reply
    if code == 0:  # a large but legal token is just a token
        await wire.close()
        return
    assert "userId" not in reply
    assert await wire.closed() == CLOSE_AUTH_FAILED
    assert metric(hub, "monitor_auth_failures_total", code=str(code)) == before + 1
    assert metric(hub, "monitor_closes_total", code="4001") >= 1
    lines = [line for line in hub.log().splitlines()
             if "event=auth_failed" in line and f"r={code} " in line]
    assert lines, f"no auth_failed line with r={code}"
    # A crafted userId cannot forge log lines: every line is one event.
    assert not any(line.startswith("level=ERROR") for line in hub.log().splitlines())


async def test_ignored_header_fields_do_not_matter(hub: HubProcess) -> None:
    """kid, jku, x5u, crit: the hub trusts no key reference in the token; the key is the
    project's, found by iss, and nothing is fetched."""
    header = {**HS256, "kid": "../../etc/passwd", "jku": "http://127.0.0.1:9/keys",
              "x5u": "http://127.0.0.1:9/cert", "crit": ["exp"]}
    wire = await login(hub, token(header, payload("atk_kid")))
    assert wire.authen["userId"] == "atk_kid" and wire.authen["projectId"] == 25
    await wire.close()


async def test_homoglyph_and_unnormalised_user_ids_are_other_users(hub: HubProcess) -> None:
    """User ids are compared code point by code point: a Cyrillic а or a decomposed é is
    another user, never the one it looks like."""
    lookalikes = ["atk_agent_é", "atk_agent_e\u0301", "аtk_agent_é"]
    wires = [await login(hub, token(HS256, payload(u))) for u in lookalikes]
    for wire in wires:
        assert (await wire.change("note", wire.authen["userId"]))["r"] == 0
    with hub.rest() as rest:
        for user in lookalikes:
            assert user_of(rest.get(f"/v1/users/{user}").json())["note"] == user
    for wire in wires:
        await wire.close()


async def test_rest_token_on_the_socket_and_client_token_on_rest(hub: HubProcess) -> None:
    before_socket = metric(hub, "monitor_auth_failures_total", code="7")
    wire = await open_wire(hub)
    assert (await authen(wire, hub.rest_token()))["r"] == 7
    assert await wire.closed() == CLOSE_AUTH_FAILED
    assert metric(hub, "monitor_auth_failures_total", code="7") == before_socket + 1

    before_rest = metric(hub, "monitor_auth_failures_total", code="9")
    for headers, params in (({"X-STRINGEE-AUTH": hub.client_token("atk_c")}, {}),
                            ({}, {"access_token": hub.client_token("atk_c")})):
        response = httpx.get(hub.api_url + "/v1/users", headers=headers, params=params,
                             timeout=5)
        assert response.status_code == 401 and response.json()["r"] == 9, response.text
    assert metric(hub, "monitor_auth_failures_total", code="9") == before_rest + 2
    # Another project's REST token sees none of this project's users.
    other = {"X-STRINGEE-AUTH": hub.rest_token(other_project=True)}
    seen = await login(hub, hub.client_token("atk_seen"))
    response = httpx.get(hub.api_url + "/v1/users/atk_seen", headers=other, timeout=5)
    assert response.status_code == 404 and response.json()["r"] == 25
    listed = httpx.get(hub.api_url + "/v1/users", headers=other,
                       params={"includeOffline": "true"}, timeout=5).json()
    assert "atk_seen" not in {u["userId"] for u in listed["users"]}
    await seen.close()


# -- requests -----------------------------------------------------------------------------

SEPARATOR_NAMES = ["note:x", "note,x", "note/x", "note x", "note\tx", "note\n", "note\x00",
                   "note\u200b", "ｎote", "note\u202e", "nоte\u0301", "", "*", "#", "+",
                   "note;drop", "../note", "onlineStatus ", " call"]


async def test_attribute_names_with_separators_or_unicode_tricks_are_23(
        hub: HubProcess) -> None:
    wire = await login(hub, hub.client_token("atk_names", attributes=[("note", "atk_t")]))
    before_ws = metric(hub, "monitor_requests_refused_total", via="ws", code="23")
    before_rest = metric(hub, "monitor_requests_refused_total", via="rest", code="23")
    with hub.rest() as rest:
        for name in SEPARATOR_NAMES:
            assert (await wire.change(name, "x"))["r"] == 23, repr(name)
            put = rest.put("/v1/users/atk_names/attributes",
                           json=[{"attribute": name, "value": "x"}])
            assert put.status_code == 400 and put.json()["r"] == 23, (name, put.text)
        values = user_of(rest.get("/v1/users/atk_names").json())
    assert set(values) == {"onlineStatus", "call"}
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="23") == \
        before_ws + len(SEPARATOR_NAMES)
    assert metric(hub, "monitor_requests_refused_total", via="rest", code="23") == \
        before_rest + len(SEPARATOR_NAMES)
    assert "event=change_refused user=atk_names r=23" in hub.log()
    # Values are free text: they come back exactly as sent, nothing normalised; only
    # control characters (which a terminal would act on) are refused.
    for value in ("e\u0301", "\u202eevil", "a\u200bb", "ＡＬＬ"):
        assert (await wire.change("note", value))["r"] == 0
        with hub.rest() as rest:
            assert user_of(rest.get("/v1/users/atk_names").json())["note"] == value
    for value in ("line\nbreak", "\x00", "\x1b[2J", "c1\x9b2J"):
        assert (await wire.change("note", value))["r"] == 23, repr(value)
    await wire.close()


async def test_lookalikes_of_built_in_attributes_are_ordinary_attributes(
        hub: HubProcess) -> None:
    """Only the exact names `onlineStatus` and `call` are the hub's: `OnlineStatus`
    is another attribute, and setting it leaves presence alone."""
    wire = await login(hub, hub.client_token("atk_case"))
    before = metric(hub, "monitor_requests_refused_total", via="ws", code="22")
    assert (await wire.change("onlineStatus", "offline"))["r"] == 22
    assert (await wire.change("call", "Answered"))["r"] == 22
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="22") == before + 2
    assert (await wire.change("OnlineStatus", "offline"))["r"] == 0
    assert (await wire.change("CALL", "Answered"))["r"] == 0
    with hub.rest() as rest:
        values = user_of(rest.get("/v1/users/atk_case").json())
    assert values["onlineStatus"] == "online" and values["call"] is None
    assert values["OnlineStatus"] == "offline"
    await wire.close()


async def test_topics_not_granted_are_refused_counted_and_logged(hub: HubProcess) -> None:
    watcher = await login(hub, hub.client_token("atk_snoop", subscribe=["atk_mine"]))
    agent = await login(hub, hub.client_token("atk_agent", attributes=[("note", "atk_theirs")]))
    assert (await agent.change("note", "secret"))["r"] == 0
    before24 = metric(hub, "monitor_requests_refused_total", via="ws", code="24")
    before21 = metric(hub, "monitor_requests_refused_total", via="ws", code="21")
    for topic in ("atk_theirs", "ALL_CALL_STATUS", "atk_mine2"):
        assert (await watcher.snapshot(topic))["r"] == 24, topic
    for topic in ("atk_mine,atk_theirs", "atk_*", "atk_mine ", "ａtk_mine", "", None, ["x"]):
        assert (await watcher.request(TOPIC_SNAPSHOT, {"topic": topic}))["r"] == 21, topic
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="24") == before24 + 3
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="21") == before21 + 7
    assert "event=request_refused" in hub.log() and "topic=atk_theirs" in hub.log()
    # Resume cannot reach it either, and nothing of it ever arrives.
    sneaky = await login(hub, hub.client_token("atk_snoop", subscribe=["atk_mine"]),
                         resume={"atk_theirs": {"epoch": "x", "seq": 0}})
    assert "atk_theirs" not in sneaky.authen.get("recovered", {})
    assert (await agent.change("note", "secret2"))["r"] == 0
    await watcher.quiet(0.3)
    await sneaky.quiet(0.1)
    for wire in (watcher, agent, sneaky):
        await wire.close()


async def test_oversized_frame_and_value(hub: HubProcess) -> None:
    wire = await login(hub, hub.client_token("atk_big"))
    before_value = metric(hub, "monitor_requests_refused_total", via="ws", code="23")
    assert (await wire.change("note", "x" * 1025))["r"] == 23
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="23") == \
        before_value + 1
    before = metric(hub, "monitor_closes_total", code="1009")
    await wire.send_raw(json.dumps({"service": CHANGE_ATTRIBUTE, "body": {
        "attribute": "note", "value": "x", "pad": "y" * 70_000}}))
    assert await wire.closed() == 1009
    await eventually(lambda: metric(hub, "monitor_closes_total", code="1009") == before + 1)
    await eventually(lambda: "code=1009" in hub.log())


async def test_closing_frames_are_counted_and_logged(hub: HubProcess) -> None:
    for data, code in (('"text"', 1007), (b"\x00binary", 1003)):
        before = metric(hub, "monitor_closes_total", code=str(code))
        wire = await login(hub, hub.client_token("atk_closer"))
        await wire.send_raw(data)
        assert await wire.closed() == code
        assert metric(hub, "monitor_closes_total", code=str(code)) == before + 1
        assert "event=closing remote=" in hub.log() and f"code={code}" in hub.log()


def test_rest_bodies_over_the_limit_are_413_before_they_are_read(hub: HubProcess) -> None:
    """With a token (without one, it is 401 before the body: test_round2): the hub
    must not hold a body of any size."""
    before = metric(hub, "monitor_requests_refused_total", via="rest", code="21")
    with socket.create_connection(("127.0.0.1", hub.api_port), timeout=5) as sock:
        sock.sendall(b"PUT /v1/users/u/attributes HTTP/1.1\r\nHost: hub\r\n"
                     + f"X-STRINGEE-AUTH: {hub.rest_token()}\r\n".encode()
                     + b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n[")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    # Chunked, no length: refused once past the limit.
    chunk = b"[" + b" " * 65_534
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    response = httpx.put(hub.api_url + "/v1/users/u/attributes", content=iter([body]),
                         headers={"X-STRINGEE-AUTH": hub.rest_token(),
                                  "Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 413 and response.json()["r"] == 21, response.text
    assert metric(hub, "monitor_requests_refused_total", via="rest", code="21") == before + 2
    # A legal body is still read.
    with hub.rest() as rest:
        assert rest.get("/healthz").status_code == 200


# -- floods and slow clients ----------------------------------------------------------------


async def test_authen_flood_is_limited_per_ip(make_hub: HubFactory) -> None:
    """A flood from one address is refused with 26 (counted, logged) while another
    address logs in as usual."""
    hub = make_hub(auth_rate_per_ip=2, auth_burst_per_ip=5)
    refused = 0
    for i in range(20):
        wire = await open_wire(hub)
        reply = await authen(wire, hub.client_token(f"flood_{i}"))
        if reply["r"] == 26:
            refused += 1
            assert await wire.closed() == CLOSE_AUTH_FAILED
        else:
            assert reply["r"] == 0
            await wire.close()
    assert refused >= 13, refused
    assert metric(hub, "monitor_auth_failures_total", code="26") == refused
    assert 'r=26 reason="too many authentication attempts"' in hub.log()
    # Another source address is not limited by the first one's flood.
    ws = await connect(hub.ws_url, proxy=None, compression=None, ping_interval=None,
                       open_timeout=5, local_addr=("127.0.0.2", 0))
    other = Wire(ws)
    assert (await authen(other, hub.client_token("flood_other")))["r"] == 0
    assert other.ws.local_address[0] == "127.0.0.2"
    await other.close()


class SlowLoris:
    """A TCP client that starts an HTTP request and never finishes it."""

    def __init__(self, port: int, first: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first:
            self.sock.sendall(first)

    def trickle(self) -> bool:
        """Send one more header byte; False once the hub has closed the connection."""
        try:
            self.sock.sendall(b"X")
            self.sock.setblocking(False)
            try:
                return self.sock.recv(1024) != b""
            except BlockingIOError:
                return True
            finally:
                self.sock.setblocking(True)
        except OSError:
            return False


async def test_slow_loris_handshakes_are_dropped_on_both_ports(make_hub: HubFactory) -> None:
    hub = make_hub(auth_timeout_ms=800)
    upgrade = (b"GET / HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Version: 13\r\nX-Slow: ")
    slow = [SlowLoris(hub.ws_port, upgrade) for _ in range(100)] + \
        [SlowLoris(hub.ws_port, b"") for _ in range(50)] + \
        [SlowLoris(hub.api_port, b"GET /healthz HTTP/1.1\r\nX-Slow: ") for _ in range(50)]
    started = time.monotonic()
    # Meanwhile, real clients connect and work as usual.
    wire = await login(hub, hub.client_token("loris_ok"))
    assert (await wire.change("note", "fine"))["r"] == 0
    with hub.rest() as rest:
        assert rest.get("/v1/users/loris_ok").status_code == 200
    open_ones = list(slow)
    while open_ones:
        assert time.monotonic() - started < 5, f"{len(open_ones)} slow clients still open"
        await asyncio.sleep(0.1)
        open_ones = [s for s in open_ones if s.trickle()]
    elapsed = time.monotonic() - started
    assert elapsed >= 0.7, elapsed
    for s in slow:
        s.sock.close()
    await eventually(lambda: metric(hub, "monitor_handshake_failures_total",
                                    reason="timeout") == 150)
    assert metric(hub, "monitor_handshake_failures_total", reason="rest_timeout") == 50
    assert "event=handshake_failed" in hub.log() and "reason=timeout" in hub.log()
    # The real client was not touched by any of it.
    assert (await wire.change("note", "still fine"))["r"] == 0
    await wire.close()


async def test_a_plain_http_request_on_the_socket_port_is_refused_and_counted(
        hub: HubProcess) -> None:
    before = metric(hub, "monitor_handshake_failures_total", reason="rejected")
    response = httpx.get(hub.ws_url.replace("ws://", "http://"), timeout=5)
    assert response.status_code in (400, 426), response.status_code
    await eventually(lambda: metric(hub, "monitor_handshake_failures_total",
                                    reason="rejected") == before + 1)
    wire = await login(hub, hub.client_token("atk_after_http"))
    await wire.close()


async def test_unauthenticated_requests_are_counted(hub: HubProcess) -> None:
    before = metric(hub, "monitor_requests_refused_total", via="ws", code="20")
    wire = await open_wire(hub)
    for service in (CHANGE_ATTRIBUTE, TOPIC_SNAPSHOT, 1010, 4242):
        assert (await wire.request(service, {}))["r"] == 20
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="20") == before + 4
    assert (await authen(wire, hub.client_token("atk_late")))["r"] == 0
    assert (await wire.request(AUTHEN, {"accesstoken": "x"}))["r"] == 21
    await wire.close()
