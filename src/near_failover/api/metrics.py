"""Prometheus exposition of one agent, read from ``agent.snapshot()`` and its journal at scrape time.

A custom collector rather than gauges updated by the agent loop: the scrape then shows exactly what
the API's /status shows at that instant, and a hung loop cannot leave stale "healthy" values
behind (the snapshot's own fields say what is known). Each app gets its own CollectorRegistry so
that two agents in one process (tests) never mix their series, and nothing lands in the global
registry by import.

Naming follows Prometheus' rules (base units, ``_seconds``, ``_total`` for counters, ``_info`` for
constant labels) and labels are bounded: a problem is a code, never its sentence. Every family
about the validator carries ``node`` and ``account_id``; ``chain_id`` is on
``near_failover_validator_info`` (join on it). What neard exports itself (head height, the pool's
produced and expected duties, ...) is not exported again: dashboards and rules read neard's own
``near_*`` families.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from near_failover import __version__
from near_failover.api.agent_view import AgentView
from near_failover.ha.snapshot import AgentSnapshot

log = structlog.get_logger(__name__)

ROLES = ("leader", "standby", "fenced", "starting")
DUTY_KINDS = ("blocks", "chunks", "endorsements")
MOVE_KINDS = ("switchover", "failover", "auto-failover")
# What generate_latest writes: the classic text format. (prometheus_client's CONTENT_TYPE_LATEST
# now says version=1.0.0, which older Prometheus servers do not expect.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The agent's health problems are sentences for people; the metric carries their code. Checked
# in order, first match wins; anything new lands in "other" until it gets a code here.
PROBLEM_CODES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (code, re.compile(pattern)) for code, pattern in (
        ("no_observation", r"^no observation yet"),
        ("fence_failed", r"the fence FAILED"),
        ("fenced", r"^fenced: "),
        ("failsafe", r"kept by failsafe"),
        ("store_refuses", r"^the lease store refuses"),
        ("rpc_down", r"^neard RPC does not answer"),
        ("neard_not_running", r"^neard is not running"),
        ("syncing", r"^neard is syncing"),
        ("head_stuck", r"^head stuck"),
        ("key_not_loaded", r"key is not loaded"),
        ("production_stalled", r"produced nothing"),
        ("key_on_standby", r"validator key is loaded on a standby"),
        ("staged_key_missing", r"^no valid staged key"),
        ("staged_key_wrong_account", r"^staged key is for"),
        ("switchover_in_progress", r"^taking over from"),
        ("watchdog", r"watchdog"),
    )
)


# Families of one sample per agent: (name, help, snapshot field, value when the field is absent).
# A bool default makes the family a 0/1 flag; None leaves the sample out when the value is unknown.
ONE_SAMPLE_GAUGES: tuple[tuple[str, str, str, bool | None], ...] = (
    ("near_failover_neard_signing",
     "1 when this node's neard has the pool's key loaded (its status shows the pool as its "
     "validator), else 0. Summed over the pool's nodes: 0 means nobody signs, 2 or more is a "
     "double-sign hazard.", "signing", False),
    ("near_failover_lease_generation",
     "Fencing generation of the lease this agent knows (its own when leader, else the "
     "leader's). It only grows; a change means the validator moved to another node.", "generation", None),
    ("near_failover_healthy",
     "1 when this node is healthy for its role (a leader's neard signs and advances, a "
     "standby is synced with its key staged); 0 otherwise, see near_failover_health_problem.", "healthy", False),
    ("near_failover_paused",
     "1 while automatic decisions are paused (near-failover pause): no standby promotes on "
     "its own, leaders keep renewing.", "paused", False),
    ("near_failover_lease_store_up",
     "1 when the lease store (etcd or sqlite) answered this agent's last request, 0 when it did "
     "not or refused it: no promotion is possible while it is 0.", "store_up", True),
    ("near_failover_watchdog_up",
     "1 while this agent's watchdog process runs and watches (it fences neard if the agent "
     "hangs); a leader whose watchdog is down steps down.", "watchdog_up", False),
    ("near_failover_failsafe_active",
     "1 while this leader keeps its lease only through every other agent's direct "
     "confirmation because the lease store does not answer (Patroni's failsafe).", "failsafe_active", False),
    ("near_failover_lease_remaining_seconds",
     "Seconds before the leader's lease may expire on the store, by this leader's own "
     "conservative estimate; it fences itself well before 0. Absent on non-leaders.", "lease_remaining", None),
)


def problem_code(problem: str) -> str:
    """The bounded label value for one problem sentence."""
    return next((code for code, pattern in PROBLEM_CODES if pattern.search(problem)), "other")


def _number(value: Any) -> float | None:
    """A float, or None for absent or non-numeric values (omitted rather than guessed)."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


@dataclass(frozen=True)
class LastMove:
    """The newest finished move (switchover, failover, auto-failover) that succeeded, from the
    journal: how long it took and what the pool missed meanwhile (the settle step's evidence)."""

    kind: str
    target: str | None
    ended_at: float
    seconds: float
    missed: Mapping[str, int] | None


def last_move(history: Sequence[Mapping[str, Any]]) -> LastMove | None:
    """Pure: the first successful move in ``history`` (newest first, as ``Journal.runs`` gives)."""
    for run in history:
        if run.get("kind") not in MOVE_KINDS or run.get("outcome") != "ok" or not run.get("ended"):
            continue
        started, ended = datetime.fromisoformat(run["started"]), datetime.fromisoformat(run["ended"])
        settle = next((s for s in run.get("steps") or [] if s.get("name") == "settle"), None)
        missed = (settle or {}).get("evidence", {}).get("missed")
        return LastMove(
            kind=str(run["kind"]), target=run.get("to"), ended_at=ended.timestamp(),
            seconds=max(0.0, (ended - started).total_seconds()),
            missed={k: int(v) for k, v in missed.items() if k in DUTY_KINDS} if isinstance(missed, Mapping) else None,
        )
    return None


class _Families:
    """Families that share the ``node`` and ``account_id`` labels of one agent."""

    def __init__(self, node: str, account_id: str) -> None:
        self.base = [node, account_id]
        self.made: list[Metric] = []

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=["node", "account_id", *labels])
        self.made.append(family)
        return family

    def add(self, family: GaugeMetricFamily | CounterMetricFamily, value: Any, *labels: str) -> None:
        """Adds a sample unless ``value`` is unknown (absent, not zero: no "0 s left" on a graph)."""
        if (number := _number(value)) is not None:
            family.add_metric([*self.base, *labels], number)


def build_info() -> InfoMetricFamily:
    info = InfoMetricFamily(
        "near_failover_build",
        "The near-failover version this agent runs and the Python that runs it (value always 1).",
        labels=["version", "python_version"],
    )
    info.add_metric([__version__, platform.python_version()], {})
    return info


def snapshot_metrics(snapshot: AgentSnapshot | None, history: Sequence[Mapping[str, Any]] = ()) -> list[Metric]:
    """The metric families for one snapshot (None: the families alone, for describe()) and the
    journal's history; pure, tested without an agent."""
    node = snapshot.node if snapshot else ""
    account = snapshot.account_id if snapshot else ""
    f = _Families(node, account)
    current_role = str(snapshot.role) if snapshot else "starting"

    validator = InfoMetricFamily(
        "near_failover_validator",
        "Which pool this agent serves and on which chain (value always 1): join other families on "
        "node and account_id to get chain_id.",
        labels=["node", "account_id", "chain_id"],
    )
    validator.add_metric([node, account, snapshot.chain_id if snapshot else ""], {})
    f.made.append(validator)

    role = f.gauge(
        "near_failover_role",
        "This agent's role: 1 for the role it has now (leader = its neard holds the pool's key "
        "under the lease; standby = ready to take over; fenced = it stopped its neard and waits "
        "for an operator; starting = not decided yet), 0 for the others.",
        ["role"],
    )
    for name in (*ROLES, *(() if current_role in ROLES else (current_role,))):
        f.add(role, name == current_role, name)

    for name, doc, key, default in ONE_SAMPLE_GAUGES:
        value = getattr(snapshot, key) if snapshot else default
        f.add(f.gauge(name, doc), bool(value) if isinstance(default, bool) else value)
    problem = f.gauge(
        "near_failover_health_problem",
        "1 for each health check this node fails now, by problem code (rpc_down, syncing, "
        "head_stuck, key_not_loaded, staged_key_missing, ...); the sentences are in /status. No "
        "series when every check passes.",
        ["problem"],
    )
    for code in dict.fromkeys(problem_code(p) for p in (snapshot.problems if snapshot else [])):
        f.add(problem, 1, code)
    standby_ready = f.gauge(
        "near_failover_standby_ready",
        "On a node that is not the leader: 1 when it could take over now (a standby, healthy, "
        "synced, key staged), 0 when not (see near_failover_health_problem). Absent on the leader.",
    )
    if current_role != "leader":
        f.add(standby_ready, current_role == "standby" and snapshot is not None and snapshot.healthy)
    failovers = CounterMetricFamily(
        "near_failover_automatic_failovers",
        "Automatic failovers this agent completed (it promoted its node to signer) since it started.",
        labels=["node", "account_id"],
    )
    f.add(failovers, snapshot.failovers_total if snapshot else 0)
    f.made.append(failovers)

    move = last_move(history)
    duration = f.gauge(
        "near_failover_last_move_duration_seconds",
        "Seconds the last successful move of the pool in this node's journal took (switchover, "
        "failover or automatic failover, by the move label), from its start to the new signer verified.",
        ["move"],
    )
    ended = f.gauge(
        "near_failover_last_move_timestamp_seconds",
        "Unix time the last successful move in this node's journal ended (move label as above).",
        ["move"],
    )
    missed = f.gauge(
        "near_failover_last_move_missed_duties",
        "Duties the pool missed during the last successful move, by kind (blocks, chunks, "
        "endorsements), as the chain counted them before and after; absent when the move crossed "
        "an epoch boundary.",
        ["kind"],
    )
    if move is not None:
        f.add(duration, move.seconds, move.kind)
        f.add(ended, move.ended_at, move.kind)
        for kind, count in (move.missed or {}).items():
            f.add(missed, count, kind)
    return [build_info(), *f.made]


class AgentCollector(Collector):
    """Reads the agent at scrape time. A failing snapshot fails the scrape (Prometheus sets up=0)."""

    def __init__(self, snapshot: Callable[[], AgentSnapshot], history: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
        self._snapshot = snapshot
        self._history = history

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        try:
            history = self._history()
        except Exception as exc:  # noqa: BLE001 - an unreadable journal hides the last move, not the rest
            log.warning("metrics: the journal could not be read", error=str(exc))
            history = ()
        yield from snapshot_metrics(snapshot, history)

    def describe(self) -> Iterator[Metric]:
        # Without describe(), register() would call collect() once, i.e. read the agent early.
        return iter(snapshot_metrics(None))


def agent_registry(agent: AgentView) -> CollectorRegistry:
    """A registry of its own for one agent (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent.snapshot, lambda: agent.history(20)))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text format 0.0.4 of ``registry``."""
    return generate_latest(registry)
