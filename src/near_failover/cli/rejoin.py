"""`near-failover rejoin`: make a fenced or former primary a ready standby again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from near_failover.cli.common import (
    InventoryOption,
    JsonOption,
    app,
    err,
    journal_or_fail,
    load_inventory_or_fail,
    out,
    run_and_print,
)
from near_failover.cli.render import print_finding_lines
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain, safe


@app.command("rejoin")
def rejoin(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The fenced or former primary to bring back as a standby."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1.0, help="Seconds to wait for neard to start and sync. Default: the node's activate_rpc deadline.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Park the key if it is still in the node's home while another node signs, unmask, set
    config.json for its inventory standby mode (backup kept), start, wait for sync and run the
    readiness checks of `check --role <mode>-standby`. Exit 0 when ready, 1 when not (with why)."""
    from near_failover.inventory import UnknownNode
    from near_failover.procedures.nodes import open_nodes
    from near_failover.procedures.rejoin import Rejoin

    inv = load_inventory_or_fail(inventory)
    try:
        inv.node(node)
    except UnknownNode as exc:  # it names the known nodes
        fail(str(exc))

    async def go() -> Any:
        async with open_nodes(inv) as nodes:
            with journal_or_fail(inv) as journal:
                return await Rejoin(inv, nodes, node, journal, timeout, progress=lambda msg: err.print(plain(msg, "dim"), highlight=False)).run()

    result = run_and_print(go(), as_json, _print_rejoin)
    if not result.ready:
        raise typer.Exit(EXIT_REFUSED)


def _print_rejoin(result: Any) -> None:
    colour = "green" if result.ready else "red"
    out.print(f"[{colour}]{safe(result.outcome)}[/]: " + safe(result.message), highlight=False, soft_wrap=True)
    if result.seconds:
        out.print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    for note in result.notes:
        out.print(plain(f"  note: {note}"), highlight=False, soft_wrap=True)
    print_finding_lines(result.findings)
