"""Human text for results: every value a node or the journal gave is printed as plain text, never markup."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from near_failover.cli.common import err, out
from near_failover.console import plain, safe
from near_failover.neard.check import Finding, Severity
from near_failover.procedures.move import MoveResult


def print_finding_lines(findings: list[Finding]) -> None:
    for f in findings:
        colour = "red" if f.severity == Severity.ERROR else "yellow"
        out.print(f"[{colour}]{f.severity.value}[/]: {safe(f.what)}", highlight=False, soft_wrap=True)
        out.print(plain(f"  why: {f.why}"), highlight=False, soft_wrap=True)
        out.print(plain(f"  fix: {f.fix}"), highlight=False, soft_wrap=True)


# While a step runs longer than this, a move followed through an agent says so again.
STILL_RUNNING_EVERY = 15.0


def say_step(step: dict[str, Any], shown: dict[int, str | None]) -> None:
    """A step's start, then its end, each printed once (as a move run here prints them); while
    it runs, every STILL_RUNNING_EVERY seconds, how long it has been running (an Option 1
    activation can wait 900 s for neard's memtries)."""
    from datetime import UTC, datetime

    if step["id"] not in shown:
        err.print(plain(f"{step['name']}...", "dim"), highlight=False)
        shown[step["id"]] = None
    started = datetime.fromisoformat(step["started"])
    if step["outcome"] is None:
        running = (datetime.now(UTC) - (started if started.tzinfo else started.replace(tzinfo=UTC))).total_seconds()
        mark = f"running {int(running // STILL_RUNNING_EVERY)}"
        if running >= STILL_RUNNING_EVERY and shown[step["id"]] != mark:
            phase = step["evidence"].get("phase")
            err.print(plain(f"{step['name']}: still running after {running:.0f}s" + (f" ({phase})" if phase else ""), "dim"), highlight=False)
            shown[step["id"]] = mark
    elif shown[step["id"]] is None or shown[step["id"]].startswith("running"):  # type: ignore[union-attr]
        seconds = (datetime.fromisoformat(step["ended"]) - started).total_seconds()
        proof = f" (fence proven: {step['evidence']['proof']})" if step["evidence"].get("proof") else ""
        err.print(plain(f"{step['name']}: {step['outcome']} in {seconds:.2f}s{proof}", "dim"), highlight=False)
        shown[step["id"]] = step["outcome"]


def print_agent_move(who: str, result: MoveResult) -> None:
    """A move an agent ran: who ran it, then the same lines as a move run here."""
    out.print(plain(f"run {result.run_id if result.run_id is not None else '-'} was run by {who}'s agent"), highlight=False)
    print_move(result)


def print_move(result: Any) -> None:
    """The move's plan, outcome and recovery; every value in it comes from nodes or the inventory,
    so it is printed as plain text (a `[/]` in a node's answer is shown, not read as markup)."""
    move = f"{result.kind} ({result.mode}) {result.source or '?'} -> {result.target}"
    if result.plan is not None and result.outcome == "dry-run":
        out.print(plain(f"plan: {move}"), highlight=False)
        for i, step in enumerate(result.plan.steps, 1):
            out.print(plain(f"  {i}. {step.name} (deadline {step.deadline:.0f}s): {step.does}"), highlight=False, soft_wrap=True)
        out.print("timeouts: " + ", ".join(f"{d.name} {d.seconds:g}s ({d.origin})" for d in result.timeouts), markup=False, highlight=False, soft_wrap=True)
        out.print("preflight checks:")
        for name, value in result.checks.items():
            out.print(plain(f"  {name}: {json.dumps(value)}"), highlight=False, soft_wrap=True)
    colour = "green" if result.ok else "red"
    out.print(f"[{colour}]{safe(result.outcome)}[/]: " + safe(move + (f": {result.message}" if result.message else "")), highlight=False, soft_wrap=True)
    if result.seconds:
        out.print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    if result.missed is not None:
        out.print(plain("  missed duties: " + ", ".join(f"{k} {v}" for k, v in result.missed.items())))
    for note in result.notes:
        out.print(plain(f"  note: {note}"), highlight=False, soft_wrap=True)
    for name, state in result.node_states.items():
        out.print(plain(f"  {name}: {json.dumps(state)}"), highlight=False)
    for what, commands in result.recovery.items():
        out.print(plain(f"  to {what}:"))
        for c in commands:
            out.print(plain(f"    {c}"), highlight=False, soft_wrap=True)
    for left in result.keys_left_behind:
        out.print(
            plain(f"WARNING: the pool key may still be on {left.node} ({left.path}), whose host could not be reached. "
                  f"If that host comes back and its neard starts, it signs beside {result.target}: a double sign.", "bold red"),
            highlight=False,
            soft_wrap=True,
        )
        out.print(plain(f"As soon as {left.node} answers again, before anything else, run:", "bold red"), highlight=False)
        for c in left.commands:
            out.print(plain(f"    {c}"), highlight=False, soft_wrap=True)


def human(value: Any) -> str:
    """A value as a person reads it: `-` for unknown, yes/no, a tracking dict as `key value`."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {human(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return "; ".join(human(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def role_text(node: Any, full: bool = True) -> str:
    """signer | standby (ready | not ready: why) | fenced (why; rejoin: command) | down (why);
    without ``full``, the short form for a table cell (the reasons follow the table)."""
    from near_failover.procedures.status import Role

    why = "; ".join(node.why)
    if node.role == Role.STANDBY:
        return f"{node.standby_mode} standby (" + ("ready)" if node.ready else (f"not ready: {why})" if full else "not ready)"))
    if node.role == Role.FENCED:
        return f"fenced ({why}; rejoin: {node.rejoin})" if full else "fenced"
    if node.role == Role.DOWN:
        return f"down ({why or 'its RPC does not answer'})" if full else "down"
    if node.role == Role.WRONG_KEY:
        return f"wrong key ({node.key_loaded})"
    return str(node.role.value)


def print_lease(lease: Any) -> None:
    if lease.error is not None:
        out.print(plain(f"lease ({lease.store}): cannot be read: {lease.error}", "red"), highlight=False, soft_wrap=True)
        return
    leader = lease.leader
    held = safe(f"{leader.member} holds it (generation {leader.generation})") if leader else "[red]nobody holds it[/]"
    decisions = "[yellow]paused[/] (no automatic promotion; `near-failover resume`)" if lease.paused else "on"
    out.print(f"lease ({safe(lease.store)}): {held}; automatic decisions {decisions}", highlight=False)
    for m in lease.members:
        health = "healthy" if m.healthy else "[red]" + safe("; ".join(m.problems) or "unhealthy") + "[/]"
        out.print(f"  agent {safe(m.name)}: {safe(m.role)}, {health}", highlight=False, soft_wrap=True)
    if lease.missing_agents:
        out.print(plain(f"  agents that should run and do not: {', '.join(lease.missing_agents)} "
                        "(start `near-failover agent -c INVENTORY --node NODE` beside each neard)", "red"), highlight=False, soft_wrap=True)


def print_production(p: Any) -> None:
    if p.epoch_length:
        out.print(f"epoch: height {p.height}, {p.epoch_progress_percent:g}% of {p.epoch_length} blocks since {p.epoch_start_height}", highlight=False)
    else:
        out.print(f"epoch: height {p.height}, started at {p.epoch_start_height} (length unknown)", highlight=False)
    for kind, k in p.kinds().items():
        pct = f"{k.percent:.1f}%" if k.percent is not None else "-"
        flag = " [red]below kickout threshold[/]" if k.at_risk else ""
        projected = ""
        if k.projected_percent is not None:
            colour = "red" if k.projected_at_risk else "green"
            projected = f", [{colour}]{k.projected_percent:.1f}% at the epoch's end[/] at the rate of the last {p.rate_blocks} blocks"
        out.print(f"{kind}: {k.produced}/{k.expected} {pct} (kickout < {k.kickout_threshold}%){flag}{projected}", highlight=False)
    online = f"{p.online_percent}%" if p.online_percent is not None else "-"
    out.print(f"online: {online} (rewards zero below {p.reward_thresholds['zero_below']}%, full from {p.reward_thresholds['full_from']}%)", highlight=False)


def print_status(view: Any) -> None:
    table = Table(title=plain(f"{view.validator} on {view.chain_id}"))
    for col in ("node", "role", "key staged", "key in home", "restart pending", "head", "lag", "syncing", "tracking", "memtries", "version"):
        table.add_column(col)
    for n in view.nodes:  # every cell is what a node answered: plain text, never markup
        table.add_row(*(plain(human(cell)) for cell in (
            n.name, role_text(n, full=False), n.key_staged, n.key_in_home, ("yes: " + "; ".join(n.restart_pending)) if n.restart_pending else (None if n.tracking is None else False),
            n.head, n.lag, n.syncing, n.tracking, n.memtries, n.version)))
    out.print(table)
    for n in view.nodes:
        if role_text(n) != role_text(n, full=False):
            out.print(plain(f"{n.name}: {role_text(n)}"), highlight=False, soft_wrap=True)
    if view.production is not None:
        print_production(view.production)
    if view.lease is not None:
        print_lease(view.lease)
    if view.double_signer_risk:
        out.print(f"[bold red]several nodes have the pool's key loaded: {safe(', '.join(view.signers))}[/]")
    for name in view.keys_left_in_home:
        out.print(
            plain(f"{name} has the pool's key in its home while {', '.join(view.signers)} signs: a restart or SIGHUP "
                  f"of its neard makes two signers. Stop its neard and move the key out of its home.", "bold red"),
            highlight=False,
            soft_wrap=True,
        )
    verdict = view.verdict
    if verdict is not None:
        word, colour = {0: ("ok", "green"), 3: ("degraded", "yellow")}.get(verdict.exit_code, ("critical", "bold red"))
        out.print(f"[{colour}]{word}[/]" + safe(": " + "; ".join(verdict.problems) if verdict.problems else ": one node signs and the chain shows it producing"),
                  highlight=False, soft_wrap=True)


def print_history(entries: list[Any]) -> None:
    """Each run: when, what, outcome and duration, who started it, the duties the pool missed,
    why it ended so, its steps with their durations, and the commands left to run."""
    if not entries:
        out.print("no runs yet")
        return
    for e in entries:
        run = e.run
        colour = "green" if run.state == "ok" else "red"
        mode = f" ({run.mode})" if run.mode else ""
        move = f" {run.from_node or '?'} -> {run.to_node}" if run.to_node else f" on {run.from_node or '?'}"
        took = f" in {_seconds(e.seconds)}" if e.seconds else ""  # an event starts and ends at once
        when = run.started.strftime("%Y-%m-%d %H:%M:%S UTC")
        out.print(f"[{colour}]run {run.id}[/] " + safe(f"{when} {run.kind}{mode}{move}: {run.state}{took}"), highlight=False, soft_wrap=True)
        out.print(plain(f"  started by {e.initiator}"), highlight=False, soft_wrap=True)
        if e.reason:
            out.print(plain(f"  reason: {e.reason}"), highlight=False, soft_wrap=True)
        if e.missed:
            out.print(plain("  missed duties: " + ", ".join(f"{k} {human(v)}" for k, v in e.missed.items())), highlight=False)
        for s in e.steps:
            if s.name == run.kind and len(e.steps) == 1:
                continue  # an event's one step repeats the run
            took = f" in {_seconds((s.ended - s.started).total_seconds())}" if s.ended else ""
            proof = f" (fence proven: {s.evidence['proof']})" if s.evidence.get("proof") else ""
            failed = s.outcome not in (None, "ok") and s.evidence.get("error") and not (e.reason and e.reason in s.evidence["error"])
            error = f": {s.evidence['error']}" if failed else ""
            out.print(plain(f"  {s.name}: {s.outcome or 'did not finish'}{took}{proof}{error}"), highlight=False, soft_wrap=True)
        if run.state != "ok" and run.detail.get("recovery"):
            for what, commands in run.detail["recovery"].items():
                out.print(plain(f"  to {what}:"))
                for c in commands:
                    out.print(plain(f"    {c}"), highlight=False, soft_wrap=True)


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 120 else f"{value / 60:.1f} min"
