"""Call control: client services 1010-1019 and telephony reports, on the call book.

Every transition goes through :meth:`Calls.transition`: it sets each hub-user
party's ``call`` attribute (published to their ``call`` topic and ``ALL_CALL_STATUS`` by the
state), tells the parties' connections (CALL_STATE), and stores the call. Each operation's
transitions are submitted guarded (:meth:`~monitor.hub.state.Coordinator.guard`): on
several nodes, two changing one call cannot both win.

The no-answer timer runs on every node that knows the call (each learns it from its own
transitions and, on several nodes, from the log: :meth:`Calls.learn`); the first to end
the call wins, the others' proposals are refused.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial
from typing import Any

from monitor.hub.calls import (
    Call,
    CallBook,
    CallError,
    CallStatus,
    Direction,
    EndReason,
    advance,
    parse_status,
)
from monitor.hub.history import CallEvent
from monitor.hub.port import HubPort
from monitor.hub.state import CallRow, Effects, Session
from monitor.protocol import CALL, CallService, Result, encode, has_hidden_chars, reply

log = logging.getLogger("monitor.hub")


CLIENT_SERVICES = frozenset({CallService.MAKE_CALL, CallService.RINGING, CallService.ANSWER,
                             CallService.REJECT, CallService.HANGUP, CallService.LIST_CALLS})
MAX_CALL_ID_CHARS = 128


class Calls:
    """The hub's calls: what clients and telephony systems do to them."""

    def __init__(self, hub: HubPort) -> None:
        self.hub = hub
        self.book = CallBook()
        self._timers: dict[tuple[int, str], asyncio.TimerHandle] = {}

    def handles(self, service: int) -> bool:
        return service in CLIENT_SERVICES

    # -- the one transition path ----------------------------------------------------------

    def transition(self, call: Call, previous: Call | None, now_ms: int,
                   notice_extra: dict[str, Any] | None = None) -> Effects:
        """Effects of ``call`` becoming what it is now (``previous`` was before)."""
        state = self.hub.state
        pid = call.project_id
        shown_before = {party: self._shown(pid, party) for party in call.parties()}
        stored_before = self.book.find(pid, call.call_id)
        self.book.put(call)
        effects = Effects(undo=[partial(self._revert, call, stored_before)])
        for party in call.parties():
            if state.user(pid, party) is None:
                continue  # a customer's number: recorded on the call, no attribute
            # A party's `call` attribute follows every transition of each of its calls,
            # with that call's callId; when a call ends while another is in progress, its
            # Ended is published (callEnded false: the party is still in a call), then the
            # attribute shows the call in progress. The one call left out: a call made to
            # a user already in one starts and ends at once, busy, and never reached them.
            before = shown_before[party]
            if call.direction is Direction.INTERNAL and party == call.to \
                    and before is not None and before.call_id != call.call_id \
                    and (previous is None or call.end_reason is EndReason.BUSY):
                continue
            extra = self._message_extra(call)
            going_on = None if call.active else self._shown(pid, party)
            if going_on is not None:
                extra["callEnded"] = False
            effects.extend(state.set_builtin(pid, party, CALL, call.status.value, now_ms,
                                             extra, always=True))
            if going_on is not None:
                effects.extend(state.set_builtin(pid, party, CALL, going_on.status.value,
                                                 now_ms, self._message_extra(going_on),
                                                 always=True))
        effects.ops.append(CallRow(call.project_id, call.call_id,
                                   call.to_json() if call.active else None,
                                   previous.status.value if previous is not None else ""))
        effects.log.append(CallEvent(pid, call.to_json(), now_ms, tuple(
            party for party in call.parties() if state.user(pid, party) is not None)))
        notice = encode(CallService.CALL_STATE, {"call": call.to_json(), **(notice_extra or {})})
        # Both parties' connections, on every node.
        state.coordinator.notify(state, effects, pid, call.parties(), lambda: notice)
        self._arm_no_answer(call)
        log.info("event=call call=%s project=%s from=%s to=%s status=%s reason=%s",
                 call.call_id, call.project_id, call.from_, call.to, call.status.value,
                 call.end_reason.value if call.end_reason else "-")
        return effects

    def _shown(self, project_id: int, user_id: str) -> Call | None:
        """The call a user's ``call`` attribute shows: the first of its calls in progress."""
        calls = self.book.of_user(project_id, user_id)
        return calls[0] if calls else None

    @staticmethod
    def _message_extra(call: Call) -> dict[str, Any]:
        """What a topic message about ``call`` adds to the attribute change."""
        extra = {"callId": call.call_id, "from": call.from_, "to": call.to}
        if call.status is CallStatus.ENDED and call.end_reason:
            extra["endReason"] = call.end_reason.value
        return extra

    def _revert(self, call: Call, before: Call | None) -> None:
        """Undo a transition that was not stored (or another node's came first)."""
        current = self.book.revert(call, before)
        if current is not None:
            self._arm_no_answer(current)

    def _arm_no_answer(self, call: Call) -> None:
        """A ringing internal call ends ``call_no_answer_ms`` after its last transition."""
        key = (call.project_id, call.call_id)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if call.direction is Direction.INTERNAL and call.status in (CallStatus.CALLING,
                                                                    CallStatus.RINGING):
            due_ms = call.updated_ms + self.hub.config.hub.call_no_answer_ms
            delay = max(due_ms - self.hub.now_ms(), 0) / 1000
            self._timers[key] = asyncio.get_running_loop().call_later(
                delay, self._no_answer, key)

    def _no_answer(self, key: tuple[int, str]) -> None:
        self._timers.pop(key, None)
        call = self.book.calls.get(key)
        if call is not None and call.status in (CallStatus.CALLING, CallStatus.RINGING):
            self.end(call, EndReason.NO_ANSWER)

    def learn(self, call: Call) -> None:
        """A call's latest value, decided elsewhere (another node, through the log)."""
        self.book.put(call)
        self._arm_no_answer(call)

    def load_project(self, project_id: int, calls: list[Call]) -> None:
        """Make ``calls`` the project's calls in progress (a node loading the shared book)
        and time the ringing ones."""
        self.book.replace_project(project_id, calls)
        for call in calls:
            self._arm_no_answer(call)

    def submit(self, effects: Effects) -> asyncio.Future[bool]:
        """Submit one operation's transitions, all or nothing against other nodes."""
        return self.hub.submit(self.hub.state.coordinator.guard(effects))

    def end(self, call: Call, reason: EndReason) -> asyncio.Future[bool]:
        """End a call for the hub's own reasons (timeouts, disconnects, shutdown)."""
        now = self.hub.now_ms()
        return self.submit(self.transition(advance(call, CallStatus.ENDED, now, reason),
                                           call, now))

    # -- telephony (REST) ---------------------------------------------------------------

    def report(self, project_id: int, call_id: str, from_: object, to: object,
               status: object) -> tuple[Call, Effects]:
        """A telephony system reports a call's status; unknown calls start here. The
        effects come guarded (submit them as they are)."""
        if not isinstance(call_id, str) or not 1 <= len(call_id) <= MAX_CALL_ID_CHARS:
            raise CallError("callId must be 1-128 characters", Result.INVALID_REQUEST)
        if has_hidden_chars(call_id):
            raise CallError("callId has control or format characters", Result.INVALID_REQUEST)
        new_status = parse_status(status)
        now = self.hub.now_ms()
        current = self.book.find(project_id, call_id)
        if current is None:
            if new_status is CallStatus.ENDED:
                raise CallError(f"call {call_id!r} not found")
            for name, value in (("from", from_), ("to", to)):
                if not isinstance(value, str) or not 1 <= len(value) <= 128:
                    raise CallError(f"{name} must be 1-128 characters", Result.INVALID_REQUEST)
                if has_hidden_chars(value):  # shown in every supervisor's monitor
                    raise CallError(f"{name} has control or format characters",
                                    Result.INVALID_REQUEST)
            assert isinstance(from_, str) and isinstance(to, str)
            # A telephony system may first report a call when it already rings or talks.
            call = Call(project_id, call_id, from_, to, new_status, Direction.EXTERNAL, now, now,
                        ringing_ms=now if new_status is not CallStatus.CALLING else None,
                        answered_ms=now if new_status is CallStatus.ANSWERED else None)
            return call, self.hub.state.coordinator.guard(self.transition(call, None, now))
        if (from_ not in (None, current.from_)) or (to not in (None, current.to)):
            raise CallError(f"call {call_id!r} is between {current.from_} and {current.to}",
                            Result.INVALID_REQUEST)
        if new_status is current.status:
            return current, Effects()
        reason = EndReason.REPORTED if new_status is CallStatus.ENDED else None
        call = advance(current, new_status, now, reason)
        return call, self.hub.state.coordinator.guard(self.transition(call, current, now))

    # -- client call control --------------------------------------------------------------

    def request(self, peer: Any, session: Session, service: int, body: dict[str, Any],
                request_id: Any) -> None:
        """One call-control request from a client; the reply follows its effects."""
        hub = self.hub
        try:
            effects, extra = self._request(session, service, body)
            effects.sends.append(((peer,), encode(service, reply(
                service, request_id, Result.SUCCESS, **extra))))
            effects.failure_sends.append(((peer,), encode(service, reply(
                service, request_id, Result.INTERNAL_ERROR, "call could not be stored"))))
            effects.refused_sends.append(((peer,), encode(service, reply(
                service, request_id, Result.INVALID_CALL,
                "the call changed meanwhile (CALL_STATE says how)"))))
        except CallError as exc:
            hub.metrics.refused("ws", exc.r)
            log.info("event=request_refused user=%s service=%d r=%d reason=%r",
                     session.user.user_id, service, int(exc.r), exc.message)
            effects = Effects(sends=[((peer,), encode(service, reply(
                service, request_id, exc.r, exc.message)))])
        self.submit(effects)

    def _own_call(self, session: Session, body: dict[str, Any]) -> Call:
        call_id = body.get("callId")
        if not isinstance(call_id, str):
            raise CallError("callId missing", Result.INVALID_REQUEST)
        call = self.book.get(session.user.project_id, call_id)
        if session.user.user_id not in call.parties():
            raise CallError(f"call {call_id!r} not found")
        if call.direction is Direction.EXTERNAL:
            raise CallError(f"call {call_id!r} is reported by telephony; control it there")
        return call

    def _request(self, session: Session, service: int, body: dict[str, Any]
                 ) -> tuple[Effects, dict[str, Any]]:
        user = session.user
        now = self.hub.now_ms()
        if service == CallService.LIST_CALLS:
            return Effects(), {"calls": [c.to_json() for c in
                                         self.book.of_user(user.project_id, user.user_id)]}
        if service == CallService.MAKE_CALL:
            return self._make_call(session, body, now)
        call = self._own_call(session, body)
        me = user.user_id
        callee_only = {CallService.RINGING, CallService.ANSWER, CallService.REJECT}
        if service in callee_only and me != call.to:
            raise CallError("only the callee can do that")
        if service == CallService.RINGING:
            new = advance(call, CallStatus.RINGING, now)
            effects = self.transition(new, call, now)
        elif service == CallService.ANSWER:
            effects = Effects()
            if call.status is CallStatus.CALLING:  # answered before it was reported ringing
                ringing = advance(call, CallStatus.RINGING, now)
                effects.extend(self.transition(ringing, call, now))
                call = ringing
            new = advance(call, CallStatus.ANSWERED, now,
                          answered_by=session.client.get("clientId"))
            effects.extend(self.transition(new, call, now))
        elif service == CallService.REJECT:
            new = advance(call, CallStatus.ENDED, now, EndReason.REJECTED)
            effects = self.transition(new, call, now)
        else:  # HANGUP
            new = advance(call, CallStatus.ENDED, now, EndReason.HANGUP)
            effects = self.transition(new, call, now)
        return effects, {"call": new.to_json()}

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
        call_id = "call-" + secrets.token_hex(8)
        call = Call(user.project_id, call_id, user.user_id, to, CallStatus.CALLING,
                    Direction.INTERNAL, now, now)
        busy = any(c.active for c in self.book.of_user(user.project_id, to))
        state = self.hub.state
        if not state.coordinator.reachable(callee) or busy:
            # Nobody to ring: the call is made, and ends at once, for everyone to see.
            effects = self.transition(call, None, now)
            ended = advance(call, CallStatus.ENDED, now, EndReason.BUSY)
            effects.extend(self.transition(ended, call, now))
            return effects, {"call": ended.to_json()}
        effects = self.transition(call, None, now)
        incoming = encode(CallService.INCOMING_CALL, {
            "call": call.to_json(), "fromDisplayName": user.display_name or user.user_id})
        # Ring every connection of the callee, on every node.
        state.coordinator.notify(state, effects, user.project_id, (to,), lambda: incoming)
        return effects, {"call": call.to_json()}

    # -- lifecycle ----------------------------------------------------------------------

    def party_gone(self, project_id: int, user_id: str) -> None:
        """The user's last connection dropped: end their client-driven calls."""
        for call in self.book.of_user(project_id, user_id):
            if call.direction is Direction.INTERNAL:
                self.end(call, EndReason.PARTY_DISCONNECTED)

    def restore(self, rows: list[CallRow]) -> None:
        """Calls in progress when the hub died end now, with reason ``hub restart``."""
        for row in rows:
            if row.data is None or row.project_id not in self.hub.state.project_ids:
                continue
            call = Call.from_json(row.project_id, row.data)
            self.book.put(call)
            self.end(call, EndReason.HUB_RESTART)

    def end_all(self, reason: EndReason) -> list[asyncio.Future[bool]]:
        """End every active call (the hub is shutting down)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        return [self.end(call, reason) for call in list(self.book.calls.values())]

