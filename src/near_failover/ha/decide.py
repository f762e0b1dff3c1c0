"""The agent's decisions, as one pure function of what it observed: ``decide()``.

Kept apart from I/O so the rules that decide who may sign can be read and tested alone (Patroni's
``_run_cycle`` returns a reason per branch; pg_auto_failover keeps node states as an enum with a
table of transitions). One loop of the agent is observe -> ``decide()`` -> act; the rules are
``RULES`` below, in the order they are tried, and DESIGN.md's ha section lists the same rows.

The helpers below them are the health policy:
- health of one neard from a short history of observations (head advancing, the pool's
  production not stalled while duties are expected);
- hysteresis, so one bad sample neither demotes a leader nor promotes a standby (a neard whose
  process is gone is no flap: the leader steps down at once);
- which standby is the best candidate (priority, then name), among healthy eligible members;
- whose lease ended, and whether its own record proves it fenced itself: only with the
  observation, made after its fence, that its neard does not sign; otherwise what this node
  observes of the old leader itself, else (in the Move) the chain's silence.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field, replace

from near_failover.ha.lease import ClusterView, LeaderInfo, MemberRecord, MemberRole
from near_failover.ha.operator import failover_start_refusal, handover_to_another
from near_failover.procedures.chain_view import Production, SilenceWatch
from near_failover.procedures.fence import FenceProof, ProofKind
from near_failover.procedures.journal import INTERRUPTED, Run
from near_failover.procedures.move import TargetReady
from near_failover.procedures.observe import SignerObservation, SignerVerdict

NOT_SIGNING = frozenset({SignerVerdict.NO_KEY.value, SignerVerdict.GONE.value})


@dataclass(frozen=True)
class Sample:
    """One observation of a node: None fields mean the RPC did not answer."""

    at: float
    rpc_ok: bool
    syncing: bool | None = None
    head: int | None = None
    key_loaded: str | None = None
    produced: int | None = None  # the pool's produced duties this epoch (blocks + chunks + endorsements)
    expected: int | None = None
    epoch_start: int | None = None
    running: bool | None = None  # asked of the node's control when the RPC fails; None: not asked or unknown


@dataclass
class HealthTracker:
    """Turns samples into problems. `window` samples are kept for the trend checks."""

    pool: str
    window: int = 6
    stall_blocks: int = 10
    samples: deque[Sample] = field(default_factory=deque)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        while len(self.samples) > self.window:
            self.samples.popleft()

    def problems(self, as_leader: bool) -> list[str]:
        if not self.samples:
            return ["no observation yet"]
        last = self.samples[-1]
        if not last.rpc_ok:
            return ["neard RPC does not answer"] + (["neard is not running"] if last.running is False else [])
        found: list[str] = []
        if last.syncing:
            found.append("neard is syncing")
        answered = [s for s in self.samples if s.rpc_ok and s.head is not None]
        if len(answered) >= 3 and answered[-1].head == answered[0].head:
            found.append(f"head stuck at {last.head}")
        if as_leader:
            if last.key_loaded != self.pool:
                found.append("the pool's key is not loaded")
            if self._stalled():
                found.append(f"the pool produced nothing for {self.stall_blocks}+ blocks while duties were expected")
        elif last.key_loaded:
            found.append(f"a validator key is loaded on a standby ({last.key_loaded})")
        return found

    def gone(self) -> bool:
        """neard's process is gone (its control says so): a crash, not a flap to wait out."""
        return bool(self.samples) and self.samples[-1].running is False

    def _stalled(self) -> bool:
        """Produced counter flat while expected grew over at least stall_blocks, within one epoch."""
        last = self.samples[-1]
        if last.produced is None:
            return False
        for first in self.samples:
            if first.produced is None or first.epoch_start != last.epoch_start or first.head is None or last.head is None:
                continue
            if last.head - first.head >= self.stall_blocks:
                return last.produced == first.produced and (last.expected or 0) > (first.expected or 0)
        return False


@dataclass
class Streak:
    """Counts consecutive equal verdicts: hysteresis against flapping health."""

    good: int = 0
    bad: int = 0

    def record(self, ok: bool) -> None:
        if ok:
            self.good, self.bad = self.good + 1, 0
        else:
            self.good, self.bad = 0, self.bad + 1


def eligible(record: MemberRecord, now: float, max_age: float) -> bool:
    """A member that may be promoted: a healthy standby whose record is fresh."""
    return record.role == MemberRole.STANDBY and record.healthy and now - record.updated_at <= max_age


def best_candidate(records: list[MemberRecord], max_age: float, now: float | None = None) -> str | None:
    """The standby that should take over: highest priority, then name (deterministic for all)."""
    now = time.time() if now is None else now
    candidates = [r for r in records if eligible(r, now, max_age)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (-r.priority, r.name)).name


# A member record's detail: since this lease generation, every lease the member held ended with
# its promotion refused before the key was given (cleared once it keeps a lease).
UNKEYED_SINCE = "unkeyed_since"
def handover_target(me: str, members: list[MemberRecord], rules: Rules, wall: float) -> str | None:
    """Whom a leader that fenced itself hands its lease to: the best ready standby other than
    itself (None: nobody fits, the lease is released for anyone)."""
    return best_candidate([m for m in members if m.name != me], max_age=rules.record_max_age, now=wall)


def ended_leader(me: str, members: list[MemberRecord], last_seen: LeaderInfo | None) -> LeaderInfo | None:
    """Whose lease just ended: the highest generation any other member held, as this node last
    saw it or as the members' own records say (another may have led since this node looked).
    A lease whose holder's record says its promotion was refused before the key was given does
    not count: that member never signed, the leader before it may still (issue 14: a standby
    that steps aside after a refusal must not make the next one prove the wrong node fenced)."""
    records = {m.name: m for m in members}

    def unkeyed(leader: LeaderInfo) -> bool:
        record = records.get(leader.member)
        since = record.details.get(UNKEYED_SINCE) if record is not None else None
        return isinstance(since, int) and since <= leader.generation and record is not None and record.generation != leader.generation

    known = [last_seen] if last_seen is not None else []
    for m in members:
        if m.name != me:
            known += [LeaderInfo(m.name, g) for g in (m.generation, m.fenced_generation) if g is not None]
    return max((leader for leader in known if not unkeyed(leader)), key=lambda leader: leader.generation, default=None)


def proof_from_record(members: list[MemberRecord], ended: LeaderInfo | None) -> FenceProof | None:
    """The ended leader's own record that it fenced itself for that very generation and then
    observed its neard not signing (a record without that observation, an older agent's or a
    forged one, proves nothing: the control that acted may have lied)."""
    if ended is None:
        return None
    for m in members:
        if m.name == ended.member and m.role == MemberRole.FENCED and m.fenced_generation == ended.generation:
            seen = m.fence_observation
            if seen is None or seen.verdict not in NOT_SIGNING:
                return None
            return FenceProof(ProofKind.SELF_FENCED, {"node": m.name, "generation": ended.generation, "record_at": m.updated_at,
                                              "observed": seen.verdict, "observation": seen.reason, "observed_at": seen.observed_at})
    return None


def proof_from_observation(seen: SignerObservation) -> FenceProof | None:
    """This node's own look at the old leader: a proof only when it shows it not signing."""
    return FenceProof(ProofKind.OBSERVED, seen.evidence()) if seen.not_signing else None


PROMOTION_SILENCE_BLOCKS = 10  # heights of the pool's silence that prove an unreachable old leader fenced
SILENCE_AFTER_EXPIRY_BLOCKS = 2  # of which at least these after this node took the lease


def quiet_since(start: Production | None, snap: Production | None) -> Production | None:
    """The first snapshot of the run, ending with ``snap``, in which the pool produced nothing
    (within one epoch): where a standby starts counting a lost leader's silence, while that
    leader's lease still runs. ``snap`` itself when the pool produced or an epoch began."""
    if snap is None:
        return None
    if start is None or start.epoch_start_height != snap.epoch_start_height or snap.produced != start.produced:
        return snap
    return start


def proof_from_silence(since: Production | None, expired_head: int, now: Production,
                       blocks: int = PROMOTION_SILENCE_BLOCKS) -> FenceProof | None:
    """The chain's silence counted from before the old lease ended (DESIGN, ha: the fence proof
    of an unreachable leader): a proof when the pool produced nothing from ``since`` to ``now``
    (one epoch, its expected duties grown) over at least ``blocks`` heights, and ``now`` is at
    least SILENCE_AFTER_EXPIRY_BLOCKS past ``expired_head``, the head this node read once it
    held the new lease (the old lease ended, the old leader's watchdog deadline passed)."""
    if since is None or now.height < expired_head + SILENCE_AFTER_EXPIRY_BLOCKS:
        return None
    watch = SilenceWatch(blocks)
    watch.add(since)
    if watch.add(now) != "silent":
        return None
    return FenceProof(ProofKind.CHAIN_SILENCE, {**watch.evidence(), "counted_from": "before the old lease ended",
                                                "head_after_expiry": expired_head})


EXPIRY_POLL = 0.2  # seconds between a standby's checks in the last second of a leader's lease (etcd)


def next_check_in(view: ClusterView | None, node: str, loop_wait: float) -> float:
    """A standby's wait before its next check: loop_wait, or less when the store said the
    leader's lease ends sooner (it wakes then, not up to a loop later). etcd tells whole
    seconds (0: less than one left), so the last second is polled every EXPIRY_POLL."""
    leader = view.leader if view is not None else None
    if leader is None or leader.member == node or leader.ttl_left is None:
        return loop_wait
    return min(loop_wait, max(EXPIRY_POLL, leader.ttl_left))


def leader_record_unchanged(before: ClusterView | None, after: ClusterView) -> bool:
    """The leader's agent did not publish its record between two reads (frozen, cut off or
    stopped): the next read asks when its lease ends (etcd: one more request)."""
    if before is None or after.leader is None:
        return False
    old, new = before.member(after.leader.member), after.member(after.leader.member)
    return new is None or (old is not None and old.updated_at == new.updated_at)
AUTO_FAILOVER = "auto-failover"  # the journal's kind for an agent's own promotion
LEASE_GENERATION = "lease_generation"  # the run detail naming the lease a promotion ran under


def interrupted_to_take_over(runs: list[Run], generation: int) -> list[Run]:
    """The interrupted runs (their process gone, never finished) a promotion under lease
    ``generation`` closes as taken-over before its own, once their targets are proven fenced:
    those an agent ran under an older lease (an auto-failover killed before it noted its lease
    too). Any other interrupted run (an operator's move) is the operator's to look at."""
    def older(run: Run) -> bool:
        held = run.detail.get(LEASE_GENERATION)
        return held < generation if isinstance(held, int) else run.kind == AUTO_FAILOVER
    return [run for run in runs if run.state == INTERRUPTED and older(run)]


# --- the agent's phase and its transitions --------------------------------------------------


READINESS_REUSE_TTLS = 0.5  # a promotion reuses its standby's readiness checks begun within this many ttls


def reusable_readiness(ready: TargetReady | None, problems: list[str], now: float, bound: float) -> TargetReady | None:
    """The standby's last readiness checks, for its automatic promotion's preflight to take
    instead of running them again after the lease: only checks that passed, with no problem
    found since (``problems``: the last verdict), begun at most ``bound`` seconds before ``now``.
    What the lease changes or what may have moved since (the old leader, the other nodes'
    signing, the target's status and head, the staged key) the preflight reads again anyway."""
    if ready is None or problems:
        return None
    return ready if 0.0 <= now - ready.at <= bound else None


class Phase(enum.StrEnum):
    """What this agent is doing; one value, so "am I leader" has one answer."""

    STARTING = "starting"          # no decision yet
    STANDBY = "standby"            # no lease; may promote
    PROMOTING = "promoting"        # holds a new lease, proving the old leader's fence and activating
    LEADER = "leader"              # holds the lease; its neard signs
    HANDING_OVER = "handing-over"  # leader running a planned switchover: renews only
    FENCED = "fenced"              # fenced itself (neard masked) until an operator unmasks it

    @property
    def role(self) -> str:
        """The role published in member records and /status (a promotion is still a standby
        there, a switchover's source still the leader: what other agents must count on)."""
        return {Phase.PROMOTING: MemberRole.STANDBY, Phase.HANDING_OVER: MemberRole.LEADER}.get(self, self.value)


FENCED_PROBLEM = "fenced: neard is masked; unmask it and start it without the key to make this node a standby again"

# Every allowed change of phase, with why it happens; any other is a bug (IllegalTransition).
TRANSITIONS: dict[tuple[Phase, Phase], str] = {
    (Phase.STARTING, Phase.STANDBY): "first check: neard does not sign",
    (Phase.STARTING, Phase.LEADER): "its neard signs and no one holds the lease: claimed it (or its node still holds the lease its last agent recorded: resumed it)",
    (Phase.STARTING, Phase.PROMOTING): "an operator's failover taken up at the first check",
    (Phase.STARTING, Phase.FENCED): "its neard signs while another member holds the lease, or is masked (fenced before this agent started)",
    (Phase.STANDBY, Phase.PROMOTING): "no leader and the best candidate: took the lease",
    (Phase.STANDBY, Phase.LEADER): "its neard signs and no one holds the lease (a switchover's target)",
    (Phase.STANDBY, Phase.FENCED): "its neard signs while another member holds the lease",
    (Phase.PROMOTING, Phase.LEADER): "the promotion activated it (or its neard may sign: the lease is kept)",
    (Phase.PROMOTING, Phase.STANDBY): "the promotion was refused: lease released",
    (Phase.PROMOTING, Phase.FENCED): "fenced itself during the promotion (lease lost, agent stopping)",
    (Phase.LEADER, Phase.HANDING_OVER): "a planned switchover started",
    (Phase.LEADER, Phase.FENCED): "self-fence: unhealthy, neard gone, lease lost or ending, watchdog gone, agent stopping",
    (Phase.HANDING_OVER, Phase.FENCED): "the switchover moved the key: lease handed over (or lost meanwhile)",
    (Phase.HANDING_OVER, Phase.LEADER): "the switchover failed: still the leader",
    (Phase.FENCED, Phase.STANDBY): "an operator unmasked neard",
    (Phase.FENCED, Phase.PROMOTING): "an operator's failover to this (unmasked) node",
    (Phase.FENCED, Phase.LEADER): "its (unmasked) neard signs and no one holds the lease: claimed it",
}


class IllegalTransition(RuntimeError):
    """A change of phase that TRANSITIONS does not allow: a bug in the agent, never a state to run on."""


def transition(current: Phase, to: Phase) -> Phase:
    """``to``, if the table allows going there from ``current`` (staying is always allowed)."""
    if current is not to and (current, to) not in TRANSITIONS:
        raise IllegalTransition(f"no transition from {current.value} to {to.value}")
    return to


# --- what decide() reads and returns ----------------------------------------------------


BACKOFF_CAP_TTLS = 3.0  # the longest wait between two tries of the lease, in ttls


@dataclass(frozen=True)
class Rules:
    """The lease timing and hysteresis the decisions follow (the inventory's ``[lease]``)."""

    ttl: float = 10.0
    loop_wait: float = 1.0
    retry_timeout: float = 2.0
    unhealthy_loops: int = 3
    ready_loops: int = 2

    @property
    def watchdog_reserve(self) -> float:
        # The watchdog fences when this little of the lease is left and the loop has not renewed
        # it: the loop's own check (fence_margin, once per loop) comes first even when a loop runs
        # late, and there is still time for a SIGTERM, half of it, then a SIGKILL.
        return self.retry_timeout / 2

    def backoff(self, refusals: int) -> float:
        """How long the next try of the lease waits after ``refusals`` refusals in a row: twice
        loop_wait after the first, doubled each time, never more than BACKOFF_CAP_TTLS ttls (so
        a standby whose cause of refusal went away tries again within that)."""
        return min(BACKOFF_CAP_TTLS * self.ttl, self.loop_wait * 2.0 ** min(max(refusals, 1), 30))

    @property
    def fence_margin(self) -> float:
        return self.loop_wait + self.retry_timeout

    @property
    def isolation_bound(self) -> float:
        """How long a leader's lease may go unrenewed, the store silent and no member confirming
        it, before it fences itself (renewal-isolated) instead of at its fence margin: one whole
        renewal's retry_timeout. The first renewal after a cut starts within a loop and waits
        retry_timeout, so a leader cut off from the store and its peers stops signing about
        loop_wait + retry_timeout after its last renewal, not ttl - fence_margin; a store that
        refuses at once (restarting) gets the next loops' renewals first."""
        return self.retry_timeout

    @property
    def record_max_age(self) -> float:
        """A member record older than this is not a candidate's (its agent stopped publishing)."""
        return 3 * self.loop_wait + self.retry_timeout


@dataclass(frozen=True)
class Health:
    """One check of this node's neard, as the health policy reads it."""

    as_leader: tuple[str, ...]   # problems if this node leads
    as_standby: tuple[str, ...]  # problems if it stands by (readiness included)
    gone: bool                   # its control says neard's process is gone: a crash, not a flap
    key_loaded: str | None


@dataclass(frozen=True)
class Observation:
    """What the agent saw this loop, besides the cluster: gathered by I/O, read by decide()."""

    node: str
    pool: str
    priority: int
    rules: Rules
    wall: float                          # unix time (member records are stamped with it)
    lease_remaining: float | None        # None: no lease held
    watchdog_problem: str | None = None  # None while the watchdog watches
    health: Health | None = None         # None: not observed yet this loop
    store_ok: bool = True                # the store answered this loop's read
    renew_error: str | None = None       # why the last renewal failed
    failsafe_note: str | None = None     # set while the failsafe, not the store, keeps the lease
    masked: bool | None = None           # neard masked; None: not asked (the agent asks only while fenced)
    failover_requested: bool = False     # an operator's failover waits for this loop

    @property
    def signing(self) -> bool:
        return self.health is not None and self.health.key_loaded == self.pool


@dataclass(frozen=True)
class Memory:
    """What the agent carries from one loop to the next; a new one per decision."""

    started: float                        # monotonic time the agent started
    phase: Phase = Phase.STARTING
    good: int = 0                         # consecutive healthy checks
    bad: int = 0                          # consecutive unhealthy checks
    problems: tuple[str, ...] = ()        # shown in /status and the member record
    last_leader: LeaderInfo | None = None  # the last other leader seen: whose fence to prove
    handover_to: str | None = None        # a switchover's target, named in our record
    handover_until: float = 0.0           # until then (monotonic) once the key moved
    confirmed_until: float = 0.0          # a failsafe promise: no acquisition before this (monotonic)
    backoff_until: float = 0.0            # no acquisition before this (monotonic)
    last_refusal: str | None = None       # why the last promotion was refused
    refusals: int = 0                     # promotions refused or leases not won in a row (the backoff doubles)

    def moved(self, phase: Phase) -> Memory:
        return replace(self, phase=transition(self.phase, phase))

    def refused(self, reason: str, now: float, rules: Rules) -> Memory:
        """A promotion refused or a lease not won: no try again before the (doubled) backoff."""
        refusals = self.refusals + 1
        backoff = replace(self, refusals=refusals, last_refusal=reason, backoff_until=now + rules.backoff(refusals))
        return replace(backoff, problems=(*self.problems, *stepping_aside(backoff, now)))  # published before the next loop

    def unrefused(self) -> Memory:
        """A lease won, or another member leads: the next refusal starts the backoff afresh."""
        return replace(self, refusals=0, last_refusal=None, backoff_until=0.0)

    def counted(self, ok: bool) -> Memory:
        """Hysteresis: count consecutive equal verdicts."""
        return replace(self, good=self.good + 1, bad=0) if ok else replace(self, good=0, bad=self.bad + 1)


class Kind(enum.StrEnum):
    OBSERVE = "observe"        # nothing decided before neard is observed (a leader's first rules need no RPC)
    RENEW = "renew"            # a healthy leader renews its lease
    SELF_FENCE = "self-fence"  # key out, neard stopped and masked, then the lease released
    CLAIM = "claim"            # our neard signs and no one holds the lease: take it
    PROMOTE = "promote"        # take the lease, prove the old leader fenced, activate (Move)
    REFUSE = "refuse"          # an operator's failover that this node must not start
    HAND_OVER = "hand-over"    # a switchover moved the key: the lease goes to its target
    WAIT = "wait"              # nothing to do this loop; the reason says why


@dataclass(frozen=True)
class Decision:
    kind: Kind
    reason: str
    next_memory: Memory
    rule: str = ""                  # the RULES row that decided
    old_leader: LeaderInfo | None = None  # PROMOTE: whose fence to prove
    requested: bool = False         # PROMOTE: an operator's failover, with its options


# Every rule of decide(), in order: (name, what it decides). DESIGN.md lists the same rows.
RULES: tuple[tuple[str, str], ...] = (
    ("leader-watchdog", "leader whose watchdog does not watch: self-fence (before neard is observed)"),
    ("leader-lease-ending", "leader with less than fence_margin of its lease left: self-fence (before neard is observed)"),
    ("observe", "no health observed yet this loop: observe neard first"),
    ("handing-over", "leader running a switchover (neard stopped on purpose): renew only"),
    ("leader-healthy", "healthy leader: renew"),
    ("renewal-lost", "after a renewal: the store no longer holds the lease for this node: self-fence"),
    ("renewal-unanswered", "after an unanswered renewal (or none tried), less than fence_margin left: self-fence"),
    ("renewal-isolated", ("after an unanswered renewal that no member confirmed when asked (the failsafe), the lease "
                          "unrenewed for isolation_bound (retry_timeout): self-fence")),
    ("leader-gone", "leader whose neard process is gone: self-fence at once (a crash, not a flap)"),
    ("leader-unhealthy-long", "leader unhealthy for unhealthy_loops checks: self-fence"),
    ("leader-unhealthy-ending", "leader unhealthy for fewer checks, with less than fence_margin of its lease left: self-fence"),
    ("leader-unhealthy", "leader unhealthy for fewer checks: keep the lease, do not renew"),
    ("requested-refused", ("operator's failover while a leader holds the lease, the store is down, neard signs, the node is "
                           "fenced or its watchdog does not watch: refuse")),
    ("requested", "operator's failover otherwise: take the lease and promote with the operator's options"),
    ("signing-claim", "neard signs, no leader, store up, not paused, watchdog watching: claim the lease"),
    ("signing-backoff", "neard signs, no leader, but its last claim of the lease failed: wait out the backoff"),
    ("signing-handover", "neard signs while the leader's record names this node as its switchover's target: wait"),
    ("signing-other-leader", "neard signs while another member holds the lease: self-fence"),
    ("signing-reserved", "neard signs while the lease is handed over to another member: self-fence"),
    ("signing-wait", "neard signs but the lease cannot be claimed now (store down, paused, no watchdog): wait"),
    ("fenced-masked", "fenced and neard still masked: stay fenced"),
    ("starting-masked", "starting with neard masked (fenced before this agent started): fenced, as its last agent left it"),
    ("standby-leader", "another member leads: wait"),
    ("standby-store-down", "the store does not answer: no promotion"),
    ("standby-paused", "the cluster is paused: no promotion"),
    ("standby-watchdog", "the watchdog does not watch: no lease"),
    ("standby-promised", "a failsafe promise to a leader cut off from the store: no promotion for a ttl"),
    ("standby-reserved", "the last leader handed the lease over to another member: wait (at most its ttl)"),
    ("standby-unready", "standby with problems (health or readiness): no promotion"),
    ("standby-handed-over", ("ready, and the last leader handed the lease over to this node: take it and promote at once "
                             "(no settling, start grace, backoff or candidate order: the leader chose)")),
    ("standby-settling", "standby healthy for fewer than ready_loops checks: wait"),
    ("standby-start-grace", "no leader seen since start, less than two ttls ago: the signer's agent claims first"),
    ("standby-backoff", ("a promotion refused or a lease not won, refusals times in a row: wait loop_wait * 2^refusals, "
                         "at most 3 ttls (Memory.backoff_until), its record unhealthy meanwhile: the next candidate's turn")),
    ("standby-handover", "a switchover hands the lease to another member: wait"),
    ("standby-not-best", "another standby is the better candidate (priority, then name): wait"),
    ("standby-promote", "no leader, ready, the best candidate: take the lease and promote"),
)


def decide(observation: Observation, view: ClusterView | None, memory: Memory, now: float) -> Decision:
    """The one decision of this loop. ``view`` is the store's cluster as this loop read it (None:
    the store did not answer; a leader decides before reading it). ``now`` is monotonic time."""
    o, rules = observation, observation.rules

    def made(kind: Kind, rule: str, reason: str) -> Decision:
        return Decision(kind, reason, memory, rule)

    if o.lease_remaining is not None and memory.phase is not Phase.HANDING_OVER:
        if o.watchdog_problem is not None:
            return made(Kind.SELF_FENCE, "leader-watchdog", f"{o.watchdog_problem}: without it this node must not lead")
        if o.health is None and o.lease_remaining < rules.fence_margin:
            return made(Kind.SELF_FENCE, "leader-lease-ending", lease_ending_reason(o.lease_remaining, o.renew_error))
    if o.health is None:
        return made(Kind.OBSERVE, "observe", "neard not observed yet this loop")
    if o.lease_remaining is not None:
        return _as_leader(o, o.health, memory)
    return _as_follower(o, o.health, view, memory, now)


def lease_ending_reason(remaining: float, renew_error: str | None) -> str:
    why = f": {renew_error}" if renew_error else ""
    return f"lease about to expire ({remaining:.1f}s left) and not renewed{why}"


def _as_leader(o: Observation, health: Health, memory: Memory) -> Decision:
    rules = o.rules
    if memory.phase is Phase.HANDING_OVER:
        return Decision(Kind.RENEW, "a switchover in progress stops our neard on purpose: renew only", memory, "handing-over")
    problems = list(health.as_leader)
    mem = memory.counted(not problems)
    # Shown for as long as the failsafe holds the lease, not only between a confirmation and the
    # next check (with a store that hangs, that is a few milliseconds per loop).
    mem = replace(mem, problems=(*problems, *([o.failsafe_note] if o.failsafe_note else [])))
    if not mem.bad:
        return Decision(Kind.RENEW, "neard healthy and signing: renew the lease", mem, "leader-healthy")
    if health.gone:  # a restart (memtrie load) would cost more duties than a failover
        return Decision(Kind.SELF_FENCE, f"neard is gone: {'; '.join(problems)}", mem, "leader-gone")
    if mem.bad >= rules.unhealthy_loops:
        return Decision(Kind.SELF_FENCE, f"unhealthy for {mem.bad} checks: {'; '.join(problems)}", mem, "leader-unhealthy-long")
    if o.lease_remaining is not None and o.lease_remaining < rules.fence_margin:
        return Decision(Kind.SELF_FENCE, lease_ending_reason(o.lease_remaining, o.renew_error), mem, "leader-unhealthy-ending")
    return Decision(Kind.WAIT, f"unhealthy for {mem.bad} of {rules.unhealthy_loops} checks, lease not renewed: {'; '.join(problems)}",
                    mem, "leader-unhealthy")


def _as_follower(o: Observation, health: Health, view: ClusterView | None, memory: Memory, now: float) -> Decision:
    rules = o.rules
    leader = view.leader if view is not None else None
    members = list(view.members) if view is not None else []
    store_ok = o.store_ok and view is not None
    mem = memory
    if leader is not None and leader.member != o.node:
        mem = replace(mem, last_leader=leader)
        if mem.refusals:
            mem = mem.unrefused()
    if mem.handover_to and ((leader is not None and leader.member != o.node) or now >= mem.handover_until):
        # The switchover's target (or another) holds the lease, or it never claimed it. Not while
        # the lease is still ours: between the move and the release, a loop that cleared it would
        # publish a record without the target, and the target, signing, would fence itself.
        mem = replace(mem, handover_to=None)
    may_lead = o.watchdog_problem is None

    if o.failover_requested:
        fenced = mem.phase is Phase.FENCED and o.masked is not False  # not asked, or doubt: fenced
        refusal = failover_start_refusal(o.node, leader, store_ok, o.signing, fenced, may_lead)
        if refusal is not None:
            return Decision(Kind.REFUSE, refusal, mem, "requested-refused")
        return Decision(Kind.PROMOTE, "an operator's failover to this node", mem, "requested", requested=True)

    handover = view.handover if view is not None and leader is None else None
    if o.signing:
        if handover is not None and handover.to != o.node:
            return Decision(Kind.SELF_FENCE, f"neard has the pool's key loaded while the lease is handed over to {handover.to}", mem,
                            "signing-reserved")
        if leader is None and store_ok and not (view is not None and view.paused) and may_lead:
            if now < mem.backoff_until:
                return Decision(Kind.WAIT, _backing_off(mem, now), mem, "signing-backoff")
            return Decision(Kind.CLAIM, "its neard signs and no one held the lease", mem, "signing-claim")
        if leader is not None and leader.member != o.node:
            record = view.member(leader.member) if view is not None else None
            if record is not None and record.details.get("handover_to") == o.node:
                why = f"taking over from {leader.member} (planned switchover)"
                return Decision(Kind.WAIT, why, replace(mem, problems=(why,)), "signing-handover")
            return Decision(Kind.SELF_FENCE, f"neard has the pool's key loaded while {leader.member} holds the lease", mem,
                            "signing-other-leader")
        return Decision(Kind.WAIT, f"neard signs; the lease cannot be claimed now ({_why_not_claim(store_ok, view, o)})", mem, "signing-wait")

    # Never leave the fenced state on doubt, nor on a loop that did not ask (it became fenced
    # while this loop gathered its observation: a switchover's source).
    if mem.phase is Phase.FENCED and o.masked is not False:
        return Decision(Kind.WAIT, "fenced: neard is masked", replace(mem, problems=(FENCED_PROBLEM,)), "fenced-masked")
    if mem.phase is Phase.STARTING and o.masked is True:
        # An agent restarted on a fenced node: fenced still (status, automatic rejoin), not a
        # standby whose neard happens to be down.
        return Decision(Kind.WAIT, "starting: neard is masked, fenced before this agent started",
                        replace(mem.moved(Phase.FENCED), problems=(FENCED_PROBLEM,)), "starting-masked")
    if mem.phase is not Phase.STANDBY:
        mem = mem.moved(Phase.STANDBY)
    problems = health.as_standby
    # A standby backing off after a refused promotion steps aside: its record is not healthy, so
    # the next candidate by priority is the best one and takes its turn (issue 14).
    mem = replace(mem.counted(not problems), problems=(*problems, *stepping_aside(mem, now)))

    def wait(rule: str, reason: str) -> Decision:
        return Decision(Kind.WAIT, reason, mem, rule)

    if leader is not None:
        return wait("standby-leader", f"{leader.member} leads (generation {leader.generation})")
    if not store_ok or view is None:
        return wait("standby-store-down", "the lease store does not answer: no promotion")
    if view.paused:
        return wait("standby-paused", "the cluster is paused: no promotion until resume")
    if not may_lead:
        return wait("standby-watchdog", f"no lease while {o.watchdog_problem}")
    if now < mem.confirmed_until:
        return wait("standby-promised", "promised a leader cut off from the store not to promote yet")
    if handover is not None and handover.to != o.node:
        return wait("standby-reserved", f"{handover.source} handed the lease over to {handover.to}")
    if problems:
        return wait("standby-unready", f"not ready: {'; '.join(problems)}")
    if handover is not None:
        return Decision(Kind.PROMOTE, f"{handover.source} handed its lease (generation {handover.generation}) over to this node", mem,
                        "standby-handed-over", old_leader=LeaderInfo(handover.source, handover.generation))
    if mem.good < rules.ready_loops:
        return wait("standby-settling", f"ready for {mem.good} of {rules.ready_loops} checks")
    if mem.last_leader is None and now - mem.started < 2 * rules.ttl:
        return wait("standby-start-grace", "no leader seen since start: the signer's agent claims the lease first")
    if now < mem.backoff_until:
        return wait("standby-backoff", _backing_off(mem, now))
    target = handover_to_another(o.node, members)
    if target is not None:
        return wait("standby-handover", f"a planned switchover hands the lease to {target}")
    mine = MemberRecord(name=o.node, role=MemberRole.STANDBY, healthy=True, priority=o.priority, updated_at=o.wall)
    others = [m for m in members if m.name != o.node]
    best = best_candidate([*others, mine], max_age=rules.record_max_age, now=o.wall)
    if best != o.node:
        return wait("standby-not-best", f"{best} is the better candidate")
    ended = ended_leader(o.node, members, mem.last_leader)
    old = f"{ended.member}'s lease (generation {ended.generation}) ended" if ended else "no leader"
    return Decision(Kind.PROMOTE, f"{old}; this node is the best candidate", mem, "standby-promote", old_leader=ended)


def stepping_aside(mem: Memory, now: float) -> tuple[str, ...]:
    """The problem a standby publishes while it backs off after a refusal (none otherwise)."""
    if mem.last_refusal is None or now >= mem.backoff_until:
        return ()
    return (f"stepping aside for {mem.backoff_until - now:.0f}s after a refused promotion: {mem.last_refusal}",)


def _backing_off(mem: Memory, now: float) -> str:
    times = f" ({mem.refusals} times in a row)" if mem.refusals > 1 else ""
    return f"backing off for {mem.backoff_until - now:.1f}s after: {mem.last_refusal}{times}"


def _why_not_claim(store_ok: bool, view: ClusterView | None, o: Observation) -> str:
    if not store_ok or view is None:
        return "the store does not answer"
    if view.paused:
        return "the cluster is paused"
    if o.watchdog_problem is not None:
        return o.watchdog_problem
    return "this node holds it from an earlier start"


def after_renewal(renewed: bool, remaining: float, phase: Phase, rules: Rules, renew_error: str | None,
                  unconfirmed: bool = False) -> tuple[str, str] | None:
    """What a leader does once its renewal answered: (rule, reason) of a self-fence, or None.
    ``unconfirmed``: the renewal went unanswered and the failsafe, asked of every other member,
    got no confirmation from any (each unreachable, or able to read the store itself).
    A switchover's source skips the margin checks, as it skips the loop's first rules."""
    if not renewed:
        return "renewal-lost", "the lease was lost to another member"
    if phase is Phase.HANDING_OVER:
        return None
    if remaining < rules.fence_margin:
        return "renewal-unanswered", lease_ending_reason(remaining, renew_error)
    unrenewed = rules.ttl - remaining
    if unconfirmed and renew_error is not None and unrenewed >= rules.isolation_bound:
        return "renewal-isolated", (f"cut off: the lease store has not renewed the lease for {unrenewed:.1f}s ({renew_error}) "
                                    "and no member confirmed this leader")
    return None


QUIET = frozenset({Kind.RENEW, Kind.WAIT, Kind.OBSERVE})


def worth_logging(previous: Decision | None, decision: Decision) -> bool:
    """One log line per decision that changed something or is not a plain renew/wait repeat."""
    if decision.kind is Kind.OBSERVE:
        return False
    if decision.kind not in QUIET or previous is None:
        return True
    return (previous.kind, previous.reason, previous.next_memory.phase) != (decision.kind, decision.reason, decision.next_memory.phase)


@dataclass(frozen=True)
class Repeats:
    """Records (journal events, alerts) said once per run of equal ones, with their count: a
    refusal or a failed fence that repeats every few loops is one record, not one per attempt
    (the attempts themselves keep their cadence)."""

    key: str | None = None
    count: int = 0

    def seen(self, key: str) -> tuple[Repeats, bool, Repeats | None]:
        """After one more ``key``: the next state, whether to record this one (the first of its
        run), and the run it ended (to record with its count) if that one repeated."""
        if key == self.key:
            return replace(self, count=self.count + 1), False, None
        return Repeats(key, 1), True, self.ended()

    def ended(self) -> Repeats | None:
        """This run, if it repeated (a record with its count is due when it ends)."""
        return self if self.key is not None and self.count > 1 else None
