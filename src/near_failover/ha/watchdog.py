"""A watchdog outside the agent's process: a hung or dead leader agent cannot leave a signing neard.

Patroni arms the Linux watchdog device so a hung manager resets the machine. Here the agent arms
a separate process (its own session, so a signal to the agent does not reach it): while armed,
the agent writes into a heartbeat file how long its lease is surely valid (`valid_until`, moved
forward by every renewal or failsafe confirmation). If that instant comes within `reserve`
seconds and the agent has not moved it, the watchdog fences neard itself (key out of home, stop,
SIGKILL if neard does not exit within half the reserve, mask), before the lease can expire, so a
standby that wins the expired lease never meets a live signer. A fence that fails is retried; the
watchdog keeps watching while its agent lives (the agent leads only while its watchdog runs).

A host frozen past the lease's end (a paused VM, SIGSTOP of every process) must not let neard
sign when it wakes: the watchdog runs at real-time priority where the host allows it, holds
neard as a pidfd found by what it serves, and a thread sleeping on the boot-time clock SIGKILLs
neard the moment it wakes past the lease's kill point, before any log line or RPC (ha/wake.py);
the fence above then follows as usual and proves it.

The deadline is the lease's, not the loop's speed (Patroni keeps its watchdog alive on every
leader-lock update the same way): a loop made slow by an unreachable lease store or a frozen
RPC is not mistaken for a hung one while its lease is still valid.

Light: one watchdog runs beside every neard, for as long as the agent. It imports only what a
fence on its own machine needs (the standard library, the controls, the host's file and process
calls): the agent hands it the node's place and control as plain values (`FenceTarget`, a file
beside the heartbeat), so neither the inventory (pydantic) nor the RPC client (httpx), SSH or
structlog are loaded. It sleeps until the lease's fence point itself, and otherwise only as long
as a new beat may go unread (`check_every`), not on a fixed fast poll.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from near_failover.control import ControlSettings
from near_failover.ha.clock import lease_clock
from near_failover.ha.locks import Flock, LockHeld, watchdog_lock_path
from near_failover.ha.wake import WakeGuard, find_neard, outrank, raise_priority
from near_failover.hosts.local import LocalHost, process_alive
from near_failover.limits import STATE_FILE, read_regular_text
from near_failover.procedures.fence import fence_reachable
from near_failover.procedures.nodes import NodeOnHost
from near_failover.redact import redact_text

if TYPE_CHECKING:
    from near_failover.inventory import Node

POLL = 0.05  # how often the unit's watchdog looks for a new agent between agents
FENCE_RETRY = 0.5
MARK_SLACK = 0.01
# How often the watchdog says it still runs (the agent leads only while it does, and allows it
# WATCHDOG_PATIENCE, 2 s, of silence: a quarter of that, and the watchdog runs at a real-time
# priority where the host allows it). Each write is a wake-up of this process beside every neard.
WATCHING_EVERY = 0.5
FIND_NEARD_EVERY = 1.0  # while armed without a live neard held, look for it this often


def check_every(reserve: float) -> float:
    """Pure: how long the watchdog may leave the heartbeat unread. An agent leads only while its
    lease has more than its fence margin left (loop_wait + retry_timeout, decide.py), so a beat
    it writes falls due (valid_until - reserve, reserve = retry_timeout / 2) at least `reserve`
    after it is written: read every half of that, each new beat is seen before it falls due,
    and the known one is slept to exactly, so no fence starts later than with a fast poll."""
    return min(WATCHING_EVERY, reserve / 2)


def say(line: str) -> None:
    """One line of the watchdog's log, through the one redaction rule set (near_failover.redact)
    like every structlog event of the other processes."""
    print(redact_text(f"watchdog: {line}"), flush=True)


@dataclass
class Heartbeat:
    """What the agent writes each loop; `at` and `valid_until` are on the lease clock (since boot,
    suspend included), shared by every process on the machine. `valid_until` is the armed
    leader's lease end as it knows it."""

    path: Path
    last: dict[str, Any] | None = field(default=None, compare=False)  # the last beat (the file's, but for its `at`)

    def beat(self, armed: bool, generation: int | None, valid_until: float | None = None) -> None:
        """To the file only when it says something new: the watchdog acts on armed, the lease
        and the agent's pid, never on `at` (the agent's own loop liveness, kept here in `last`),
        so a standby's disarmed beats and a leader's second beat of a loop are not rewritten."""
        said = {k: v for k, v in self.last.items() if k != "at"} if self.last is not None else None
        self.last = {"armed": armed, "generation": generation, "at": lease_clock(),
                     "valid_until": valid_until if armed else None, "agent_pid": os.getpid()}
        if said != {k: v for k, v in self.last.items() if k != "at"}:
            _write_json(self.path, self.last)

    def read(self) -> dict | None:
        return _read_json(self.path)

    def written_lease_end(self) -> float | None:
        """The armed lease's end as this process last wrote it (the agent's wake guard)."""
        return _lease_end(self.last)

    def read_lease_end(self) -> float | None:
        """The armed lease's end as the file says now (the watchdog's wake guard)."""
        return _lease_end(self.read())

    @property
    def fenced_marker(self) -> Path:
        return self.path.with_name(self.path.name + ".fenced")

    @property
    def watching_marker(self) -> Path:
        """Written by the watchdog (its pid, and when it last ran) once it watches, and again
        every WATCHING_EVERY: the agent leads only while it is there and fresh."""
        return self.path.with_name(self.path.name + ".watching")

    def mark_watching(self, reserve: float) -> None:
        _write_json(self.watching_marker, {"pid": os.getpid(), "reserve": reserve, "at": lease_clock()})

    def watching(self) -> dict | None:
        return _read_json(self.watching_marker)


def _lease_end(beat: dict[str, Any] | None) -> float | None:
    return beat.get("valid_until") if beat is not None and beat.get("armed") else None


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all (a rename), without an fsync: these files live as long as the processes."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    """A file written whole by os.replace: absent or unreadable means not written yet."""
    try:
        return json.loads(read_regular_text(path, STATE_FILE))
    except (OSError, ValueError):
        return None


WATCHDOG_ENV = "NEAR_FAILOVER_WATCHDOG"
UNIT = "unit"  # NEAR_FAILOVER_WATCHDOG=unit: a systemd unit runs the watchdog, not the agent


class ExternalWatchdog:
    """Stands for the unit's watchdog where the agent holds its child's Popen: it is never the
    agent's to kill or reap (systemd restarts it), and whether it watches is the marker's word."""

    pid: int | None = None
    returncode: int | None = None

    def poll(self) -> int | None:
        return None

    def kill(self) -> None:
        """Not ours: a stuck unit watchdog is restarted by systemd (WatchdogSec of its unit)."""

    def terminate(self) -> None:
        """Not ours: it outlives the agent on purpose (it fences a lease the agent left)."""

    def wait(self, timeout: float | None = None) -> int | None:
        return None


@dataclass(frozen=True)
class FenceTarget:
    """The node a watchdog fences, as plain values the agent writes beside the heartbeat (0600:
    a command control's argvs may carry a token): its place on the machine and its control,
    the same `ControlSettings` every other fence builds its control from."""

    name: str
    home: PurePosixPath
    key_store: PurePosixPath
    rpc: str
    control: ControlSettings
    inventory: str  # a node on another machine is reached by SSH as the inventory says
    remote: bool = False

    @classmethod
    def of(cls, inventory: Path, node: Node) -> FenceTarget:
        return cls(node.name, node.home, node.key_store, node.rpc, ControlSettings.of(node), str(inventory), node.is_remote)

    def write(self, path: Path) -> None:
        data = {"name": self.name, "home": str(self.home), "key_store": str(self.key_store), "rpc": self.rpc,
                "control": self.control.to_json(), "inventory": self.inventory, "remote": self.remote}
        tmp = path.with_name(path.name + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(json.dumps(data))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> FenceTarget:
        data = json.loads(read_regular_text(path, STATE_FILE))
        return cls(data["name"], PurePosixPath(data["home"]), PurePosixPath(data["key_store"]), data["rpc"],
                   ControlSettings.from_json(data["control"]), data["inventory"], bool(data["remote"]))


@asynccontextmanager
async def open_target(target: FenceTarget) -> AsyncIterator[NodeOnHost]:
    """The node as the fence acts on it: on this machine, its control through a LocalHost and
    nothing else loaded; on another one (the agent's node reached by SSH), opened from the
    inventory as a move opens it."""
    if not target.remote:
        host = LocalHost(label=f"{target.name} (local)")
        yield NodeOnHost(target, host, target.control.build(host))
        return
    from near_failover.inventory import load_inventory
    from near_failover.procedures.nodes import open_nodes

    async with open_nodes(load_inventory(Path(target.inventory))) as nodes:
        yield nodes[target.name]


def target_path(heartbeat: Path) -> Path:
    return heartbeat.with_name(heartbeat.name + ".target")


def start_watchdog(inventory: Path, node: str, heartbeat: Path, reserve: float) -> subprocess.Popen[bytes] | ExternalWatchdog:
    """The agent's watchdog: the unit's when the agent runs under deploy/systemd (the
    environment says so), else a child process as before."""
    if os.environ.get(WATCHDOG_ENV) == UNIT:
        return ExternalWatchdog()
    return spawn_watchdog(inventory, node, heartbeat, reserve)


def spawn_watchdog(inventory: Path, node: str, heartbeat: Path, reserve: float) -> subprocess.Popen[bytes]:
    """The watchdog as a child in its own session, given the node to fence as a FenceTarget
    (read here from the inventory the agent runs with, so the child need not load it). An
    inventory that no longer loads leaves no target: the child then reads the inventory itself
    and says in its log what is wrong with it."""
    from near_failover.inventory import InventoryError, load_inventory

    target = target_path(heartbeat)
    target.unlink(missing_ok=True)
    try:
        FenceTarget.of(inventory, load_inventory(inventory).node(node)).write(target)
    except InventoryError:
        pass
    log = open(heartbeat.with_name(heartbeat.name + ".log"), "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(watchdog_argv("near_failover.ha.watchdog", target, inventory, node, heartbeat, reserve),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)


async def watch(target: FenceTarget, heartbeat: Heartbeat, reserve: float) -> int:
    # Everything the fence needs is opened before the watchdog says it watches: under load,
    # importing modules and building the control take a good part of a second, which the
    # reserve before the lease's end cannot spare.
    node = target.name
    every = check_every(reserve)
    async with open_target(target) as access:
        guard = WakeGuard(heartbeat.read_lease_end, margin=reserve / 2)
        guard.start(realtime_thread=False)  # main() raised the whole process's priority
        heartbeat.mark_watching(reserve)
        marked = lease_clock()
        searched = 0.0
        fenced: tuple[Any, Any] | None = None  # the lease (generation, end) already fenced
        while True:
            report_kills(guard, node)
            if lease_clock() - marked >= WATCHING_EVERY - MARK_SLACK:  # a timer a hair early still marks
                heartbeat.mark_watching(reserve)
                marked = lease_clock()
            beat = heartbeat.read()
            if beat is None:
                await asyncio.sleep(every)
                continue
            valid_until = beat.get("valid_until")
            lease = (beat["generation"], valid_until)
            # this lease's fence point, unless it is not armed or was fenced already
            fence_at = valid_until - reserve if beat["armed"] and valid_until is not None and lease != fenced else None
            if fence_at is not None and lease_clock() > fence_at:
                guard.kill_if_due()  # woken past the kill point: neard dies before anything else
                report_kills(guard, node)
                if not await fence(access, node, heartbeat, beat, reserve):
                    await asyncio.sleep(max(reserve, FENCE_RETRY))  # the lease may be gone: try until it works
                    continue
                fenced = lease
                fence_at = None
            # Only an agent that is gone ends the watch, and only once it left nothing signing; a
            # live agent (even a frozen one) may lead again, and its next lease needs a guard too.
            if not process_alive(beat["agent_pid"]) and (not beat["armed"] or lease == fenced):
                return 0
            if beat["armed"] and valid_until is not None and lease_clock() < valid_until - reserve \
                    and guard.needs_neard() and lease_clock() - searched >= FIND_NEARD_EVERY:
                searched = lease_clock()
                await hold_neard(guard, access, node)
            # Awake again at the next marker, the next read of the heartbeat, or this lease's
            # fence point itself, whichever comes first (just past it: the check above is strict).
            wake = min(marked + WATCHING_EVERY, lease_clock() + every)
            if fence_at is not None:
                wake = min(wake, fence_at + 1e-3)
            await asyncio.sleep(max(0.0, wake - lease_clock()))


async def hold_neard(guard: WakeGuard, target: NodeOnHost, node: str) -> None:
    """Find the node's neard (while awake and in time) and hand it to the wake guard."""
    try:
        handle = await find_neard(target)
    except Exception as exc:  # noqa: BLE001 - the ordinary fence still guards; try again later
        say(f"cannot find {node}'s neard to hold ({type(exc).__name__}: {exc})")
        return
    guard.hold(handle)
    trim_heap()
    if handle is None:
        return
    say(f"holding {node}'s neard (pid {handle.pid}) for the wake guard")
    if note := outrank(handle.pid):
        say(f"{node}'s neard runs at a real-time priority: {note}")


def trim_heap() -> None:
    """Give back to the system what the search for neard freed (it reads /proc for every
    process, in the executor's threads, each with its own malloc arena): about 1 MB of this
    process's resident memory, which is to stay under 25 MB beside every neard (issue 13)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        pass


def report_kills(guard: WakeGuard, node: str) -> None:
    """Log, after the fact, what the wake guard did (it logs nothing before its signal)."""
    for kill in guard.take_kills():
        what = "SIGKILLed" if kill.killed else "found already gone:"
        say(f"{kill.late:.2f}s past the lease's kill point (lease end {kill.valid_until:.2f} on the boot "
              f"clock; a wake-up, or a fence that did not stop it): {what} {node}'s neard pid {kill.pid} before anything else")


async def fence(target: NodeOnHost, node: str, heartbeat: Heartbeat, beat: dict, reserve: float) -> bool:
    """One fence of the node's neard; False (and why, in the log) if it failed."""
    valid_until = beat["valid_until"]
    now = lease_clock()
    say(f"the lease of generation {beat['generation']} ends in {valid_until - now:.2f}s and the agent "
          f"has not renewed it (last beat {now - beat['at']:.2f}s ago): fencing {node}")
    try:
        # The key stays out of home even if the stop fails: no restart may load it again.
        evidence = (await fence_reachable(target, stop_timeout=reserve / 2, restore_key_on_failure=False)).evidence
    except Exception as exc:  # noqa: BLE001 - a failed fence is retried, never the end of the watch
        say(f"the fence of {node} FAILED ({type(exc).__name__}: {exc}); neard may still sign; retrying")
        return False
    done = lease_clock()
    _write_json(heartbeat.fenced_marker, {
        "generation": beat["generation"], "at": time.time(), "fenced_at": done, "valid_until": valid_until,
        "last_beat": beat["at"], "evidence": evidence,
    })
    say(f"fenced {node} {valid_until - done:.2f}s before the lease's end: {json.dumps(evidence)}")
    return True


def read_target(path: Path, inventory: Path, node: str) -> FenceTarget:
    """The agent's target file; without one, the node as the inventory says (loaded only then)."""
    if path.exists():
        try:
            return FenceTarget.read(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the node to fence from {path} ({type(exc).__name__}: {exc})") from None
    from near_failover.inventory import load_inventory

    return FenceTarget.of(inventory, load_inventory(inventory).node(node))


def watchdog_argv(module: str, target: Path, inventory: Path, node: str, heartbeat: Path, reserve: float) -> list[str]:
    """The light process's command line (``module``: this one, or watchdog_unit's)."""
    return [sys.executable, "-m", module, "--target", str(target), "--inventory", str(inventory), "--node", node,
            "--heartbeat", str(heartbeat), "--reserve", str(reserve)]


def run_main(description: str, run: Callable[[FenceTarget, Heartbeat, float], Coroutine[Any, Any, int]]) -> None:
    """The entry of both watchdog processes (the agent's child, the unit's): one watchdog per
    heartbeat (its lock kept until this process ends), real-time priority, then ``run``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--target", type=Path, required=True, help="the node to fence (written by the agent)")
    parser.add_argument("--inventory", type=Path, required=True, help="read only when the target file is absent")
    parser.add_argument("--node", required=True)
    parser.add_argument("--heartbeat", type=Path, required=True)
    parser.add_argument("--reserve", type=float, required=True, help="fence this many seconds before the lease's end")
    args = parser.parse_args()
    try:
        lock = Flock.take(watchdog_lock_path(args.heartbeat), {"pid": os.getpid()})
    except LockHeld as held:
        say(f"another watchdog watches {args.heartbeat} ({held}): not starting a second")
        sys.exit(3)
    say(raise_priority())  # before any thread starts: all inherit it
    try:
        target = read_target(args.target, args.inventory, args.node)
    except Exception as exc:  # noqa: BLE001 - the agent reports the exit and points at this log
        say(f"cannot start: {exc}")
        sys.exit(2)
    try:
        sys.exit(asyncio.run(run(target, Heartbeat(args.heartbeat), args.reserve)))
    finally:
        lock.release()


def main() -> None:
    run_main("near-failover agent watchdog", watch)


if __name__ == "__main__":
    main()
