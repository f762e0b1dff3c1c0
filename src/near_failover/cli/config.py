"""`near-failover config ...`: show and edit a neard config.json for a failover role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from near_failover.cli.common import HomeOption, JsonOption, err, out, print_json
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import plain
from near_failover.inventory import StandbyMode
from near_failover.neard import config as neard_config
from near_failover.neard.account import account_id_problem

config_app = typer.Typer(help="Show and edit a neard config.json for a failover role.", no_args_is_help=True, rich_markup_mode=None)


def load_home_config(home: Path) -> dict[str, Any]:
    try:
        return neard_config.load_config(home / "config.json")
    except neard_config.ConfigError as exc:
        fail(str(exc))


@contextmanager
def config_errors_fail(path: Path) -> Iterator[None]:
    """A field of config.json that neard would refuse (found while reading or editing it) is an
    input error: one line naming the file, the field and the fix."""
    try:
        yield
    except neard_config.ConfigError as exc:
        if exc.source != neard_config.CONFIG_FILENAME:
            fail(str(exc))  # it names its file already
        fail(f"{path}: {exc.problem} Fix that field, or restore the latest {path.name}.*.bak beside it.")


@config_app.command("show")
def config_show(home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """Effective shard tracking, memtries, the role the file matches, and legacy fields."""
    cfg = load_home_config(home)
    with config_errors_fail(home / "config.json"):
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
    else:
        _print_config_summary(summary, tracking.source)
    if summary["semantic_errors"]:
        raise typer.Exit(EXIT_REFUSED)  # neard would refuse this file: a script must see it


def _print_config_summary(summary: dict[str, Any], source: str) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("config", plain(summary["config"]))
    table.add_row("tracking", plain(f"{json.dumps(summary['tracking'])}  (from {source})"))
    table.add_row("memtries", str(summary["memtries"]).lower())
    table.add_row("role", summary["role"])
    table.add_row("legacy fields", plain(", ".join(summary["legacy_fields"]) or "none"))
    for problem in summary["semantic_errors"]:
        table.add_row("[red]neard error[/]", plain(problem))
    out.print(table)


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
    comments = bool(changes) and neard_config.file_has_comments(path)
    if changes and not dry_run:
        backup = neard_config.write_config(path, edited)
    if comments:
        # neard's own format has no comments; the operator's notes must not vanish unannounced.
        kept = f"they stay in the backup {backup}" if backup else "dry run: nothing written"
        err.print(f"[yellow]notice:[/] {path} has comments, which neard's format drops on write ({kept}).", highlight=False, soft_wrap=True)
    if as_json:
        print_json(
            {
                "config": str(path),
                "changes": [{"field": f, "old": _json_value(o), "new": _json_value(n)} for f, o, n in changes],
                "written": bool(changes) and not dry_run,
                "backup": str(backup) if backup else None,
                "comments_dropped": comments and not dry_run,
            }
        )
        return
    if not changes:
        out.print(plain(f"{path} already has these settings; nothing to change."))
        return
    for field, old, new in changes:
        if old is not neard_config.MISSING:
            out.print(plain(f"- {field}: {_show_value(old)}", "red"), highlight=False)
        if new is not neard_config.MISSING:
            out.print(plain(f"+ {field}: {_show_value(new)}", "green"), highlight=False)
    if dry_run:
        out.print("dry run: nothing written.")
    else:
        out.print(plain(f"written {path} (backup {backup})" if backup else f"written {path}"))
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
    if mode == StandbyMode.HOT_SWAP:
        if not validator_id:
            fail("--mode hot-swap needs --validator-id <pool id> (the account this standby shadows)")
        problem = account_id_problem(validator_id)
        if problem:
            fail(f"--validator-id: {problem}")
    with config_errors_fail(home / "config.json"):
        if mode == StandbyMode.HOT_SWAP:
            assert validator_id is not None  # checked above
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
    with config_errors_fail(home / "config.json"):
        _apply_edit(home, neard_config.as_validator(cfg), cfg, dry_run, as_json)
    if not as_json and not dry_run:
        out.print("Once it runs as a validator, this node can no longer go back to tracking all shards.")

