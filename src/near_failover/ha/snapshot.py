"""One agent's state at an instant, as its API's /status, /health, /leader and /standby send it
and as its metrics and status page read it: one typed value, built by the agent, so the API
declares (in /openapi.json) exactly what it sends."""

from __future__ import annotations

from pydantic import BaseModel, Field

from near_failover.ha.decide import Kind, Phase
from near_failover.ha.lease import MemberRole


class Duties(BaseModel):
    """One kind of duty (blocks, chunks, endorsements) in the current epoch, as the chain counts it."""

    produced: int
    expected: int


class EpochSeen(BaseModel):
    start: int = Field(description="height of the epoch's first block")
    length: int | None = Field(default=None, description="blocks per epoch, once read from neard")


class LastDecision(BaseModel):
    """The loop's latest decision (ha/decide.py), with why and when (unix time)."""

    kind: Kind
    reason: str
    at: float | None = None


class AgentSnapshot(BaseModel):
    node: str
    role: MemberRole | str = Field(union_mode="left_to_right", description="leader, standby, fenced or starting")
    leader: str | None = Field(default=None, description="the leader this agent knows: itself when it holds the lease")
    generation: int | None = Field(default=None, description="fencing generation of that leader's lease")
    healthy: bool = False
    problems: list[str] = Field(default_factory=list)
    head: int | None = Field(default=None, description="its neard's latest block height")
    paused: bool = False
    failovers_total: int = 0
    last_failover_seconds: float | None = None
    lease_remaining: float | None = Field(default=None, description="seconds, by this leader's own estimate; None on others")
    updated_at: float = Field(description="unix time of this snapshot")
    production: dict[str, Duties] | None = Field(default=None, description="by duty kind: blocks, chunks, endorsements")
    production_at: float | None = Field(default=None, description="unix time the production was read")
    account_id: str
    chain_id: str
    signing: bool = Field(default=False, description="its neard shows the pool's key loaded")
    store_up: bool = True
    watchdog_up: bool = False
    failsafe_active: bool = False
    epoch: EpochSeen | None = None
    phase: Phase = Phase.STARTING
    last_decision: LastDecision | None = None
