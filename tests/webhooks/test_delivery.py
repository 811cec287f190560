"""Webhooks end to end: a real hub process, a real HTTP receiver on 127.0.0.1, every
request's signature verified with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config import new_webhook_secret
from tests.hub.wire import login
from tests.hubproc import OTHER_PROJECT_ID, PROJECT_ID, HubProcess, free_port
from tests.webhooks.conftest import watch
from tests.webhooks.receiver import Receiver, Request

GRANTS = [("manual_status", "wh_team"), ("note", "wh_team")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = watch(Receiver(free_port(), new_webhook_secret()))
    try:
        yield r
    finally:
        r.stop()


def hub_for(tmp: Path, receiver: Receiver, *more: tuple[Receiver, dict[str, Any]],
            **hook: Any) -> HubProcess:
    """A hub (not started) whose project PROJECT_ID posts to ``receiver`` (and to each
    of ``more`` with its own settings)."""
    tmp.mkdir(parents=True, exist_ok=True)
    hub = watch(HubProcess(tmp, extra_hub="offline_grace_ms = 0"))
    tables = ""
    for r, settings in ((receiver, hook), *more):
        lines = [f'url = "{r.url}"', f'secret = "{r.secret}"']
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in settings.items()]
        tables += "\n[[projects.webhooks]]\n" + "\n".join(lines) + "\n"
    text = hub.config_path.read_text()
    marker = f"\n[[projects]]\nid = {OTHER_PROJECT_ID}"
    assert marker in text
    hub.config_path.write_text(text.replace(marker, tables + marker))
    return hub


FAST = {"retry_base_ms": 50, "retry_max_ms": 300, "timeout_ms": 2000}


async def make_changes(hub: HubProcess, users: list[str], count: int) -> dict[str, list[str]]:
    """Each user logs in and sets manual_status ``count`` times; the values, in order."""
    wires = [await login(hub, hub.client_token(u, attributes=GRANTS)) for u in users]
    values: dict[str, list[str]] = {u: [] for u in users}

    async def one(user: str, wire: Any) -> None:
        for n in range(count):
            value = f"{user}-{n}"
            assert (await wire.change("manual_status", value))["r"] == 0
            values[user].append(value)

    await asyncio.gather(*(one(u, w) for u, w in zip(users, wires, strict=True)))
    for wire in wires:
        await wire.close()
    return values


def statuses(receiver: Receiver) -> dict[str, list[str]]:
    """Each user's manual_status values as accepted, in order."""
    out: dict[str, list[str]] = {}
    for r in receiver.accepted():
        event = r.json()
        if event.get("attribute") == "manual_status":
            out.setdefault(event["userId"], []).append(event["value"])
    return out


def count_status(receiver: Receiver) -> int:
    return sum(len(v) for v in statuses(receiver).values())


async def wait_until(check: Any, timeout: float = 20) -> None:
    """Until ``check()`` is true. If it is not within ``timeout``, the test fails, and its
    report shows what each receiver got and each hub's log (tests/webhooks/conftest.py)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s (what each receiver got, and "
                                 "each hub's log, follow)")
        await asyncio.sleep(0.05)


async def test_signed_in_order_with_the_payload(tmp_path: Path, receiver: Receiver) -> None:
    receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        users = [f"wh_{i}" for i in range(4)]
        sent = await make_changes(hub, users, 25)
        await wait_until(lambda: count_status(receiver) >= 100)
        assert statuses(receiver) == sent
        for request in receiver.accepted():
            assert receiver.verify(request) == request.json()
        first = next(r.json() for r in receiver.accepted()
                     if r.json().get("attribute") == "manual_status")
        assert first["type"] == "attribute.changed"
        assert first["projectId"] == PROJECT_ID
        assert first["value"] == f"{first['userId']}-0"
        assert first["oldValue"] is None
        assert isinstance(first["timestamp"], int)
        assert first["topics"] == ["wh_team"]
        online = [r.json() for r in receiver.accepted()
                  if r.json().get("attribute") == "onlineStatus"]
        assert {e["userId"] for e in online} == set(users)
        with hub.rest() as rest:
            body = rest.get("/v1/webhooks").json()
            assert [w["state"] for w in body["webhooks"]] == ["healthy"]
            assert body["webhooks"][0]["url"] == receiver.url
            metrics = rest.get("/metrics").text
            assert 'monitor_webhook_deliveries_total{endpoint="' in metrics
        # The other project has no endpoint.
        other = hub.rest_token(other_project=True)
        answer = httpx.get(hub.api_url + "/v1/webhooks", headers={"X-STRINGEE-AUTH": other})
        assert answer.json() == {"webhooks": []}
    finally:
        hub.kill()


async def test_a_receiver_down_then_back_gets_everything_in_order(
        tmp_path: Path, receiver: Receiver) -> None:
    hub = hub_for(tmp_path, receiver, **FAST).start()  # nobody listens yet
    try:
        users = [f"down_{i}" for i in range(3)]
        sent = await make_changes(hub, users, 10)
        await asyncio.sleep(1.0)
        with hub.rest() as rest:
            state = rest.get("/v1/webhooks").json()["webhooks"][0]
            assert state["state"] == "retrying" and state["retryingSince"] > 0
        await asyncio.sleep(2.0)  # down for a while: retries keep failing
        receiver.start()
        await wait_until(lambda: count_status(receiver) >= 30)
        assert statuses(receiver) == sent
        with hub.rest() as rest:
            await wait_until(lambda: rest.get("/v1/webhooks").json()["webhooks"][0]
                             ["state"] == "healthy", 5)
            assert rest.get("/v1/webhooks/deliveries",
                            params={"status": "failed"}).json() == {"deliveries": []}
    finally:
        hub.kill()


async def test_500_three_times_then_200_is_delivered_once(
        tmp_path: Path, receiver: Receiver) -> None:
    def answer(request: Request, seen: int) -> tuple[int, dict[str, str]]:
        flaky = request.json().get("value") == "flaky_0-0"
        return (500, {}) if flaky and seen < 3 else (200, {})

    receiver.answer = answer
    receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        await make_changes(hub, ["flaky_0"], 2)
        await wait_until(lambda: count_status(receiver) >= 2)
        tries = [r for r in receiver.requests if r.json().get("value") == "flaky_0-0"]
        assert [r.status for r in tries] == [500, 500, 500, 200]
        assert len({r.id for r in tries}) == 1
        for r in tries:  # each attempt signed afresh
            receiver.verify(r)
        assert statuses(receiver) == {"flaky_0": ["flaky_0-0", "flaky_0-1"]}
        with hub.rest() as rest:
            metrics = rest.get("/metrics").text
        assert 'result="failed_attempt"} 3.0' in metrics
    finally:
        hub.kill()


async def test_a_429_waits_for_retry_after(tmp_path: Path, receiver: Receiver) -> None:
    def answer(request: Request, seen: int) -> tuple[int, dict[str, str]]:
        if request.json().get("value") == "slow_0-0" and seen == 0:
            return 429, {"Retry-After": "1"}
        return 200, {}

    receiver.answer = answer
    receiver.start()
    hub = hub_for(tmp_path, receiver, **{**FAST, "retry_max_ms": 5000}).start()
    try:
        await make_changes(hub, ["slow_0"], 1)
        started = time.monotonic()
        await wait_until(lambda: count_status(receiver) >= 1)
        tries = [r for r in receiver.requests if r.json().get("value") == "slow_0-0"]
        assert [r.status for r in tries] == [429, 200]
        assert time.monotonic() - started >= 0.8
    finally:
        hub.kill()


async def test_a_4xx_is_dead_lettered_the_user_goes_on_and_a_retry_delivers(
        tmp_path: Path, receiver: Receiver) -> None:
    refuse = {"on": True}

    def answer(request: Request, seen: int) -> tuple[int, dict[str, str]]:
        bad = request.json().get("value") == "dl_0-0" and refuse["on"]
        return (422, {}) if bad else (200, {})

    receiver.answer = answer
    receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        await make_changes(hub, ["dl_0"], 3)
        await wait_until(lambda: count_status(receiver) >= 2)
        assert statuses(receiver) == {"dl_0": ["dl_0-1", "dl_0-2"]}
        assert [r.status for r in receiver.requests
                if r.json().get("value") == "dl_0-0"] == [422]  # final: not retried
        with hub.rest() as rest:
            failed = rest.get("/v1/webhooks/deliveries", params={"status": "failed"}).json()
            [dead] = failed["deliveries"]
            assert dead["attempts"] == 1 and dead["error"].startswith("HTTP 422")
            assert rest.get("/v1/webhooks").json()["webhooks"][0]["deadLettered"] == 1
            refuse["on"] = False
            answer_ = rest.post(f"/v1/webhooks/deliveries/{dead['id']}/retry")
            assert answer_.status_code == 202, answer_.text
            await wait_until(lambda: count_status(receiver) >= 3)
            await wait_until(lambda: rest.get("/v1/webhooks/deliveries", params={
                "status": "delivered"}).json()["deliveries"] != [], 5)
            assert rest.get("/v1/webhooks").json()["webhooks"][0]["deadLettered"] == 0
            again = rest.post(f"/v1/webhooks/deliveries/{dead['id']}/retry")
            assert again.status_code == 404
            assert rest.post("/v1/webhooks/deliveries/999/retry").status_code == 404
    finally:
        hub.kill()


async def test_kill_9_after_acknowledged_changes_delivers_all_after_restart(
        tmp_path: Path, receiver: Receiver) -> None:
    hub = hub_for(tmp_path, receiver, **FAST).start()  # receiver down: nothing delivered
    try:
        users = [f"k9_{i}" for i in range(3)]
        sent = await make_changes(hub, users, 20)
        hub.kill()  # acknowledged, not delivered
        receiver.start()
        hub.start()
        await wait_until(lambda: count_status(receiver) >= 60)
        assert statuses(receiver) == sent
        for request in receiver.accepted():
            receiver.verify(request)
    finally:
        hub.kill()


async def test_a_clean_restart_sends_nothing_twice(tmp_path: Path, receiver: Receiver) -> None:
    receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        await make_changes(hub, ["twice_0"], 5)
        await wait_until(lambda: count_status(receiver) >= 5)
        await asyncio.sleep(0.5)
        hub.stop()
        before = len(receiver.requests)
        hub.start()
        await make_changes(hub, ["twice_1"], 2)
        await wait_until(lambda: count_status(receiver) >= 7)
        ids = [r.id for r in receiver.requests]
        assert len(ids) == len(set(ids)), "an event was sent twice"
        assert len(receiver.requests) > before
    finally:
        hub.kill()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    r = watch(Receiver(free_port(), new_webhook_secret()))
    try:
        yield r
    finally:
        r.stop()


async def test_a_slow_receiver_holds_up_no_other_endpoint(
        tmp_path: Path, receiver: Receiver, other_receiver: Receiver) -> None:
    receiver.delay_s = 3.0  # answers after the endpoint's timeout
    receiver.start()
    other_receiver.start()
    hub = hub_for(tmp_path, receiver, (other_receiver, FAST),
                  **{**FAST, "timeout_ms": 300}).start()
    try:
        started = time.monotonic()
        sent = await make_changes(hub, ["slow_a", "slow_b"], 10)
        await wait_until(lambda: count_status(other_receiver) >= 20, 10)
        assert time.monotonic() - started < 8
        assert statuses(other_receiver) == sent
        with hub.rest() as rest:
            states = {w["url"]: w["state"] for w in rest.get("/v1/webhooks").json()["webhooks"]}
            assert states == {receiver.url: "retrying", other_receiver.url: "healthy"}
            assert rest.get("/healthz").status_code == 200
    finally:
        hub.kill()


async def test_a_redirect_is_not_followed(tmp_path: Path, receiver: Receiver,
                                          other_receiver: Receiver) -> None:
    def answer(_: Request, __: int) -> tuple[int, dict[str, str]]:
        return 307, {"Location": other_receiver.url}

    receiver.answer = answer
    receiver.start()
    other_receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        await make_changes(hub, ["redir_0"], 1)
        await wait_until(lambda: len(receiver.requests) >= 3)
        assert other_receiver.requests == []
        with hub.rest() as rest:
            assert rest.get("/v1/webhooks").json()["webhooks"][0]["state"] == "retrying"
    finally:
        hub.kill()


async def test_a_huge_answer_is_not_read(tmp_path: Path, receiver: Receiver) -> None:
    receiver.huge_body = True
    receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        await make_changes(hub, ["huge_0"], 5)
        await wait_until(lambda: count_status(receiver) >= 5, 10)
        assert statuses(receiver) == {"huge_0": [f"huge_0-{n}" for n in range(5)]}
        with hub.rest() as rest:
            assert rest.get("/v1/webhooks").json()["webhooks"][0]["state"] == "healthy"
    finally:
        hub.kill()


async def test_call_transitions_are_sent_with_both_parties(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.start()
    hub = hub_for(tmp_path, receiver, **FAST).start()
    try:
        await make_changes(hub, ["callee_0"], 1)
        with hub.rest() as rest:
            for status in ("Ringing", "Answered", "Ended"):
                answer = rest.put("/v1/calls/c-1", json={"from": "+8490", "to": "callee_0",
                                                         "status": status})
                assert answer.status_code == 200, answer.text

        def calls() -> list[dict[str, Any]]:
            return [r.json() for r in receiver.accepted() if r.json()["type"] == "call.state"]

        await wait_until(lambda: len(calls()) >= 3)
        assert [c["call"]["status"] for c in calls()] == ["Ringing", "Answered", "Ended"]
        ended = calls()[-1]
        assert ended["projectId"] == PROJECT_ID
        assert ended["call"]["from"] == "+8490" and ended["call"]["to"] == "callee_0"
        assert ended["call"]["direction"] == "external" and ended["call"]["endReason"]
    finally:
        hub.kill()


async def test_the_routes_answer_without_webhooks_and_refuse_bad_ids(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    hub = watch(HubProcess(tmp_path)).start()
    try:
        with hub.rest() as rest:
            assert rest.get("/v1/webhooks").json() == {"webhooks": []}
            assert rest.get("/v1/webhooks/deliveries").json() == {"deliveries": []}
            assert rest.get("/v1/webhooks/deliveries",
                            params={"status": "lost"}).status_code == 400
            assert rest.post("/v1/webhooks/deliveries/1/retry").status_code == 404
            assert rest.post(f"/v1/webhooks/deliveries/{2**70}/retry").status_code == 400
        assert httpx.get(hub.api_url + "/v1/webhooks").status_code == 401
    finally:
        hub.kill()


async def test_out_of_retries_is_dead_lettered(tmp_path: Path, receiver: Receiver) -> None:
    def answer(request: Request, seen: int) -> tuple[int, dict[str, str]]:
        return (503, {}) if request.json().get("value") == "spent_0-0" else (200, {})

    receiver.answer = answer
    receiver.start()
    hub = hub_for(tmp_path, receiver, **{**FAST, "retry_for_s": 1}).start()
    try:
        await make_changes(hub, ["spent_0"], 2)
        await wait_until(lambda: count_status(receiver) >= 1, 10)
        assert statuses(receiver) == {"spent_0": ["spent_0-1"]}  # after the dead letter
        tries = [r for r in receiver.requests if r.json().get("value") == "spent_0-0"]
        assert len(tries) >= 2
        with hub.rest() as rest:
            [dead] = rest.get("/v1/webhooks/deliveries",
                              params={"status": "failed"}).json()["deliveries"]
            assert dead["attempts"] == len(tries) and dead["error"].startswith("HTTP 503")
            assert 'result="dead_lettered"} 1.0' in rest.get("/metrics").text
    finally:
        hub.kill()


@pytest.mark.slow
async def test_a_receiver_down_for_30_s_gets_everything_in_order(
        tmp_path: Path, receiver: Receiver) -> None:
    hub = hub_for(tmp_path, receiver, retry_base_ms=200, retry_max_ms=5000).start()
    try:
        users = [f"down30_{i}" for i in range(5)]
        sent = await make_changes(hub, users, 20)
        await asyncio.sleep(30)
        receiver.start()
        await wait_until(lambda: count_status(receiver) >= 100, 30)
        assert statuses(receiver) == sent
    finally:
        hub.kill()
