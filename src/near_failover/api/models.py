"""The agent API's answers as pydantic models: the routes build them (so what is sent is what
/openapi.json declares) and the client reads them (so the CLI and the agents read one shape)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from near_failover.procedures.move import MoveResult


class MoveStarted(BaseModel):
    """202 to POST /switchover and /failover: the journal has the run; follow it at ``run``."""

    run_id: int
    run: str = Field(description="where to follow the run: /runs/{run_id}")


class ErrorAnswer(BaseModel):
    """Every answer other than 2xx: a code for scripts and a sentence for people."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class MoveRefusedAnswer(ErrorAnswer):
    """409 to a move refused before its run started, with the move's result when it has one."""

    result: MoveResult | None = None


class FailsafeAnswer(BaseModel):
    confirmed: bool


class HistoryRun(BaseModel):
    """One run of the journal with its steps (the journal's own fields: kind, from, to, started, ...)."""

    model_config = ConfigDict(extra="allow")

    id: int
    state: str = Field(description='the outcome once ended, else "in-progress" or "interrupted"')
    detail: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]] = Field(default_factory=list)


class HistoryAnswer(BaseModel):
    """GET /history: the journal's latest runs, newest first."""

    runs: list[HistoryRun]


class RunAnswer(HistoryRun):
    """GET /runs/{id}: the journal's run (its fields are the journal's, see /history) with its
    steps as they happen; ``active`` while a move started through this API runs, then its result."""

    active: bool
    result: MoveResult | None = None

    @property
    def ended(self) -> bool:
        return not self.active and self.state != "in-progress"
