"""What an operator asks of the agents beside the automatic loop: where a manual move runs when
agents hold a lease (never around them), a failover run by the target's agent under the lease
with the CLI's rules, and whether this member is the signer or a ready standby (load balancers'
and checks' GET /leader and GET /standby).

The decisions are pure functions of what the agent knows; the agent does the I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from near_failover.ha.lease import LeaderInfo, MemberRecord, MemberRole
from near_failover.procedures.move import MoveResult
from near_failover.procedures.plan import MoveKind, MoveOptions

STOP_THE_AGENTS = "the agents fail over on their own. To take over by hand, stop the agents first (their leader fences itself and releases the lease)"


@dataclass(frozen=True)
class ManualMoveRoute:
    """Where an operator's move runs when the inventory has a [lease]."""

    runner: str | None = None  # the node whose agent runs it; None: the CLI runs it itself
    refusal: str | None = None  # why it runs nowhere
    # A failover whose runner's agent is not listening (stopped) runs from the CLI instead.
    here_if_agent_stopped: bool = False


def manual_move_route(kind: MoveKind, target: str, leader: LeaderInfo | None, apis: Mapping[str, str | None]) -> ManualMoveRoute:
    """A manual move never goes around the agents: a switchover is run by the leader's agent
    (which then hands the lease over); a failover is refused while a leader holds the lease (the
    agents fail over on their own), and otherwise run by the target's agent under the lease. The
    CLI runs it itself only when no agent is in the way: a switchover with no leader, a failover
    whose target has no ``api`` (``apis``: each node's, None when it has none)."""
    if kind == MoveKind.FAILOVER and leader is not None:
        return ManualMoveRoute(refusal=f"{leader.member} holds the lease (generation {leader.generation}): {STOP_THE_AGENTS}")
    if leader is None and kind == MoveKind.SWITCHOVER:
        return ManualMoveRoute()
    runner = target if leader is None else leader.member
    if not apis.get(runner):
        if kind == MoveKind.FAILOVER:
            return ManualMoveRoute()
        return ManualMoveRoute(refusal=f"{runner} holds the lease but has no `api` in the inventory: run the switchover through its agent's API")
    return ManualMoveRoute(runner, here_if_agent_stopped=kind == MoveKind.FAILOVER)


@dataclass
class RequestedFailover:
    """An operator's failover waiting for the agent's loop, and how its caller learns the outcome."""

    options: MoveOptions
    on_start: Callable[[int], None] | None = None
    done: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    taken: asyncio.Event = field(default_factory=asyncio.Event)  # the loop has taken it up

    async def outcome(self, take_up_within: float) -> dict[str, Any]:
        """The Move's result; a refusal if the agent's loop does not take the request up in time
        (a loop that does not run must not hold the API's move lock for ever)."""
        try:
            await asyncio.wait_for(self.taken.wait(), take_up_within)
        except asyncio.TimeoutError:
            self.refuse(f"the agent's loop did not take the failover up within {take_up_within:g}s; see the agent's log")
        return await self.done

    def refuse(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(ValueError(why))

    def finish(self, result: MoveResult | None, reason: str) -> None:
        """The Move's result, or (when none was made: the journal refused the run) the reason."""
        if result is None:
            self.refuse(reason)
        elif not self.done.done():
            self.done.set_result(result.to_json())


def failover_refusal(node: str, pool: str, options: MoveOptions, confirm: str | None, holds_lease: bool, busy: bool) -> str | None:
    """Why this agent refuses a failover as it is asked (None: it takes it)."""
    if options.to != node:
        return f"a failover is run by its target's agent under the lease: send it to {options.to}'s agent, not {node}'s"
    if options.force and confirm != pool:
        return (f"force skips the proof that the old signer is silent, and if it still signs {pool} double signs: "
                f"set confirm to the pool id {pool!r} to accept that (got {confirm!r}); nothing changed")
    if holds_lease:
        return f"{node} holds the lease already: its neard signs for {pool}"
    if busy:
        return f"{node}'s agent is already moving the validator (a promotion, or a failover asked before); wait for it"
    return None


def failover_start_refusal(node: str, leader: LeaderInfo | None, store_ok: bool, signing: bool, fenced: bool, may_lead: bool) -> str | None:
    """Why the loop, taking the failover up, does not start it: as the CLI refuses a failover
    while a leader holds the lease, and a node that must not lead does not."""
    if leader is not None:
        return f"{leader.member} holds the lease (generation {leader.generation}): {STOP_THE_AGENTS}"
    if not store_ok:
        return "the lease store does not answer: no failover can take the lease; try again once it answers"
    if signing:
        return f"{node}'s neard has the pool's key loaded already"
    if fenced:
        return f"{node} is fenced (neard masked): unmask it and start it without the key first"
    if not may_lead:
        return f"{node}'s watchdog does not watch: this agent must not lead"
    return None


def leader_problem(node: str, pool: str, lease_left: float | None, rpc_answers: bool, loaded: str | None) -> str | None:
    """GET /leader: None only when this node holds the lease and its neard shows the pool's key."""
    if lease_left is None:
        return f"{node} does not hold the lease"
    if lease_left <= 0:
        return f"{node}'s lease has run out"
    if not rpc_answers:
        return f"{node} holds the lease but its neard's RPC does not answer"
    if loaded != pool:
        return f"{node} holds the lease but its neard has {loaded or 'no validator key'} loaded, not {pool}"
    return None


def standby_problem(node: str, pool: str, role: str, holds_lease: bool, loaded: str | None, problems: list[str]) -> str | None:
    """GET /standby: None only for a standby ready to take over (healthy, key staged, not signing)."""
    if role != MemberRole.STANDBY or holds_lease:
        return f"{node} is {'the leader' if holds_lease else role}, not a standby"
    if loaded == pool:
        return f"{node}'s neard has the pool's key loaded"
    if problems:
        return f"{node} is not ready: {'; '.join(problems)}"
    return None


def handover_to_another(node: str, members: list[MemberRecord]) -> str | None:
    """The node a planned switchover hands the lease to, when it is not ``node``: between the
    leader's release and the target's claim the lease is free, and a third member must not take
    it (it would fence the target that already signs). A record lives 3 ttls, so a leader that
    died mid-switchover holds no one back longer than that."""
    for member in members:
        target = member.details.get("handover_to")
        if target and target != node:
            return str(target)
    return None
