"""Call control over the wire: service ids, requests and waits for the call tests."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx

from tests.hub.wire import SUBSCRIBE_FROM_SERVER, Frame, Wire, login
from tests.hubproc import HubProcess

MAKE_CALL = 1010
INCOMING_CALL = 1011
RINGING = 1012
ANSWER = 1013
REJECT = 1014
HANGUP = 1015
CALL_STATE = 1016
LIST_CALLS = 1017
ALL_CALL_STATUS = "ALL_CALL_STATUS"


def uid(prefix: str) -> str:
    """A user id no other test of a shared hub uses."""
    return f"{prefix}_{secrets.token_hex(3)}"


def now_ms() -> int:
    return int(time.time() * 1000)


async def agent(hub: HubProcess, user_id: str, *, call_topic: str | None = None,
                subscribe: tuple[str, ...] = (), device: str | None = None,
                display_name: str | None = None, other_project: bool = False) -> Wire:
    """A logged-in user; ``call_topic`` grants ``call`` to that topic."""
    grants = [("call", call_topic)] if call_topic else []
    token = hub.client_token(user_id, subscribe=subscribe, attributes=grants,
                             display_name=display_name, other_project=other_project)
    extra = {"deviceId": device} if device else {}
    return await login(hub, token, **extra)


async def supervisor(hub: HubProcess, user_id: str | None = None,
                     other_project: bool = False) -> Wire:
    """A user subscribed to ALL_CALL_STATUS only."""
    return await agent(hub, user_id or uid("sup"), subscribe=(ALL_CALL_STATUS,),
                       other_project=other_project)


class Users:
    """Log users in to a hub; :meth:`close_all` closes every connection opened."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.wires: list[Wire] = []

    async def __call__(self, user_id: str, **kwargs: Any) -> Wire:
        wire = await agent(self.hub, user_id, **kwargs)
        self.wires.append(wire)
        return wire

    async def supervisor(self, **kwargs: Any) -> Wire:
        wire = await supervisor(self.hub, **kwargs)
        self.wires.append(wire)
        return wire

    async def close_all(self) -> None:
        for wire in self.wires:
            await wire.close()


async def make_call(wire: Wire, to: str) -> Frame:
    """MAKE_CALL; the reply's body."""
    return await wire.request(MAKE_CALL, {"to": to})


async def control(wire: Wire, service: int, call_id: str) -> Frame:
    """RINGING, ANSWER, REJECT or HANGUP; the reply's body."""
    return await wire.request(service, {"callId": call_id})


async def call_ok(wire: Wire, to: str) -> dict[str, Any]:
    """MAKE_CALL that must succeed; the call."""
    reply = await make_call(wire, to)
    assert reply["r"] == 0, reply
    return reply["call"]


async def state(wire: Wire, call_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next CALL_STATE of ``call_id``, which must be in ``status``; the call it carries.

    CALL_STATE frames of one call are taken in order, so a test sees every transition."""
    frame = await wire.until(lambda f: f["service"] == CALL_STATE
                             and f["body"]["call"]["callId"] == call_id, timeout)
    call = frame["body"]["call"]
    assert call["status"] == status, f"expected {status}, got {frame}"
    return call


async def states(wire: Wire, call_id: str, *statuses: str) -> list[dict[str, Any]]:
    """The next CALL_STATEs of ``call_id``, in ``statuses`` in this order."""
    return [await state(wire, call_id, status) for status in statuses]


async def incoming(wire: Wire, call_id: str, timeout: float = 5.0) -> Frame:
    """The INCOMING_CALL body of ``call_id``."""
    frame = await wire.until(lambda f: f["service"] == INCOMING_CALL
                             and f["body"]["call"]["callId"] == call_id, timeout)
    return frame["body"]


def call_frames(wire: Wire, call_id: str) -> list[Frame]:
    """Frames about ``call_id`` already in the backlog (they stay there)."""
    def about(f: Frame) -> bool:
        body = f["body"]
        return body.get("call", {}).get("callId") == call_id or \
            body.get("message", {}).get("callId") == call_id
    return [f for f in wire.backlog if about(f)]


def rest_user(hub: HubProcess, user_id: str) -> dict[str, Any]:
    """``{attribute: value}`` of a user through GET /v1/users/{id}."""
    with hub.rest() as rest:
        response = rest.get(f"/v1/users/{user_id}")
    assert response.status_code == 200, response.text
    return {a["attribute"]: a.get("value") for a in response.json()["attributes"]}


def rest_calls(hub: HubProcess) -> list[dict[str, Any]]:
    with hub.rest() as rest:
        response = rest.get("/v1/calls")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["calls"])
    return body["calls"]


async def wait_offline(hub: HubProcess, user_id: str, timeout: float = 5.0) -> None:
    """Until the hub has seen ``user_id``'s last connection go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rest_user(hub, user_id)["onlineStatus"] == "offline":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{user_id} still online after {timeout} s")


def put_call(rest: httpx.Client, call_id: str, status: Any = None, **fields: Any
             ) -> httpx.Response:
    """PUT /v1/calls/{call_id}; ``from_`` spells ``from``."""
    body = {("from" if k == "from_" else k): v for k, v in fields.items()}
    if status is not None:
        body["status"] = status
    return rest.put(f"/v1/calls/{call_id}", json=body)


async def call_messages(wire: Wire, topic: str, call_id: str, count: int,
                        timeout: float = 5.0) -> list[Frame]:
    """The next ``count`` messages of ``topic`` about ``call_id``, in order (bodies)."""
    out = []
    for _ in range(count):
        frame = await wire.until(lambda f: f["service"] == SUBSCRIBE_FROM_SERVER
                                 and f["body"]["topic"] == topic
                                 and f["body"]["message"].get("callId") == call_id, timeout)
        out.append(frame["body"])
    return out


async def no_call_messages(wire: Wire, call_id: str, seconds: float = 0.2,
                           topic: str | None = None) -> None:
    """No topic message about ``call_id`` (on ``topic``) arrives within ``seconds``."""
    try:
        frame = await wire.until(lambda f: f["service"] == SUBSCRIBE_FROM_SERVER
                                 and (topic is None or f["body"]["topic"] == topic)
                                 and f["body"]["message"].get("callId") == call_id, seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {frame}")
