"""Switchover and failover: the guide's procedure as one journaled run of bounded steps.

Order (DESIGN, procedures): preflight, stage, fence (proven), activate, verify, settle. No step
that gives the target the key runs before the fence has returned its proof. Rollback is
automatic only when the outcome is known; otherwise the run stops with each node's state and
the exact commands to finish or revert.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Awaitable, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from near_failover.control.base import ControlError
from near_failover.hosts import HostError
from near_failover.inventory import Inventory, StandbyMode
from near_failover.limits import CONFIG_JSON, KEY_FILE, LOG_CONFIG
from near_failover.neard.config import (
    ConfigError,
    effective_tracking,
    memtries_enabled,
    semantic_errors,
)
from near_failover.neard.config_memo import parse_config_memo
from near_failover.neard.keys import KeyFile, KeyFileError, parse_key_file
from near_failover.neard.rpc import RpcError, StatusResponse, ValidatorsResponse, parse_rfc3339_ns
from near_failover.procedures import recovery
from near_failover.procedures.activate import (
    Activation,
    activate,
    wait_key_loaded,
    wait_producing,
    wait_rpc,
    withdraw_key,
)
from near_failover.procedures.chain_view import Production, on_chain_public_key, production_of
from near_failover.procedures.errors import Refused, StepFailed
from near_failover.procedures.fence import (
    FenceProof,
    ProofKind,
    confirm_no_other_signer,
    fence_reachable,
    prove_chain_silence,
    run_fence_command,
)
from near_failover.procedures.journal import Journal
from near_failover.procedures.nodes import NodeAccess, control_misses_neard, refuse_layout_problems
from near_failover.procedures.plan import (
    TIMEOUT_KEYS,
    Deadline,
    MoveKind,
    MoveOptions,
    MoveSettings,
    Plan,
    PlannedStep,
    StepName,
    make_plan,
)
from near_failover.procedures.startup import running_memtries, wait_until_started
from near_failover.procedures.window import gap_need

T = TypeVar("T")
DEFAULT_BLOCK_TIME = 0.6  # mainnet's block time (neard-behaviour §5)
# An inner wait ends this much before its step's deadline, so it can say what it waited for.
STEP_MARGIN = 0.5
Progress = Callable[[str], None]


class Outcome(StrEnum):
    """How a move ended (the journal's run outcome)."""

    OK = "ok"
    REFUSED = "refused"  # nothing was changed
    ROLLED_BACK = "rolled-back"  # the target never loaded the key; the old primary signs again
    STOPPED = "stopped"  # the outcome is not known: each node's state and the commands to finish
    DRY_RUN = "dry-run"
    INTERRUPTED = "interrupted"  # the journal's word for a run whose process died (never a result's own)


class KeyLeftBehind(BaseModel):
    """The pool key still (or perhaps, when the old primary was not identified) in the home of a
    node the move could not reach (a failover on the chain-silence proof): it signs again if
    that host returns and its neard restarts."""

    node: str
    path: str
    commands: list[str]  # what to run once the host answers again

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class NodeState(BaseModel):
    """One node as a stopped move left it, for the operator who finishes or reverts it."""

    rpc: bool  # its RPC answered
    key_loaded: str | None  # the validator account its neard has loaded
    key_in_home: bool | str  # the key file in its home, or "host unreachable"
    head: int | None


# What the JSON of a result says about one deadline: its seconds and where they came from.
TimeoutUsed = TypedDict("TimeoutUsed", {"seconds": float, "from": str})


class MoveResult(BaseModel):
    """A move's result: printed by the CLI, answered by the agent API (its response_model),
    alerted and journaled. JSON names the nodes "from" and "to"."""

    model_config = ConfigDict(populate_by_name=True)

    kind: MoveKind
    mode: StandbyMode
    source: str | None = Field(alias="from")
    target: str = Field(alias="to")
    ok: bool
    outcome: Outcome
    message: str = ""
    run_id: int | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    missed: dict[str, int] | None = None
    checks: dict[str, Any] = Field(default_factory=dict)
    recovery: dict[str, list[str]] = Field(default_factory=dict)
    node_states: dict[str, NodeState] = Field(default_factory=dict)
    timeouts: list[Deadline] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # what the operator should know or do next
    keys_left_behind: list[KeyLeftBehind] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True)  # printed by --dry-run, not sent

    @field_validator("timeouts", mode="before")
    @classmethod
    def _timeouts_from_json(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [Deadline(name, used["seconds"], used["from"]) for name, used in value.items()]
        return value

    @field_serializer("timeouts")
    def _timeouts_to_json(self, deadlines: list[Deadline]) -> dict[str, TimeoutUsed]:
        return {d.name: {"seconds": d.seconds, "from": d.origin} for d in deadlines}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class TargetReady:
    """The target's checks (``Move.target_readiness``) as they passed, with what the later steps
    take from them: the staged key's public key (equal to the on-chain key then; the secret is
    read again when it is needed), the pool's counters for the settle step's missed duties, and
    seconds per block. ``at`` is time.monotonic() when the checks began: their oldest read."""

    checks: dict[str, Any]
    public_key: str
    baseline: Production | None
    block_time: float
    at: float


@dataclass(frozen=True)
class NeardAnswers:
    """The target's own answers its agent's loop has just fetched (status, validators), for that
    loop's readiness checks to judge instead of asking neard again; a move's preflight asks anew."""

    status: StatusResponse
    validators: ValidatorsResponse
    at: float  # time.monotonic() before status was asked: the checks count as begun then


@dataclass(frozen=True)
class AutomaticMove:
    """What the automatic mode adds to a failover it runs under the lease."""

    # A proof the agent already holds: the old leader's own record that it fenced itself for
    # the lease generation that just ended.
    proven_fence: FenceProof | None = None
    # Else a proof the agent seeks while the preflight runs (a lost leader's silence, still being
    # counted; its own look at it), awaited at the fence step; None from it: the move fences it.
    seek_proof: Callable[[], Awaitable[FenceProof | None]] | None = None
    # The last word before the key is given (the lease is still ours); it raises Refused to
    # stop the move with the old signer fenced and the target without a key.
    before_activate: Callable[[], Awaitable[None]] | None = None
    journal_kind: str | None = None  # the journal's name for the run ("auto-failover")
    # Returns, saying why, once the target's neard is gone or fenced: the verify step then gives
    # up at once instead of waiting out its deadline (the agent observes its own neard).
    target_lost: Callable[[], Awaitable[str]] | None = None
    # The agent's own readiness checks of the target, passed recently (the agent judges how
    # recently): preflight then re-reads after the lease only what may have changed (the
    # target's status and head, the staged key, the source, the other nodes' no-signer check).
    ready: TargetReady | None = None


@dataclass(frozen=True)
class MoveRequest:
    """Everything one move is asked to do: its kind, the operator's options, and what a caller
    may add (the known old signer, deadlines of its own, the automatic mode's hooks)."""

    kind: MoveKind
    options: MoveOptions  # the target, mode (None: its standby mode), in_window, force, take over
    source: str | None = None  # the old signer when the caller knows it; else found by the move
    settings: MoveSettings | None = None  # None: the inventory's [timeouts] and [node.timeouts]
    automatic: AutomaticMove | None = None
    progress: Progress | None = None  # told each step as it starts and ends
    on_start: Callable[[int], None] | None = None  # told the run's id as soon as the journal has it


class Move:
    """One switchover or failover of the inventory's validator to the request's target."""

    def __init__(self, inventory: Inventory, nodes: dict[str, NodeAccess], journal: Journal, request: MoveRequest) -> None:
        options = request.options
        automatic = request.automatic or AutomaticMove()
        target = inventory.node(options.to)
        self.inv = inventory
        self.nodes = nodes
        self.kind = MoveKind(request.kind)
        self.mode = StandbyMode(options.mode or target.standby)
        self.target = nodes[target.name]
        self.source_name = request.source
        self.journal = journal
        # Given by the caller (tests, the demo, the agent), else resolved from the inventory once
        # the source is known ([node.timeouts] of the source and the target count).
        self.given_settings = request.settings
        self.settings = request.settings or MoveSettings()
        self.force = options.force
        self.in_window = options.in_window
        self.take_over_interrupted = options.take_over_interrupted
        self.proven_fence = automatic.proven_fence
        self.seek_proof = automatic.seek_proof
        self.sought: asyncio.Future[FenceProof | None] | None = None
        self.before_activate = automatic.before_activate
        self.target_lost = automatic.target_lost
        self.ready = automatic.ready
        self.journal_kind = automatic.journal_kind or self.kind.value
        self.on_start = request.on_start
        progress = request.progress
        self.say = progress or (lambda _msg: None)
        self.pool = inventory.validator.account_id
        self.inventory_path = str(inventory.source) if inventory.source else "inventory.toml"
        self.key: KeyFile | None = None
        self.block_time = DEFAULT_BLOCK_TIME
        self.baseline: Production | None = None
        self.proof: FenceProof | None = None
        self.fenced_at: Production | None = None
        self.activation: Activation | None = None
        self.source: NodeAccess | None = None
        self.source_reachable = False
        self.unreachable: list[NodeAccess] = []  # nodes whose host could not be asked for a key
        # Each node's key path in its home (config.json's validator_key_file), for the recovery
        # commands; the default path for a node whose host cannot be read.
        self.key_paths: dict[str, str] = {n.name: str(n.spec.validator_key_path) for n in nodes.values()}

    # --- the run -----------------------------------------------------------------------------

    async def run(self, dry_run: bool = False) -> MoveResult:
        result = MoveResult(kind=self.kind, mode=self.mode, source=self.source_name, target=self.target.name, ok=False,
                            outcome=Outcome.REFUSED)
        try:
            await self._find_source(result)
            self._resolve_settings(result)
            result.plan = make_plan(self.kind, self.mode, result.source, self.target.name, self.settings, self.source_reachable,
                                    stonith=self.source is not None and bool(self.source.spec.fence_command), in_window=self.in_window)
            if dry_run:
                result.checks = await self._preflight(result)
                result.ok, result.outcome = True, Outcome.DRY_RUN
                result.message = "preflight passed; nothing changed"
                return result
        except Refused as exc:
            result.message = str(exc)
            return result
        result.run_id = self.journal.start_run(
            self.pool, self.journal_kind, self.mode, result.source, self.target.name, take_over_interrupted=self.take_over_interrupted
        )
        if self.on_start is not None:
            self.on_start(result.run_id)
        if self.seek_proof is not None:
            self.sought = asyncio.ensure_future(self.seek_proof())
        try:
            await self._steps(result, result.plan)
            result.ok, result.outcome = True, Outcome.OK
        except Refused as exc:
            result.outcome, result.message = Outcome.REFUSED, str(exc)
        except StepFailed as exc:
            result.message = str(exc)
            if exc.known:
                await self._rollback(result)
            else:
                result.outcome = Outcome.STOPPED
        except (RpcError, HostError, ControlError, asyncio.TimeoutError) as exc:
            result.outcome = Outcome.STOPPED
            result.message = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}"
        finally:
            if self.sought is not None:
                self.sought.cancel()
        if result.outcome == Outcome.STOPPED:
            result.node_states = await self._node_states()
        left = {"keys_left_behind": [k.to_json() for k in result.keys_left_behind]} if result.keys_left_behind else {}
        self.journal.finish_run(result.run_id, result.outcome, {"message": result.message, "recovery": result.recovery,
                                                                "seconds": result.seconds, "missed": result.missed, **left})
        return result

    def _resolve_settings(self, result: MoveResult) -> None:
        if self.given_settings is None:
            self.settings, result.timeouts = MoveSettings.for_move(self.inv, result.source, self.target.name)
        else:
            result.timeouts = [Deadline(name, float(getattr(self.settings, name)), "given by the caller") for name in TIMEOUT_KEYS]

    async def _steps(self, result: MoveResult, plan: Plan) -> None:
        """Run the plan's steps, in its order, with its deadlines: what --dry-run printed."""
        for step in plan.steps:
            await self._step(result, step, self._action(result, step.name))

    def _action(self, result: MoveResult, name: StepName) -> Callable[[], Awaitable[Any]]:
        """What a planned step does when it runs."""

        async def preflight() -> dict[str, Any]:
            result.checks = await self._preflight(result)
            return result.checks

        async def fence() -> FenceProof:
            self._record_recovery(result, StepName.FENCE)
            self.proof = await self._fence()
            return self.proof

        async def activate() -> Activation:
            self._record_recovery(result, StepName.ACTIVATE)
            return await self._activate()

        async def settle() -> dict[str, Any]:
            return await self._settle(result)

        actions: dict[StepName, Callable[[], Awaitable[Any]]] = {
            StepName.PREFLIGHT: preflight, StepName.STAGE: self._stage, StepName.FENCE: fence,
            StepName.ACTIVATE: activate, StepName.VERIFY: self._verify, StepName.SETTLE: settle,
        }
        return actions[name]

    async def _step(self, result: MoveResult, step: PlannedStep, action: Callable[[], Awaitable[T]]) -> T:
        name, deadline = step.name.value, step.deadline
        started = time.monotonic()
        with self.journal.step(result.run_id, name, {"deadline": deadline}) as rec:  # type: ignore[arg-type]
            self.say(f"{name}...")
            try:
                value = await asyncio.wait_for(action(), deadline)
            except asyncio.TimeoutError:
                known = name in (StepName.PREFLIGHT, StepName.STAGE)
                if known:
                    raise Refused(f"{name} did not finish within its {deadline:.0f}s deadline") from None
                raise StepFailed(f"{name} did not finish within its {deadline:.0f}s deadline", known=False) from None
            finally:
                result.seconds[name] = round(time.monotonic() - started, 3)
            rec.add(**_evidence(value))
        self.say(f"{name}: done in {result.seconds[name]:.2f}s")
        return value

    def _record_recovery(self, result: MoveResult, before: str) -> None:
        source = self.source.spec if self.source else None
        parked = self.proof.parked_key if self.proof else None
        if before == StepName.FENCE:
            # Until the fence ends, the old primary may already have lost its key: same as after it.
            cmds = recovery.commands_after_fence(self.inventory_path, self.kind, self.mode, source, self.target.spec, None, self.key_paths)
        else:
            cmds = recovery.commands_after_activate(self.inventory_path, source, self.target.spec, parked, self.key_paths, self.settings.activate_rpc)
        result.recovery = cmds
        self.journal.update_run(result.run_id, {"recovery": cmds, "phase": before})  # type: ignore[arg-type]

    # --- who signs now ---------------------------------------------------------------------

    async def _find_source(self, result: MoveResult) -> None:
        """The current signer: named by --from, else the node whose status shows the pool's key,
        else the node whose home holds the key file."""
        others = [n for n in self.nodes.values() if n.name != self.target.name]
        if self.source_name:
            self.source = self.nodes[self.inv.node(self.source_name).name]
        else:
            statuses = await asyncio.gather(*(n.status_or_none() for n in others))
            signing = [n for n, s in zip(others, statuses) if s is not None and s.validator_account_id == self.pool]
            if len(signing) > 1:
                raise Refused(f"{', '.join(n.name for n in signing)} all have the pool's key loaded: fence all but one by hand first")
            if signing:
                self.source = signing[0]
            else:
                for n in others:
                    try:
                        if await n.key_in_home():
                            self.source = n
                            break
                    except HostError:
                        self.unreachable.append(n)
        if self.source is not None:
            result.source = self.source.name
            self.source_reachable = await self._reachable(self.source)
        for node in [self.target] + ([self.source] if self.source is not None and self.source_reachable else []):
            try:
                self.key_paths[node.name] = str(await node.validator_key_path())
            except HostError:
                pass  # preflight reports an unreachable target; the default path stays

    async def _reachable(self, node: NodeAccess) -> bool:
        """Whether the node's machine answers, so its neard can be stopped and its key moved."""
        try:
            await asyncio.wait_for(node.host.exists(node.spec.home), 10)
            return True
        except (HostError, asyncio.TimeoutError, OSError):
            return False

    # --- steps -------------------------------------------------------------------------------

    async def _preflight(self, result: MoveResult) -> dict[str, Any]:
        # The source's status is asked alongside the target's checks: a lost host's RPC costs its
        # timeout once, not on top of them (and nothing in the agent's failover, below).
        source_status = asyncio.ensure_future(self.source.status_or_none() if self.source else _nothing())
        try:
            return await self._preflight_checks(source_status)
        finally:
            source_status.cancel()

    async def _preflight_checks(self, source_status: asyncio.Future[Any]) -> dict[str, Any]:
        t = self.target
        checks = await (self._reuse_readiness(self.ready) if self.ready is not None else self._check_and_load_target())

        src = self.source
        if self.proven_fence is not None or self.seek_proof is not None:
            # The agent's failover: its fence proof shows the old leader silent, and a lost
            # host's RPC (a frozen neard's times out) must not hold up the promotion.
            src_status = source_status.result() if source_status.done() else None
        else:
            src_status = await source_status
        checks["source"] = {"node": src.name if src else None, "reachable": self.source_reachable, "rpc": src_status is not None}
        if self.kind == MoveKind.SWITCHOVER:
            if src is None or src_status is None or src_status.validator_account_id != self.pool:
                raise Refused("no reachable node is signing for the pool: the primary is not alive and healthy; use `failover`")
            if src_status.sync_info.syncing:
                raise Refused(f"primary {src.name} is syncing: use `failover`")
            # The target's head read again after the source's: the checks between the first read
            # and the source's (an SSH read of the staged key, the validators call) take seconds
            # on a slow link, and those seconds must not count as the target's lag.
            try:
                target_head = (await t.rpc.status()).sync_info.latest_block_height
            except RpcError as exc:
                raise Refused(f"target {t.name} does not answer: {exc}") from exc
            lag = src_status.sync_info.latest_block_height - target_head
            if lag > self.settings.max_lag_blocks:
                raise Refused(f"target {t.name} is {lag} blocks behind {src.name}; wait until it catches up")
            checks["lag_blocks"] = lag
        elif src is not None and src_status is not None and src_status.validator_account_id == self.pool and not src_status.sync_info.syncing:
            raise Refused(f"primary {src.name} is alive and signing: use `switchover` for a planned move")
        checks["other_nodes"] = await confirm_no_other_signer(
            self.nodes, self.pool, exclude={t.name} | ({src.name} if src else set())
        )
        if self.in_window:
            checks["window"] = await self._wait_for_window(t)
        return checks

    async def target_readiness(self, seen: NeardAnswers | None = None) -> TargetReady:
        """The target's own checks (synced, config neard accepts, tracking and memtries in use,
        staged key equal to the on-chain key): preflight's, and the agents' standby readiness
        (Refused names the first that fails), judging ``seen`` when given. Checks only: the
        move's state is left as it was."""
        return (await self._check_target(seen))[0]

    async def _check_and_load_target(self) -> dict[str, Any]:
        """Preflight without a reusable readiness: the target's checks, then their state loaded."""
        ready, key = await self._check_target()
        self._load(ready, key)
        return ready.checks

    async def _reuse_readiness(self, ready: TargetReady) -> dict[str, Any]:
        """Preflight after a recent passed readiness: what may have changed since is read again,
        the target's status (answers, synced, no key loaded, its head and block time) and the
        staged key (still the one checked against the chain); the rest is the readiness's."""
        status, key = await asyncio.gather(self._target_status(), self._staged_key(self.target))
        self._load(replace(ready, block_time=self.block_time_of(status)), key)
        head = status.sync_info.latest_block_height
        return {**ready.checks, "target_head": head, "block_time": round(self.block_time, 3),
                "readiness_reused": {"age_s": round(time.monotonic() - ready.at, 3)}}

    def _load(self, ready: TargetReady, key: KeyFile) -> None:
        """What the later steps take from the target's checks: the staged key (stage, activate,
        verify), the pool's counters (settle) and seconds per block (fence, window)."""
        if key.public_key != ready.public_key:
            raise Refused(f"the staged key on {self.target.name} changed since its checks ({ready.public_key} then, "
                          f"{key.public_key} now): check it with `near-failover check` and try again")
        self.key, self.baseline, self.block_time = key, ready.baseline, ready.block_time

    async def _target_status(self, seen: StatusResponse | None = None) -> StatusResponse:
        """The target's status (``seen``, or asked now), refused unless it answers on the
        inventory's chain, synced, with no validator key loaded."""
        t = self.target
        try:
            status = seen or await t.rpc.status()
        except RpcError as exc:
            raise Refused(f"target {t.name} does not answer: {exc}") from exc
        if status.chain_id != self.inv.validator.chain_id:
            raise Refused(f"target {t.name} is on chain {status.chain_id}, the inventory says {self.inv.validator.chain_id}")
        if status.sync_info.syncing:
            raise Refused(f"target {t.name} is syncing (head {status.sync_info.latest_block_height}); wait until it is synced")
        if status.validator_account_id:
            raise Refused(f"target {t.name} already has a validator key loaded ({status.validator_account_id})")
        return status

    async def _refuse_blind_control(self, t: NodeAccess) -> None:
        """Refused when the target's neard answers but its control would miss it: the
        activation's SIGHUP or restart goes through that control."""
        if problem := await control_misses_neard(t):
            action = "SIGHUP" if self.mode == StandbyMode.HOT_SWAP else "restart"
            raise Refused(f"target {problem}: the {action} goes through that control; fix `control` for {t.name}")

    async def _check_target(self, seen: NeardAnswers | None = None) -> tuple[TargetReady, KeyFile]:
        t = self.target
        began = min(time.monotonic(), seen.at) if seen else time.monotonic()
        checks: dict[str, Any] = {}
        status = await self._target_status(seen.status if seen else None)
        await self._refuse_blind_control(t)
        if await t.key_in_home():
            raise Refused(f"target {t.name} has {await t.validator_key_path()} in its home: neard would load it; remove it first")
        await refuse_layout_problems(self.nodes, t)
        checks["target_head"] = status.sync_info.latest_block_height
        checks["target_synced"] = True

        cfg_text = await t.host.read_text(t.spec.config_path, CONFIG_JSON)
        try:
            cfg = parse_config_memo(cfg_text, source=f"{t.name}:{t.spec.config_path}")
        except ConfigError as exc:
            raise Refused(str(exc)) from exc
        if errors := semantic_errors(cfg):
            raise Refused(f"{t.name}:{t.spec.config_path} fails neard's checks: {'; '.join(errors)}")
        await self._check_log_config(t)
        try:
            running = (await t.rpc.client_config()).get("tracked_shards_config")
        except RpcError as exc:
            raise Refused(f"cannot read {t.name}'s running tracking (client_config): {exc}") from exc
        checks["target_tracking"] = running
        shadow = {"ShadowValidator": self.pool}
        if self.mode == StandbyMode.HOT_SWAP and running != shadow:
            raise Refused(
                f"{t.name} runs with tracking {running}, not {{'ShadowValidator': '{self.pool}'}}: a hot swap "
                "would leave it without the pool's shards. Use --mode rpc, or prepare it with "
                f"`near-failover config standby --mode hot-swap --validator-id {self.pool}` and restart it"
            )
        if self.mode == StandbyMode.RPC and running not in ("AllShards", shadow):
            raise Refused(
                f"{t.name} runs with tracking {running}: Option 1 restarts it as the validator, so it must already hold "
                f"the pool's shards (AllShards, as the guide's standby, or {shadow}). Prepare it with "
                f"`near-failover config standby --home {t.spec.home} --mode rpc` and restart it"
            )
        checks["target_memtries"] = await self._check_memtries(t, cfg)
        pending = _restart_pending(effective_tracking(cfg).to_json(), running, memtries_enabled(cfg), checks["target_memtries"]["running"])
        if pending:
            checks["restart_pending"] = pending
            self.say(f"{t.name}: config.json and the running neard disagree, a restart is pending: {'; '.join(pending)}")

        key = await self._staged_key(t)
        validators = seen.validators if seen else await t.rpc.validators()
        on_chain = on_chain_public_key(validators, self.pool)
        if on_chain is None:
            raise Refused(f"{self.pool} is not in the current or next validator set in {t.name}'s view")
        if on_chain != key.public_key:
            raise Refused(f"the staged key {key.public_key} on {t.name} is not the pool's on-chain key {on_chain}")
        checks["staged_key"] = {"public_key": key.public_key, "matches_on_chain": True}
        block_time = self.block_time_of(status)
        checks["block_time"] = round(block_time, 3)
        baseline = production_of(validators, self.pool, status.sync_info.latest_block_height)
        return TargetReady(checks, key.public_key, baseline, block_time, began), key

    async def _check_memtries(self, t: NodeAccess, cfg: dict[str, Any]) -> dict[str, Any]:
        """Memtries as the running process holds them (its /metrics), beside config.json's flag,
        which applies only at the next start (neard-behaviour §6)."""
        running = await running_memtries(t)
        in_file = memtries_enabled(cfg)
        if self.mode == StandbyMode.HOT_SWAP and not running:
            seen = "its /metrics could not be read" if running is None else "its /metrics shows no memtrie loaded"
            fix = "restart it to load them (memtries load only at start)" if in_file else f"set them on with `near-failover config standby --home {t.spec.home} --mode hot-swap --validator-id {self.pool}` and restart it"
            raise Refused(f"{t.name}'s running neard has no memtries ({seen}): a hot-swapped validator would fall behind on chunks; {fix}")
        return {"running": running, "config": in_file}

    async def _check_log_config(self, t: NodeAccess) -> None:
        """neard-behaviour §2.1: a SIGHUP that finds log_config.json unparsable applies nothing,
        not even the key, so a hot swap onto such a node would silently not happen."""
        path = t.spec.home / "log_config.json"
        if not await t.host.exists(path):
            return
        try:
            if not isinstance(json.loads(await t.host.read_text(path, LOG_CONFIG)), dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise Refused(f"{t.name}:{path} is not valid JSON ({exc}): neard's SIGHUP reload would fail as a whole; fix or remove it") from None

    async def _staged_key(self, t: NodeAccess) -> KeyFile:
        where = f"{t.name}:{t.spec.key_store}"
        try:
            text = await t.host.read_text(t.spec.key_store, KEY_FILE)
        except HostError as exc:
            raise Refused(f"no staged key at {where}: run `near-failover keys stage -c {self.inventory_path} --to {t.name}` ({exc})") from exc
        try:
            key = parse_key_file(text, source=where)
        except KeyFileError as exc:
            raise Refused(f"the staged key is invalid: {exc}") from exc
        if key.account_id != self.pool:
            raise Refused(f"the staged key {where} is for {key.account_id}, not {self.pool}")
        if await t.host.stat_mode(t.spec.key_store) & 0o077:
            raise Refused(f"the staged key {where} is readable by others: chmod 600 it")
        return key

    @staticmethod
    def block_time_of(status: Any) -> float:
        """Seconds per block from one status: the span between the earliest kept block and the
        head. It needs no waiting, so preflight stays well under one block."""
        info = status.sync_info
        try:
            span_ns = info.latest_block_time_ns - parse_rfc3339_ns(info.earliest_block_time)
            blocks = info.latest_block_height - info.earliest_block_height
        except (TypeError, ValueError):
            return DEFAULT_BLOCK_TIME
        return span_ns / 1e9 / blocks if blocks > 0 and span_ns > 0 else DEFAULT_BLOCK_TIME

    async def _wait_for_window(self, t: NodeAccess) -> dict[str, Any]:
        """Wait (bounded) for a gap in the pool's duties long enough for the source's stop (as
        journaled from its earlier fences) plus neard applying the SIGHUP."""
        if self.mode == StandbyMode.RPC:
            raise Refused("--in-window needs --mode hot-swap: a restart through the memtrie load outlasts any duty gap")
        source = self.source.name if self.source else "the old signer"
        need = gap_need(source, self.journal.stop_times(source) if self.source else [], self.block_time)
        needed = need.blocks
        self.say(f"in-window: waiting for a gap of {need.describe()}")
        loop = asyncio.get_running_loop()
        end = loop.time() + self.settings.window_wait
        while loop.time() < end:
            head = (await t.rpc.status()).sync_info.latest_block_height
            for start, stop in await t.rpc.maintenance_windows(self.pool):
                if start <= head + 1 and stop - max(start, head + 1) >= needed:
                    return {"window": [start, stop], "head": head, "expected_missed": 0, **need.to_json()}
            await asyncio.sleep(self.block_time / 2)
        raise Refused(
            f"no gap of {need.describe()} in {self.pool}'s duties within {self.settings.window_wait:.0f}s; "
            "run without --in-window to accept missed duties"
        )

    async def _stage(self) -> dict[str, Any]:
        # Preflight read and validated the staged key; here it is confirmed still in place, outside home.
        assert self.key is not None
        return {"key_store": str(self.target.spec.key_store), "public_key": self.key.public_key, "outside_home": True}

    async def _fence(self) -> FenceProof:
        stonith = self.source is not None and bool(self.source.spec.fence_command)
        proven = self.proven_fence or (await self.sought if self.sought is not None else None)
        if proven is not None:
            proof = proven
        elif self.source is not None and self.source_reachable:
            # A stop during its start-up would kill neard: let it finish starting first (bounded).
            waited = await wait_until_started(self.source, "stopping it", self.settings.fence / 3, self._startup_window(self.source), self.say)
            proof = await fence_reachable(self.source, stop_timeout=self.settings.fence / 2, pool=self.pool)
            proof.evidence.update(waited)
        elif self.force:
            proof = FenceProof(ProofKind.FORCED, {"confirmed_by_operator": True})
        else:
            proof = await prove_chain_silence(
                self.target, self.pool, self.settings.silence_blocks, self.settings.fence / (2 if stonith else 1), self.block_time
            )
        if stonith and proof.kind in (ProofKind.CHAIN_SILENCE, ProofKind.FORCED):
            # Silence is no proof that a paused machine stays silent when it wakes: STONITH first.
            assert self.source is not None and self.source.spec.fence_command
            self.say(f"running {self.source.name}'s fence_command")
            proof.evidence["fence_command"] = await run_fence_command(self.source.spec, self.settings.fence / 2)
        self.say(f"fence proven ({proof.kind})")
        # Production counted from here on can only come from the target: verify compares with this.
        self.fenced_at = await self._production()
        return proof

    def _startup_window(self, node: NodeAccess) -> float:
        """How long `node`'s neard may take to start: its own activate_rpc, else the move's."""
        own = node.spec.timeouts.activate_rpc if node.spec.timeouts else None
        return own or self.inv.timeouts.activate_rpc or self.settings.activate_rpc

    async def _production(self) -> Production | None:
        status = await self.target.rpc.status()
        return production_of(await self.target.rpc.validators(), self.pool, status.sync_info.latest_block_height)

    async def _activate(self) -> Activation:
        assert self.key is not None
        if self.before_activate is not None:
            await self.before_activate()
        self.activation = Activation(self.mode)  # a rollback must know the mode even if this fails midway
        deadline = self.settings.deadline("activate", self.mode) - STEP_MARGIN
        self.activation = await activate(self.target, self.mode, self.key, deadline, self.settings.fence / 2, self.say)
        return self.activation

    async def _verify(self) -> dict[str, Any]:
        if self.target_lost is None:
            return await self._wait_verified()
        verified, lost = asyncio.ensure_future(self._wait_verified()), asyncio.ensure_future(self.target_lost())
        try:
            await asyncio.wait((verified, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (verified, lost):
                waiting.cancel()
        if verified.done() and not verified.cancelled():
            return verified.result()
        # Not known to have never loaded the key (no rollback): whoever holds the lease fences it.
        raise StepFailed(f"{self.target.name} {lost.result()} during verify: the promotion gives up", known=False)

    async def _wait_verified(self) -> dict[str, Any]:
        assert self.key is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + self.settings.verify  # activation waited through any restart: only signing is left
        loaded = await wait_key_loaded(self.target, self.key, end - loop.time())
        producing = await wait_producing(self.target, self.pool, self.fenced_at, max(1.0, end - loop.time()))
        return {**loaded, **producing}

    async def _settle(self, result: MoveResult) -> dict[str, Any]:
        now = await self._production()
        if now and self.baseline and now.epoch_start_height == self.baseline.epoch_start_height:
            result.missed = now.minus(self.baseline)
        result.recovery = {}
        notes = []
        if self.mode == StandbyMode.RPC:
            notes.append(f"{self.target.name} now tracks only the pool's shards: it can no longer go back to tracking all shards (guide, Option 1)")
            if self.activation is not None and self.activation.comments_dropped:
                notes.append(f"{self.target.name}'s config.json had comments, which neard's format drops; they stay in {self.activation.config_backup}")
        else:
            # Option 2's optional edit: SIGHUP never changes tracking (neard-behaviour §2.3), so
            # it would only matter at the next restart; it is left to the operator.
            promote = recovery.on_host(self.target.spec, ["near-failover", "config", "promote", "--home", str(self.target.spec.home)])
            notes.append(
                f"NoShards was not set: {self.target.name} still tracks {{'ShadowValidator': '{self.pool}'}} from config.json. "
                f"Run `{promote}` so that its next restart comes up as a validator with NoShards (guide, Option 2)"
            )
        if self.source is not None and self.source_reachable:
            notes.append(f"{self.source.name} stays fenced (neard stopped and masked, key out of its home)")
        elif self.proof is not None and self.proof.kind in (ProofKind.CHAIN_SILENCE, ProofKind.FORCED):
            # The old primary, or, when no node could be shown to be it, every unreachable one.
            for node in [self.source] if self.source is not None else self.unreachable:
                path = self.key_paths[node.name]
                result.keys_left_behind.append(KeyLeftBehind(node=node.name, path=path, commands=recovery.clear_left_key(node.spec, path)))
                notes.append(f"the pool key may still be in {node.name}'s home ({path}): its host could not be reached")
        result.notes = notes
        return {"signer": self.target.name, "missed": result.missed, "notes": notes, "keys_left_behind": [k.to_json() for k in result.keys_left_behind]}

    # --- when things go wrong -----------------------------------------------------------

    async def _rollback(self, result: MoveResult) -> None:
        """The target provably never loaded the key: take it back and restore the old primary."""
        self.say("rolling back: the target never loaded the key")
        with self.journal.step(result.run_id, "rollback") as rec:  # type: ignore[arg-type]
            backup = self.activation.config_backup if self.activation else None
            rec.add(target=await withdraw_key(self.target, self.mode, backup, self.settings.activate_rpc, self.say))
            if self.source is not None and self.source_reachable and self.proof and self.proof.kind == ProofKind.STOPPED:
                src = self.source
                await src.control.unmask()
                await src.host.write_atomic(await src.validator_key_path(), await src.host.read_bytes(self.proof.parked_key or src.spec.key_store, KEY_FILE), 0o600)
                await src.control.start()
                assert self.key is not None
                await wait_rpc(src, self.settings.activate_rpc)
                rec.add(source=await wait_key_loaded(src, self.key, self.settings.verify))
                result.outcome = Outcome.ROLLED_BACK
                result.message += f"; rolled back: {src.name} signs again"
            else:
                result.outcome = Outcome.STOPPED
                result.message += "; the target holds no key; the old primary was not fenced by this run, so it is not restarted"
        result.recovery = {}

    async def _node_states(self) -> dict[str, Any]:
        states: dict[str, Any] = {}
        for name, node in self.nodes.items():
            status = await node.status_or_none()
            key_file: bool | str
            try:
                key_file = await node.key_in_home()
            except HostError:
                key_file = "host unreachable"
            states[name] = {
                "rpc": status is not None,
                "key_loaded": status.validator_account_id if status else None,
                "key_in_home": key_file,
                "head": status.sync_info.latest_block_height if status else None,
            }
        return states


def _restart_pending(file_tracking: Any, running_tracking: Any, file_memtries: bool, running_memtries: list[str] | None) -> list[str]:
    """Where config.json and the running neard disagree: settings that apply only at restart."""
    pending = []
    if running_tracking != file_tracking:
        pending.append(f"tracking: config.json says {json.dumps(file_tracking)}, neard runs with {json.dumps(running_tracking)}")
    if running_memtries is not None and bool(running_memtries) != file_memtries:
        held = ", ".join(running_memtries) or "none"
        pending.append(f"memtries: config.json has them {'on' if file_memtries else 'off'}, neard holds {held}")
    return pending


def _evidence(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, FenceProof):
        return {"proof": value.kind, **value.evidence}
    if hasattr(value, "evidence"):
        return value.evidence()
    return {}


async def _nothing() -> None:
    """No source to ask (a failover whose old signer is unknown)."""
    return None
