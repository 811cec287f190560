"""Attacks of the second hardening round, each on a real hub over real sockets: what one
client could make the hub spend (snapshots, attributes, requests, connections, field
lengths, slow REST bodies), state left apart by a failure after a change, forged log
lines, grants that followed the user instead of the connection, readable data files."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.frames import Frame, Opcode

from tests.hardening.test_attacks import HS256, eventually, metric, payload, token
from tests.hub.conftest import HubFactory
from tests.hub.wire import (
    AUTHEN,
    CHANGE_ATTRIBUTE,
    TOPIC_SNAPSHOT,
    Wire,
    authen,
    login,
    open_wire,
    user_of,
)
from tests.hubproc import HubProcess

CLOSE_AUTH_FAILED = 4001
CLOSE_SLOW_CONSUMER = 4004


class RawJson(str):
    """JSON text to put in a frame as it is (what json.dumps cannot write)."""


def nested(depth: int) -> RawJson:
    return RawJson("[" * depth + "1" + "]" * depth)


async def send_body(wire: Wire, service: int, body: dict[str, Any]) -> None:
    """A frame whose body may hold :class:`RawJson` values."""
    items = ", ".join(f"{json.dumps(k)}: {v if isinstance(v, RawJson) else json.dumps(v)}"
                      for k, v in body.items())
    await wire.send_raw(f'{{"service": {service}, "body": {{{items}}}}}')


def rss(hub: HubProcess) -> float:
    return metric(hub, "process_resident_memory_bytes")


def burst(wire: Wire, requests: list[tuple[int, dict[str, Any]]]) -> None:
    """Write ``requests`` as client frames in one system call: the hub reads them in one
    turn, as it would a fast client's."""
    data = b"".join(Frame(Opcode.TEXT, json.dumps({"service": s, "body": b}).encode())
                    .serialize(mask=True) for s, b in requests)
    wire.ws.transport.write(data)


# -- 2. snapshots: one in flight per topic, the send buffer checked first ---------------


async def test_a_burst_of_snapshots_from_a_client_that_never_reads_is_bounded(
        make_hub: HubFactory) -> None:
    hub = make_hub(send_buffer_limit=1_000_000, offline_grace_ms=0)
    topic = "snap_big"
    agents = await asyncio.gather(*(login(hub, hub.client_token(
        f"snap_{i:03}", attributes=[("note", topic)])) for i in range(200)))
    await asyncio.gather(*(a.change("note", "x" * 1000) for a in agents))
    await asyncio.gather(*(a.close() for a in agents))
    # Each snapshot of the topic is ~250 KB of JSON.
    reader = await login(hub, hub.client_token("snap_reader", subscribe=[topic]))
    assert len(json.dumps(await reader.snapshot(topic))) > 200_000
    await reader.close()

    before = rss(hub)
    # A raw socket: the client writes 1,000 requests and never reads a byte.
    attacker = await login(hub, hub.client_token("snap_attacker", subscribe=[topic]))
    raw = attacker.ws.transport.get_extra_info("socket")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    attacker.ws.transport.pause_reading()
    for i in range(1000):
        await attacker.send(TOPIC_SNAPSHOT, {"topic": topic, "requestId": i})
    started = time.monotonic()
    health = httpx.get(hub.api_url + "/healthz", timeout=10)
    assert health.status_code == 200 and time.monotonic() - started < 1.0
    await eventually(lambda: metric(hub, "monitor_requests_refused_total", via="ws",
                                    code="26") > 0 or metric(
        hub, "monitor_slow_consumers_dropped_total") > 0)
    # Unbounded, this was 1,000 encoded snapshots: a quarter of a gigabyte.
    grown = rss(hub) - before
    print(f"RSS grew by {grown / 1e6:.1f} MB")
    assert grown < 40_000_000, (before, rss(hub))
    attacker.ws.transport.resume_reading()
    await attacker.close()


async def test_a_second_snapshot_of_a_topic_in_flight_is_refused_26(
        make_hub: HubFactory) -> None:
    hub = make_hub()
    wire = await login(hub, hub.client_token("snap_twice", subscribe=["snap_t", "snap_u"]))
    # In one write, the requests are read in one turn, before the first is answered.
    burst(wire, [(TOPIC_SNAPSHOT, {"topic": "snap_t", "requestId": 1}),
                 (TOPIC_SNAPSHOT, {"topic": "snap_t", "requestId": 2}),
                 (TOPIC_SNAPSHOT, {"topic": "snap_u", "requestId": 3})])
    replies = {}
    for _ in range(3):
        frame = await wire.until(TOPIC_SNAPSHOT)
        replies[frame["body"]["requestId"]] = frame["body"]
    assert replies[1]["r"] == 0 and replies[3]["r"] == 0  # another topic is not held up
    assert replies[2]["r"] == 26 and "snap_t" in replies[2]["message"]
    # Once the first is answered, the topic can be asked for again.
    assert (await wire.snapshot("snap_t"))["r"] == 0
    await wire.close()


# -- 3. requestId: validated before any state changes -------------------------------------


async def test_a_deeply_nested_request_id_on_authen_leaves_no_ghost(
        hub: HubProcess) -> None:
    wire = await open_wire(hub)
    await send_body(wire, AUTHEN, {"accesstoken": hub.client_token("ghost"),
                                   "requestId": nested(1000)})
    frame = await wire.until(AUTHEN)
    assert frame["body"]["r"] == 21 and "requestId" not in frame["body"]
    with hub.rest() as rest:
        assert rest.get("/v1/users/ghost").status_code == 404  # never logged in
    # The same connection can still log in properly; it is the user's only one.
    reply = await authen(wire, hub.client_token("ghost"))
    assert reply["r"] == 0 and len(reply["clients"]) == 1
    await wire.close()
    with hub.rest() as rest:
        await eventually(lambda: user_of(rest.get("/v1/users/ghost").json())[
            "onlineStatus"] == "offline")


@pytest.mark.parametrize("request_id", [nested(1000), {"a": 1}, [1], RawJson("9" * 4000),
                                        2**63, "x" * 65, 1.5, True],
                         ids=["nested-1000", "object", "array", "4000-digits", "2**63",
                              "65-chars", "float", "bool"])
async def test_a_request_id_the_hub_would_not_echo_is_21_before_the_change(
        hub: HubProcess, request_id: Any) -> None:
    wire = await login(hub, hub.client_token("rid_user", attributes=[("note", "rid_t")]))
    await send_body(wire, CHANGE_ATTRIBUTE, {"attribute": "note", "value": "changed",
                                             "requestId": request_id})
    frame = await wire.until(CHANGE_ATTRIBUTE)
    assert frame["body"]["r"] == 21, frame
    with hub.rest() as rest:
        assert "note" not in user_of(rest.get("/v1/users/rid_user").json())
    assert (await wire.change("note", "ok"))["r"] == 0  # the connection carries on
    await wire.close()
    hub.restart()
    with hub.rest() as rest:
        assert user_of(rest.get("/v1/users/rid_user").json())["note"] == "ok"


async def test_integer_and_short_string_request_ids_are_echoed(hub: HubProcess) -> None:
    wire = await login(hub, hub.client_token("rid_ok", attributes=[("note", "rid_t")]))
    for request_id in (2**63 - 1, -5, "", "r" * 64, "é✓"):
        await wire.send(CHANGE_ATTRIBUTE, {"attribute": "note", "value": str(request_id),
                                           "requestId": request_id})
        frame = await wire.until(CHANGE_ATTRIBUTE)
        assert frame["body"] == {"r": 0, "message": "SUCCESS", "requestId": request_id}
    await wire.close()


# -- 4. attributes per user, requests per connection, REST changes per key, the WAL ----


async def test_attributes_per_user_are_capped_23(make_hub: HubFactory) -> None:
    hub = make_hub(max_attributes_per_user=5)
    wire = await login(hub, hub.client_token("cap_user"))
    for i in range(5):
        assert (await wire.change(f"a{i}", "x" * 1000))["r"] == 0
    refused = await wire.change("a5", "x")
    assert refused["r"] == 23 and "5" in refused["message"]
    assert (await wire.change("a0", "changed"))["r"] == 0  # a held one may change
    with hub.rest() as rest:
        put = rest.put("/v1/users/cap_user/attributes",
                       json=[{"attribute": "a1", "value": "y"},
                             {"attribute": "a6", "value": "y"}])
        assert put.status_code == 400 and put.json()["r"] == 23
        values = user_of(rest.get("/v1/users/cap_user").json())
    assert values["a1"] == "x" * 1000  # all or nothing
    assert set(values) == {"onlineStatus", "call", *(f"a{i}" for i in range(5))}
    await wire.close()


async def test_a_flooding_connection_is_rate_limited_26_and_others_are_not(
        make_hub: HubFactory) -> None:
    hub = make_hub(change_rate_per_connection=50, change_burst_per_connection=20)
    flood = await login(hub, hub.client_token("flood", attributes=[("note", "fl_t")]))
    calm = await login(hub, hub.client_token("calm", attributes=[("note", "fl_t")]))
    burst(flood, [(CHANGE_ATTRIBUTE, {"attribute": "note", "value": f"v{i}", "requestId": i})
                  for i in range(200)])
    replies = [(await flood.until(CHANGE_ATTRIBUTE))["body"] for _ in range(200)]
    accepted = [r for r in replies if r["r"] == 0]
    limited = [r for r in replies if r["r"] == 26]
    assert len(accepted) + len(limited) == 200
    assert 20 <= len(accepted) <= 25, len(accepted)  # the burst, and what came back meanwhile
    assert all(0 < r["retryAfterMs"] <= 1000 for r in limited)
    assert (await calm.change("note", "fine"))["r"] == 0  # not the calm one's problem
    await asyncio.sleep(max(r["retryAfterMs"] for r in limited[-1:]) / 1000 + 0.05)
    assert (await flood.change("note", "later"))["r"] == 0
    assert metric(hub, "monitor_requests_refused_total", via="ws", code="26") == len(limited)
    # One log line per run of refusals, not one per refused request.
    assert hub.log().count("event=rate_limited") == 1
    await flood.close()
    await calm.close()


async def test_rest_changes_are_rate_limited_per_api_key_429(make_hub: HubFactory) -> None:
    hub = make_hub(rest_change_rate_per_key=2, rest_change_burst_per_key=5)
    wire = await login(hub, hub.client_token("rest_flood"))
    with hub.rest() as rest:
        answers = [rest.put("/v1/users/rest_flood/attributes",
                            json=[{"attribute": "note", "value": str(i)}]) for i in range(8)]
        other = httpx.put(hub.api_url + "/v1/users/rest_flood/attributes",
                          headers={"X-STRINGEE-AUTH": hub.rest_token(other_project=True)},
                          json=[{"attribute": "note", "value": "x"}])
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    assert all(a.json()["r"] == 26 and int(a.headers["Retry-After"]) >= 1
               for a in answers[5:])
    assert other.status_code == 404  # another project's key has its own allowance
    await wire.close()


# -- 5. slow REST bodies: the token before the body, the body in bounded time ------------


def _raw_request(hub: HubProcess, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", hub.api_port), timeout=15)
    sock.sendall(head.encode())
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_body_without_a_token_is_401_before_it_is_read(hub: HubProcess) -> None:
    sock = _raw_request(hub, "PUT /v1/users/x/attributes HTTP/1.1\r\nHost: h\r\n"
                             "Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n")
    started = time.monotonic()
    sock.sendall(b"[")
    answer = _read_all(sock)  # the hub answers and closes without waiting for the body
    assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 401") and b'"r":1' in answer
    sock.close()


def test_a_trickled_body_is_408_and_closed(make_hub: HubFactory) -> None:
    hub = make_hub(rest_body_timeout_ms=1000)
    sock = _raw_request(hub, "PUT /v1/users/x/attributes HTTP/1.1\r\nHost: h\r\n"
                             f"X-STRINGEE-AUTH: {hub.rest_token()}\r\n"
                             "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n")
    started = time.monotonic()
    sock.sendall(b"[")
    answer = _read_all(sock)
    assert 0.9 < time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408")
    assert httpx.get(hub.api_url + "/healthz", timeout=5).status_code == 200
    sock.close()


# -- 6. fields echoed to every device, connections per user ------------------------------


async def test_an_oversized_device_id_is_refused_23(hub: HubProcess) -> None:
    for field_name in ("deviceId", "browserId", "sessionId", "platform", "sdkVersion"):
        wire = await open_wire(hub)
        reply = await authen(wire, hub.client_token("long_device"),
                             **{field_name: "d" * 60_000})
        assert reply["r"] == 23 and field_name in reply["message"]
        assert await wire.closed() == CLOSE_AUTH_FAILED
    wire = await login(hub, hub.client_token("long_device"), deviceId="d" * 128)
    assert wire.authen["clients"][0]["deviceId"] == "d" * 128
    await wire.close()


async def test_connections_per_user_are_capped_26(make_hub: HubFactory) -> None:
    hub = make_hub(max_connections_per_user=3)
    wires = [await login(hub, hub.client_token("many")) for _ in range(3)]
    extra = await open_wire(hub)
    reply = await authen(extra, hub.client_token("many"))
    assert reply["r"] == 26 and "3" in reply["message"]
    assert await extra.closed() == CLOSE_AUTH_FAILED
    await wires[0].close()
    await eventually(lambda: metric(hub, "monitor_connections") == 2)
    again = await login(hub, hub.client_token("many"))  # room again
    for wire in [*wires[1:], again]:
        await wire.close()


# -- 7. log lines cannot be forged ---------------------------------------------------------


def _fields(line: str) -> list[str]:
    """The keys of a key=value log line, quoted values read as one."""
    keys, i = [], 0
    while i < len(line):
        eq = line.find("=", i)
        if eq < 0:
            break
        keys.append(line[i:eq].strip())
        i = eq + 1
        if i < len(line) and line[i] == '"':
            i += 1
            while line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        else:
            while i < len(line) and line[i] != " ":
                i += 1
        i += 1
    return keys


async def test_user_input_cannot_forge_log_lines_or_fields(hub: HubProcess) -> None:
    forged = "eve project=2 event=kicked"
    wire = await login(hub, hub.client_token(forged))
    await wire.close()
    bad = await open_wire(hub)
    # An unknown key id that holds a line separator and a fake field.
    parts = hub.client_token("x").split(".")
    claims = json.loads(_b64decode(parts[1]))
    claims["iss"] = "SK\u2028ts=0 level=ERROR event=forged\nevent=forged2"
    await authen(bad, ".".join([parts[0], _b64encode(json.dumps(claims)), parts[2]]))
    await bad.closed()
    await eventually(lambda: "event=disconnected" in hub.log())
    log = hub.log()
    assert "\u2028" not in log
    for line in log.splitlines():
        if line.startswith("ts="):
            keys = _fields(line)
            assert keys.count("event") == 1 and keys.count("project") <= 1, line
    assert f'user="{forged}"' in log


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# -- 8. a connection publishes through the grants of its own token -----------------------


async def test_grants_follow_the_connection_not_the_users_latest_login(
        hub: HubProcess) -> None:
    watcher = await login(hub, hub.client_token("gr_watch", subscribe=["gr_a", "gr_b"]))
    first = await login(hub, hub.client_token("gr_user", attributes=[("st", "gr_a")]))
    second = await login(hub, hub.client_token("gr_user", attributes=[("st", "gr_b")]))
    assert (await first.change("st", "from first"))["r"] == 0
    assert (await watcher.message())["topic"] == "gr_a"
    await watcher.quiet(0.3)
    assert (await second.change("st", "from second"))["r"] == 0
    assert (await watcher.message())["topic"] == "gr_b"
    await watcher.quiet(0.3)
    # REST goes through the user's latest grants, as the spec says.
    with hub.rest() as rest:
        rest.put("/v1/users/gr_user/attributes", json=[{"attribute": "st", "value": "rest"}])
    assert (await watcher.message())["topic"] == "gr_b"
    await watcher.quiet(0.3)
    for wire in (watcher, first, second):
        await wire.close()


# -- 9. the data files are the hub user's alone ------------------------------------------


async def test_data_dir_is_0700_and_database_files_0600(hub: HubProcess) -> None:
    wire = await login(hub, hub.client_token("perm_user", attributes=[("note", "perm_t")]))
    assert (await wire.change("note", "secret"))["r"] == 0
    await wire.close()
    assert stat.S_IMODE(hub.data_dir.stat().st_mode) == 0o700
    files = sorted(hub.data_dir.iterdir())
    assert {f.name for f in files} >= {"hub.sqlite3", "hub.sqlite3-wal", "hub.sqlite3-shm"}
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_a_data_dir_others_may_read_is_logged(tmp_path: Path) -> None:
    """The operator chose it: left as it is, but said (SECURITY.md)."""
    hub = HubProcess(tmp_path)
    hub.data_dir.mkdir(mode=0o755)
    os.chmod(hub.data_dir, 0o755)
    hub.start()
    try:
        assert "event=data_dir_not_private" in hub.log()
        assert stat.S_IMODE(hub.data_dir.stat().st_mode) == 0o755
        assert stat.S_IMODE((hub.data_dir / "hub.sqlite3").stat().st_mode) == 0o600
    finally:
        hub.kill()


def test_existing_world_readable_database_files_are_tightened(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    hub.start()
    hub.stop()
    for file in hub.data_dir.iterdir():
        os.chmod(file, 0o644)
    hub.start()
    try:
        for file in hub.data_dir.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        hub.kill()


# -- also: tokens, numbers --------------------------------------------------------------


async def test_tokens_not_valid_yet_and_rest_tokens_with_a_user_are_refused_7(
        hub: HubProcess) -> None:
    now = int(time.time())
    for claims in (payload("nbf_user", nbf=now + 600), payload("iat_user", iat=now + 600),
                   payload("rest_user", rest_api=True)):
        wire = await open_wire(hub)
        assert (await authen(wire, token(HS256, claims)))["r"] == 7, claims
        assert await wire.closed() == CLOSE_AUTH_FAILED


async def test_huge_numbers_and_control_characters_in_values_are_23(hub: HubProcess) -> None:
    wire = await login(hub, hub.client_token("num_user"))
    await wire.send_raw('{"service":103,"body":{"attribute":"n","requestId":1,"value":'
                        + "9" * 4000 + "}}")
    assert (await wire.until(CHANGE_ATTRIBUTE))["body"]["r"] == 23
    for value in ("busy\x1b]0;TITLE\x1b\\\x1b]52;c;ZWNobyBwd25lZAo=\x1b\\\x1b[?1049l\x1b[2J",
                  "c1\x9b2J", "\x07"):
        assert (await wire.change("n", value))["r"] == 23
    with hub.rest() as rest:
        put = rest.put("/v1/users/num_user/attributes",
                       json=[{"attribute": "n", "value": "a\x1b[2Jb"}])
        assert put.status_code == 400 and put.json()["r"] == 23
        assert "n" not in user_of(rest.get("/v1/users/num_user").json())
    await wire.close()
