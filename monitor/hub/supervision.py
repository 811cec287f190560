"""Supervisor actions, decided in the pure core (docs/protocol.md, services 1020-1022).

A client token's ``supervise`` claim (:attr:`~monitor.tokens.Grants.supervise`) names the
topics whose members its holder may act on, or ``*`` for every user of the project; a
member of a topic is a user whose latest grants publish an attribute to it. A REST token
may act on every user of its project. Everything is checked here before anything
changes: who may act on whom, the attribute and value, the reason.

A supervisor's change is an ordinary change of the user's attribute, published through
the user's latest grants with ``changedBy`` (and ``reason``) in its messages. A forced
logout tells each of the user's connections why (LOGGED_OUT, 1022), closes them, and
holds the user's logins for ``logout_hold_ms``: AUTHEN is refused with ``r = 11``. That
refusal is what stops Stringee's Web SDK, which reconnects by itself half a second after
any close but gives up for good when an AUTHEN is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from monitor.hub.state import Effects, HubState, LoginHold, User
from monitor.protocol import (
    MAX_USER_ID_CHARS,
    Result,
    SupervisorService,
    encode,
    has_control_chars,
    has_hidden_chars,
)
from monitor.tokens import SUPERVISE_ALL, Grants

MAX_REASON_CHARS = 256
DEFAULT_LOGOUT_REASON = "logged out by a supervisor"
REST_ACTOR = "rest"
"""Who a REST action is by, when the caller does not say (``"by"``)."""
REST_GRANTS = Grants(supervise=(SUPERVISE_ALL,))
"""A REST token acts for its project's backend: on every user of the project."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A supervisor action refused before anything changed: ``r`` and why."""

    r: Result
    message: str


def target(state: HubState, grants: Grants, project_id: int, user_id: object) -> User | Refused:
    """The user a supervisor with ``grants`` asks to act on, or why not: ``r = 21`` for
    no user id, 24 for a token without the claim or a user outside it, 25 for a user the
    hub does not know."""
    if not isinstance(user_id, str) or not user_id:
        return Refused(Result.INVALID_REQUEST, "userId must be a non-empty string")
    if not grants.supervise:
        return Refused(Result.TOPIC_NOT_GRANTED,
                       "not permitted: the token has no supervise claim")
    user = state.user(project_id, user_id)
    if user is None:
        return Refused(Result.USER_NOT_FOUND, f"user {user_id[:140]!r} not found")
    if not grants.may_supervise(user.grants):
        return Refused(Result.TOPIC_NOT_GRANTED,
                       f"not permitted: {user_id[:140]!r} publishes to no topic the token "
                       "supervises")
    return user


def reason_of(raw: object, default: str = "") -> str | Refused:
    """A reason as given (``r = 21`` not a string, 23 too long or with controls)."""
    if raw is None:
        return default
    if not isinstance(raw, str):
        return Refused(Result.INVALID_REQUEST, "reason must be a string")
    if len(raw) > MAX_REASON_CHARS or has_control_chars(raw):
        return Refused(Result.INVALID_ATTRIBUTE,
                       f"reason longer than {MAX_REASON_CHARS} characters or with control "
                       "characters")
    return raw.strip() or default


def actor_of(raw: object, default: str = REST_ACTOR) -> str | Refused:
    """Who a REST caller says acts (``by``): 1-128 characters, none hidden."""
    if raw is None:
        return default
    if not isinstance(raw, str):
        return Refused(Result.INVALID_REQUEST, "by must be a string")
    if not 1 <= len(raw) <= MAX_USER_ID_CHARS or has_hidden_chars(raw) \
            or raw != raw.strip():
        return Refused(Result.INVALID_ATTRIBUTE,
                       f"by must be 1-{MAX_USER_ID_CHARS} characters, none of them "
                       "control, format or blank at the edges")
    return raw


def set_attribute(state: HubState, by: str, user: User, name: object, value: object,
                  reason: str, now_ms: int, *, has_value: bool = True) -> Effects:
    """Set ``user``'s attribute ``name`` for supervisor ``by``: checked and published like
    the user's own change (through the user's latest grants), with ``changedBy`` and the
    reason in its messages. ``r`` 21, 22 or 23 as for CHANGE_ATTRIBUTE."""
    change: dict[str, Any] = {"attribute": name}
    if has_value:
        change["value"] = value
    extra: dict[str, Any] = {"changedBy": by}
    if reason:
        extra["reason"] = reason
    return state.change_attributes(user.project_id, user.user_id, [change], now_ms,
                                   extra=extra)


def log_out(state: HubState, by: str, user: User, reason: str, now_ms: int,
            hold_ms: int) -> Effects:
    """Log ``user`` out for supervisor ``by``: LOGGED_OUT to each of the user's
    connections, on every node, then (the coordinator) the hold and the close."""
    hold = LoginHold(now_ms + max(hold_ms, 0), by, reason)
    frame = encode(SupervisorService.LOGGED_OUT, {
        "userId": user.user_id, "projectId": user.project_id, "by": by, "reason": reason,
        "holdMs": max(hold_ms, 0), "until": hold.until_ms})
    effects = Effects()
    state.coordinator.notify(state, effects, user.project_id, (user.user_id,),
                             lambda: frame)
    state.coordinator.log_out(state, effects, user, hold)
    return effects


def login_refusal(state: HubState, project_id: int, user_id: str, now_ms: int
                  ) -> tuple[str, dict[str, Any]] | None:
    """Why the user may not log in now (a hold not over yet): the AUTHEN ``r = 11``
    message and the reply's extra fields (``reason``, ``by``, ``retryAfterMs``)."""
    user = state.user(project_id, user_id)
    hold = user.hold if user is not None else None
    if hold is None or hold.until_ms <= now_ms:
        return None
    wait_ms = hold.until_ms - now_ms
    message = (f"logged out by {hold.by}: {hold.reason}; log in again in "
               f"{math.ceil(wait_ms / 1000)} s")
    return message, {"reason": hold.reason, "by": hold.by, "retryAfterMs": wait_ms}
