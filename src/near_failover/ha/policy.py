"""The automatic mode's decisions, as pure functions of what the agent observed.

Kept apart from I/O so the rules that decide who may sign can be read and tested alone:
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

import time
from collections import deque
from dataclasses import dataclass, field

from near_failover.ha.lease import LeaderInfo, MemberRecord, MemberRole
from near_failover.procedures.fence import FenceProof
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


def ended_leader(me: str, members: list[MemberRecord], last_seen: LeaderInfo | None) -> LeaderInfo | None:
    """Whose lease just ended: the highest generation any other member held, as this node last
    saw it or as the members' own records say (another may have led since this node looked)."""
    known = [last_seen] if last_seen is not None else []
    for m in members:
        if m.name != me:
            known += [LeaderInfo(m.name, g) for g in (m.generation, m.fenced_generation) if g is not None]
    return max(known, key=lambda leader: leader.generation, default=None)


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
            return FenceProof("self-fenced", {"node": m.name, "generation": ended.generation, "record_at": m.updated_at,
                                              "observed": seen.verdict, "observation": seen.reason, "observed_at": seen.observed_at})
    return None


def proof_from_observation(seen: SignerObservation) -> FenceProof | None:
    """This node's own look at the old leader: a proof only when it shows it not signing."""
    return FenceProof("observed", seen.evidence()) if seen.not_signing else None
