"""The promotion's silence counted from before the old lease ended, and the standby's wake at
the lease's end (decide.quiet_since, proof_from_silence, next_check_in, leader_record_unchanged).

Pure: snapshots of the pool's counters and store views made here, no chain and no clock.
"""

from __future__ import annotations

import pytest

from near_failover.ha.decide import (
    EXPIRY_POLL,
    PROMOTION_SILENCE_BLOCKS,
    SILENCE_AFTER_EXPIRY_BLOCKS,
    leader_record_unchanged,
    next_check_in,
    proof_from_silence,
    quiet_since,
)
from near_failover.ha.lease import ClusterView, LeaderInfo, MemberRecord, MemberRole
from near_failover.procedures.chain_view import Production
from near_failover.procedures.fence import ProofKind

EPOCH = 1000


def snap(height: int, produced: int, expected: int | None = None, epoch: int = EPOCH) -> Production:
    """The pool's counters at ``height``: ``produced`` blocks, one block and two endorsements
    expected per height since the epoch's start unless ``expected`` says otherwise."""
    due = expected if expected is not None else height - epoch
    return Production(height, epoch, produced, due, 0, 0, 0, 0)


START = snap(1100, 50)


@pytest.mark.parametrize(("start", "new", "expected"), [
    (None, START, START),                                    # the first snapshot starts a run
    (START, snap(1105, 50), START),                          # nothing produced: the run goes on
    (START, snap(1105, 51), snap(1105, 51)),                 # the pool produced: a new run from here
    (START, snap(1105, 50, epoch=1101), snap(1105, 50, epoch=1101)),  # a new epoch resets the counters
    (START, None, None),                                     # not a validator in this view: nothing counts
])
def test_quiet_since(start: Production | None, new: Production | None, expected: Production | None) -> None:
    assert quiet_since(start, new) == expected


def test_a_quiet_run_keeps_its_first_snapshot() -> None:
    assert quiet_since(START, snap(1120, 50)) is START


AFTER = SILENCE_AFTER_EXPIRY_BLOCKS
N = PROMOTION_SILENCE_BLOCKS


@pytest.mark.parametrize(("since", "expired_head", "now", "proves"), [
    # Silent for N heights, the last read AFTER heights past the head read once the lease was taken.
    (START, 1100 + N - AFTER, snap(1100 + N, 50), True),
    # Silent mostly before the lease ended: the window reaching past its end is what counts.
    (START, 1100 + N + 5, snap(1100 + N + 5 + AFTER, 50), True),
    # Not yet AFTER heights past the lease's end: a last signature may not show yet.
    (START, 1100 + N, snap(1100 + N + AFTER - 1, 50), False),
    # Too short a run of silence (a leader that fenced itself late).
    (START, 1100, snap(1100 + N - 1, 50), False),
    # The pool produced within the window: someone signs.
    (START, 1100, snap(1100 + N + 5, 51), False),
    # No duties due over the window: silence proves nothing.
    (snap(1100, 50, expected=60), 1100, snap(1100 + N + 5, 50, expected=60), False),
    # An epoch began: its counters cannot be compared with the last epoch's.
    (START, 1100, snap(1100 + N + 5, 50, epoch=1105), False),
    # No run of silence seen before the promotion.
    (None, 1100, snap(1100 + N + 5, 50), False),
])
def test_proof_from_silence(since: Production | None, expired_head: int, now: Production, proves: bool) -> None:
    proof = proof_from_silence(since, expired_head, now)
    assert (proof is not None) == proves
    if proof is not None:
        assert proof.kind is ProofKind.CHAIN_SILENCE
        assert proof.evidence["from"]["height"] == 1100 and proof.evidence["to"]["height"] == now.height
        assert proof.evidence["head_after_expiry"] == expired_head and proof.evidence["blocks_required"] == N


def record(name: str, updated_at: float) -> MemberRecord:
    return MemberRecord(name=name, role=MemberRole.LEADER if name == "val-a" else MemberRole.STANDBY, updated_at=updated_at)


def view(leader: str | None, ttl_left: float | None = None, leader_updated: float = 10.0) -> ClusterView:
    info = LeaderInfo(leader, 7, ttl_left=ttl_left) if leader else None
    return ClusterView(info, (record("val-a", leader_updated), record("val-b", 10.0)))


@pytest.mark.parametrize(("seen", "wait"), [
    (None, 1.0),                      # the store did not answer: the usual loop
    (view(None), 1.0),                # no leader
    (view("val-a"), 1.0),             # a leader whose end the store did not say (etcd, record fresh)
    (view("val-a", 7.0), 1.0),        # its lease ends after the next check anyway
    (view("val-a", 0.4), 0.4),        # it ends before: check then
    (view("val-a", 0.0), EXPIRY_POLL),  # etcd's whole seconds: less than one left, poll
    (view("val-b", 0.4), 1.0),        # this node leads: not a standby's wait
])
def test_a_standby_checks_again_when_the_leaders_lease_ends(seen: ClusterView | None, wait: float) -> None:
    assert next_check_in(seen, "val-b", 1.0) == wait


@pytest.mark.parametrize(("before", "after", "unchanged"), [
    (None, view("val-a"), False),                            # first read
    (view("val-a"), view(None), False),                      # no leader now
    (view("val-a", leader_updated=10.0), view("val-a", leader_updated=11.0), False),  # it published
    (view("val-a", leader_updated=10.0), view("val-a", leader_updated=10.0), True),   # it did not
    (view("val-a"), ClusterView(LeaderInfo("val-a", 7), (record("val-b", 10.0),)), True),  # its record expired
    (ClusterView(None, ()), view("val-a"), False),           # a new leader's record, not seen before
])
def test_a_leader_record_that_stands_still(before: ClusterView | None, after: ClusterView, unchanged: bool) -> None:
    assert leader_record_unchanged(before, after) is unchanged
