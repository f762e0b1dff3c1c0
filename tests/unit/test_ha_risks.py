"""The risks an agent alerts on, from successive checks (pure: no agent, no clock)."""

from __future__ import annotations

from near_failover.ha.alerts import AlertKind
from near_failover.ha.risks import Check, RiskWatch, below_kickout

POOL = "pool.poolv1.near"
FINE = {"blocks": {"produced": 95, "expected": 100}, "chunks": {"produced": 90, "expected": 100},
        "endorsements": {"produced": 80, "expected": 100}}


def check(at: float, role: str = "standby", problems: tuple[str, ...] = (), store_up: bool = True, paused: bool = False,
          epoch_start: int | None = 1, production: dict | None = None) -> Check:  # type: ignore[type-arg]
    return Check(at, role, problems, store_up, paused, epoch_start, production)


def kinds(events: list) -> list[AlertKind]:  # type: ignore[type-arg]
    return [e.kind for e in events]


def test_an_unready_standby_is_alerted_once_after_its_grace_and_again_after_recovering() -> None:
    watch = RiskWatch(POOL, "val-b", unready_grace=60)
    assert watch.update(check(0, problems=("no valid staged key: missing",))) == []
    assert watch.update(check(59, problems=("no valid staged key: missing",))) == []
    (event,) = watch.update(check(60, problems=("no valid staged key: missing",)))
    assert event.kind is AlertKind.STANDBY_UNREADY and event.node == "val-b" and "staged key" in event.reason
    assert watch.update(check(300, problems=("no valid staged key: missing",))) == []  # no storm
    assert watch.update(check(301)) == []  # ready again
    assert watch.update(check(302, problems=("neard is syncing",))) == []
    assert kinds(watch.update(check(362, problems=("neard is syncing",)))) == [AlertKind.STANDBY_UNREADY]
    # A leader's problems are its own alerts (self-fence), not an unready standby.
    assert RiskWatch(POOL, "val-a", unready_grace=0).update(check(0, role="leader", problems=("head stuck",))) == []


def test_store_down_and_a_long_pause() -> None:
    watch = RiskWatch(POOL, "val-a", store_grace=30, pause_limit=3600)
    assert watch.update(check(0, role="leader", store_up=False, paused=True)) == []
    assert kinds(watch.update(check(30, role="leader", store_up=False, paused=True))) == [AlertKind.STORE_DOWN]
    assert watch.update(check(3599, role="leader", paused=True)) == []
    (pause,) = watch.update(check(3600, role="leader", paused=True))
    assert pause.kind is AlertKind.LONG_PAUSE and "near-failover resume" in pause.reason
    # Only the leader speaks for the pool's pause: one message, not one per agent.
    standby = RiskWatch(POOL, "val-b", pause_limit=0)
    assert standby.update(check(0, paused=True)) == []


def test_kickout_risk_once_per_epoch_and_kind_from_the_leader() -> None:
    low = {**FINE, "blocks": {"produced": 70, "expected": 100}, "endorsements": {"produced": 60, "expected": 100}}
    assert below_kickout(low) == {"blocks": 70.0, "endorsements": 60.0}
    assert below_kickout({"blocks": {"produced": 1, "expected": 9}}) == {}  # too early to judge
    assert below_kickout(None) == {}
    watch = RiskWatch(POOL, "val-a")
    events = watch.update(check(0, role="leader", production=low, epoch_start=1))
    assert kinds(events) == [AlertKind.KICKOUT_RISK, AlertKind.KICKOUT_RISK]
    assert "blocks at 70.0% of expected" in events[0].reason and "threshold of 80%" in events[0].reason
    assert "endorsements at 60.0%" in events[1].reason and "threshold of 70%" in events[1].reason
    assert watch.update(check(10, role="leader", production=low, epoch_start=1)) == []
    assert len(watch.update(check(20, role="leader", production=low, epoch_start=601))) == 2  # a new epoch
    assert RiskWatch(POOL, "val-b").update(check(0, production=low)) == []  # standbys stay quiet
