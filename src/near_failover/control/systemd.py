"""neard as a systemd unit: systemctl through the Host, so the same code works over SSH."""

from __future__ import annotations

import asyncio

from near_failover.control.base import (
    ControlError,
    Masked,
    NeardControl,
    NotRunning,
    StopFailed,
    StopOutcome,
)
from near_failover.control.privilege import SUDO, SYSTEMCTL_PATH, needs_root
from near_failover.hosts.base import CommandResult, CommandTimeout, Host


def _left(deadline: float, loop: asyncio.AbstractEventLoop) -> float:
    """A command's timeout within the stop's deadline (a hung systemctl must not hold it up)."""
    return max(deadline - loop.time(), 1.0)


class SystemdControl(NeardControl):
    """``systemctl stop|start|restart|is-active|mask|unmask|show``; SIGHUP via ``systemctl kill``."""

    def __init__(
        self,
        node_name: str,
        host: Host,
        unit: str,
        command_timeout: float = 30.0,
        kill_grace: float = 10.0,
        sudo: bool = False,
    ) -> None:
        super().__init__(node_name, host)
        self.unit = unit
        self.command_timeout = command_timeout
        self.kill_grace = kill_grace
        self.sudo = sudo  # privilege = "sudo": the verbs that change the unit run as `sudo -n`

    def describe(self) -> str:
        return f"systemd unit {self.unit}"

    async def _systemctl(self, *args: str, timeout: float | None = None) -> CommandResult:
        argv = ["systemctl", *args]
        if self.sudo and needs_root(args):
            argv = [*SUDO, *argv]
        return await self.host.run(argv, timeout=timeout or self.command_timeout)

    def _failed(self, action: str, result: CommandResult) -> ControlError:
        detail = (result.stderr or result.stdout).strip() or f"exit code {result.exit_code}"
        if self.sudo and result.argv[: len(SUDO)] == list(SUDO) and "sudo:" in detail:
            rule = " ".join([SYSTEMCTL_PATH, *result.argv[len(SUDO) + 1 :]])
            return ControlError(
                self.node_name,
                f"sudo refused `systemctl {action} {self.unit}` ({detail}); allow it with the rule "
                f"`NOPASSWD: {rule}` (deploy/sudoers/near-failover) and prove every rule with "
                "`near-failover check -c INVENTORY --node NODE --control`",
            )
        return ControlError(
            self.node_name,
            f"systemctl {action} {self.unit} failed: {detail}; see `journalctl -u {self.unit}`",
        )

    async def _show(self, prop: str) -> str:
        result = await self._systemctl("show", "-p", prop, "--value", self.unit)
        if not result.ok:
            raise self._failed(f"show -p {prop}", result)
        return result.stdout.strip()

    async def main_pid(self) -> int | None:
        value = await self._show("MainPID")
        if not value.isdigit():
            raise ControlError(self.node_name, f"systemctl show -p MainPID gave {value!r}, not a pid")
        return int(value) or None

    async def is_active(self) -> bool:
        return (await self._systemctl("is-active", "--quiet", self.unit)).ok

    async def is_masked(self) -> bool:
        return await self._show("LoadState") == "masked"

    async def stop(self, timeout: float = 30.0) -> StopOutcome:
        """Gone within ``timeout`` (+ ``kill_grace`` after a SIGKILL): a plain ``systemctl stop``
        waits for the unit's TimeoutStopSec (90 s by default), which may outlast the caller's
        deadline (a self-fence's lease), so the stop is only queued and the deadline is ours."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + timeout
        pid = await self.main_pid()
        was_running = pid is not None or await self.is_active()
        try:
            result = await self._systemctl("stop", "--no-block", self.unit, timeout=_left(deadline, loop))
            if not result.ok and await self.is_active():
                raise self._failed("stop", result)
        except CommandTimeout:
            pass  # queued or not: SIGKILL below if it outlives the deadline
        gone = await self._wait_stopped(pid, deadline)
        killed = False
        if not gone:
            killed = True
            await self._systemctl("kill", "-s", "KILL", self.unit)
            gone = await self._wait_stopped(pid, loop.time() + self.kill_grace)
        if not gone:
            raise StopFailed(
                self.node_name,
                f"{self.unit} still runs after `systemctl stop`, {timeout:g}s and SIGKILL"
                + (f" (pid {pid})" if pid else "")
                + f"; check `systemctl status {self.unit}`",
            )
        return StopOutcome(pid=pid, was_running=was_running, killed=killed, seconds=loop.time() - began)

    async def _wait_stopped(self, pid: int | None, deadline: float) -> bool:
        """The unit is inactive and its former main process is gone. ActiveState, not
        ``is-active``: that is false already while the unit is still "deactivating"."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                state = await self._systemctl("show", "-p", "ActiveState", "--value", self.unit, timeout=_left(deadline, loop))
                inactive = state.ok and state.stdout.strip() in ("inactive", "failed")
            except CommandTimeout:
                inactive = False
            alive = pid is not None and await self.host.pid_alive(pid)
            if inactive and not alive:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)

    async def start(self) -> int | None:
        if await self.is_masked():
            raise Masked(
                self.node_name,
                f"{self.unit} is masked, so it is not started: this node was fenced. Unmask it "
                f"(systemctl unmask {self.unit}) only once its validator key is out of its home",
            )
        result = await self._systemctl("start", self.unit)
        if not result.ok:
            raise self._failed("start", result)
        return await self.main_pid()

    async def restart(self, timeout: float = 30.0) -> int | None:
        if await self.is_masked():
            raise Masked(self.node_name, f"{self.unit} is masked; refusing to restart it")
        result = await self._systemctl("restart", self.unit, timeout=timeout + self.command_timeout)
        if not result.ok:
            raise self._failed("restart", result)
        return await self.main_pid()

    async def reload(self) -> None:
        if not await self.is_active():
            raise NotRunning(self.node_name, f"cannot send SIGHUP: {self.unit} is not active")
        result = await self._systemctl("kill", "-s", "HUP", self.unit)
        if not result.ok:
            raise self._failed("kill -s HUP", result)

    async def mask(self) -> None:
        result = await self._systemctl("mask", self.unit)
        if not result.ok:
            error = self._failed("mask", result)
            if "exists" in (result.stderr + result.stdout):
                error = ControlError(
                    self.node_name,
                    f"systemctl mask {self.unit} failed: the unit file is in /etc/systemd/system, "
                    "where the mask link must go; install the unit under /lib/systemd/system (keep "
                    f"overrides in drop-ins) so it can be masked. systemctl said: {result.stderr.strip()}",
                )
            raise error

    async def unmask(self) -> None:
        result = await self._systemctl("unmask", self.unit)
        if not result.ok:
            raise self._failed("unmask", result)
