"""neard run without a supervisor: a pid file, signals, and a mask marker beside the pid file."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import PurePosixPath

from near_failover.control.base import (
    POLL_INTERVAL,
    ControlError,
    Masked,
    NeardControl,
    NotRunning,
    StopFailed,
    StopOutcome,
)
from near_failover.hosts.base import Host, HostError, HostFileNotFound, NoSuchProcess
from near_failover.hosts.home import home_rpc_ports
from near_failover.hosts.processes import process_command, process_serves
from near_failover.limits import PID_FILE

# A pid whose process started this long after the pid file was written is a reused pid, not ours.
PID_REUSE_SLACK = 2.0


class PidfileControl(NeardControl):
    """Signals through the Host; ``start`` runs the inventory's ``start`` argv detached.

    Masking writes ``<pidfile>.masked``: ``start`` refuses while it exists, so a fenced node cannot
    be brought back with the key by this tool (or by a script that uses it) until it is unmasked.
    """

    def __init__(
        self,
        node_name: str,
        host: Host,
        pidfile: PurePosixPath | str,
        start_argv: list[str],
        home: PurePosixPath | str,
        log_path: PurePosixPath | str | None = None,
        kill_grace: float = 10.0,
        start_check: float = 0.3,
        cwd: PurePosixPath | str | None = None,
        rpc_url: str = "http://127.0.0.1:3030",
    ) -> None:
        super().__init__(node_name, host)
        self.pidfile = PurePosixPath(pidfile)
        self.mask_path = self.pidfile.with_name(self.pidfile.name + ".masked")
        self.start_argv = list(start_argv)
        self.home = PurePosixPath(home)
        self.log_path = PurePosixPath(log_path) if log_path else self.home / "neard.log"
        self.kill_grace = kill_grace
        self.start_check = start_check
        # `start` runs in neard's home unless told otherwise: relative paths in its argv are
        # relative to home (the inventory resolves only its own path fields).
        self.cwd = PurePosixPath(cwd) if cwd else self.home
        self.rpc_url = rpc_url
        self._known_neard: tuple[int, int] | None = None  # (pid, start ticks) found to be neard

    def describe(self) -> str:
        return f"pid file {self.pidfile}"

    async def _read_pid(self) -> int | None:
        try:
            text = (await self.host.read_text(self.pidfile, PID_FILE)).strip()
        except HostFileNotFound:
            return None
        if not text.isdigit() or int(text) <= 1:
            raise ControlError(
                self.node_name,
                f"pid file {self.pidfile} holds {text[:40]!r}, not a pid; check which neard runs "
                "(pgrep -a neard), then fix or remove the file",
            )
        return int(text)

    async def _our_pid(self) -> int | None:
        """The pid file's pid if that process runs and is the one the file was written for."""
        pid = await self._read_pid()
        if pid is None or not await self.host.pid_alive(pid):
            return None
        started = await self.host.process_started_at(pid)
        try:
            written = (await self.host.stat(self.pidfile)).mtime
        except HostFileNotFound:
            return None
        if started is not None and started > written + PID_REUSE_SLACK:
            return None  # the pid was reused by a process started after the file was written
        return pid if await self._is_neard(pid) else None

    async def _is_neard(self, pid: int) -> bool:
        """Whether ``pid`` is this home's neard: it serves the home (its RPC port, data/), or it
        is still the process our ``start`` ran (same argv, same cwd; neard opens data/ only
        after loading its config). A pid file naming anything else is never signalled."""
        ticks = await self.host.process_start_ticks(pid)
        if ticks is not None and self._known_neard == (pid, ticks):
            return True  # checked before: a pid with the same start time is the same process
        if await process_serves(self.host, pid, self.home, await home_rpc_ports(self.host, self.home, self.rpc_url)):
            ours = True
        else:
            argv, cwd = await process_command(self.host, pid)
            ours = argv == self.start_argv and cwd == str(self.cwd)
        if ours and ticks is not None:
            self._known_neard = (pid, ticks)
        return ours

    async def main_pid(self) -> int | None:
        return await self._our_pid()

    async def is_active(self) -> bool:
        return await self._our_pid() is not None

    async def stop(self, timeout: float = 30.0) -> StopOutcome:
        loop = asyncio.get_running_loop()
        began = loop.time()
        pid = await self._our_pid()
        if pid is None:
            await self.host.remove(self.pidfile, missing_ok=True)
            return StopOutcome(pid=None, was_running=False, killed=False, seconds=loop.time() - began)
        killed = False
        try:
            await self.host.signal(pid, signal.SIGTERM)
        except NoSuchProcess:
            pass
        gone = await self._wait_gone(pid, began + timeout)
        if not gone:
            killed = True
            try:
                await self.host.signal(pid, signal.SIGKILL)
            except NoSuchProcess:
                pass
            gone = await self._wait_gone(pid, loop.time() + self.kill_grace)
        if not gone:
            raise StopFailed(
                self.node_name,
                f"neard pid {pid} still runs after SIGTERM, {timeout:g}s and SIGKILL "
                f"(uninterruptible I/O?); check `ps -o pid,stat,cmd -p {pid}` on the host",
            )
        await self.host.remove(self.pidfile, missing_ok=True)
        return StopOutcome(pid=pid, was_running=True, killed=killed, seconds=loop.time() - began)

    async def start(self) -> int:
        if await self.is_masked():
            raise Masked(
                self.node_name,
                f"neard is masked ({self.mask_path} exists), so it is not started: this node was "
                "fenced. Unmask it only once its validator key is out of its home",
            )
        running = await self._our_pid()
        if running is not None:
            raise ControlError(self.node_name, f"neard already runs (pid {running} in {self.pidfile})")
        await self.host.mkdir(self.pidfile.parent, mode=0o755)
        pid = await self.host.spawn_detached(self.start_argv, log=self.log_path, cwd=self.cwd)
        await self.host.write_atomic(self.pidfile, f"{pid}\n", mode=0o644)
        # A start that fails at once (bad argv, missing binary) is reported here, with its log.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_check
        while loop.time() < deadline:
            if not await self.host.pid_alive(pid):
                await self.host.remove(self.pidfile, missing_ok=True)
                raise ControlError(
                    self.node_name,
                    f"neard exited right after start (pid {pid}); last lines of {self.log_path}: "
                    + await self._log_tail(),
                )
            await asyncio.sleep(POLL_INTERVAL)
        return pid

    async def _log_tail(self, lines: int = 5) -> str:
        # The log grows for ever: only its last 64 KiB are read, never the whole file.
        try:
            result = await self.host.run(["tail", "-c", "65536", str(self.log_path)], timeout=10)
        except HostError:
            return "(no log)"
        if not result.ok:
            return "(no log)"
        text = result.stdout
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    async def reload(self) -> None:
        pid = await self._our_pid()
        if pid is None:
            raise NotRunning(self.node_name, f"cannot send SIGHUP: neard does not run ({self.pidfile})")
        await self.host.signal(pid, signal.SIGHUP)

    async def mask(self) -> None:
        marker = {"masked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": "near-failover"}
        await self.host.mkdir(self.mask_path.parent, mode=0o755)
        await self.host.write_atomic(self.mask_path, json.dumps(marker) + "\n", mode=0o644)

    async def unmask(self) -> None:
        await self.host.remove(self.mask_path, missing_ok=True)

    async def is_masked(self) -> bool:
        return await self.host.exists(self.mask_path)
