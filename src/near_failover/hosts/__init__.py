"""How to reach a node's machine: this one (LocalHost) or over SSH (SshHost), behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from near_failover.hosts.base import (
    CommandFailed,
    CommandResult,
    CommandTimeout,
    FileStat,
    Host,
    HostAuthFailed,
    HostError,
    HostFileExists,
    HostFileNotFound,
    HostKeyUnknown,
    HostPermissionDenied,
    HostUnreachable,
    NoSuchProcess,
)
from near_failover.hosts.local import LocalHost

# SSH (asyncssh, cryptography) and the inventory (pydantic) load only when a process reaches
# another machine: the watchdog acts on its own host and stays small.
if TYPE_CHECKING:
    from near_failover.hosts.ssh import SshHost
    from near_failover.inventory import Inventory, Node, SshSettings


def __getattr__(name: str) -> Any:
    if name == "SshHost":
        from near_failover.hosts.ssh import SshHost

        return SshHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "FileStat",
    "Host",
    "HostAuthFailed",
    "HostError",
    "HostFileExists",
    "HostFileNotFound",
    "HostKeyUnknown",
    "HostPermissionDenied",
    "HostUnreachable",
    "LocalHost",
    "NoSuchProcess",
    "SshHost",
    "host_for",
    "hosts_for",
]


def host_for(node: Node, ssh: SshSettings | None = None) -> Host:
    """The Host of ``node`` from its ``host`` field. SSH settings: the node's own ``[node.ssh]``,
    else ``ssh`` (the inventory's ``[ssh]`` table), else the defaults (~/.ssh/known_hosts)."""
    label = f"{node.name} ({node.host})"
    spec = node.host_spec
    if spec.kind == "local":
        return LocalHost(label=label)
    from near_failover.hosts.ssh import SshHost
    from near_failover.inventory import SshSettings

    settings = node.ssh or ssh or SshSettings()
    assert spec.hostname is not None
    return SshHost(
        hostname=spec.hostname,
        port=spec.port,
        user=spec.user,
        known_hosts=settings.known_hosts,
        identity=settings.identity,
        connect_timeout=settings.connect_timeout,
        label=label,
    )


def hosts_for(inventory: Inventory) -> dict[str, Host]:
    """One Host per node name, with the inventory's ``[ssh]`` settings."""
    return {node.name: host_for(node, inventory.ssh) for node in inventory.nodes}
