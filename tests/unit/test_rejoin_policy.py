"""The automatic rejoin and agent stop/start tables (ha/rejoin_policy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from near_failover.ha.lease import ClusterView, LeaderInfo, MemberRecord, MemberRole
from near_failover.ha.rejoin_policy import (
    FencedNode,
    FenceHistory,
    LeaseSeen,
    RejoinSettings,
    StopAction,
    fence_history,
    healthy_since,
    leads_elsewhere,
    may_resume,
    plan_agent_stop,
    recent,
    settling,
    stay_out,
)
from near_failover.inventory import LeaseSettings
from near_failover.procedures.journal import Journal

SETTINGS = RejoinSettings(settle=30.0, max_self_fences=2, window=600.0)
FENCED = FencedNode(key_in_home=False, another_leads=True, self_fences=(900.0,))


def _view(role: MemberRole, generation: int | None = 7, leader: str = "b") -> ClusterView:
    return ClusterView(LeaderInfo(leader, 7), (MemberRecord(name=leader, role=role, generation=generation),))


@pytest.mark.parametrize(
    ("view", "leads"),
    [
        (_view(MemberRole.LEADER), True),
        (_view(MemberRole.STANDBY), False),  # promoting: its record still says standby
        (_view(MemberRole.LEADER, generation=6), False),  # the record of an older lease
        (ClusterView(LeaderInfo("b", 7)), False),  # no record yet
        (_view(MemberRole.LEADER, leader="a"), False),  # the lease is its own
        (ClusterView(None), False),
        (None, False),
    ],
    ids=["leads", "promoting", "older-record", "no-record", "own-lease", "no-leader", "never-read"],
)
def test_another_node_leads_only_once_its_own_record_says_so(view: ClusterView | None, leads: bool) -> None:
    """A rejoin waits until the new leader's promotion is over: its run would hold the journal the
    promotion needs on a shared host, and the fenced record is the promotion's fence proof."""
    assert leads_elsewhere(view, "a") is leads


def test_a_fenced_node_with_its_key_out_rejoins_once_another_leads() -> None:
    assert stay_out(FENCED, SETTINGS, paused=False, now=1000.0) is None


def test_with_nobody_leading_for_two_ttls_a_fenced_node_rejoins_all_the_same() -> None:
    """Every node fenced or down (two crashes in quick succession): waiting for a leader would
    wait for ever, and no promotion can be running without a lease."""
    settings = RejoinSettings.from_lease(LeaseSettings(store="sqlite", ttl=4.0, loop_wait=0.5, retry_timeout=1.0))
    assert settings.leaderless_wait == 8.0
    for leaderless_for, rejoins in ((None, False), (0.5, False), (7.9, False), (8.0, True), (60.0, True)):
        node = FencedNode(key_in_home=False, another_leads=False, self_fences=(900.0,), leaderless_for=leaderless_for)
        why = stay_out(node, settings, paused=False, now=1000.0)
        assert (why is None) is rejoins, (leaderless_for, why)
    # The ping-pong limit and a pause still keep it out.
    twice = FencedNode(key_in_home=False, another_leads=False, self_fences=(950.0, 990.0), leaderless_for=60.0)
    assert "fenced itself 2 times" in (stay_out(twice, settings, paused=False, now=1000.0) or "")
    alone = FencedNode(key_in_home=False, another_leads=False, self_fences=(), leaderless_for=60.0)
    assert "paused" in (stay_out(alone, settings, paused=True, now=1000.0) or "")


@pytest.mark.parametrize(
    ("node", "settings", "paused", "why"),
    [
        (FENCED, RejoinSettings(auto_rejoin=False), False, "auto_rejoin is off"),
        (FencedNode(False, True, (), handed_over=True), SETTINGS, False, "switchover"),
        (FENCED, SETTINGS, True, "paused"),
        (FencedNode(False, True, (), refused='set standby = "hot-swap"'), SETTINGS, False, "hot-swap"),
        (FencedNode(False, True, (500.0, 900.0)), SETTINGS, False, "fenced itself 2 times"),
        (FencedNode(False, False, (900.0,)), SETTINGS, False, "no other node leads yet"),
        (FencedNode(True, True, ()), SETTINGS, False, "key is still in its home"),
        (FencedNode(False, True, (), last_try=980.0), SETTINGS, False, "next try in 10s"),
        (FencedNode(False, True, (), masked_unexplained=True), SETTINGS, False, "an operator's mask"),
    ],
    ids=["off", "switchover", "paused", "refused", "ping-pong", "no-leader", "key-in-home", "failed-lately", "operator-mask"],
)
def test_a_fenced_node_stays_out_and_says_why(node: FencedNode, settings: RejoinSettings, paused: bool, why: str) -> None:
    reason = stay_out(node, settings, paused, now=1000.0)
    assert reason is not None and why in reason, reason


def test_old_self_fences_leave_the_window() -> None:
    node = FencedNode(False, True, (100.0, 300.0, 900.0))  # two of them more than 600 s ago
    assert recent(node.self_fences, 1000.0, 600.0) == 1
    assert stay_out(node, SETTINGS, False, 1000.0) is None


def test_no_lease_before_the_settling_time() -> None:
    assert "10s of 30s" in (settling(990.0, SETTINGS, 1000.0) or "")
    assert settling(990.0, SETTINGS, 1020.0) is None
    # Nobody has held the lease for two ttls: no leader to leave in place, its health decides.
    assert settling(None, SETTINGS, 1000.0, leaderless_for=SETTINGS.leaderless_wait) is None
    assert settling(None, SETTINGS, 1000.0, leaderless_for=SETTINGS.leaderless_wait - 1) is not None
    assert "not healthy" in (settling(None, SETTINGS, 5000.0) or "")


def test_healthy_since_restarts_after_any_bad_check() -> None:
    since = None
    for now, ok in [(1.0, True), (2.0, True), (3.0, False), (4.0, True), (5.0, True)]:
        since = healthy_since(since, ok, now)
    assert since == 4.0


def test_agent_stop_table() -> None:
    paused = plan_agent_stop("val-a", paused=True, best_standby="val-b")
    assert paused.action is StopAction.KEEP_LEASE and paused.target is None and "keeps signing" in paused.message
    handover = plan_agent_stop("val-a", paused=False, best_standby="val-c")
    assert (handover.action, handover.target) == (StopAction.HAND_OVER, "val-c")
    assert "switchover from val-a to val-c" in handover.message
    alone = plan_agent_stop("val-a", paused=False, best_standby=None)
    assert alone.action is StopAction.FENCE and "pause" in alone.message


@pytest.mark.parametrize(
    ("recorded", "leader", "expected"),
    [
        (7, LeaseSeen("val-a", 7, 8.0), True),
        (7, LeaseSeen("val-a", 7, 1.0), False),  # too little left to renew in time
        (7, LeaseSeen("val-a", 7, None), False),  # the store cannot tell how much is left
        (6, LeaseSeen("val-a", 7, 8.0), False),  # not the lease it recorded
        (7, LeaseSeen("val-b", 7, 8.0), False),
        (None, LeaseSeen("val-a", 7, 8.0), False),  # its last agent recorded none (or its watchdog fenced it)
        (7, None, False),
    ],
)
def test_agent_start_table(recorded: int | None, leader: LeaseSeen | None, expected: bool) -> None:
    assert may_resume("val-a", recorded, leader, fence_margin=3.0) is expected


def test_settings_come_from_the_inventorys_lease_table() -> None:
    assert RejoinSettings.from_lease(None) == RejoinSettings()


def test_a_restarted_agent_takes_up_its_nodes_fences_from_the_journal(tmp_path: Path) -> None:
    """The no-ping-pong count and a switchover's source staying out survive an agent restart:
    both are read back from the node's journal, other nodes' runs left out."""
    with Journal(tmp_path / "journal.sqlite") as journal:
        journal.record_event("pool", "self-fence", "a", {})
        journal.record_event("pool", "self-fence", "b", {})
        journal.record_event("pool", "self-fence", "a", {})
        assert fence_history(journal.runs("pool"), "c") == FenceHistory()  # nothing of its own: a mask would be an operator's
        history = fence_history(journal.runs("pool"), "a")
        assert len(history.self_fences) == 2 and not history.handed_over and history.fenced_here
        assert stay_out(FencedNode(False, True, history.self_fences), SETTINGS, False, history.self_fences[-1] + 1) is not None

        moved = journal.start_run("pool", "switchover", "hot-swap", "a", "b")
        journal.finish_run(moved, "ok")
        assert fence_history(journal.runs("pool"), "a").handed_over
        assert not fence_history(journal.runs("pool"), "b").handed_over
        journal.finish_run(journal.start_run("pool", "rejoin", "hot-swap", "a"), "ok")
        rejoined = fence_history(journal.runs("pool"), "a")  # a mask since then is not near-failover's
        assert not rejoined.handed_over and not rejoined.fenced_here and len(rejoined.self_fences) == 2
        journal.finish_run(journal.start_run("pool", "auto-failover", "hot-swap", "a", "c"), "ok")
        assert fence_history(journal.runs("pool"), "a").fenced_here  # fenced by c's promotion
