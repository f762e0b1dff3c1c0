"""`near-failover switchover|failover`: run a move here, or through the agents when a [lease] is set."""

from __future__ import annotations

import asyncio
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

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
    out,
    print_json,
)
from near_failover.cli.render import print_move, say_step
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain
from near_failover.ha.alerts import AlertEvent

TakeOverOption = typer.Option(
    False, "--take-over-interrupted",
    help="Start even though an earlier run was interrupted (after you checked each node with `status` and `history`).",
)


class MoveMode(str, Enum):
    hot_swap = "hot-swap"
    rpc = "rpc"


def _move(kind: str, inventory_path: Path, to: str, mode: Optional[MoveMode], in_window: bool, dry_run: bool, yes: bool, force: bool, as_json: bool, take_over: bool) -> None:
    from near_failover.procedures.journal import JournalError
    from near_failover.procedures.move import Move
    from near_failover.procedures.nodes import open_nodes
    from near_failover.procedures.plan import MoveOptions

    inventory = load_inventory_or_fail(inventory_path)
    try:
        target = inventory.node(to)
    except Exception as exc:  # UnknownNode names the known nodes
        fail(str(exc))
    chosen = mode.value if mode else target.standby
    pool = inventory.validator.account_id
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to {kind} without confirmation: pass --yes (or --dry-run to see the plan)")
        typer.confirm(f"{kind} {pool} to {to} ({chosen})?", abort=True)
    if force and not dry_run:
        err.print(plain(f"--force skips the proof that the old signer is silent. If it still signs, {pool} double signs."))
        typed = typer.prompt("Type the pool id to confirm") if sys.stdin.isatty() else sys.stdin.readline().strip()
        if typed != pool:
            fail(f"confirmation {typed!r} does not match {pool}; nothing changed", EXIT_REFUSED)

    if inventory.lease is not None and not dry_run:
        options = MoveOptions(target.name, chosen, in_window=in_window, force=force, take_over_interrupted=take_over)  # type: ignore[arg-type]
        via_agent = asyncio.run(_through_the_lease(inventory, kind, options))
        if via_agent is not None:
            who, answer = via_agent
            if as_json:
                print_json(answer)
            else:
                out.print(plain(f"{'ok' if answer.get('ok') else 'failed'}: run {answer.get('run_id')} by {who}'s agent: {answer.get('message') or answer.get('outcome')}"), highlight=False, soft_wrap=True)
                if answer.get("seconds"):
                    out.print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in answer["seconds"].items()))
            raise typer.Exit(0 if answer.get("ok") else EXIT_REFUSED)

    async def go() -> Any:
        async with open_nodes(inventory) as nodes:
            with journal_or_fail(inventory) as journal:
                move = Move(inventory, nodes, kind, chosen, to, journal, force=force, in_window=in_window, take_over_interrupted=take_over,  # type: ignore[arg-type]
                            progress=lambda msg: err.print(plain(msg, "dim"), highlight=False))
                result = await move.run(dry_run=dry_run)
        if not dry_run:
            await deliver_alert(inventory, AlertEvent.move(pool, result.to_json()))
        return result

    try:
        result = asyncio.run(go())
    except JournalError as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        print_json(result.to_json())
    else:
        print_move(result)
    if not result.ok:
        raise typer.Exit(EXIT_REFUSED)


async def _through_the_lease(inventory: Any, kind: str, options: Any) -> tuple[str, dict[str, Any]] | None:
    """With agents running, a manual move never goes around them: a switchover is run by the
    leader's agent (which then hands the lease over); a failover is refused while a leader holds
    the lease, and otherwise run by the target's agent under the lease. Returns who ran it and
    its result (followed step by step), or None when the CLI may run the move itself: a
    switchover with no leader, a failover whose target has no `api` or no agent listening."""
    import httpx

    from near_failover.api.client import api_client, api_verify
    from near_failover.ha.agent import load_token
    from near_failover.ha.lease import LeaseStoreError, open_lease_store
    from near_failover.ha.operator import STOP_THE_AGENTS
    from near_failover.inventory import InventoryError

    try:
        async with open_lease_store(inventory) as store:
            leader = await store.leader()
    except LeaseStoreError as exc:
        fail(f"the inventory has a [lease] but the lease store cannot be read ({exc}): refusing to move around the agents", EXIT_REFUSED)
    if kind == "failover" and leader is not None:
        fail(f"{leader.member} holds the lease (generation {leader.generation}): {STOP_THE_AGENTS}", EXIT_REFUSED)
    if leader is None and kind == "switchover":
        return None
    runner = inventory.node(options.to if leader is None else leader.member)
    if not runner.api:
        if kind == "failover":
            return None
        fail(f"{runner.name} holds the lease but has no `api` in the inventory: run the switchover through its agent's API", EXIT_REFUSED)
    try:
        token, verify = load_token(inventory), api_verify(inventory)
    except InventoryError as exc:
        fail(str(exc))
    body: dict[str, Any] = {"to": options.to, "mode": options.mode, "take_over_interrupted": options.take_over_interrupted}
    if kind == "switchover":
        body["in_window"] = options.in_window
    elif options.force:  # the pool id the operator typed above
        body.update(force=True, confirm=inventory.validator.account_id)
    api = runner.api.rstrip("/")
    async with api_client(verify, token, FOLLOW_REQUEST_TIMEOUT) as client:
        try:
            answer = await client.post(f"{api}/{kind}", json=body)
        except httpx.HTTPError as exc:
            if kind == "failover" and _refused_connection(exc):
                err.print(plain(f"no agent listens at {api}: {runner.name}'s agent is stopped, so this failover runs from here"), highlight=False)
                return None
            fail(f"{runner.name}'s agent API at {api} did not answer ({exc})", EXIT_REFUSED)
        try:
            started = answer.json()
        except ValueError:
            fail(f"{runner.name}'s agent API answered HTTP {answer.status_code} without JSON", EXIT_REFUSED)
        if answer.status_code != 202:
            fail(f"{runner.name}'s agent refused the {kind} (HTTP {answer.status_code}): {started.get('message', started)}", EXIT_REFUSED)
        run_id = started["run_id"]
        err.print(plain(f"run {run_id} started by {runner.name}'s agent; following {api}/runs/{run_id}"), highlight=False)
        return runner.name, await _follow_run(client, api, runner.name, run_id)


def _refused_connection(exc: BaseException) -> bool:
    """Nothing listens at the address (a stopped agent), unlike a TLS or a network failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _follow_run(client: Any, api: str, who: str, run_id: int) -> dict[str, Any]:
    """Print the run's steps as the agent's journal records them, until its move has ended; the
    move's result (or, when the agent kept none, the run's outcome from the journal)."""
    import httpx

    shown: dict[int, str | None] = {}
    misses = 0
    while True:
        try:
            answer = await client.get(f"{api}/runs/{run_id}")
            run = answer.json()
            if answer.status_code != 200:
                fail(f"{who}'s agent cannot show run {run_id} (HTTP {answer.status_code}): {run.get('message', run)}", EXIT_REFUSED)
            misses = 0
        except (httpx.HTTPError, ValueError) as exc:
            misses += 1
            if misses >= FOLLOW_FAILURES:
                fail(f"lost {who}'s agent API while following run {run_id} ({exc}); `near-failover history` shows where the run is", EXIT_REFUSED)
            await asyncio.sleep(FOLLOW_INTERVAL)
            continue
        for step in run["steps"]:
            say_step(step, shown)
        if not run["active"] and run["state"] != "in-progress":
            return run["result"] or {"ok": run["state"] == "ok", "outcome": run["state"], "run_id": run_id, "message": run["detail"].get("message", "")}
        await asyncio.sleep(FOLLOW_INTERVAL)


@app.command("switchover")
def switchover(
    inventory: Path = InventoryOption,
    to: str = typer.Option(..., "--to", help="The node that takes over signing."),
    mode: Optional[MoveMode] = typer.Option(None, "--mode", help="hot-swap (Option 2, SIGHUP) or rpc (Option 1, restart). Default: the node's standby mode."),
    in_window: bool = typer.Option(False, "--in-window", help="Wait (bounded) for a gap in the pool's duties long enough for the swap."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the preflight results; change nothing."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    take_over: bool = TakeOverOption,
    as_json: bool = JsonOption,
) -> None:
    """Planned move: the primary is alive and healthy (otherwise use `failover`)."""
    _move("switchover", inventory, to, mode, in_window, dry_run, yes, False, as_json, take_over)


@app.command("failover")
def failover(
    inventory: Path = InventoryOption,
    to: str = typer.Option(..., "--to", help="The node that takes over signing."),
    mode: Optional[MoveMode] = typer.Option(None, "--mode", help="hot-swap (Option 2, SIGHUP) or rpc (Option 1, restart). Default: the node's standby mode."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the preflight results; change nothing."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Skip the chain-silence proof for an unreachable primary; asks you to type the pool id."),
    take_over: bool = TakeOverOption,
    as_json: bool = JsonOption,
) -> None:
    """Unplanned move: the primary is broken or unreachable. Needs a proven fence: a stopped
    primary, or the chain showing the pool silent while duties were expected."""
    _move("failover", inventory, to, mode, False, dry_run, yes, force, as_json, take_over)

