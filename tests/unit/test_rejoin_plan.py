"""plan_rejoin: which nodes may rejoin as a standby, and what must happen before."""

from __future__ import annotations

import pytest

from near_failover.neard.config import Tracking
from near_failover.procedures.errors import Refused
from near_failover.procedures.rejoin import RejoinPlan, RejoinView, plan_rejoin

POOL = "pool.poolv1.near"


def view(**fields: object) -> RejoinView:
    base: dict[str, object] = {
        "node": "val-a", "mode": "hot-swap", "pool": POOL, "signs": False, "key_in_home": False, "other_signers": ("val-b",),
        "file_tracking": Tracking("NoShards", None, "tracked_shards_config"), "running_tracking": None,
    }
    base.update(fields)
    return RejoinView(**base)  # type: ignore[arg-type]


def test_a_fenced_primary_rejoins_with_nothing_first() -> None:
    assert plan_rejoin(view(), "inv.toml") == RejoinPlan(fence=False, park=False)


def test_a_key_left_in_home_while_another_signs_is_parked_first() -> None:
    assert plan_rejoin(view(key_in_home=True), "inv.toml") == RejoinPlan(fence=False, park=True)


def test_a_node_still_signing_beside_another_is_fenced_first() -> None:
    assert plan_rejoin(view(signs=True, key_in_home=True), "inv.toml") == RejoinPlan(fence=True, park=False)


@pytest.mark.parametrize("fields", [{"signs": True}, {"key_in_home": True}])
def test_the_only_signer_is_a_primary_not_a_standby(fields: dict[str, object]) -> None:
    with pytest.raises(Refused, match="no other node signs.*switchover -c inv.toml"):
        plan_rejoin(view(other_signers=(), **fields), "inv.toml")


def test_two_signers_elsewhere_are_refused() -> None:
    with pytest.raises(Refused, match="val-b, val-c all sign"):
        plan_rejoin(view(other_signers=("val-b", "val-c")), "inv.toml")


@pytest.mark.parametrize(
    ("file_mode", "running"), [("NoShards", None), ("AllShards", "NoShards")]
)
def test_an_option1_node_that_validated_is_refused_after_parking(file_mode: str, running: object) -> None:
    plan = plan_rejoin(view(mode="rpc", key_in_home=True, file_tracking=Tracking(file_mode, None, "x"), running_tracking=running), "inv.toml")
    assert plan.park and plan.refusal is not None
    assert 'Set standby = "hot-swap" for val-a in inv.toml' in plan.refusal


def test_an_option1_standby_tracking_all_shards_rejoins() -> None:
    plan = plan_rejoin(view(mode="rpc", file_tracking=Tracking("AllShards", None, "x"), running_tracking="AllShards"), "inv.toml")
    assert plan.refusal is None
