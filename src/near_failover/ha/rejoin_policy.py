"""Pure decisions for automatic rejoin and for agent restarts without an outage.

The agent's loop calls these; they read nothing and change nothing, so each rule is a table
tested without processes (tests/unit/test_rejoin_policy.py).

Automatic rejoin (`[lease] auto_rejoin`, on by default): a node that fenced itself, or was fenced
by another's promotion, comes back as a standby on its own (procedures/rejoin.py, the steps of
`near-failover rejoin`) once another node leads: it holds the lease and its own record says it
leads at that generation. Not while that node's promotion runs: it may need the fenced node's
record (a fence proof), and on a host whose agents share a journal the rejoin's run would refuse
the promotion's. Or once nobody has held the lease for two ttls (every node fenced or down, as
after two crashes in quick succession): no promotion runs then, and waiting for a leader would
wait for ever; such a rejoin skips the settling time, as there is nobody to hand back to. And only
when its key is out of its home, it has not fenced itself
`max_self_fences` times within `self_fence_window` (no ping-pong: a node that keeps failing stays
out and says why), and a rejoin was not refused (an Option 1 node that validated with
`standby = "rpc"`: the operator must choose). A switchover's source stays out: an operator moved
it away on purpose (an upgrade), and `near-failover rejoin` brings it back. Once its neard runs
again it takes no lease, and is no candidate, until neard has been healthy for `rejoin_settle`
seconds without a break.

Agent stops and starts: `systemctl stop` (SIGTERM) of an agent
- while paused leaves neard as it is, whatever the role, and a leader keeps its lease (not
  released; its watchdog disarmed: nobody is promoted while paused, and a later promotion proves
  its fence as any does) so a restart within the lease resumes it;
- of a leader while not paused hands the validator to the best ready standby through a
  switchover, then the lease goes to it; with no ready standby it fences neard and releases, and
  says that the pool stops signing;
- of a standby changes nothing.
A starting agent whose node holds the lease at the generation its last agent recorded, with more
than its fence margin left, resumes that lease (same generation) instead of fencing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from near_failover.ha.decide import AUTO_FAILOVER, Kind
from near_failover.ha.lease import ClusterView, MemberRole
from near_failover.inventory import LeaseSettings
from near_failover.procedures.journal import Run
from near_failover.procedures.plan import MoveKind

SELF_FENCE_KIND = Kind.SELF_FENCE.value  # the journal's kind of an agent's self-fence event
# The journal's moves; from_node is the node moved away from.
MOVE_KINDS = (MoveKind.SWITCHOVER.value, MoveKind.FAILOVER.value, AUTO_FAILOVER)


@dataclass(frozen=True)
class RejoinSettings:
    auto_rejoin: bool = True
    settle: float = 60.0  # seconds neard must stay healthy before the node may lead again
    max_self_fences: int = 2  # this many self-fences within `window` keep a node out
    window: float = 3600.0
    leaderless_wait: float = 20.0  # nobody held the lease this long: rejoin without a leader (two ttls)

    @classmethod
    def from_lease(cls, lease: LeaseSettings | None) -> RejoinSettings:
        if lease is None:
            return cls()
        return cls(lease.auto_rejoin, lease.rejoin_settle, lease.max_self_fences, lease.self_fence_window, 2 * lease.ttl)


@dataclass(frozen=True)
class FencedNode:
    """What the agent knows of its own node while it is fenced."""

    key_in_home: bool
    another_leads: bool  # another node holds the lease and its record says it leads (`leads_elsewhere`)
    self_fences: tuple[float, ...]  # when this node fenced itself (unix time, as `now`)
    handed_over: bool = False  # fenced as a switchover's source
    refused: str | None = None  # why the last rejoin was refused (until the agent restarts)
    last_try: float | None = None  # when the last rejoin that did not make it a standby began
    masked_unexplained: bool = False  # found masked at its agent's start, with no fence of it in the journal
    leaderless_for: float | None = None  # seconds the store has shown no lease and no handover (None: it has one, or no answer)


def leads_elsewhere(view: ClusterView | None, node: str) -> bool:
    """Whether a node other than ``node`` holds the lease and its own record says it leads at that
    generation: its promotion is over (a promoting node publishes itself a standby)."""
    leader = view.leader if view else None
    if view is None or leader is None or leader.member == node:
        return False
    record = view.member(leader.member)
    return record is not None and record.role == MemberRole.LEADER and record.generation == leader.generation


@dataclass(frozen=True)
class FenceHistory:
    """What a starting agent takes up from its node's journal, so that a restart forgets nothing
    the rejoin rules count: when the node fenced itself (unix times) and whether it was last moved
    away by a switchover."""

    self_fences: tuple[float, ...] = ()
    handed_over: bool = False
    fenced_here: bool = False  # the last run of this node fenced it: a self-fence, or a move away from it


def fence_history(runs: Sequence[Run], node: str) -> FenceHistory:
    """From journal runs, latest first: ``node``'s self-fences, and what its last run did to it (a
    switchover away; a self-fence or another move away; anything else, such as a rejoin)."""
    fences = tuple(sorted(run.started.timestamp() for run in runs if run.kind == SELF_FENCE_KIND and run.from_node == node))
    last = next((run for run in runs if node in (run.from_node, run.to_node)), None)
    if last is None or last.from_node != node or last.kind not in (SELF_FENCE_KIND, *MOVE_KINDS):
        return FenceHistory(fences)  # nothing of its own, moved to it, or rejoined since
    handed_over = last.kind == MoveKind.SWITCHOVER.value and last.outcome == "ok"
    return FenceHistory(fences, handed_over, fenced_here=True)


def recent(times: Iterable[float], now: float, window: float) -> int:
    """How many of ``times`` fall within the last ``window`` seconds."""
    return sum(1 for t in times if now - window <= t <= now)


def stay_out(node: FencedNode, settings: RejoinSettings, paused: bool, now: float) -> str | None:
    """Why a fenced node does not rejoin on its own now; None: it rejoins as a standby."""
    manual = "`near-failover rejoin` brings it back"
    if not settings.auto_rejoin:
        return f"auto_rejoin is off: {manual}"
    if node.handed_over:
        return f"handed over by a switchover (an operator's move): {manual}"
    if node.masked_unexplained:
        return f"neard was masked when this agent started, and the journal shows no fence of it (an operator's mask?): {manual}"
    if paused:
        return "the cluster is paused: no automatic rejoin until resume"
    if node.refused:
        return f"the last rejoin was refused: {node.refused}"
    fences = recent(node.self_fences, now, settings.window)
    if fences >= settings.max_self_fences:
        return (f"it fenced itself {fences} times in the last {settings.window:g}s: it stays out until an operator "
                f"runs `near-failover rejoin` (no ping-pong)")
    if not node.another_leads and (node.leaderless_for is None or node.leaderless_for < settings.leaderless_wait):
        return ("no other node leads yet: a rejoin waits until the new leader's promotion is over, or until nobody has "
                f"held the lease for {settings.leaderless_wait:g}s")
    if node.key_in_home:
        return "the pool key is still in its home: an operator parks it (`near-failover rejoin`)"
    if node.last_try is not None and now - node.last_try < settings.settle:
        return f"the last rejoin did not make it a standby: the next try in {settings.settle - (now - node.last_try):.0f}s"
    return None


def settling(since: float | None, settings: RejoinSettings, now: float, leaderless_for: float | None = None) -> str | None:
    """Why a rejoined node is no candidate yet (None once neard has been healthy for the settling
    time, or once nobody has held the lease for two ttls: there is no leader to leave in place)."""
    if leaderless_for is not None and leaderless_for >= settings.leaderless_wait:
        return None
    if since is None:
        return f"rejoined: neard not healthy yet, no lease until it has been for {settings.settle:g}s"
    healthy_for = now - since
    if healthy_for < settings.settle:
        return f"rejoined: neard healthy for {healthy_for:.0f}s of {settings.settle:g}s, no lease yet"
    return None


def healthy_since(previous: float | None, healthy: bool, now: float) -> float | None:
    """The start of the current unbroken healthy stretch after one more check (None: unhealthy)."""
    if not healthy:
        return None
    return previous if previous is not None else now


class StopAction(str, Enum):
    KEEP_LEASE = "keep-lease"  # paused: neard left as it is, the lease kept for a restart
    HAND_OVER = "hand-over"  # switchover to `target`: the lease goes to it
    FENCE = "fence"  # fence neard and release: no standby can take it


@dataclass(frozen=True)
class StopPlan:
    action: StopAction
    target: str | None
    message: str


def plan_agent_stop(node: str, paused: bool, best_standby: str | None) -> StopPlan:
    """What a SIGTERM (`systemctl stop` or `restart`) makes a leader's agent do before it exits
    (a standby's agent leaves its neard as it is). ``best_standby``: the one a promotion would pick."""
    if paused:
        return StopPlan(StopAction.KEEP_LEASE, None,
                        f"paused: {node}'s neard keeps signing; its lease is kept for a restart within it (same generation), "
                        "nobody is promoted until resume")
    if best_standby is not None:
        return StopPlan(StopAction.HAND_OVER, best_standby,
                        f"planned stop of the leader's agent: switchover from {node} to {best_standby}, the lease goes to it")
    return StopPlan(StopAction.FENCE, None,
                    f"planned stop of the leader's agent and no ready standby: {node} fences its neard, the pool stops "
                    "signing; `pause` first to stop an agent without a move")


@dataclass(frozen=True)
class LeaseSeen:
    """The store's leader at the agent's start, as the agent compares it with its own record."""

    member: str
    generation: int
    remaining: float | None  # seconds left of its lease (None: the store cannot tell)


def may_resume(node: str, recorded_generation: int | None, leader: LeaseSeen | None, fence_margin: float) -> bool:
    """Whether a starting agent takes up the lease its node holds (same member, same generation)
    instead of fencing. ``recorded_generation``: the generation this node's last agent wrote in
    its heartbeat (None when it held none, or its watchdog fenced it since)."""
    return (leader is not None and recorded_generation is not None and leader.member == node
            and leader.generation == recorded_generation and leader.remaining is not None
            and leader.remaining > fence_margin)
