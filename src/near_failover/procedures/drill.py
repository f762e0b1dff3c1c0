"""`near-failover drill`: measure on the real network what the tool's timeouts assume.

Every deadline (a fence's stop, an Option 1 restart through its memtrie load, SIGHUP to the
first duty) comes from the emulator or from nearcore's defaults until someone measures it. The
drill does, with a safe sequence: every check, a dry run, a switchover to the best standby, the
old signer made a standby again (`near-failover rejoin`'s journaled run: its restart and memtrie
load timed), the switch back, and the other node made a standby again. Each move is a normal
journaled `Move`, each asked for first unless the operator said yes to all. The report says per
node what the network showed and the timeouts that would fit it (``suggest_timeouts``, pure).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from near_failover.inventory import Inventory
from near_failover.neard.check import Finding, Severity
from near_failover.procedures.errors import Refused
from near_failover.procedures.fence import fence_command_findings
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import Move, MoveRequest, MoveResult
from near_failover.procedures.nodes import NodeAccess, layout_problems_on
from near_failover.procedures.plan import MoveKind, MoveOptions
from near_failover.procedures.rejoin import Rejoin
from near_failover.procedures.rights import rights_findings

DUTY_KINDS = ("blocks", "chunks", "endorsements")


@dataclass
class NodeFigures:
    """What one node showed during the drill (seconds; None until measured)."""

    stop_seconds: float | None = None  # the fence's stop, as the old signer
    restart_seconds: float | None = None  # start until its RPC answers and it is synced
    memtrie_load_seconds: float | None = None  # start until its RPC answers (store open, memtries loaded)
    sighup_to_first_duty_seconds: float | None = None  # activation start until the chain shows it producing
    missed: dict[str, int] | None = None  # duties missed per kind in the move that made it the signer

    def complete(self) -> bool:
        return None not in (self.stop_seconds, self.restart_seconds, self.memtrie_load_seconds, self.sighup_to_first_duty_seconds, self.missed)


@dataclass
class DrillReport:
    account_id: str
    chain_id: str
    started_at: str
    ok: bool = False
    stopped_at: str = ""  # the step where the drill ended early, if it did
    checks: list[dict[str, str]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[str, NodeFigures] = field(default_factory=dict)
    suggested_timeouts: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "nodes": {name: asdict(figures) for name, figures in self.nodes.items()}}


def suggest_timeouts(nodes: dict[str, NodeFigures]) -> dict[str, float]:
    """[timeouts] that fit the measured figures with room: the fence twice the slowest stop (half
    of it is the graceful stop, then SIGKILL) plus half again; an Option 1 activation 1.5 times the
    slowest restart plus 30 s of catch-up; SIGHUP to first duty three times the slowest for both
    the hot-swap activation and the verify step. Never below 10 s."""
    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    def seconds(value: float) -> float:
        return float(max(10, math.ceil(value)))

    figures = list(nodes.values())
    out: dict[str, float] = {}
    if (stop := worst([f.stop_seconds for f in figures])) is not None:
        out["fence"] = seconds(stop * 2 * 1.5)
    if (restart := worst([f.restart_seconds for f in figures])) is not None:
        out["activate_rpc"] = seconds(restart * 1.5 + 30)
    if (duty := worst([f.sighup_to_first_duty_seconds for f in figures])) is not None:
        out["activate_hot_swap"] = out["verify"] = seconds(duty * 3)
    return out


def _finding(f: Finding) -> dict[str, str]:
    return f.to_json()


async def drill_checks(inventory: Inventory, nodes: dict[str, NodeAccess]) -> list[Finding]:
    """Every node's rights and fence_command, and the layout of homes and key stores."""
    findings: list[Finding] = []
    for node in nodes.values():
        findings += fence_command_findings(node.spec) + await rights_findings(node.spec, node.host)
        findings += [Finding(Severity.ERROR, problem, "a key store in a home can put the key in two processes", "fix the inventory's paths")
                     for problem in await layout_problems_on(nodes, node)]
    return findings


async def signer_and_target(inventory: Inventory, nodes: dict[str, NodeAccess]) -> tuple[str, str]:
    """The node that signs now, and the preferred other node to move to."""
    pool = inventory.validator.account_id
    signers = [n.name for n in nodes.values() if (s := await n.status_or_none()) is not None and s.validator_account_id == pool]
    if len(signers) != 1:
        raise Refused(f"the drill needs exactly one node signing for {pool}, found {signers or 'none'}")
    others = [n.name for n in inventory.by_priority() if n.name != signers[0]]
    if not others:
        raise Refused("the drill needs a second node to move to")
    return signers[0], others[0]


def record_move(report: DrillReport, move: Move, result: MoveResult) -> None:
    """The figures a switchover showed: the old signer's stop, the new one's SIGHUP (or restart)
    to first duty, and the duties missed meanwhile."""
    report.moves.append(result.to_json())
    if not result.ok:
        return
    if result.source is not None and move.proof is not None:
        stop = move.proof.evidence.get("stop") or {}
        report.nodes[result.source].stop_seconds = stop.get("seconds")
    target = report.nodes[result.target]
    target.sighup_to_first_duty_seconds = round(result.seconds.get("activate", 0.0) + result.seconds.get("verify", 0.0), 3)
    target.missed = {kind: int((result.missed or {}).get(kind, 0)) for kind in DUTY_KINDS}


async def run_drill(
    inventory: Inventory,
    nodes: dict[str, NodeAccess],
    journal: Journal,
    confirm: Callable[[str], bool],
    say: Callable[[str], None],
    restart_deadline: float = 900.0,
) -> DrillReport:
    """The drill's sequence; it stops at the first failure or refusal, and says where."""
    pool = inventory.validator.account_id
    report = DrillReport(pool, inventory.validator.chain_id, datetime.now(UTC).isoformat(timespec="seconds"))

    async def switchover(source: str, target: str, dry_run: bool) -> bool:
        move = Move(inventory, nodes, journal, MoveRequest(MoveKind.SWITCHOVER, MoveOptions(target), progress=say))
        result = await move.run(dry_run=dry_run)
        if dry_run:
            report.moves.append(result.to_json())
        else:
            record_move(report, move, result)
        if not result.ok:
            report.stopped_at = f"{'dry run of ' if dry_run else ''}switchover {source} -> {target}: {result.message or result.outcome}"
        return result.ok

    async def rejoin(name: str) -> bool:
        if not confirm(f"make {name} a standby again (config for its standby mode, unmask, start without the key)?"):
            report.stopped_at = f"declined: rejoin {name}"
            return False
        say(f"{name}: `near-failover rejoin`, timing its restart")
        result = await Rejoin(inventory, nodes, name, journal, timeout=restart_deadline, progress=say).run()
        if not result.ready or result.answered_after is None:
            report.stopped_at = f"rejoin {name}: {result.message or 'neard was not restarted'}"
            return False
        report.nodes[name].memtrie_load_seconds, report.nodes[name].restart_seconds = result.answered_after, result.ready_after
        return True

    async def move(source: str, target: str) -> bool:
        if not confirm(f"switch over {pool} from {source} to {target}?"):
            report.stopped_at = f"declined: switchover {source} -> {target}"
            return False
        return await switchover(source, target, dry_run=False)

    say("checks: rights, fence_command, homes and key stores")
    findings = await drill_checks(inventory, nodes)
    report.checks = [_finding(f) for f in findings]
    if any(f.severity == Severity.ERROR for f in findings):
        report.stopped_at = "checks"
        return report
    try:
        first, second = await signer_and_target(inventory, nodes)
    except Refused as exc:
        report.stopped_at = str(exc)
        return report
    report.nodes = {first: NodeFigures(), second: NodeFigures()}
    try:
        ok = (
            await switchover(first, second, dry_run=True)
            and await move(first, second)
            and await rejoin(first)
            and await move(second, first)
            and await rejoin(second)
        )
    except Refused as exc:
        report.stopped_at = str(exc)
        ok = False
    report.suggested_timeouts = suggest_timeouts(report.nodes)
    report.ok = ok and all(f.complete() for f in report.nodes.values())
    return report
