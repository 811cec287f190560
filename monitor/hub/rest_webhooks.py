"""REST routes of the webhooks (docs/webhooks.md): the project's endpoints and their
state, its dead-lettered deliveries, and sending one again."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time,
# and ``Project`` is the caller's dependency.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query
from pydantic import BaseModel

from monitor.hub.port import HubPort
from monitor.hub.rest import ERRORS, ApiError, RouteInstaller
from monitor.hub.webhook_delivery import WebhookThread
from monitor.protocol import Result

MAX_DELIVERIES = 1000
MAX_ID = 2**63 - 1  # a delivery id is a SQLite integer


class EndpointBody(BaseModel):
    id: str
    url: str
    state: str
    retryingSince: int | None = None
    pending: int
    delivered: int
    deadLettered: int
    sending: bool


class EndpointList(BaseModel):
    webhooks: list[EndpointBody]


class DeliveryBody(BaseModel):
    id: int
    endpoint: str
    webhookId: str
    status: str
    attempts: int
    error: str
    failedAt: int
    updatedAt: int


class DeliveryList(BaseModel):
    deliveries: list[DeliveryBody]


def webhook_routes(dispatcher: WebhookThread | None) -> RouteInstaller:
    """The installer of the routes, answering from ``dispatcher`` (None: no webhooks)."""

    def install(app: FastAPI, hub: HubPort,
                project_of: Callable[..., Awaitable[int]]) -> None:
        Project = Annotated[int, Depends(project_of)]

        @app.get("/v1/webhooks", response_model=EndpointList, responses=ERRORS)
        async def list_webhooks(project_id: Project) -> dict[str, Any]:
            """The project's endpoints: healthy, or retrying since when; events pending,
            delivered since the start, dead-lettered; whether this node sends for it
            (on a hub of many, one node does, and knows its state)."""
            found = await dispatcher.project_endpoints(project_id) if dispatcher else []
            return {"webhooks": found}

        @app.get("/v1/webhooks/deliveries", response_model=DeliveryList, responses=ERRORS)
        async def list_deliveries(
            project_id: Project,
            status: Annotated[str | None, Query(pattern="^(failed|retrying|delivered)$")]
            = None,
            limit: Annotated[int, Query(ge=1, le=MAX_DELIVERIES)] = 100,
        ) -> dict[str, Any]:
            """Dead-lettered deliveries, newest first (`status=failed`: those still
            failed; `retrying`: sent again now; `delivered`: sent again and delivered)."""
            if dispatcher is None:
                return {"deliveries": []}
            found = await dispatcher.deliveries(project_id, status, limit)
            return {"deliveries": [d.to_json() for d in found]}

        @app.post("/v1/webhooks/deliveries/{deliveryId}/retry", response_model=DeliveryBody,
                  status_code=202, responses=ERRORS)
        async def retry_delivery(deliveryId: Annotated[int, Path(ge=1, le=MAX_ID)],
                                 project_id: Project) -> dict[str, Any]:
            """Send a failed delivery again, with the endpoint's retries (out of its
            user's order: later events went on without it)."""
            found = await dispatcher.retry(project_id, deliveryId) if dispatcher else None
            if found is None:
                raise ApiError(Result.INVALID_REQUEST,
                               f"no failed delivery {deliveryId} of a configured endpoint",
                               status=404)
            return found.to_json()

    return install
