"""How neard is stopped, started, reloaded and masked on a node: systemd, a pid file, or commands."""

from __future__ import annotations

from near_failover.control.base import (
    ControlError,
    Masked,
    NeardControl,
    NotRunning,
    NotSupported,
    StopFailed,
    StopOutcome,
)
from near_failover.control.command import CommandControl
from near_failover.control.pidfile import PidfileControl
from near_failover.control.systemd import SystemdControl
from near_failover.hosts.base import Host
from near_failover.inventory import Node

__all__ = [
    "CommandControl",
    "ControlError",
    "Masked",
    "NeardControl",
    "NotRunning",
    "NotSupported",
    "PidfileControl",
    "StopFailed",
    "StopOutcome",
    "SystemdControl",
    "control_for",
]


def control_for(node: Node, host: Host) -> NeardControl:
    """The control named by the node's ``control`` field, acting through ``host``."""
    spec = node.control_spec
    if spec.kind == "systemd":
        assert spec.unit is not None
        return SystemdControl(node.name, host, spec.unit, sudo=node.privilege == "sudo")
    if spec.kind == "pidfile":
        assert spec.pidfile is not None and node.start is not None  # the inventory checks both
        return PidfileControl(node.name, host, spec.pidfile, node.start, node.home, node.log_path, rpc_url=node.rpc)
    assert node.commands is not None
    return CommandControl(node.name, host, node.commands)
