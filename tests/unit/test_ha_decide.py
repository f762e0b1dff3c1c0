"""decide(), the agent's one decision per loop, rule by rule; and its phases' transition table.

Pure: no process, no store, no clock. Every row of RULES (and of DESIGN.md's ha table) has a case
here, every allowed transition a test, and every other pair of phases must raise.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from near_failover.ha.decide import (
    FENCED_PROBLEM,
    RULES,
    TRANSITIONS,
    UNKEYED_SINCE,
    Decision,
    Health,
    IllegalTransition,
    Kind,
    Memory,
    Observation,
    Phase,
    Repeats,
    Rules,
    after_renewal,
    decide,
    ended_leader,
    handover_target,
    interrupted_to_take_over,
    transition,
    worth_logging,
)
from near_failover.ha.lease import ClusterView, FenceObservation, Handover, LeaderInfo, MemberRecord, MemberRole
from near_failover.procedures.journal import Run

POOL = "pool.poolv1.near"
ME = "val-b"
WALL = 1_000_000.0
NOW = 100.0  # monotonic; the agent started at 0, past the two-ttl start grace
SIGNING = Health(as_leader=(), as_standby=("a validator key is loaded on a standby (pool.poolv1.near)",), gone=False, key_loaded=POOL)
STANDING_BY = Health(as_leader=("the pool's key is not loaded",), as_standby=(), gone=False, key_loaded=None)
SICK_LEADER = Health(as_leader=("head stuck at 10",), as_standby=("head stuck at 10",), gone=False, key_loaded=POOL)
GONE = Health(as_leader=("neard RPC does not answer", "neard is not running"), as_standby=("neard RPC does not answer",),
              gone=True, key_loaded=None)
UNREADY = Health(as_leader=("the pool's key is not loaded",), as_standby=("no valid staged key: missing",), gone=False, key_loaded=None)


def observed(health: Health | None = STANDING_BY, **changes: object) -> Observation:
    base = Observation(node=ME, pool=POOL, priority=50, rules=Rules(), wall=WALL, lease_remaining=None, health=health)
    return replace(base, **changes)  # type: ignore[arg-type]


def leading(health: Health | None = SIGNING, **changes: object) -> Observation:
    return observed(health, **{"lease_remaining": 8.0, **changes})


def memory(phase: Phase = Phase.STANDBY, **changes: object) -> Memory:
    return replace(Memory(started=0.0, phase=phase, good=5, last_leader=LeaderInfo("val-a", 7)), **changes)  # type: ignore[arg-type]


def record(name: str, **changes: object) -> MemberRecord:
    fields = {"role": MemberRole.STANDBY, "healthy": True, "priority": 10, "updated_at": WALL, **changes}
    return MemberRecord(name=name, **fields)  # type: ignore[arg-type]


def cluster(leader: LeaderInfo | None = None, *members: MemberRecord, paused: bool = False, handover: Handover | None = None) -> ClusterView:
    return ClusterView(leader, tuple(members), paused, revision=42, handover=handover)


STANDBY = memory()
A_LEADS = cluster(LeaderInfo("val-a", 7), record("val-a", role=MemberRole.LEADER, generation=7))
NOBODY = cluster(None, record("val-a", role=MemberRole.FENCED, fenced_generation=7,
                              fence_observation=FenceObservation(verdict="gone", reason="port closed")))


@dataclass(frozen=True)
class Case:
    rule: str
    kind: Kind
    observation: Observation
    view: ClusterView | None = NOBODY
    memory: Memory = STANDBY
    now: float = NOW
    reason: str = ""  # a fragment the one-line reason must contain


CASES = [
    Case("leader-watchdog", Kind.SELF_FENCE, leading(watchdog_problem="the agent's watchdog exited with -9"), None,
         memory(Phase.LEADER), reason="watchdog exited with -9: without it this node must not lead"),
    Case("leader-lease-ending", Kind.SELF_FENCE, leading(None, lease_remaining=2.9, renew_error="no answer within 2.0s"), None,
         memory(Phase.LEADER), reason="lease about to expire (2.9s left) and not renewed: no answer within 2.0s"),
    Case("observe", Kind.OBSERVE, leading(None), None, memory(Phase.LEADER)),
    # A switchover's source stops its own neard: neither its watchdog nor its margin moves it.
    Case("handing-over", Kind.RENEW, leading(STANDING_BY, lease_remaining=1.0, watchdog_problem="stuck"), None,
         memory(Phase.HANDING_OVER), reason="renew only"),
    Case("leader-healthy", Kind.RENEW, leading(), None, memory(Phase.LEADER, bad=2), reason="healthy"),
    Case("leader-gone", Kind.SELF_FENCE, leading(GONE), None, memory(Phase.LEADER), reason="neard is gone: neard RPC does not answer"),
    Case("leader-unhealthy-long", Kind.SELF_FENCE, leading(SICK_LEADER), None, memory(Phase.LEADER, bad=2),
         reason="unhealthy for 3 checks: head stuck at 10"),
    Case("leader-unhealthy-ending", Kind.SELF_FENCE, leading(SICK_LEADER, lease_remaining=1.2), None, memory(Phase.LEADER, bad=0),
         reason="lease about to expire (1.2s left)"),
    Case("leader-unhealthy", Kind.WAIT, leading(SICK_LEADER), None, memory(Phase.LEADER, bad=1), reason="unhealthy for 2 of 3 checks"),
    Case("requested-refused", Kind.REFUSE, observed(failover_requested=True), A_LEADS, reason="val-a holds the lease (generation 7)"),
    Case("requested", Kind.PROMOTE, observed(failover_requested=True), NOBODY, reason="an operator's failover"),
    Case("signing-claim", Kind.CLAIM, observed(SIGNING), cluster(), memory(Phase.STARTING), reason="no one held the lease"),
    Case("signing-backoff", Kind.WAIT, observed(SIGNING), cluster(),
         memory(backoff_until=NOW + 1, last_refusal="the lease could not be claimed", refusals=2),
         reason="backing off for 1.0s after: the lease could not be claimed (2 times in a row)"),
    Case("signing-handover", Kind.WAIT, observed(SIGNING),
         cluster(LeaderInfo("val-a", 7), record("val-a", role=MemberRole.LEADER, details={"handover_to": ME})),
         reason="taking over from val-a (planned switchover)"),
    Case("signing-other-leader", Kind.SELF_FENCE, observed(SIGNING), A_LEADS, reason="key loaded while val-a holds the lease"),
    Case("signing-reserved", Kind.SELF_FENCE, observed(SIGNING), replace(NOBODY, handover=Handover("val-c", "val-a", 7)),
         reason="key loaded while the lease is handed over to val-c"),
    Case("signing-wait", Kind.WAIT, observed(SIGNING, store_ok=False), None, reason="the store does not answer"),
    Case("fenced-masked", Kind.WAIT, observed(masked=True), NOBODY, memory(Phase.FENCED), reason="fenced"),
    Case("starting-masked", Kind.WAIT, observed(masked=True), A_LEADS, memory(Phase.STARTING), reason="fenced before this agent started"),
    Case("standby-leader", Kind.WAIT, observed(), A_LEADS, reason="val-a leads (generation 7)"),
    Case("standby-store-down", Kind.WAIT, observed(store_ok=False), None, reason="does not answer"),
    Case("standby-paused", Kind.WAIT, observed(), cluster(None, paused=True), reason="paused"),
    Case("standby-watchdog", Kind.WAIT, observed(watchdog_problem="the agent's watchdog is still starting"), NOBODY,
         reason="watchdog is still starting"),
    Case("standby-promised", Kind.WAIT, observed(), NOBODY, memory(confirmed_until=NOW + 1), reason="promised"),
    Case("standby-reserved", Kind.WAIT, observed(), replace(NOBODY, handover=Handover("val-c", "val-a", 7)),
         reason="val-a handed the lease over to val-c"),
    Case("standby-handed-over", Kind.PROMOTE, observed(), replace(NOBODY, handover=Handover(ME, "val-a", 7)),
         memory(good=0, last_leader=None, backoff_until=NOW + 3), now=5.0, reason="val-a handed its lease (generation 7) over to this node"),
    Case("standby-unready", Kind.WAIT, observed(UNREADY), NOBODY, reason="not ready: no valid staged key"),
    Case("standby-settling", Kind.WAIT, observed(), NOBODY, memory(good=0), reason="ready for 1 of 2 checks"),
    Case("standby-start-grace", Kind.WAIT, observed(), cluster(), memory(last_leader=None), now=5.0, reason="claims the lease first"),
    Case("standby-backoff", Kind.WAIT, observed(), NOBODY, memory(backoff_until=NOW + 3, last_refusal="preflight refused"),
         reason="backing off for 3.0s after: preflight refused"),
    Case("standby-handover", Kind.WAIT, observed(), cluster(None, record("val-a", role=MemberRole.FENCED, details={"handover_to": "val-c"})),
         reason="hands the lease to val-c"),
    Case("standby-not-best", Kind.WAIT, observed(), cluster(None, record("val-c", priority=90)), reason="val-c is the better candidate"),
    Case("standby-promote", Kind.PROMOTE, observed(), NOBODY, reason="val-a's lease (generation 7) ended"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_each_rule_decides_with_a_one_line_reason(case: Case) -> None:
    decision = decide(case.observation, case.view, case.memory, case.now)
    assert (decision.rule, decision.kind) == (case.rule, case.kind)
    assert case.reason in decision.reason and "\n" not in decision.reason


def test_every_rule_has_a_case() -> None:
    assert {c.rule for c in CASES} | {"renewal-lost", "renewal-unanswered", "renewal-isolated"} == {name for name, _ in RULES}


def test_a_healthy_leader_renews_even_late_and_is_checked_after() -> None:
    """As before the decision core: the margin is checked before neard is observed, and once the
    renewal answered (renewal-unanswered), not between: a healthy late leader tries to renew."""
    assert decide(leading(lease_remaining=2.0), None, memory(Phase.LEADER), NOW).kind is Kind.RENEW


def test_an_unhealthy_leader_says_it_is_unhealthy_even_at_its_margin() -> None:
    fence = decide(leading(SICK_LEADER, lease_remaining=0.5), None, memory(Phase.LEADER, bad=2), NOW)
    assert fence.rule == "leader-unhealthy-long" and "unhealthy for 3 checks" in fence.reason


def test_design_lists_the_rules_and_transitions_the_code_has() -> None:
    design = (Path(__file__).parents[2] / "DESIGN.md").read_text()
    listed_rules = re.findall(r"^\| \d+ \| `([a-z-]+)` \|", design, re.MULTILINE)
    assert listed_rules == [name for name, _ in RULES]
    listed_moves = set(re.findall(r"^\| (\w[\w-]*) → (\w[\w-]*) \|", design, re.MULTILINE))
    assert listed_moves == {(a.value, b.value) for a, b in TRANSITIONS}


# --- what the rules carry from loop to loop ------------------------------------------------


def test_a_standby_that_promotes_names_the_lease_that_ended() -> None:
    decision = decide(observed(), NOBODY, memory(), NOW)
    assert decision.old_leader == LeaderInfo("val-a", 7) and not decision.requested


def test_a_lease_handed_over_to_an_unready_standby_waits_for_it_to_be_ready() -> None:
    """The reservation ends with its ttl: the next candidate then promotes (no one waits longer)."""
    decision = decide(observed(UNREADY), replace(NOBODY, handover=Handover(ME, "val-a", 7)), STANDBY, NOW)
    assert (decision.rule, decision.kind) == ("standby-unready", Kind.WAIT)


def test_a_handover_names_the_lease_the_promotion_must_prove_fenced() -> None:
    decision = decide(observed(), replace(NOBODY, handover=Handover(ME, "val-x", 9)), STANDBY, NOW)
    assert decision.old_leader == LeaderInfo("val-x", 9)


def test_a_signing_handover_target_claims_its_lease() -> None:
    decision = decide(observed(SIGNING), replace(NOBODY, handover=Handover(ME, "val-a", 7)), STANDBY, NOW)
    assert (decision.rule, decision.kind) == ("signing-claim", Kind.CLAIM)


def test_the_lease_is_handed_to_the_best_fresh_ready_standby_never_to_its_holder() -> None:
    members = [record("val-a", role=MemberRole.LEADER, priority=100), record("val-b", priority=50),
               record("val-c", priority=90), record("val-d", priority=95, healthy=False),
               record("val-e", priority=99, updated_at=WALL - 60)]
    assert handover_target("val-a", members, Rules(), WALL) == "val-c"
    assert handover_target("val-a", members[:1], Rules(), WALL) is None


def test_a_stale_record_of_a_better_standby_does_not_hold_this_one_back() -> None:
    stale = cluster(None, record("val-c", priority=90, updated_at=WALL - 60))
    assert decide(observed(), stale, memory(), NOW).kind is Kind.PROMOTE


def test_a_fenced_node_whose_neard_was_unmasked_stands_by_again() -> None:
    decision = decide(observed(masked=False), A_LEADS, memory(Phase.FENCED, problems=(FENCED_PROBLEM,)), NOW)
    assert decision.next_memory.phase is Phase.STANDBY and decision.next_memory.problems == ()


def test_a_node_fenced_while_its_loop_gathered_stays_fenced() -> None:
    """A switchover's source becomes fenced while its loop awaits the store: that loop did not ask
    whether neard is masked, and must not take the fenced node for a standby."""
    assert decide(observed(masked=None), NOBODY, memory(Phase.FENCED), NOW).rule == "fenced-masked"


def test_an_agent_restarted_on_a_masked_neard_is_fenced_not_a_standby() -> None:
    """Only what was seen: masked, fenced (its automatic rejoin decides as before the restart);
    not asked, or not masked, the start goes on as any start does."""
    fenced = decide(observed(masked=True), A_LEADS, memory(Phase.STARTING), NOW)
    assert fenced.next_memory.phase is Phase.FENCED and fenced.next_memory.problems == (FENCED_PROBLEM,)
    for masked in (None, False):
        assert decide(observed(masked=masked), A_LEADS, memory(Phase.STARTING), NOW).next_memory.phase is Phase.STANDBY


def test_a_fenced_node_shows_the_fenced_problem() -> None:
    assert decide(observed(masked=True), NOBODY, memory(Phase.FENCED), NOW).next_memory.problems == (FENCED_PROBLEM,)


def test_an_operator_failover_to_a_masked_node_is_refused() -> None:
    decision = decide(observed(failover_requested=True, masked=True), NOBODY, memory(Phase.FENCED), NOW)
    assert decision.kind is Kind.REFUSE and "fenced" in decision.reason


def test_the_first_check_of_a_node_that_does_not_sign_makes_it_a_standby() -> None:
    assert decide(observed(), A_LEADS, memory(Phase.STARTING), NOW).next_memory.phase is Phase.STANDBY


def test_a_standby_remembers_the_last_other_leader_it_saw() -> None:
    seen = decide(observed(), cluster(LeaderInfo("val-c", 9)), memory(), NOW).next_memory.last_leader
    assert seen == LeaderInfo("val-c", 9)


def test_hysteresis_counts_consecutive_verdicts() -> None:
    sick = decide(leading(SICK_LEADER), None, memory(Phase.LEADER, good=4), NOW).next_memory
    assert (sick.good, sick.bad) == (0, 1)
    well = decide(leading(), None, sick, NOW).next_memory
    assert (well.good, well.bad) == (1, 0)


def test_a_leader_kept_by_the_failsafe_says_so_in_its_problems() -> None:
    note = "lease store unavailable (etcd down); kept by failsafe confirmation of every member"
    assert decide(leading(failsafe_note=note), None, memory(Phase.LEADER), NOW).next_memory.problems == (note,)


def test_a_switchover_target_named_until_the_target_leads() -> None:
    handing = memory(Phase.FENCED, handover_to="val-c", handover_until=NOW + 10)
    assert decide(observed(masked=True), NOBODY, handing, NOW).next_memory.handover_to == "val-c"
    assert decide(observed(masked=True), cluster(LeaderInfo("val-c", 8)), handing, NOW).next_memory.handover_to is None
    assert decide(observed(masked=True), NOBODY, handing, NOW + 11).next_memory.handover_to is None
    # Between the switchover's move and its release the lease is still this node's: keep naming the target.
    assert decide(observed(masked=True), cluster(LeaderInfo(ME, 7)), handing, NOW).next_memory.handover_to == "val-c"


@pytest.mark.parametrize(("renewed", "remaining", "phase", "expected"), [
    (False, 9.0, Phase.LEADER, "renewal-lost"),
    (False, 9.0, Phase.HANDING_OVER, "renewal-lost"),
    (True, 2.0, Phase.LEADER, "renewal-unanswered"),
    (True, 2.0, Phase.HANDING_OVER, None),
    (True, 9.0, Phase.LEADER, None),
])
def test_after_a_renewal(renewed: bool, remaining: float, phase: Phase, expected: str | None) -> None:
    fence = after_renewal(renewed, remaining, phase, Rules(), None)
    assert (fence[0] if fence else None) == expected


# ttl 10, retry_timeout 2: isolation_bound 2 s unrenewed (remaining <= 8), fence_margin 3.
@pytest.mark.parametrize(("remaining", "unconfirmed", "error", "phase", "expected"), [
    (7.0, True, "no answer within 2.0s", Phase.LEADER, "renewal-isolated"),  # cut off: the first unanswered renewal
    (8.0, True, "no answer within 2.0s", Phase.LEADER, "renewal-isolated"),  # exactly at the bound
    (8.5, True, "connection refused", Phase.LEADER, None),  # a store refusing at once (restarting): renew next loop
    (7.0, False, "no answer within 2.0s", Phase.LEADER, None),  # a member confirmed (store outage): the margin rule
    (7.0, True, None, Phase.LEADER, None),  # renewed
    (7.0, True, "no answer within 2.0s", Phase.HANDING_OVER, None),  # a switchover's source skips the checks
    (2.0, True, "no answer within 2.0s", Phase.LEADER, "renewal-unanswered"),  # past the margin: the older rule says so
])
def test_after_an_unanswered_renewal_nobody_confirmed(remaining: float, unconfirmed: bool, error: str | None, phase: Phase,
                                                      expected: str | None) -> None:
    fence = after_renewal(True, remaining, phase, Rules(), error, unconfirmed)
    assert (fence[0] if fence else None) == expected
    if expected == "renewal-isolated":
        assert fence is not None and "no member confirmed" in fence[1] and (error or "") in fence[1]


def test_the_isolation_bound_leaves_the_silence_time_before_the_lease_ends() -> None:
    """The bound's point: a cut-off leader's first unanswered renewal (a loop, then retry_timeout)
    fences it, and the chain's 10 blocks of silence (0.6 s blocks) fit in what is left of its lease."""
    rules = Rules()
    fenced_after = rules.loop_wait + rules.retry_timeout
    assert rules.isolation_bound <= fenced_after < rules.ttl - rules.fence_margin
    assert fenced_after + 10 * 0.6 <= rules.ttl


def test_one_log_line_per_decision_that_changed_something() -> None:
    renew = decide(leading(), None, memory(Phase.LEADER), NOW)
    assert worth_logging(None, renew)
    assert not worth_logging(renew, decide(leading(), None, renew.next_memory, NOW))  # a plain repeat
    fence = decide(leading(GONE), None, renew.next_memory, NOW)
    assert worth_logging(fence, fence)  # never quiet, even repeated
    wait = decide(observed(), A_LEADS, memory(), NOW)
    assert not worth_logging(wait, decide(observed(), A_LEADS, wait.next_memory, NOW))
    assert worth_logging(wait, decide(observed(), cluster(LeaderInfo("val-c", 9)), wait.next_memory, NOW))
    assert not worth_logging(wait, Decision(Kind.OBSERVE, "", wait.next_memory))


# --- the phase table --------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), sorted(TRANSITIONS), ids=[f"{a.value}->{b.value}" for a, b in sorted(TRANSITIONS)])
def test_an_allowed_transition(start: Phase, end: Phase) -> None:
    assert transition(start, end) is end
    assert memory(start).moved(end).phase is end


FORBIDDEN = sorted((a, b) for a, b in itertools.permutations(Phase, 2) if (a, b) not in TRANSITIONS)


@pytest.mark.parametrize(("start", "end"), FORBIDDEN, ids=[f"{a.value}->{b.value}" for a, b in FORBIDDEN])
def test_a_forbidden_transition_is_a_bug_that_raises(start: Phase, end: Phase) -> None:
    with pytest.raises(IllegalTransition, match=f"from {start.value} to {end.value}"):
        memory(start).moved(end)


def test_staying_in_a_phase_is_no_transition() -> None:
    assert all(transition(p, p) is p for p in Phase)


def test_nothing_goes_back_to_starting_and_a_promotion_never_hands_over() -> None:
    assert (Phase.STANDBY, Phase.STARTING) in FORBIDDEN and (Phase.PROMOTING, Phase.HANDING_OVER) in FORBIDDEN
    assert (Phase.STANDBY, Phase.HANDING_OVER) in FORBIDDEN and (Phase.FENCED, Phase.HANDING_OVER) in FORBIDDEN


def test_published_roles() -> None:
    assert Phase.PROMOTING.role == MemberRole.STANDBY and Phase.HANDING_OVER.role == MemberRole.LEADER
    assert Phase.FENCED.role == MemberRole.FENCED and Phase.STARTING.role == MemberRole.STARTING


# --- no retry storms: refusals back off, repeated records are said once with a count ----------

# (loop_wait, ttl, refusals in a row, wait before the next try in milliseconds): doubling from
# twice loop_wait, capped at three ttls.
BACKOFF_ROWS = [
    (1.0, 10.0, 1, 2_000),
    (1.0, 10.0, 2, 4_000),
    (1.0, 10.0, 3, 8_000),
    (1.0, 10.0, 4, 16_000),
    (1.0, 10.0, 5, 30_000),
    (1.0, 10.0, 500, 30_000),
    (0.4, 4.0, 1, 800),
    (0.4, 4.0, 3, 3_200),
    (0.4, 4.0, 4, 6_400),
    (0.4, 4.0, 5, 12_000),
]


@pytest.mark.parametrize(("loop_wait", "ttl", "refusals", "wait_ms"), BACKOFF_ROWS)
def test_the_backoff_doubles_from_twice_loop_wait_up_to_three_ttls(loop_wait: float, ttl: float, refusals: int, wait_ms: int) -> None:
    assert round(Rules(ttl=ttl, loop_wait=loop_wait).backoff(refusals) * 1000) == wait_ms


def test_refused_promotions_in_a_row_wait_longer_each_time_then_promote() -> None:
    """A standby refused again and again (its preflight fails) tries at 2, 4, 8 ... loop_waits,
    not every loop: one promotion per backoff, the waits in between are standby-backoff."""
    rules = Rules()
    mem, now, tries = memory(), NOW, []
    for _ in range(1_600):  # 200 s of 125 ms loops (exact in binary: no rounding in the sums)
        decision = decide(observed(), NOBODY, mem, now)
        mem = decision.next_memory
        if decision.kind is Kind.PROMOTE:
            tries.append(round((now - NOW) * 1000))
            mem = mem.refused("preflight refused: config.json invalid", now, rules)
        else:
            assert decision.rule == "standby-backoff", decision
        now += 0.125
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[:5] == [2_000, 4_000, 8_000, 16_000, 30_000] and set(gaps[5:]) == {30_000}, gaps
    assert len(tries) < 12  # not one per loop (1 600 loops)


def test_a_standby_refused_steps_aside_for_the_next_candidate_until_its_backoff_ends() -> None:
    """Issue 14: val-b (priority 90) refused at preflight publishes itself unhealthy for its
    backoff, so val-c, next by priority, is the best candidate and promotes meanwhile."""
    refused = memory().refused("preflight refused: config.json invalid", NOW, Rules())
    assert "stepping aside for 2s after a refused promotion: preflight refused" in refused.problems[-1]
    waiting = decide(observed(), NOBODY, refused, NOW + 0.5)
    assert waiting.rule == "standby-backoff" and waiting.next_memory.problems, waiting
    val_c = observed(node="val-c", priority=10)
    val_b = record("val-b", priority=90, healthy=not waiting.next_memory.problems)
    assert decide(val_c, cluster(None, val_b), memory(), NOW + 0.5).rule == "standby-promote"
    assert decide(val_c, cluster(None, record("val-b", priority=90)), memory(), NOW + 0.5).rule == "standby-not-best"
    after = decide(observed(), NOBODY, waiting.next_memory, refused.backoff_until)
    assert after.rule == "standby-promote" and not after.next_memory.problems, after


def test_a_claim_not_won_backs_off_then_claims_again() -> None:
    mem = memory(Phase.STARTING).refused("the lease could not be claimed", NOW, Rules())
    assert decide(observed(SIGNING), cluster(), mem, NOW + 1.9).rule == "signing-backoff"
    assert decide(observed(SIGNING), cluster(), mem, NOW + 2.0).kind is Kind.CLAIM


def test_another_leader_ends_the_backoff() -> None:
    mem = memory(refusals=4, backoff_until=NOW + 20, last_refusal="preflight refused")
    after = decide(observed(), A_LEADS, mem, NOW).next_memory
    assert (after.refusals, after.backoff_until, after.last_refusal) == (0, 0.0, None)
    assert decide(observed(), NOBODY, after, NOW).kind is Kind.PROMOTE


def test_a_leader_retrying_its_fence_is_not_backed_off() -> None:
    """Self-fence retries keep their cadence: a refusal's backoff never delays a leader's fence."""
    mem = memory(Phase.LEADER, refusals=5, backoff_until=NOW + 30, bad=2)
    assert decide(leading(SICK_LEADER), None, mem, NOW).kind is Kind.SELF_FENCE
    assert decide(leading(None, lease_remaining=1.0), None, mem, NOW).kind is Kind.SELF_FENCE


# (keys seen in turn, which of them are recorded, the runs recorded with their counts when they end)
REPEAT_ROWS = [
    (["a"], [True], []),
    (["a", "a", "a"], [True, False, False], []),
    (["a", "a", "a", "b"], [True, False, False, True], [("a", 3)]),
    (["a", "b", "a"], [True, True, True], []),
    (["a", "a", "b", "b", "a"], [True, False, True, False, True], [("a", 2), ("b", 2)]),
]


@pytest.mark.parametrize(("keys", "recorded", "runs"), REPEAT_ROWS)
def test_a_repeated_record_is_said_once_then_once_with_its_count(keys: list[str], recorded: list[bool],
                                                                   runs: list[tuple[str, int]]) -> None:
    repeats, said, ended_runs = Repeats(), [], []
    for key in keys:
        repeats, first, ended = repeats.seen(key)
        said.append(first)
        if ended is not None:
            ended_runs.append((ended.key, ended.count))
    assert said == recorded and ended_runs == runs


def test_a_run_that_ends_without_another_key_is_said_with_its_count() -> None:
    repeats = Repeats()
    for _ in range(105):
        repeats = repeats.seen("preflight refused")[0]
    assert repeats.ended() == Repeats("preflight refused", 105)
    assert Repeats("once", 1).ended() is None and Repeats().ended() is None


def run(run_id: int, kind: str, state: str, **detail: object) -> Run:
    return Run(run_id, POOL, kind, "hot-swap", "val-a", "val-b", datetime(2026, 12, 2, tzinfo=UTC), None,
               None if state in ("interrupted", "in-progress") else state, dict(detail), 4242, "host", state)


# (run, taken over by a promotion under lease generation 9?): only interrupted runs of an older
# lease, or an agent's own kind killed before it noted its lease; never an operator's move.
TAKE_OVER_ROWS = [
    (run(1, "auto-failover", "interrupted", lease_generation=8), True),
    (run(2, "auto-failover", "interrupted"), True),
    (run(3, "failover", "interrupted", lease_generation=7), True),
    (run(4, "auto-failover", "interrupted", lease_generation=9), False),
    (run(5, "auto-failover", "in-progress", lease_generation=8), False),
    (run(6, "auto-failover", "ok", lease_generation=8), False),
    (run(7, "failover", "interrupted"), False),
    (run(8, "switchover", "interrupted"), False),
]


@pytest.mark.parametrize(("interrupted", "taken"), TAKE_OVER_ROWS, ids=[f"run{r.id}" for r, _ in TAKE_OVER_ROWS])
def test_which_interrupted_runs_a_promotion_takes_over(interrupted: Run, taken: bool) -> None:
    assert interrupted_to_take_over([interrupted], 9) == ([interrupted] if taken else [])


def test_a_lease_whose_promotion_was_refused_is_not_the_old_leader_to_prove_fenced() -> None:
    """val-b held generation 30 for a promotion refused before the key was given, then stepped
    aside: val-c must prove val-a (generation 7, maybe still signing) fenced, not val-b."""
    val_a = record("val-a", role=MemberRole.LEADER, generation=7)
    val_b = record("val-b", details={UNKEYED_SINCE: 30})  # refused at 30, and at every lease since
    assert ended_leader("val-c", [val_a, val_b], LeaderInfo("val-b", 30)) == LeaderInfo("val-a", 7)
    assert ended_leader("val-c", [val_a, val_b], LeaderInfo("val-b", 41)) == LeaderInfo("val-a", 7)
    promoting = record("val-b", generation=45, details={UNKEYED_SINCE: 30})  # promoting again: it may get the key
    assert ended_leader("val-c", [val_a, promoting], LeaderInfo("val-b", 45)) == LeaderInfo("val-b", 45)
    assert ended_leader("val-c", [val_a, record("val-b")], LeaderInfo("val-b", 30)) == LeaderInfo("val-b", 30)
    assert ended_leader("val-c", [val_b], LeaderInfo("val-b", 30)) is None  # the Move then finds the signer itself
    decision = decide(observed(node="val-c"), cluster(None, val_b), memory(last_leader=LeaderInfo("val-b", 30)), NOW)
    assert decision.rule == "standby-promote" and decision.old_leader is None, decision
