"""Pure decisions for automatic rejoin and for agent restarts without an outage.

The agent's loop calls these; they read nothing and change nothing, so each rule is a table
tested without processes (tests/unit/test_rejoin_policy.py).

Automatic rejoin (`[lease] auto_rejoin`, on by default): a node that fenced itself, or was fenced
by another's promotion, comes back as a standby on its own (procedures/rejoin.py does the work)
only when its key is out of its home, it has not fenced itself `max_self_fences` times within
`window` (no ping-pong: a node that keeps failing stays out and says why), and a rejoin was not
refused (an Option 1 node that validated with `standby = "rpc"`: the operator must choose). Once
its neard runs again it takes no lease, and is no candidate, until neard has been healthy for
`settle` seconds without a break.

Agent stops and starts: `systemctl stop` (SIGTERM) of an agent
- while paused leaves neard as it is, whatever the role, and a leader keeps its lease record
  (it disarms its watchdog: nobody is promoted while paused, and a later promotion proves its
  fence as any does) so a restart within the lease resumes it;
- of a leader while not paused hands the validator to the best ready standby through a
  switchover, then releases the lease; with no ready standby it fences neard and releases, and
  says that the pool stops signing;
- of a standby changes nothing.
A starting agent whose member identity holds the lease at the generation it recorded, with more
than its fence margin left, resumes that lease (same generation) instead of fencing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class RejoinSettings:
    auto_rejoin: bool = True
    settle: float = 60.0  # seconds neard must stay healthy before the node may lead again
    max_self_fences: int = 2  # this many self-fences within `window` keep a node out
    window: float = 3600.0


class RejoinStep(str, Enum):
    STAY_OUT = "stay-out"  # do nothing; `reason` says why
    REJOIN = "rejoin"  # run the rejoin procedure (park, config, unmask, start, sync, checks)
    SETTLING = "settling"  # neard runs as a standby: no lease, no candidacy yet
    ELIGIBLE = "eligible"  # a standby like any other


@dataclass(frozen=True)
class RejoinDecision:
    step: RejoinStep
    reason: str


@dataclass(frozen=True)
class FencedNode:
    """What the agent knows of its own node when it is not the leader."""

    fenced: bool  # neard stopped and masked by a fence (its own or a promotion's)
    key_in_home: bool
    neard_running: bool
    healthy_since: float | None  # since when neard has been healthy without a break, if it is
    self_fences: tuple[float, ...]  # when this node fenced itself (same clock as `now`)
    refused: str | None = None  # why the last rejoin was refused, until the inventory changes


def recent(times: Iterable[float], now: float, window: float) -> int:
    """How many of ``times`` fall within the last ``window`` seconds."""
    return sum(1 for t in times if now - window <= t <= now)


def decide_rejoin(node: FencedNode, settings: RejoinSettings, paused: bool, now: float) -> RejoinDecision:
    """Whether a node that is not the leader rejoins, waits, or takes part as a standby."""
    if node.fenced:
        if not settings.auto_rejoin:
            return RejoinDecision(RejoinStep.STAY_OUT, "auto_rejoin is off: run `near-failover rejoin`")
        if paused:
            return RejoinDecision(RejoinStep.STAY_OUT, "the cluster is paused: no automatic rejoin until resume")
        if node.key_in_home:
            return RejoinDecision(RejoinStep.STAY_OUT, "the pool key is still in its home: a rejoin parks it only while another node signs")
        if node.refused:
            return RejoinDecision(RejoinStep.STAY_OUT, f"the last rejoin was refused: {node.refused}")
        fences = recent(node.self_fences, now, settings.window)
        if fences >= settings.max_self_fences:
            return RejoinDecision(
                RejoinStep.STAY_OUT,
                f"it fenced itself {fences} times in the last {settings.window:g}s: it stays out until an operator "
                "runs `near-failover rejoin` (no ping-pong)",
            )
        return RejoinDecision(RejoinStep.REJOIN, "fenced, key out of its home: rejoining as a standby")
    if not node.neard_running or node.healthy_since is None:
        return RejoinDecision(RejoinStep.SETTLING, "neard is not healthy: no lease until it has been for the settling time")
    healthy_for = now - node.healthy_since
    if healthy_for < settings.settle:
        return RejoinDecision(RejoinStep.SETTLING, f"neard healthy for {healthy_for:.0f}s of {settings.settle:g}s: no lease yet")
    return RejoinDecision(RejoinStep.ELIGIBLE, "a ready standby")


def healthy_since(previous: float | None, healthy: bool, now: float) -> float | None:
    """The start of the current unbroken healthy stretch after one more check (None: unhealthy)."""
    if not healthy:
        return None
    return previous if previous is not None else now


class StopAction(str, Enum):
    LEAVE_NEARD = "leave-neard"  # nothing to do to neard (paused, or a standby)
    HAND_OVER = "hand-over"  # switchover to `target`, then release the lease
    FENCE = "fence"  # fence neard and release: no standby can take it


@dataclass(frozen=True)
class StopPlan:
    action: StopAction
    keep_lease: bool  # a paused leader keeps its lease record so a restart can resume it
    target: str | None
    message: str


def plan_agent_stop(node: str, leader: bool, paused: bool, ready_standbys: list[str]) -> StopPlan:
    """What a SIGTERM (`systemctl stop` or `restart`) makes an agent do before it exits.
    ``ready_standbys`` is best first (the promotion order: priority, then health)."""
    if not leader:
        return StopPlan(StopAction.LEAVE_NEARD, False, None, f"{node} is a standby: its neard is left as it is")
    if paused:
        return StopPlan(
            StopAction.LEAVE_NEARD, True, None,
            f"paused: {node}'s neard keeps signing; its lease is kept for a restart within it (same generation); "
            "nobody is promoted until resume",
        )
    if ready_standbys:
        target = ready_standbys[0]
        return StopPlan(StopAction.HAND_OVER, False, target,
                        f"planned stop of the leader's agent: switchover from {node} to {target}, then the lease is released")
    return StopPlan(StopAction.FENCE, False, None,
                    f"planned stop of the leader's agent and no ready standby: {node} fences its neard, the pool stops "
                    "signing; `pause` first to stop an agent without a move")


class StartAction(str, Enum):
    RESUME = "resume"  # renew the lease it held: same member, same generation
    CLAIM = "claim"  # its neard signs and nobody leads: claim a new lease
    FENCE_SELF = "fence-self"  # its neard signs but it may not lead
    FOLLOW = "follow"


@dataclass(frozen=True)
class LeaseSeen:
    """The store's leader at the agent's start, as the agent compares it with its own record."""

    member: str
    generation: int
    remaining: float  # seconds left of its lease


def plan_agent_start(node: str, recorded_generation: int | None, leader: LeaseSeen | None, neard_signs: bool,
                     fence_margin: float) -> StartAction:
    """The first decision of a starting agent. ``recorded_generation``: the generation this
    node's agent wrote in its own state before it stopped (None when it held no lease)."""
    if leader is not None and leader.member == node:
        if leader.generation == recorded_generation and leader.remaining > fence_margin:
            return StartAction.RESUME
        return StartAction.FENCE_SELF if neard_signs else StartAction.FOLLOW
    if leader is not None:
        return StartAction.FENCE_SELF if neard_signs else StartAction.FOLLOW
    return StartAction.CLAIM if neard_signs else StartAction.FOLLOW
