"""What every command shares: the root app, consoles, options, inventory and journal loading."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer

from near_failover.cli_errors import EXIT_REFUSED, SafeTyperGroup, fail
from near_failover.console import console, plain
from near_failover.ha.alerts import send_alert
from near_failover.logs import LogFormat, LogLevel, configure_from_env, configure_logging
from near_failover.redact import redact_record

STATUS_LEASE_TIMEOUT = 10.0


# `status`: the blocks over which each kickout ratio's rate is measured for its projection.
STATUS_RATE_BLOCKS = 10


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


def run_and_print(work: Coroutine[Any, Any, Any], as_json: bool, human: Callable[[Any], None]) -> Any:
    """Run a journaled procedure and print its result (``to_json()`` with --json, else ``human``);
    a journal that refuses the run (another in progress, one interrupted) exits 1 with why."""
    import asyncio

    from near_failover.procedures.journal import JournalError

    try:
        result = asyncio.run(work)
    except JournalError as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        print_json(result.to_json())
    else:
        human(result)
    return result


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


LogFormatOption = typer.Option(LogFormat.CONSOLE, "--log-format", help="console (for a terminal; colours only there), json or logfmt (one event a line).")


LogLevelOption = typer.Option(LogLevel.INFO, "--log-level", help="The lowest level logged.")


def log_to_stderr(fmt: LogFormat | None = None, level: LogLevel = LogLevel.INFO, export: bool = False) -> None:
    """Logs to stderr, so they never mix with --json on stdout; ``export`` passes the format to
    the processes this one starts (the agent's watchdog). Without ``fmt``: the environment's."""
    if fmt is None:
        configure_from_env(sys.stderr)
    else:
        configure_logging(fmt, level, sys.stderr, export)


async def deliver_alert(inventory: Any, event: Any) -> list[Any]:
    """Deliver ``event`` to the inventory's [[alert]] targets (every retry); say which failed."""
    log_to_stderr()  # the senders' log lines must not mix with --json on stdout
    results = await send_alert(inventory.alerts, event)
    for result in results:
        if not result.ok:
            err.print(plain(f"alert to {result.target} not delivered after {result.attempts} tries: {result.error}"), highlight=False, soft_wrap=True)
    return results

