"""What the API needs from an agent, and nothing more.

The API (routes, page, metrics) is written against this protocol so it can be served beside any
object that implements it; ``near_failover.ha.agent.Agent`` is the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from near_failover.ha.lease import ClusterView
from near_failover.ha.snapshot import AgentSnapshot
from near_failover.procedures.plan import MoveOptions


class AgentView(Protocol):
    node: str                     # this agent's node name
    def snapshot(self) -> AgentSnapshot: ...
    async def cluster(self) -> ClusterView: ...   # one read of the lease store, with the leader's ttl left
    def history(self, limit: int = 20) -> list[dict[str, Any]]: ...  # journal runs, each Run.to_json() + "steps": [Step.to_json()]
    def journal_run(self, run_id: int) -> dict[str, Any]: ...  # one journal run as in history(); raises JournalError when there is none
    async def leader_problem(self) -> str | None: ...  # None only while this node holds the lease and its neard shows the pool's key
    def standby_problem(self) -> str | None: ...  # None only on a standby ready to take over
    # A move: the MoveResult.to_json() at its end; on_start(run id) once the journal has the run.
    # Raises ValueError (a refusal: unknown node, not the leader, ...) or JournalError (a run in
    # progress or interrupted) before any run starts.
    async def request_switchover(self, options: MoveOptions, on_start: Callable[[int], None] | None = None) -> dict[str, Any]: ...
    async def request_failover(self, options: MoveOptions, confirm: str | None = None, on_start: Callable[[int], None] | None = None) -> dict[str, Any]: ...
    async def set_paused(self, paused: bool) -> None: ...
    async def confirm_leader(self, leader: str, generation: int) -> bool: ...  # Patroni failsafe: does this member still see `leader` at `generation` and is it not promoting?
    def wake_up(self, reason: str) -> None: ...  # a hint (a lease handed over to it): check the store now, not at the next loop
