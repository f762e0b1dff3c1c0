"""The health rules in ha/decide.py, alone: when neard is gone, and whose fence a promoting standby must prove."""

from __future__ import annotations

from near_failover.ha.decide import (
    HealthTracker,
    Sample,
    best_candidate,
    ended_leader,
    proof_from_observation,
    proof_from_record,
)
from near_failover.ha.lease import FenceObservation, LeaderInfo, MemberRecord, MemberRole
from near_failover.procedures.observe import SignerObservation, SignerVerdict

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


GONE = FenceObservation(verdict="gone", reason="val-a's RPC does not answer, port 3030 is closed and no process serves /h")


def fenced(name: str, generation: int, seen: FenceObservation | None = GONE) -> MemberRecord:
    return MemberRecord(name=name, role=MemberRole.FENCED, fenced_generation=generation, fence_observation=seen)


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


def test_a_fence_record_without_the_observation_is_no_proof() -> None:
    """An older agent's record, or one whose author only trusted its control: not a proof."""
    members = [fenced("val-a", 5, seen=None), MemberRecord(name="val-b")]
    assert proof_from_record(members, LeaderInfo("val-a", 5)) is None


def test_a_fence_record_whose_observation_saw_neard_signing_is_no_proof() -> None:
    for verdict in ("signing", "unproven"):
        members = [fenced("val-a", 5, FenceObservation(verdict=verdict, reason="...")), MemberRecord(name="val-b")]
        assert proof_from_record(members, LeaderInfo("val-a", 5)) is None


def test_the_proof_carries_what_the_old_leader_observed() -> None:
    for verdict in ("gone", "no-key"):
        seen = FenceObservation(verdict=verdict, reason=f"val-a: {verdict}")
        proof = proof_from_record([fenced("val-a", 5, seen)], LeaderInfo("val-a", 5))
        assert proof is not None and proof.evidence["observed"] == verdict and proof.evidence["observation"] == f"val-a: {verdict}"


def test_a_record_survives_the_store_with_its_observation() -> None:
    """What a standby reads back is what the agent wrote (the stores keep the JSON form)."""
    record = MemberRecord.model_validate_json(fenced("val-a", 5).model_dump_json())
    assert proof_from_record([record], LeaderInfo("val-a", 5)) is not None
    older = MemberRecord.model_validate({"name": "val-a", "role": "fenced", "fenced_generation": 5})  # an older agent's record
    assert older.fence_observation is None and proof_from_record([older], LeaderInfo("val-a", 5)) is None


def test_this_node_own_look_at_the_old_leader() -> None:
    def seen(verdict: SignerVerdict) -> SignerObservation:
        return SignerObservation("val-a", verdict, f"val-a: {verdict.value}", rpc_answered=verdict in (SignerVerdict.SIGNING, SignerVerdict.NO_KEY))

    for verdict in (SignerVerdict.NO_KEY, SignerVerdict.GONE):
        proof = proof_from_observation(seen(verdict))
        assert proof is not None and proof.kind == "observed" and proof.evidence["verdict"] == verdict.value
    for verdict in (SignerVerdict.SIGNING, SignerVerdict.UNPROVEN):
        assert proof_from_observation(seen(verdict)) is None


def test_a_record_with_a_role_this_version_does_not_know_is_kept_and_never_promoted_nor_a_proof() -> None:
    """A newer agent may publish a role this one does not know: the record still reads (the
    stores keep the plain string), shows the role as it was, and counts as neither a standby to
    promote nor a fenced leader whose fence is proven."""
    known = MemberRecord.model_validate_json('{"name": "val-a", "role": "fenced"}')
    assert known.role is MemberRole.FENCED
    stored = fenced("val-a", 5).model_dump_json().replace('"role":"fenced"', '"role":"retired"')
    other = MemberRecord.model_validate_json(stored)
    assert other.role == "retired" and not isinstance(other.role, MemberRole)
    assert MemberRecord.model_validate_json(other.model_dump_json()).role == "retired"
    assert proof_from_record([other], LeaderInfo("val-a", 5)) is None
    healthy = MemberRecord(name="val-c", role="observer", healthy=True, priority=100)
    assert best_candidate([healthy, MemberRecord(name="val-b", healthy=True)], max_age=30.0) == "val-b"
