"""The monitor's agent model, without Textual: feeding, ordering, filters, thresholds."""

from __future__ import annotations

import pytest

from monitor.tui.model import (
    IDLE,
    UNKNOWN,
    AgentTable,
    Applied,
    Filter,
    Sort,
    Summary,
    Thresholds,
)
from tests.tui.scenario import NOW, calls_snapshot, message, team_snapshot, value


def team() -> AgentTable:
    table = AgentTable(thresholds=Thresholds(status={"break": 900, "after_call_work": 120},
                                             call={"Ringing": 20}))
    table.apply_snapshot("team_a", team_snapshot().values, seq=40, epoch="e1", now=NOW)
    table.apply_snapshot("ALL_CALL_STATUS", calls_snapshot().values, seq=7, epoch="e1",
                         now=NOW)
    return table


# -- feeding ---------------------------------------------------------------------------


def test_snapshot_creates_one_agent_per_user_with_values_and_since() -> None:
    table = team()
    assert sorted(table.agents) == [f"agent_{i}" for i in range(1, 7)]
    ann = table.agents["agent_1"]
    assert ann.name == "Ann Lee"
    assert ann.online == "online"
    assert table.status_of(ann) == "available"
    assert table.time_in(ann, "manual_status", NOW) == pytest.approx(125)
    assert ann.values["skill"] == "billing"
    # no displayName: the userId is the name
    assert table.agents["agent_6"].name == "agent_6"


def test_call_snapshot_gives_call_state_and_other_party() -> None:
    table = team()
    eve, six = table.agents["agent_5"], table.agents["agent_6"]
    assert eve.call_state == "Answered" and eve.on_call
    assert eve.other_party == "+15550100"
    assert six.call_state == "Ringing"
    assert six.other_party == "agent_1"  # agent_6 is the caller
    assert table.agents["agent_1"].call_state == IDLE
    assert table.agents["agent_1"].other_party is None


def test_message_changes_value_and_resets_time_in_state() -> None:
    table = team()
    result = table.apply_message("team_a", message("agent_1", "manual_status", "break",
                                                   "available", at=NOW + 5), seq=41,
                                 now=NOW + 5)
    assert result is Applied.APPLIED
    ann = table.agents["agent_1"]
    assert table.status_of(ann) == "break"
    assert table.time_in(ann, "manual_status", NOW + 65) == pytest.approx(60)
    assert ann.last_change == pytest.approx(NOW + 5)
    assert table.events[-1].new == "break" and table.events[-1].topic == "team_a"


def test_message_for_unknown_user_adds_the_agent() -> None:
    table = team()
    table.apply_message("team_a", message("agent_9", "onlineStatus", "online"), seq=41,
                        now=NOW)
    assert table.agents["agent_9"].online == "online"
    assert table.agents["agent_9"].name == "agent_9"


def test_duplicate_and_old_seq_are_ignored() -> None:
    table = team()
    assert table.apply_message("team_a", message("agent_1", "manual_status", "lunch"),
                               seq=40, now=NOW) is Applied.DUPLICATE
    assert table.status_of(table.agents["agent_1"]) == "available"
    assert table.apply_message("team_a", message("agent_1", "manual_status", "lunch"),
                               seq=41, now=NOW) is Applied.APPLIED
    assert table.apply_message("team_a", message("agent_1", "manual_status", "x"),
                               seq=41, now=NOW) is Applied.DUPLICATE
    assert table.status_of(table.agents["agent_1"]) == "lunch"


def test_gap_in_seq_is_applied_and_reported() -> None:
    table = team()
    result = table.apply_message("team_a", message("agent_1", "manual_status", "lunch"),
                                 seq=45, now=NOW)
    assert result is Applied.GAP
    assert table.status_of(table.agents["agent_1"]) == "lunch"
    assert table.topic_cursor("team_a") == ("e1", 45)


def test_snapshot_after_newer_messages_keeps_the_furthest_seq_and_newer_values() -> None:
    table = AgentTable()
    table.apply_message("t", message("a", "manual_status", "break", at=NOW), seq=11, now=NOW)
    # The snapshot (seq 10) answers after message 11 arrived: its older value loses.
    table.apply_snapshot("t", [value("a", "manual_status", "available", 60)], seq=10,
                         epoch="e", now=NOW)
    assert table.status_of(table.agents["a"]) == "break"
    assert table.apply_message("t", message("a", "manual_status", "lunch", at=NOW + 1),
                               seq=12, now=NOW + 1) is Applied.APPLIED


def test_resync_snapshot_of_a_new_epoch_resets_the_cursor() -> None:
    table = team()
    table.apply_snapshot("team_a", [value("agent_1", "manual_status", "lunch", 1)], seq=3,
                         epoch="e2", now=NOW)
    assert table.topic_cursor("team_a") == ("e2", 3)
    assert table.apply_message("team_a", message("agent_1", "manual_status", "break",
                                                  at=NOW + 1), seq=4,
                               now=NOW + 1) is Applied.APPLIED


def test_out_of_order_message_across_topics_does_not_roll_back() -> None:
    table = team()
    table.apply_message("a", message("agent_1", "manual_status", "lunch", at=NOW + 10),
                        seq=1, now=NOW + 10)
    table.apply_message("b", message("agent_1", "manual_status", "break", at=NOW + 5),
                        seq=1, now=NOW + 10)
    assert table.status_of(table.agents["agent_1"]) == "lunch"


def test_same_change_on_two_topics_is_one_timeline_entry() -> None:
    table = AgentTable()
    call = message("a", "call", "Ringing", at=NOW, callId="c1", **{"from": "x", "to": "a"})
    table.apply_message("call_a", call, seq=1, now=NOW)
    table.apply_message("ALL_CALL_STATUS", call, seq=1, now=NOW)
    assert len(table.timeline("a")) == 1
    assert len(table.events) == 2  # the event log shows both topic messages


def test_invalid_messages_are_refused_without_harm() -> None:
    table = team()
    before = dict(table.agents)
    for bad in ({}, {"userId": 5, "attribute": "x"}, {"userId": "a"},
                {"userId": "", "attribute": "x"}):
        assert table.apply_message("t", bad, seq=None, now=NOW) is Applied.INVALID
    assert table.agents == before
    # bad snapshot items are skipped, good ones kept
    used = table.apply_snapshot("t", [{"userId": None}, {"attribute": "x"},
                                      value("z", "manual_status", "break", 1)], now=NOW)
    assert used == 1 and "z" in table.agents


def test_missing_or_bad_timestamp_falls_back_to_now() -> None:
    table = AgentTable()
    msg = message("a", "manual_status", "break")
    msg["timestamp"] = "yesterday"
    table.apply_message("t", msg, now=NOW + 3)
    assert table.agents["a"].since["manual_status"] == NOW + 3


def test_call_ends_go_back_to_idle_and_keep_the_timeline() -> None:
    table = team()
    table.apply_message("ALL_CALL_STATUS", message(
        "agent_5", "call", "Ended", "Answered", at=NOW + 1, callId="c-17",
        **{"from": "+15550100", "to": "agent_5"}), seq=8, now=NOW + 1)
    eve = table.agents["agent_5"]
    assert eve.call_state == IDLE and not eve.on_call and eve.other_party is None
    assert [c.new for c in table.timeline("agent_5") if c.attribute == "call"] == \
        ["Answered", "Ended"]


def test_a_call_shown_again_keeps_its_time_in_state() -> None:
    """The hub shows a second call as it rings, then, when the first ends, that end and
    the second call again: its ring time goes on from when it began to ring, for the
    grid, the longest ring and the thresholds; an older message still changes nothing."""
    table = AgentTable(thresholds=Thresholds(call={"Ringing": 20.0}))
    parties = {"from": "+15550100", "to": "ana"}

    def call(status: str, call_id: str, at: float, seq: int, **extra: object) -> None:
        table.apply_message("ALL_CALL_STATUS", message(
            "ana", "call", status, at=at, callId=call_id, **parties, **extra),
            seq=seq, now=at)

    call("Answered", "pstn-1", NOW, 1)
    call("Ringing", "pstn-2", NOW + 10, 2)
    call("Ended", "pstn-1", NOW + 30, 3, callEnded=False)
    call("Ringing", "pstn-2", NOW + 30, 4)
    ana = table.agents["ana"]
    assert ana.call_state == "Ringing" and ana.call_info is not None
    assert ana.call_info.call_id == "pstn-2"
    assert table.time_in(ana, "call", NOW + 35) == 25.0
    assert table.summary(NOW + 35).longest_ringing == 25.0
    assert table.summary(NOW + 35).breaches == 1  # rang over 20 s, not 5 s
    call("Answered", "pstn-1", NOW + 20, 5)  # late: pstn-1 ended at +30
    assert ana.call_state == "Ringing" and ana.call_info.call_id == "pstn-2"
    call("Answered", "pstn-2", NOW + 40, 6)
    assert table.time_in(ana, "call", NOW + 45) == 5.0
    call("Ended", "pstn-2", NOW + 50, 7)
    assert ana.call_state == IDLE and not ana.calls
    assert table.summary(NOW + 50).answered == 2


def test_timeline_holds_snapshot_then_changes_in_order() -> None:
    table = team()
    table.apply_message("team_a", message("agent_1", "manual_status", "break", at=NOW + 1),
                        seq=41, now=NOW + 1)
    table.apply_message("team_a", message("agent_1", "onlineStatus", "offline", at=NOW + 2),
                        seq=42, now=NOW + 2)
    entries = table.timeline("agent_1")
    assert [(c.attribute, c.new) for c in entries][-2:] == [("manual_status", "break"),
                                                            ("onlineStatus", "offline")]
    assert entries[0].topic is None  # the snapshot came first
    assert table.timeline("nobody") == []


def test_event_log_is_bounded() -> None:
    table = AgentTable(event_log_size=3)
    for i in range(10):
        table.apply_message("t", message("a", "manual_status", str(i)), seq=i + 1, now=NOW)
    assert [c.new for c in table.events] == ["7", "8", "9"]


def test_custom_attributes_are_found_in_order_of_appearance() -> None:
    table = team()
    assert table.custom_attributes == ["skill"]
    table.apply_message("team_a", message("agent_2", "queue", "vip"), seq=41, now=NOW)
    assert table.custom_attributes == ["skill", "queue"]


def test_unknown_presence_when_topics_carry_none() -> None:
    table = AgentTable()
    table.apply_message("t", message("a", "manual_status", "break"), now=NOW)
    assert table.agents["a"].online == UNKNOWN


def test_stale_flag_bumps_version_only_on_change() -> None:
    table = AgentTable()
    v = table.version
    table.set_stale(True)
    table.set_stale(True)
    assert table.stale and table.version == v + 1
    table.set_stale(False)
    assert not table.stale


# -- sort and filter -------------------------------------------------------------------


def names(table: AgentTable, **kwargs: object) -> list[str]:
    return [a.user_id for a in table.rows(NOW, **kwargs)]  # type: ignore[arg-type]


def test_default_sort_is_by_name_casefolded() -> None:
    assert names(team()) == ["agent_6", "agent_1", "agent_2", "agent_3", "agent_4",
                             "agent_5"]


@pytest.mark.parametrize(("column", "first", "last"), [
    ("online", "agent_6", "agent_4"),                # online first, offline last
    ("status", "agent_3", "agent_4"),               # after_call_work … lunch
    ("status_time", "agent_3", "agent_4"),          # 40 s … 1:30:00
    ("call", "agent_5", "agent_4"),                 # talking, ringing, then idle by name
    ("call_time", "agent_6", "agent_4"),            # 25 s, 95 s, then no call
    ("last_change", "agent_6", "agent_4"),          # most recent change first
    ("skill", "agent_1", "agent_5"),                # billing, sales, then unset by name
])
def test_sort_by_each_column(column: str, first: str, last: str) -> None:
    order = names(team(), sort=Sort(column))
    assert order[0] == first and order[-1] == last
    assert names(team(), sort=Sort(column, reverse=True)) == order[::-1]


def test_filter_text_matches_name_id_and_any_state() -> None:
    table = team()
    assert names(table, flt=Filter(text="lee")) == ["agent_6", "agent_1"]  # a call with her
    assert names(table, flt=Filter(text="chlo")) == ["agent_3"]
    assert names(table, flt=Filter(text="AGENT_4")) == ["agent_4"]
    assert names(table, flt=Filter(text="break")) == ["agent_2"]
    assert names(table, flt=Filter(text="after call")) == ["agent_3"]  # the status's words
    assert names(table, flt=Filter(text="offline")) == ["agent_4"]
    assert names(table, flt=Filter(text="talking")) == ["agent_5"]
    assert names(table, flt=Filter(text="ringing")) == ["agent_6"]
    assert names(table, flt=Filter(text="sales")) == ["agent_3"]
    assert names(table, flt=Filter(text="+1555")) == ["agent_5"]
    assert names(table, flt=Filter(text="   ")) == names(table)
    assert names(table, flt=Filter(text="zzz")) == []


def test_quick_filters_combine() -> None:
    table = team()
    assert "agent_4" not in names(table, flt=Filter(online_only=True))
    assert names(table, flt=Filter(on_call=True)) == ["agent_6", "agent_5"]
    assert names(table, flt=Filter(status="available")) == ["agent_6", "agent_1", "agent_5"]
    assert names(table, flt=Filter(status="available", on_call=True)) == ["agent_6",
                                                                          "agent_5"]
    assert names(table, flt=Filter(status="available", text="eve")) == ["agent_5"]
    assert Filter().active is False and Filter(on_call=True).active


# -- thresholds, summary, history --------------------------------------------------------


def test_thresholds_per_status_and_call_state() -> None:
    table = team()
    bob = table.agents["agent_2"]          # break for 1000 s > 900 s
    [breach] = table.breaches(bob, NOW)
    assert (breach.kind, breach.state, breach.limit) == ("status", "break", 900)
    assert breach.elapsed == pytest.approx(1000)
    assert [b.kind for b in table.breaches(table.agents["agent_6"], NOW)] == ["call"]
    chloe = table.agents["agent_3"]        # after_call_work 40 s, limit 120 s
    assert table.breaches(chloe, NOW) == []
    assert [b.state for b in table.breaches(chloe, NOW + 81)] == ["after_call_work"]
    assert table.breaches(table.agents["agent_5"], NOW + 10_000) == []  # no limit set


def test_online_threshold() -> None:
    table = AgentTable(thresholds=Thresholds(online={"offline": 60}))
    table.apply_snapshot("t", [value("a", "onlineStatus", "offline", 61)], now=NOW)
    assert [b.kind for b in table.breaches(table.agents["a"], NOW)] == ["online"]


def test_summary_totals() -> None:
    summary = team().summary(NOW)
    assert summary.total == 6
    assert summary.by_online == {"online": 5, "offline": 1}
    assert summary.by_status == {"available": 3, "break": 1, "after_call_work": 1,
                                 "lunch": 1}
    assert summary.by_call == {IDLE: 4, "Answered": 1, "Ringing": 1}
    assert summary.on_call == 2
    assert summary.available == 1    # Ann: available, online, no call
    assert summary.breaches == 2     # Bob's break, agent_6 ringing


def test_kept_orders_move_only_the_agents_whose_keys_changed() -> None:
    """Hundreds of agents, changes in batches a few (agents moved one by one, by their
    old keys) or many (sorted anew) between reads, in every column: always the order a
    fresh sort gives."""
    import random

    rng = random.Random(11)
    table = AgentTable()
    table.apply_snapshot("t", [value(f"a{i:03d}", "team", f"t{i % 7}", 60, f"N{i % 40}")
                               for i in range(200)], now=NOW)
    columns = ["name", "online", "status", "status_time", "call", "call_time",
               "last_change", "team"]
    for step in range(120):
        for _ in range(rng.choice([1, 3, 20, 40])):
            user = f"a{rng.randrange(205):03d}"  # a few new ones on the way
            attribute = rng.choice(["manual_status", "onlineStatus", "call", "team"])
            new = rng.choice({"manual_status": ["available", "break", None],
                              "onlineStatus": ["online", "offline"],
                              "call": ["Ringing", "Answered", "Ended"],
                              "team": ["t1", "t2", None]}[attribute])
            extra = {"displayName": f"N{rng.randrange(40)}"} if rng.random() < 0.05 else {}
            table.apply_message("t", message(user, attribute, new, at=NOW + step, **extra),
                                now=NOW + step)
        for column in rng.sample(columns, 3):
            expected = sorted(table.agents.values(), key=lambda a: table.sort_key(a, column))
            assert names(table, sort=Sort(column)) == [a.user_id for a in expected], column


def test_history_samples_every_step_and_is_bounded() -> None:
    table = AgentTable(history_seconds=60, history_step=10)
    table.apply_snapshot("t", [value("a", "manual_status", "available", 1)], now=NOW)
    assert table.sample(NOW) is True
    assert table.sample(NOW + 5) is False
    for i in range(1, 20):
        table.sample(NOW + 10 * i)
    assert len(table.history) == 6
    assert table.history[-1].available == 1 and table.history[-1].on_call == 0


def test_kept_orders_stay_right_as_agents_change_and_columns_switch() -> None:
    import random

    rng = random.Random(7)
    table = team()
    table.thresholds = Thresholds(status={"break": 900, "after_call_work": 120},
                                  call={"Ringing": 20, "Answered": 600},
                                  online={"offline": 3000})
    statuses = ["available", "break", "lunch", "after_call_work", None]
    columns = ["name", "online", "status", "status_time", "call", "call_time",
               "last_change", "skill"]

    def fresh(column: str, reverse: bool) -> list[str]:
        agents = sorted(table.agents.values(), key=lambda a: table.sort_key(a, column),
                        reverse=reverse)
        return [a.user_id for a in agents]

    for step in range(300):
        user = f"agent_{rng.randrange(1, 12)}"  # some new agents appear on the way
        attribute = rng.choice(["manual_status", "onlineStatus", "call", "skill"])
        new = {"manual_status": rng.choice(statuses),
               "onlineStatus": rng.choice(["online", "offline"]),
               "call": rng.choice(["Ringing", "Answered", "Ended"]),
               "skill": rng.choice(["billing", "sales", None])}[attribute]
        extra = {"displayName": f"N{rng.randrange(5)}"} if rng.random() < 0.1 else {}
        table.apply_message("t", message(user, attribute, new, at=NOW + step, **extra),
                            now=NOW + step)
        column, reverse = rng.choice(columns), rng.random() < 0.3
        assert names(table, sort=Sort(column, reverse)) == fresh(column, reverse)
        flt = Filter(online_only=rng.random() < 0.5, on_call=rng.random() < 0.3,
                     status=rng.choice([None, "available", "break"]))
        expected = [u for u in fresh(column, reverse) if table.matches(table.agents[u], flt)]
        assert names(table, sort=Sort(column, reverse), flt=flt) == expected
        if step % 7 == 0:
            now = NOW + step + rng.choice([0, 100, 1000, 5000])
            assert plain(table.summary(now)) == plain(counted(table, now))


def counted(table: AgentTable, now: float) -> Summary:
    """The summary counted the plain way, agent by agent."""
    agents = list(table.agents.values())

    def tally(values: list[str | None]) -> dict[str, int]:
        return {v: values.count(v) for v in dict.fromkeys(values) if v is not None}

    return Summary(len(agents), tally([a.online for a in agents]),
                   tally([table.status_of(a) for a in agents]),
                   tally([a.call_state for a in agents]),
                   sum(table.is_available(a) for a in agents),
                   sum(a.on_call for a in agents),
                   sum(bool(table.breaches(a, now)) for a in agents))


def plain(summary: Summary) -> tuple[object, ...]:
    """What :func:`counted` counts of a summary."""
    return (summary.total, summary.by_online, summary.by_status, summary.by_call,
            summary.available, summary.on_call, summary.breaches)
