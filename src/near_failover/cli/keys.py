"""`near-failover keys ...`: inspect and stage validator key files; secrets are never shown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from near_failover.cli.common import InventoryOption, JsonOption, err, load_inventory_or_fail, out, print_json
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain
from near_failover.neard.keys import KeyFileError, load_key_file, permission_problems

keys_app = typer.Typer(help="Inspect and stage validator key files (secrets are never shown).", no_args_is_help=True, rich_markup_mode=None)


@keys_app.command("inspect")
def keys_inspect(
    file: Path = typer.Argument(..., help="A validator_key.json or node_key.json."),
    as_json: bool = JsonOption,
) -> None:
    """Account id, public key, validity and permission warnings. Never prints the secret."""
    try:
        key = load_key_file(file)
    except KeyFileError as exc:
        fail(str(exc))
    warnings = permission_problems(file)
    if as_json:
        print_json({"file": str(file), "account_id": key.account_id, "public_key": key.public_key, "valid": True, "warnings": warnings})
    else:
        table = Table(show_header=False, box=None)
        table.add_row("file", plain(file))
        table.add_row("account_id", plain(key.account_id))  # redacted: a secret pasted there is not shown
        table.add_row("public_key", plain(key.public_key))
        table.add_row("valid", "yes: the public key matches the secret key")
        for w in warnings:
            table.add_row("[yellow]warning[/]", plain(w))  # each warning already says the fix
        out.print(table)
    raise typer.Exit(EXIT_REFUSED if warnings else 0)


@keys_app.command("stage")
def keys_stage(
    inventory: Path = InventoryOption,
    to: str = typer.Option(..., "--to", help="The node whose key_store receives the key."),
    from_file: Optional[Path] = typer.Option(None, "--from", help="The key file (default: a copy found on another node)."),
    as_json: bool = JsonOption,
) -> None:
    """Put the pool key in a node's key_store (0600, outside neard's home) after checking it
    against the on-chain key, so a failover works when the primary is gone."""
    from near_failover.procedures.errors import Refused
    from near_failover.procedures.keystage import stage_key
    from near_failover.procedures.nodes import open_nodes

    inv = load_inventory_or_fail(inventory)
    inv.node(to)  # an unknown --to is an input error (UnknownNode), before any node is reached

    async def go() -> dict[str, Any]:
        async with open_nodes(inv) as nodes:
            return await stage_key(inv, nodes, to, from_file)

    try:
        report = asyncio.run(go())
    except Refused as exc:
        fail(str(exc), EXIT_REFUSED)
    for warning in report["warnings"]:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(report)
    else:
        out.print(plain(f"staged {report['public_key']} at {report['node']}:{report['key_store']} (mode 0600), matches the on-chain key"), highlight=False, soft_wrap=True)

