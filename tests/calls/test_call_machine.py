"""The pure call state machine: transitions, timestamps, end reasons, JSON, the book."""

from __future__ import annotations

import json

import pytest

from monitor.hub.calls import (
    NEXT,
    Call,
    CallBook,
    CallError,
    CallStatus,
    Direction,
    EndReason,
    advance,
    parse_status,
)
from monitor.protocol import Result

T0 = 1_700_000_000_000
CALLING, RINGING, ANSWERED, ENDED = (CallStatus.CALLING, CallStatus.RINGING,
                                     CallStatus.ANSWERED, CallStatus.ENDED)
ALLOWED = {(CALLING, RINGING), (CALLING, ENDED), (RINGING, ANSWERED), (RINGING, ENDED),
           (ANSWERED, ENDED)}


def new_call(call_id: str = "c1", from_: str = "alice", to: str = "bob",
             started: int = T0, project: int = 25,
             direction: Direction = Direction.INTERNAL) -> Call:
    return Call(project, call_id, from_, to, CALLING, direction, started, started)


def call_in(status: CallStatus) -> Call:
    """A call that reached ``status`` the only allowed way, one second per step."""
    call = new_call()
    path = {CALLING: [], RINGING: [RINGING], ANSWERED: [RINGING, ANSWERED],
            ENDED: [ENDED]}[status]
    for i, step in enumerate(path, 1):
        call = advance(call, step, T0 + 1000 * i, answered_by="dev-1")
    return call


# -- the transition table -----------------------------------------------------------------


def test_the_table_is_the_spec() -> None:
    assert {(a, b) for a, nexts in NEXT.items() for b in nexts} == ALLOWED


def test_calling_to_ringing_stamps_ringing() -> None:
    call = advance(new_call(), RINGING, T0 + 500)
    assert call.status is RINGING
    assert (call.started_ms, call.updated_ms, call.ringing_ms) == (T0, T0 + 500, T0 + 500)
    assert call.answered_ms is call.ended_ms is call.end_reason is call.answered_by is None
    assert call.active


def test_ringing_to_answered_stamps_answer_and_device() -> None:
    ringing = advance(new_call(), RINGING, T0 + 500)
    call = advance(ringing, ANSWERED, T0 + 900, answered_by="phone-2")
    assert call.status is ANSWERED
    assert (call.ringing_ms, call.answered_ms, call.updated_ms) == (T0 + 500, T0 + 900, T0 + 900)
    assert call.answered_by == "phone-2"
    assert call.ended_ms is None and call.end_reason is None
    assert call.active


def test_answered_to_ended_keeps_history() -> None:
    answered = advance(advance(new_call(), RINGING, T0 + 1), ANSWERED, T0 + 2, answered_by="d")
    call = advance(answered, ENDED, T0 + 60_000, EndReason.HANGUP)
    assert call.status is ENDED and not call.active
    assert (call.started_ms, call.ringing_ms, call.answered_ms, call.ended_ms,
            call.updated_ms) == (T0, T0 + 1, T0 + 2, T0 + 60_000, T0 + 60_000)
    assert call.end_reason is EndReason.HANGUP
    assert call.answered_by == "d"


@pytest.mark.parametrize("reason", list(EndReason))
@pytest.mark.parametrize("start", [CALLING, RINGING, ANSWERED])
def test_every_active_status_can_end_with_every_reason(start: CallStatus,
                                                       reason: EndReason) -> None:
    before = call_in(start)
    call = advance(before, ENDED, T0 + 99_000, reason)
    assert call.status is ENDED
    assert call.end_reason is reason
    assert call.ended_ms == call.updated_ms == T0 + 99_000
    # what happened before stays as it was
    assert (call.ringing_ms, call.answered_ms) == (before.ringing_ms, before.answered_ms)


def test_ending_without_a_reason_is_a_hangup() -> None:
    assert advance(new_call(), ENDED, T0 + 1).end_reason is EndReason.HANGUP


def test_calling_to_ended_never_rang() -> None:
    call = advance(new_call(), ENDED, T0 + 5, EndReason.BUSY)
    assert call.ringing_ms is None and call.answered_ms is None


def test_advance_makes_a_new_value() -> None:
    before = new_call()
    after = advance(before, RINGING, T0 + 1)
    assert before.status is CALLING and before.ringing_ms is None
    assert after is not before


REFUSED = [(a, b) for a in CallStatus for b in CallStatus if (a, b) not in ALLOWED]


@pytest.mark.parametrize(("start", "target"), REFUSED,
                         ids=[f"{a.value}->{b.value}" for a, b in REFUSED])
def test_every_other_transition_is_refused_with_27(start: CallStatus,
                                                   target: CallStatus) -> None:
    call = call_in(start)
    with pytest.raises(CallError) as caught:
        advance(call, target, T0 + 10_000, EndReason.HANGUP, answered_by="x")
    assert caught.value.r == Result.INVALID_CALL == 27
    assert call.call_id in caught.value.message
    assert caught.value.message == str(caught.value)


def test_refused_list_covers_repeats_backwards_and_skips() -> None:
    assert (CALLING, ANSWERED) in REFUSED  # skipping Ringing
    assert (ANSWERED, RINGING) in REFUSED  # backwards
    assert all((s, s) in REFUSED for s in CallStatus)  # repeats
    assert all((ENDED, s) in REFUSED for s in CallStatus)  # ended is final
    assert len(REFUSED) == 16 - len(ALLOWED)


# -- parse_status -----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "status"), [
    ("Calling", CALLING), ("calling", CALLING), ("RINGING", RINGING), ("Ringing", RINGING),
    ("answered", ANSWERED), ("  Answered ", ANSWERED), ("ended", ENDED), ("eNdEd", ENDED),
])
def test_parse_status_is_case_insensitive(raw: str, status: CallStatus) -> None:
    assert parse_status(raw) is status


@pytest.mark.parametrize("raw", ["", "ring", "Hangup", "Answered!", None, 1, True,
                                 ["Calling"], {"status": "Calling"}])
def test_parse_status_refuses_anything_else_with_21(raw: object) -> None:
    with pytest.raises(CallError) as caught:
        parse_status(raw)
    assert caught.value.r == Result.INVALID_REQUEST == 21


# -- JSON ---------------------------------------------------------------------------------


def test_to_json_of_a_new_call_has_only_what_happened() -> None:
    assert new_call().to_json() == {
        "callId": "c1", "from": "alice", "to": "bob", "status": "Calling",
        "direction": "internal", "startedAt": T0, "updatedAt": T0}


def test_to_json_of_an_ended_call_has_everything() -> None:
    call = advance(call_in(ANSWERED), ENDED, T0 + 7000, EndReason.NO_ANSWER)
    assert call.to_json() == {
        "callId": "c1", "from": "alice", "to": "bob", "status": "Ended",
        "direction": "internal", "startedAt": T0, "updatedAt": T0 + 7000,
        "ringingAt": T0 + 1000, "answeredAt": T0 + 2000, "endedAt": T0 + 7000,
        "answeredBy": "dev-1", "endReason": "no answer"}


@pytest.mark.parametrize("status", list(CallStatus))
@pytest.mark.parametrize("direction", list(Direction))
def test_json_round_trip(status: CallStatus, direction: Direction) -> None:
    call = call_in(status)
    call = Call(call.project_id, call.call_id, call.from_, call.to, call.status, direction,
                call.started_ms, call.updated_ms, call.ringing_ms, call.answered_ms,
                call.ended_ms, call.end_reason, call.answered_by)
    # through JSON text, as the store keeps it
    data = json.loads(json.dumps(call.to_json()))
    back = Call.from_json(call.project_id, data)
    assert back == call
    assert back.to_json() == data


@pytest.mark.parametrize("reason", list(EndReason))
def test_json_round_trip_of_every_end_reason(reason: EndReason) -> None:
    call = advance(new_call(project=26), ENDED, T0 + 3, reason)
    back = Call.from_json(26, json.loads(json.dumps(call.to_json())))
    assert back == call and back.end_reason is reason and back.project_id == 26


def test_parties() -> None:
    assert new_call().parties() == ("alice", "bob")
    assert new_call(from_="+84901", to="agent_1").parties() == ("+84901", "agent_1")
    assert new_call(from_="x", to="x").parties() == ("x",)


# -- the book -----------------------------------------------------------------------------


def test_book_start_get_and_duplicates() -> None:
    book = CallBook()
    call = book.start(new_call("c1"))
    assert book.get(25, "c1") is call
    with pytest.raises(CallError) as dup:
        book.start(new_call("c1", from_="carol", to="dave"))
    assert dup.value.r == 27
    assert book.get(25, "c1") is call  # the first one stays
    # the same id in another project is another call
    other = book.start(new_call("c1", project=26))
    assert book.get(26, "c1") is other


@pytest.mark.parametrize(("project", "call_id"), [(25, "nope"), (26, "c1")])
def test_book_get_unknown_is_27(project: int, call_id: str) -> None:
    book = CallBook()
    book.start(new_call("c1"))
    with pytest.raises(CallError) as caught:
        book.get(project, call_id)
    assert caught.value.r == Result.INVALID_CALL


def test_book_put_moves_ended_calls_out_of_the_calls_in_progress() -> None:
    book = CallBook()
    call = book.start(new_call("c1"))
    ringing = book.put(advance(call, RINGING, T0 + 1))
    assert book.get(25, "c1") is ringing
    assert book.calls == {(25, "c1"): ringing} and book.ended == {}
    ended = advance(ringing, ENDED, T0 + 2, EndReason.REJECTED)
    assert book.put(ended) is ended
    assert (25, "c1") not in book.calls
    assert book.active(25) == [] and book.of_user(25, "alice") == []
    # ... but the book still knows it ended: it is not a new call.
    assert book.find(25, "c1") is book.get(25, "c1") is ended
    with pytest.raises(CallError) as again:
        book.start(new_call("c1"))
    assert again.value.r == 27
    assert book.find(26, "c1") is None and book.find(25, "c2") is None


def test_book_keeps_only_the_latest_ended_calls() -> None:
    book = CallBook(ended_kept=3)
    for i in range(5):
        book.put(advance(book.start(new_call(f"c{i}", started=T0 + i)), ENDED, T0 + 10 + i))
    assert [key[1] for key in book.ended] == ["c2", "c3", "c4"]
    assert book.find(25, "c0") is None and book.find(25, "c1") is None
    assert book.get(25, "c4").status is ENDED
    # an ended call put again (a repeated report) is the newest, not a second entry
    book.put(book.get(25, "c2"))
    assert [key[1] for key in book.ended] == ["c3", "c4", "c2"]
    assert book.calls == {}


def test_book_active_is_per_project_in_start_order() -> None:
    book = CallBook()
    late = book.start(new_call("late", started=T0 + 50))
    early = book.start(new_call("early", from_="carol", to="dave", started=T0 + 10))
    elsewhere = book.start(new_call("x", project=26, started=T0))
    assert book.active(25) == [early, late]
    assert book.active(26) == [elsewhere]
    assert book.active(99) == []


def test_book_of_user_finds_both_sides_in_one_project() -> None:
    book = CallBook()
    a = book.start(new_call("a", from_="alice", to="bob"))
    b = book.start(new_call("b", from_="carol", to="alice"))
    c = book.start(new_call("c", from_="carol", to="dave"))
    book.start(new_call("d", from_="alice", to="bob", project=26))
    assert {x.call_id for x in book.of_user(25, "alice")} == {a.call_id, b.call_id}
    assert book.of_user(25, "bob") == [a]
    assert {x.call_id for x in book.of_user(25, "carol")} == {b.call_id, c.call_id}
    assert book.of_user(25, "erin") == []
    assert [x.call_id for x in book.of_user(26, "alice")] == ["d"]
