"""The exact commands an operator runs to finish or revert a move the tool could not complete.

Written to the journal before each risky step, so even if the tool is killed mid-run, `history`
shows what to do from where it stopped.
"""

from __future__ import annotations

import shlex

from near_failover.inventory import Node


def on_host(node: Node, argv: list[str]) -> str:
    """A command as the operator types it, through ssh when the node is remote."""
    command = shlex.join(argv)
    spec = node.host_spec
    if spec.kind == "local":
        return command
    target = f"{spec.user}@{spec.hostname}" if spec.user else str(spec.hostname)
    return shlex.join(["ssh", "-p", str(spec.port), target, command])


def _control(node: Node, action: str) -> str:
    spec = node.control_spec
    if spec.kind == "systemd":
        verb = {"start": ["start"], "reload": ["kill", "-s", "HUP"], "unmask": ["unmask"], "stop": ["stop"]}[action]
        return on_host(node, ["systemctl", *verb, str(spec.unit)])
    if spec.kind == "pidfile":
        pidfile = str(spec.pidfile)
        if action == "unmask":
            return on_host(node, ["rm", "-f", pidfile + ".masked"])
        if action in ("reload", "stop"):
            sig = "HUP" if action == "reload" else "TERM"
            return on_host(node, ["sh", "-c", f"kill -{sig} \"$(cat {shlex.quote(pidfile)})\""])
        start = shlex.join(node.start or [])
        log = shlex.quote(str(node.log_path))
        return on_host(node, ["sh", "-c", f"setsid -f sh -c 'echo $$ > {shlex.quote(pidfile)}; exec {start}' >>{log} 2>&1 </dev/null"])
    command = getattr(node.commands, {"unmask": "unmask", "start": "start", "reload": "reload", "stop": "stop"}[action], None)
    return on_host(node, command) if command else f"# {action} neard on {node.name} by hand"


def restore_source(source: Node, parked_key: str | None, key_path: str) -> list[str]:
    """Give the old primary its key back (at ``key_path``, its config's validator_key_file) and
    start it (only once the target holds no key)."""
    key_from = parked_key or str(source.key_store)
    return [
        _control(source, "unmask"),
        on_host(source, ["install", "-m", "600", key_from, key_path]),
        _control(source, "start"),
    ]


def clear_left_key(source: Node, key_path: str) -> list[str]:
    """For a primary fenced only by chain silence, once its host answers again: stop its neard
    (it may hold the key in memory), then move the key out of its home to its key_store (an
    existing file there is kept as a numbered backup: no copy is ever deleted)."""
    return [_control(source, "stop"), on_host(source, ["mv", "--backup=numbered", key_path, str(source.key_store)])]


def withdraw_target(target: Node, key_path: str) -> list[str]:
    return [
        on_host(target, ["rm", "-f", key_path]),
        _control(target, "reload"),
    ]


def commands_after_fence(
    inventory_path: str, kind: str, mode: str, source: Node | None, target: Node, parked_key: str | None, key_paths: dict[str, str]
) -> dict[str, list[str]]:
    """The old signer is fenced and the target has no key yet. ``key_paths``: each node's key
    path in its home (its config.json's validator_key_file)."""
    finish = [shlex.join(["near-failover", "failover", "-c", inventory_path, "--to", target.name, "--mode", mode])]
    revert = restore_source(source, parked_key, key_paths[source.name]) if source else ["# the old primary was unreachable: restore it by hand once reachable"]
    return {"finish": finish, "revert": revert}


def commands_after_activate(
    inventory_path: str, source: Node | None, target: Node, parked_key: str | None, key_paths: dict[str, str]
) -> dict[str, list[str]]:
    """The target may hold the key: check first, never restore the source while it might sign."""
    check = shlex.join(["near-failover", "status", "-c", inventory_path])
    finish = [check + f"   # done if {target.name} shows the pool's key and production"]
    revert = [check + f"   # first confirm {target.name} signs nothing after the next line", *withdraw_target(target, key_paths[target.name])]
    if source:
        revert += restore_source(source, parked_key, key_paths[source.name])
    return {"finish": finish, "revert": revert}
