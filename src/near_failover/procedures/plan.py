"""The plan of a move: which steps run, in which order, with which deadline.

Pure data, so `--dry-run` can print exactly what a real run would do, and tests can check the
order (a fence always comes before any step that gives the target the key). A run executes its
plan's steps, in the plan's order and with the plan's deadlines (procedures/move.py), so the
printed plan and the run cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from near_failover.inventory import Inventory, StandbyMode


class MoveKind(StrEnum):
    """A switchover moves the validator off a healthy primary; a failover off a broken one."""

    SWITCHOVER = "switchover"
    FAILOVER = "failover"


class StepName(StrEnum):
    """The steps of every move, in the order they run (DESIGN, procedures)."""

    PREFLIGHT = "preflight"
    STAGE = "stage"
    FENCE = "fence"
    ACTIVATE = "activate"
    VERIFY = "verify"
    SETTLE = "settle"


STEP_ORDER = tuple(StepName)


@dataclass(frozen=True)
class MoveSettings:
    """Deadlines (seconds) and proof sizes. Defaults suit mainnet (neard-behaviour, addendum on
    timings); the inventory's [timeouts] and [node.timeouts] override the deadlines."""

    preflight: float = 60.0
    stage: float = 30.0
    # Half of it is the old signer's graceful stop before SIGKILL: neard flushes and closes
    # RocksDB, "this may take a few minutes" (neard/src/cli.rs).
    fence: float = 120.0
    activate_hot_swap: float = 30.0
    # Option 1 restarts neard: its stop, then opening the store and loading memtries before the
    # RPC answers (25-207 s per shard on mainnet, neard-behaviour §6), then catching up.
    activate_rpc: float = 900.0
    # Once activation is done the key is loaded; verify waits for the pool's next duty.
    verify: float = 120.0
    settle: float = 30.0
    # Chain-silence proof: the pool produced nothing for this many consecutive blocks while
    # duties were expected (DESIGN, fence).
    silence_blocks: int = 10
    # How far (blocks) the target's head may trail the primary's and still be "synced".
    max_lag_blocks: int = 5
    # --in-window: how long to wait for a gap in the pool's duties.
    window_wait: float = 300.0

    def deadline(self, step: str, mode: StandbyMode, in_window: bool = False) -> float:
        if step == StepName.ACTIVATE:
            return self.activate_rpc if mode == StandbyMode.RPC else self.activate_hot_swap
        if step == StepName.PREFLIGHT and in_window:
            return self.preflight + self.window_wait  # waiting for the duty gap is part of preflight
        return float(getattr(self, step))

    @classmethod
    def for_move(cls, inventory: Inventory, source: str | None, target: str) -> tuple[MoveSettings, list[Deadline]]:
        """The defaults, over them [timeouts], over those the target's [node.timeouts] (its
        activation and verify) and the source's (its fence); with where each value came from."""
        chosen: dict[str, Deadline] = {name: Deadline(name, float(getattr(cls, name)), "default") for name in TIMEOUT_KEYS}
        for name, value in inventory.timeouts.overrides().items():
            chosen[name] = Deadline(name, value, "[timeouts]")
        for node, keys in ((source, ("fence",)), (target, ("activate_hot_swap", "activate_rpc", "verify"))):
            own = inventory.node(node).timeouts if node else None
            for name, value in (own.overrides() if own else {}).items():
                if name in keys:
                    chosen[name] = Deadline(name, value, f"[node.timeouts] of {node}")
        deadlines = [chosen[name] for name in TIMEOUT_KEYS]
        seconds: dict[str, Any] = {d.name: d.seconds for d in deadlines}
        return cls(**seconds), deadlines


TIMEOUT_KEYS = ("preflight", "stage", "fence", "activate_hot_swap", "activate_rpc", "verify", "settle", "window_wait")


@dataclass(frozen=True)
class Deadline:
    """One step's deadline as a move uses it, and where it came from (for --dry-run)."""

    name: str
    seconds: float
    origin: str  # "default", "[timeouts]" or "[node.timeouts] of <node>"


@dataclass(frozen=True)
class PlannedStep:
    """One step as --dry-run shows it and as the run executes it: its name picks the action."""

    name: StepName
    deadline: float
    does: str


@dataclass(frozen=True)
class Plan:
    kind: MoveKind
    mode: StandbyMode
    source: str | None
    target: str
    steps: list[PlannedStep] = field(default_factory=list)


def make_plan(kind: MoveKind, mode: StandbyMode, source: str | None, target: str, settings: MoveSettings, source_reachable: bool,
              stonith: bool = False, in_window: bool = False) -> Plan:
    """The guide's procedure (Option 1 or 2) as ordered, bounded steps. ``stonith``: the source
    has a fence_command, run (and needed) when its fence rests on the chain's silence;
    ``in_window``: preflight also waits for a gap in the pool's duties."""
    fence = (
        f"move the key out of {source}'s home, stop its neard and confirm the process is gone, mask it"
        if source and source_reachable
        else f"prove on {target}'s chain view that the pool produced nothing for {settings.silence_blocks} "
        "blocks while duties were expected" + (f", then run {source}'s fence_command (it must exit 0)" if stonith else "")
    )
    activate = (
        f"copy the staged key into {target}'s home and send SIGHUP (Option 2 hot swap)"
        if mode == StandbyMode.HOT_SWAP
        else f"set NoShards + memtries in {target}'s config.json, copy the key in, restart neard and wait "
        "through the memtrie load (Option 1)"
    )
    does = {
        StepName.PREFLIGHT: f"{target}: synced, same chain, tracking ready for {mode}, staged key valid and equal to the on-chain key"
        + (f"; {source} alive and signing" if kind == MoveKind.SWITCHOVER else "")
        + ("; then wait for a gap in the pool's duties long enough for the swap" if in_window else ""),
        StepName.STAGE: f"the key staged on {target} outside its home, mode 0600",
        StepName.FENCE: fence,
        StepName.ACTIVATE: activate,
        StepName.VERIFY: f"{target}'s status shows the pool's account and key, not syncing, and the chain shows the pool producing again",
        StepName.SETTLE: "record the new topology; the old primary stays fenced (masked, key out of its home)",
    }
    steps = [PlannedStep(name, settings.deadline(name, mode, in_window), does[name]) for name in STEP_ORDER]
    return Plan(kind, mode, source, target, steps)


@dataclass(frozen=True)
class MoveOptions:
    """What an operator chooses for a move, asked the same way by the CLI and the agent API."""

    to: str
    mode: StandbyMode | None = None  # None: the target's standby mode
    in_window: bool = False  # a switchover waits for a gap in the pool's duties
    force: bool = False  # a failover skips the silence proof (confirmed by the pool id)
    take_over_interrupted: bool = False
