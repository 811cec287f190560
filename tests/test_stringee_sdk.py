"""Stringee's own Web SDK (npm package ``stringee``) against a real hub.

tests/compat/stringee_client.mjs runs the unmodified SDK under Node (``ws`` as its
WebSocket) and prints what the SDK reports as JSON lines; these tests drive it and check
that the SDK connects, authenticates, changes an attribute and receives topic messages
made by other users, exactly as it would against Stringee's servers.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import IN_CI, require_program
from tests.hubproc import HubProcess

COMPAT_DIR = Path(__file__).parent / "compat"
HARNESS = COMPAT_DIR / "stringee_client.mjs"
TOPIC = "agent_manual_status"
ONLINE_TOPIC = "online_status_TEAM1"
SUPERVISOR_GRANTS = [("manual_status", TOPIC), ("onlineStatus", ONLINE_TOPIC)]

Event = dict[str, Any]


@pytest.fixture(scope="session")
def node() -> str:
    """Path of node, with the harness's npm dependencies installed."""
    node_path = require_program("node", "nodejs")
    modules = COMPAT_DIR / "node_modules"
    if not ((modules / "stringee" / "package.json").exists()
            and (modules / "ws" / "package.json").exists()):
        npm = require_program("npm", "npm")
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=COMPAT_DIR,
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            message = f"npm install in {COMPAT_DIR} failed:\n{done.stdout}\n{done.stderr}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    return node_path


class SdkClient:
    """One StringeeClient of the real SDK in a Node process; its events in a queue."""

    def __init__(self, node: str, hub: HubProcess, token: str, log_path: Path,
                 args: tuple[str, ...] = ()) -> None:
        self.hub = hub
        self.log_path = log_path
        self._stderr = log_path.open("ab")
        env = dict(os.environ, STRINGEE_HUB_URL=hub.ws_url, STRINGEE_TOKEN=token)
        self.proc = subprocess.Popen(
            [node, str(HARNESS), "--timeout-ms", "100000", *args], cwd=COMPAT_DIR, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1)
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.seen: list[Event] = []  # everything read, for messages
        self.backlog: list[Event] = []  # read by wait_for but not matched yet
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                self.events.put(json.loads(line))
        self.events.put(None)

    def wait_for(self, name: str, match: Callable[[Event], bool] = lambda e: True,
                 timeout: float = 10.0) -> Event:
        """The first event called ``name`` for which ``match`` holds, not returned before.

        Events read past on the way are kept for later calls: the order of a reply and
        a topic message it causes is not fixed."""
        for index, event in enumerate(self.backlog):
            if event.get("event") == name and match(event):
                return self.backlog.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if event is None:
                self.events.put(None)
                raise AssertionError(f"SDK harness exited ({self.proc.poll()}) before "
                                     f"{name!r}; events: {self.seen}\n{self.diagnostics()}")
            self.seen.append(event)
            if event.get("event") == name and match(event):
                return event
            self.backlog.append(event)
        raise AssertionError(f"no {name!r} event within {timeout} s; events: {self.seen}\n"
                             f"{self.diagnostics()}")

    def drain(self, seconds: float) -> list[Event]:
        """Every event of the next ``seconds``."""
        got: list[Event] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if event is None:
                self.events.put(None)
                break
            got.append(event)
        self.seen.extend(got)
        self.backlog.extend(got)
        return got

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def diagnostics(self) -> str:
        """The tails of the SDK's stderr and of the hub's log."""
        self._stderr.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return (f"SDK stderr (last 3000 chars):\n{text[-3000:]}\n"
                f"hub log (last 5000 chars):\n{self.hub.log()[-5000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command(cmd="quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@pytest.fixture
def sdk(node: str, tmp_path: Path) -> Iterator[Callable[..., SdkClient]]:
    """Factory of SDK clients, all closed at the end of the test."""
    started: list[SdkClient] = []

    def start(hub: HubProcess, token: str, *args: str) -> SdkClient:
        client = SdkClient(node, hub, token, tmp_path / f"sdk{len(started)}.log", args)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


# -- a plain protocol client for the "other user" ---------------------------------------


def py_request(ws: ClientConnection, service: int, body: dict[str, Any],
               timeout: float = 10.0) -> dict[str, Any]:
    """Send a request and return the reply body (PINGs and topic messages skipped)."""
    ws.send(json.dumps({"service": service, "body": body}))
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame["service"] == 1 and not frame["body"].get("requestId"):
            ws.send(json.dumps({"service": 1, "body": {}}))
            continue
        if frame["service"] == service and frame["body"].get("requestId") == body["requestId"]:
            return frame["body"]


@contextmanager
def py_login(hub: HubProcess, user_id: str,
             grants: list[tuple[str, str]] = SUPERVISOR_GRANTS) -> Iterator[ClientConnection]:
    """A user authenticated over a plain WebSocket, publishing through ``grants``."""
    with connect(hub.ws_url, open_timeout=10) as ws:
        token = hub.client_token(user_id, attributes=grants)
        reply = py_request(ws, 2, {"accesstoken": token, "requestId": 1})
        assert reply["r"] == 0, reply
        yield ws


def topic_message(user_id: str, attribute: str, value: Any) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        message = event["body"].get("message") or {}
        return (message.get("userId") == user_id and message.get("attribute") == attribute
                and message.get("newValue") == value)
    return match


# -- tests ------------------------------------------------------------------------------


def test_sdk_authenticates_changes_attribute_and_gets_other_users_changes(
        hub: HubProcess, sdk: Callable[..., SdkClient]) -> None:
    token = hub.client_token("agent_1", subscribe=[TOPIC, ONLINE_TOPIC],
                             attributes=[("manual_status", TOPIC)])
    client = sdk(hub, token, "--attribute", "manual_status", "--value", '"busy"')

    authen = client.wait_for("authen")["body"]
    assert authen["r"] == 0, authen
    assert authen["userId"] == "agent_1"
    assert isinstance(authen["clients"], list) and len(authen["clients"]) == 1
    assert isinstance(authen["ice_servers"], list)
    assert isinstance(authen["ping_after_ms"], int) and authen["ping_after_ms"] > 0

    reply = client.wait_for("changeAttribute", lambda e: e["id"] == "initial")["body"]
    assert reply["r"] == 0, reply

    # Another user comes online (onlineStatus is published to ONLINE_TOPIC) ...
    with py_login(hub, "agent_2") as other:
        online = client.wait_for("messagefromtopic",
                                 topic_message("agent_2", "onlineStatus", "online"))
        assert online["body"]["topic"] == ONLINE_TOPIC
        # ... changes an attribute over the WebSocket ...
        reply = py_request(other, 103, {"attribute": "manual_status", "value": "away",
                                        "requestId": 2})
        assert reply["r"] == 0, reply
        event = client.wait_for("messagefromtopic",
                                topic_message("agent_2", "manual_status", "away"))
        body = event["body"]
        assert body["topic"] == TOPIC
        assert isinstance(body["seq"], int)
        assert body["message"]["projectId"] == 25
        assert isinstance(body["message"]["timestamp"], int)

        # ... and through the REST API.
        with hub.rest() as rest:
            answer = rest.put("/v1/users/agent_2/attributes",
                              json=[{"attribute": "manual_status", "value": "lunch"}])
        assert answer.status_code == 200, answer.text
        event = client.wait_for("messagefromtopic",
                                topic_message("agent_2", "manual_status", "lunch"))
        assert event["body"]["message"]["oldValue"] == "away"
        assert event["body"]["seq"] == body["seq"] + 1

    # The other user goes offline once the grace period is over.
    client.wait_for("messagefromtopic", topic_message("agent_2", "onlineStatus", "offline"))


def test_sdk_gets_its_own_change_and_later_changes_on_stdin(
        hub: HubProcess, sdk: Callable[..., SdkClient]) -> None:
    token = hub.client_token("agent_3", subscribe=[TOPIC], attributes=[("manual_status", TOPIC)])
    client = sdk(hub, token, "--attribute", "manual_status", "--value", '"busy"')
    assert client.wait_for("authen")["body"]["r"] == 0
    assert client.wait_for("changeAttribute")["body"]["r"] == 0
    client.wait_for("messagefromtopic", topic_message("agent_3", "manual_status", "busy"))

    client.command(cmd="changeAttribute", attribute="manual_status", value="busy", id="same")
    assert client.wait_for("changeAttribute", lambda e: e["id"] == "same")["body"]["r"] == 0
    client.command(cmd="changeAttribute", attribute="manual_status", value=3, id="num")
    assert client.wait_for("changeAttribute", lambda e: e["id"] == "num")["body"]["r"] == 0
    event = client.wait_for("messagefromtopic", topic_message("agent_3", "manual_status", 3))
    assert event["body"]["message"]["oldValue"] == "busy"
    # Setting the same value published nothing: the only "busy" message was the first.
    repeated = [e for e in client.seen if e["event"] == "messagefromtopic"
                and topic_message("agent_3", "manual_status", "busy")(e)]
    assert len(repeated) == 1

    client.command(cmd="changeAttribute", attribute="onlineStatus", value="offline", id="ro")
    assert client.wait_for("changeAttribute", lambda e: e["id"] == "ro")["body"]["r"] == 22


def test_sdk_answers_hub_pings_without_a_ping_storm(
        node: str, tmp_path: Path, sdk: Callable[..., SdkClient]) -> None:
    workdir = tmp_path / "fastping"
    workdir.mkdir()
    hub = HubProcess(workdir, extra_hub="ping_after_ms = 500").start()
    try:
        client = sdk(hub, hub.client_token("agent_ping"), "--trace")
        authen = client.wait_for("authen")["body"]
        assert authen["r"] == 0 and authen["ping_after_ms"] == 500
        events = client.drain(3.0)
        pings_in = [e for e in events if e["event"] == "recv" and e["frame"]["service"] == 1]
        pings_out = [e for e in events if e["event"] == "send" and e["frame"]["service"] == 1]
        # About one hub PING per 500 ms, each answered once by the SDK, nothing more: a
        # hub that answered the SDK's answer would start an endless ping-pong.
        assert 3 <= len(pings_in) <= 10, pings_in
        # A PING that lands at the very end of the window may have its answer traced just
        # after it; every earlier one must be answered, and never more than once.
        assert len(pings_in) - 1 <= len(pings_out) <= len(pings_in), (pings_in, pings_out)
        assert not [e for e in events if e["event"] == "disconnect"], events
    finally:
        hub.kill()


def test_sdk_other_device_notices(hub: HubProcess, sdk: Callable[..., SdkClient]) -> None:
    token = hub.client_token("agent_4")
    first = sdk(hub, token)
    assert first.wait_for("authen")["body"]["r"] == 0
    second = sdk(hub, token)
    authen = second.wait_for("authen")["body"]
    assert authen["r"] == 0 and len(authen["clients"]) == 2, authen
    first.wait_for("otherdeviceauthen", lambda e: e["body"].get("status") != "disconnected")
    second.close()
    # The SDK removes a device only when status is exactly "disconnected".
    first.wait_for("otherdeviceauthen", lambda e: e["body"].get("status") == "disconnected")


def test_sdk_reconnects_after_force_disconnect(hub: HubProcess,
                                               sdk: Callable[..., SdkClient]) -> None:
    client = sdk(hub, hub.client_token("agent_5"))
    assert client.wait_for("authen")["body"]["r"] == 0
    with hub.rest() as rest:
        answer = rest.post("/v1/users/agent_5/disconnect")
    assert answer.status_code in (200, 204), answer.text
    client.wait_for("disconnect")
    # The SDK comes back by itself with the same token and a requestId other than 1.
    authen = client.wait_for("authen")["body"]
    assert authen["r"] == 0 and authen["requestId"] != 1, authen


def test_sdk_refused_token(hub: HubProcess, sdk: Callable[..., SdkClient]) -> None:
    token = hub.client_token("agent_6")
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    client = sdk(hub, forged)
    authen = client.wait_for("authen")["body"]
    assert authen["r"] == 10, authen
    assert client.proc.wait(10) == 2


def test_sdk_stays_logged_out_after_a_supervisors_logout(
        tmp_path: Path, sdk: Callable[..., SdkClient]) -> None:
    """Stringee's SDK reconnects 0.5 s after any close, whatever its code, and stops for
    good (``disconnect()``) when an AUTHEN is refused with r other than 0 and 15. So the
    hub closes the user's connections, refuses the SDK's reconnect with r = 11 and the
    reason, and the SDK does not try again, long after the hold is over."""
    hold_ms = 2000
    (tmp_path / "hub").mkdir()
    hub = HubProcess(tmp_path / "hub", extra_hub=f"logout_hold_ms = {hold_ms}\n"
                     "offline_grace_ms = 0").start()
    try:
        client = sdk(hub, hub.client_token("agent_8", attributes=[("manual_status", TOPIC)]),
                     "--stay")
        assert client.wait_for("authen")["body"]["r"] == 0
        with connect(hub.ws_url, open_timeout=10) as ws:
            token = hub.client_token("supervisor_1", supervise=[TOPIC])
            assert py_request(ws, 2, {"accesstoken": token, "requestId": 1})["r"] == 0
            answer = py_request(ws, 1021, {"userId": "agent_8", "reason": "end of shift",
                                           "requestId": 2})
        assert answer["r"] == 0, answer
        client.wait_for("disconnect")
        # The SDK's own reconnect, refused with the reason: the SDK reports it.
        client.wait_for("connect")
        refused = client.wait_for("authen")["body"]
        assert refused["r"] == 11, refused
        assert refused["reason"] == "end of shift" and refused["by"] == "supervisor_1"
        assert "end of shift" in refused["message"]
        # And it stays away, well past the hold.
        later = client.drain(hold_ms / 1000 + 2.5)
        assert not [e for e in later if e.get("event") in ("connect", "authen")], later
        assert client.proc.poll() is None  # the harness still runs: the SDK chose to stop
        with hub.rest() as rest:
            values = {a["attribute"]: a.get("value")
                      for a in rest.get("/v1/users/agent_8").json()["attributes"]}
        assert values["onlineStatus"] == "offline"
        refusals = [line for line in hub.log().splitlines()
                    if "event=auth_failed" in line and "user=agent_8" in line]
        assert len(refusals) == 1, refusals
    finally:
        hub.kill()
