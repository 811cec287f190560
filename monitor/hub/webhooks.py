"""Webhooks, decided: what an endpoint is sent, how it is signed, when it is retried, and
in what order. Pure: no sockets, no clock (the time is always given).

The event log is the outbox (:mod:`monitor.hub.history`): an event logged in the same
commit as its change is an event that will be delivered. Each endpoint reads the log
from a durable cursor; :class:`Lanes` lets a user's events go one at a time, in log
order, while other users' go concurrently. Signing follows Standard Webhooks
(https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` (seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

from monitor.config import Project, Webhook, webhook_secret_bytes
from monitor.protocol import to_json

Outcome = Literal["delivered", "retry", "final"]
USER_AGENT = "monitor-webhooks/1"


def endpoint_id(project_id: int, url: str) -> str:
    """A short stable name of an endpoint (its cursor's key, REST, metrics labels)."""
    return hashlib.sha256(f"{project_id} {url}".encode()).hexdigest()[:12]


def endpoint_ids(projects: Sequence[Project]) -> dict[int, tuple[str, ...]]:
    """Each project with webhooks, and its endpoints' ids."""
    return {p.id: tuple(endpoint_id(p.id, h.url) for h in p.webhooks)
            for p in projects if p.webhooks}


def message_id(project_id: int, position: int) -> str:
    """The ``webhook-id`` of an event: the same on every attempt and every endpoint."""
    return f"msg_{project_id}_{position}"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded)."""
    key = webhook_secret_bytes(secret)
    if key is None:
        raise ValueError("not a whsec_ secret")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value (``secret``: the ``whsec_`` text, or its
    key as :func:`secret_key` gives it)."""
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    content = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str | bytes, msg_id: str, timestamp_s: int, body: bytes
            ) -> dict[str, str]:
    return {"content-type": "application/json", "user-agent": USER_AGENT,
            "webhook-id": msg_id, "webhook-timestamp": str(timestamp_s),
            "webhook-signature": sign(secret, msg_id, timestamp_s, body)}


def payload(project_id: int, event: Mapping[str, Any]) -> bytes:
    """The POST body of a logged event (as :func:`monitor.hub.store.history.event_of`
    reads it back): the event with its ``projectId``."""
    out = {"type": event["type"], "projectId": project_id}
    out.update((k, v) for k, v in event.items() if k not in out)
    return to_json(out).encode()


def wanted(hook: Webhook, event: Mapping[str, Any]) -> bool:
    """Whether ``hook`` is sent ``event``. ``attributes``: attribute changes of those
    attributes only, and call transitions only if ``call`` is one; ``topics``: attribute
    changes published to one of them only (call transitions have no topics)."""
    if event.get("type") == "call.state":
        return (not hook.attributes or "call" in hook.attributes) and not hook.topics
    if hook.attributes and event.get("attribute") not in hook.attributes:
        return False
    return not hook.topics or any(t in hook.topics for t in event.get("topics") or ())


def order_keys(event: Mapping[str, Any]) -> tuple[str, ...]:
    """Whose events ``event`` must not overtake: its user's; a call transition, both
    parties' (or the call's own, with no party named)."""
    if event.get("type") == "call.state":
        call = event.get("call") or {}
        parties = tuple(dict.fromkeys(
            "u:" + p for p in (call.get("from"), call.get("to")) if isinstance(p, str)))
        return parties or ("c:" + str(call.get("callId")),)
    return ("u:" + str(event.get("userId")),)


def outcome_of(status: int) -> Outcome:
    """2xx delivered; 4xx but 408 and 429 final; anything else (5xx, 408, 429, a 3xx
    redirect not followed) retried."""
    if 200 <= status < 300:
        return "delivered"
    if 400 <= status < 500 and status not in (408, 429):
        return "final"
    return "retry"


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as a wait in ms."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int(when.timestamp() * 1000) - now_ms)


def backoff_ms(attempt: int, base_ms: int, max_ms: int, unit: float) -> int:
    """The wait before retry ``attempt`` (1 = the first retry): exponential with full
    jitter, ``unit`` a random number in [0, 1)."""
    ceiling = min(max_ms, base_ms * (1 << min(attempt - 1, 40)))
    return int(unit * ceiling)


def next_wait_ms(attempt: int, hook: Webhook, unit: float, retry_after: int | None) -> int:
    """The wait before the next attempt, a ``Retry-After`` honoured (within the cap)."""
    wait = backoff_ms(attempt, hook.retry_base_ms, hook.retry_max_ms, unit)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return min(wait, hook.retry_max_ms)


class Lanes:
    """Per-key FIFO lanes of log positions: an event may go once it heads the lane of
    every key it has; when it is done, the events it held up may go."""

    def __init__(self) -> None:
        self._lanes: dict[str, deque[int]] = {}
        self._keys: dict[int, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def _ready(self, position: int) -> bool:
        return all(self._lanes[k][0] == position for k in self._keys[position])

    def add(self, position: int, keys: Sequence[str]) -> bool:
        """Queue ``position`` (after every position added before); whether it may go."""
        self._keys[position] = tuple(keys)
        for key in keys:
            self._lanes.setdefault(key, deque()).append(position)
        return self._ready(position)

    def done(self, position: int) -> list[int]:
        """``position`` (which had gone) is done: the positions that may go now."""
        out = []
        for key in self._keys.pop(position):
            lane = self._lanes[key]
            lane.popleft()
            if not lane:
                del self._lanes[key]
            elif self._ready(lane[0]) and lane[0] not in out:
                out.append(lane[0])
        return out


@dataclass(frozen=True, slots=True)
class Delivery:
    """A dead-lettered (or re-sent) event of an endpoint."""

    id: int
    project_id: int
    endpoint: str
    position: int
    body: bytes
    attempts: int
    error: str
    status: str  # failed, retrying, delivered
    failed_ms: int
    updated_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "webhookId":
                message_id(self.project_id, self.position), "status": self.status,
                "attempts": self.attempts, "error": self.error, "failedAt": self.failed_ms,
                "updatedAt": self.updated_ms}


class Outbox(Protocol):
    """The event log, as an endpoint reads it."""

    async def events_after(self, project_id: int, after: int, limit: int
                           ) -> list[tuple[int, dict[str, Any]]]: ...


class DeliveryStore(Protocol):
    """Each endpoint's durable cursor and dead letters."""

    async def last_position(self, project_id: int) -> int: ...

    async def cursor(self, project_id: int, endpoint: str) -> int | None: ...

    async def init_cursor(self, project_id: int, endpoint: str, position: int) -> None:
        """Set a new endpoint's cursor, unless it has one."""

    async def save_cursor(self, project_id: int, endpoint: str, position: int) -> bool:
        """Move the cursor forward; False if refused (the endpoint's lease, on a hub of
        many, is no longer this node's)."""


    async def dead_letter(self, project_id: int, endpoint: str, position: int, body: bytes,
                          attempts: int, error: str, now_ms: int) -> int:
        """Add a dead letter; its id. Raises :class:`LeaseLost` if refused."""


    async def deliveries(self, project_id: int, status: str | None, limit: int
                         ) -> list[Delivery]: ...

    async def delivery(self, project_id: int, delivery_id: int) -> Delivery | None: ...

    async def set_status(self, project_id: int, delivery_id: int, status: str,
                         attempts: int, error: str, now_ms: int) -> None: ...

    async def dead_count(self, project_id: int, endpoint: str) -> int: ...

    async def prune_dead(self, project_id: int, now_ms: int) -> int: ...


class LeaseLost(Exception):
    """A write refused: the endpoint's lease is another node's (or none's) now."""


class Lease(Protocol):
    """Who sends for an endpoint, on a hub of many nodes: one live node at a time. Each
    acquisition is a new term; the store's writes for the endpoint (cursor, dead
    letters) are refused unless this node's term still holds the lease."""

    async def acquire(self, project_id: int, endpoint: str, lease_ms: int) -> bool: ...

    async def renew(self, project_id: int, endpoint: str, lease_ms: int) -> bool: ...

    async def release(self, project_id: int, endpoint: str) -> None: ...
