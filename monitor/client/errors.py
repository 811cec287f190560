"""Errors raised by the client SDK.

Every error is a :class:`HubError`. ``r`` is the spec's result code when the hub (or
the REST API) gave one, ``status`` the HTTP status for REST calls, ``message`` the
hub's message or a description of what went wrong locally.
"""

from __future__ import annotations

from monitor.protocol import MESSAGES, Result

#: Result codes of the AUTHEN table (section 2 of the spec).
AUTHENTICATION_CODES = frozenset({
    Result.TOKEN_MISSING, Result.TOKEN_UNDECODABLE, Result.TOKEN_FORMAT,
    Result.TOKEN_ALGORITHM, Result.KEY_NOT_FOUND, Result.TOKEN_EXPIRED,
    Result.TOKEN_PAYLOAD, Result.AUTH_OTHER, Result.TOKEN_SIGNATURE,
})


class HubError(Exception):
    """Base of every error of the SDK.

    ``r`` is the result code (``None`` when the failure happened before the hub
    answered), ``status`` the HTTP status of a REST call (``None`` on the WebSocket).
    """

    def __init__(self, message: str, *, r: int | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.r = r
        self.status = status

    @property
    def result(self) -> Result | None:
        """``r`` as a :class:`~monitor.protocol.Result`, when it is one the spec defines."""
        try:
            return Result(self.r) if self.r is not None else None
        except ValueError:
            return None

    def __str__(self) -> str:
        extra = ", ".join(([f"r={self.r}"] if self.r is not None else [])
                          + ([f"HTTP {self.status}"] if self.status is not None else []))
        return f"{self.message} ({extra})" if extra else self.message

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.message!r}, r={self.r!r}, "
                f"status={self.status!r})")


class AuthenticationError(HubError):
    """The hub refused the token (AUTHEN ``r`` 1-10, or HTTP 401 on REST)."""


class LoggedOutError(AuthenticationError):
    """A supervisor logged the user out: the hub's LOGGED_OUT notice (then close 4006),
    or AUTHEN ``r = 11`` while the hold lasts. ``reason`` and ``by`` as the hub gave
    them; ``retry_after``, seconds until a login is allowed again, when known."""

    def __init__(self, message: str, *, r: int | None = None, status: int | None = None,
                 reason: str | None = None, by: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, r=r, status=status)
        self.reason = reason
        self.by = by
        self.retry_after = retry_after


class RefusedError(HubError):
    """The hub answered a request with ``r != 0`` (other than an authentication failure)."""


class NotFoundError(RefusedError):
    """``r = 25`` / HTTP 404: no such user (or call)."""


class RateLimitedError(RefusedError):
    """``r = 26`` / HTTP 429. ``retry_after`` is the hub's hint in seconds, if any."""

    def __init__(self, message: str, *, r: int | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, r=r, status=status)
        self.retry_after = retry_after


class ConnectionLostError(HubError):
    """The connection dropped (or the client was closed) before the hub answered.

    A request that fails this way may or may not have been applied; the requests of
    this SDK are idempotent (setting an attribute to a value), so it is safe to retry.
    """


class HubUnreachableError(HubError):
    """The hub could not be reached (refused, DNS, TLS, handshake, HTTP transport)."""


class RequestTimeoutError(HubError):
    """No reply within the request timeout."""


def error_for(r: object, message: object = None, *, status: int | None = None,
              retry_after: float | None = None) -> HubError:
    """The typed error for a refusal with result code ``r`` (and HTTP ``status``)."""
    code = r if isinstance(r, int) and not isinstance(r, bool) else None
    if not isinstance(message, str) or not message:
        known = None
        if code is not None:
            try:
                known = MESSAGES.get(Result(code))
            except ValueError:
                known = None
        message = known or (f"HTTP {status}" if status is not None else f"refused (r={r!r})")
    if code == Result.LOGGED_OUT:
        return LoggedOutError(message, r=code, status=status, retry_after=retry_after)
    if code in AUTHENTICATION_CODES or (code is None and status == 401):
        return AuthenticationError(message, r=code, status=status)
    if code == Result.USER_NOT_FOUND or (code is None and status == 404):
        return NotFoundError(message, r=code, status=status)
    if code == Result.RATE_LIMITED or (code is None and status == 429):
        return RateLimitedError(message, r=code, status=status, retry_after=retry_after)
    if code is not None:
        return RefusedError(message, r=code, status=status)
    return HubError(message, r=None, status=status)
