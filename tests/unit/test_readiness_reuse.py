"""Which readiness checks an automatic promotion takes for its preflight's target checks
(``reusable_readiness``): only passed ones, with no problem found since, fresh within the bound.

Pure: no process, no clock (``now`` is given)."""

from __future__ import annotations

import pytest

from near_failover.ha.decide import READINESS_REUSE_TTLS, reusable_readiness
from near_failover.procedures.move import TargetReady

TTL = 10.0
BOUND = READINESS_REUSE_TTLS * TTL
BEGAN_AT = 100.0
READY = TargetReady(checks={"target_synced": True}, public_key="ed25519:staged", baseline=None, block_time=0.6, at=BEGAN_AT)
REFUSED = ["not ready to promote: target val-b is syncing (head 12); wait until it is synced"]


@pytest.mark.parametrize(
    ("ready", "problems", "age", "reused"),
    [
        pytest.param(READY, [], 0.0, True, id="fresh: just checked"),
        pytest.param(READY, [], BOUND / 2, True, id="fresh: within the bound"),
        pytest.param(READY, [], BOUND, True, id="fresh: at the bound"),
        pytest.param(READY, [], BOUND + 0.001, False, id="stale: past the bound"),
        pytest.param(READY, [], 3 * TTL, False, id="stale: checks timed out since, the last pass kept its time"),
        pytest.param(READY, REFUSED, 0.0, False, id="failed: the last verdict found a problem"),
        pytest.param(None, [], 0.0, False, id="failed: no check ever passed"),
        pytest.param(READY, [], -1.0, False, id="begun after now: not a check of this clock"),
    ],
)
def test_reuse_rule(ready: TargetReady | None, problems: list[str], age: float, reused: bool) -> None:
    got = reusable_readiness(ready, problems, BEGAN_AT + age, BOUND)
    assert (got is ready) if reused else (got is None)

