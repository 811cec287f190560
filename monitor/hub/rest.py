"""The REST API (FastAPI, served by uvicorn in the hub's event loop).

Every change goes through the same state and commit pipeline as the WebSocket's
CHANGE_ATTRIBUTE, so REST changes publish exactly like client changes.
"""

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor import __version__
from monitor.hub.calls import CallError
from monitor.hub.limits import RateLimiter
from monitor.hub.metrics import render
from monitor.hub.port import HubPort
from monitor.hub.state import Effects, HubState, User, UserRow
from monitor.hub.supervision import REST_GRANTS, Refused, actor_of
from monitor.hub.supervisors import Action, Supervisors
from monitor.protocol import (
    MAX_ATTRIBUTE_GRANTS,
    MAX_USER_ID_CHARS,
    MESSAGES,
    Result,
    has_hidden_chars,
)
from monitor.tokens import (
    MAX_DISPLAY_NAME_CHARS,
    AttributeGrant,
    Grants,
    TokenError,
    parse_attributes,
    verify_rest_token,
)

STATUS_FOR = {Result.USER_NOT_FOUND: 404, Result.RATE_LIMITED: 429,
              Result.INTERNAL_ERROR: 500, Result.INVALID_CALL: 400}
# The largest request body read: 50 changes of 64-character names and 1 KiB values fit
# many times over. Beyond it, 413 before the body is read (or as soon as it is too long).
MAX_BODY_BYTES = 256 * 1024


class ApiError(Exception):
    """An error answered as ``{"r", "message"}`` with an HTTP status."""

    def __init__(self, r: Result, message: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.r = r
        self.headers = headers
        self.message = message or MESSAGES[r]
        self.status = status or (401 if int(r) < 20 else STATUS_FOR.get(r, 400))


class ErrorBody(BaseModel):
    r: int
    message: str


class AttributeChange(BaseModel):
    attribute: str
    value: str | int | float | bool | None


class AttributeValue(BaseModel):
    attribute: str
    value: str | int | float | bool | None = None


class UserBody(BaseModel):
    userId: str
    loginTime: int | None
    attributes: list[AttributeValue]
    chatCustomer: bool = False
    displayName: str | None = None


class GrantBody(BaseModel):
    attribute: str
    topic: str


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    displayName: str | None = None
    publish: list[GrantBody] | None = Field(default=None, max_length=MAX_ATTRIBUTE_GRANTS)


class UserList(BaseModel):
    count: int
    pageSize: int
    users: list[UserBody]


class DisconnectBody(BaseModel):
    r: int
    message: str
    closed: int


class LogoutBody(BaseModel):
    r: int
    message: str
    userId: str
    holdMs: int


class CallReport(BaseModel):
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    status: str


class CallBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    callId: str
    from_: str = Field(alias="from")
    to: str
    status: str


class CallList(BaseModel):
    count: int
    calls: list[CallBody]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 404: {"model": ErrorBody},
    429: {"model": ErrorBody}}


log = logging.getLogger("monitor.hub")


def http_protocol(hub: HubPort, header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, where a connection that has not sent a complete
    request header within ``header_timeout_s`` of opening (or of its previous response)
    is closed: uvicorn alone keeps a slow-loris client's half-sent header forever."""

    class BoundedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timeout()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timeout()

        def _arm_header_timeout(self) -> None:
            self.loop.call_later(header_timeout_s, self._header_timeout, self.cycle)

        def _header_timeout(self, cycle: object) -> None:
            if self.cycle is cycle and not self.transport.is_closing():  # no new request
                hub.metrics.handshake_failed("rest_timeout")
                log.info("event=handshake_failed remote=%s reason=rest_timeout",
                         f"{self.client[0]}:{self.client[1]}" if self.client else "?")
                self.transport.close()

    return BoundedH11Protocol


REST_CLAIMS = "monitor.rest_claims"  # where the RequestGate leaves a request's verified token


def _token_of(scope: Any) -> str | None:
    """The REST token of a request: the ``X-STRINGEE-AUTH`` header, else ``access_token``
    in the query string (as :func:`build_app`'s ``project_of`` reads them)."""
    for name, value in scope["headers"]:
        if name == b"x-stringee-auth":
            return bytes(value).decode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tokens = query.get("access_token")
    return tokens[0] if tokens else None


class RequestGate:
    """ASGI middleware: what a request may cost the hub is settled before it costs it.

    1. A ``/v1`` request's token is checked from its headers: without a valid REST token,
       401 before a byte of its body is read.
    2. A body over ``limit`` bytes is refused with 413, before it is read when its
       Content-Length says so, else as soon as it passes the limit.
    3. A body must arrive within ``body_timeout_s`` of the request's header: a client
       trickling a byte at a time gets 408 and the connection is closed.
    """

    def __init__(self, app: Any, limit: int, hub: HubPort, body_timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.hub = hub
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        has_body = b"content-length" in headers or b"transfer-encoding" in headers
        if scope["path"].startswith("/v1/"):
            try:
                # Kept for the route's project_of: one HMAC per request, not two.
                scope[REST_CLAIMS] = verify_rest_token(_token_of(scope), self.hub.secret_for)
            except TokenError as exc:
                metrics = self.hub.metrics
                metrics.auth_failures[str(int(exc.code))] = \
                    metrics.auth_failures.get(str(int(exc.code)), 0) + 1
                # Close rather than read a body the caller had no right to send.
                response = JSONResponse({"r": int(exc.code), "message": exc.message},
                                        status_code=401,
                                        headers={"Connection": "close"} if has_body else None)
                await response(scope, receive, send)
                return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            self.hub.metrics.refused("rest", Result.INVALID_REQUEST)
            response = JSONResponse({"r": int(Result.INVALID_REQUEST),
                                     "message": f"request body over {self.limit} bytes"},
                                    status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s

        async def limited() -> Any:
            nonlocal received
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                log.info("event=rest_body_timeout path=%s received=%d", scope["path"],
                         received)
                raise StarletteHTTPException(
                    408, f"request body not received within {self.body_timeout_s:g} s",
                    headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # chunked, no Content-Length: FastAPI answers it
                    raise StarletteHTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def remember_user(state: HubState, project_id: int, user_id: str, display_name: str | None,
                  publish: tuple[AttributeGrant, ...] | None, now_ms: int
                  ) -> tuple[Effects, bool]:
    """Make ``user_id`` known (offline), or give a known user a name or the topics its
    attributes publish to (``None``: unchanged); the effects, and whether it is new.

    A new user's ``offline`` is published through its grants: a monitor watching those
    topics lists it at once. Its next login's token sets its name and grants anew.
    """
    before = state.user(project_id, user_id)
    user = before or state.user_or_new(project_id, user_id)
    name, grants = user.display_name, user.grants
    if display_name is not None:
        user.display_name = display_name
    if publish is not None:
        state.set_grants(user, Grants(grants.subscribe, publish, grants.supervise))
    effects = Effects(ops=[UserRow(project_id, user_id, user.display_name, user.login_time,
                                   user.grants)])

    def undo() -> None:  # the store refused it: as if it never happened
        user.display_name = name
        state.set_grants(user, grants)
        if before is None and not user.sessions:
            state.users.pop((project_id, user_id), None)

    effects.undo.append(undo)
    if before is None:
        effects.extend(state.coordinator.introduce(state, user, now_ms))
    return effects, before is None


def _value_matches(stored: Any, wanted: str) -> bool:
    """``?value=`` compares with strings as they are and other values as JSON text."""
    return stored == wanted if isinstance(stored, str) else json.dumps(stored) == wanted


# Routes added by another module: given the app, the hub and the dependency that gives
# a request's project (checking its REST token).
RouteInstaller = Callable[[FastAPI, HubPort, Callable[..., Awaitable[int]]], None]


def build_app(hub: HubPort, installers: Sequence[RouteInstaller] = ()) -> FastAPI:
    """The ASGI application of ``hub``, with the routes ``installers`` add."""
    app = FastAPI(title="monitor hub REST API", version=__version__,
                  description="Read and change users' attributes; presence and calls.")
    settings = hub.config.hub
    app.add_middleware(RequestGate, limit=MAX_BODY_BYTES, hub=hub,
                       body_timeout_s=settings.rest_body_timeout_ms / 1000)
    change_limiter = RateLimiter(settings.rest_change_rate_per_key,
                                 settings.rest_change_burst_per_key)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        if int(exc.r) >= Result.NOT_AUTHENTICATED:  # authentication is counted on its own
            hub.metrics.refused("rest", exc.r)
        return JSONResponse({"r": int(exc.r), "message": exc.message}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        hub.metrics.refused("rest", Result.INVALID_REQUEST)
        return JSONResponse({"r": int(Result.INVALID_REQUEST),
                             "message": f"invalid request: {where}: {first.get('msg', '')}"},
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        r = Result.USER_NOT_FOUND if exc.status_code == 404 else Result.INVALID_REQUEST
        hub.metrics.refused("rest", r)
        return JSONResponse({"r": int(r), "message": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)  # e.g. Allow

    async def project_of(
        request: Request,
        x_stringee_auth: Annotated[str | None, Header(alias="X-STRINGEE-AUTH")] = None,
        access_token: Annotated[str | None, Query()] = None,
    ) -> int:
        """The project whose REST token authenticates this request (async: FastAPI runs
        a plain def dependency on a worker thread, which costs more than the check).
        The request's ``state.key_sid`` names the API key, for limits per key."""
        claims = request.scope.get(REST_CLAIMS)  # checked by the RequestGate already
        try:
            if claims is None:
                claims = verify_rest_token(x_stringee_auth or access_token, hub.secret_for)
        except TokenError as exc:
            hub.metrics.auth_failures[str(int(exc.code))] = \
                hub.metrics.auth_failures.get(str(int(exc.code)), 0) + 1
            raise ApiError(exc.code, exc.message) from None
        found = hub.config.key(claims.key_sid)
        assert found is not None
        request.state.key_sid = claims.key_sid
        return found[0].id

    Project = Annotated[int, Depends(project_of)]

    def limit_changes(request: Request) -> None:
        """Each API key makes at most ``rest_change_rate_per_key`` changes a second."""
        wait_s = change_limiter.wait(request.state.key_sid)
        if wait_s:
            raise ApiError(Result.RATE_LIMITED, "too many changes with this API key: slow down",
                           headers={"Retry-After": str(max(1, math.ceil(wait_s)))})

    def known_user(project_id: int, user_id: str) -> User:
        user = hub.state.user(project_id, user_id)
        if user is None:
            raise ApiError(Result.USER_NOT_FOUND, f"user {user_id!r} not found")
        return user

    @app.get("/v1/users/{userId}", response_model=UserBody, response_model_exclude_unset=True,
             responses=ERRORS)
    async def get_user(userId: str, project_id: Project) -> dict[str, Any]:
        """A user's attributes; `onlineStatus` and `call` are always listed."""
        return known_user(project_id, userId).public()

    @app.put("/v1/users/{userId}", response_model=UserBody, response_model_exclude_unset=True,
             responses={**ERRORS, 201: {"model": UserBody}})
    async def put_user(userId: str, project_id: Project, request: Request, response: Response,
                       body: Annotated[UserRecord | None, Body()] = None) -> dict[str, Any]:
        """Make a user known without a connection (an agent who has not logged in yet),
        or change a known user's name and grants: body `{"displayName"?, "publish"?:
        [{"attribute", "topic"}]}`. A new user is offline: listed by `GET /v1/users?
        includeOffline=true` and in the snapshots of the topics it publishes to, and a
        call reported for it publishes its `call`. 201 when created, else 200. Limited
        like the PUT of attributes."""
        limit_changes(request)
        record = body or UserRecord()
        if not 1 <= len(userId) <= MAX_USER_ID_CHARS or has_hidden_chars(userId) \
                or userId != userId.strip():
            raise ApiError(Result.INVALID_REQUEST, f"userId must be 1-{MAX_USER_ID_CHARS} "
                           "characters, with no control or format character and no blank "
                           "at either end")
        name = record.displayName
        if name is not None and (not 1 <= len(name) <= MAX_DISPLAY_NAME_CHARS
                                 or has_hidden_chars(name)):
            raise ApiError(Result.INVALID_REQUEST, f"displayName must be 1-"
                           f"{MAX_DISPLAY_NAME_CHARS} characters, with no control or format "
                           "character")
        try:
            published = None if record.publish is None else parse_attributes(
                [grant.model_dump() for grant in record.publish])
        except TokenError as exc:
            raise ApiError(Result.INVALID_REQUEST, f"publish: {exc.message}") from None
        effects, created = remember_user(hub.state, project_id, userId, name, published,
                                         hub.now_ms())
        if not await hub.submit(effects):
            raise ApiError(Result.INTERNAL_ERROR, "the user could not be stored")
        if created:
            response.status_code = 201
        return known_user(project_id, userId).public()

    @app.put("/v1/users/{userId}/attributes", response_model=UserBody,
             response_model_exclude_unset=True, responses=ERRORS)
    async def change_attributes(userId: str, changes: list[AttributeChange],
                                project_id: Project, request: Request) -> dict[str, Any]:
        """Change 1-50 attributes atomically; each change is published through the
        user's grants exactly like CHANGE_ATTRIBUTE. Answers once durable. Each API key
        may make `rest_change_rate_per_key` such requests a second (429 beyond)."""
        limit_changes(request)
        user = known_user(project_id, userId)
        effects = hub.state.change_attributes(project_id, userId,
                                              [c.model_dump() for c in changes], hub.now_ms())
        if effects.result != Result.SUCCESS:
            raise ApiError(effects.result, effects.message)
        if not await hub.submit(effects):
            raise ApiError(Result.INTERNAL_ERROR, "change could not be stored")
        return user.public()

    @app.get("/v1/users", response_model=UserList, response_model_exclude_unset=True,
             responses=ERRORS)
    async def list_users(
        project_id: Project,
        page: Annotated[int, Query(ge=1)] = 1,
        limit: Annotated[int, Query(ge=1, le=100)] = 100,
        attribute: str | None = None,
        value: str | None = None,
        includeOffline: bool = False,
    ) -> dict[str, Any]:
        """Online users (all known users with `includeOffline=true`), a page at a time,
        optionally only those whose `attribute` equals `value`."""
        users = sorted(hub.state.project_users(project_id), key=lambda u: u.user_id)
        if not includeOffline:
            users = [u for u in users if u.online]
        if attribute is not None:
            users = [u for u in users if attribute in u.attributes and
                     (value is None or _value_matches(u.attributes[attribute].value, value))]
        start = (page - 1) * limit
        return {"count": len(users), "pageSize": limit,
                "users": [u.public() for u in users[start:start + limit]]}

    @app.post("/v1/users/{userId}/disconnect", response_model=DisconnectBody,
              responses=ERRORS)
    async def disconnect_user(userId: str, project_id: Project) -> dict[str, Any]:
        """Close every connection of the user (a supervisor's force-offline): the user
        goes offline at once, without the grace period."""
        known_user(project_id, userId)
        closed = hub.kick(project_id, userId)
        return {"r": 0, "message": "SUCCESS", "closed": closed}

    # -- supervisor actions (docs/protocol.md): a REST token acts on every user ----------

    supervisors = Supervisors(hub)

    async def supervise(action: Action, request: Request) -> None:
        key = request.state.key_sid
        if action.refused is not None:
            supervisors.audit(action, "rest", action.refused.r, key)
            raise ApiError(action.refused.r, action.refused.message)
        if not await supervisors.commit(action, "rest", key):
            raise ApiError(Result.INTERNAL_ERROR, "the action could not be stored")

    def actor(body: dict[str, Any]) -> str:
        by = actor_of(body.get("by"))
        if isinstance(by, Refused):
            raise ApiError(by.r, by.message)
        return by

    @app.put("/v1/users/{userId}/attributes/{attribute}", response_model=UserBody,
             response_model_exclude_unset=True, responses=ERRORS)
    async def supervise_attribute(userId: str, attribute: str, project_id: Project,
                                  request: Request,
                                  body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """A supervisor sets a user's attribute: body `{"value", "by"?, "reason"?}`;
        published like the user's own change, with `changedBy` (`by`, default `rest`)
        and `reason` in its messages. Limited like the PUT of several attributes."""
        limit_changes(request)
        action = supervisors.decide_set(REST_GRANTS, actor(body), project_id, userId,
                                        {**body, "attribute": attribute})
        await supervise(action, request)
        return known_user(project_id, userId).public()

    @app.post("/v1/users/{userId}/logout", response_model=LogoutBody, responses=ERRORS)
    async def log_out_user(userId: str, project_id: Project, request: Request,
                           body: Annotated[dict[str, Any] | None, Body()] = None
                           ) -> dict[str, Any]:
        """A supervisor logs a user out: body `{"reason"?, "by"?}`. Each connection of the
        user gets LOGGED_OUT (1022) and is closed with 4006; the user's AUTHEN is refused
        (r = 11) for `logout_hold_ms`."""
        body = body or {}
        action = supervisors.decide_logout(REST_GRANTS, actor(body), project_id, userId,
                                           body)
        await supervise(action, request)
        return {"r": 0, "message": "SUCCESS", "userId": userId, **action.answer}

    @app.put("/v1/calls/{callId}", response_model=CallBody, responses=ERRORS)
    async def report_call(callId: str, report: CallReport, project_id: Project
                          ) -> dict[str, Any]:
        """A telephony system (PBX, contact-centre platform) reports a call's status.
        An unknown callId starts a call (in any status but Ended); later reports must
        follow Calling → Ringing → Answered → Ended (r = 27 otherwise)."""
        assert hub.calls is not None
        try:
            call, effects = hub.calls.report(project_id, callId, report.from_, report.to,
                                             report.status)
        except CallError as exc:
            raise ApiError(exc.r, exc.message) from None
        if not await hub.submit(effects):
            now = hub.calls.book.find(project_id, callId)
            if now is not None and now != call:  # another node's report came first
                raise ApiError(Result.INVALID_CALL, f"call {callId!r} changed meanwhile: "
                               f"now {now.status.value}")
            raise ApiError(Result.INTERNAL_ERROR, "call could not be stored")
        return call.to_json()

    @app.get("/v1/calls", response_model=CallList, responses=ERRORS)
    async def list_calls(project_id: Project) -> dict[str, Any]:
        """Calls in progress."""
        assert hub.calls is not None
        calls = [c.to_json() for c in hub.calls.book.active(project_id)]
        return {"count": len(calls), "calls": calls}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the hub answers and its store writes."""
        return hub.health()

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics."""
        hub.metrics.store_failures = hub.store_failures()
        return Response(render(hub.metrics, hub.users_online),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    for install in installers:
        install(app, hub, project_of)
    return app
