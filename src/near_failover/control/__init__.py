"""How neard is stopped, started, reloaded and masked on a node: systemd, a pid file, or commands."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from near_failover.control.base import (
    ControlError,
    Masked,
    NeardControl,
    NotRunning,
    NotSupported,
    StopFailed,
    StopOutcome,
)
from near_failover.control.command import CommandArgvs, CommandControl
from near_failover.control.pidfile import PidfileControl
from near_failover.control.systemd import SystemdControl
from near_failover.hosts.base import Host

if TYPE_CHECKING:
    from near_failover.inventory import Node

__all__ = [
    "CommandArgvs",
    "CommandControl",
    "ControlSettings",
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


@dataclass(frozen=True)
class ControlSettings:
    """What ``control_for`` reads of an inventory node, as plain values that go to JSON and back:
    a process without the inventory loaded (the watchdog) builds the very same control."""

    node: str
    kind: Literal["systemd", "pidfile", "command"]
    home: str
    rpc_url: str
    unit: str | None = None
    sudo: bool = False
    pidfile: str | None = None
    start: list[str] | None = None
    log_path: str | None = None
    commands: CommandArgvs | None = None

    @classmethod
    def of(cls, node: Node) -> ControlSettings:
        spec = node.control_spec
        commands = node.commands.model_dump(exclude_none=True) if node.commands is not None else None
        return cls(node.name, spec.kind, str(node.home), node.rpc, unit=spec.unit, sudo=node.privilege == "sudo",
                   pidfile=str(spec.pidfile) if spec.pidfile is not None else None, start=node.start, log_path=str(node.log_path), commands=commands)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ControlSettings:
        return cls(**data)

    def build(self, host: Host) -> NeardControl:
        """The control named by the node's ``control`` field, acting through ``host``."""
        if self.kind == "systemd":
            assert self.unit is not None
            return SystemdControl(self.node, host, self.unit, sudo=self.sudo)
        if self.kind == "pidfile":
            assert self.pidfile is not None and self.start is not None  # the inventory checks both
            return PidfileControl(self.node, host, self.pidfile, self.start, PurePosixPath(self.home), self.log_path, rpc_url=self.rpc_url)
        assert self.commands is not None
        return CommandControl(self.node, host, self.commands)


def control_for(node: Node, host: Host) -> NeardControl:
    """The control named by the node's ``control`` field, acting through ``host``."""
    return ControlSettings.of(node).build(host)
