"""`near-failover status|history`: the cluster now, and the journal's past runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from near_failover.cli.common import (
    HISTORY_LIMIT_MAX,
    STATUS_LEASE_TIMEOUT,
    InventoryOption,
    JsonOption,
    app,
    journal_or_fail,
    load_inventory_or_fail,
    print_json,
)
from near_failover.cli.render import print_history, print_status
from near_failover.cli_errors import EXIT_REFUSED


async def _lease_status(inv: Any) -> dict[str, Any]:
    """The automatic mode's state from the lease store; an unreadable store is shown, not fatal."""
    from near_failover.ha.lease import LeaseStoreError, cluster_view, open_lease_store

    try:
        async with open_lease_store(inv) as store:
            return {"store": inv.lease.store, **await asyncio.wait_for(cluster_view(store), STATUS_LEASE_TIMEOUT)}
    except asyncio.TimeoutError:
        return {"store": inv.lease.store, "error": f"no answer within {STATUS_LEASE_TIMEOUT:g}s"}
    except LeaseStoreError as exc:
        return {"store": inv.lease.store, "error": str(exc)}


@app.command("status")
def status(inventory: Path = InventoryOption, as_json: bool = JsonOption) -> None:
    """Per node: role, key loaded, head and lag, syncing, tracking, memtries, version; the pool's
    epoch production against the kickout (80/80/70) and reward (90/99) thresholds; and, with a
    [lease], who holds it, whether automatic decisions are paused, and each agent's health."""
    from near_failover.procedures.nodes import open_nodes
    from near_failover.procedures.status import cluster_status

    inv = load_inventory_or_fail(inventory)

    async def go() -> dict[str, Any]:
        async with open_nodes(inv) as nodes:
            view = await cluster_status(inv, nodes)
        if inv.lease is not None:
            view["lease"] = await _lease_status(inv)
        return view

    view = asyncio.run(go())
    if as_json:
        print_json(view)
    else:
        print_status(view)
    if view["double_signer_risk"]:
        raise typer.Exit(EXIT_REFUSED)


@app.command("history")
def history(
    inventory: Path = InventoryOption,
    limit: int = typer.Option(20, "--limit", min=1, max=HISTORY_LIMIT_MAX, help=f"How many runs, newest first (1 to {HISTORY_LIMIT_MAX})."),
    as_json: bool = JsonOption,
) -> None:
    """Past and interrupted runs with their steps, evidence and, where a run did not finish,
    the commands that finish or revert it."""
    inv = load_inventory_or_fail(inventory)
    with journal_or_fail(inv) as journal:
        runs = [{**run.to_json(), "steps": [s.to_json() for s in journal.steps(run.id)]} for run in journal.runs(inv.validator.account_id, limit)]
    if as_json:
        print_json(runs)
        return
    print_history(runs)

