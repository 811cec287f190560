"""Access tokens: mint and verify client and REST tokens (JWT, HS256 only), parse grants.

Every failure is a :class:`TokenError` whose ``code`` is the AUTHEN result code of the spec.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from monitor.protocol import (
    ALL_CALL_STATUS,
    CALL,
    MAX_ATTRIBUTE_GRANTS,
    MAX_TOKEN_BYTES,
    MAX_TOPICS,
    MAX_USER_ID_CHARS,
    Result,
    has_hidden_chars,
    is_attribute_name,
    is_topic_name,
)

ALGORITHM = "HS256"
HEADER = {"typ": "JWT", "alg": ALGORITHM, "cty": "stringee-api;v=1"}
LEEWAY_S = 30
MAX_DISPLAY_NAME_CHARS = 128


class TokenError(Exception):
    """A token was refused; ``code`` is the AUTHEN result code."""

    def __init__(self, code: Result, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AttributeGrant:
    """When ``attribute`` of the token's user changes, publish to ``topic``."""

    attribute: str
    topic: str


SUPERVISE_ALL = "*"
"""In a ``supervise`` claim: every user of the project."""


@dataclass(frozen=True)
class Grants:
    """What a client token allows: topics to receive, attributes to publish, and whose
    attributes and sessions it may act on (``supervise``: topic names, or ``*``)."""

    subscribe: tuple[str, ...] = ()
    attributes: tuple[AttributeGrant, ...] = ()
    supervise: tuple[str, ...] = ()

    def topics_for(self, attribute: str) -> tuple[str, ...]:
        """The topics a change of ``attribute`` is published to."""
        return tuple(g.topic for g in self.attributes if g.attribute == attribute)

    def may_receive(self, topic: str) -> bool:
        """True when the token subscribes to ``topic``."""
        return topic in self.subscribe

    def may_supervise(self, member: Grants) -> bool:
        """True when this token may act on a user whose (latest) grants are ``member``:
        the claim says ``*``, or names a topic that user publishes an attribute to."""
        if not self.supervise:
            return False
        if SUPERVISE_ALL in self.supervise:
            return True
        return any(g.topic in self.supervise for g in member.attributes)

    def to_json(self) -> dict[str, Any]:
        """The grants as they appear in an AUTHEN reply (``supervise`` only when the
        token has the claim)."""
        out: dict[str, Any] = {
            "subscribe": list(self.subscribe),
            "attributes": [{"attribute": g.attribute, "topic": g.topic}
                           for g in self.attributes],
        }
        if self.supervise:
            out["supervise"] = list(self.supervise)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grants:
        """Inverse of :meth:`to_json` (trusted input, e.g. from the store)."""
        return cls(tuple(data.get("subscribe", ())),
                   tuple(AttributeGrant(g["attribute"], g["topic"])
                         for g in data.get("attributes", ())),
                   tuple(data.get("supervise", ())))


@dataclass(frozen=True)
class ClientClaims:
    """A verified client token."""

    key_sid: str
    user_id: str
    expires_at: int
    grants: Grants = field(default_factory=Grants)
    display_name: str | None = None


@dataclass(frozen=True)
class RestClaims:
    """A verified REST token."""

    key_sid: str
    expires_at: int


# -- minting -------------------------------------------------------------------------


def _base_payload(key_sid: str, ttl_s: int, now: float | None) -> dict[str, Any]:
    issued = int(time.time() if now is None else now)
    return {"jti": f"{key_sid}-{issued}", "iss": key_sid, "exp": issued + int(ttl_s)}


def mint_client_token(key_sid: str, secret: str, user_id: str, *,
                      subscribe: Iterable[str] = (),
                      attributes: Iterable[AttributeGrant | tuple[str, str]] = (),
                      ttl_s: int = 3600, display_name: str | None = None,
                      supervise: Iterable[str] = (), role: str | None = None,
                      now: float | None = None) -> str:
    """A client access token exactly as the spec's section 1 shows it; ``supervise``
    (topic names, or ``*``) adds the supervisor claim of docs/protocol.md, ``role`` a
    ``role`` claim (the hub ignores it; the monitor reads it: docs/monitor.md)."""
    payload = _base_payload(key_sid, ttl_s, now)
    payload["userId"] = user_id
    topics = list(subscribe)
    if topics:
        payload["subscribe"] = ",".join(topics)
    grants = [g if isinstance(g, AttributeGrant) else AttributeGrant(*g) for g in attributes]
    if grants:
        payload["attributes"] = [{"attribute": g.attribute, "topic": g.topic} for g in grants]
    if display_name:
        payload["displayName"] = display_name
    supervised = list(supervise)
    if supervised:
        payload["supervise"] = supervised
    if role:
        payload["role"] = role
    return jwt.encode(payload, secret, algorithm=ALGORITHM, headers=HEADER)


def mint_rest_token(key_sid: str, secret: str, *, ttl_s: int = 3600,
                    now: float | None = None) -> str:
    """A REST API token (``rest_api: true``, no ``userId``)."""
    payload = _base_payload(key_sid, ttl_s, now)
    payload["rest_api"] = True
    return jwt.encode(payload, secret, algorithm=ALGORITHM, headers=HEADER)


# -- verifying -----------------------------------------------------------------------

SecretLookup = Callable[[str], "str | None"]


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _segment(text: str) -> bytes:
    """Decode one base64url segment (no padding), refusing any other alphabet."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verified_payload(token: object, secret_for: SecretLookup) -> tuple[str, dict[str, Any]]:
    """Check the token's shape, algorithm, key, signature and expiry; return (sid, payload).

    HS256 is checked here with the standard library (one decode of each segment, one
    HMAC, a constant-time compare) rather than with pyjwt's decoder: every connection
    pays for it, and pyjwt's costs ten times more. Tokens are still minted with pyjwt.
    """
    if not isinstance(token, str) or not token.strip():
        raise TokenError(Result.TOKEN_MISSING, "token missing or empty")
    if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
        raise TokenError(Result.TOKEN_PAYLOAD, f"token longer than {MAX_TOKEN_BYTES} bytes")
    if token.count(".") != 2:
        raise TokenError(Result.TOKEN_UNDECODABLE, "token is not three dot-separated parts")
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(_segment(header_b64))
        payload = json.loads(_segment(payload_b64))
        signature = _segment(signature_b64)
    except (RecursionError, ValueError) as exc:
        raise TokenError(Result.TOKEN_UNDECODABLE, f"token cannot be decoded: {exc}") from None
    if not isinstance(header, dict):
        raise TokenError(Result.TOKEN_UNDECODABLE, "token header is not a JSON object")
    if header.get("alg") != ALGORITHM:
        raise TokenError(Result.TOKEN_ALGORITHM, f"algorithm {header.get('alg')!r} is not HS256")
    if not isinstance(payload, dict):
        raise TokenError(Result.TOKEN_FORMAT, "token payload is not a JSON object")
    sid = payload.get("iss")
    if not isinstance(sid, str) or not sid:
        raise TokenError(Result.TOKEN_FORMAT, "token has no iss (API key SID)")
    secret = secret_for(sid)
    if secret is None:
        raise TokenError(Result.KEY_NOT_FOUND, f"API key SID {sid!r} not found")
    expected = hmac.new(secret.encode("utf-8"), f"{header_b64}.{payload_b64}".encode("ascii"),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise TokenError(Result.TOKEN_SIGNATURE, "invalid signature")
    exp = payload.get("exp")
    if exp is None:
        raise TokenError(Result.TOKEN_PAYLOAD, "token has no exp")
    # A float must be finite; an int of any size is fine (math.isfinite would overflow).
    if not isinstance(exp, int | float) or isinstance(exp, bool) or (
            isinstance(exp, float) and not math.isfinite(exp)):
        raise TokenError(Result.TOKEN_PAYLOAD, "exp is not a number")
    now = time.time()
    if exp + LEEWAY_S <= now:
        raise TokenError(Result.TOKEN_EXPIRED, "token expired")
    for claim in ("nbf", "iat"):  # not valid yet, or issued in the future
        moment = payload.get(claim)
        if moment is None:
            continue
        if not isinstance(moment, int | float) or isinstance(moment, bool) or (
                isinstance(moment, float) and not math.isfinite(moment)):
            raise TokenError(Result.TOKEN_PAYLOAD, f"{claim} is not a number")
        if moment > now + LEEWAY_S:
            raise TokenError(Result.TOKEN_PAYLOAD,
                             f"{claim} is more than {LEEWAY_S} s in the future")
    return sid, payload


def parse_subscribe(raw: object) -> tuple[str, ...]:
    """The ``subscribe`` claim: a comma string or a JSON array of topic names."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        topics = [t.strip() for t in raw.split(",") if t.strip()]
    elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        topics = [t.strip() for t in raw if t.strip()]
    else:
        raise TokenError(Result.TOKEN_PAYLOAD, "subscribe is not a string or a list of strings")
    if len(topics) > MAX_TOPICS:
        raise TokenError(Result.TOKEN_PAYLOAD, f"more than {MAX_TOPICS} subscribed topics")
    for topic in topics:
        if not is_topic_name(topic):
            raise TokenError(Result.TOKEN_PAYLOAD, f"invalid topic name {topic[:140]!r}")
    return tuple(dict.fromkeys(topics))  # de-duplicated, order kept


def parse_attributes(raw: object) -> tuple[AttributeGrant, ...]:
    """The ``attributes`` claim: an array (or a JSON string of one) of attribute grants."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except (ValueError, RecursionError):
            raise TokenError(Result.TOKEN_PAYLOAD, "attributes string is not JSON") from None
    if not isinstance(raw, list):
        raise TokenError(Result.TOKEN_PAYLOAD, "attributes is not an array")
    if len(raw) > MAX_ATTRIBUTE_GRANTS:
        raise TokenError(Result.TOKEN_PAYLOAD,
                         f"more than {MAX_ATTRIBUTE_GRANTS} attribute grants")
    grants: list[AttributeGrant] = []
    for item in raw:
        if not isinstance(item, dict):
            raise TokenError(Result.TOKEN_PAYLOAD, "attribute grant is not an object")
        name, topic = item.get("attribute"), item.get("topic")
        if not is_attribute_name(name):
            raise TokenError(Result.TOKEN_PAYLOAD, f"invalid attribute name {str(name)[:80]!r}")
        if not is_topic_name(topic):
            raise TokenError(Result.TOKEN_PAYLOAD, f"invalid topic name {str(topic)[:140]!r}")
        # ALL_CALL_STATUS is the hub's own topic: only call changes go there, and the hub
        # already sends every one, so `call -> ALL_CALL_STATUS` is accepted and ignored.
        if topic == ALL_CALL_STATUS:
            if name == CALL:
                continue
            raise TokenError(Result.TOKEN_PAYLOAD,
                             f"attribute {name!r} cannot publish to {ALL_CALL_STATUS}")
        grant = AttributeGrant(str(name), str(topic))  # both checked to be names above
        if grant not in grants:
            grants.append(grant)
    return tuple(grants)


def parse_supervise(raw: object) -> tuple[str, ...]:
    """The ``supervise`` claim: topic names (a comma string or a JSON array), or ``*``
    for every user of the project. Whose members the holder may act on."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        names = [t.strip() for t in raw.split(",") if t.strip()]
    elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        names = [t.strip() for t in raw if t.strip()]
    else:
        raise TokenError(Result.TOKEN_PAYLOAD, "supervise is not a string or a list of strings")
    if len(names) > MAX_TOPICS:
        raise TokenError(Result.TOKEN_PAYLOAD, f"more than {MAX_TOPICS} supervised topics")
    for name in names:
        if name != SUPERVISE_ALL and not is_topic_name(name):
            raise TokenError(Result.TOKEN_PAYLOAD,
                             f"invalid supervised topic name {name[:140]!r}")
    if SUPERVISE_ALL in names:
        return (SUPERVISE_ALL,)
    return tuple(dict.fromkeys(names))


def parse_grants(payload: Mapping[str, Any]) -> Grants:
    """The grant claims of a client token payload."""
    return Grants(parse_subscribe(payload.get("subscribe")),
                  parse_attributes(payload.get("attributes")),
                  parse_supervise(payload.get("supervise")))


def verify_client_token(token: object, secret_for: SecretLookup) -> ClientClaims:
    """Verify a client access token; raise :class:`TokenError` with the AUTHEN code."""
    sid, payload = _verified_payload(token, secret_for)
    if payload.get("rest_api") is True:  # a REST token is not a login, userId or not
        raise TokenError(Result.TOKEN_PAYLOAD, "a REST token (rest_api: true) cannot log in")
    user_id = payload.get("userId")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise TokenError(Result.TOKEN_PAYLOAD, "userId missing or not 1-128 characters")
    if has_hidden_chars(user_id) or user_id != user_id.strip():
        raise TokenError(Result.TOKEN_PAYLOAD, "userId has control or blank edge characters")
    display_name = payload.get("displayName")
    if not isinstance(display_name, str):
        display_name = None
    elif has_hidden_chars(display_name):
        # Shown in every supervisor's monitor: refused, not silently dropped.
        raise TokenError(Result.TOKEN_PAYLOAD, "displayName has control characters")
    elif display_name:
        display_name = display_name[:MAX_DISPLAY_NAME_CHARS]
    return ClientClaims(sid, user_id, int(payload["exp"]), parse_grants(payload),
                        display_name or None)


def verify_rest_token(token: object, secret_for: SecretLookup) -> RestClaims:
    """Verify a REST token; a client token is refused with code 9."""
    sid, payload = _verified_payload(token, secret_for)
    if payload.get("rest_api") is not True:
        raise TokenError(Result.AUTH_OTHER, "not a REST token (rest_api is not true)")
    return RestClaims(sid, int(payload["exp"]))


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a token without checking anything (for display)."""
    return (jwt.get_unverified_header(token),
            jwt.decode(token, options={"verify_signature": False}))
