"""`near-failover demo`: the main job on a localnet, start to summary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from near_failover.cli.common import JsonOption, app, err, out, print_json
from near_failover.cli.render import print_history, print_status
from near_failover.cli_errors import EXIT_INPUT, EXIT_REFUSED, fail
from near_failover.console import plain, safe


@app.command("demo")
def demo(
    directory: Optional[Path] = typer.Option(None, "--dir", help="Keep the localnet here (default: a temporary folder, removed after)."),
    block_time: float = typer.Option(0.6, "--block-time", min=0.05, help="Seconds per block of the localnet (mainnet: 0.6)."),
    memtrie_load: float = typer.Option(3.0, "--memtrie-load", min=0.0, help="Seconds an Option 1 restart spends loading memtries."),
    auto: bool = typer.Option(False, "--auto", help="The automatic mode: agents on a sqlite lease; val-a's neard is killed and val-b takes over on its own."),
    as_json: bool = JsonOption,
) -> None:
    """Start a localnet, switch over val-a -> val-b by hot swap, kill val-b, fail over to val-c
    by restart, show status and history, stop the localnet, and print a summary."""
    from near_failover.demo import DemoStepFailed, run_auto_demo, run_demo

    say = (lambda msg: err.print(plain(msg, "dim"), highlight=False)) if as_json else (lambda msg: out.print(f"[cyan]>[/] {safe(msg)}", highlight=False))
    try:
        report = asyncio.run((run_auto_demo if auto else run_demo)(directory, block_time, memtrie_load, say))
    except DemoStepFailed as exc:
        fail(str(exc), EXIT_INPUT if exc.exit_code == EXIT_INPUT else EXIT_REFUSED)
    summary = {"moves": report["moves"], "double_signs": report["double_signs"]}
    if as_json:
        print_json(summary)
    else:
        print_status(report["status"])
        print_history(report["history"])
        table = Table(title="moves")
        for col in ("kind", "mode", "from", "to", "ok", "fence s", "activate s", "verify s", "total s", "missed b/c/e"):
            table.add_column(col)
        for m in report["moves"]:
            s, x = m["seconds"], m["missed"]
            table.add_row(plain(m["kind"]), plain(m["mode"]), plain(m["from"]), plain(m["to"]), str(m["ok"]), f"{s['fence']:.2f}", f"{s['activate']:.2f}", f"{s['verify']:.2f}", f"{s['total']:.2f}", f"{x['blocks']}/{x['chunks']}/{x['endorsements']}")
        out.print(table)
        colour = "green" if report["double_signs"] == 0 else "red"
        out.print(f"[{colour}]double signs in the chain's ledger: {report['double_signs']}[/]")
    if report["double_signs"] or not all(m["ok"] for m in report["moves"]):
        raise typer.Exit(EXIT_REFUSED)

