"""`near-failover init`: a first inventory, commented, and the agents' API token (0600).

It asks for what it lacks on a terminal; without one (a provisioning script) every value must be
given, and a missing one is an input error. It never overwrites: an existing inventory or token
is the operator's, and a second run must not replace the token that agents already share.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import typer

from near_failover.cli.common import app, out
from near_failover.cli_errors import fail
from near_failover.console import safe
from near_failover.inventory import (
    INVENTORY_ENV,
    SYSTEM_INVENTORY,
    InventoryError,
    parse_host,
    parse_inventory,
)
from near_failover.neard.account import account_id_problem

TOKEN_NAME = "api-token"
NODE_HELP = 'A node as NAME=HOST, HOST "local" or "ssh://user@host[:port]"; repeat it per node, the first is the preferred signer.'


def node_table(name: str, host: str, priority: int) -> str:
    """One [[node]] table with the defaults of a Debian machine set up as docs/operations.md says."""
    spec = parse_host(host)
    address = "127.0.0.1" if spec.kind == "local" else spec.hostname or "127.0.0.1"
    shown = f"[{address}]" if ":" in address else address
    sudo = spec.kind == "ssh" and spec.user not in (None, "root")
    return f'''
[[node]]
name = "{name}"
host = "{spec}"
home = "/home/near/.near"                               # neard's home (config.json, data/)
rpc = "http://{shown}:3030"
control = "systemd:neard.service"
{'privilege = "sudo"                                      # systemctl via deploy/sudoers/near-failover' if sudo else '# privilege = "sudo"                                    # when the login is not root'}
key_store = "/etc/near-failover/validator_key.json"     # the staged key, outside the home, 0600
standby = "hot-swap"                                    # Option 2 when it does not sign; "rpc" for Option 1
priority = {priority}
api = "http://{shown}:8008"                             # its agent's API (automatic mode)
# fence_command = ["/usr/local/bin/your-stonith", "{name}"]   # powers its machine off (see the runbook)
'''


def inventory_text(account_id: str, chain_id: str, nodes: list[tuple[str, str]], token: Path) -> str:
    """The whole inventory: manual mode, with automatic mode's [lease] ready to uncomment."""
    tables = "".join(node_table(name, host, 100 - 10 * index) for index, (name, host) in enumerate(nodes))
    return f'''# near-failover inventory, written by `near-failover init`. Every key is described in
# deploy/inventory.example.toml; check it with `near-failover check -c THIS_FILE` and, per node,
# `near-failover check -c THIS_FILE --node NAME --control`.

[validator]
account_id = "{account_id}"
chain_id = "{chain_id}"

[journal]
path = "/var/lib/near-failover/journal.sqlite"

[ssh]                                   # host keys are always checked: fill known_hosts first
known_hosts = "/etc/near-failover/known_hosts"
identity = ["/etc/near-failover/id_ed25519"]
{tables}
# Automatic mode: uncomment with a 3-member etcd (docs/operations.md, "etcd placement").
# [lease]
# store = "etcd"
# endpoints = ["http://10.0.0.21:2379", "http://10.0.0.22:2379", "http://10.0.0.23:2379"]
# ttl = 10
# loop_wait = 1
# retry_timeout = 2
# api_token_file = "{token}"
'''


def _create(path: Path, text: str, mode: int) -> None:
    """Write ``text`` whole to a new file ``path`` (mode set before any byte); never replaces one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if path exists: no window where another file is replaced
    finally:
        tmp.unlink(missing_ok=True)


def _value(given: str | None, option: str, prompt: str) -> str:
    if given:
        return given
    if not sys.stdin.isatty():
        fail(f"init: {option} is missing and there is no terminal to ask; pass {option}")
    return str(typer.prompt(prompt))


def _node(value: str) -> tuple[str, str]:
    name, sep, host = value.partition("=")
    if not sep or not name or not host:
        fail(f"--node {value!r}: expected NAME=HOST, such as val-a=ssh://near@10.0.0.11")
    try:
        parse_host(host)
    except ValueError as exc:
        fail(f"--node {value!r}: {exc}")
    return name, host


InitInventoryOption = typer.Option(None, "-c", "--inventory", dir_okay=False, help=f"Where to write it; default: ${INVENTORY_ENV}, else {SYSTEM_INVENTORY}.")
AccountOption = typer.Option(None, "--account-id", help="The pool's account id, such as mypool.poolv1.near.")
ChainOption = typer.Option(None, "--chain-id", help="mainnet, testnet or localnet.")
NodesOption = typer.Option(None, "--node", help=NODE_HELP)


@app.command("init")
def init(
    inventory: Path | None = InitInventoryOption,
    account_id: str | None = AccountOption,
    chain_id: str | None = ChainOption,
    nodes: list[str] | None = NodesOption,
) -> None:
    """Write a commented inventory and a new API token (0600) beside it; never overwrites."""
    path = inventory or Path(os.path.expanduser(os.environ.get(INVENTORY_ENV, "").strip() or str(SYSTEM_INVENTORY)))
    token_path = path.with_name(TOKEN_NAME)
    for existing in (path, token_path):
        if existing.exists():
            fail(f"{existing} exists; init never overwrites: edit it, or pass -c with a new path")
    account = _value(account_id, "--account-id", "The pool's account id")
    if problem := account_id_problem(account):
        fail(f"--account-id: {problem}")
    chain = _value(chain_id, "--chain-id", "The chain id (mainnet, testnet)")
    given = list(nodes or [])
    if not given:
        if not sys.stdin.isatty():
            fail("init: --node is missing and there is no terminal to ask; pass --node NAME=HOST once per node")
        while answer := str(typer.prompt("A node as NAME=HOST (empty to finish)", default="", show_default=False)):
            given.append(answer)
    pairs = [_node(value) for value in given]
    text = inventory_text(account, chain, pairs, token_path)
    try:
        parse_inventory(text, path)  # what is written loads: a bad name or host is named now
    except InventoryError as exc:
        fail(str(exc).splitlines()[0])
    try:
        _create(token_path, secrets.token_urlsafe(32) + "\n", 0o600)
    except OSError as exc:
        fail(f"{token_path}: cannot create it ({exc.strerror}); init never overwrites: pass -c with a new path you can write")
    try:
        _create(path, text, 0o644)
    except OSError as exc:
        token_path.unlink(missing_ok=True)  # ours, just made: a re-run must not find it
        fail(f"{path}: cannot create it ({exc.strerror}); init never overwrites: pass -c with a new path you can write")
    out.print(f"wrote {safe(path)} and {safe(token_path)} (0600); next: `near-failover check -c {safe(path)}`", highlight=False)
