"""`near-failover check`: lint a neard home, an inventory's layout, or what fencing a node needs."""

from __future__ import annotations

import asyncio
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from near_failover.cli.common import JsonOption, app, load_inventory_or_fail, out, print_json
from near_failover.cli.config import config_errors_fail
from near_failover.cli.render import print_finding_lines
from near_failover.cli_errors import EXIT_REFUSED, fail
from near_failover.console import safe
from near_failover.neard import config as neard_config
from near_failover.neard.account import account_id_problem
from near_failover.neard.check import Finding, Severity, check_home, check_running, read_home
from near_failover.redact import redact_url


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
    control: bool = typer.Option(False, "--control", help="Prove, changing nothing, that --node's login may run every command a fence and an activation need (sudo rules, writable home), that its control finds the neard answering on its rpc, and its fence_command (with -c and --node)."),
    inventory: Optional[Path] = typer.Option(
        None, "-c", "--inventory", dir_okay=False,
        help="Alone: check every node's home and key_store by real path on its machine. With --control and --node: what fencing that node needs.",
    ),
    node: Optional[str] = typer.Option(None, "--node", help="The inventory's node, for --control."),
    as_json: bool = JsonOption,
) -> None:
    """Lint a neard home (and its running process) against a role and the failover guide; with -c,
    the inventory's homes and key stores by the real paths each machine resolves; with --control,
    what fencing an inventory node needs (its fence_command, its login's rights, a control that
    finds its running neard), changing nothing."""
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

    if name is None:
        fail("check --control needs -c INVENTORY and --node NODE")
    inventory = load_inventory_or_fail(inventory_path)
    try:
        node = inventory.node(name)
    except Exception as exc:  # UnknownNode names the known nodes
        fail(str(exc))
    findings = fence_command_findings(node) + asyncio.run(_rights(node, inventory)) + asyncio.run(_control_finds_neard(node.name, inventory))
    ok_line = (
        f"{node.name}'s fence_command ({(node.fence_command or ['?'])[0]}) is set and runnable here, every "
        f"command a fence and an activation run on {node.name} is allowed for its login (privilege = {node.privilege}), "
        f"and its control finds the neard that answers on {node.rpc}."
    )
    _report_findings(findings, {"node": node.name}, ok_line, as_json)


async def _rights(node: Any, inventory: Any) -> list[Finding]:
    from near_failover.hosts import host_for
    from near_failover.procedures.rights import rights_findings

    async with host_for(node, inventory.ssh) as host:
        return await rights_findings(node, host)


async def _control_finds_neard(name: str, inventory: Any) -> list[Finding]:
    """The neard that answers on the node's RPC is the one its control stops, SIGHUPs and restarts."""
    from near_failover.procedures.nodes import control_misses_neard, open_nodes

    why = "a fence, a SIGHUP or a restart goes through the control: one that does not find the running neard misses it"
    async with open_nodes(inventory) as nodes:
        node = nodes[name]
        if await node.status_or_none() is None:
            return [Finding(Severity.WARNING, f"{name}'s neard does not answer on {node.spec.rpc}: its control was not checked against it", why,
                            "start neard and run this check again")]
        problem = await control_misses_neard(node)
    return [] if problem is None else [Finding(Severity.ERROR, problem, why, f"fix `control` for {name}: the pid file or unit of the neard serving {node.spec.home}")]


def _report_findings(findings: list[Finding], head: dict[str, Any], ok_line: str, as_json: bool) -> None:
    """Findings as JSON or lines, `ok_line` when there are none; exit 1 on any error."""
    ok = not any(f.severity == Severity.ERROR for f in findings)
    if as_json:
        print_json({**head, "ok": ok, "findings": [f.to_json() for f in findings]})
    elif not findings:
        out.print(f"[green]ok[/]: {safe(ok_line)}", highlight=False)
    else:
        print_finding_lines(findings)
    if not ok:
        raise typer.Exit(EXIT_REFUSED)


def _print_findings(findings: list[Finding], home: Path, role: neard_config.Role, as_json: bool) -> None:
    if as_json:
        print_json({"home": str(home), "role": role.value, "ok": not any(f.severity == Severity.ERROR for f in findings), "findings": [f.to_json() for f in findings]})
        return
    if not findings:
        out.print(f"[green]ok[/]: {safe(home)} is ready as {role.value}.")
        return
    print_finding_lines(findings)

