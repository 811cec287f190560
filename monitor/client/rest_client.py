"""``RestClient`` and ``AsyncRestClient``: the hub's REST API over httpx.

Both take a REST token, or an API key (``(sid, secret)`` or any object with ``sid`` and
``secret``) from which they mint short-lived REST tokens themselves and renew them
before they expire. Every failure raises a :class:`~monitor.client.HubError` subclass
carrying ``r``, the HTTP ``status`` and the hub's ``message``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from monitor.client.errors import (
    HubError,
    HubUnreachableError,
    RequestTimeoutError,
    error_for,
)
from monitor.tokens import mint_rest_token

AUTH_HEADER = "X-STRINGEE-AUTH"
MAX_PAGE_SIZE = 100
HISTORY_PAGE = 1000
RENEW_BEFORE_S = 60


class ApiKeyLike(Protocol):
    """An API key: its SID and secret (``monitor.config.ApiKey`` is one)."""

    sid: str
    secret: str


Key = tuple[str, str] | ApiKeyLike
#: An attribute value: a JSON string, number, boolean or null.
Value = str | int | float | bool | None


@dataclass
class Request:
    """One REST call, before a transport runs it."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None


def _user_path(user_id: str, *rest: str) -> str:
    """``/v1/users/{userId}/...`` with the id escaped."""
    return "/".join(["/v1/users", quote(user_id, safe=""), *rest])


def _attribute_list(attributes: Mapping[str, Value] | Iterable[Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
    """``{"name": value}`` or ``[{"attribute", "value"}]`` as the API's list."""
    if isinstance(attributes, Mapping):
        return [{"attribute": name, "value": value} for name, value in attributes.items()]
    return [{"attribute": item["attribute"], "value": item.get("value")}
            for item in attributes]


def _filter_value(value: Value) -> str:
    """A ``?value=`` filter: strings as they are, anything else as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def _users_request(page: int, limit: int, attribute: str | None, value: Value,
                  include_offline: bool) -> Request:
    params: dict[str, Any] = {"page": page, "limit": limit}
    if attribute is not None:
        params["attribute"] = attribute
        if value is not None:
            params["value"] = _filter_value(value)
    if include_offline:
        params["includeOffline"] = "true"
    return Request("GET", "/v1/users", params)


def _call_report(call_id: str, status: str, from_: str | None, to: str | None) -> Request:
    body: dict[str, Any] = {"status": status}
    if from_ is not None:
        body["from"] = from_
    if to is not None:
        body["to"] = to
    return Request("PUT", "/v1/calls/" + quote(call_id, safe=""), body=body)


def _supervised_set(user_id: str, name: str, value: Value, by: str | None,
                    reason: str | None) -> Request:
    body: dict[str, Any] = {"value": value}
    if by is not None:
        body["by"] = by
    if reason is not None:
        body["reason"] = reason
    return Request("PUT", _user_path(user_id, "attributes", quote(name, safe="")), body=body)


def _logout(user_id: str, by: str | None, reason: str | None) -> Request:
    body: dict[str, Any] = {}
    if by is not None:
        body["by"] = by
    if reason is not None:
        body["reason"] = reason
    return Request("POST", _user_path(user_id, "logout"), body=body)


def _history(user_id: str, from_ms: int, to_ms: int, attribute: str | None, limit: int,
             cursor: str | None) -> Request:
    params: dict[str, Any] = {"from": from_ms, "to": to_ms, "limit": limit}
    if attribute is not None:
        params["attribute"] = attribute
    if cursor is not None:
        params["cursor"] = cursor
    return Request("GET", _user_path(user_id, "history"), params)


def _agents_report(from_ms: int, to_ms: int, group_attribute: str | None,
                   group: str | None) -> Request:
    params: dict[str, Any] = {"from": from_ms, "to": to_ms}
    if group_attribute is not None:
        params["groupAttribute"] = group_attribute
    if group is not None:
        params["group"] = group
    return Request("GET", "/v1/reports/agents", params)


def _calls_report(from_ms: int, to_ms: int, interval: str, sla_seconds: int) -> Request:
    return Request("GET", "/v1/reports/calls", {"from": from_ms, "to": to_ms,
                                                "interval": interval,
                                                "slaSeconds": sla_seconds})


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response (every answer of the REST API is one);
    the typed error of any other."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if not isinstance(body, dict):
            raise HubError(f"answer is not a JSON object: {response.text[:200]!r}",
                           status=response.status_code)
        return body
    if isinstance(body, dict):
        raise error_for(body.get("r"), body.get("message"), status=response.status_code,
                        retry_after=_retry_after(response))
    raise error_for(None, response.text[:200] or response.reason_phrase,
                    status=response.status_code, retry_after=_retry_after(response))


def _calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``calls`` of a ``GET /v1/calls`` answer."""
    calls = body.get("calls", [])
    if not isinstance(calls, list):
        raise HubError("GET /v1/calls answered without a calls list")
    return [call for call in calls if isinstance(call, dict)]


def _transport_error(exc: httpx.TransportError, url: str) -> HubError:
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"no answer from {url}: {exc!r}")
    return HubUnreachableError(f"cannot reach {url}: {exc!r}")


class _Credentials:
    """A fixed REST token, or a key to mint and renew them."""

    def __init__(self, rest_token: str | None, key: Key | None, ttl_s: int) -> None:
        if (rest_token is None) == (key is None):
            raise ValueError("give either rest_token or key")
        self._token = rest_token
        self._key = (key if isinstance(key, tuple) else (key.sid, key.secret)) \
            if key is not None else None
        self._ttl_s = ttl_s
        self._expires = 0.0

    def token(self) -> str:
        if self._key is not None and time.time() > self._expires - RENEW_BEFORE_S:
            sid, secret = self._key
            self._token = mint_rest_token(sid, secret, ttl_s=self._ttl_s)
            self._expires = time.time() + self._ttl_s
        assert self._token is not None
        return self._token


class _Pages:
    """Walks ``GET /v1/users`` pages; stops at a short page or at ``count``."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, min(limit, MAX_PAGE_SIZE))
        self.page = 1
        self.seen: set[str] = set()
        self.done = False

    def take(self, body: Any) -> list[dict[str, Any]]:
        users = body.get("users") if isinstance(body, dict) else None
        if not isinstance(users, list):
            raise HubError("GET /v1/users answered without a users list")
        fresh = []
        for user in users:
            user_id = user.get("userId") if isinstance(user, dict) else None
            if isinstance(user_id, str) and user_id not in self.seen:
                self.seen.add(user_id)  # users coming online can shift pages
                fresh.append(user)
        count = body.get("count")
        self.done = len(users) < self.limit or (
            isinstance(count, int) and self.page * self.limit >= count)
        self.page += 1
        return fresh


class RestClient:
    """Synchronous client of the REST API (``httpx.Client``); use as a context manager.

    ``base_url`` is the API root (``http://HOST:6900``). ``rest_token`` or ``key``
    authenticates; ``token_ttl_s`` is the lifetime of tokens minted from ``key``.
    ``transport`` lets tests plug in ``httpx.MockTransport``.
    """

    def __init__(self, base_url: str, rest_token: str | None = None, *,
                 key: Key | None = None, timeout: float = 10.0, token_ttl_s: int = 3600,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = _Credentials(rest_token, key, token_ttl_s)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  transport=transport)

    def send(self, request: Request) -> dict[str, Any]:
        """Run one call; return its JSON or raise the typed error."""
        try:
            response = self._http.request(
                request.method, request.path, params=request.params or None,
                json=request.body, headers={AUTH_HEADER: self._credentials.token()})
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.base_url) from exc
        return _answer(response)

    def get_user(self, user_id: str) -> dict[str, Any]:
        """``GET /v1/users/{userId}``: ``loginTime``, ``attributes`` (``onlineStatus`` and
        ``call`` always listed), ``userId``. :class:`NotFoundError` if unknown."""
        return self.send(Request("GET", _user_path(user_id)))

    def change_attributes(self, user_id: str,
                          attributes: Mapping[str, Value] | Iterable[Mapping[str, Any]]
                          ) -> dict[str, Any]:
        """``PUT /v1/users/{userId}/attributes``: set 1-50 attributes atomically, published
        through the user's grants; answers the user once durable."""
        return self.send(Request("PUT", _user_path(user_id, "attributes"),
                                 body=_attribute_list(attributes)))

    def list_users_page(self, page: int = 1, *, limit: int = MAX_PAGE_SIZE,
                        attribute: str | None = None, value: Value = None,
                        include_offline: bool = False) -> dict[str, Any]:
        """One page of ``GET /v1/users``: ``{"count", "pageSize", "users"}``."""
        return self.send(_users_request(page, limit, attribute, value,
                                       include_offline))

    def list_users(self, *, attribute: str | None = None, value: Value = None,
                   include_offline: bool = False, page_size: int = MAX_PAGE_SIZE
                   ) -> Iterator[dict[str, Any]]:
        """Every online user (every known user with ``include_offline``), page by page;
        only those whose ``attribute`` equals ``value`` when given."""
        pages = _Pages(page_size)
        while not pages.done:
            yield from pages.take(self.send(_users_request(
                pages.page, pages.limit, attribute, value, include_offline)))

    def disconnect_user(self, user_id: str) -> dict[str, Any]:
        """``POST /v1/users/{userId}/disconnect``: close the user's connections
        (supervisor force-offline); answers ``{"r", "message", "closed"}``."""
        return self.send(Request("POST", _user_path(user_id, "disconnect")))

    def set_user_attribute(self, user_id: str, name: str, value: Value, *,
                           by: str | None = None, reason: str | None = None
                           ) -> dict[str, Any]:
        """``PUT /v1/users/{userId}/attributes/{name}``: a supervisor's change, published
        with ``changedBy`` (``by``, default ``rest``) and ``reason``; answers the user."""
        return self.send(_supervised_set(user_id, name, value, by, reason))

    def log_out_user(self, user_id: str, *, reason: str | None = None,
                     by: str | None = None) -> dict[str, Any]:
        """``POST /v1/users/{userId}/logout``: a supervisor's logout that sticks (the
        user's logins are refused for the hub's ``logout_hold_ms``: ``holdMs``)."""
        return self.send(_logout(user_id, by, reason))

    def report_call(self, call_id: str, status: str, *, from_: str | None = None,
                    to: str | None = None) -> dict[str, Any]:
        """``PUT /v1/calls/{callId}``: a telephony system reports a call's status."""
        return self.send(_call_report(call_id, status, from_, to))

    def list_calls(self) -> list[dict[str, Any]]:
        """``GET /v1/calls``: the project's calls in progress."""
        return _calls(self.send(Request("GET", "/v1/calls")))

    def user_history(self, user_id: str, from_ms: int, to_ms: int, *,
                     attribute: str | None = None,
                     page_size: int = HISTORY_PAGE) -> list[dict[str, Any]]:
        """``GET /v1/users/{userId}/history``, every page: the user's attribute changes
        in ``[from_ms, to_ms)``, oldest first."""
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            body = self.send(_history(user_id, from_ms, to_ms, attribute, page_size, cursor))
            events += body.get("events", [])
            cursor = body.get("nextCursor")
            if not cursor:
                return events

    def agents_report(self, from_ms: int, to_ms: int, *, group_attribute: str | None = None,
                      group: str | None = None) -> dict[str, Any]:
        """``GET /v1/reports/agents``: per agent, time online (by status), calls handled
        and missed, ring and talk time, occupancy over ``[from_ms, to_ms)``."""
        return self.send(_agents_report(from_ms, to_ms, group_attribute, group))

    def calls_report(self, from_ms: int, to_ms: int, *, interval: str = "1h",
                     sla_seconds: int = 20) -> dict[str, Any]:
        """``GET /v1/reports/calls``: calls offered, answered, abandoned... per interval
        (``15m``, ``30m``, ``1h`` or ``1d``)."""
        return self.send(_calls_report(from_ms, to_ms, interval, sla_seconds))

    def health(self) -> dict[str, Any]:
        """``GET /healthz`` (no auth needed, sent anyway)."""
        return self.send(Request("GET", "/healthz"))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRestClient:
    """The same API as :class:`RestClient`, for asyncio (``httpx.AsyncClient``)."""

    def __init__(self, base_url: str, rest_token: str | None = None, *,
                 key: Key | None = None, timeout: float = 10.0, token_ttl_s: int = 3600,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = _Credentials(rest_token, key, token_ttl_s)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       transport=transport)

    async def send(self, request: Request) -> dict[str, Any]:
        """Run one call; return its JSON or raise the typed error."""
        try:
            response = await self._http.request(
                request.method, request.path, params=request.params or None,
                json=request.body, headers={AUTH_HEADER: self._credentials.token()})
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.base_url) from exc
        return _answer(response)

    async def get_user(self, user_id: str) -> dict[str, Any]:
        """See :meth:`RestClient.get_user`."""
        return await self.send(Request("GET", _user_path(user_id)))

    async def change_attributes(self, user_id: str,
                                attributes: Mapping[str, Value] | Iterable[Mapping[str, Any]]
                                ) -> dict[str, Any]:
        """See :meth:`RestClient.change_attributes`."""
        return await self.send(Request("PUT", _user_path(user_id, "attributes"),
                                       body=_attribute_list(attributes)))

    async def list_users_page(self, page: int = 1, *, limit: int = MAX_PAGE_SIZE,
                              attribute: str | None = None, value: Value = None,
                              include_offline: bool = False) -> dict[str, Any]:
        """See :meth:`RestClient.list_users_page`."""
        return await self.send(_users_request(page, limit, attribute, value,
                                             include_offline))

    async def list_users(self, *, attribute: str | None = None, value: Value = None,
                         include_offline: bool = False, page_size: int = MAX_PAGE_SIZE
                         ) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`RestClient.list_users`; an async iterator."""
        pages = _Pages(page_size)
        while not pages.done:
            for user in pages.take(await self.send(_users_request(
                    pages.page, pages.limit, attribute, value, include_offline))):
                yield user

    async def disconnect_user(self, user_id: str) -> dict[str, Any]:
        """See :meth:`RestClient.disconnect_user`."""
        return await self.send(Request("POST", _user_path(user_id, "disconnect")))

    async def set_user_attribute(self, user_id: str, name: str, value: Value, *,
                                 by: str | None = None, reason: str | None = None
                                 ) -> dict[str, Any]:
        """See :meth:`RestClient.set_user_attribute`."""
        return await self.send(_supervised_set(user_id, name, value, by, reason))

    async def log_out_user(self, user_id: str, *, reason: str | None = None,
                           by: str | None = None) -> dict[str, Any]:
        """See :meth:`RestClient.log_out_user`."""
        return await self.send(_logout(user_id, by, reason))

    async def report_call(self, call_id: str, status: str, *, from_: str | None = None,
                          to: str | None = None) -> dict[str, Any]:
        """See :meth:`RestClient.report_call`."""
        return await self.send(_call_report(call_id, status, from_, to))

    async def list_calls(self) -> list[dict[str, Any]]:
        """See :meth:`RestClient.list_calls`."""
        return _calls(await self.send(Request("GET", "/v1/calls")))

    async def user_history(self, user_id: str, from_ms: int, to_ms: int, *,
                           attribute: str | None = None,
                           page_size: int = HISTORY_PAGE) -> list[dict[str, Any]]:
        """See :meth:`RestClient.user_history`."""
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            body = await self.send(_history(user_id, from_ms, to_ms, attribute, page_size,
                                            cursor))
            events += body.get("events", [])
            cursor = body.get("nextCursor")
            if not cursor:
                return events

    async def agents_report(self, from_ms: int, to_ms: int, *,
                            group_attribute: str | None = None,
                            group: str | None = None) -> dict[str, Any]:
        """See :meth:`RestClient.agents_report`."""
        return await self.send(_agents_report(from_ms, to_ms, group_attribute, group))

    async def calls_report(self, from_ms: int, to_ms: int, *, interval: str = "1h",
                           sla_seconds: int = 20) -> dict[str, Any]:
        """See :meth:`RestClient.calls_report`."""
        return await self.send(_calls_report(from_ms, to_ms, interval, sla_seconds))

    async def health(self) -> dict[str, Any]:
        """See :meth:`RestClient.health`."""
        return await self.send(Request("GET", "/healthz"))

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
