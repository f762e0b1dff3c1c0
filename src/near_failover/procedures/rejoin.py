"""Rejoin: make a fenced or former primary a ready standby again, in its inventory mode.

After a move the old primary stays stopped, masked and without its key (fence.py). Bringing it
back took four manual steps (unmask, `config standby`, start, wait for sync); this is them as one
journaled run, with the fence code's own key parking and the readiness rules of
`check --role <mode>-standby`, so the upgrade cycle (A→B, upgrade A, `rejoin A`, B→A) is a
sequence of commands.

It never gives a node the key: it only takes one away (a key left in the home of a node while
another signs is parked first, as a fence does) and never changes a node's mode on its own. An
Option 1 node that has validated tracks only the pool's shards since its promotion and cannot
track all shards again (guide, Option 1): with ``standby = "rpc"`` it is refused, naming the fix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from near_failover.control.base import ControlError
from near_failover.hosts import HostError
from near_failover.inventory import Inventory, StandbyMode
from near_failover.limits import CONFIG_JSON, KEY_FILE
from near_failover.neard.check import Finding, HomeFacts, Severity, check_home, check_running
from near_failover.neard.config import (
    ConfigError,
    Role,
    Tracking,
    as_hot_swap_standby,
    as_rpc_standby,
    effective_tracking,
    parse_config_text,
)
from near_failover.neard.keys import KeyFileError, parse_key_file
from near_failover.neard.rpc import RpcError
from near_failover.procedures.activate import edit_home_config, signal_when_started
from near_failover.procedures.errors import Refused, StepFailed
from near_failover.procedures.fence import fence_reachable, park_key
from near_failover.procedures.journal import Journal
from near_failover.procedures.nodes import NodeAccess
from near_failover.procedures.plan import MoveSettings
from near_failover.procedures.startup import Phase as StartPhase
from near_failover.procedures.startup import running_memtries, wait_ready_after_restart

JOURNAL_KIND = "rejoin"


@dataclass(frozen=True)
class RejoinView:
    """What preflight saw, the input of every rejoin decision."""

    node: str
    mode: StandbyMode
    pool: str
    signs: bool  # the node's own neard has the pool's key loaded
    key_in_home: bool
    other_signers: tuple[str, ...]
    file_tracking: Tracking
    running_tracking: Any  # client_config's tracked_shards_config; None when neard is down


@dataclass(frozen=True)
class RejoinPlan:
    """What the run must do first: fence the node (stop with its key), or only park the key;
    then, once no key is left in its home, whether it must stop there (and why)."""

    fence: bool
    park: bool
    refusal: str | None = None


def plan_rejoin(view: RejoinView, inventory_path: str) -> RejoinPlan:
    """Pure: refuse (Refused) or say what precedes the standby edit. A node that signs or holds the
    key while nobody else signs is the primary: making it a standby would stop the pool, so it is a
    move, not a rejoin. An Option 1 node that validated cannot go back to AllShards: that refusal
    comes after the key is parked, since a key left in its home is a risk whatever its mode."""
    others = ", ".join(view.other_signers)
    if (view.signs or view.key_in_home) and not view.other_signers:
        what = "signs for" if view.signs else "has the key of"
        raise Refused(
            f"{view.node} {what} {view.pool} and no other node signs: it is the primary, and a rejoin as a standby "
            f"would leave the pool without a signer; move first (`near-failover switchover -c {inventory_path} --to OTHER`)"
        )
    refusal = None
    if view.mode == StandbyMode.RPC and "NoShards" in (view.file_tracking.mode, view.running_tracking):
        refusal = (
            f"{view.node} has validated as an Option 1 node (it tracks NoShards): it cannot go back to tracking all "
            f'shards (guide, Option 1). Set standby = "hot-swap" for {view.node} in {inventory_path} and run rejoin again'
        )
    if len(view.other_signers) > 1:
        raise Refused(f"{others} all sign for {view.pool}: fence all but one first")
    return RejoinPlan(fence=view.signs, park=view.key_in_home and not view.signs, refusal=refusal)


def standby_edit(mode: StandbyMode, pool: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The guide's standby settings for ``mode``: the same edits as `config standby`."""
    if mode == StandbyMode.RPC:
        return as_rpc_standby
    return lambda cfg: as_hot_swap_standby(cfg, pool)


def standby_role(mode: StandbyMode) -> Role:
    return Role.RPC_STANDBY if mode == StandbyMode.RPC else Role.HOT_SWAP_STANDBY


@dataclass
class RejoinResult:
    node: str
    mode: StandbyMode
    ready: bool
    outcome: str  # "ready" | "not-ready" | "refused"
    message: str = ""
    run_id: int | None = None
    findings: list[Finding] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # neard's (re)start, when there was one: until its RPC answered (store open, memtries
    # loaded), and until it was synced as well (the drill's figures).
    answered_after: float | None = None
    ready_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "mode": self.mode,
            "ready": self.ready,
            "outcome": self.outcome,
            "message": self.message,
            "run_id": self.run_id,
            "findings": [f.to_json() for f in self.findings],
            "seconds": self.seconds,
            "notes": self.notes,
            "answered_after": self.answered_after,
            "ready_after": self.ready_after,
        }


class Rejoin:
    """One rejoin of ``node`` as a standby in its inventory mode, journaled as a run."""

    def __init__(self, inventory: Inventory, nodes: dict[str, NodeAccess], node: str, journal: Journal,
                 timeout: float | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.inv = inventory
        self.nodes = nodes
        self.node = nodes[inventory.node(node).name]
        self.mode: StandbyMode = self.node.spec.standby
        self.pool = inventory.validator.account_id
        self.journal = journal
        self.settings, _ = MoveSettings.for_move(inventory, self.node.name, self.node.name)
        # Start, memtrie load and catch-up: the node's own start-up deadline unless given.
        self.timeout = timeout if timeout is not None else self.settings.activate_rpc
        self.say = progress or (lambda _msg: None)
        self.inventory_path = str(inventory.source) if inventory.source else "inventory.toml"
        self.config_changed = False
        self.notes: list[str] = []  # what the operator should know, shown with the result

    async def run(self) -> RejoinResult:
        result = RejoinResult(self.node.name, self.mode, ready=False, outcome="refused")
        result.run_id = run_id = self.journal.start_run(self.pool, JOURNAL_KIND, self.mode, self.node.name)
        try:
            plan = await self._step(result, "preflight", self._preflight)
            if plan.fence or plan.park:
                await self._step(result, "park", lambda: self._park(plan))
            if plan.refusal:
                raise Refused(plan.refusal)
            await self._step(result, "config", self._config)
            started = await self._step(result, "start", self._start)
            if started["action"] != "none":
                result.ready_after = started["ready_after"]
                result.answered_after = round(started["ready_after"] - started["phases"].get(StartPhase.SYNCING.value, 0.0), 3)
            result.findings = await self._step(result, "readiness", self._readiness)
            errors = [f for f in result.findings if f.severity is Severity.ERROR]
            result.ready = not errors
            result.outcome = "ready" if result.ready else "not-ready"
            result.message = (
                f"{self.node.name} is a ready {self.mode} standby" if result.ready else "; ".join(f.what for f in errors)
            )
        except Refused as exc:
            result.outcome, result.message = "refused", str(exc)
        except (TimeoutError, StepFailed, RpcError, HostError, ControlError, ConfigError) as exc:
            result.outcome = "not-ready"
            result.message = str(exc) or type(exc).__name__
        result.notes = self.notes
        # "ok" as for a move (history shows it so); "not-ready" and "refused" say what went wrong.
        self.journal.finish_run(run_id, "ok" if result.ready else result.outcome, {"message": result.message, "notes": result.notes})
        return result

    async def _step(self, result: RejoinResult, name: str, action: Callable[[], Any]) -> Any:
        began = time.monotonic()
        with self.journal.step(result.run_id, name) as rec:  # type: ignore[arg-type]
            self.say(f"{name}...")
            try:
                value = await action()
            finally:
                result.seconds[name] = round(time.monotonic() - began, 3)
            self.say(f"{name}: done in {result.seconds[name]:.2f}s")
            if isinstance(value, dict):
                rec.add(**value)
            elif isinstance(value, RejoinPlan):
                rec.add(fence=value.fence, park=value.park, refusal=value.refusal)
            elif isinstance(value, list):
                rec.add(findings=[f.to_json() for f in value])
        return value

    async def _preflight(self) -> RejoinPlan:
        node = self.node
        others = [n for n in self.nodes.values() if n.name != node.name]
        statuses = await asyncio.gather(*(n.status_or_none() for n in others))
        signers = tuple(n.name for n, s in zip(others, statuses) if s is not None and s.validator_account_id == self.pool)
        own = await node.status_or_none()
        try:
            text = await node.host.read_text(node.spec.config_path, CONFIG_JSON)
            key_in_home = await node.key_in_home()
        except HostError as exc:
            raise Refused(f"cannot read {node.name}'s home on its host: {exc}") from exc
        view = RejoinView(
            node=node.name,
            mode=self.mode,
            pool=self.pool,
            signs=own is not None and own.validator_account_id == self.pool,
            key_in_home=key_in_home,
            other_signers=signers,
            file_tracking=effective_tracking(parse_config_text(text, source=f"{node.name}:{node.spec.config_path}")),
            running_tracking=await self._running_tracking() if own is not None else None,
        )
        plan = plan_rejoin(view, self.inventory_path)
        if not signers:
            self.notes.append(f"no node signs for {self.pool} now: {node.name} comes back as a standby, not as the signer")
        return plan

    async def _running_tracking(self) -> Any:
        try:
            return (await self.node.rpc.client_config()).get("tracked_shards_config")
        except RpcError:
            return None

    async def _park(self, plan: RejoinPlan) -> dict[str, Any]:
        """The fence's own steps: a node that still signs is stopped with its key parked and
        proven silent; a key in the home of a stopped node is parked (never the last copy lost)."""
        if plan.fence:
            self.say(f"{self.node.name} signs beside another node: fencing it")
            proof = await fence_reachable(self.node, stop_timeout=self.settings.fence / 2, restore_key_on_failure=False, pool=self.pool)
            return {"proof": proof.kind, **proof.evidence}  # as a move's fence step (journal.stop_times reads it)
        self.say(f"{self.node.name}: its home holds the pool key while another node signs: parking it")
        return {"key_parked_at": await park_key(self.node)}

    async def _config(self) -> dict[str, Any]:
        backup, comments = await edit_home_config(self.node, standby_edit(self.mode, self.pool))
        self.config_changed = backup is not None
        if backup:
            self.say(f"{self.node.name}: config.json set for a {self.mode} standby (backup {backup})")
        return {"changed": self.config_changed, "backup": backup, "comments_dropped": comments}

    async def _start(self) -> dict[str, Any]:
        """Unmask, then start (or restart, since tracking and memtries apply only at start,
        neard-behaviour §2.3) and wait until it runs, answers and is synced."""
        node = self.node
        if node.control.supports_mask:
            await node.control.unmask()
        running = await node.control.is_active()
        action = "none"
        if running and self.config_changed:
            await signal_when_started(node, "restarting it", self.timeout, self.timeout, self.say)
            await node.control.restart(timeout=self.settings.fence / 2)
            action = "restart"
        elif not running:
            await node.control.start()
            action = "start"
        return {"action": action, **await wait_ready_after_restart(node, self.timeout, self.say)}

    async def _readiness(self) -> list[Finding]:
        """`check --role <mode>-standby`'s rules on the home and the running neard, read through
        the node's host; then what a move's preflight needs beyond them."""
        node = self.node
        role = standby_role(self.mode)
        facts = await self._home_facts()
        findings = check_home(facts, role, self.pool)
        if await node.key_in_home():
            findings.append(Finding(Severity.ERROR, f"{node.name}'s home holds a validator key at {await node.validator_key_path()}",
                                    "a standby with the key in its home signs beside the primary at its next start or SIGHUP",
                                    f"run `near-failover rejoin -c {self.inventory_path} --node {node.name}` while another node signs"))
        status = await node.rpc.status()
        try:
            client_config = await node.rpc.client_config()
        except RpcError:
            client_config = None
        findings += check_running(facts, role, self.pool, status, client_config)
        if self.mode == StandbyMode.HOT_SWAP and not await running_memtries(node):
            findings.append(Finding(Severity.ERROR, f"{node.name}'s running neard holds no memtries",
                                    "a hot-swapped validator without memtries falls behind on chunks (neard-behaviour §6)",
                                    "restart it with store.load_mem_tries_for_tracked_shards on"))
        findings += await self._staged_key_findings()
        return findings

    async def _home_facts(self) -> HomeFacts:
        node = self.node
        cfg = parse_config_text(await node.host.read_text(node.spec.config_path, CONFIG_JSON), source=f"{node.name}:{node.spec.config_path}")
        node_key = node.spec.home / str(cfg.get("node_key_file") or "node_key.json")
        # The key path is left out: check_home looks for it on this machine, the host is asked here.
        return HomeFacts(home=Path(str(node.spec.home)), config=cfg, node_key_present=await node.host.exists(node_key),
                         chain_id=self.inv.validator.chain_id)

    async def _staged_key_findings(self) -> list[Finding]:
        """A standby is ready to take over only with the pool key staged outside its home."""
        node = self.node
        stage = f"near-failover keys stage -c {self.inventory_path} --to {node.name}"
        try:
            key = parse_key_file(await node.host.read_text(node.spec.key_store, KEY_FILE), source=f"{node.name}:{node.spec.key_store}")
        except (HostError, KeyFileError) as exc:
            return [Finding(Severity.ERROR, f"no valid staged key at {node.name}:{node.spec.key_store} ({exc})",
                            "a switchover or failover to this node needs the pool key staged outside its home", f"run `{stage}`")]
        if key.account_id != self.pool:
            return [Finding(Severity.ERROR, f"the staged key on {node.name} is for {key.account_id}, not {self.pool}",
                            "a move to this node would be refused at preflight", f"run `{stage}`")]
        return []
