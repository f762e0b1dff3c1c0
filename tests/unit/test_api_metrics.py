"""The agent's Prometheus exposition, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from near_failover.api.metrics import PROBLEM_CODES, agent_registry, exposition, last_move, problem_code
from near_failover.ha.snapshot import AgentSnapshot


class SnapshotOnly:
    """Only ``snapshot`` and ``history`` are read by the collector."""

    def __init__(self, snapshot: AgentSnapshot, history: list[dict[str, Any]] | None = None) -> None:
        self.node = snapshot.node
        self.current = snapshot
        self.runs = history or []
        self.reads = 0

    def snapshot(self) -> AgentSnapshot:
        self.reads += 1
        return self.current

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.runs[:limit]


def leader_snapshot(**changes: Any) -> AgentSnapshot:
    snap: dict[str, Any] = {
        "node": "val-a", "role": "leader", "leader": "val-a", "generation": 12, "healthy": True, "problems": [],
        "head": 4321, "paused": False, "failovers_total": 3, "last_failover_seconds": 2.75, "lease_remaining": 7.5,
        "updated_at": time.time(), "account_id": "pool.poolv1.near", "chain_id": "testnet", "signing": True,
        "store_up": True, "watchdog_up": True, "failsafe_active": False, "epoch": {"start": 4001, "length": 500},
        "production": {
            "blocks": {"produced": 45, "expected": 50},
            "chunks": {"produced": 170, "expected": 200},
            "endorsements": {"produced": 600, "expected": 1000},
        },
    }
    snap.update(changes)
    return AgentSnapshot.model_validate(snap)


def move_run(kind: str, outcome: str = "ok", missed: dict[str, int] | None = None, seconds: float = 4.5) -> dict[str, Any]:
    return {
        "id": 7, "kind": kind, "to": "val-b", "outcome": outcome,
        "started": "2026-01-02T03:04:00+00:00", "ended": f"2026-01-02T03:04:{seconds:05.2f}+00:00",
        "steps": [{"name": "verify", "evidence": {}}, {"name": "settle", "evidence": {"signer": "val-b", "missed": missed}}],
    }


def scrape(snapshot: AgentSnapshot, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """name -> family, from the text a Prometheus server would read."""
    text = exposition(agent_registry(SnapshotOnly(snapshot, history))).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(family: Any, label: str | None = None) -> dict[Any, float]:
    return {(s.labels.get(label) if label else None): s.value for s in family.samples}


def test_leader_snapshot_round_trips_through_the_parser() -> None:
    families = scrape(leader_snapshot())

    assert values(families["near_failover_role"], "role") == {"leader": 1.0, "standby": 0.0, "fenced": 0.0, "starting": 0.0}
    assert values(families["near_failover_lease_generation"]) == {None: 12.0}
    assert values(families["near_failover_healthy"]) == {None: 1.0}
    assert families["near_failover_health_problem"].samples == []
    assert values(families["near_failover_paused"]) == {None: 0.0}
    assert values(families["near_failover_neard_signing"]) == {None: 1.0}
    assert values(families["near_failover_lease_store_up"]) == {None: 1.0}
    assert values(families["near_failover_watchdog_up"]) == {None: 1.0}
    assert values(families["near_failover_failsafe_active"]) == {None: 0.0}
    assert families["near_failover_standby_ready"].samples == []  # a leader is no standby
    failovers = families["near_failover_automatic_failovers"]
    assert failovers.type == "counter"
    assert [(s.name, s.value) for s in failovers.samples] == [("near_failover_automatic_failovers_total", 3.0)]
    assert values(families["near_failover_lease_remaining_seconds"]) == {None: 7.5}
    (build,) = families["near_failover_build_info"].samples
    assert build.name == "near_failover_build_info" and build.value == 1.0 and build.labels["version"]
    (info,) = families["near_failover_validator_info"].samples
    assert info.name == "near_failover_validator_info"
    assert info.labels == {"node": "val-a", "account_id": "pool.poolv1.near", "chain_id": "testnet"}
    for name, family in families.items():
        if name != "near_failover_build_info":
            assert all(s.labels["node"] == "val-a" and s.labels["account_id"] == "pool.poolv1.near" for s in family.samples), name


def test_neards_own_figures_are_not_exported_again() -> None:
    """Head and the pool's produced/expected duties are neard's near_block_height_head and
    near_validators_*: a dashboard reads them there."""
    names = set(scrape(leader_snapshot()))
    assert not {n for n in names if "head" in n or "produced" in n or "expected" in n}, names


def test_every_family_has_help_for_an_operator() -> None:
    for name, family in scrape(leader_snapshot(), [move_run("switchover", missed={"blocks": 1})]).items():
        assert name.startswith("near_failover_")
        assert len(family.documentation) > 40, f"{name} has a terse HELP: {family.documentation!r}"
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples if not s.name.endswith("_created")), name


def test_unhealthy_fenced_member_without_lease() -> None:
    problems = ["neard RPC does not answer", "fenced: neard is masked; unmask it", "neard RPC does not answer"]
    families = scrape(leader_snapshot(
        role="fenced", leader="val-b", generation=13, healthy=False, problems=problems, head=None, paused=True,
        failovers_total=0, last_failover_seconds=None, lease_remaining=None, production=None, signing=False,
    ))

    assert values(families["near_failover_role"], "role")["fenced"] == 1.0
    assert sum(values(families["near_failover_role"], "role").values()) == 1.0
    assert values(families["near_failover_lease_generation"]) == {None: 13.0}
    assert values(families["near_failover_healthy"]) == {None: 0.0}
    assert values(families["near_failover_standby_ready"]) == {None: 0.0}
    # One series per distinct problem code: the label set stays bounded whatever the sentence.
    assert values(families["near_failover_health_problem"], "problem") == {"rpc_down": 1.0, "fenced": 1.0}
    assert values(families["near_failover_paused"]) == {None: 1.0}
    # Unknown values are absent, not zero: a dashboard must not read "0 s left".
    for name in ("near_failover_lease_remaining_seconds", "near_failover_last_move_duration_seconds",
                 "near_failover_last_move_missed_duties"):
        assert families[name].samples == [], name


def test_problem_labels_are_codes_never_sentences() -> None:
    sentences = [
        'no valid staged key: /etc/key.json: "validator_key.json" unreadable\nsee C:\\logs ' + "x" * 300,
        "staged key is for other.poolv1.near", "neard is syncing", "head stuck at 1234",
        "the pool's key is not loaded", "the pool produced nothing for 10+ blocks while duties were expected",
        "lease store unavailable (timeout); kept by failsafe confirmation of every member",
        "the lease store refuses the renewal: permission denied", "something nobody foresaw at height 99",
        "a validator key is loaded on a standby (pool.poolv1.near)",
    ]
    families = scrape(leader_snapshot(role="standby", healthy=False, problems=sentences))
    assert set(values(families["near_failover_health_problem"], "problem")) == {
        "staged_key_missing", "staged_key_wrong_account", "syncing", "head_stuck", "key_not_loaded",
        "production_stalled", "failsafe", "store_refuses", "other", "key_on_standby",
    }
    assert all(problem_code(s) == "other" or problem_code(s) in dict(PROBLEM_CODES) for s in sentences)


def test_standby_readiness_and_store_watchdog_failsafe() -> None:
    ready = scrape(leader_snapshot(role="standby", lease_remaining=None, signing=False))
    assert values(ready["near_failover_standby_ready"]) == {None: 1.0}
    assert values(ready["near_failover_neard_signing"]) == {None: 0.0}
    down = scrape(leader_snapshot(store_up=False, watchdog_up=False, failsafe_active=True))
    assert values(down["near_failover_lease_store_up"]) == {None: 0.0}
    assert values(down["near_failover_watchdog_up"]) == {None: 0.0}
    assert values(down["near_failover_failsafe_active"]) == {None: 1.0}


def test_last_move_from_the_journal_history() -> None:
    history = [
        move_run("self-fence"), move_run("switchover", outcome="rolled-back"),
        move_run("auto-failover", missed={"blocks": 2, "chunks": 5, "endorsements": 0}, seconds=6.25),
        move_run("switchover", missed={"blocks": 9}),
    ]
    families = scrape(leader_snapshot(), history)
    assert values(families["near_failover_last_move_duration_seconds"], "move") == {"auto-failover": 6.25}
    assert values(families["near_failover_last_move_missed_duties"], "kind") == {"blocks": 2.0, "chunks": 5.0, "endorsements": 0.0}
    (ended,) = families["near_failover_last_move_timestamp_seconds"].samples
    assert ended.value == pytest.approx(1767323046.25)
    move = last_move(history)
    assert move is not None and move.target == "val-b"
    assert last_move([move_run("failover", outcome="stopped")]) is None


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
        def snapshot(self) -> AgentSnapshot:
            raise RuntimeError("the agent is gone")

    with pytest.raises(RuntimeError):
        exposition(agent_registry(Broken(leader_snapshot())))
