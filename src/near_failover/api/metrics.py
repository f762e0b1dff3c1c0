"""Prometheus exposition of one agent, read from ``agent.snapshot()`` at scrape time.

A custom collector rather than gauges updated by the agent loop: the scrape then shows exactly what
the API's /status shows at that instant, and a hung loop cannot leave stale "healthy" values
behind (the snapshot's own fields say what is known). Each app gets its own CollectorRegistry so
that two agents in one process (tests) never mix their series, and nothing lands in the global
registry by import.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from near_failover.api.agent_view import AgentView

ROLES = ("leader", "standby", "fenced", "starting")
PRODUCTION_KINDS = ("blocks", "chunks", "endorsements")
# What generate_latest writes: the classic text format. (prometheus_client's CONTENT_TYPE_LATEST
# now says version=1.0.0, which older Prometheus servers do not expect.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A problem is a sentence; very long ones (a nested exception) are cut so the label stays usable.
MAX_PROBLEM_LABEL = 200


def _number(value: Any) -> float | None:
    """A finite float, or None for absent or non-numeric values (omitted rather than guessed)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def snapshot_metrics(snapshot: Mapping[str, Any]) -> list[Metric]:
    """The metric families for one snapshot; pure, so it is tested without an agent."""
    node = str(snapshot.get("node") or "")
    current_role = str(snapshot.get("role") or "starting")

    role = GaugeMetricFamily(
        "near_failover_role",
        "This agent's role: 1 for the role it has now (leader = its neard holds the pool's key "
        "under the lease; standby = ready to take over; fenced = it stopped its neard and waits "
        "for an operator; starting = not decided yet), 0 for the others.",
        labels=["node", "role"],
    )
    for name in (*ROLES, *(() if current_role in ROLES else (current_role,))):
        role.add_metric([node, name], 1.0 if name == current_role else 0.0)

    generation = GaugeMetricFamily(
        "near_failover_lease_generation",
        "Fencing generation of the lease this agent knows (its own when leader, else the "
        "leader's). It only grows; a change means the validator moved to another node.",
    )
    if (value := _number(snapshot.get("generation"))) is not None:
        generation.add_metric([], value)

    healthy = GaugeMetricFamily(
        "near_failover_healthy",
        "1 when this node is healthy for its role (a leader's neard signs and advances, a "
        "standby is synced with its key staged); 0 otherwise, see near_failover_health_problem.",
    )
    healthy.add_metric([], 1.0 if snapshot.get("healthy") else 0.0)

    problem = GaugeMetricFamily(
        "near_failover_health_problem",
        "1 for each health check this node fails now, the label says which and why; no series "
        "when every check passes.",
        labels=["problem"],
    )
    for text in dict.fromkeys(str(p)[:MAX_PROBLEM_LABEL] for p in snapshot.get("problems") or []):
        problem.add_metric([text], 1.0)

    paused = GaugeMetricFamily(
        "near_failover_paused",
        "1 while automatic decisions are paused (near-failover pause): no standby promotes on "
        "its own, leaders keep renewing.",
    )
    paused.add_metric([], 1.0 if snapshot.get("paused") else 0.0)

    failovers = CounterMetricFamily(
        "near_failover_failovers",
        "Automatic failovers this agent completed (it promoted its node to signer) since it started.",
    )
    failovers.add_metric([], _number(snapshot.get("failovers_total")) or 0.0)

    last_failover = GaugeMetricFamily(
        "near_failover_last_failover_duration_seconds",
        "Seconds the last automatic failover of this agent took, from taking the lease to its "
        "neard verified as signing; absent until one happened.",
    )
    if (value := _number(snapshot.get("last_failover_seconds"))) is not None:
        last_failover.add_metric([], value)

    lease_remaining = GaugeMetricFamily(
        "near_failover_lease_remaining_seconds",
        "Seconds before the leader's lease may expire on the store, by this leader's own "
        "conservative estimate; it fences itself well before 0. Absent on non-leaders.",
    )
    if (value := _number(snapshot.get("lease_remaining"))) is not None:
        lease_remaining.add_metric([], value)

    head = GaugeMetricFamily(
        "near_failover_head_height",
        "Latest block height this node's neard reported; absent when its RPC does not answer.",
    )
    if (value := _number(snapshot.get("head"))) is not None:
        head.add_metric([], value)

    produced = GaugeMetricFamily(
        "near_failover_pool_produced",
        "The pool's produced duties this epoch as the chain counts them (kind = blocks, chunks, "
        "endorsements); compare with near_failover_pool_expected against the kickout thresholds "
        "(80% blocks, 80% chunks, 70% endorsements).",
        labels=["kind"],
    )
    expected = GaugeMetricFamily(
        "near_failover_pool_expected",
        "The pool's expected duties this epoch (kind = blocks, chunks, endorsements); absent "
        "until this node's neard answered the validators RPC.",
        labels=["kind"],
    )
    production = snapshot.get("production") or {}
    if isinstance(production, Mapping):
        for kind in PRODUCTION_KINDS:
            counts = production.get(kind)
            if not isinstance(counts, Mapping):
                continue
            if (value := _number(counts.get("produced"))) is not None:
                produced.add_metric([kind], value)
            if (value := _number(counts.get("expected"))) is not None:
                expected.add_metric([kind], value)

    return [role, generation, healthy, problem, paused, failovers, last_failover, lease_remaining, head, produced, expected]


class AgentCollector(Collector):
    """Reads the agent at scrape time. A failing snapshot fails the scrape (Prometheus sets up=0)."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from snapshot_metrics(self._snapshot())

    def describe(self) -> Iterator[Metric]:
        # Without describe(), register() would call collect() once, i.e. read the agent early.
        return iter(snapshot_metrics({}))


def agent_registry(agent: AgentView) -> CollectorRegistry:
    """A registry of its own for one agent (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent.snapshot))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text format 0.0.4 of ``registry``."""
    return generate_latest(registry)
