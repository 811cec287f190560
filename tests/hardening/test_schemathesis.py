"""Schemathesis against the hub's served OpenAPI description: whatever a REST caller
sends, with or without a valid token, the hub never answers 5xx (and stays healthy)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from websockets.sync.client import connect

from tests.hub.wire import hub_with
from tests.hubproc import HubProcess

# 40 examples per operation keeps both runs under 30 s; MONITOR_FUZZ_EXAMPLES=400 for more.
SETTINGS = settings(max_examples=int(os.environ.get("MONITOR_FUZZ_EXAMPLES", "40")),
                    deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = hub_with(tmp_path_factory.mktemp("openapi"), offline_grace_ms=0)
    try:
        for user in ("agent_1", "0", "a"):  # known users, so user routes go past the 404
            hub_user_login(hub, user)
        yield hub
    finally:
        hub.kill()


def hub_user_login(hub: HubProcess, user: str) -> None:
    """Make ``user`` known to the hub: one AUTHEN over a short-lived connection."""
    with connect(hub.ws_url, open_timeout=5) as ws:
        ws.send(json.dumps({"service": 2, "body": {"requestId": 1, "accesstoken":
                                                   hub.client_token(user)}}))
        assert json.loads(ws.recv(5))["body"]["r"] == 0


@pytest.fixture(scope="module")
def api_schema(api_hub: HubProcess) -> Any:
    schema = schemathesis.openapi.from_url(api_hub.api_url + "/openapi.json")
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@SETTINGS
def test_no_5xx_with_a_valid_token(case: Any, api_hub: HubProcess) -> None:
    case.headers = {**(case.headers or {}), "X-STRINGEE-AUTH": api_hub.rest_token()}
    if case.query:
        case.query.pop("access_token", None)
    response = case.call(timeout=10)
    case.validate_response(response, checks=[not_a_server_error])


@schema.parametrize()
@SETTINGS
def test_no_5xx_with_whatever_token(case: Any) -> None:
    response = case.call(timeout=10)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code == 200 and case.path.startswith("/v1/"):
        # Only a valid REST token opens /v1: the generated ones never are.
        pytest.fail(f"{case.method} {case.path} answered 200 without a valid token")


def test_hub_is_healthy_after_the_runs(api_hub: HubProcess) -> None:
    health = httpx.get(api_hub.api_url + "/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["storeFailures"] == 0
    log = api_hub.log()
    assert "Traceback" not in log and "level=ERROR" not in log, log[-3000:]


def test_a_method_not_allowed_says_which_are(api_hub: HubProcess) -> None:
    """RFC 9110: a 405 lists the allowed methods (found by schemathesis)."""
    response = httpx.request("TRACE", api_hub.api_url + "/v1/users/agent_1", timeout=5,
                             headers={"X-STRINGEE-AUTH": api_hub.rest_token()})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["r"] == 21
