"""The `near-failover` command.

Exit codes: 0 success, 1 a check failed or an operation was refused, 2 a usage or input error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from near_failover.localnet.cli import app as localnet_app
from near_failover.neard import config as neard_config
from near_failover.neard.account import account_id_problem
from near_failover.neard.check import Finding, Severity, check_home, check_running, read_home
from near_failover.neard.keys import KeyFileError, load_key_file, permission_problems

EXIT_REFUSED = 1
EXIT_INPUT = 2

app = typer.Typer(
    help="Fenced, verified, journaled failover for NEAR validators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Show and edit a neard config.json for a failover role.", no_args_is_help=True)
keys_app = typer.Typer(help="Inspect and stage validator key files (secrets are never shown).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(localnet_app, name="localnet")

out = Console()
err = Console(stderr=True)

HomeOption = typer.Option(..., "--home", help="neard home directory (holds config.json).", file_okay=False)
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts.")


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def load_home_config(home: Path) -> dict[str, Any]:
    try:
        return neard_config.load_config(home / "config.json")
    except neard_config.ConfigError as exc:
        fail(str(exc))


# --- config -------------------------------------------------------------------------------


@config_app.command("show")
def config_show(home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """Effective shard tracking, memtries, the role the file matches, and legacy fields."""
    cfg = load_home_config(home)
    tracking = neard_config.effective_tracking(cfg)
    summary = {
        "config": str(home / "config.json"),
        "tracking": tracking.to_json(),
        "tracking_source": tracking.source,
        "memtries": neard_config.memtries_enabled(cfg),
        "role": neard_config.classify_role(cfg).value,
        "legacy_fields": neard_config.legacy_fields_present(cfg),
        "semantic_errors": neard_config.semantic_errors(cfg),
    }
    if as_json:
        print_json(summary)
        return
    table = Table(show_header=False, box=None)
    table.add_row("config", summary["config"])
    table.add_row("tracking", f"{json.dumps(summary['tracking'])}  (from {tracking.source})")
    table.add_row("memtries", str(summary["memtries"]).lower())
    table.add_row("role", summary["role"])
    table.add_row("legacy fields", ", ".join(summary["legacy_fields"]) or "none")
    for problem in summary["semantic_errors"]:
        table.add_row("[red]neard error[/]", problem)
    out.print(table)


class StandbyMode(str, Enum):
    rpc = "rpc"
    hot_swap = "hot-swap"


def _json_value(value: Any) -> Any:
    return None if value is neard_config.MISSING else value


def _show_value(value: Any) -> str:
    return "<absent>" if value is neard_config.MISSING else json.dumps(value)


def _apply_edit(home: Path, edited: dict[str, Any], original: dict[str, Any], dry_run: bool, as_json: bool) -> None:
    path = home / "config.json"
    changes = neard_config.config_diff(original, edited)
    problems = neard_config.semantic_errors(edited)
    backup = None
    if problems:
        fail(
            f"{path}: the edited config would not pass neard's checks, nothing written:\n  "
            + "\n  ".join(problems),
            EXIT_REFUSED,
        )
    if changes and not dry_run:
        backup = neard_config.write_config(path, edited)
    if as_json:
        print_json(
            {
                "config": str(path),
                "changes": [{"field": f, "old": _json_value(o), "new": _json_value(n)} for f, o, n in changes],
                "written": bool(changes) and not dry_run,
                "backup": str(backup) if backup else None,
            }
        )
        return
    if not changes:
        out.print(f"{path} already has these settings; nothing to change.")
        return
    for field, old, new in changes:
        if old is not neard_config.MISSING:
            out.print(f"[red]- {field}: {_show_value(old)}[/]", highlight=False)
        if new is not neard_config.MISSING:
            out.print(f"[green]+ {field}: {_show_value(new)}[/]", highlight=False)
    if dry_run:
        out.print("dry run: nothing written.")
    else:
        out.print(f"written {path} (backup {backup})" if backup else f"written {path}")
        out.print("Shard tracking and memtries take effect at neard's next restart, not on SIGHUP.")


@config_app.command("standby")
def config_standby(
    home: Path = HomeOption,
    mode: StandbyMode = typer.Option(..., "--mode", help="rpc: Option 1 (AllShards, memtries off); hot-swap: Option 2 (ShadowValidator, memtries on)."),
    validator_id: Optional[str] = typer.Option(None, "--validator-id", help="The pool id to shadow (required for --mode hot-swap)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the change and write nothing."),
    as_json: bool = JsonOption,
) -> None:
    """Prepare this node as a standby, as the failover guide's Option 1 or Option 2 says."""
    cfg = load_home_config(home)
    if mode == StandbyMode.hot_swap:
        if not validator_id:
            fail("--mode hot-swap needs --validator-id <pool id> (the account this standby shadows)")
        problem = account_id_problem(validator_id)
        if problem:
            fail(f"--validator-id: {problem}")
        edited = neard_config.as_hot_swap_standby(cfg, validator_id)
    else:
        edited = neard_config.as_rpc_standby(cfg)
    _apply_edit(home, edited, cfg, dry_run, as_json)


@config_app.command("promote")
def config_promote(
    home: Path = HomeOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the change and write nothing."),
    as_json: bool = JsonOption,
) -> None:
    """Set the validator settings: tracking NoShards, memtries on (takes effect at restart)."""
    cfg = load_home_config(home)
    _apply_edit(home, neard_config.as_validator(cfg), cfg, dry_run, as_json)
    if not as_json and not dry_run:
        out.print("Once it runs as a validator, this node can no longer go back to tracking all shards.")


# --- keys ---------------------------------------------------------------------------------


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
        table.add_row("file", str(file))
        table.add_row("account_id", key.account_id)
        table.add_row("public_key", key.public_key)
        table.add_row("valid", "yes: the public key matches the secret key")
        for w in warnings:
            table.add_row("[yellow]warning[/]", f"{w} (fix: chmod 600 {file})")
        out.print(table)
    raise typer.Exit(EXIT_REFUSED if warnings else 0)


# --- check --------------------------------------------------------------------------------


class CheckRole(str, Enum):
    validator = "validator"
    rpc_standby = "rpc-standby"
    hot_swap_standby = "hot-swap-standby"


@app.command("check")
def check(
    home: Path = HomeOption,
    role: CheckRole = typer.Option(..., "--role", help="What this node should be."),
    validator_id: Optional[str] = typer.Option(None, "--validator-id", help="The pool id this node serves."),
    rpc: Optional[str] = typer.Option(None, "--rpc", help="Also check the running node at this RPC URL."),
    chain_id: Optional[str] = typer.Option(None, "--chain-id", help="Expected chain id (default: genesis.json in the home)."),
    as_json: bool = JsonOption,
) -> None:
    """Lint a neard home (and its running process) against a role and the failover guide."""
    if not home.is_dir():
        fail(f"{home} is not a directory: pass the neard home with --home")
    if validator_id and (problem := account_id_problem(validator_id)):
        fail(f"--validator-id: {problem}")
    wanted = neard_config.Role(role.value)
    facts = read_home(home, chain_id)
    findings = check_home(facts, wanted, validator_id)
    if rpc:
        findings += asyncio.run(_check_rpc(rpc, facts, wanted, validator_id))
    _print_findings(findings, home, wanted, as_json)
    if any(f.severity == Severity.ERROR for f in findings):
        raise typer.Exit(EXIT_REFUSED)


async def _check_rpc(url: str, facts: Any, role: neard_config.Role, validator_id: str | None) -> list[Finding]:
    from near_failover.neard.rpc import NeardRpc, RpcError

    async with NeardRpc(url) as node:
        try:
            status = await node.status()
        except RpcError as exc:
            return [Finding(Severity.ERROR, str(exc), "The running node must answer to be checked.", "Start neard, or fix --rpc.")]
        try:
            client_config = await node.client_config()
        except RpcError:
            client_config = None  # older neard without client_config: the file checks stand alone
    return check_running(facts, role, validator_id, status, client_config)


def _print_findings(findings: list[Finding], home: Path, role: neard_config.Role, as_json: bool) -> None:
    if as_json:
        print_json({"home": str(home), "role": role.value, "ok": not any(f.severity == Severity.ERROR for f in findings), "findings": [f.to_json() for f in findings]})
        return
    if not findings:
        out.print(f"[green]ok[/]: {home} is ready as {role.value}.")
        return
    for f in findings:
        colour = "red" if f.severity == Severity.ERROR else "yellow"
        out.print(f"[{colour}]{f.severity.value}[/]: {f.what}", highlight=False, soft_wrap=True)
        out.print(f"  why: {f.why}", highlight=False, soft_wrap=True)
        out.print(f"  fix: {f.fix}", highlight=False, soft_wrap=True)
