"""Waiting on a neard that is starting: through Option 1's restart, and before any signal.

neard opens its store and loads memtries before its RPC server starts (chain/chain/src/chain.rs
runs in start_with_config before start_http, nearcore/src/lib.rs), and installs its SIGHUP and
SIGTERM handlers only after that start returns (neard/src/cli.rs): until then its RPC refuses
connections, and a SIGHUP or SIGTERM takes the default action and kills it. On mainnet that lasts
tens of seconds to minutes (neard-behaviour §6).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable
from urllib.parse import urlsplit

from near_failover.control.base import ControlError
from near_failover.hosts import HostError
from near_failover.neard.metrics import MEMTRIE_ARENA_METRICS, memtrie_shards
from near_failover.neard.rpc import RpcError
from near_failover.procedures.errors import StepFailed
from near_failover.procedures.nodes import NodeAccess

POLL_SECONDS = 0.5
PROGRESS_EVERY = 5.0  # seconds between progress lines while a phase lasts
# A restarted neard that has not run for this long has exited (a supervisor restarts within it).
GONE_AFTER = 10.0
Say = Callable[[str], None]


class Phase(str, Enum):
    NOT_RUNNING = "neard not running"
    LOADING = "opening the store and loading memtries (RPC closed)"
    SYNCING = "RPC answering, catching up"
    READY = "synced"


@dataclass
class StartWatch:
    """Which phase a starting neard is in and for how long each lasted (journal evidence)."""

    phase: Phase | None = None
    since: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    last_said: float = -PROGRESS_EVERY

    def enter(self, phase: Phase, now: float) -> bool:
        """Record `phase` at `now`; True when it is a new phase."""
        if phase is self.phase:
            return False
        if self.phase is not None:
            self.seconds[self.phase.value] = round(self.seconds.get(self.phase.value, 0.0) + now - self.since, 3)
        self.phase, self.since = phase, now
        return True


async def process_age(node: NodeAccess) -> float | None:
    """Seconds since the node's neard process started, from the host's own clock (its uptime
    and the process's start ticks); None when it does not run or this cannot be read."""
    try:
        pid = await node.control.main_pid()
        if pid is None:
            return None
        ticks = await node.host.process_start_ticks(pid)
        uptime = float((await node.host.read_text("/proc/uptime")).split()[0])
    except (ControlError, HostError, ValueError, IndexError):
        return None
    return None if ticks is None else max(0.0, uptime - ticks / 100)  # USER_HZ is 100 on Linux


async def rpc_port_closed(node: NodeAccess) -> bool:
    """Whether the node's RPC port refuses connections, as neard's does until start-up ends. A
    neard that is hung or stopped (SIGSTOP) still has its port open: connections hang instead."""
    url = urlsplit(node.spec.rpc)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port or (443 if url.scheme == "https" else 80)), 2.0)
    except ConnectionRefusedError:
        return True
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return False


async def wait_until_started(node: NodeAccess, action: str, budget: float, startup_window: float, say: Say) -> dict[str, Any]:
    """Before `action` (a SIGHUP or a stop): if neard runs, started less than `startup_window`
    ago and its RPC port is still closed, it is still starting; wait (at most `budget`) for its RPC.

    A process with an open port that does not answer, or older than the window, is hung, not
    starting, and is not waited for. Returns evidence: empty when nothing was waited for, else
    the wait and whether start-up finished."""
    if await node.status_or_none() is not None or not await rpc_port_closed(node):
        return {}
    age = await process_age(node)
    if age is None or age > startup_window:
        return {}
    say(
        f"{node.name}: neard started {age:.0f}s ago and its RPC does not answer yet: waiting up to {budget:.0f}s "
        f"for it to finish starting before {action} (a signal during start-up kills neard)"
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < budget:
        if await node.status_or_none() is not None:
            waited = round(loop.time() - began, 3)
            say(f"{node.name}: finished starting after {waited:.1f}s more")
            return {"waited_for_start": waited, "finished_starting": True}
        if await process_age(node) is None:
            return {"waited_for_start": round(loop.time() - began, 3), "finished_starting": False, "exited": True}
        await asyncio.sleep(POLL_SECONDS)
    say(f"{node.name}: still starting after {budget:.0f}s")
    return {"waited_for_start": round(loop.time() - began, 3), "finished_starting": False}


async def wait_ready_after_restart(node: NodeAccess, budget: float, say: Say) -> dict[str, Any]:
    """Through a restart: process up, RPC answering (the memtrie load is done then), synced.

    Shows the phase and the elapsed time while it waits. An unknown outcome when it fails: the
    node may still come up later with the key in its home."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    watch = StartWatch()
    not_running_since: float | None = None
    while True:
        now = loop.time()
        status = await node.status_or_none()
        if status is None:
            try:
                running = await node.control.is_active()
            except (ControlError, HostError):
                running = True  # cannot tell: keep waiting within the budget
            phase = Phase.LOADING if running else Phase.NOT_RUNNING
        else:
            phase = Phase.SYNCING if status.sync_info.syncing else Phase.READY
        not_running_since = (not_running_since or now) if phase is Phase.NOT_RUNNING else None
        if watch.enter(phase, now) or now - watch.last_said >= PROGRESS_EVERY:
            watch.last_said = now
            if phase is not Phase.READY:
                say(f"{node.name}: {phase.value}, {now - began:.0f}s of {budget:.0f}s")
        if phase is Phase.READY:
            break
        if not_running_since is not None and now - not_running_since >= GONE_AFTER:
            raise StepFailed(f"{node.name}: neard is not running {now - began:.0f}s after the restart; see its log", known=False)
        if now - began >= budget:
            raise StepFailed(f"{node.name} was not ready within {budget:.0f}s after the restart (still {phase.value})", known=False)
        await asyncio.sleep(POLL_SECONDS)
    ready_after = round(loop.time() - began, 3)
    say(f"{node.name}: started, RPC answering and synced after {ready_after:.1f}s")
    return {"ready_after": ready_after, "phases": watch.seconds, "memtries": await running_memtries(node)}


async def running_memtries(node: NodeAccess) -> list[str] | None:
    """The shards whose memtries the running neard holds (its /metrics); None if unreadable."""
    try:
        return memtrie_shards(await node.rpc.metrics(only=MEMTRIE_ARENA_METRICS))
    except RpcError:
        return None
