"""The automatic rejoin and agent stop/start tables (ha/rejoin_policy.py)."""

from __future__ import annotations

import pytest

from near_failover.ha.rejoin_policy import (
    FencedNode,
    LeaseSeen,
    RejoinSettings,
    RejoinStep,
    StartAction,
    StopAction,
    decide_rejoin,
    healthy_since,
    plan_agent_start,
    plan_agent_stop,
    recent,
)

SETTINGS = RejoinSettings(settle=30.0, max_self_fences=2, window=600.0)
FENCED = FencedNode(fenced=True, key_in_home=False, neard_running=False, healthy_since=None, self_fences=(900.0,))


def test_a_fenced_node_with_its_key_out_rejoins() -> None:
    assert decide_rejoin(FENCED, SETTINGS, paused=False, now=1000.0).step is RejoinStep.REJOIN


@pytest.mark.parametrize(
    ("node", "settings", "paused", "why"),
    [
        (FENCED, RejoinSettings(auto_rejoin=False), False, "auto_rejoin is off"),
        (FENCED, SETTINGS, True, "paused"),
        (FencedNode(True, True, False, None, ()), SETTINGS, False, "key is still in its home"),
        (FencedNode(True, False, False, None, (), refused='set standby = "hot-swap"'), SETTINGS, False, "hot-swap"),
        (FencedNode(True, False, False, None, (500.0, 900.0)), SETTINGS, False, "fenced itself 2 times"),
    ],
    ids=["off", "paused", "key-in-home", "refused", "ping-pong"],
)
def test_a_fenced_node_stays_out_and_says_why(node: FencedNode, settings: RejoinSettings, paused: bool, why: str) -> None:
    decision = decide_rejoin(node, settings, paused, now=1000.0)
    assert decision.step is RejoinStep.STAY_OUT and why in decision.reason


def test_old_self_fences_leave_the_window() -> None:
    node = FencedNode(True, False, False, None, (100.0, 300.0, 900.0))  # two of them more than 600 s ago
    assert recent(node.self_fences, 1000.0, 600.0) == 1
    assert decide_rejoin(node, SETTINGS, False, 1000.0).step is RejoinStep.REJOIN


def test_no_lease_before_the_settling_time() -> None:
    running = FencedNode(False, False, True, healthy_since=990.0, self_fences=())
    assert decide_rejoin(running, SETTINGS, False, 1000.0).step is RejoinStep.SETTLING
    assert decide_rejoin(running, SETTINGS, False, 1020.0).step is RejoinStep.ELIGIBLE
    down = FencedNode(False, False, False, None, ())
    assert decide_rejoin(down, SETTINGS, False, 5000.0).step is RejoinStep.SETTLING


def test_healthy_since_restarts_after_any_bad_check() -> None:
    since = None
    for now, ok in [(1.0, True), (2.0, True), (3.0, False), (4.0, True), (5.0, True)]:
        since = healthy_since(since, ok, now)
    assert since == 4.0


def test_agent_stop_table() -> None:
    assert plan_agent_stop("val-a", leader=False, paused=False, ready_standbys=["val-b"]).action is StopAction.LEAVE_NEARD
    paused = plan_agent_stop("val-a", leader=True, paused=True, ready_standbys=["val-b"])
    assert paused.action is StopAction.LEAVE_NEARD and paused.keep_lease and "keeps signing" in paused.message
    handover = plan_agent_stop("val-a", leader=True, paused=False, ready_standbys=["val-c", "val-b"])
    assert (handover.action, handover.target, handover.keep_lease) == (StopAction.HAND_OVER, "val-c", False)
    assert "switchover from val-a to val-c" in handover.message
    alone = plan_agent_stop("val-a", leader=True, paused=False, ready_standbys=[])
    assert alone.action is StopAction.FENCE and "pause" in alone.message


@pytest.mark.parametrize(
    ("recorded", "leader", "signs", "expected"),
    [
        (7, LeaseSeen("val-a", 7, 8.0), True, StartAction.RESUME),
        (7, LeaseSeen("val-a", 7, 1.0), True, StartAction.FENCE_SELF),  # too little left to renew in time
        (6, LeaseSeen("val-a", 7, 8.0), True, StartAction.FENCE_SELF),  # not the lease it recorded
        (7, LeaseSeen("val-b", 8, 8.0), True, StartAction.FENCE_SELF),
        (7, LeaseSeen("val-b", 8, 8.0), False, StartAction.FOLLOW),
        (None, None, True, StartAction.CLAIM),
        (None, None, False, StartAction.FOLLOW),
    ],
)
def test_agent_start_table(recorded: int | None, leader: LeaseSeen | None, signs: bool, expected: StartAction) -> None:
    assert plan_agent_start("val-a", recorded, leader, signs, fence_margin=3.0) is expected
