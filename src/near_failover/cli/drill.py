"""`near-failover drill`: checks, a dry run, a switchover and the switch back, with a report of
what the network showed (procedures/drill.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

from near_failover.cli.common import InventoryOption, app, err, journal_or_fail, load_inventory_or_fail, out
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain, safe
from near_failover.redact import redact_record

YesOption = typer.Option(False, "--yes", help="Run every step without asking (the moves are real).")
ReportOption = typer.Option(None, "--report", dir_okay=False, help="Write the JSON report there (default: drill-<UTC>.json here).")


@app.command("drill")
def drill(inventory: Path | None = InventoryOption, yes: bool = YesOption, report_path: Path | None = ReportOption) -> None:
    """Measure on the real nodes what the timeouts assume: every check, a dry run, a switchover to
    the preferred standby and back (each old signer made a standby again), asking before each step
    unless --yes. The report gives per node its stop, restart, memtrie load, SIGHUP to first duty and
    missed duties, and the [timeouts] that fit them. docs/testnet-drill.md: run it on testnet first."""
    from near_failover.procedures.drill import run_drill
    from near_failover.procedures.nodes import open_nodes

    inv = load_inventory_or_fail(inventory)
    if not yes and not sys.stdin.isatty():
        fail("drill moves the validator: pass --yes, or run it on a terminal to confirm each step")

    def confirm(question: str) -> bool:
        return yes or typer.confirm(question, default=False)

    def say(message: str) -> None:
        err.print(plain(message, "dim"), highlight=False)

    async def go() -> object:
        async with open_nodes(inv) as nodes:
            with journal_or_fail(inv) as journal:
                return await run_drill(inv, nodes, journal, confirm, say)

    report = asyncio.run(go())
    data = report.to_json()  # type: ignore[attr-defined]
    path = report_path or Path(f"drill-{data['started_at'].replace(':', '')}.json")
    try:
        path.write_text(json.dumps(redact_record(data), indent=2) + "\n")
    except OSError as exc:
        fail(f"{path}: cannot write the report ({exc.strerror}); pass --report with a path you can write")
    if data["ok"]:
        out.print(f"[green]ok[/]: drill done; report in {safe(path)}; suggested {safe('[timeouts]')}: " + safe(", ".join(f"{k} = {v:g}" for k, v in data["suggested_timeouts"].items())), highlight=False)
    else:
        out.print(plain(f"drill stopped at: {data['stopped_at'] or 'an incomplete figure'}; report in {path}"), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED)
