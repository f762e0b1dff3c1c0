"""The agent beside each neard: renew the lease while healthy, fence itself before it can expire,
and promote the best standby through the procedures' own fence, activate and verify steps.

Invariants (DESIGN, ha/):
- only the lease holder may have the key loaded; a node whose neard signs without holding the
  lease fences itself at once;
- a leader renews only while its neard is healthy, and fences itself (key out, stop, mask) when
  it has been unhealthy for `unhealthy_loops` checks or when less than `loop_wait + retry_timeout`
  of its lease is left, so with `loop_wait + 2 * retry_timeout < ttl` it is fenced before anyone
  can win the lease; a watchdog process does the same if this loop stops;
- a standby promotes only with the lease in hand and a fence proof for the old leader.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from near_failover.api.client import AgentApiError, AgentClient, Verify
from near_failover.control.base import ControlError
from near_failover.ha.alerts import AlertEvent, AlertSender
from near_failover.ha.decide import (
    AUTO_FAILOVER,
    FENCED_PROBLEM,
    LEASE_GENERATION,
    PROMOTION_SILENCE_BLOCKS,
    READINESS_REUSE_TTLS,
    UNKEYED_SINCE,
    Decision,
    Health,
    HealthTracker,
    Kind,
    Memory,
    Observation,
    Phase,
    Repeats,
    Rules,
    Sample,
    after_renewal,
    best_candidate,
    decide,
    ended_leader,
    handover_target,
    interrupted_to_take_over,
    leader_record_unchanged,
    next_check_in,
    proof_from_observation,
    proof_from_record,
    quiet_since,
    reusable_readiness,
    worth_logging,
)
from near_failover.ha.early_silence import proof_for_lost_leader
from near_failover.ha.lease import (
    ClusterView,
    FenceObservation,
    LeaderInfo,
    LeaderLease,
    LeaseStore,
    LeaseStoreError,
    LeaseStoreUnavailable,
    MemberRecord,
    MemberRole,
    cluster_view,
    lease_clock,
)
from near_failover.ha.locks import AdoptedWatchdog, Flock, LockHeld, read_holder, running_watchdog, take_agent_lock
from near_failover.ha.operator import (
    RequestedFailover,
    failover_refusal,
    leader_problem,
    standby_problem,
)
from near_failover.ha.publish import record_due
from near_failover.ha.rejoin_policy import (
    SELF_FENCE_KIND,
    FencedNode,
    LeaseSeen,
    RejoinSettings,
    StopAction,
    fence_history,
    healthy_since,
    leads_elsewhere,
    may_resume,
    plan_agent_stop,
    settling,
    stay_out,
)
from near_failover.ha.risks import Check, RiskWatch
from near_failover.ha.snapshot import AgentSnapshot, EpochSeen, LastDecision
from near_failover.ha.wake import WakeGuard, find_neard, on_doubt
from near_failover.ha.watchdog import FIND_NEARD_EVERY, UNIT, WATCHDOG_ENV, Heartbeat, start_watchdog
from near_failover.hosts import HostError
from near_failover.inventory import Inventory, UnknownNode, read_secret_file
from near_failover.limits import KEY_FILE
from near_failover.neard.keys import KeyFileError, parse_key_file
from near_failover.neard.rpc import RpcError
from near_failover.procedures.chain_view import Production, production_of
from near_failover.procedures.errors import Refused
from near_failover.procedures.fence import FenceProof, fence_reachable, prove_chain_silence
from near_failover.procedures.journal import Journal, JournalError, Run
from near_failover.procedures.move import AutomaticMove, Move, MoveRequest, NeardAnswers, TargetReady
from near_failover.procedures.nodes import STATUS_TIMEOUT, NodeAccess, open_nodes
from near_failover.procedures.observe import (
    SETTLE_SECONDS,
    SignerObservation,
    SignerVerdict,
    observe_signer,
    observe_until_silent,
)
from near_failover.procedures.plan import MoveKind, MoveOptions, MoveSettings
from near_failover.procedures.rejoin import Rejoin

log = structlog.get_logger("near_failover.agent")
WATCHDOG_START_TIMEOUT = 60.0
WATCHDOG_PATIENCE = 2.0  # a watchdog silent for longer (or retry_timeout, if more) does not watch
READINESS_EVERY = 0.25  # a standby's readiness checks run at most once per this many ttls


PROMOTION_REFUSED = "promotion-refused"
FENCE_FAILED = "self-fence-failed"


class AgentError(Exception):
    """The agent cannot run safely (the message names the node and what to look at)."""


@dataclass(frozen=True)
class AgentSettings(Rules):
    """The decision rules' timings, as the inventory's ``[lease]`` sets them."""

    @classmethod
    def from_inventory(cls, inventory: Inventory) -> AgentSettings:
        lease = inventory.lease
        if lease is None:
            return cls()
        return cls(lease.ttl, lease.loop_wait, lease.retry_timeout, lease.unhealthy_loops)


class Agent:
    """One node's agent. Implements the API's AgentView (snapshot, cluster, history, ...)."""

    def __init__(
        self,
        inventory: Inventory,
        node: str,
        store: LeaseStore,
        journal: Journal,
        settings: AgentSettings | None = None,
        alerts: AlertSender | None = None,
        token: str | None = None,
        state_dir: Path | None = None,
        api_verify: Verify = True,
        lock: Flock | None = None,
    ) -> None:
        self.inventory = inventory
        self.node = inventory.node(node).name
        self.spec = inventory.node(node)
        self.pool = inventory.validator.account_id
        self.store = store
        self.journal = journal
        self.settings = settings or AgentSettings.from_inventory(inventory)
        self.alerts = alerts or AlertSender(inventory.alerts)
        self.token = token
        self.api_verify = api_verify  # how the other agents' https:// APIs are verified (failsafe calls)
        self.state_dir = state_dir or agent_state_dir(inventory)
        self.lock = lock  # one agent per node (ha/locks.py): taken by run() if not given
        state = self.state_dir
        self.heartbeat = Heartbeat(state / f"agent-{self.node}.heartbeat")
        self.tracker = HealthTracker(self.pool)
        self.memory = Memory(started=time.monotonic())  # what decide() carries from loop to loop
        self.last_decision: Decision | None = None
        self.last_decision_at: float | None = None  # unix time of it
        self.last_logged: Decision | None = None
        self.lease: LeaderLease | None = None
        self.view: ClusterView | None = None  # the store's cluster at the last read that worked
        self.ask_ttl = False  # the leader's record stood still: the next read asks when its lease ends
        self.quiet_since: Production | None = None  # where the pool's current silence began (decide.quiet_since)
        self.paused = False
        self.store_ok = True
        self.failsafe_note: str | None = None  # set while the failsafe, not the store, holds our lease
        self.unconfirmed = False  # the last renewal went unanswered and no member confirmed us when asked
        self.renew_error: str | None = None  # why the last renewal failed (shown in a self-fence's reason)
        self.fenced_generation: int | None = None
        self.fence_observation: FenceObservation | None = None  # what we saw of our neard after our fence
        self.requested: RequestedFailover | None = None  # an operator's failover, for the loop to take up
        self.failovers_total = 0
        self.last_failover_seconds: float | None = None
        self.production: dict[str, Any] | None = None
        self.production_at: float | None = None  # unix time of the figures above: a fenced node's go stale
        self.epoch_length: int | None = None  # from neard's client_config, asked until it answers
        self.watchdog_ok = False
        # A standby unready for 3 ttls, a store silent for a ttl (its leader is fenced or on the failsafe by then).
        self.risks = RiskWatch(self.pool, self.node, unready_grace=3 * self.settings.ttl, store_grace=self.settings.ttl)
        self.nodes: dict[str, NodeAccess] = {}
        self.watchdog: Any = None
        self.watchdog_started = 0.0
        self.lease_lost: str | None = None  # set by the lease keeper when a promotion's lease is gone
        self.activating = False  # a promotion passed its last lease check: the key may be given
        self.fence_tried_at = 0.0  # when the last self-fence began (monotonic)
        # Past this much before the lease's end a graceful stop no longer fits: a loop that wakes
        # there (a frozen or suspended host) SIGKILLs neard before anything else, as its watchdog.
        self.wake = WakeGuard(self.heartbeat.written_lease_end, margin=self.settings.watchdog_reserve / 2)
        self.neard_searched = 0.0
        # Set when the neard we lead with exits (its pidfd polls readable): the loop checks at
        # once instead of after its pause, so a crash is noticed when it happens.
        self.neard_exited = asyncio.Event()
        self.exit_watch: int | None = None  # our own copy of the held pidfd, watched by the event loop
        self.woken = asyncio.Event()  # another agent's hint (a lease handed over to us): check the store now
        # The lease an earlier agent of this node armed its watchdog for, while it may be live:
        # (generation, valid_until). Kept armed in our beats until the watchdog fenced it.
        self.inherited: tuple[int | None, float] | None = None
        # The first lease of this run of promotions refused before the key was given (None once a lease keeps it).
        self.unkeyed_since: int | None = None
        self.readiness: list[str] = []  # the last readiness check's problems (_readiness), and when it ran
        self.readiness_at = float("-inf")
        self.ready: TargetReady | None = None  # the last readiness checks that passed, for a promotion to reuse
        self.answers: NeardAnswers | None = None  # this loop's status and validators from our neard, for _readiness
        # Journal and alert records said once per run of equal ones, with a count (no storms).
        self.repeats: dict[str, Repeats] = {PROMOTION_REFUSED: Repeats(), FENCE_FAILED: Repeats()}
        # Automatic rejoin (ha/rejoin_policy.py): this agent's self-fences (monotonic), the rejoin
        # running, why the last one was refused or when it failed, and the settling after it.
        self.rejoin_settings = RejoinSettings.from_lease(inventory.lease)
        self.self_fences: list[float] = []
        self.rejoining: asyncio.Task[None] | None = None
        self.rejoin_refused: str | None = None
        self.rejoin_failed_at: float | None = None
        self.handed_over = False  # fenced as a switchover's source: it stays out
        self.unexplained_mask = False  # masked at start, with no fence of it in the journal: it stays out
        self.settling = False  # rejoined: no candidacy until neard has been healthy for the settling time
        self.leaderless_since: float | None = None  # since when every store read showed no lease (monotonic)
        self.healthy_since: float | None = None
        self.published: MemberRecord | None = None  # the record the store last took from the loop
        self.staged_key: tuple[bytes, list[str]] | None = None  # the staged key file's digest, its problems

    @property
    def me(self) -> NodeAccess:
        return self.nodes[self.node]

    # --- the state decide() carries, as the rest of the agent reads it ------------------

    @property
    def phase(self) -> Phase:
        return self.memory.phase

    @property
    def role(self) -> str:
        return self.memory.phase.role

    @property
    def promoting(self) -> bool:
        """A promotion or a switchover runs: the loop's leader rules stand aside."""
        return self.memory.phase in (Phase.PROMOTING, Phase.HANDING_OVER)

    @property
    def problems(self) -> list[str]:
        return list(self.memory.problems)

    @property
    def last_leader(self) -> LeaderInfo | None:
        return self.memory.last_leader

    @property
    def handover_to(self) -> str | None:
        return self.memory.handover_to

    @property
    def store_leader(self) -> LeaderInfo | None:
        return self.view.leader if self.view else None

    def _remember(self, **changes: Any) -> None:
        self.memory = replace(self.memory, **changes)

    def _move(self, phase: Phase) -> None:
        """Change phase as TRANSITIONS allows (IllegalTransition otherwise: a bug)."""
        self.memory = self.memory.moved(phase)

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        if self.inventory.source is None:
            raise AgentError(f"{self.node}: the agent needs its inventory as a file: its watchdog reads it")
        if self.lock is None:
            try:
                self.lock = take_agent_lock(self.state_dir, self.spec.host, str(self.spec.home), self.node, self.spec.api)
            except LockHeld as held:
                raise AgentError(str(held)) from None
        await self._check_store()
        async with open_nodes(self.inventory) as nodes:
            self.nodes = nodes
            self.heartbeat.path.parent.mkdir(parents=True, exist_ok=True)
            recorded = self._recorded_generation()
            self.inherited = self._inherit_lease()
            self._take_up_fence_history()
            self._disarm()
            self.wake.start(realtime_thread=True)
            self._start_watchdog()
            try:
                await self._wait_watchdog()
                await self._resume_lease(recorded)
                # The start grace (standby-start-grace) counts from the first loop, not from the
                # constructor: a watchdog slow to start on a loaded host must not spend the time
                # the signer's agent has to claim the lease.
                self._remember(started=time.monotonic())
                if ready:
                    ready.set()
                while not stop.is_set():
                    began = time.monotonic()
                    try:
                        await self.tick()
                    except Exception:  # noqa: BLE001 - one bad loop must not end the agent; no beat means the watchdog acts
                        log.exception("agent loop failed", node=self.node)
                    self._alert_risks()
                    await self._pause(stop, self._pause_after(began))
            finally:
                self._watch_exit(None)
                await self._shutdown()

    def _take_up_fence_history(self) -> None:
        """The rejoin rules' memory (self-fences, a switchover away) from the journal: a restarted
        agent, or one restarted by systemd after it fenced itself, must not start counting afresh."""
        try:
            history = fence_history(self.journal.runs(self.pool, limit=200), self.node)
        except (JournalError, sqlite3.Error) as exc:
            log.error("could not read the journal's fence history", node=self.node, error=str(exc))
            return
        self.self_fences, self.handed_over = list(history.self_fences), history.handed_over
        # Counts only if this start finds neard masked (starting-masked); a fence of this agent's own clears it.
        self.unexplained_mask = not (history.fenced_here or history.handed_over)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep between checks until ``seconds`` pass, the agent stops, or our neard exits."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.neard_exited.wait()),
                 asyncio.ensure_future(self.woken.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self.neard_exited.clear()
        self.woken.clear()

    def wake_up(self, reason: str) -> None:
        """A hint from another agent (the API's /handover): check now. The store stays the truth."""
        log.info("woken: checking now", node=self.node, reason=reason)
        self.woken.set()

    def _watch_exit(self, pidfd: int | None) -> None:
        """Watch (a copy of) ``pidfd`` for neard's exit; None stops watching."""
        loop = asyncio.get_running_loop()
        if self.exit_watch is not None:
            loop.remove_reader(self.exit_watch)
            os.close(self.exit_watch)
            self.exit_watch = None
        if pidfd is None:
            return
        try:
            self.exit_watch = os.dup(pidfd)
        except OSError:
            return
        loop.add_reader(self.exit_watch, self._on_neard_exit)

    def _on_neard_exit(self) -> None:
        log.info("neard exited: checking now", node=self.node)
        self._watch_exit(None)
        self.neard_exited.set()

    def _pause_after(self, began: float) -> float:
        """loop_wait between checks, but a leader's next check comes no later than its fence
        margin: the check that fences must not sleep past it."""
        pause = self.settings.loop_wait - (time.monotonic() - began)
        if self.lease is not None and not self.promoting:
            to_margin = self.lease.remaining() - self.settings.fence_margin
            if to_margin > 0 or self.fence_tried_at < began:
                pause = min(pause, to_margin)
            # else this check tried to fence and failed: the next retries after loop_wait
        elif self.lease is None:
            pause = min(pause, next_check_in(self.view, self.node, self.settings.loop_wait))  # wake at the leader's expiry
        return max(0.0, pause)

    async def _check_store(self) -> None:
        """A store that refuses this agent (a wrong password, a forbidden prefix) is a mistake to
        fix now, not a loop to repeat; a store that does not answer is an outage to wait out."""
        try:
            await asyncio.wait_for(self.store.leader(), 2 * self.settings.retry_timeout)
        except (TimeoutError, LeaseStoreUnavailable):
            pass
        except LeaseStoreError as exc:
            raise AgentError(f"{self.node}: the lease store refuses this agent: {exc}") from None

    def _inherit_lease(self) -> tuple[int | None, float] | None:
        """The lease the last beat armed, if an earlier agent of this node left it (killed, or
        its fence failed) and its watchdog has not fenced it: it may still be live, with neard
        signing, so it stays armed (never disarmed by a restart)."""
        beat = self.heartbeat.read()
        if beat is None or not beat.get("armed") or beat.get("valid_until") is None:
            return None
        lease = (beat.get("generation"), float(beat["valid_until"]))
        if self._inherited_fenced(lease):
            return None
        log.warning("an earlier agent's lease may still be live: its watchdog keeps it armed and fences at its end",
                    node=self.node, generation=lease[0], remaining=round(lease[1] - lease_clock(), 2))
        return lease

    def _inherited_fenced(self, lease: tuple[int | None, float]) -> bool:
        done = read_holder(self.heartbeat.fenced_marker)
        return done is not None and (done.get("generation"), done.get("valid_until")) == lease

    def _inherited_problem(self) -> str | None:
        """Why no lease may be taken yet: an earlier agent's lease is still armed (None once fenced)."""
        if self.inherited is not None and self._inherited_fenced(self.inherited):
            log.info("the earlier agent's lease was fenced by the watchdog", node=self.node, generation=self.inherited[0])
            self.inherited = None
            self._disarm()
        if self.inherited is None:
            return None
        return (f"an earlier agent's lease (generation {self.inherited[0]}) may still be live: "
                "its watchdog fences at its end, no lease before")

    def _recorded_generation(self) -> int | None:
        """The lease generation the last agent of this node held when it stopped (its last beat:
        armed if it was killed, disarmed with it if it stopped while paused), unless its watchdog
        fenced that lease since."""
        beat = self.heartbeat.read()
        if beat is None or not isinstance(beat.get("generation"), int):
            return None
        armed_until = beat.get("valid_until") if beat.get("armed") else None
        if armed_until is not None and self._inherited_fenced((beat["generation"], float(armed_until))):
            return None
        return int(beat["generation"])

    async def _resume_lease(self, recorded: int | None) -> None:
        """A restart within the lease (a killed agent, or one stopped while paused): the lease its
        node still holds at the generation recorded is renewed and kept, neard left signing,
        instead of being fenced at its end (ha/rejoin_policy.py)."""
        if recorded is None:
            return
        try:
            leader = await asyncio.wait_for(self.store.leader(), self.settings.retry_timeout)
            seen = LeaseSeen(leader.member, leader.generation, leader.ttl_left) if leader else None
            if not may_resume(self.node, recorded, seen, self.settings.fence_margin):
                return
            assert leader is not None
            lease = await asyncio.wait_for(self.store.resume(leader), self.settings.retry_timeout)
        except (TimeoutError, LeaseStoreError):
            return  # no resume: the inherited lease, if armed, stays with the watchdog
        if lease is None or lease.remaining() <= self.settings.fence_margin:
            return
        self.lease, self.inherited = lease, None
        self._move(Phase.LEADER)
        self._beat()
        log.info("resumed the lease this node held", node=self.node, generation=lease.generation)
        self._journal_event("lease-resumed", {"generation": lease.generation, "lease_remaining": round(lease.remaining(), 3)})

    def _disarm(self) -> None:
        """No lease of ours to guard: disarmed, unless an earlier agent's lease may still be live."""
        if self.inherited is not None:
            self.heartbeat.beat(armed=True, generation=self.inherited[0], valid_until=self.inherited[1])
        else:
            self.heartbeat.beat(armed=False, generation=None)

    def _start_watchdog(self) -> None:
        assert self.inventory.source is not None
        running = None if os.environ.get(WATCHDOG_ENV) == UNIT else running_watchdog(self.heartbeat.path)  # the unit's is never ours
        if running is not None and (self.watchdog is None or running != self.watchdog.pid):
            # An earlier agent's watchdog (it outlives a killed agent): one per node, so adopt it.
            log.info("adopting the running watchdog", node=self.node, pid=running)
            self.watchdog = AdoptedWatchdog(running, self.heartbeat.path)
            self.watchdog_started = time.monotonic()
            return
        self.heartbeat.watching_marker.unlink(missing_ok=True)
        self.watchdog = start_watchdog(self.inventory.source, self.node, self.heartbeat.path, self.settings.watchdog_reserve)
        self.watchdog_started = time.monotonic()

    async def _wait_watchdog(self) -> None:
        """No lease before the watchdog watches: a leader whose loop hangs while its watchdog is
        still starting (a loaded machine can take seconds to import it) would keep signing."""
        deadline = time.monotonic() + WATCHDOG_START_TIMEOUT
        while (problem := self._watchdog_problem(restart=False)) is not None:
            if isinstance(self.watchdog, AdoptedWatchdog) and self.watchdog.poll() is not None:
                self._start_watchdog()  # the adopted one ended meanwhile (its agent had left nothing armed)
                continue
            if self.watchdog.poll() is not None or time.monotonic() > deadline:
                what = problem if self.watchdog.poll() is not None else f"the agent's watchdog did not start within {WATCHDOG_START_TIMEOUT:g}s"
                raise AgentError(f"{self.node}: {what}; without it this agent must not lead")
            await asyncio.sleep(0.05)

    def _watchdog_problem(self, restart: bool = True) -> str | None:
        """None while the watchdog watches; otherwise why not. One that died or stopped running
        (SIGSTOP, a starved process) is replaced, at most once per ttl, and the agent leads
        only once the new one watches."""
        code = self.watchdog.poll()
        if code is not None:
            log_path = self.heartbeat.path.with_name(self.heartbeat.path.name + ".log")
            problem = f"the agent's watchdog exited with {code} (see {log_path})"
        else:
            marker = self.heartbeat.watching()
            if marker is None:
                return "the agent's watchdog is still starting"
            silent = lease_clock() - marker["at"]
            if silent <= max(WATCHDOG_PATIENCE, self.settings.retry_timeout):
                return None
            problem = f"the agent's watchdog (pid {marker['pid']}) has not run for {silent:.1f}s"
        if restart and self.lease is None and time.monotonic() - self.watchdog_started >= self.settings.ttl:
            log.error("watchdog gone or stuck: starting a new one", node=self.node, problem=problem)
            self.watchdog.kill()
            self.watchdog.wait()
            self._start_watchdog()
        return problem

    async def tick(self) -> None:
        """One loop: observe -> decide() -> act, and log the decision's reason.

        One observation takes at most retry_timeout, one renewal as much again: a leader's loop
        fits loop_wait + 2 * retry_timeout < ttl, the inventory's rule. A leader's waits also end
        at its fence margin (_budget), and its first rules need no RPC, so no slow store or frozen
        RPC can carry the loop past the point where it must fence itself."""
        self.wake.kill_if_due()  # first of all: a loop woken past its lease's kill point
        self._report_wake_kills()
        watchdog_problem = self._watchdog_problem() or self._inherited_problem()
        self.watchdog_ok = watchdog_problem is None
        if self.lease is not None and self.phase is not Phase.PROMOTING:
            decision = self._decide(self._observation(watchdog_problem), self.view)
            if decision.kind is Kind.OBSERVE:
                decision = self._decide(self._observation(watchdog_problem, await self._health(as_leader=True)), self.view)
            await self._act(decision)
            if self.lease is None:
                return  # we fenced ourselves: this check's sample (our neard signing) is out of date
            await self._hold_neard()
            if not self.store_ok or self._budget() <= 0:
                self._beat()
                return  # the store did not answer the renewal: the read and the record would not either
            if await self._read_view() is None:
                # Nor the record: a store that froze since the renewal must not cost the leader
                # two budgets before its next renewal, which then has too little of its lease left
                # to ask the others for the failsafe's confirmation.
                self._beat()
                return
        else:
            health = await self._health(as_leader=False)
            view = await self._read_view()
            asks = self.phase in (Phase.FENCED, Phase.STARTING)  # a start on a fenced node stays fenced
            masked = await on_doubt(self.me.control.is_masked(), True) if asks else None
            await self._act(self._decide(self._observation(watchdog_problem, health, masked), view))
            if self.phase is Phase.FENCED:
                await self._rejoin_if_due()
        await self._publish_due()
        self._beat()

    async def _health(self, as_leader: bool) -> Health:
        """Observe neard (within the loop's budget) and read it as the health policy does; a
        standby's readiness (its staged key) is part of its health."""
        try:
            sample = await asyncio.wait_for(self._observe(), self._budget())
        except TimeoutError:
            sample, self.answers = Sample(time.monotonic(), rpc_ok=False), None
        self.tracker.add(sample)
        readiness = [] if as_leader else await self._readiness()
        if self.settling and not as_leader:
            readiness = readiness + self._settling(self.tracker.problems(as_leader=False) + readiness)
        return Health(tuple(self.tracker.problems(as_leader=True)), tuple(self.tracker.problems(as_leader=False) + readiness),
                      self.tracker.gone(), sample.key_loaded)

    async def _read_view(self) -> ClusterView | None:
        """The cluster as one read of the store sees it (None when it did not answer in time)."""
        try:
            view = await asyncio.wait_for(self.store.view(with_ttl=self.ask_ttl and self.lease is None), self._budget())
        except (TimeoutError, LeaseStoreError):  # down, or refusing us: either way no decision on it
            self.store_ok, self.leaderless_since = False, None
            return None
        self.ask_ttl = leader_record_unchanged(self.view, view)
        self.store_ok, self.view, self.paused = True, view, view.paused
        leaderless = view.leader is None and view.handover is None
        self.leaderless_since = (self.leaderless_since or time.monotonic()) if leaderless else None
        return view

    def _observation(self, watchdog_problem: str | None, health: Health | None = None, masked: bool | None = None) -> Observation:
        return Observation(
            node=self.node, pool=self.pool, priority=self.spec.priority, rules=self.settings, wall=time.time(),
            lease_remaining=self.lease.remaining() if self.lease is not None else None, watchdog_problem=watchdog_problem,
            health=health, store_ok=self.store_ok, renew_error=self.renew_error, failsafe_note=self.failsafe_note,
            masked=masked, failover_requested=self.requested is not None,
        )

    def _decide(self, observation: Observation, view: ClusterView | None) -> Decision:
        """decide(), its memory kept at once (no await between reading and writing it: the API's
        failsafe promise, set meanwhile, is not lost) and its reason recorded."""
        decision = decide(observation, view, self.memory, time.monotonic())
        self.memory = decision.next_memory
        if not self.memory.refusals and self.repeats[PROMOTION_REFUSED].key is not None:
            self._end_run(PROMOTION_REFUSED)  # another member leads: this node's run of refusals is over
        self._note(decision)
        return decision

    def _note(self, decision: Decision) -> None:
        """The decision for /status, and one log line when it changed something or is not a
        plain renew/wait repeat (the "decision" event: kind, reason, phase; issue 22 builds on it)."""
        if decision.kind is Kind.OBSERVE:
            return
        self.last_decision, self.last_decision_at = decision, time.time()
        if worth_logging(self.last_logged, decision):
            log.info("decision", node=self.node, kind=decision.kind.value, reason=decision.reason,
                     phase=self.memory.phase.value, rule=decision.rule)
        self.last_logged = decision

    def _noted(self, kind: Kind, rule: str, reason: str) -> Decision:
        """A decision the act itself reaches (a renewal lost, a switchover's handover), recorded as decide()'s are."""
        decision = Decision(kind, reason, self.memory, rule)
        self._note(decision)
        return decision

    async def _act(self, decision: Decision) -> None:
        kind = decision.kind
        if kind is Kind.SELF_FENCE:
            await self._self_fence(decision.reason)
        elif kind is Kind.RENEW:
            renewed = await self._renew_or_failsafe()
            if self.lease is not None:
                fence = after_renewal(renewed, self.lease.remaining(), self.phase, self.settings, self.renew_error, self.unconfirmed)
                if fence is not None:
                    await self._self_fence(self._noted(Kind.SELF_FENCE, *fence).reason)
        elif kind is Kind.CLAIM:
            await self._claim(decision.reason)
        elif kind is Kind.REFUSE:
            request = self._take_request()
            if request is not None:
                request.refuse(decision.reason)
        elif kind is Kind.PROMOTE:
            await self._start_promotion(decision)

    def _alert_risks(self) -> None:
        """Unready standby, kickout ahead, store down, long pause: sent in the background."""
        last = self.tracker.samples[-1] if self.tracker.samples else None
        check = Check(time.monotonic(), str(self.role), tuple(self.problems), self.store_ok, self.paused,
                      last.epoch_start if last else None, self.production)
        for event in self.risks.update(check):
            self.alerts.post(event)
    async def _hold_neard(self) -> None:
        """Give the wake guard our neard's pidfd (found by what it serves) while the lease is
        ours and in time; looked for again when the one held exits (a restart)."""
        lease = self.lease
        if lease is None or lease.remaining() < self.settings.fence_margin or not self.wake.needs_neard():
            return
        if time.monotonic() - self.neard_searched < FIND_NEARD_EVERY:
            return
        self.neard_searched = time.monotonic()
        try:
            handle = await asyncio.wait_for(find_neard(self.me), self._budget())
        except Exception as exc:  # noqa: BLE001 - the ordinary fence still guards; try again later
            log.warning("cannot find neard's process to hold for the wake guard", node=self.node, error=f"{type(exc).__name__}: {exc}")
            return
        self.wake.hold(handle)
        self._watch_exit(handle.pidfd if handle is not None else None)
        if handle is not None:
            log.info("holding neard for the wake guard", node=self.node, pid=handle.pid)

    def _report_wake_kills(self) -> None:
        """Logged after the fact: the wake guard sends its signal before any log line."""
        if self.wake.note:
            log.info("wake guard", node=self.node, priority=self.wake.note)
            self.wake.note = ""
        for kill in self.wake.take_kills():
            log.error("past the lease's kill point (a wake-up, or a fence that did not stop it): neard SIGKILLed before anything else"
                      if kill.killed else "past the lease's kill point: neard had exited already",
                      node=self.node, pid=kill.pid, late=round(kill.late, 3))

    def _beat(self) -> None:
        """Tell the watchdog how long our lease surely lasts (disarmed when we hold none)."""
        lease = self.lease
        if lease is None:
            self._disarm()
            return
        self.heartbeat.beat(armed=True, generation=lease.generation, valid_until=lease.valid_until)

    async def _observe(self) -> Sample:
        now = time.monotonic()
        self.answers = None
        status = await self.me.status_or_none()
        if status is None:
            # None when the control cannot tell: health then decides with its usual patience.
            return Sample(now, rpc_ok=False, running=await on_doubt(self.me.control.is_active(), None))
        produced = expected = epoch_start = None
        try:
            validators = await self.me.rpc.validators()
            self.answers = NeardAnswers(status, validators, now)
            snap = production_of(validators, self.pool, status.sync_info.latest_block_height)
            self.quiet_since = quiet_since(self.quiet_since, snap)
            if snap:
                produced, expected, epoch_start = snap.produced, snap.expected, snap.epoch_start_height
                self.production = {
                    k: {"produced": getattr(snap, f"{k}_produced"), "expected": getattr(snap, f"{k}_expected")}
                    for k in ("blocks", "chunks", "endorsements")
                }
                self.production_at = time.time()
            if self.epoch_length is None:
                self.epoch_length = (await self.me.rpc.client_config()).epoch_length
        except RpcError:
            pass
        return Sample(now, True, status.sync_info.syncing, status.sync_info.latest_block_height,
                      status.validator_account_id, produced, expected, epoch_start)

    # --- leader ------------------------------------------------------------------------

    def _budget(self) -> float:
        """How long one RPC or store call may take: retry_timeout, and for a leader never past the
        point where it must fence itself (fence_margin before the lease's end), so a store or a
        neard that stops answering cannot make the loop miss that point."""
        if self.lease is None:
            return self.settings.retry_timeout
        return min(self.settings.retry_timeout, self.lease.remaining() - self.settings.fence_margin)

    async def _renew_or_failsafe(self) -> bool:
        """Renew; False if the lease was lost (the caller fences). Store outage: Patroni's failsafe."""
        assert self.lease is not None
        budget = self._budget()
        self.unconfirmed = False
        if budget <= 0:
            return True  # no time left to try: the caller's margin check fences
        try:
            renewed = await asyncio.wait_for(self.store.renew(self.lease), budget)
            self.store_ok, self.failsafe_note, self.renew_error = True, None, None
        except (TimeoutError, LeaseStoreUnavailable) as exc:
            self.store_ok, self.renew_error = False, str(exc) or f"no answer within {budget:.1f}s"
            if self._budget() > 0 and await self._failsafe_confirmed(self._budget()):
                # Every member confirmed us directly and promised not to promote for a ttl.
                self.lease.valid_until = max(self.lease.valid_until, lease_clock() + self.settings.ttl - self.settings.retry_timeout)
                self.failsafe_note = f"lease store unavailable ({self.renew_error}); kept by failsafe confirmation of every member"
                self._remember(problems=(self.failsafe_note,))
                self._beat()
            else:
                self.failsafe_note = None
            return True
        except LeaseStoreError as exc:  # it answers but refuses: no failsafe; the margin check fences in time
            self.store_ok, self.failsafe_note, self.renew_error = False, None, f"the lease store refuses the renewal: {exc}"
            self._remember(problems=(self.renew_error,))
            return True
        if not renewed:
            return False
        self._beat()  # the watchdog's deadline moves with the lease, not at the end of a slow loop
        return True

    async def _failsafe_confirmed(self, timeout: float) -> bool:
        """Ask every other node's agent, directly, whether it still sees us as leader."""
        assert self.lease is not None
        generation = self.lease.generation
        others = [n for n in self.inventory.nodes if n.name != self.node]
        if not others or any(n.api is None for n in others):
            return False

        confirmed: list[str] = []  # who said yes, as the answers come (renewal-isolated: nobody)

        async def ask(name: str, api: str) -> bool:
            try:
                async with AgentClient(name, api, self.api_verify, self.token, timeout) as peer:
                    answer = await peer.confirm_leader(self.node, generation)
            except AgentApiError as exc:
                log.warning("failsafe: no confirmation", node=self.node, api=api, error=str(exc))
                return False
            confirmed.extend([name] if answer else [])
            return answer

        try:
            answers = await asyncio.wait_for(asyncio.gather(*(ask(n.name, n.api) for n in others if n.api)), timeout)
        except TimeoutError:
            answers = [False]
        self.unconfirmed = not confirmed
        return all(answers)

    async def _self_fence(self, reason: str) -> None:
        """Key out of home, neard stopped and masked; then say so in the store and drop the lease."""
        lease = self.lease
        self.fence_tried_at = time.monotonic()
        log.warning("self-fence", node=self.node, reason=reason)
        evidence: dict[str, Any] = {}
        # SIGTERM, then SIGKILL in time: a neard slow to exit must not outlive the lease.
        stop_timeout = self.settings.retry_timeout * 2
        if lease is not None:
            evidence.update(generation=lease.generation, lease_remaining=round(lease.remaining(), 3))
            # Half the time until the watchdog would act for SIGTERM: the other half is for the
            # SIGKILL, the mask and the disarm, so this fence is done before the watchdog looks.
            stop_timeout = max(0.1, min(stop_timeout, (lease.remaining() - self.settings.watchdog_reserve) / 2))
        try:
            # A stop that fails leaves the key out of home all the same: no restart may load it.
            proof = await fence_reachable(self.me, stop_timeout=stop_timeout, restore_key_on_failure=False)
            evidence.update(proof.evidence)
            # The record a standby promotes on is written only once we saw, by evidence that is
            # not the control's word, that our neard does not sign.
            seen = await self._observe_own_fence(lease)
        except Exception as exc:  # noqa: BLE001 - a failed fence is reported, never recorded as a fence
            await self._fence_failed(reason, f"{type(exc).__name__}: {exc}", lease)
            return
        if not seen.not_signing:
            await self._fence_failed(reason, f"the control reports neard stopped, but {seen.reason}", lease)
            return
        evidence["observed"] = seen.evidence()
        self.fence_observation = FenceObservation(verdict=seen.verdict.value, reason=seen.reason)
        self.lease = None
        self._move(Phase.FENCED)
        self._remember(problems=(reason,))
        self.self_fences.append(time.time())
        # A new fence: the automatic rejoin decides afresh.
        self.handed_over, self.unexplained_mask, self.rejoin_failed_at = False, False, None
        self.failsafe_note = None
        self.inherited = None  # our neard is fenced and seen not signing: no earlier lease to guard either
        self._end_run(FENCE_FAILED)
        self._disarm()
        self.fenced_generation = lease.generation if lease else (self.last_leader.generation if self.last_leader else None)
        # The journal first: it is local, the store calls below may time out (a partition).
        self._journal_event(SELF_FENCE_KIND, {"reason": reason, **evidence})
        await self._publish()
        if lease is not None:
            # Our fence is proven by observation (above) and published: the lease goes to the best
            # ready standby only, which promotes on our record at once (ha/decide.py).
            members = list(self.view.members) if self.view is not None else []
            await self._hand_over_or_release(lease, handover_target(self.node, members, self.settings, time.time()))
        await self.alerts.notify(AlertEvent.self_fence(self.pool, self.node, reason=reason, generation=lease.generation if lease else None))

    async def _hand_over_or_release(self, lease: LeaderLease, to: str | None) -> None:
        """Drop our lease: handed over to ``to`` in one store transaction (no other member may
        take it meanwhile) and its agent told at once; released for anyone when ``to`` is None.
        A store that does not answer: the lease expires on its own (our record or the chain
        proves our fence)."""
        try:
            if to is None:
                await asyncio.wait_for(self.store.release(lease), self.settings.retry_timeout)
                return
            if not await asyncio.wait_for(self.store.hand_over(lease, to), self.settings.retry_timeout):
                return
        except (TimeoutError, LeaseStoreError):
            return
        self._noted(Kind.HAND_OVER, "hand-over", f"lease (generation {lease.generation}) handed over to {to}")
        api = self.inventory.node(to).api
        if api is None:
            return  # its agent sees the handover at its next check
        try:
            async with AgentClient(to, api, self.api_verify, self.token, self.settings.retry_timeout) as peer:
                await peer.hint_handover(self.node, lease.generation)
        except AgentApiError as exc:
            log.warning("could not tell the handover's target at once", node=self.node, to=to, error=str(exc))

    async def _observe_own_fence(self, lease: LeaderLease | None) -> SignerObservation:
        """Look at our neard until it is shown not to sign, no longer than the lease allows
        before the watchdog's turn (a lying control leaves neard to the watchdog and its wake
        guard, which holds the real process)."""
        settle = SETTLE_SECONDS if lease is None else max(0.0, min(SETTLE_SECONDS, lease.remaining() - self.settings.watchdog_reserve))
        return await observe_until_silent(self.me, self.pool, settle=settle)

    async def _fence_failed(self, reason: str, error: str, lease: LeaderLease | None) -> None:
        """neard may still sign: publish no fence record (a standby would promote on it) and keep
        the lease and the armed watchdog, which fences at the lease's end; the next check retries.
        A standby then needs a fence of its own (a stop through the control channel, or chain
        silence) before it promotes."""
        log.error("self-fence failed", node=self.node, reason=reason, error=error)
        self._remember(problems=(f"{reason}; the fence FAILED ({error}): neard may still sign",))
        self._beat()
        await self._publish(self.settings.retry_timeout)  # the watchdog keeps the lease's deadline now
        # Retried every check (at most loop_wait apart: a fence never waits past the lease); said once per run of equal failures.
        if self._first_of_run(FENCE_FAILED, error):
            self._journal_event(FENCE_FAILED, {"reason": reason, "error": error, "generation": lease.generation if lease else None})
            await self.alerts.notify(AlertEvent.self_fence(self.pool, self.node, reason=self.problems[0], generation=lease.generation if lease else None))

    # --- follower ----------------------------------------------------------------------

    def _refused(self, reason: str) -> None:
        """A promotion refused or a lease not won: decide() backs off (doubling, capped) before the next try."""
        self.memory = self.memory.refused(reason, time.monotonic(), self.settings)

    def _won(self) -> None:
        """The lease is ours: the backoff starts afresh, and a run of refusals is said with its count."""
        self.memory = self.memory.unrefused()
        self.unkeyed_since = None
        self._end_run(PROMOTION_REFUSED)

    def _first_of_run(self, what: str, key: str) -> bool:
        """Whether to record this ``what`` (the first of a run of equal ones); a run it ends is recorded with its count."""
        repeats, first, ended = self.repeats[what].seen(key)
        self.repeats[what] = repeats
        self._record_run(what, ended)
        return first

    def _end_run(self, what: str) -> None:
        ended, self.repeats[what] = self.repeats[what].ended(), Repeats()
        self._record_run(what, ended)

    def _record_run(self, what: str, ended: Repeats | None) -> None:
        """A run of equal records that repeated: one journal event and one alert, with the count."""
        if ended is None or ended.key is None:
            return
        said = f"{ended.key} ({ended.count} times in a row)"
        self._journal_event(f"{what}-repeated", {"reason": ended.key, "count": ended.count})
        make = AlertEvent.promotion_refused if what == PROMOTION_REFUSED else AlertEvent.self_fence
        self.alerts.post(make(self.pool, self.node, reason=said, details={"count": ended.count}))

    async def _acquire(self) -> LeaderLease | None:
        # A lease granted after the wait gave up is never renewed: it expires, our neard unchanged.
        try:
            return await asyncio.wait_for(self.store.acquire_leader(self.node, self.settings.ttl), self.settings.retry_timeout)
        except (TimeoutError, LeaseStoreError):
            return None

    async def _claim(self, reason: str) -> None:
        """Our neard signs and no one holds the lease (start-up, a switchover's target): take it."""
        lease = await self._acquire()
        if lease is None:
            self._refused("the lease could not be claimed (another member took it, or the store did not answer in time)")
            return
        self.lease = lease
        self._won()
        self._move(Phase.LEADER)
        await self.alerts.notify(AlertEvent.role_change(self.pool, self.node, MemberRole.STANDBY, MemberRole.LEADER, reason=reason,
                                                        generation=lease.generation))

    def _take_request(self) -> RequestedFailover | None:
        request, self.requested = self.requested, None
        if request is not None:
            request.taken.set()
        return request

    async def _start_promotion(self, decision: Decision) -> None:
        """Take the lease, then promote: an operator's failover with its options, or ours."""
        request = self._take_request() if decision.requested else None
        if decision.requested and request is None:
            return  # the request gave up (its caller's wait ended) before this loop took it
        lease = await self._acquire()
        if lease is None:
            self._refused("the lease could not be taken (another member took it, or the store did not answer in time)")
            if request is not None:
                request.refuse("the lease could not be taken (another member took it, or the store did not answer in time)")
            return
        await self._promote(lease, list(self.view.members) if self.view and not request else [], request)

    async def _readiness(self) -> list[str]:
        """Standby-specific readiness: the staged key present and valid for the pool (read each
        loop, checked again only when its bytes changed: a digest, not the secret, is what the
        agent keeps), then the checks of `check --role <its mode>-standby` as a promotion's
        preflight makes them of its target (config neard accepts, tracking and memtries in use,
        staged key equal to the on-chain key, synced), those at most once per READINESS_EVERY
        ttls: an unready standby does not take the lease."""
        try:
            text = await self.me.host.read_text(self.spec.key_store, KEY_FILE)
        except HostError as exc:
            return [f"no valid staged key: {exc}"]
        digest = hashlib.sha256(text.encode()).digest()
        if self.staged_key is None or self.staged_key[0] != digest:
            self.staged_key = (digest, self._staged_key_problems(text))
        if self.staged_key[1]:
            return list(self.staged_key[1])
        if time.monotonic() - self.readiness_at < READINESS_EVERY * self.settings.ttl:
            return list(self.readiness)
        move = Move(self.inventory, self.nodes, self.journal, MoveRequest(MoveKind.FAILOVER, MoveOptions(self.node)))
        try:
            self.ready = await asyncio.wait_for(move.target_readiness(self.answers), 2 * self.settings.retry_timeout)
            self.readiness = []
        except Refused as exc:
            self.readiness, self.ready = [f"not ready to promote: {exc}"], None
        except (TimeoutError, RpcError, HostError, ControlError) as exc:
            # No verdict (a slow or silent neard is the health checks' to judge): the last one stands.
            log.info("standby readiness not checked", node=self.node, error=f"{type(exc).__name__}: {exc}")
        self.readiness_at = time.monotonic()
        return list(self.readiness)

    def _staged_key_problems(self, text: str) -> list[str]:
        try:
            key = parse_key_file(text, source=f"{self.node}:{self.spec.key_store}")
        except KeyFileError as exc:
            return [f"no valid staged key: {exc}"]
        return [] if key.account_id == self.pool else [f"staged key is for {key.account_id}"]

    def _requested_move(self, request: RequestedFailover, lease: LeaderLease) -> Move:
        """The CLI's failover with the operator's options, its fence proven by the Move itself."""
        options = request.options
        return Move(self.inventory, self.nodes, self.journal, MoveRequest(
            MoveKind.FAILOVER, replace(options, to=self.node),
            automatic=AutomaticMove(before_activate=self._lease_still_ours, target_lost=self._own_neard_lost),
            on_start=self._noting_lease(lease, request.on_start),
        ))

    def _automatic_settings(self, old: str | None) -> MoveSettings:
        """An automatic failover's timings: the inventory's, with PROMOTION_SILENCE_BLOCKS silent blocks and a fence of 3 ttls (30 s at least)."""
        return replace(MoveSettings.for_move(self.inventory, old, self.node)[0], silence_blocks=PROMOTION_SILENCE_BLOCKS,
                       fence=max(30.0, self.settings.ttl * 3))

    def _noting_lease(self, lease: LeaderLease, then: Callable[[int], None] | None = None) -> Callable[[int], None]:
        """A run's on_start that notes the lease it runs under: a member holding a newer one may
        take the run over if its process dies (_take_over_interrupted)."""
        def started(run_id: int) -> None:
            self.journal.update_run(run_id, {LEASE_GENERATION: lease.generation})
            if then is not None:
                then(run_id)
        return started

    async def _take_over_interrupted(self, lease: LeaderLease, members: list[MemberRecord], old: str | None,
                                     proof: FenceProof | None, settings: MoveSettings) -> tuple[str | None, FenceProof | None]:
        """Close the interrupted runs of ended leases (an agent killed mid-promotion) as
        taken-over, each once its target is proven fenced as any old leader's is (it may have
        loaded the key), so they no longer block every later promotion (issue 14, part 2).
        JournalError when a target cannot be proven fenced. Returns the old leader this promotion
        proves fenced, and its proof if known: the run's source when the run never proved it."""
        for run in interrupted_to_take_over(self.journal.runs(self.pool), lease.generation):
            target = run.to_node or self.node
            held = run.detail.get(LEASE_GENERATION)
            found = proof if target == old else None
            if found is None and isinstance(held, int):
                found = proof_from_record(members, LeaderInfo(target, held))
            found = found or await self._observe_old_leader(target) or await self._chain_silence(run, target, settings)
            self.journal.take_over(run.id, {"taken_over_by": self.node, "taken_over_generation": lease.generation,
                                            "target_fenced": {"proof": found.kind.value, **found.evidence}})
            log.warning("took over an interrupted run: its target is proven fenced", node=self.node, run=run.id,
                        target=target, proof=found.kind.value, generation=lease.generation)
            if target == old:
                proof = found
            source = run.from_node
            if source not in (None, self.node, target) and not any(
                    step.name == "fence" and step.outcome == "ok" for step in self.journal.steps(run.id)):
                old, proof = source, await self._observe_old_leader(source)  # None: the Move fences it (control or silence)
        return old, proof

    async def _chain_silence(self, run: Run, target: str, settings: MoveSettings) -> FenceProof:
        """No record or observation proves ``target`` fenced: the chain's silence must (JournalError if it does not)."""
        try:
            block_time = Move.block_time_of(await self.me.rpc.status())
            return await prove_chain_silence(self.me, self.pool, settings.silence_blocks, settings.fence, block_time)
        except (Refused, RpcError) as exc:
            raise JournalError(f"{run.describe()} was interrupted and its target {target} is not proven fenced: {exc}") from None

    async def _promote(self, lease: LeaderLease, members: list[MemberRecord], request: RequestedFailover | None = None) -> None:
        """We hold the lease: prove the old leader fenced, then activate through a failover Move
        (an operator's ``request``: with its options and the CLI's fence rules)."""
        self._move(Phase.PROMOTING)
        self.lease, self.lease_lost, self.activating = lease, None, False
        self._beat()
        started = time.monotonic()
        ended = ended_leader(self.node, members, self.last_leader)
        old = ended.member if ended else None
        keeper = asyncio.create_task(self._keep_lease_during_promotion(lease))
        try:
            if request:
                move = self._requested_move(request, lease)
            else:
                proof = proof_from_record(members, ended)
                settings = self._automatic_settings(old)
                old, proof = await self._take_over_interrupted(lease, members, old, proof, settings)
                seek = functools.partial(self._seek_fence_proof, old) if proof is None and old is not None else None
                ready = reusable_readiness(self.ready, self.readiness, time.monotonic(), READINESS_REUSE_TTLS * self.settings.ttl)
                move = Move(self.inventory, self.nodes, self.journal, MoveRequest(
                    MoveKind.FAILOVER, MoveOptions(self.node), settings=settings, source=old,
                    automatic=AutomaticMove(proven_fence=proof, seek_proof=seek, before_activate=self._lease_still_ours,
                                            journal_kind=AUTO_FAILOVER, target_lost=self._own_neard_lost, ready=ready),
                    on_start=self._noting_lease(lease),
                ))
            result = await move.run()
        except JournalError as exc:
            result = None
            reason = f"the journal refused the run: {exc}"
        except Exception as exc:  # noqa: BLE001 - an unexpected failure must not leave us "promoting" for ever
            log.exception("promotion failed", node=self.node)
            result = None
            reason = f"the promotion failed: {type(exc).__name__}: {exc}"
        finally:
            keeper.cancel()
            self.activating = False
        if request:
            request.finish(result, reason if result is None else result.message)
        if result is not None and result.ok:
            self._won()
            self._move(Phase.LEADER)
            self.failovers_total += 1
            self.last_failover_seconds = round(time.monotonic() - started, 3)
            await self.alerts.notify(AlertEvent.role_change(
                self.pool, self.node, MemberRole.STANDBY, MemberRole.LEADER, reason=f"promoted after {old or 'the old leader'} was fenced", generation=lease.generation
            ))
            return
        reason = result.message if result is not None else reason
        status = await self.me.status_or_none()
        signs = status is not None and status.validator_account_id == self.pool
        if signs or await on_doubt(self.me.key_in_home(), True):  # never drop a lease on doubt
            # We sign, or may once neard answers (a restart through the memtrie load): keep the
            # lease; health decides, and a leader that stays unhealthy fences itself.
            self._move(Phase.LEADER)
            return
        self.lease = None
        if self.unkeyed_since is None:  # never given the key under this lease: not an old leader to prove fenced
            self.unkeyed_since = lease.generation
        self._move(Phase.STANDBY)
        self._refused(reason)
        self._noted(Kind.WAIT, "promotion-refused", f"the promotion was refused, lease released: {reason}")
        self._disarm()
        # Our record (stepping aside, unkeyed since) before the lease is free: the next candidate
        # must not take our lease for an old leader's and prove the wrong node fenced.
        await self._publish(self.settings.retry_timeout)
        try:
            await asyncio.wait_for(self.store.release(lease), self.settings.retry_timeout)
        except (TimeoutError, LeaseStoreError):
            pass
        if self._first_of_run(PROMOTION_REFUSED, reason):
            await self.alerts.notify(AlertEvent.promotion_refused(self.pool, self.node, reason=reason, generation=lease.generation))

    async def _seek_fence_proof(self, old: str) -> FenceProof | None:
        """No record proves the old leader fenced: its silence, counted while its lease still ran,
        if its host is lost; else our own look at it (the Move then counts the silence after the
        lease). Sought while the move's preflight runs. The Move runs the old leader's
        fence_command, if it has one, once this proof holds."""
        node = self.nodes.get(old)
        if node is not None:
            lost = await proof_for_lost_leader(self.me, node, self.pool, self.quiet_since, self.settings.retry_timeout, self.settings.ttl)
            if lost is not None:
                return lost
        return await self._observe_old_leader(old)

    async def _observe_old_leader(self, old: str) -> FenceProof | None:
        """No record with an observation: look at the old leader ourselves (its RPC, and its
        host's /proc when reachable). None unless that shows it not signing: the Move then fences
        it through its control, or proves the chain's silence."""
        try:
            seen = await asyncio.wait_for(observe_signer(self.nodes[old], self.pool, rpc_timeout=self.settings.retry_timeout),
                                          STATUS_TIMEOUT + 2 * self.settings.retry_timeout)
        except Exception:  # noqa: BLE001 - a timeout or a host that errs: no look is no proof
            return None
        log.info("observed the old leader", node=self.node, old=old, verdict=seen.verdict.value, reason=seen.reason)
        if seen.verdict is SignerVerdict.NO_KEY and await on_doubt(self.nodes[old].key_in_home(), False):
            return None  # a running neard with the key in its home loads it on a restart: fence it first
        return proof_from_observation(seen)

    async def _keep_lease_during_promotion(self, lease: LeaderLease) -> None:
        """An Option 1 promotion waits through a restart: the lease must outlive it. A lease lost
        meanwhile (taken, revoked, refused, run out) ends the promotion before the key is given."""
        while True:
            await asyncio.sleep(self.settings.loop_wait)
            if self.lease is not lease or self.phase is not Phase.PROMOTING:
                # The promotion is over (a cancellation that wait_for swallowed leaves this task
                # running): the loop keeps or drops the lease now, never this task (chaos seed 1069).
                return
            await self._renew_promotion_lease(self.settings.retry_timeout)
            if self.lease_lost is not None and not self.activating:
                # No key given, and _lease_still_ours will refuse to give it: nothing for the
                # watchdog to guard (it would mask this standby's neard at the lease's end).
                self._disarm()
                return
            self._beat()  # once the key may be given, the watchdog keeps the lease's deadline

    async def _own_neard_lost(self) -> str:
        """Returns, saying why, once our neard is gone (its control says it does not run) or
        fenced (masked): a promotion's verify watches its target with it and gives up then,
        instead of keeping the lease through its deadline while nobody signs (issue 14, part 5).
        The loop's leader rules then fence this node, which releases the lease."""
        while True:
            await asyncio.sleep(self.settings.loop_wait)
            if await self.me.status_or_none() is not None:
                continue
            if await on_doubt(self.me.control.is_masked(), False):
                return "was fenced (neard masked)"
            if await on_doubt(self.me.control.is_active(), None) is False:
                return "is gone (neard not running)"

    async def _renew_promotion_lease(self, timeout: float) -> None:
        """Renew; note in ``lease_lost`` why the lease is no longer ours, if it is not."""
        assert self.lease is not None
        try:
            if not await asyncio.wait_for(self.store.renew(self.lease), timeout):
                self.lease_lost = self.lease_lost or "the store no longer holds it for this node"
        except (TimeoutError, LeaseStoreUnavailable):
            pass  # no answer: the lease holds as long as our own estimate says (below)
        except LeaseStoreError as exc:
            self.lease_lost = self.lease_lost or f"the store refuses the renewal: {exc}"
        remaining = self.lease.remaining()
        if self.lease_lost is None and remaining < self.settings.fence_margin:
            self.lease_lost = f"only {remaining:.1f}s of it left and not renewed"

    async def _lease_still_ours(self) -> None:
        """The promotion's last check before the key is given: the lease must be ours, with more
        than the fence margin left (the leader's loop would fence at once below that). It is
        renewed here: the keeper's last renewal can be a loop old, and the lease revoked since."""
        assert self.lease is not None
        await self._renew_promotion_lease(max(0.0, self._budget()))
        if self.lease_lost is not None:
            raise Refused(f"{self.node} lost the lease of generation {self.lease.generation} during the promotion ({self.lease_lost}): the key is not given")
        self.activating = True

    # --- records, shutdown, journal ----------------------------------------------------

    def _record(self) -> MemberRecord:
        last = self.tracker.samples[-1] if self.tracker.samples else None
        return MemberRecord(
            name=self.node,
            role=self.role,
            healthy=not self.problems,
            problems=self.problems,
            priority=self.spec.priority,
            generation=self.lease.generation if self.lease else None,
            fenced_generation=self.fenced_generation if self.role == MemberRole.FENCED else None,
            fence_observation=self.fence_observation if self.role == MemberRole.FENCED else None,
            head_height=last.head if last else None,
            api_url=self.spec.api,
            details={"failovers_total": self.failovers_total, **({"handover_to": self.handover_to} if self.handover_to else {}),
                     **({UNKEYED_SINCE: self.unkeyed_since} if self.unkeyed_since is not None else {})},
        )

    async def _publish(self, timeout: float | None = None) -> None:
        """Our record, within ``timeout`` (by default the loop's budget: a leader's record waits
        no longer than its fence margin allows)."""
        await self._put_record(self._record(), timeout)
        self.published = None  # written out of turn, maybe after the loop's: the next loop's goes out whatever it is

    async def _publish_due(self) -> None:
        """The loop's record, only when it changed or before it grows old (ha/publish.py)."""
        record = self._record()
        if record_due(record, self.published, time.time(), self.settings.record_max_age):
            self.published = record if await self._put_record(record) else None

    async def _put_record(self, record: MemberRecord, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.store.put_member(record, 3 * self.settings.ttl), timeout or self._budget())
        except (TimeoutError, LeaseStoreError):
            return False
        return True

    async def _shutdown(self) -> None:
        """A clean stop (SIGTERM): a leader's agent paused keeps its neard and its lease, one not
        paused hands over to the best ready standby, or else fences itself and drops the lease
        (plan_agent_stop); the watchdog is disarmed. A standby's neard is left as it is."""
        if self.rejoining is not None:
            await asyncio.wait({self.rejoining})  # bounded by its own timeout: a run cut short would block every later move
        if self.lease is not None and self.phase is Phase.LEADER:
            plan = plan_agent_stop(self.node, self.paused, self._best_standby())
            log.warning("the agent is stopping", node=self.node, plan=plan.action.value, message=plan.message)
            self._journal_event("agent-stop", {"plan": plan.action.value, "target": plan.target, "message": plan.message})
            if plan.action is StopAction.KEEP_LEASE:
                self._keep_lease_for_restart()
                return
            if plan.target is not None:
                await self._switch_over_before_stop(plan.target)
        if self.lease is not None:
            await self._self_fence("the agent is stopping")
        if self.lease is not None:
            return  # the fence failed: the armed watchdog stays behind and fences at the lease's end
        self._disarm()
        if self.inherited is not None:
            return  # an earlier agent's lease may be live: its watchdog stays and fences at its end
        if self.watchdog is not None:
            self.watchdog.terminate()
        if self.role != MemberRole.FENCED:
            try:
                await asyncio.wait_for(self.store.delete_member(self.node), self.settings.retry_timeout)
            except (TimeoutError, LeaseStoreError):
                pass

    def _best_standby(self) -> str | None:
        """The ready standby a promotion would pick now (the store's last view)."""
        if self.view is None:
            return None
        others = [m for m in self.view.members if m.name != self.node]
        return best_candidate(others, max_age=self.settings.record_max_age, now=time.time())

    def _keep_lease_for_restart(self) -> None:
        """Paused: neard keeps signing and the lease stays in the store; the beat, disarmed (no
        watchdog fence at its end), keeps its generation for the next agent to resume."""
        assert self.lease is not None
        self.heartbeat.beat(armed=False, generation=self.lease.generation)
        if self.watchdog is not None and self.inherited is None:
            self.watchdog.terminate()

    async def _switch_over_before_stop(self, target: str) -> None:
        """A planned switchover to ``target`` while the loop keeps renewing (the stop waits for it:
        the unit's TimeoutStopSec bounds it); a failed one leaves the lease to the fence after it."""
        switch = asyncio.ensure_future(self.request_switchover(MoveOptions(target)))
        while not switch.done():
            began = time.monotonic()
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - as in run(): the watchdog covers a loop that fails
                log.exception("agent loop failed", node=self.node)
            await asyncio.wait({switch}, timeout=self._pause_after(began))
        try:
            outcome = switch.result()
            log.info("hand-over before the stop", node=self.node, to=target, ok=outcome.get("ok"), message=outcome.get("message"))
        except Exception as exc:  # noqa: BLE001 - whatever failed, the fence below still runs
            log.error("hand-over before the stop failed", node=self.node, to=target, error=f"{type(exc).__name__}: {exc}")

    def _settling(self, problems: list[str]) -> list[str]:
        """After an automatic rejoin: why this standby is no candidate yet (empty once settled)."""
        now = time.monotonic()
        self.healthy_since = healthy_since(self.healthy_since, not problems, now)
        why = settling(self.healthy_since, self.rejoin_settings, now, self._leaderless_for(now))
        if why is None:
            self.settling = False
            log.info("rejoined and settled: a ready standby again", node=self.node)
        return [why] if why else []

    async def _rejoin_if_due(self) -> None:
        """A fenced node rejoins as a standby on its own when ha/rejoin_policy.py allows; else its
        problems say why it stays out."""
        if self.rejoining is not None:
            return
        node = FencedNode(
            key_in_home=await on_doubt(self.me.key_in_home(), True),
            another_leads=leads_elsewhere(self.view, self.node),
            self_fences=tuple(self.self_fences), handed_over=self.handed_over, refused=self.rejoin_refused,
            last_try=self.rejoin_failed_at, masked_unexplained=self.unexplained_mask,
            leaderless_for=self._leaderless_for(time.monotonic()),
        )
        why = stay_out(node, self.rejoin_settings, self.paused, time.time())
        if why is not None:
            self._remember(problems=(*self.problems, f"stays out: {why}"))
            return
        self.rejoining = asyncio.create_task(self._rejoin(settle=node.another_leads))

    def _leaderless_for(self, now: float) -> float | None:
        """Seconds every store read has shown no lease and no handover (None: one did, or no answer)."""
        return now - self.leaderless_since if self.leaderless_since is not None else None

    async def _rejoin(self, settle: bool) -> None:
        """procedures/rejoin.py's run, as `near-failover rejoin` does it; settling starts with it,
        unless nobody leads (``settle`` False: nobody to hand back to, its health decides)."""
        began = time.time()
        self.settling, self.healthy_since = settle, None
        log.info("fenced, key out of its home: rejoining as a standby", node=self.node,
                 why="another node leads" if settle else "nobody has held the lease for two ttls")
        try:
            result = await Rejoin(self.inventory, self.nodes, self.node, self.journal).run()
            outcome, message = result.outcome, result.message
        except Exception as exc:  # noqa: BLE001 - a journal that refused the run, a host that failed: try later
            outcome, message = "not-ready", f"{type(exc).__name__}: {exc}"
        finally:
            self.rejoining = None
        log.info("automatic rejoin", node=self.node, outcome=outcome, message=message)
        if outcome == "refused":
            self.rejoin_refused, self.settling = message, False
        if self.phase is Phase.FENCED:  # still masked: another try after the settling time
            self.rejoin_failed_at = began

    def _journal_event(self, kind: str, evidence: dict[str, Any]) -> None:
        # Not a move: recorded even while another agent's promotion is in progress in a journal
        # shared on one host (start_run would refuse it, and an open event run would refuse the move).
        try:
            self.journal.record_event(self.pool, kind, self.node, evidence)
        except (JournalError, sqlite3.Error) as exc:
            log.error("could not record the event in the journal", node=self.node, kind=kind, error=str(exc))

    # --- AgentView (the API) -----------------------------------------------------------

    def snapshot(self) -> AgentSnapshot:
        last = self.tracker.samples[-1] if self.tracker.samples else None
        leader = self.store_leader
        decision = self.last_decision
        return AgentSnapshot(
            node=self.node,
            role=self.role,
            leader=self.node if self.lease else (leader.member if leader else None),
            generation=self.lease.generation if self.lease else (leader.generation if leader else None),
            healthy=not self.problems,
            problems=list(self.problems),
            head=last.head if last else None,
            paused=self.paused,
            failovers_total=self.failovers_total,
            last_failover_seconds=self.last_failover_seconds,
            lease_remaining=round(self.lease.remaining(), 3) if self.lease else None,
            updated_at=time.time(),
            production=self.production,
            production_at=self.production_at,
            account_id=self.pool,
            chain_id=self.inventory.validator.chain_id,
            signing=last is not None and last.key_loaded == self.pool,
            store_up=self.store_ok,
            watchdog_up=self.watchdog_ok,
            failsafe_active=self.failsafe_note is not None,
            epoch=EpochSeen(start=last.epoch_start, length=self.epoch_length) if last and last.epoch_start else None,
            phase=self.phase,
            last_decision=LastDecision(kind=decision.kind, reason=decision.reason, at=self.last_decision_at) if decision else None,
        )

    async def cluster(self) -> ClusterView:
        return await cluster_view(self.store)

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        return [self._run_json(r) for r in self.journal.runs(self.pool, limit)]

    def journal_run(self, run_id: int) -> dict[str, Any]:
        """One run of this pool with its steps as the journal has them now (JournalError: none)."""
        run = self.journal.run(run_id)
        if run.validator != self.pool:
            raise JournalError(f"run {run_id} is not a run of {self.pool}")
        return self._run_json(run)

    def _run_json(self, run: Run) -> dict[str, Any]:
        return {**run.to_json(), "steps": [s.to_json() for s in self.journal.steps(run.id)]}

    async def leader_problem(self) -> str | None:
        lease = self.lease
        status = await self.me.status_or_none() if lease is not None else None
        return leader_problem(self.node, self.pool, lease.remaining() if lease else None, status is not None,
                              status.validator_account_id if status else None)

    def standby_problem(self) -> str | None:
        last = self.tracker.samples[-1] if self.tracker.samples else None
        return standby_problem(self.node, self.pool, self.role, self.lease is not None, last.key_loaded if last else None, self.problems)

    async def request_failover(self, options: MoveOptions, confirm: str | None = None, on_start: Callable[[int], None] | None = None) -> dict[str, Any]:
        """An operator's failover to this node: the loop takes it up at its next check and runs it
        under the lease, as a promotion (see _take_up_failover); the Move's result."""
        try:
            self.inventory.node(options.to)
        except UnknownNode as exc:
            raise ValueError(str(exc)) from None
        refusal = failover_refusal(self.node, self.pool, options, confirm, self.lease is not None, self.promoting or self.requested is not None)
        if refusal is not None:
            raise ValueError(refusal)
        request = self.requested = RequestedFailover(options, on_start)
        try:
            # A loop runs a check every loop_wait, each bounded well within a ttl.
            return await request.outcome(take_up_within=2 * self.settings.ttl)
        finally:
            if self.requested is request:
                self.requested = None

    async def request_switchover(self, options: MoveOptions, on_start: Callable[[int], None] | None = None) -> dict[str, Any]:
        """A planned switchover through the lease: only the leader runs it, and hands the lease over."""
        if self.lease is None:
            raise ValueError(f"{self.node} is not the leader; send the switchover to the leader's API")
        try:
            target = self.inventory.node(options.to)
        except UnknownNode as exc:
            raise ValueError(str(exc)) from None
        if target.name == self.node:
            raise ValueError(f"{self.node} already holds the validator; name a standby to switch over to")
        if self.phase is not Phase.LEADER:
            raise ValueError(f"{self.node} is {self.phase.value}: a switchover starts only from a settled leader; try again shortly")
        self._move(Phase.HANDING_OVER)
        self._remember(handover_to=target.name)
        try:
            await self._publish()  # the target's agent must know the key it is about to see is ours to give
            request = MoveRequest(MoveKind.SWITCHOVER, replace(options, to=target.name), on_start=on_start)
            result = await Move(self.inventory, self.nodes, self.journal, request).run()
            self.alerts.post(AlertEvent.move(self.pool, result.to_json()))
            if result.ok and self.lease is not None:
                # The target's agent sees its neard signing with no leader and claims the lease;
                # our record names it until then (two ttls at most), so no third member takes it.
                self._remember(handover_until=time.monotonic() + 2 * self.settings.ttl)
                lease, self.lease = self.lease, None
                self._move(Phase.FENCED)
                self.handed_over, self.unexplained_mask = True, False
                self._noted(Kind.HAND_OVER, "switchover-done", f"the switchover gave the key to {target.name}: the lease goes to it")
                self.fenced_generation = lease.generation
                self._remember(problems=(FENCED_PROBLEM,))
                seen = await on_doubt(observe_signer(self.me, self.pool), None)
                self.fence_observation = FenceObservation(verdict=seen.verdict.value, reason=seen.reason) if seen and seen.not_signing else None
                self._disarm()
                await self._publish()
                await self._hand_over_or_release(lease, target.name)
        finally:
            if self.phase is Phase.HANDING_OVER:
                self._move(Phase.LEADER)  # the switchover failed (or raised): still the leader
            if time.monotonic() >= self.memory.handover_until:
                self._remember(handover_to=None)
        return result.to_json()

    async def _store_answers(self) -> bool:
        """A fresh read for the failsafe: our last one may predate an outage the asking leader
        already met, and a denial now makes it fence itself (renewal-isolated). Half a
        retry_timeout, so the answer reaches a leader that waits retry_timeout for it."""
        try:
            await asyncio.wait_for(self.store.leader(), self.settings.retry_timeout / 2)
        except (TimeoutError, LeaseStoreError):
            return False
        return True

    async def set_paused(self, paused: bool) -> None:
        await self.store.set_paused(paused)
        self.paused = paused

    async def confirm_leader(self, leader: str, generation: int) -> bool:
        """Failsafe: confirm only a genuine store outage that we see too, for the leader we knew."""
        if self.store_ok and await self._store_answers():
            return False
        if self.promoting:  # asked after the read: a promotion may have started meanwhile
            return False
        known = self.last_leader
        if known is None or known.member != leader or known.generation != generation:
            return False
        self._remember(confirmed_until=time.monotonic() + self.settings.ttl)
        return True


def agent_state_dir(inventory: Inventory) -> Path:
    """Where an agent keeps its heartbeat, markers and lock by default: beside the journal."""
    return Path(inventory.journal.path).parent


def load_token(inventory: Inventory) -> str | None:
    """The agents' shared API token (InventoryError when its file is missing, empty or open to others)."""
    path = inventory.lease.api_token_file if inventory.lease else None
    return read_secret_file(path, "api_token_file") if path else None

