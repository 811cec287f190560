"""Whose ``call`` attribute a transition publishes, decided on the call book alone (the
orders a node of many can load its book in, which a single hub never makes)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from monitor.config import Config
from monitor.hub.calls import Call, CallStatus, Direction, advance
from monitor.hub.callservice import Calls
from monitor.hub.history import AttributeEvent
from monitor.hub.state import Effects, HubState

NOW = 1_800_000_000_000


class Port:
    """What :class:`Calls` asks of the hub: its state, settings, clock and commits."""

    def __init__(self) -> None:
        self.state = HubState([1])
        self.state.topic(1, "ALL_CALL_STATUS").subscribers.add("watcher")
        self.config = Config()

    def now_ms(self) -> int:
        return NOW

    def submit(self, effects: Effects) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done


def published(effects: Effects) -> list[tuple[str, str, Any]]:
    """(userId, newValue, callId) of each ALL_CALL_STATUS message the effects send."""
    out = []
    for _, frame in effects.sends:
        body = json.loads(frame if isinstance(frame, str) else frame())["body"]
        if body.get("topic") == "ALL_CALL_STATUS":
            message = body["message"]
            out.append((message["userId"], message["newValue"], message["callId"]))
    return out


async def test_a_callee_in_two_calls_publishes_each_whatever_order_the_book_has() -> None:
    """bob rings for alice's call, then a telephony call is reported for him: when a
    node loads its book with the reported call first, answering alice's call is still
    published for bob (it is no busy call: it reached him)."""
    port = Port()
    for user_id in ("alice", "bob"):
        port.state.user_or_new(1, user_id)
    calls = Calls(port)  # type: ignore[arg-type]  # the part of a HubPort it uses
    internal = Call(1, "call-1", "alice", "bob", CallStatus.RINGING, Direction.INTERNAL,
                    NOW, NOW, ringing_ms=NOW)
    external = Call(1, "pstn-1", "+4420794600", "bob", CallStatus.ANSWERED,
                    Direction.EXTERNAL, NOW, NOW, ringing_ms=NOW, answered_ms=NOW)
    calls.book.replace_project(1, [external, internal])
    answered = advance(internal, CallStatus.ANSWERED, NOW + 1)
    assert published(calls.transition(answered, internal, NOW + 1)) == [
        ("alice", "Answered", "call-1"), ("bob", "Answered", "call-1")]
    ended = advance(answered, CallStatus.ENDED, NOW + 2)
    effects = calls.transition(ended, answered, NOW + 2)
    assert published(effects) == [
        ("alice", "Ended", "call-1"), ("bob", "Ended", "call-1"),
        ("bob", "Answered", "pstn-1")]  # then the call bob is still in
    # The event log (and so webhooks) says so too: bob's end is no end of his calls.
    logged = [event.to_json() for event in effects.log if isinstance(event, AttributeEvent)]
    assert [(e["userId"], e["value"], e.get("callEnded")) for e in logged] == [
        ("alice", "Ended", None), ("bob", "Ended", False), ("bob", "Answered", None)]
