"""The plan of a move: which steps run, in which order, with which deadline.

Pure data, so `--dry-run` can print exactly what a real run would do, and tests can check the
order (a fence always comes before any step that gives the target the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["switchover", "failover"]
Mode = Literal["hot-swap", "rpc"]

STEP_ORDER = ("preflight", "stage", "fence", "activate", "verify", "settle")


@dataclass(frozen=True)
class MoveSettings:
    """Deadlines (seconds) and proof sizes. Defaults suit mainnet's 0.6 s blocks."""

    preflight: float = 30.0
    stage: float = 15.0
    fence: float = 60.0
    activate_hot_swap: float = 30.0
    # Option 1 restarts neard, which loads memtries before its RPC answers (neard-behaviour §6):
    # tens of seconds to minutes on mainnet.
    activate_rpc: float = 600.0
    verify: float = 60.0
    settle: float = 15.0
    # Chain-silence proof: the pool produced nothing for this many consecutive blocks while
    # duties were expected (DESIGN, fence).
    silence_blocks: int = 10
    # How far (blocks) the target's head may trail the primary's and still be "synced".
    max_lag_blocks: int = 5
    # --in-window: how long to wait for a gap in the pool's duties.
    window_wait: float = 120.0

    def deadline(self, step: str, mode: Mode) -> float:
        if step == "activate":
            return self.activate_rpc if mode == "rpc" else self.activate_hot_swap
        return float(getattr(self, step))


@dataclass(frozen=True)
class PlannedStep:
    name: str
    deadline: float
    does: str


@dataclass(frozen=True)
class Plan:
    kind: Kind
    mode: Mode
    source: str | None
    target: str
    steps: list[PlannedStep] = field(default_factory=list)


def make_plan(kind: Kind, mode: Mode, source: str | None, target: str, settings: MoveSettings, source_reachable: bool,
              stonith: bool = False) -> Plan:
    """The guide's procedure (Option 1 or 2) as ordered, bounded steps. ``stonith``: the source
    has a fence_command, run (and needed) when its fence rests on the chain's silence."""
    fence = (
        f"move the key out of {source}'s home, stop its neard and confirm the process is gone, mask it"
        if source and source_reachable
        else f"prove on {target}'s chain view that the pool produced nothing for {settings.silence_blocks} "
        "blocks while duties were expected" + (f", then run {source}'s fence_command (it must exit 0)" if stonith else "")
    )
    activate = (
        f"copy the staged key into {target}'s home and send SIGHUP (Option 2 hot swap)"
        if mode == "hot-swap"
        else f"set NoShards + memtries in {target}'s config.json, copy the key in, restart neard and wait "
        "through the memtrie load (Option 1)"
    )
    does = {
        "preflight": f"{target}: synced, same chain, tracking ready for {mode}, staged key valid and equal to the on-chain key"
        + (f"; {source} alive and signing" if kind == "switchover" else ""),
        "stage": f"the key staged on {target} outside its home, mode 0600",
        "fence": fence,
        "activate": activate,
        "verify": f"{target}'s status shows the pool's account and key, not syncing, and the chain shows the pool producing again",
        "settle": "record the new topology; the old primary stays fenced (masked, key out of its home)",
    }
    steps = [PlannedStep(name, settings.deadline(name, mode), does[name]) for name in STEP_ORDER]
    return Plan(kind, mode, source, target, steps)
