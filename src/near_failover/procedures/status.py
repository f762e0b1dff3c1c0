"""The cluster at a glance: who signs, how each node is, and the pool's kickout risk this epoch.

The view is typed (pydantic), so `status --json` is its dump and the text is rendered from the
same fields; `judge` (pure) turns it into the exit code a monitor reads."""

from __future__ import annotations

import asyncio
import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from near_failover.hosts import HostError
from near_failover.inventory import Inventory
from near_failover.limits import CONFIG_JSON
from near_failover.neard.config import ConfigError, effective_tracking, memtries_enabled, parse_config_text
from near_failover.neard.rpc import RpcError
from near_failover.procedures.chain_view import KICKOUT_THRESHOLDS, REWARD_FULL, REWARD_MIN, Production, production_of
from near_failover.procedures.move import _restart_pending
from near_failover.procedures.nodes import STATUS_TIMEOUT, NodeAccess
from near_failover.procedures.plan import MoveSettings
from near_failover.procedures.startup import running_memtries

# Exit codes of `status`, for monitors (README "status").
EXIT_HEALTHY = 0
EXIT_CRITICAL = 1
EXIT_DEGRADED = 3

# Seconds without a new block after which `status` stops waiting for its rate window.
STALL = 5.0


class Role(str, Enum):
    SIGNER = "signer"
    STANDBY = "standby"
    FENCED = "fenced"
    DOWN = "down"
    WRONG_KEY = "wrong key"


class NodeStatus(BaseModel):
    """One node as status sees it; ``why`` says why it is down, fenced or not ready."""

    name: str
    host: str
    rpc: str
    reachable: bool = False
    key_loaded: str | None = None
    public_key: str | None = None
    head: int | None = None
    syncing: bool | None = None
    version: str | None = None
    chain_id: str | None = None
    tracking: Any = None
    memtries: bool | None = None
    tracking_in_file: Any = None
    key_in_home: bool | None = None
    key_staged: bool | None = None
    host_error: str | None = None
    role: Role = Role.DOWN
    standby_mode: str
    ready: bool | None = None
    why: list[str] = Field(default_factory=list)
    masked: bool | None = None
    neard_running: bool | None = None
    restart_pending: list[str] = Field(default_factory=list)
    rejoin: str | None = None
    lag: int | None = None


class KindProduction(BaseModel):
    produced: int
    expected: int
    percent: float | None
    kickout_threshold: int
    at_risk: bool
    projected_percent: float | None = None
    projected_at_risk: bool = False


class ProductionView(BaseModel):
    """This epoch's counters and, when two samples ``rate_blocks`` apart exist, each ratio
    projected linearly to the epoch's end at the rate of that window."""

    height: int
    epoch_start_height: int
    epoch_length: int | None = None
    epoch_progress_percent: float | None = None
    rate_blocks: int | None = None
    blocks: KindProduction
    chunks: KindProduction
    endorsements: KindProduction
    online_percent: float | None
    reward_thresholds: dict[str, int] = Field(default_factory=lambda: {"zero_below": REWARD_MIN, "full_from": REWARD_FULL})
    producing: bool | None = None

    def kinds(self) -> dict[str, KindProduction]:
        return {"blocks": self.blocks, "chunks": self.chunks, "endorsements": self.endorsements}


class AgentStatus(BaseModel):
    name: str
    role: str
    healthy: bool
    problems: list[str] = Field(default_factory=list)


class LeaderStatus(BaseModel):
    member: str
    generation: int
    ttl_left: float | None = None


class LeaseStatus(BaseModel):
    """The automatic mode's state; ``error`` when the store could not be read."""

    store: str
    error: str | None = None
    leader: LeaderStatus | None = None
    paused: bool | None = None
    members: list[AgentStatus] = Field(default_factory=list)
    missing_agents: list[str] = Field(default_factory=list)


class Verdict(BaseModel):
    exit_code: int
    problems: list[str] = Field(default_factory=list)


class ClusterStatus(BaseModel):
    validator: str
    chain_id: str
    signers: list[str]
    double_signer_risk: bool
    keys_left_in_home: list[str]
    nodes: list[NodeStatus]
    production: ProductionView | None
    lease: LeaseStatus | None = None
    verdict: Verdict | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


def standby_problems(node: NodeStatus, pool: str, max_lag: int) -> list[str]:
    """Why a standby could not take the key now (empty: ready), as a move's preflight refuses."""
    problems = []
    if node.syncing:
        problems.append("syncing")
    if node.lag is not None and node.lag > max_lag:
        problems.append(f"{node.lag} blocks behind")
    shadow = {"ShadowValidator": pool}
    if node.standby_mode == "hot-swap":
        if node.tracking != shadow:
            problems.append(f"tracks {_shown(node.tracking)}, a hot swap needs ShadowValidator {pool}")
        if node.memtries is False:
            problems.append("memtries off")
    elif node.tracking not in ("AllShards", shadow):
        problems.append(f"tracks {_shown(node.tracking)}, an rpc standby needs AllShards")
    if node.key_staged is False:
        problems.append("no staged key")
    if node.key_in_home:
        problems.append("the key is in its home")
    return problems


def _shown(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


async def _down_reason(node: NodeAccess) -> tuple[list[str], bool | None]:
    """Why a node's RPC does not answer: its RPC error, and whether its control runs neard."""
    why = []
    try:
        await asyncio.wait_for(node.rpc.status(), STATUS_TIMEOUT + 0.5)
    except TimeoutError:
        why.append(f"RPC {node.spec.rpc} does not answer within {STATUS_TIMEOUT + 0.5:g}s")
    except RpcError as exc:
        why.append(str(exc))
    try:
        running = await asyncio.wait_for(node.control.is_active(), STATUS_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any control failure is a reason shown, not a crash
        why.append(f"its control cannot tell whether neard runs ({type(exc).__name__}: {exc})")
        return why, None
    why.insert(0, "neard is running" if running else "neard is not running")
    return why, running


async def node_view(node: NodeAccess, pool: str) -> NodeStatus:
    view = NodeStatus(name=node.name, host=str(node.spec.host), rpc=node.spec.rpc, standby_mode=node.spec.standby)
    status = await node.status_or_none()
    view.reachable = status is not None
    if status is not None:
        view.key_loaded = status.validator_account_id
        view.public_key = status.validator_public_key
        view.head = status.sync_info.latest_block_height
        view.syncing = status.sync_info.syncing
        view.version = status.version.version if status.version else None
        view.chain_id = status.chain_id
        try:
            view.tracking = (await node.rpc.client_config()).get("tracked_shards_config")
        except RpcError:
            view.tracking = None
    else:
        view.why, view.neard_running = await _down_reason(node)
    try:
        view.masked = await node.control.is_masked()
    except Exception:  # noqa: BLE001 - a control that cannot tell leaves "masked" unknown
        view.masked = None
    try:
        cfg = parse_config_text(await node.host.read_text(node.spec.config_path, CONFIG_JSON), source=f"{node.name}:{node.spec.config_path}")
        view.memtries = memtries_enabled(cfg)
        view.tracking_in_file = effective_tracking(cfg).to_json()
        view.key_in_home = await node.key_in_home()
        view.key_staged = await node.host.exists(node.spec.key_store)
        if status is not None:
            view.restart_pending = _restart_pending(view.tracking_in_file, view.tracking, view.memtries, await running_memtries(node))
    except (HostError, ConfigError) as exc:
        view.host_error = str(exc)
    loaded = view.key_loaded
    if loaded == pool:
        view.role = Role.SIGNER
    elif loaded:
        view.role = Role.WRONG_KEY
    elif view.masked:
        view.role = Role.FENCED
        view.why = ["masked by a fence" + ("" if view.key_in_home else ", the key is out of its home")] + (["neard is not running"] if not view.reachable else [])
    elif not view.reachable:
        view.role = Role.DOWN
    else:
        view.role = Role.STANDBY
    return view


async def _production(node: NodeAccess, pool: str) -> Production | None:
    status = await node.status_or_none()
    if status is None:
        return None
    try:
        return production_of(await node.rpc.validators(), pool, status.sync_info.latest_block_height)
    except RpcError:
        return None


async def cluster_status(
    inventory: Inventory, nodes: dict[str, NodeAccess], rate_blocks: int = 0, earlier: Production | None = None
) -> ClusterStatus:
    """The cluster now. With ``rate_blocks``, the pool's counters are sampled again once the
    head has moved that many blocks (bounded), and each ratio is projected to the epoch's end;
    ``earlier`` is a sample a caller already holds (``status --watch``)."""
    pool = inventory.validator.account_id
    views = list(await asyncio.gather(*(node_view(n, pool) for n in nodes.values())))
    heads = [v.head for v in views if v.head is not None]
    top = max(heads) if heads else None
    settings = MoveSettings()
    for v in views:
        v.lag = (top - v.head) if top is not None and v.head is not None else None
        if v.role == Role.STANDBY:
            v.why = standby_problems(v, pool, settings.max_lag_blocks)
            v.ready = not v.why
        if v.role == Role.FENCED:
            source = inventory.source
            v.rejoin = f"near-failover rejoin -c {source if source else 'INVENTORY'} --node {v.name}"
    signers = [v.name for v in views if v.role == Role.SIGNER]
    # A key file in the home of a node that does not sign while another does: it signs beside
    # the signer as soon as that neard restarts or is sent SIGHUP (an old primary fenced only
    # by chain silence, a restored backup).
    keys_left = [v.name for v in views if signers and v.key_in_home and v.name not in signers]
    production = None
    for v in sorted(views, key=lambda v: -(v.head or -1)):
        if not v.reachable:
            continue
        node = nodes[v.name]
        now = await _production(node, pool)
        if now is None:
            continue
        epoch_length = None
        try:
            epoch_length = (await node.rpc.client_config()).epoch_length
        except RpcError:
            pass
        if rate_blocks and earlier is None:
            earlier, now = now, await _sample_later(node, pool, now, rate_blocks)
        production = production_view(now, epoch_length, earlier if earlier is not None and earlier.epoch_start_height == now.epoch_start_height else None)
        break
    return ClusterStatus(
        validator=pool,
        chain_id=inventory.validator.chain_id,
        signers=signers,
        double_signer_risk=len(signers) > 1,
        keys_left_in_home=keys_left,
        nodes=views,
        production=production,
    )


async def _sample_later(node: NodeAccess, pool: str, first: Production, blocks: int) -> Production:
    """The counters again once the head is ``blocks`` past ``first``; a head that stands still
    for ``STALL`` seconds ends the wait (a stalled chain is shown, not waited for)."""
    latest, moved = first, time.monotonic()
    while time.monotonic() - moved < STALL:
        await asyncio.sleep(0.2)
        sample = await _production(node, pool)
        if sample is None or sample.height <= latest.height:
            continue
        latest, moved = sample, time.monotonic()
        if sample.height >= first.height + blocks:
            break
    return latest


def production_view(now: Production, epoch_length: int | None, earlier: Production | None) -> ProductionView:
    """Pure: the counters, the epoch's progress and, given an earlier sample of the same epoch,
    each ratio projected to the epoch's end at the rate between the two samples."""
    pct = now.percentages()
    kinds: dict[str, KindProduction] = {}
    epoch_end = now.epoch_start_height + epoch_length - 1 if epoch_length else None
    span = now.height - earlier.height if earlier is not None else 0
    producing: bool | None = None
    for kind, threshold in KICKOUT_THRESHOLDS.items():
        produced, expected = getattr(now, f"{kind}_produced"), getattr(now, f"{kind}_expected")
        p = pct[kind]
        k = KindProduction(produced=produced, expected=expected, percent=round(p, 2) if p is not None else None,
                           kickout_threshold=threshold, at_risk=p is not None and p < threshold)
        if earlier is not None and span > 0 and epoch_end is not None:
            d_produced = produced - getattr(earlier, f"{kind}_produced")
            d_expected = expected - getattr(earlier, f"{kind}_expected")
            left = max(0, epoch_end - now.height)
            final_expected = expected + d_expected * left / span
            if final_expected > 0:
                projected = 100.0 * (produced + d_produced * left / span) / final_expected
                k.projected_percent = round(projected, 2)
                k.projected_at_risk = projected < threshold
            if d_expected > 0:
                producing = bool(producing) or d_produced > 0
        kinds[kind] = k
    online = [p for p in pct.values() if p is not None]
    ratio = sum(online) / len(online) if online else None
    progress = None
    if epoch_length:
        progress = round(100.0 * min(epoch_length, now.height - now.epoch_start_height + 1) / epoch_length, 1)
    return ProductionView(
        height=now.height,
        epoch_start_height=now.epoch_start_height,
        epoch_length=epoch_length,
        epoch_progress_percent=progress,
        rate_blocks=span if earlier is not None else None,
        blocks=kinds["blocks"],
        chunks=kinds["chunks"],
        endorsements=kinds["endorsements"],
        online_percent=round(ratio, 2) if ratio is not None else None,
        producing=producing,
    )


def judge(view: ClusterStatus) -> Verdict:
    """Pure: the exit code a monitor reads. 1: nobody or several sign, the signer does not
    produce, the pool is projected below a kickout threshold, or no node answers; 3: signing but
    degraded (no ready standby, an agent missing or unhealthy, the lease store unreadable,
    decisions paused); 0 otherwise."""
    critical: list[str] = []
    degraded: list[str] = []
    if not any(n.reachable for n in view.nodes):
        critical.append("no node answers")
    if not view.signers:
        critical.append("no node signs for the pool")
    elif len(view.signers) > 1:
        critical.append(f"several nodes sign: {', '.join(view.signers)}")
    p = view.production
    if p is not None:
        if view.signers and p.producing is False:
            critical.append(f"{view.signers[0]} has the key loaded but the chain shows no production in the last {p.rate_blocks} blocks")
        for kind, k in p.kinds().items():
            if k.projected_at_risk:
                critical.append(f"{kind} projected to {k.projected_percent:.1f}% at the epoch's end, below the kickout threshold {k.kickout_threshold}%")
            elif k.at_risk and k.projected_percent is None:
                critical.append(f"{kind} at {k.percent:.1f}%, below the kickout threshold {k.kickout_threshold}%")
    for name in view.keys_left_in_home:
        critical.append(f"{name} has the pool's key in its home")
    standbys = [n for n in view.nodes if n.role == Role.STANDBY]
    if not any(n.ready for n in standbys):
        degraded.append("no ready standby")
    lease = view.lease
    if lease is not None:
        if lease.error is not None:
            degraded.append(f"the lease store cannot be read: {lease.error}")
        else:
            if lease.missing_agents:
                degraded.append(f"agents not running: {', '.join(lease.missing_agents)}")
            degraded += [f"agent {m.name} unhealthy: {'; '.join(m.problems) or 'no reason given'}" for m in lease.members if not m.healthy and m.role != "fenced"]
            if lease.paused:
                degraded.append("automatic decisions paused")
    if critical:
        return Verdict(exit_code=EXIT_CRITICAL, problems=critical + degraded)
    return Verdict(exit_code=EXIT_DEGRADED if degraded else EXIT_HEALTHY, problems=degraded)
