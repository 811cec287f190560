"""TopicTracker (pure), Backoff and error mapping: no sockets."""

from __future__ import annotations

import random

import pytest

from monitor.client import (
    AuthenticationError,
    Backoff,
    HubError,
    NotFoundError,
    RateLimitedError,
    RefusedError,
    TopicPosition,
    TopicTracker,
    Verdict,
    error_for,
)
from monitor.protocol import Result

T = "team_a"


def msg(seq: int, topic: str = T) -> dict:
    return {"topic": topic, "seq": seq, "message": {"newValue": seq}}


def authen(seq: int, epoch: str = "e1", recovered: bool | None = None, topics=(T,)) -> dict:
    reply = {"r": 0, "subscribe": list(topics),
             "topics": {t: {"epoch": epoch, "seq": seq} for t in topics}}
    if recovered is not None:
        reply["recovered"] = {t: recovered for t in topics}
    return reply


def test_in_order_messages_are_delivered_and_duplicates_dropped():
    tracker = TopicTracker()
    assert tracker.on_authen(authen(5)) == []
    assert tracker.position(T) == TopicPosition("e1", 5)
    assert [tracker.on_message(msg(s)) for s in (6, 7, 7, 5, 8)] == [
        Verdict.DELIVER, Verdict.DELIVER, Verdict.DUPLICATE, Verdict.DUPLICATE, Verdict.DELIVER]
    assert tracker.position(T) == TopicPosition("e1", 8)


def test_untracked_messages_are_delivered_and_a_first_message_sets_the_baseline():
    tracker = TopicTracker()
    assert tracker.on_message({"topic": T, "message": {}}) is Verdict.DELIVER  # no seq
    assert tracker.on_message(msg(41, "other")) is Verdict.DELIVER
    assert tracker.on_message(msg(41, "other")) is Verdict.DUPLICATE
    assert tracker.position("other") == TopicPosition(None, 41)


def test_a_gap_holds_messages_until_the_snapshot_then_delivers_newer_ones():
    tracker = TopicTracker()
    tracker.on_authen(authen(0))
    assert tracker.on_message(msg(1)) is Verdict.DELIVER
    assert tracker.on_message(msg(3)) is Verdict.GAP
    assert tracker.resyncing(T)
    assert tracker.on_message(msg(4)) is Verdict.HELD
    assert tracker.on_message(msg(5)) is Verdict.HELD
    deliver, again = tracker.resync_done(T, {"epoch": "e1", "seq": 4, "values": []})
    assert [m["seq"] for m in deliver] == [5] and not again
    assert tracker.position(T) == TopicPosition("e1", 5) and not tracker.resyncing(T)
    assert tracker.resync_done(T, {"seq": 9}) == ([], False)  # no resync under way


def test_a_gap_after_the_snapshot_starts_another_resync():
    tracker = TopicTracker()
    tracker.on_authen(authen(0))
    tracker.on_message(msg(1))
    tracker.on_message(msg(3))
    tracker.on_message(msg(5))
    tracker.on_message(msg(7))
    deliver, again = tracker.resync_done(T, {"epoch": "e1", "seq": 3})
    assert deliver == [] and again and tracker.resyncing(T)
    deliver, again = tracker.resync_done(T, {"epoch": "e1", "seq": 6})
    assert [m["seq"] for m in deliver] == [7] and not again


def test_a_failed_snapshot_delivers_what_was_held_and_restarts_the_baseline():
    tracker = TopicTracker()
    tracker.on_authen(authen(0))
    tracker.on_message(msg(1))
    tracker.on_message(msg(3))
    tracker.on_message(msg(4))
    deliver, again = tracker.resync_done(T, None)
    assert [m["seq"] for m in deliver] == [3, 4] and not again
    assert tracker.on_message(msg(5)) is Verdict.DELIVER


def test_resume_request_and_recovered_topics_keep_their_position():
    tracker = TopicTracker()
    tracker.on_authen(authen(3, topics=(T, "b")))
    tracker.on_message(msg(4))
    assert tracker.resume_request() == {T: {"epoch": "e1", "seq": 4},
                                        "b": {"epoch": "e1", "seq": 3}}
    tracker.connection_lost()
    assert tracker.on_authen(authen(9, topics=(T, "b"), recovered=True),
                             resumed=[T, "b"]) == []
    assert [tracker.on_message(msg(s)) for s in (5, 6)] == [Verdict.DELIVER] * 2


def test_not_recovered_topics_resync_unless_nothing_changed():
    tracker = TopicTracker()
    tracker.on_authen(authen(3, topics=(T, "quiet")))
    tracker.connection_lost()
    reply = authen(3, topics=(T, "quiet"), recovered=False)
    reply["topics"][T]["seq"] = 7
    assert tracker.on_authen(reply, resumed=[T, "quiet"]) == [T]
    assert tracker.resyncing(T) and not tracker.resyncing("quiet")


def test_a_new_epoch_resyncs_and_the_snapshot_moves_to_it():
    tracker = TopicTracker()
    tracker.on_authen(authen(30))
    assert tracker.on_authen(authen(0, epoch="e2"), resumed=[]) == [T]
    tracker.resync_done(T, {"epoch": "e2", "seq": 0})
    assert tracker.position(T) == TopicPosition("e2", 0)
    assert tracker.on_message(msg(1)) is Verdict.DELIVER


def test_connection_lost_drops_held_messages_and_unsubscribed_topics_are_forgotten():
    tracker = TopicTracker()
    tracker.on_authen(authen(0, topics=(T, "gone")))
    tracker.on_message(msg(1))
    tracker.on_message(msg(3))
    tracker.connection_lost()
    assert not tracker.resyncing(T)
    assert tracker.resume_request()[T] == {"epoch": "e1", "seq": 1}  # the last delivered
    tracker.on_authen(authen(1, topics=(T,)), resumed=[T])
    assert set(tracker.positions()) == {T}


def test_an_application_snapshot_moves_the_position_forward_only():
    tracker = TopicTracker()
    tracker.on_authen(authen(5))
    tracker.on_snapshot(T, {"epoch": "e1", "seq": 4})
    assert tracker.position(T) == TopicPosition("e1", 5)
    tracker.on_snapshot(T, {"epoch": "e1", "seq": 8})
    assert tracker.position(T) == TopicPosition("e1", 8)


def test_backoff_full_jitter_bounds():
    backoff = Backoff(base=0.5, cap=4.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.ceiling(10_000) == 4.0  # no overflow
    rng = random.Random(7)
    draws = [backoff.delay(3, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 4.0 for d in draws)
    assert min(draws) < 0.1 and max(draws) > 3.9  # the full range is used
    assert not Backoff().gives_up_after(10**6)
    assert Backoff(max_attempts=3).gives_up_after(3)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    with pytest.raises(ValueError):
        Backoff(max_attempts=0)


@pytest.mark.parametrize(("r", "status", "kind"), [
    (6, None, AuthenticationError), (10, 401, AuthenticationError),
    (None, 401, AuthenticationError), (25, 404, NotFoundError), (None, 404, NotFoundError),
    (26, 429, RateLimitedError), (22, None, RefusedError), (27, 400, RefusedError),
    (None, 502, HubError),
])
def test_error_for_picks_the_type_from_r_then_status(r, status, kind):
    error = error_for(r, None, status=status)
    assert type(error) is kind and error.r == r and error.status == status
    assert error.message  # a known r or the status gives a message


def test_error_text_and_result():
    error = error_for(24, "topic not granted")
    assert str(error) == "topic not granted (r=24)"
    assert error.result is Result.TOPIC_NOT_GRANTED
    assert error_for(99, "odd").result is None
    assert error_for(6).message == "token expired"
