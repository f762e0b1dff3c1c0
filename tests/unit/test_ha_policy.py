"""The rules in ha/policy.py, alone: when neard is gone, and whose fence a promoting standby must prove."""

from __future__ import annotations

from near_failover.ha.lease import LeaderInfo, MemberRecord, MemberRole
from near_failover.ha.policy import HealthTracker, Sample, ended_leader, proof_from_record

POOL = "pool.poolv1.near"


def test_a_neard_whose_process_is_gone_is_no_flap() -> None:
    tracker = HealthTracker(POOL)
    tracker.add(Sample(1.0, True, False, 10, POOL))
    tracker.add(Sample(2.0, rpc_ok=False, running=True))  # frozen or slow: hysteresis decides
    assert not tracker.gone() and tracker.problems(as_leader=True) == ["neard RPC does not answer"]
    tracker.add(Sample(3.0, rpc_ok=False, running=None))  # its control could not tell
    assert not tracker.gone()
    tracker.add(Sample(4.0, rpc_ok=False, running=False))
    assert tracker.gone() and tracker.problems(as_leader=True) == ["neard RPC does not answer", "neard is not running"]


def fenced(name: str, generation: int) -> MemberRecord:
    return MemberRecord(name=name, role=MemberRole.FENCED, fenced_generation=generation)


def test_the_record_of_the_leader_this_node_saw_proves_its_fence() -> None:
    members = [fenced("val-a", 5), MemberRecord(name="val-b"), MemberRecord(name="val-c")]
    ended = ended_leader("val-b", members, LeaderInfo("val-a", 5))
    proof = proof_from_record(members, ended)
    assert ended == LeaderInfo("val-a", 5)
    assert proof is not None and proof.kind == "self-fenced" and proof.evidence["generation"] == 5


def test_an_old_fence_record_is_no_proof_when_another_member_led_since() -> None:
    """val-b last saw val-a (generation 5), which fenced itself. Since then val-c held generation
    7 while val-b was not looking: val-a's record proves nothing about val-c, who may sign."""
    members = [fenced("val-a", 5), MemberRecord(name="val-b"), MemberRecord(name="val-c", role=MemberRole.LEADER, generation=7)]
    ended = ended_leader("val-b", members, LeaderInfo("val-a", 5))
    assert ended == LeaderInfo("val-c", 7)
    assert proof_from_record(members, ended) is None


def test_a_later_fence_record_names_the_leader_that_ended() -> None:
    members = [fenced("val-a", 5), fenced("val-c", 7), MemberRecord(name="val-b")]
    ended = ended_leader("val-b", members, LeaderInfo("val-a", 5))
    proof = proof_from_record(members, ended)
    assert ended == LeaderInfo("val-c", 7) and proof is not None and proof.evidence["node"] == "val-c"


def test_a_fence_record_for_another_generation_is_no_proof() -> None:
    members = [fenced("val-a", 4), MemberRecord(name="val-b")]
    assert proof_from_record(members, LeaderInfo("val-a", 5)) is None
    assert proof_from_record(members, None) is None


def test_this_node_own_records_and_nothing_known() -> None:
    assert ended_leader("val-b", [MemberRecord(name="val-b", generation=9)], None) is None
