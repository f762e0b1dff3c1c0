"""neard under some other supervisor (docker, supervisord, a script): the operator's own commands."""

from __future__ import annotations

import asyncio
import shlex
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from near_failover.control.base import (
    ControlError,
    Masked,
    NeardControl,
    NotSupported,
    StopFailed,
    StopOutcome,
)
from near_failover.hosts.base import CommandResult, CommandTimeout, Host, NoSuchProcess

if TYPE_CHECKING:
    from near_failover.inventory import NodeCommands

# The inventory's ``[node.commands]`` (inventory.NodeCommands checks them) as plain argvs by
# name: built from the inventory, or read back from the watchdog's FenceTarget file.
CommandArgvs = Mapping[str, list[str]]


class CommandControl(NeardControl):
    """Runs ``[node.commands]`` argvs through the Host. ``is_active`` exit 0 means running; the
    stop is confirmed by ``is_active`` (and by the pid, when ``main_pid`` is given)."""

    def __init__(
        self,
        node_name: str,
        host: Host,
        commands: CommandArgvs | NodeCommands,
        command_timeout: float = 30.0,
        kill_grace: float = 10.0,
    ) -> None:
        super().__init__(node_name, host)
        self.commands: CommandArgvs = commands if isinstance(commands, Mapping) else commands.model_dump(exclude_none=True)
        self.command_timeout = command_timeout
        self.kill_grace = kill_grace
        self.supports_mask = self.commands.get("mask") is not None and self.commands.get("unmask") is not None

    def describe(self) -> str:
        return f"the `stop` command ({shlex.join(stop)})" if (stop := self.commands.get("stop")) else "[node.commands]"

    def _argv(self, name: str) -> list[str]:
        argv = self.commands.get(name)
        if argv is None:
            raise NotSupported(
                self.node_name, f"no `{name}` command in [node.commands]; add one to the inventory"
            )
        return list(argv)

    async def _run(self, name: str, timeout: float | None = None) -> CommandResult:
        return await self.host.run(self._argv(name), timeout=timeout or self.command_timeout)

    async def _run_checked(self, name: str, timeout: float | None = None) -> CommandResult:
        result = await self._run(name, timeout)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip() or f"exit code {result.exit_code}"
            raise ControlError(self.node_name, f"`{name}` command ({result.command_text}) failed: {detail}")
        return result

    async def is_active(self) -> bool:
        return (await self._run("is_active")).ok

    async def main_pid(self) -> int | None:
        if self.commands.get("main_pid") is None:
            return None
        text = (await self._run_checked("main_pid")).stdout.strip()
        if not text:
            return None
        if not text.isdigit():
            raise ControlError(self.node_name, f"`main_pid` command printed {text[:40]!r}, not a pid")
        pid = int(text)
        return pid if pid > 1 and await self.host.pid_alive(pid) else None

    async def stop(self, timeout: float = 30.0) -> StopOutcome:
        loop = asyncio.get_running_loop()
        began = loop.time()
        pid = await self.main_pid()
        was_running = pid is not None or await self.is_active()
        stop_result: CommandResult | None = None
        try:
            stop_result = await self._run("stop", timeout=timeout)
        except CommandTimeout:
            pass  # confirmed (or not) below
        # A `stop` that says it failed is not waited out (as a failed `systemctl stop` is not):
        # SIGKILL at once when the pid is known, otherwise say so now.
        failed = stop_result is not None and not stop_result.ok
        gone = await self._wait_stopped(pid, loop.time() if failed else began + timeout)
        killed = False
        if not gone and pid is not None:
            killed = True
            try:
                await self.host.signal(pid, signal.SIGKILL)
            except NoSuchProcess:
                pass
            gone = await self._wait_stopped(pid, loop.time() + self.kill_grace)
        if not gone:
            said = ""
            if stop_result is not None:
                said = f"; `stop` exited {stop_result.exit_code}: {(stop_result.stderr or stop_result.stdout).strip()[:200]}"
            raise StopFailed(
                self.node_name,
                f"neard still reported active by `is_active` {timeout:g}s after `stop`{said}",
            )
        return StopOutcome(pid=pid, was_running=was_running, killed=killed, seconds=loop.time() - began)

    async def _wait_stopped(self, pid: int | None, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        while True:
            alive = pid is not None and await self.host.pid_alive(pid)
            if not alive and not await self.is_active():
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)

    async def start(self) -> int | None:
        if self.commands.get("is_masked") is not None and await self.is_masked():
            raise Masked(self.node_name, "neard is masked (`is_masked` exits 0); refusing to start it")
        await self._run_checked("start")
        return await self.main_pid()

    async def restart(self, timeout: float = 30.0) -> int | None:
        if self.commands.get("restart") is None:
            return await super().restart(timeout)
        await self._refuse_if_masked("restart")
        await self._run_checked("restart", timeout=timeout + self.command_timeout)
        return await self.main_pid()

    async def reload(self) -> None:
        await self._run_checked("reload")

    async def mask(self) -> None:
        await self._run_checked("mask")

    async def unmask(self) -> None:
        await self._run_checked("unmask")

    async def is_masked(self) -> bool:
        """NotSupported when no ``is_masked`` command is configured."""
        return (await self._run("is_masked")).ok
