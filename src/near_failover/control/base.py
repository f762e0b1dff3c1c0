"""One interface to stop, start, reload and mask neard on a host, whatever supervises it.

A fence must be *proven*: ``stop`` returns only when the process is confirmed gone, and says how
(its pid, whether it had to be killed), so the journal can record the evidence.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

from near_failover.hosts.base import Host

POLL_INTERVAL = 0.1


class ControlError(Exception):
    """Stopping, starting or signalling neard failed; the message names the node and the state."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node


class StopFailed(ControlError):
    """neard is still running after the stop deadline (and, where applicable, SIGKILL)."""


class Masked(ControlError):
    """neard is masked on this node: it must not be started until someone unmasks it."""


class NotRunning(ControlError):
    """An operation that needs a running neard (reload) found none."""


class NotSupported(ControlError):
    """The node's control does not offer this operation (e.g. no mask command configured)."""


@dataclass(frozen=True)
class StopOutcome:
    """Evidence of a stop: what ran before, what was sent, and that it is gone now."""

    pid: int | None  # the pid that was stopped, if known; None when nothing was running
    was_running: bool
    killed: bool  # SIGKILL was needed after the graceful deadline
    seconds: float

    def evidence(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "was_running": self.was_running,
            "killed": self.killed,
            "seconds": round(self.seconds, 3),
        }


class NeardControl(ABC):
    """Stop/start/reload/mask neard on one node, through that node's Host."""

    def __init__(self, node_name: str, host: Host) -> None:
        self.node_name = node_name
        self.host = host

    #: Whether ``mask``/``unmask`` exist for this node (systemd and pid file: yes; commands: if set).
    supports_mask: bool = True

    def describe(self) -> str:
        """What this control acts through, as an operator would fix it (a pid file, a unit)."""
        return type(self).__name__

    @abstractmethod
    async def stop(self, timeout: float = 30.0) -> StopOutcome:
        """Stop neard and return once the process is confirmed gone (StopFailed otherwise)."""

    @abstractmethod
    async def start(self) -> int | None:
        """Start neard (Masked if masked); returns its pid when known."""

    async def restart(self, timeout: float = 30.0) -> int | None:
        """Stop (confirmed) then start; a masked node is refused before it is stopped."""
        await self._refuse_if_masked("restart")
        await self.stop(timeout)
        return await self.start()

    async def _refuse_if_masked(self, action: str) -> None:
        try:
            masked = await self.is_masked()
        except NotSupported:
            return
        if masked:
            raise Masked(self.node_name, f"neard is masked on this node; refusing to {action} it")

    @abstractmethod
    async def reload(self) -> None:
        """Send SIGHUP: neard re-reads validator_key.json and parts of config.json."""

    @abstractmethod
    async def is_active(self) -> bool: ...

    @abstractmethod
    async def mask(self) -> None:
        """Keep neard from being started again (by us, a reboot or an operator's habit)."""

    @abstractmethod
    async def unmask(self) -> None: ...

    @abstractmethod
    async def is_masked(self) -> bool: ...

    @abstractmethod
    async def main_pid(self) -> int | None:
        """The running neard's pid, or None."""

    async def _wait_gone(self, pid: int, deadline: float) -> bool:
        """Poll until ``pid`` is gone or the loop's clock passes ``deadline``."""
        loop = asyncio.get_running_loop()
        while True:
            if not await self.host.pid_alive(pid):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(POLL_INTERVAL, max(deadline - loop.time(), 0)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node_name} on {self.host.label}>"
