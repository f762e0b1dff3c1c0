"""The `near-failover` command.

Exit codes: 0 success, 1 a check failed or an operation was refused (or a bug: one line names its
crash log), 2 a usage or input error (cli_errors.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from near_failover.cli_errors import EXIT_INPUT, EXIT_REFUSED, SafeTyperGroup, fail
from near_failover.console import console, plain, safe
from near_failover.ha.alerts import AlertEvent, AlertKind, send_alert
from near_failover.localnet.cli import app as localnet_app
from near_failover.neard import config as neard_config
from near_failover.neard.account import account_id_problem
from near_failover.neard.check import Finding, Severity, check_home, check_running, read_home
from near_failover.neard.keys import KeyFileError, load_key_file, permission_problems
from near_failover.redact import redact_record, redact_url

STATUS_LEASE_TIMEOUT = 10.0
HISTORY_LIMIT_MAX = 1_000_000
# Following a move run by an agent: one GET /runs/{id} every FOLLOW_INTERVAL, each bounded; the
# agent counts as lost after FOLLOW_FAILURES answers in a row that did not come.
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
config_app = typer.Typer(help="Show and edit a neard config.json for a failover role.", no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="Inspect and stage validator key files (secrets are never shown).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
alert_app = typer.Typer(help="Check the alert targets of an inventory.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(alert_app, name="alert")
app.add_typer(localnet_app, name="localnet")

out = console()
err = console(stderr=True)

HomeOption = typer.Option(..., "--home", help="neard home directory (holds config.json).", file_okay=False)
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(redact_record(data), indent=2) + "\n")


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


# --- config -------------------------------------------------------------------------------


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
    if mode == StandbyMode.hot_swap:
        if not validator_id:
            fail("--mode hot-swap needs --validator-id <pool id> (the account this standby shadows)")
        problem = account_id_problem(validator_id)
        if problem:
            fail(f"--validator-id: {problem}")
    with config_errors_fail(home / "config.json"):
        if mode == StandbyMode.hot_swap:
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
        table.add_row("file", plain(file))
        table.add_row("account_id", plain(key.account_id))  # redacted: a secret pasted there is not shown
        table.add_row("public_key", plain(key.public_key))
        table.add_row("valid", "yes: the public key matches the secret key")
        for w in warnings:
            table.add_row("[yellow]warning[/]", plain(f"{w} (fix: chmod 600 {file})"))
        out.print(table)
    raise typer.Exit(EXIT_REFUSED if warnings else 0)


# --- check --------------------------------------------------------------------------------


class CheckRole(str, Enum):
    validator = "validator"
    rpc_standby = "rpc-standby"
    hot_swap_standby = "hot-swap-standby"


@app.command("check")
def check(
    home: Optional[Path] = typer.Option(None, "--home", help="neard home directory (holds config.json).", file_okay=False),
    role: Optional[CheckRole] = typer.Option(None, "--role", help="What this node should be."),
    validator_id: Optional[str] = typer.Option(None, "--validator-id", help="The pool id this node serves."),
    rpc: Optional[str] = typer.Option(None, "--rpc", help="Also check the running node at this RPC URL."),
    chain_id: Optional[str] = typer.Option(None, "--chain-id", help="Expected chain id (default: genesis.json in the home)."),
    control: bool = typer.Option(False, "--control", help="Check what fencing --node needs from this machine (with -c and --node)."),
    inventory: Optional[Path] = typer.Option(
        None, "-c", "--inventory", dir_okay=False,
        help="Alone: check every node's home and key_store by real path on its machine. With --control and --node: what fencing that node needs.",
    ),
    node: Optional[str] = typer.Option(None, "--node", help="The inventory's node, for --control."),
    as_json: bool = JsonOption,
) -> None:
    """Lint a neard home (and its running process) against a role and the failover guide; with -c,
    the inventory's homes and key stores by the real paths each machine resolves; with --control,
    what fencing an inventory node needs (its fence_command), changing nothing."""
    if control:
        _check_control(inventory, node, as_json)
        return
    if inventory is not None and home is None:
        _check_layout(inventory, as_json)
        return
    if home is None or role is None:
        fail("check needs --home and --role, or -c INVENTORY (homes and key stores), or --control with -c INVENTORY and --node NODE")
    if not home.is_dir():
        fail(f"{home} is not a directory: pass the neard home with --home")
    if validator_id and (problem := account_id_problem(validator_id)):
        fail(f"--validator-id: {problem}")
    if rpc:
        from near_failover.urls import http_url_problem

        if problem := http_url_problem(rpc):
            fail(f"--rpc {redact_url(rpc)!r}: {problem}; pass the running node's JSON-RPC address, such as http://127.0.0.1:3030")
    wanted = neard_config.Role(role.value)
    facts = read_home(home, chain_id)
    if facts.config_error:
        fail(facts.config_error)  # unreadable or not JSON: an input error, as for `config show`
    with config_errors_fail(home / "config.json"):
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


def _check_layout(inventory_path: Path, as_json: bool) -> None:
    from near_failover.hosts import HostError
    from near_failover.inventory import nodes_by_machine
    from near_failover.procedures.nodes import layout_problems_on, open_nodes

    inv = load_inventory_or_fail(inventory_path)
    why = "neard loads validator_key.json from its home: a key store inside any home, or a home two nodes share, can put the pool key in two signing processes"

    async def go() -> list[Finding]:
        findings: list[Finding] = []
        async with open_nodes(inv) as nodes:
            for machine, group in nodes_by_machine(inv.nodes).items():
                try:
                    problems = await layout_problems_on(nodes, nodes[group[0].name])
                except HostError as exc:
                    findings.append(Finding(Severity.WARNING, f"cannot resolve the paths on {machine}: {exc}", why, "make the host reachable and run this check again"))
                    continue
                findings += [Finding(Severity.ERROR, problem, why, "give each node its own home and keep every key_store outside all of them") for problem in problems]
        return findings

    _report_findings(asyncio.run(go()), {"inventory": str(inventory_path)}, f"every home and key_store in {inventory_path} is apart, by real path.", as_json)


def _check_control(inventory_path: Path | None, name: str | None, as_json: bool) -> None:
    from near_failover.procedures.fence import fence_command_findings

    if inventory_path is None or name is None:
        fail("check --control needs -c INVENTORY and --node NODE")
    inventory = load_inventory_or_fail(inventory_path)
    try:
        node = inventory.node(name)
    except Exception as exc:  # UnknownNode names the known nodes
        fail(str(exc))
    ok_line = f"{node.name}'s fence_command ({(node.fence_command or ['?'])[0]}) is set and runnable here."
    _report_findings(fence_command_findings(node), {"node": node.name}, ok_line, as_json)


def _report_findings(findings: list[Finding], head: dict[str, Any], ok_line: str, as_json: bool) -> None:
    """Findings as JSON or lines, `ok_line` when there are none; exit 1 on any error."""
    ok = not any(f.severity == Severity.ERROR for f in findings)
    if as_json:
        print_json({**head, "ok": ok, "findings": [f.to_json() for f in findings]})
    elif not findings:
        out.print(f"[green]ok[/]: {safe(ok_line)}", highlight=False)
    else:
        _print_finding_lines(findings)
    if not ok:
        raise typer.Exit(EXIT_REFUSED)


def _print_finding_lines(findings: list[Finding]) -> None:
    for f in findings:
        colour = "red" if f.severity == Severity.ERROR else "yellow"
        out.print(f"[{colour}]{f.severity.value}[/]: {safe(f.what)}", highlight=False, soft_wrap=True)
        out.print(plain(f"  why: {f.why}"), highlight=False, soft_wrap=True)
        out.print(plain(f"  fix: {f.fix}"), highlight=False, soft_wrap=True)


def _print_findings(findings: list[Finding], home: Path, role: neard_config.Role, as_json: bool) -> None:
    if as_json:
        print_json({"home": str(home), "role": role.value, "ok": not any(f.severity == Severity.ERROR for f in findings), "findings": [f.to_json() for f in findings]})
        return
    if not findings:
        out.print(f"[green]ok[/]: {safe(home)} is ready as {role.value}.")
        return
    _print_finding_lines(findings)


# --- switchover, failover, keys stage, status, history ---------------------------------------

InventoryOption = typer.Option(..., "-c", "--inventory", help="The inventory TOML (validator, nodes, journal).", dir_okay=False)


TakeOverOption = typer.Option(
    False, "--take-over-interrupted",
    help="Start even though an earlier run was interrupted (after you checked each node with `status` and `history`).",
)


class MoveMode(str, Enum):
    hot_swap = "hot-swap"
    rpc = "rpc"


def load_inventory_or_fail(path: Path) -> Any:
    from near_failover.inventory import InventoryError, load_inventory

    try:
        return load_inventory(path)
    except InventoryError as exc:
        fail(str(exc))


def _journal(inventory: Any) -> Any:
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
            who, result = via_agent
            if as_json:
                print_json(result)
            else:
                out.print(plain(f"{'ok' if result.get('ok') else 'failed'}: run {result.get('run_id')} by {who}'s agent: {result.get('message') or result.get('outcome')}"), highlight=False, soft_wrap=True)
                if result.get("seconds"):
                    out.print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items()))
            raise typer.Exit(0 if result.get("ok") else EXIT_REFUSED)

    async def go() -> Any:
        async with open_nodes(inventory) as nodes:
            with _journal(inventory) as journal:
                move = Move(inventory, nodes, kind, chosen, to, journal, force=force, in_window=in_window, take_over_interrupted=take_over,  # type: ignore[arg-type]
                            progress=lambda msg: err.print(plain(msg, "dim"), highlight=False))
                result = await move.run(dry_run=dry_run)
        if not dry_run:
            await _alert(inventory, AlertEvent.move(pool, result.to_json()))
        return result

    try:
        result = asyncio.run(go())
    except JournalError as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        print_json(result.to_json())
    else:
        _print_move(result)
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
            _say_step(step, shown)
        if not run["active"] and run["state"] != "in-progress":
            return run["result"] or {"ok": run["state"] == "ok", "outcome": run["state"], "run_id": run_id, "message": run["detail"].get("message", "")}
        await asyncio.sleep(FOLLOW_INTERVAL)


def _say_step(step: dict[str, Any], shown: dict[int, str | None]) -> None:
    """A step's start, then its end, each printed once (as a move run here prints them)."""
    from datetime import datetime

    if step["id"] not in shown:
        err.print(plain(f"{step['name']}...", "dim"), highlight=False)
        shown[step["id"]] = None
    if step["outcome"] is not None and shown[step["id"]] is None:
        seconds = (datetime.fromisoformat(step["ended"]) - datetime.fromisoformat(step["started"])).total_seconds()
        proof = f" (fence proven: {step['evidence']['proof']})" if step["evidence"].get("proof") else ""
        err.print(plain(f"{step['name']}: {step['outcome']} in {seconds:.2f}s{proof}", "dim"), highlight=False)
        shown[step["id"]] = step["outcome"]


async def _alert(inventory: Any, event: Any) -> list[Any]:
    """Deliver ``event`` to the inventory's [[alert]] targets (every retry); say which failed."""
    _log_to_stderr()  # the senders' log lines must not mix with --json on stdout
    results = await send_alert(inventory.alerts, event)
    for result in results:
        if not result.ok:
            err.print(plain(f"alert to {result.target} not delivered after {result.attempts} tries: {result.error}"), highlight=False, soft_wrap=True)
    return results


def _print_move(result: Any) -> None:
    """The move's plan, outcome and recovery; every value in it comes from nodes or the inventory,
    so it is printed as plain text (a `[/]` in a node's answer is shown, not read as markup)."""
    move = f"{result.kind} ({result.mode}) {result.source or '?'} -> {result.target}"
    if result.plan is not None and result.outcome == "dry-run":
        out.print(plain(f"plan: {move}"), highlight=False)
        for i, step in enumerate(result.plan.steps, 1):
            out.print(plain(f"  {i}. {step.name} (deadline {step.deadline:.0f}s): {step.does}"), highlight=False, soft_wrap=True)
        out.print("timeouts: " + ", ".join(f"{d.name} {d.seconds:g}s ({d.origin})" for d in result.timeouts), markup=False, highlight=False, soft_wrap=True)
        out.print("preflight checks:")
        for name, value in result.checks.items():
            out.print(plain(f"  {name}: {json.dumps(value)}"), highlight=False, soft_wrap=True)
    colour = "green" if result.ok else "red"
    out.print(f"[{colour}]{safe(result.outcome)}[/]: " + safe(move + (f": {result.message}" if result.message else "")), highlight=False, soft_wrap=True)
    if result.seconds:
        out.print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    if result.missed is not None:
        out.print(plain("  missed duties: " + ", ".join(f"{k} {v}" for k, v in result.missed.items())))
    for note in result.notes:
        out.print(plain(f"  note: {note}"), highlight=False, soft_wrap=True)
    for name, state in result.node_states.items():
        out.print(plain(f"  {name}: {json.dumps(state)}"), highlight=False)
    for what, commands in result.recovery.items():
        out.print(plain(f"  to {what}:"))
        for c in commands:
            out.print(plain(f"    {c}"), highlight=False, soft_wrap=True)
    for left in result.keys_left_behind:
        out.print(
            plain(f"WARNING: the pool key may still be on {left.node} ({left.path}), whose host could not be reached. "
                  f"If that host comes back and its neard starts, it signs beside {result.target}: a double sign.", "bold red"),
            highlight=False,
            soft_wrap=True,
        )
        out.print(plain(f"As soon as {left.node} answers again, before anything else, run:", "bold red"), highlight=False)
        for c in left.commands:
            out.print(plain(f"    {c}"), highlight=False, soft_wrap=True)


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


async def _lease_status(inv: Any) -> dict[str, Any]:
    """The automatic mode's state from the lease store; an unreadable store is shown, not fatal."""
    from near_failover.ha.lease import LeaseStoreError, cluster_view, open_lease_store

    try:
        async with open_lease_store(inv) as store:
            return {"store": inv.lease.store, **await asyncio.wait_for(cluster_view(store), STATUS_LEASE_TIMEOUT)}
    except asyncio.TimeoutError:
        return {"store": inv.lease.store, "error": f"no answer within {STATUS_LEASE_TIMEOUT:g}s"}
    except LeaseStoreError as exc:
        return {"store": inv.lease.store, "error": str(exc)}


def _print_lease(lease: dict[str, Any]) -> None:
    if "error" in lease:
        out.print(plain(f"lease ({lease['store']}): cannot be read: {lease['error']}", "red"), highlight=False, soft_wrap=True)
        return
    leader = lease["leader"]
    held = safe(f"{leader['member']} holds it (generation {leader['generation']})") if leader else "[red]nobody holds it[/]"
    decisions = "[yellow]paused[/] (no automatic promotion; `near-failover resume`)" if lease["paused"] else "on"
    out.print(f"lease ({safe(lease['store'])}): {held}; automatic decisions {decisions}", highlight=False)
    for m in lease["members"]:
        health = "healthy" if m["healthy"] else "[red]" + safe("; ".join(m["problems"])) + "[/]"
        out.print(f"  agent {safe(m['name'])}: {safe(m['role'])}, {health}", highlight=False, soft_wrap=True)


def _print_status(view: dict[str, Any]) -> None:
    table = Table(title=plain(f"{view['validator']} on {view['chain_id']}"))
    for col in ("node", "role", "key loaded", "head", "lag", "syncing", "tracking", "memtries", "version"):
        table.add_column(col)
    for n in view["nodes"]:  # every cell is what a node answered: plain text, never markup
        table.add_row(*(plain(cell) for cell in (
            n["name"], n["role"], n.get("key_loaded") or "-", n.get("head", "-"), n.get("lag", "-"),
            n.get("syncing", "-"), json.dumps(n.get("tracking")), n.get("memtries", "-"), n.get("version", "-"))))
    out.print(table)
    p = view["production"]
    if p:
        for kind in ("blocks", "chunks", "endorsements"):
            k = p[kind]
            pct = f"{k['percent']:.1f}%" if k["percent"] is not None else "-"
            flag = " [red]below kickout threshold[/]" if k["at_risk"] else ""
            out.print(f"{kind}: {k['produced']}/{k['expected']} {pct} (kickout < {k['kickout_threshold']}%){flag}")
        out.print(f"online: {p['online_percent']}% (rewards zero below 90%, full from 99%)")
    if "lease" in view:
        _print_lease(view["lease"])
    if view["double_signer_risk"]:
        out.print(f"[bold red]several nodes have the pool's key loaded: {safe(', '.join(view['signers']))}[/]")
    for name in view["keys_left_in_home"]:
        out.print(
            plain(f"{name} has the pool's key in its home while {', '.join(view['signers'])} signs: a restart or SIGHUP "
                  f"of its neard makes two signers. Stop its neard and move the key out of its home.", "bold red"),
            highlight=False,
            soft_wrap=True,
        )


@app.command("status")
def status(inventory: Path = InventoryOption, as_json: bool = JsonOption) -> None:
    """Per node: role, key loaded, head and lag, syncing, tracking, memtries, version; the pool's
    epoch production against the kickout (80/80/70) and reward (90/99) thresholds; and, with a
    [lease], who holds it, whether automatic decisions are paused, and each agent's health."""
    from near_failover.procedures.nodes import open_nodes
    from near_failover.procedures.status import cluster_status

    inv = load_inventory_or_fail(inventory)

    async def go() -> dict[str, Any]:
        async with open_nodes(inv) as nodes:
            view = await cluster_status(inv, nodes)
        if inv.lease is not None:
            view["lease"] = await _lease_status(inv)
        return view

    view = asyncio.run(go())
    if as_json:
        print_json(view)
    else:
        _print_status(view)
    if view["double_signer_risk"]:
        raise typer.Exit(EXIT_REFUSED)


def _print_history(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        colour = "green" if run["state"] == "ok" else "red"
        mode = f" ({run['mode']})" if run["mode"] else ""
        move = f" {run['from']} -> {run['to']}" if run["to"] else f" on {run['from']}"
        out.print(f"[{colour}]run {run['id']}[/] " + safe(f"{run['started']} {run['kind']}{mode}{move}: {run['state']}"), highlight=False)
        for s in run["steps"]:
            out.print(plain(f"  {s['name']}: {s['outcome'] or 'did not finish'}"), highlight=False)
        if run["state"] != "ok" and run["detail"].get("recovery"):
            for what, commands in run["detail"]["recovery"].items():
                out.print(plain(f"  to {what}:"))
                for c in commands:
                    out.print(plain(f"    {c}"), highlight=False, soft_wrap=True)


@app.command("history")
def history(
    inventory: Path = InventoryOption,
    limit: int = typer.Option(20, "--limit", min=1, max=HISTORY_LIMIT_MAX, help=f"How many runs, newest first (1 to {HISTORY_LIMIT_MAX})."),
    as_json: bool = JsonOption,
) -> None:
    """Past and interrupted runs with their steps, evidence and, where a run did not finish,
    the commands that finish or revert it."""
    inv = load_inventory_or_fail(inventory)
    with _journal(inv) as journal:
        runs = [{**run.to_json(), "steps": [s.to_json() for s in journal.steps(run.id)]} for run in journal.runs(inv.validator.account_id, limit)]
    if as_json:
        print_json(runs)
        return
    _print_history(runs)


# --- demo ---------------------------------------------------------------------------------


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
        _print_status(report["status"])
        _print_history(report["history"])
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


# --- automatic mode ---------------------------------------------------------------------------


def _log_to_stderr() -> None:
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


@app.command("agent")
def agent(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node this agent runs beside."),
) -> None:
    """Run the automatic-mode agent beside one neard: renew the lease while healthy, fence itself
    before it can expire, promote the best standby when the leader is gone. Serves its API on the
    node's `api` address when the inventory gives one."""
    import signal as signals

    from near_failover.api.client import api_verify
    from near_failover.ha.agent import Agent, AgentError, load_token
    from near_failover.ha.lease import LeaseStoreError, open_lease_store
    from near_failover.inventory import InventoryError

    _log_to_stderr()
    inv = load_inventory_or_fail(inventory)
    try:
        spec = inv.node(node)
        store = open_lease_store(inv, spec.name)
        token, verify = load_token(inv), api_verify(inv)
    except (InventoryError, LeaseStoreError) as exc:  # an unknown node, unusable [lease] settings
        fail(str(exc))
    server = _api_server(spec)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with store:
            with _journal(inv) as journal:
                the_agent = Agent(inv, spec.name, store, journal, token=token, api_verify=verify)
                tasks = [asyncio.create_task(the_agent.run(stop))]
                if server is not None:
                    from near_failover.api.app import create_app

                    server.app = create_app(the_agent, the_agent.token)
                    tasks.append(asyncio.create_task(server.run()))
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                stop.set()
                for task in pending:
                    if task is not tasks[0]:
                        task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for task in done:
                    task.result()

    try:
        asyncio.run(go())
    except AgentError as exc:
        fail(str(exc), EXIT_REFUSED)


def _api_server(spec: Any) -> Any:
    """The node's agent API, bound (with its TLS files loaded) before the agent starts, so a busy
    port or a wrong certificate stops the agent at once with the address or the file named."""
    if not spec.api:
        return None
    from urllib.parse import urlsplit

    from near_failover.api.server import ApiServer, ApiServerError, ServerTls

    where = urlsplit(spec.api)
    tls = ServerTls(spec.api_cert_file, spec.api_key_file) if spec.api_cert_file and spec.api_key_file else None
    try:
        return ApiServer(None, where.hostname or "127.0.0.1", where.port or (443 if tls else 8008), tls)
    except ApiServerError as exc:
        fail(f"node {spec.name}: {exc}")


def _set_paused(inventory: Path, paused: bool) -> None:
    from near_failover.ha.lease import LeaseStoreError, open_lease_store

    inv = load_inventory_or_fail(inventory)

    async def go() -> None:
        async with open_lease_store(inv) as store:
            await store.set_paused(paused)

    try:
        asyncio.run(go())
    except LeaseStoreError as exc:
        fail(str(exc), EXIT_REFUSED)
    out.print("automatic decisions paused: agents keep renewing but never promote" if paused else "automatic decisions resumed")


@alert_app.command("test")
def alert_test(inventory: Path = InventoryOption, as_json: bool = JsonOption) -> None:
    """Send a test message to every alert target of the inventory; exit 1 if any of them fails."""
    import socket

    inv = load_inventory_or_fail(inventory)
    if not inv.alerts:
        fail(f"{inventory}: no alert target: add an alert table (kind = json|slack|telegram|apprise), see deploy/inventory.example.toml")
    event = AlertEvent.condition(AlertKind.TEST, inv.validator.account_id, socket.gethostname(),
                                 "a test sent by `near-failover alert test`: this target receives near-failover's alerts")
    results = asyncio.run(_alert(inv, event))
    if as_json:
        print_json([{"target": r.target, "ok": r.ok, "status": r.status, "error": r.error, "attempts": r.attempts} for r in results])
    else:
        for r in results:
            out.print(plain(f"{'ok' if r.ok else 'FAILED'}: {r.target}" + ("" if r.ok else f" ({r.error})")), highlight=False, soft_wrap=True)
    if not all(r.ok for r in results):
        raise typer.Exit(EXIT_REFUSED)


@app.command("pause")
def pause(inventory: Path = InventoryOption) -> None:
    """Stop automatic promotions for this validator (maintenance); leaders keep their lease."""
    _set_paused(inventory, True)


@app.command("resume")
def resume(inventory: Path = InventoryOption) -> None:
    """Restart automatic decisions after `pause`."""
    _set_paused(inventory, False)


@app.command("guard")
def guard(
    inventory: Path = InventoryOption,
    node: str = typer.Option(..., "--node", help="The node whose neard is about to start."),
) -> None:
    """Boot guard for systemd's ExecStartPre: refuse (exit 1) to let neard start with the key in
    its home unless this node holds the lease."""
    from near_failover.ha.guard import boot_guard
    from near_failover.ha.lease import LeaseStoreError, open_lease_store
    from near_failover.inventory import InventoryError

    inv = load_inventory_or_fail(inventory)
    try:
        node = inv.node(node).name
        store = open_lease_store(inv, node)
    except (InventoryError, LeaseStoreError) as exc:  # an unknown node, unusable [lease] settings: neard does not start
        fail(str(exc))

    async def go() -> Any:
        async with store:
            return await boot_guard(inv, node, store)

    verdict = asyncio.run(go())
    (out if verdict.allowed else err).print(plain(("ok: " if verdict.allowed else "refused: ") + verdict.reason), highlight=False, soft_wrap=True)
    if not verdict.allowed:
        raise typer.Exit(EXIT_REFUSED)
