"""`near-failover switchover|failover`: run a move here, or through the agents when a [lease] is set."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from near_failover.cli.common import (
    FOLLOW_FAILURES,
    FOLLOW_INTERVAL,
    FOLLOW_REQUEST_TIMEOUT,
    InventoryOption,
    JsonOption,
    app,
    deliver_alert,
    err,
    journal_or_fail,
    load_inventory_or_fail,
    print_json,
    run_and_print,
)
from near_failover.cli.render import print_agent_move, print_move, say_step
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain
from near_failover.ha.alerts import AlertEvent
from near_failover.inventory import Inventory, InventoryError, StandbyMode
from near_failover.procedures.plan import MoveKind, MoveOptions

if TYPE_CHECKING:
    from near_failover.api.models import RunAnswer
    from near_failover.procedures.move import MoveResult

TakeOverOption = typer.Option(
    False, "--take-over-interrupted",
    help="Start even though an earlier run was interrupted (after you checked each node with `status` and `history`).",
)


def _move(kind: MoveKind, inventory_path: Path, options: MoveOptions, dry_run: bool, yes: bool, as_json: bool) -> None:
    from near_failover.procedures.move import Move, MoveRequest
    from near_failover.procedures.nodes import open_nodes

    inventory = load_inventory_or_fail(inventory_path)
    try:
        target = inventory.node(options.to)
    except Exception as exc:  # UnknownNode names the known nodes
        fail(str(exc))
    options = replace(options, to=target.name, mode=options.mode or target.standby)
    pool = inventory.validator.account_id
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to {kind} without confirmation: pass --yes (or --dry-run to see the plan)")
        typer.confirm(f"{kind} {pool} to {target.name} ({options.mode})?", abort=True)
    if options.force and not dry_run:
        err.print(plain(f"--force skips the proof that the old signer is silent. If it still signs, {pool} double signs."))
        typed = typer.prompt("Type the pool id to confirm") if sys.stdin.isatty() else sys.stdin.readline().strip()
        if typed != pool:
            fail(f"confirmation {typed!r} does not match {pool}; nothing changed", EXIT_REFUSED)

    if inventory.lease is not None and not dry_run:
        via_agent = asyncio.run(_through_the_lease(inventory, kind, options))
        if via_agent is not None:
            who, answer = via_agent
            if as_json:
                print_json(answer.to_json())
            else:
                print_agent_move(who, answer)
            raise typer.Exit(0 if answer.ok else EXIT_REFUSED)

    async def go() -> MoveResult:
        async with open_nodes(inventory) as nodes:
            with journal_or_fail(inventory) as journal:
                progress = lambda msg: err.print(plain(msg, "dim"), highlight=False)  # noqa: E731
                move = Move(inventory, nodes, journal, MoveRequest(kind, options, progress=progress))
                result = await move.run(dry_run=dry_run)
        if not dry_run:
            await deliver_alert(inventory, AlertEvent.move(pool, result.to_json()))
        return result

    result = run_and_print(go(), as_json, print_move)
    if not result.ok:
        raise typer.Exit(EXIT_REFUSED)


async def _through_the_lease(inventory: Inventory, kind: MoveKind, options: MoveOptions) -> tuple[str, MoveResult] | None:
    """With agents running, the move goes where ha/operator.py's manual_move_route says; who ran
    it and its result (followed step by step), or None when the CLI may run it itself."""
    from near_failover.api.client import AgentApiError, AgentClient, api_verify
    from near_failover.ha.agent import load_token
    from near_failover.ha.lease import LeaseStoreError
    from near_failover.ha.operator import manual_move_route
    from near_failover.ha.stores import open_lease_store

    try:
        async with open_lease_store(inventory) as store:
            leader = await store.leader()
    except LeaseStoreError as exc:
        fail(f"the inventory has a [lease] but the lease store cannot be read ({exc}): refusing to move around the agents", EXIT_REFUSED)
    route = manual_move_route(kind, options.to, leader, {node.name: node.api for node in inventory.nodes})
    if route.refusal is not None:
        fail(route.refusal, EXIT_REFUSED)
    if route.runner is None:
        return None
    runner = inventory.node(route.runner)
    assert runner.api is not None  # manual_move_route sends a move only to an agent with an `api`
    try:
        token, verify = load_token(inventory), api_verify(inventory)
    except InventoryError as exc:
        fail(str(exc))
    shown: dict[int, str | None] = {}
    async with AgentClient(runner.name, runner.api, verify, token, FOLLOW_REQUEST_TIMEOUT) as agent:
        try:
            started = await agent.start_move(kind, options, confirm=inventory.validator.account_id if options.force else None)
        except AgentApiError as exc:
            if route.here_if_agent_stopped and exc.refused_connection:
                err.print(plain(f"no agent listens at {agent.api}: {runner.name}'s agent is stopped, so this failover runs from here"), highlight=False)
                return None
            fail(str(exc), EXIT_REFUSED)
        err.print(plain(f"run {started.run_id} started by {runner.name}'s agent; following {agent.api}{started.run}"), highlight=False)

        def show_steps(answer: RunAnswer) -> None:
            for step in answer.steps:
                say_step(step, shown)

        try:
            return runner.name, await agent.follow(started.run_id, show_steps, FOLLOW_INTERVAL, FOLLOW_FAILURES)
        except AgentApiError as exc:
            fail(f"{exc}; `near-failover history` shows where the run is", EXIT_REFUSED)


@app.command("switchover")
def switchover(
    inventory: Path = InventoryOption,
    to: str = typer.Option(..., "--to", help="The node that takes over signing."),
    mode: Optional[StandbyMode] = typer.Option(None, "--mode", help="hot-swap (Option 2, SIGHUP) or rpc (Option 1, restart). Default: the node's standby mode."),
    in_window: bool = typer.Option(False, "--in-window", help="Wait (bounded) for a gap in the pool's duties long enough for the swap."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the preflight results; change nothing."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    take_over: bool = TakeOverOption,
    as_json: bool = JsonOption,
) -> None:
    """Planned move: the primary is alive and healthy (otherwise use `failover`)."""
    _move(MoveKind.SWITCHOVER, inventory, MoveOptions(to, mode, in_window=in_window, take_over_interrupted=take_over), dry_run, yes, as_json)


@app.command("failover")
def failover(
    inventory: Path = InventoryOption,
    to: str = typer.Option(..., "--to", help="The node that takes over signing."),
    mode: Optional[StandbyMode] = typer.Option(None, "--mode", help="hot-swap (Option 2, SIGHUP) or rpc (Option 1, restart). Default: the node's standby mode."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the preflight results; change nothing."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Skip the chain-silence proof for an unreachable primary; asks you to type the pool id."),
    take_over: bool = TakeOverOption,
    as_json: bool = JsonOption,
) -> None:
    """Unplanned move: the primary is broken or unreachable. Needs a proven fence: a stopped
    primary, or the chain showing the pool silent while duties were expected."""
    _move(MoveKind.FAILOVER, inventory, MoveOptions(to, mode, force=force, take_over_interrupted=take_over), dry_run, yes, as_json)

