"""Wire protocol constants and frame shapes, as fixed by the hub's PROTOCOL spec. Pure."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from enum import IntEnum
from typing import Any, TypeGuard

import orjson


class Service(IntEnum):
    """Service ids carried in every frame's ``service`` field."""

    PING = 1
    AUTHEN = 2
    SUBSCRIBE_FROM_SERVER = 102
    CHANGE_ATTRIBUTE = 103
    OTHER_DEVICE_AUTHEN = 104
    TOPIC_SNAPSHOT = 1001


class CallService(IntEnum):
    """Call-control services, an extension (docs/protocol.md)."""

    MAKE_CALL = 1010
    INCOMING_CALL = 1011
    RINGING = 1012
    ANSWER = 1013
    REJECT = 1014
    HANGUP = 1015
    CALL_STATE = 1016
    LIST_CALLS = 1017


class SupervisorService(IntEnum):
    """Supervisor actions, an extension (docs/protocol.md): allowed by a token's
    ``supervise`` claim."""

    SET_USER_ATTRIBUTE = 1020
    LOGOUT_USER = 1021
    LOGGED_OUT = 1022  # hub -> every connection of a user logged out by a supervisor


class Result(IntEnum):
    """Result codes (``r``) of replies and REST errors."""

    SUCCESS = 0
    # AUTHEN failures
    TOKEN_MISSING = 1
    TOKEN_UNDECODABLE = 2
    TOKEN_FORMAT = 3
    TOKEN_ALGORITHM = 4
    KEY_NOT_FOUND = 5
    TOKEN_EXPIRED = 6
    TOKEN_PAYLOAD = 7
    AUTH_OTHER = 9
    TOKEN_SIGNATURE = 10
    LOGGED_OUT = 11  # logged out by a supervisor: AUTHEN refused for logout_hold_ms
    # everything else
    NOT_AUTHENTICATED = 20
    INVALID_REQUEST = 21
    READ_ONLY_ATTRIBUTE = 22
    INVALID_ATTRIBUTE = 23
    TOPIC_NOT_GRANTED = 24
    USER_NOT_FOUND = 25
    RATE_LIMITED = 26
    INVALID_CALL = 27
    INTERNAL_ERROR = 29


MESSAGES: dict[Result, str] = {
    Result.SUCCESS: "SUCCESS",
    Result.TOKEN_MISSING: "token missing or empty",
    Result.TOKEN_UNDECODABLE: "token cannot be decoded",
    Result.TOKEN_FORMAT: "invalid token format",
    Result.TOKEN_ALGORITHM: "algorithm is not HS256",
    Result.KEY_NOT_FOUND: "API key SID not found",
    Result.TOKEN_EXPIRED: "token expired",
    Result.TOKEN_PAYLOAD: "invalid token payload",
    Result.AUTH_OTHER: "authentication failed",
    Result.TOKEN_SIGNATURE: "invalid signature",
    Result.LOGGED_OUT: "logged out by a supervisor",
    Result.NOT_AUTHENTICATED: "not authenticated",
    Result.INVALID_REQUEST: "invalid request",
    Result.READ_ONLY_ATTRIBUTE: "attribute is read-only",
    Result.INVALID_ATTRIBUTE: "attribute name or value invalid",
    Result.TOPIC_NOT_GRANTED: "topic not granted",
    Result.USER_NOT_FOUND: "user not found",
    Result.RATE_LIMITED: "rate limited",
    Result.INVALID_CALL: "call not found or invalid call transition",
    Result.INTERNAL_ERROR: "internal error",
}

# Limits of the spec.
MAX_FRAME_BYTES = 64 * 1024
MAX_TOKEN_BYTES = 8 * 1024
MAX_VALUE_BYTES = 1024
MAX_TOPICS = 100
MAX_ATTRIBUTE_GRANTS = 100
MAX_USER_ID_CHARS = 128
AUTH_TIMEOUT_S = 10.0
# Limits of the hub's own (docs/protocol.md): each bounds what one request can make the
# hub hold or echo, and is checked before the request changes anything.
MAX_REQUEST_ID_CHARS = 64  # a string requestId; an integer one must fit in 64 bits
MAX_CLIENT_FIELD_CHARS = 128  # deviceId, browserId, sessionId, platform, sdkVersion
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class CloseCode(IntEnum):
    """WebSocket close codes the hub sends (docs/protocol.md), and what a client makes of
    them. One list for the hub, its cluster nodes and the client SDK."""

    GOING_AWAY = 1001  # the hub is shutting down: reconnect
    UNSUPPORTED = 1003  # a binary frame
    INVALID_DATA = 1007  # not UTF-8, not JSON, not an object
    TOO_BIG = 1009  # a frame over 64 KiB (sent by the WebSocket library)
    INTERNAL_ERROR = 1011  # a request failed unexpectedly: this connection only
    SERVICE_RESTART = 1012  # a node resynced with Redis: reconnect, resume or re-read
    AUTH_FAILED = 4001
    AUTH_TIMEOUT = 4002
    PING_TIMEOUT = 4003
    SLOW_CONSUMER = 4004
    KICKED = 4005  # disconnected by an administrator: a client should not reconnect
    LOGGED_OUT = 4006  # logged out by a supervisor: do not reconnect (AUTHEN r = 11)


# Names owned by the hub.

ONLINE_STATUS = "onlineStatus"
CALL = "call"
BUILTIN_ATTRIBUTES = frozenset({ONLINE_STATUS, CALL})
ALL_CALL_STATUS = "ALL_CALL_STATUS"
ONLINE = "online"
OFFLINE = "offline"

TOPIC_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
ATTRIBUTE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def is_topic_name(name: object) -> TypeGuard[str]:
    """True when ``name`` is a valid topic name."""
    return isinstance(name, str) and TOPIC_RE.fullmatch(name) is not None


def is_attribute_name(name: object) -> TypeGuard[str]:
    """True when ``name`` is a valid attribute name."""
    return isinstance(name, str) and ATTRIBUTE_RE.fullmatch(name) is not None


# C0 controls (ESC among them), DEL, C1 controls, and the line and paragraph separators:
# characters that a terminal or a log reader acts on instead of showing.
CONTROL_CHARS_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control_chars(text: str) -> bool:
    """True when ``text`` holds a control character (C0, DEL, C1, U+2028, U+2029)."""
    return CONTROL_CHARS_RE.search(text) is not None


def has_hidden_chars(text: str) -> bool:
    """True when ``text`` holds a character that is not shown as itself: a control, a
    format character (a right-to-left override, a zero-width space), a surrogate, a line
    or paragraph separator. Identifiers (user ids, call parties) may hold none."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in text)


def is_valid_value(value: object) -> bool:
    """True for the attribute values the spec allows: strings of at most 1 KiB of UTF-8
    with no control characters, finite numbers (integers within 64 bits), booleans, null."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        # A 4,000-digit integer would be stored, echoed and parsed by every client.
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): not UTF-8, unsendable
            return False
        return size <= MAX_VALUE_BYTES and not has_control_chars(value)
    return False


def is_valid_request_id(request_id: object) -> bool:
    """True for a requestId the hub echoes: absent (None), an integer within 64 bits or a
    string of at most 64 characters. Anything else (a nested object, a 4,000-digit number)
    is refused before the request is looked at."""
    if request_id is None:
        return True
    if type(request_id) is int:
        return INT64_MIN <= request_id <= INT64_MAX
    return type(request_id) is str and len(request_id) <= MAX_REQUEST_ID_CHARS


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_STRICT_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def to_json(obj: Any) -> str:
    """Compact, strict JSON text (NaN and infinities as null), UTF-8 unescaped.

    orjson does it in a tenth of the standard library's time (JSON is the largest cost
    per request the hub has of its own); what orjson refuses, the standard library writes
    as before: an int over 64 bits, a lone surrogate a client sent, a key not a string,
    deep nesting.
    """
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # orjson.JSONEncodeError, or nesting deeper than orjson's 254 levels
        pass
    try:
        return _STRICT_ENCODER.encode(obj)
    except ValueError:  # NaN or an infinity inside: null, as orjson writes them
        text = _ENCODER.encode(obj)
        return _STRICT_ENCODER.encode(json.loads(text, parse_constant=lambda _: None))


# 19 digits in a row may be an integer beyond 64 bits, which orjson would turn into a float.
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


def from_json(text: str | bytes) -> Any:
    """Parse JSON text as the standard library does, with orjson where it gives the same
    answer: not for integers beyond 64 bits (orjson makes them floats), nor for what it
    refuses (a lone surrogate escape, ``NaN``)."""
    long_digits = _LONG_DIGITS_BYTES if isinstance(text, bytes) else _LONG_DIGITS
    if long_digits.search(text) is None:  # type: ignore[arg-type]  # pattern fits the type
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def encode(service: int, body: dict[str, Any]) -> str:
    """Serialise one frame; the one place frames are turned into text."""
    return to_json({"service": int(service), "body": body})


def reply(service: int, request_id: Any, r: Result, message: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """The body of a reply to a client request."""
    body: dict[str, Any] = {"r": int(r), "message": message or MESSAGES[r]}
    if isinstance(request_id, float) and not math.isfinite(request_id):
        request_id = None  # NaN or Infinity would not be JSON on the way back
    if request_id is not None:
        body["requestId"] = request_id
    body.update(extra)
    return body


def success_frame(service: int, request_id: Any) -> str:
    """``encode(service, reply(service, request_id, SUCCESS))``, without the JSON encoder
    for the common integer requestId: every acknowledged change is answered with one."""
    if type(request_id) is int:
        return (f'{{"service":{int(service)},"body":{{"r":0,"message":"SUCCESS",'
                f'"requestId":{request_id}}}}}')
    return encode(service, reply(service, request_id, Result.SUCCESS))


class FrameError(ValueError):
    """A frame that is not a JSON object: the connection is closed with 1007."""


class RequestError(ValueError):
    """A JSON object that is not a valid request: answered with ``r = 21`` under
    ``service`` (0 when the frame has no integer service)."""

    def __init__(self, message: str, service: int = 0) -> None:
        super().__init__(message)
        self.service = service


def decode(text: str | bytes) -> tuple[int, dict[str, Any]]:
    """Parse one frame into ``(service, body)``.

    Raise :class:`FrameError` when it is not a JSON object and :class:`RequestError`
    when it lacks an integer ``service`` or an object ``body``, or when its ``requestId``
    is not one the hub echoes (:func:`is_valid_request_id`).
    """
    try:
        obj = from_json(text)
    except (ValueError, RecursionError) as exc:
        raise FrameError("frame is not JSON") from exc
    if not isinstance(obj, dict):
        raise FrameError("frame is not a JSON object")
    service = obj.get("service")
    if not isinstance(service, int) or isinstance(service, bool):
        raise RequestError("frame has no integer service")
    body = obj.get("body")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise RequestError("frame body is not an object")
    if not is_valid_request_id(body.get("requestId")):
        raise RequestError("requestId must be an integer or a string of at most "
                           f"{MAX_REQUEST_ID_CHARS} characters", service)
    return service, body
