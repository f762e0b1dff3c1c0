"""The agent's state answers (/status, /health, /leader, /standby, /cluster, /history) are
declared in /openapi.json by their pydantic models, and keep the JSON keys the page, the tests
and the operators' scripts read."""

from __future__ import annotations

import time
from typing import Any

import pytest

from near_failover.api.app import create_app
from near_failover.api.models import HistoryAnswer, HistoryRun
from near_failover.api.state_models import AgentSnapshot, CheckAnswer, ClusterAnswer
from near_failover.ha.decide import Kind, Phase
from near_failover.ha.lease import ClusterView, LeaderInfo, MemberRecord, MemberRole
from near_failover.ha.snapshot import EpochSeen, LastDecision
from tests.unit.test_move_result import NoAgent, conforms, response_schema

SNAPSHOT_KEYS = {
    "node", "role", "leader", "generation", "healthy", "problems", "head", "paused", "failovers_total",
    "last_failover_seconds", "lease_remaining", "updated_at", "production", "production_at", "account_id",
    "chain_id", "signing", "store_up", "watchdog_up", "failsafe_active", "epoch", "phase", "last_decision",
}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(NoAgent(), None).openapi()  # type: ignore[arg-type]


def a_snapshot() -> AgentSnapshot:
    return AgentSnapshot(
        node="val-a", role=MemberRole.LEADER, leader="val-a", generation=7, healthy=True, head=120, updated_at=time.time(),
        production={"blocks": {"produced": 9, "expected": 10}}, account_id="pool.poolv1.near", chain_id="localnet",
        signing=True, epoch=EpochSeen(start=100, length=50), phase=Phase.LEADER,
        last_decision=LastDecision(kind=Kind.RENEW, reason="renewed", at=time.time()),
    )


@pytest.mark.parametrize(("path", "status"), [("/status", "200"), ("/health", "200"), ("/health", "503")])
def test_the_snapshot_is_declared_with_its_keys(openapi: dict[str, Any], path: str, status: str) -> None:
    sent = a_snapshot().model_dump(mode="json")
    assert set(sent) == SNAPSHOT_KEYS
    assert (sent["role"], sent["phase"], sent["epoch"], sent["last_decision"]["kind"]) == ("leader", "leader", {"start": 100, "length": 50}, "renew")
    schema = response_schema(openapi, path, "get", status)
    assert conforms(openapi, schema, sent) == []
    assert conforms(openapi, schema, {**sent, "phase": "dancing"}), "a phase outside the enum must not conform"
    assert conforms(openapi, schema, {k: v for k, v in sent.items() if k != "node"}), "the node is required"


@pytest.mark.parametrize(("path", "status"), [("/leader", "200"), ("/leader", "503"), ("/standby", "503")])
def test_a_check_is_the_snapshot_and_its_verdict(openapi: dict[str, Any], path: str, status: str) -> None:
    sent = CheckAnswer(**dict(a_snapshot()), check="leader").model_dump(mode="json")
    assert set(sent) == SNAPSHOT_KEYS | {"check"}
    schema = response_schema(openapi, path, "get", status)
    assert conforms(openapi, schema, sent) == []
    assert conforms(openapi, schema, {k: v for k, v in sent.items() if k != "check"})


def test_the_cluster_answer_is_the_stores_view(openapi: dict[str, Any]) -> None:
    view = ClusterView(LeaderInfo("val-a", 7, ttl_left=4.5), (MemberRecord(name="val-a", role=MemberRole.LEADER, generation=7),
                                                            MemberRecord(name="val-b", role="observer")), paused=True, revision=12)
    sent = ClusterAnswer.of(view).model_dump(mode="json")
    assert sent["leader"] == {"member": "val-a", "generation": 7, "ttl_left": 4.5} and sent["paused"] is True
    assert [(m["name"], m["role"]) for m in sent["members"]] == [("val-a", "leader"), ("val-b", "observer")]
    assert set(sent) == {"leader", "paused", "members"}
    schema = response_schema(openapi, "/cluster", "get", "200")
    assert conforms(openapi, schema, sent) == []
    assert conforms(openapi, schema, {**sent, "leader": {"member": "val-a"}}), "a leader without its generation must not conform"


def test_the_history_answer_keeps_the_journals_fields(openapi: dict[str, Any]) -> None:
    run = {"id": 3, "validator": "pool.poolv1.near", "kind": "switchover", "from": "val-a", "to": "val-b", "state": "ok",
           "outcome": "ok", "detail": {}, "steps": [{"name": "preflight"}]}
    sent = HistoryAnswer(runs=[HistoryRun.model_validate(run)]).model_dump(mode="json")
    assert sent == {"runs": [run]}
    schema = response_schema(openapi, "/history", "get", "200")
    assert conforms(openapi, schema, sent) == []
    assert conforms(openapi, schema, {"runs": [{"kind": "switchover"}]}), "a run without its id must not conform"
