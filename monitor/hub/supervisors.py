"""Supervisor actions from the WebSocket (services 1020, 1021) and the REST API.

The core decides (:mod:`monitor.hub.supervision`); this module answers, commits, writes
one audit line per action (who, whom, what, why, the outcome; every field escaped by
the hub's log formatter) and counts it in ``monitor_supervisor_actions_total``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from monitor.hub import supervision
from monitor.hub.port import HubPort
from monitor.hub.state import Effects, Session
from monitor.hub.supervision import DEFAULT_LOGOUT_REASON, Refused
from monitor.protocol import Result, SupervisorService, encode, reply
from monitor.tokens import Grants

log = logging.getLogger("monitor.hub")

CLIENT_SERVICES = frozenset({SupervisorService.SET_USER_ATTRIBUTE,
                             SupervisorService.LOGOUT_USER})
SET_ATTRIBUTE = "set_attribute"
LOGOUT = "logout"


@dataclass
class Action:
    """One supervisor action, decided: what to commit, or why it is refused."""

    what: str
    by: str
    project_id: int
    whom: str
    reason: str = ""
    attribute: object = None
    value: object = None
    effects: Effects = field(default_factory=Effects)
    refused: Refused | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    """Extra fields of a successful reply."""


class Supervisors:
    """Supervisor actions on the hub's state, through its commit pipeline."""

    def __init__(self, hub: HubPort) -> None:
        self.hub = hub

    def handles(self, service: int) -> bool:
        """Whether ``service`` is a supervisor request."""
        return service in CLIENT_SERVICES

    # -- deciding -------------------------------------------------------------------------

    def decide_set(self, grants: Grants, by: str, project_id: int, user_id: object,
                   body: Mapping[str, Any]) -> Action:
        """SET_USER_ATTRIBUTE: ``body`` holds ``attribute``, ``value`` and ``reason``."""
        action = Action(SET_ATTRIBUTE, by, project_id, _text(user_id),
                        attribute=body.get("attribute"), value=body.get("value"))
        user = supervision.target(self.hub.state, grants, project_id, user_id)
        if isinstance(user, Refused):
            action.refused = user
            return action
        reason = supervision.reason_of(body.get("reason"))
        if isinstance(reason, Refused):
            action.refused = reason
            return action
        action.reason = reason
        effects = supervision.set_attribute(
            self.hub.state, by, user, body.get("attribute"), body.get("value"), reason,
            self.hub.now_ms(), has_value="value" in body)
        if effects.result != Result.SUCCESS:
            action.refused = Refused(effects.result, effects.message or "")
        else:
            action.effects = effects
        return action

    def decide_logout(self, grants: Grants, by: str, project_id: int, user_id: object,
                      body: Mapping[str, Any]) -> Action:
        """LOGOUT_USER: ``body`` may hold a ``reason``."""
        action = Action(LOGOUT, by, project_id, _text(user_id))
        user = supervision.target(self.hub.state, grants, project_id, user_id)
        if isinstance(user, Refused):
            action.refused = user
            return action
        reason = supervision.reason_of(body.get("reason"), DEFAULT_LOGOUT_REASON)
        if isinstance(reason, Refused):
            action.refused = reason
            return action
        action.reason = reason
        hold_ms = self.hub.config.hub.logout_hold_ms
        action.effects = supervision.log_out(self.hub.state, by, user, reason,
                                             self.hub.now_ms(), hold_ms)
        action.answer = {"holdMs": hold_ms}
        return action

    # -- committing -----------------------------------------------------------------------

    def commit(self, action: Action, via: str, key: str = "") -> asyncio.Future[bool]:
        """Store and send a decided action (a logout then closes the user's
        connections); audited once the outcome is known."""
        if action.what == LOGOUT:
            done = self.hub.log_out(action.project_id, action.whom, action.effects)
        else:
            done = self.hub.submit(action.effects)
        done.add_done_callback(lambda stored: self.audit(
            action, via, Result.SUCCESS if stored.result() else Result.INTERNAL_ERROR, key))
        return done

    def audit(self, action: Action, via: str, r: Result, key: str = "") -> None:
        """The action's log line and counter (refusals and failures included)."""
        self.hub.metrics.supervised(action.what, via, r)
        message = "" if action.refused is None else action.refused.message
        if action.what == SET_ATTRIBUTE:
            log.info("event=supervisor_action action=%s via=%s key=%s project=%s by=%s "
                     "user=%s attribute=%s value=%s reason=%s r=%d refusal=%s",
                     action.what, via, key or "-", action.project_id, action.by,
                     action.whom, _text(action.attribute), _text(action.value),
                     action.reason, int(r), message)
        else:
            log.info("event=supervisor_action action=%s via=%s key=%s project=%s by=%s "
                     "user=%s reason=%s r=%d refusal=%s", action.what, via, key or "-",
                     action.project_id, action.by, action.whom, action.reason, int(r),
                     message)

    # -- the WebSocket --------------------------------------------------------------------

    def request(self, peer: Any, session: Session, service: int, body: dict[str, Any],
                request_id: Any) -> None:
        """Answer one supervisor request of a connection (in order with its others)."""
        hub = self.hub
        user = session.user
        decide = self.decide_set if service == SupervisorService.SET_USER_ATTRIBUTE \
            else self.decide_logout
        action = decide(session.grants, user.user_id, user.project_id, body.get("userId"),
                        body)
        if action.refused is not None:
            refused = action.refused
            hub.metrics.refused("ws", refused.r)
            self.audit(action, "ws", refused.r)
            hub.submit(Effects(sends=[((peer,), encode(service, reply(
                service, request_id, refused.r, refused.message)))]))
            return
        effects = action.effects
        effects.sends.append(((peer,), encode(service, reply(
            service, request_id, Result.SUCCESS, **action.answer))))
        effects.failure_sends.append(((peer,), partial(encode, service, reply(
            service, request_id, Result.INTERNAL_ERROR, "the action could not be stored"))))
        self.commit(action, "ws")


def _text(value: object) -> str:
    """A field of the audit line: strings as they are, anything else as its repr."""
    return value if isinstance(value, str) else repr(value)
