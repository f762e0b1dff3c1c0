"""The agent's state answers (/status, /health, /leader, /standby, /cluster) as pydantic
models, the response_models of those routes. They are built from the agent's own typed values
(ha/snapshot.py, ha/lease.py), so they live apart from api/models.py: the client imports that one,
and the client imports nothing of the agent (the import contract "api-client")."""

from __future__ import annotations

from pydantic import BaseModel

from near_failover.ha.lease import ClusterView, MemberRecord
from near_failover.ha.snapshot import AgentSnapshot
from near_failover.procedures.status import LeaderStatus

__all__ = ["AgentSnapshot", "CheckAnswer", "ClusterAnswer"]


class CheckAnswer(AgentSnapshot):
    """GET /leader and /standby: the snapshot, with the check's verdict (its problem, or the role it confirms)."""

    check: str


class ClusterAnswer(BaseModel):
    """GET /cluster: one read of the lease store: the leader, the pause flag, every member's record."""

    leader: LeaderStatus | None
    paused: bool
    members: list[MemberRecord]

    @classmethod
    def of(cls, view: ClusterView) -> ClusterAnswer:
        leader = view.leader
        return cls(leader=LeaderStatus(member=leader.member, generation=leader.generation, ttl_left=leader.ttl_left) if leader else None,
                   paused=view.paused, members=list(view.members))
