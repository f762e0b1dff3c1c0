"""What every command shares: the root app, consoles, options, inventory and journal loading."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from near_failover.cli_errors import SafeTyperGroup, fail
from near_failover.console import console, plain
from near_failover.ha.alerts import send_alert
from near_failover.redact import redact_record

STATUS_LEASE_TIMEOUT = 10.0


HISTORY_LIMIT_MAX = 1_000_000


FOLLOW_INTERVAL = 0.3


FOLLOW_REQUEST_TIMEOUT = 10.0


FOLLOW_FAILURES = 30


app = typer.Typer(
    help="Fenced, verified, journaled failover for NEAR validators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    cls=SafeTyperGroup,  # every failure ends in one line, never a traceback (cli_errors.py)
    rich_markup_mode=None,  # help text is printed as written: `[lease]` stays
)


def _print_version(value: bool) -> None:
    if value:
        from near_failover import installed_version

        sys.stdout.write(f"near-failover {installed_version()}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version, help="Print near-failover's version and exit."),
) -> None:
    """Fenced, verified, journaled failover for NEAR validators."""


out = console()


err = console(stderr=True)


HomeOption = typer.Option(..., "--home", help="neard home directory (holds config.json).", file_okay=False)


JsonOption = typer.Option(False, "--json", help="Print JSON for scripts.")


InventoryOption = typer.Option(
    None, "-c", "--inventory", dir_okay=False,
    help="The inventory TOML (validator, nodes, journal); default: $NEAR_FAILOVER_CONFIG, else /etc/near-failover/inventory.toml.",
)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(redact_record(data), indent=2) + "\n")


def inventory_path_or_fail(path: Path | None) -> Path:
    """The inventory to use: -c, else $NEAR_FAILOVER_CONFIG, else the system one; when the one
    chosen does not exist, one line naming all three places and `init`."""
    from near_failover.inventory import inventory_path

    chosen, tried = inventory_path(path, os.environ)
    if chosen is None:
        fail(f"no inventory: {tried}; pass -c PATH, set NEAR_FAILOVER_CONFIG, or write one with `near-failover init`")
    return chosen


def load_inventory_or_fail(path: Path | None) -> Any:
    from near_failover.inventory import InventoryError, load_inventory

    try:
        return load_inventory(inventory_path_or_fail(path))
    except InventoryError as exc:
        fail(str(exc))


def journal_or_fail(inventory: Any) -> Any:
    """The inventory's journal; a path that cannot hold it (read-only, not a directory) is an
    input error naming the file and the fix."""
    from near_failover.procedures.journal import Journal, JournalError

    path = Path(inventory.journal.path)
    fix = "set [journal] path in the inventory to a file in a directory this user can write"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{path}: cannot create the journal's directory {path.parent} ({exc.strerror}); {fix}")
    try:
        return Journal(path)
    except JournalError as exc:
        fail(f"{exc}; {fix}")


def log_to_stderr() -> None:
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


async def deliver_alert(inventory: Any, event: Any) -> list[Any]:
    """Deliver ``event`` to the inventory's [[alert]] targets (every retry); say which failed."""
    log_to_stderr()  # the senders' log lines must not mix with --json on stdout
    results = await send_alert(inventory.alerts, event)
    for result in results:
        if not result.ok:
            err.print(plain(f"alert to {result.target} not delivered after {result.attempts} tries: {result.error}"), highlight=False, soft_wrap=True)
    return results

