"""Small builders for the hub unit tests: claims, a deterministic HubState, sends decoded."""

from __future__ import annotations

import itertools
import json
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from monitor.hub.state import AuthOutcome, Effects, HubState, Send
from monitor.protocol import Service
from monitor.tokens import AttributeGrant, ClientClaims, Grants

PROJECT = 25
OTHER_PROJECT = 26
KEY_SID = "SKtest"
EXPIRES = 4_000_000_000
T0 = 1_700_000_000_000


def grants(subscribe: Iterable[str] = (),
           attributes: Iterable[tuple[str, str]] = ()) -> Grants:
    """Grants from topic names and ``(attribute, topic)`` pairs."""
    return Grants(tuple(subscribe), tuple(AttributeGrant(a, t) for a, t in attributes))


def claims(user_id: str, subscribe: Iterable[str] = (),
           attributes: Iterable[tuple[str, str]] = (),
           display_name: str | None = None) -> ClientClaims:
    """A verified client token as :func:`monitor.tokens.verify_client_token` returns it."""
    return ClientClaims(KEY_SID, user_id, EXPIRES, grants(subscribe, attributes), display_name)


def make_state(**kwargs: Any) -> HubState:
    """A HubState over two projects whose topic epochs are predictable: e1, e2, ..."""
    counter = itertools.count(1)
    kwargs.setdefault("epoch", lambda: f"e{next(counter)}")
    return HubState([PROJECT, OTHER_PROJECT], **kwargs)


def login(state: HubState, handle: Hashable, user_id: str, now: int = T0, *,
          subscribe: Iterable[str] = (), attributes: Iterable[tuple[str, str]] = (),
          display_name: str | None = None, client: dict[str, Any] | None = None,
          request_id: Any = 1, resume: object = None,
          project: int = PROJECT) -> AuthOutcome:
    """Authenticate ``handle`` as ``user_id``."""
    return state.authenticate(handle, project, claims(user_id, subscribe, attributes,
                                                      display_name),
                              client or {}, request_id, now, resume)


def deliveries(sends: Effects | Sequence[Send]) -> list[tuple[Hashable, dict[str, Any]]]:
    """Every (handle, decoded frame) in send order."""
    if isinstance(sends, Effects):
        sends = sends.sends
    return [(handle, json.loads(frame)) for targets, frame in sends for handle in targets]


def received(sends: Effects | Sequence[Send], handle: Hashable,
             service: int | None = None) -> list[dict[str, Any]]:
    """The frames ``handle`` is sent, optionally only those of one service."""
    return [frame for h, frame in deliveries(sends)
            if h == handle and (service is None or frame["service"] == service)]


def topic_messages(sends: Effects | Sequence[Send], handle: Hashable) -> list[dict[str, Any]]:
    """The SUBSCRIBE_FROM_SERVER bodies sent to ``handle``."""
    return [f["body"] for f in received(sends, handle, Service.SUBSCRIBE_FROM_SERVER)]


def change(state: HubState, user_id: str, attribute: str, value: Any, now: int = T0,
           project: int = PROJECT) -> Effects:
    """One CHANGE_ATTRIBUTE as the WebSocket endpoint makes it."""
    return state.change_attributes(project, user_id, [{"attribute": attribute, "value": value}],
                                   now)
