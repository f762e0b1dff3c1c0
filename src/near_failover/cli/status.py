"""`near-failover status|history`: the cluster now, and the journal's past runs."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from near_failover.cli.common import (
    HISTORY_LIMIT_MAX,
    STATUS_LEASE_TIMEOUT,
    STATUS_RATE_BLOCKS,
    InventoryOption,
    JsonOption,
    app,
    journal_or_fail,
    load_inventory_or_fail,
    out,
    print_json,
)
from near_failover.cli.render import print_history, print_status
from near_failover.cli_errors import fail


async def _lease_status(inv: Any) -> Any:
    """The automatic mode's state from the lease store; an unreadable store is shown, not fatal.
    Every inventory node should run an agent: one without a member record is named."""
    from near_failover.api.state_models import ClusterAnswer
    from near_failover.ha.lease import LeaseStoreError, cluster_view
    from near_failover.ha.stores import open_lease_store
    from near_failover.procedures.status import AgentStatus, LeaseStatus

    try:
        async with open_lease_store(inv) as store:
            view = await asyncio.wait_for(cluster_view(store), STATUS_LEASE_TIMEOUT)
    except TimeoutError:
        return LeaseStatus(store=inv.lease.store, error=f"no answer within {STATUS_LEASE_TIMEOUT:g}s")
    except LeaseStoreError as exc:
        return LeaseStatus(store=inv.lease.store, error=str(exc))
    seen = ClusterAnswer.of(view)  # as the agents' /cluster shows it
    lease = LeaseStatus(store=inv.lease.store, leader=seen.leader, paused=seen.paused,
                        members=[AgentStatus(name=m.name, role=m.role, healthy=m.healthy, problems=m.problems) for m in seen.members])
    present = {m.name for m in lease.members}
    lease.missing_agents = [n.name for n in inv.nodes if n.name not in present]
    return lease


@app.command("status")
def status(
    inventory: Path = InventoryOption,
    as_json: bool = JsonOption,
    watch: float | None = typer.Option(None, "--watch", metavar="SECONDS", min=0.5, help="Show the status again every SECONDS until Ctrl-C (then exit 0)."),
    rate_blocks: int = typer.Option(STATUS_RATE_BLOCKS, "--rate-blocks", metavar="N", min=0, max=10_000,
                                    help="Project each kickout ratio to the epoch's end at the rate of the next N blocks (status waits for them; 0: no projection)."),
) -> None:
    """Per node: role (signer, standby ready or not and why, fenced and how to rejoin, down and
    why), key staged, key in home, restart pending, head and lag, version; the pool's epoch
    progress and production against the kickout (80/80/70) and reward (90/99) thresholds,
    projected to the epoch's end; and, with a [lease], who holds it, whether automatic decisions
    are paused, and each agent's health. Exit 0: one node signs and the chain shows it
    producing; 1: nobody or several sign, a kickout is projected, or no node answers; 3: signing
    but degraded (no ready standby, an agent down, the lease store unreadable, paused)."""
    from near_failover.procedures.nodes import open_nodes
    from near_failover.procedures.status import cluster_status, judge

    inv = load_inventory_or_fail(inventory)

    async def once(earlier: Any = None, rate: int = rate_blocks) -> Any:
        async with open_nodes(inv) as nodes:
            view = await cluster_status(inv, nodes, rate, earlier)
        if inv.lease is not None:
            view.lease = await _lease_status(inv)
        view.verdict = judge(view)
        return view

    def show(view: Any) -> None:
        if as_json:
            print_json(view.to_json())
        else:
            print_status(view)

    if watch is None:
        view = asyncio.run(once())
        show(view)
        raise typer.Exit(view.verdict.exit_code)
    _watch(once, show, watch, rate_blocks, as_json)


def _watch(once: Any, show: Any, every: float, rate_blocks: int, as_json: bool) -> None:
    """Show the status every ``every`` seconds; the projection's rate comes from the samples of
    the last ``rate_blocks`` blocks this loop has already taken. Ctrl-C ends it with exit 0."""
    import time

    from near_failover.procedures.chain_view import Production

    samples: list[Production] = []
    try:
        while True:
            started = time.monotonic()
            view = asyncio.run(once(_window_start(samples, rate_blocks), 0))
            p = view.production
            if p is not None:
                samples.append(Production(height=p.height, epoch_start_height=p.epoch_start_height,
                                          **{f"{k}_{c}": getattr(v, c) for k, v in p.kinds().items() for c in ("produced", "expected")}))
                del samples[:-1000]
            if not as_json:
                out.rule(time.strftime("%H:%M:%S"))
            show(view)
            time.sleep(max(0.0, every - (time.monotonic() - started)))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _window_start(samples: list[Any], blocks: int) -> Any:
    """The oldest sample within the last ``blocks`` blocks (the projection's window)."""
    if not samples or not blocks:
        return None
    head = samples[-1].height
    inside = [s for s in samples if head - s.height <= blocks]
    return inside[0] if inside else samples[-1]


KindOption = typer.Option(None, "--kind", metavar="KIND",
                          help="Only runs of this kind (switchover, failover, auto-failover, self-fence, ...); repeat for several.")


@app.command("history")
def history(
    inventory: Path = InventoryOption,
    limit: int = typer.Option(20, "--limit", min=1, max=HISTORY_LIMIT_MAX, metavar="N", help=f"How many runs, newest first (1 to {HISTORY_LIMIT_MAX})."),
    since: str | None = typer.Option(None, "--since", metavar="WHEN",
                                     help="Only runs started since WHEN: a UTC date or time (2026-12-01, 2026-12-01T08:00) or a span back from now (30m, 6h, 7d)."),
    kinds: list[str] | None = KindOption,
    as_json: bool = JsonOption,
) -> None:
    """Past and interrupted runs: who started each, how long it took, its steps, the duties the
    pool missed, why it was refused or stopped and, where a run did not finish, the commands
    that finish or revert it."""
    inv = load_inventory_or_fail(inventory)
    start = parse_since(since) if since is not None else None
    with journal_or_fail(inv) as journal:
        entries = journal.history(inv.validator.account_id, limit, kinds or None, start)
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    print_history(entries)


def parse_since(text: str) -> datetime:
    """``--since``: an ISO date or time (UTC unless it says otherwise), or ``<n>m|h|d`` ago."""
    import re
    from datetime import UTC, timedelta

    if match := re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text):
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--since {text!r}: expected a date or time (2026-12-01, 2026-12-01T08:00) or a span back from now (30m, 6h, 7d)")
    return when if when.tzinfo else when.replace(tzinfo=UTC)
