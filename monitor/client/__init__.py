"""Python client SDK of the hub.

- :class:`HubClient`: the real-time WebSocket connection of one user (asyncio),
  with Stringee's event names, reconnect with backoff, resume and resync.
- :class:`RestClient` / :class:`AsyncRestClient`: the REST API (httpx).

Every error is a :class:`HubError` carrying ``r``, ``status`` and ``message``.
See ``docs/client.md`` for a guide.
"""

from monitor.client.backoff import Backoff
from monitor.client.errors import (
    AuthenticationError,
    ConnectionLostError,
    HubError,
    HubUnreachableError,
    LoggedOutError,
    NotFoundError,
    RateLimitedError,
    RefusedError,
    RequestTimeoutError,
    error_for,
)
from monitor.client.events import EVENTS, EventName, Handler
from monitor.client.hub_client import HubClient
from monitor.client.rest_client import AsyncRestClient, RestClient
from monitor.client.stats import ClientStats
from monitor.client.stream import MessageStream
from monitor.client.token_source import TokenProvider, token_expiry
from monitor.client.topics import TopicPosition, TopicTracker, Verdict

__all__ = [
    "EVENTS",
    "AsyncRestClient",
    "AuthenticationError",
    "Backoff",
    "ClientStats",
    "ConnectionLostError",
    "EventName",
    "Handler",
    "HubClient",
    "HubError",
    "HubUnreachableError",
    "LoggedOutError",
    "MessageStream",
    "NotFoundError",
    "RateLimitedError",
    "RefusedError",
    "RequestTimeoutError",
    "RestClient",
    "TokenProvider",
    "TopicPosition",
    "TopicTracker",
    "Verdict",
    "error_for",
    "token_expiry",
]
