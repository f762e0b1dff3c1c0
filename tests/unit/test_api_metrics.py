"""The agent's Prometheus exposition, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from near_failover.api.metrics import agent_registry, exposition


class SnapshotOnly:
    """Only ``snapshot`` is read by the collector; the other AgentView methods are not needed."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.node = snapshot["node"]
        self.current = snapshot
        self.reads = 0

    def snapshot(self) -> dict[str, Any]:
        self.reads += 1
        return self.current


def leader_snapshot(**changes: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "node": "val-a", "role": "leader", "leader": "val-a", "generation": 12, "healthy": True, "problems": [],
        "head": 4321, "paused": False, "failovers_total": 3, "last_failover_seconds": 2.75, "lease_remaining": 7.5,
        "updated_at": time.time(),
        "production": {
            "blocks": {"produced": 45, "expected": 50},
            "chunks": {"produced": 170, "expected": 200},
            "endorsements": {"produced": 600, "expected": 1000},
        },
    }
    snap.update(changes)
    return snap


def scrape(snapshot: dict[str, Any]) -> dict[str, Any]:
    """name -> family, from the text a Prometheus server would read."""
    text = exposition(agent_registry(SnapshotOnly(snapshot))).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(family: Any, label: str | None = None) -> dict[Any, float]:
    return {(s.labels.get(label) if label else None): s.value for s in family.samples}


def test_leader_snapshot_round_trips_through_the_parser() -> None:
    families = scrape(leader_snapshot())

    assert values(families["near_failover_role"], "role") == {"leader": 1.0, "standby": 0.0, "fenced": 0.0, "starting": 0.0}
    assert {s.labels["node"] for s in families["near_failover_role"].samples} == {"val-a"}
    assert values(families["near_failover_lease_generation"]) == {None: 12.0}
    assert values(families["near_failover_healthy"]) == {None: 1.0}
    assert families["near_failover_health_problem"].samples == []
    assert values(families["near_failover_paused"]) == {None: 0.0}
    failovers = families["near_failover_failovers"]
    assert failovers.type == "counter"
    assert [(s.name, s.value) for s in failovers.samples] == [("near_failover_failovers_total", 3.0)]
    assert values(families["near_failover_last_failover_duration_seconds"]) == {None: 2.75}
    assert values(families["near_failover_lease_remaining_seconds"]) == {None: 7.5}
    assert values(families["near_failover_head_height"]) == {None: 4321.0}
    assert values(families["near_failover_pool_produced"], "kind") == {"blocks": 45.0, "chunks": 170.0, "endorsements": 600.0}
    assert values(families["near_failover_pool_expected"], "kind") == {"blocks": 50.0, "chunks": 200.0, "endorsements": 1000.0}


def test_every_family_has_help_for_an_operator() -> None:
    for name, family in scrape(leader_snapshot()).items():
        assert name.startswith("near_failover_")
        assert len(family.documentation) > 40, f"{name} has a terse HELP: {family.documentation!r}"


def test_unhealthy_fenced_member_without_lease_or_production() -> None:
    problems = ["neard RPC does not answer", "fenced: neard is masked; unmask it", "neard RPC does not answer"]
    families = scrape(leader_snapshot(
        role="fenced", leader="val-b", generation=13, healthy=False, problems=problems, head=None, paused=True,
        failovers_total=0, last_failover_seconds=None, lease_remaining=None, production=None,
    ))

    assert values(families["near_failover_role"], "role")["fenced"] == 1.0
    assert sum(values(families["near_failover_role"], "role").values()) == 1.0
    assert values(families["near_failover_lease_generation"]) == {None: 13.0}
    assert values(families["near_failover_healthy"]) == {None: 0.0}
    # One series per distinct problem, with the problem's text as the label.
    assert values(families["near_failover_health_problem"], "problem") == {
        "neard RPC does not answer": 1.0, "fenced: neard is masked; unmask it": 1.0,
    }
    assert values(families["near_failover_paused"]) == {None: 1.0}
    # Unknown values are absent, not zero: a dashboard must not read "0 s left" or "head 0".
    for name in ("near_failover_last_failover_duration_seconds", "near_failover_lease_remaining_seconds",
                 "near_failover_head_height", "near_failover_pool_produced", "near_failover_pool_expected"):
        assert families[name].samples == [], name


def test_unknown_role_and_label_escaping() -> None:
    problem = 'staged key "validator_key.json" unreadable\nsee C:\\logs ' + "x" * 300
    families = scrape(leader_snapshot(role="promoting", problems=[problem], generation=None,
                                      production={"blocks": {"produced": 1, "expected": 2}}))

    roles = values(families["near_failover_role"], "role")
    assert roles["promoting"] == 1.0 and roles["leader"] == 0.0
    (label,) = values(families["near_failover_health_problem"], "problem")
    assert label == problem[:200]  # quotes, backslashes and newlines survive the round trip
    assert families["near_failover_lease_generation"].samples == []
    assert values(families["near_failover_pool_produced"], "kind") == {"blocks": 1.0}


def test_reads_the_agent_at_scrape_time_into_its_own_registry() -> None:
    agent = SnapshotOnly(leader_snapshot())
    registry = agent_registry(agent)
    assert agent.reads == 0  # registering does not read the agent

    first = {f.name: f for f in text_string_to_metric_families(exposition(registry).decode())}
    agent.current = leader_snapshot(role="standby", leader="val-b", generation=14, lease_remaining=None)
    second = {f.name: f for f in text_string_to_metric_families(exposition(registry).decode())}

    assert agent.reads == 2
    assert values(first["near_failover_role"], "role")["leader"] == 1.0
    assert values(second["near_failover_role"], "role")["standby"] == 1.0
    assert values(second["near_failover_lease_generation"]) == {None: 14.0}
    assert "near_failover_role" not in {m.name for m in REGISTRY.collect()}


def test_a_failing_snapshot_fails_the_scrape() -> None:
    class Broken(SnapshotOnly):
        def snapshot(self) -> dict[str, Any]:
            raise RuntimeError("the agent is gone")

    with pytest.raises(RuntimeError):
        exposition(agent_registry(Broken(leader_snapshot())))
