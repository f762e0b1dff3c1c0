"""The chain-silence proof and production arithmetic, without a chain."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from near_failover.neard.rpc import ValidatorsResponse
from near_failover.procedures.chain_view import Production, SilenceWatch, on_chain_public_key, production_of
from near_failover.procedures.plan import STEP_ORDER, MoveSettings, make_plan


def snap(height: int, produced: int, expected: int, epoch: int = 0) -> Production:
    return Production(height, epoch, produced, expected, 0, 0, 0, 0)


def test_silence_needs_enough_blocks_and_growing_duties():
    watch = SilenceWatch(blocks=5)
    assert watch.add(snap(100, 10, 12)) == "waiting"
    assert watch.add(snap(104, 10, 14)) == "waiting"  # only 4 blocks
    assert watch.add(snap(105, 10, 15)) == "silent"


def test_silence_without_expected_duties_proves_nothing():
    watch = SilenceWatch(blocks=3)
    watch.add(snap(100, 10, 12))
    assert watch.add(snap(110, 10, 12)) == "waiting"


def test_any_production_means_still_signing():
    watch = SilenceWatch(blocks=3)
    watch.add(snap(100, 10, 12))
    assert watch.add(snap(101, 11, 13)) == "signing"


def test_epoch_change_restarts_the_watch():
    watch = SilenceWatch(blocks=3)
    watch.add(snap(100, 10, 12, epoch=0))
    # Counters reset at the epoch start: a lower count is not "silence", the watch starts over.
    assert watch.add(snap(104, 0, 1, epoch=103)) == "waiting"
    assert watch.add(snap(107, 0, 4, epoch=103)) == "silent"


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30))
def test_silent_verdict_implies_no_production_since_first(steps):
    watch = SilenceWatch(blocks=4)
    height, produced, expected = 100, 5, 5
    first = snap(height, produced, expected)
    watch.add(first)
    for dh, de in steps:
        height += dh + 1
        expected += de
        verdict = watch.add(snap(height, produced, expected))
        if verdict == "silent":
            assert height - first.height >= 4 and expected > first.expected


def test_missed_between_snapshots():
    before = Production(10, 0, 5, 6, 8, 8, 20, 20)
    after = Production(20, 0, 6, 9, 9, 10, 25, 27)
    assert after.minus(before) == {"blocks": 2, "chunks": 1, "endorsements": 2}


def test_production_from_genuine_validators_response(fixtures_dir):
    body = json.loads((fixtures_dir / "rpc-validators-response.testnet-2.4.0.near-docs.json").read_text())
    validators = ValidatorsResponse.model_validate(body["result"])
    first = validators.current_validators[0]
    p = production_of(validators, first.account_id, 123)
    assert p is not None and p.blocks_expected == first.num_expected_blocks
    assert on_chain_public_key(validators, first.account_id) == first.public_key
    assert production_of(validators, "nobody.near", 1) is None


def test_plan_fences_before_any_step_that_gives_the_key():
    for reachable in (True, False):
        plan = make_plan("failover", "hot-swap", "a", "b", MoveSettings(), source_reachable=reachable)
        names = [s.name for s in plan.steps]
        assert tuple(names) == STEP_ORDER
        assert names.index("fence") < names.index("activate")
    assert "chain view" in make_plan("failover", "rpc", None, "b", MoveSettings(), False).steps[2].does
    assert make_plan("switchover", "rpc", "a", "b", MoveSettings(), True).steps[3].deadline == MoveSettings().activate_rpc
