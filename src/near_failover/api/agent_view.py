"""What the API needs from an agent, and nothing more.

The API (routes, page, metrics) is written against this protocol so it can be served beside any
object that implements it; ``near_failover.ha.agent.Agent`` is the real one.
"""

from __future__ import annotations

from typing import Any, Protocol


class AgentView(Protocol):
    node: str                     # this agent's node name
    def snapshot(self) -> dict[str, Any]: ...
        # {"node", "role": "leader"|"standby"|"fenced"|"starting", "leader": str|None, "generation": int|None,
        #  "healthy": bool, "problems": [str], "head": int|None, "paused": bool, "failovers_total": int,
        #  "last_failover_seconds": float|None, "lease_remaining": float|None, "updated_at": float (unix),
        #  "production": None | {"blocks": {"produced","expected"}, "chunks": {...}, "endorsements": {...}},
        #  "production_at": float|None (unix, when production was read), "account_id", "chain_id": str,
        #  "signing", "store_up", "watchdog_up", "failsafe_active": bool, "epoch": None | {"start": int, "length": int|None}}
    async def cluster(self) -> dict[str, Any]: ...   # {"leader": {"member","generation","ttl_left"}|None, "paused": bool, "members": [MemberRecord.model_dump()]}
    def history(self, limit: int = 20) -> list[dict[str, Any]]: ...  # journal runs, each Run.to_json() + "steps": [Step.to_json()]
    async def request_switchover(self, to: str, mode: str | None) -> dict[str, Any]: ...  # a MoveResult.to_json(); raises ValueError for an unknown node / not leader
    async def set_paused(self, paused: bool) -> None: ...
    async def confirm_leader(self, leader: str, generation: int) -> bool: ...  # Patroni failsafe: does this member still see `leader` at `generation` and is it not promoting?
