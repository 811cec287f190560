"""Call control on a node of many: the parties may be connected to other nodes.

The call book is shared through the log (every node applies each call's new value); the
notices (CALL_STATE, INCOMING_CALL) go through the log too, so they reach the parties'
connections on every node, in log order with the topic messages; a callee connected
anywhere can be rung.
"""

from __future__ import annotations

import secrets
from typing import Any

from monitor.hub.calls import Call, CallError, CallStatus, Direction, EndReason, advance
from monitor.hub.callservice import Calls
from monitor.hub.cluster.ops import Notify
from monitor.hub.state import Effects, Session
from monitor.protocol import CallService, Result, encode


class ClusterCalls(Calls):
    """:class:`Calls` whose notices reach every node."""

    def transition(self, call: Call, previous: Call | None, now_ms: int,
                   notice_extra: dict[str, Any] | None = None) -> Effects:
        effects = super().transition(call, previous, now_ms, notice_extra)
        notice = encode(CallService.CALL_STATE, {"call": call.to_json(),
                                                 **(notice_extra or {})})
        # The parties' connections on this node get it from the log, like the others.
        effects.sends = [send for send in effects.sends if send[1] != notice]
        effects.ops.append(Notify(call.project_id, call.parties(), notice))
        return effects

    def _make_call(self, session: Session, body: dict[str, Any], now: int
                   ) -> tuple[Effects, dict[str, Any]]:
        user = session.user
        to = body.get("to")
        if not isinstance(to, str) or not to:
            raise CallError("to missing", Result.INVALID_REQUEST)
        if to == user.user_id:
            raise CallError("cannot call yourself", Result.INVALID_REQUEST)
        callee = self.hub.state.user(user.project_id, to)
        if callee is None:
            raise CallError(f"user {to!r} not found", Result.USER_NOT_FOUND)
        call = Call(user.project_id, "call-" + secrets.token_hex(8), user.user_id, to,
                    CallStatus.CALLING, Direction.INTERNAL, now, now)
        busy = any(c.active for c in self.book.of_user(user.project_id, to))
        # Connected on any node (online), not only on this one.
        if not callee.online or busy:
            effects = self.transition(call, None, now)
            ended = advance(call, CallStatus.ENDED, now, EndReason.BUSY)
            effects.extend(self.transition(ended, call, now))
            return effects, {"call": ended.to_json()}
        effects = self.transition(call, None, now)
        incoming = encode(CallService.INCOMING_CALL, {
            "call": call.to_json(), "fromDisplayName": user.display_name or user.user_id})
        effects.ops.append(Notify(user.project_id, (to,), incoming))
        return effects, {"call": call.to_json()}
