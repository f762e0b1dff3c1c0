"""Notice a wake-up first: a leader host frozen past its lease's end must not sign when it wakes.

A host can stop for longer than the lease (a VM paused by its hypervisor, a suspend, SIGSTOP of
every process): the other agents then promote a standby on the chain's silence, and the woken
neard still holds the key in memory. nearcore keeps signing with an in-memory signer until it is
told otherwise (chain/client/src/client.rs signs with whatever `validator_signer` holds), so
whichever of neard, the agent or its watchdog gets the CPU first decides whether the pool double
signs. This module makes that the watchdog and the agent, in depth:

- a thread that sleeps on the boot-time clock (CLOCK_BOOTTIME, the clock of every lease deadline
  here) to an absolute instant, so it returns at once when a freeze or a suspend carried the
  host past it (a monotonic timer does not count a suspend);
- real-time scheduling (SCHED_FIFO) where the host allows it: on a wake-up the kernel runs it
  before neard (SCHED_OTHER); where not permitted, a note in the log and normal priority;
- neard held by a pidfd, opened while the node was awake and checked to be the process that
  serves the node's home (hosts/processes.py reads /proc): at the kill point the signal is one
  syscall (no RPC, no /proc walk, no log line first) and can never reach a process that reused
  the pid.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from near_failover.ha.clock import lease_clock
from near_failover.hosts.local import LocalHost
from near_failover.hosts.processes import ServingProcess, process_serves, scan_processes
from near_failover.procedures.nodes import NodeOnHost

T = TypeVar("T")

# SCHED_FIFO priority of the guard. Any real-time priority runs before neard's SCHED_OTHER; a
# neard itself given a real-time priority is outranked by one more (see raise_priority).
RT_PRIORITY = 10
TICK = 1.0  # the longest the guard sleeps before it looks at a deadline that may have moved
RECHECK = 0.05  # past the kill point with no neard held: how soon it looks again
TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _clock_nanosleep() -> Callable[..., int] | None:
    try:
        # The process's own symbols, libc's among them: ctypes.util.find_library would load
        # shutil, tempfile and the compressors into the watchdog for a name the linker knows.
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.clock_nanosleep
    except (OSError, AttributeError):
        return None


_NANOSLEEP = _clock_nanosleep()


def sleep_until(instant: float) -> None:
    """Sleep until ``instant`` on the lease clock, as an absolute CLOCK_BOOTTIME timer (the GIL
    is released meanwhile): the sleep ends at once when a freeze or a suspend passed it."""
    if _NANOSLEEP is None:  # no libc call: a relative sleep, re-checked by the caller's loop
        time.sleep(max(0.0, min(TICK, instant - lease_clock())))
        return
    whole = int(instant)
    spec = _Timespec(whole, int((instant - whole) * 1e9))
    _NANOSLEEP(time.CLOCK_BOOTTIME, TIMER_ABSTIME, ctypes.byref(spec), None)  # EINTR: the caller re-checks


def guard_wake(end: float | None, now: float, margin: float) -> float:
    """Pure: when the guard looks again at the lease's end, on the lease clock. Armed, at its
    kill point (``margin`` before ``end``) itself: a renewal only moves the end later (a lease
    renewed or taken later ends later, on this one clock), so waking there and finding it moved
    costs one more sleep, never a late kill; at most TICK after ``now`` all the same, so arming
    and a deadline set by hand are seen within a second (a fresh lease's kill point is its fence
    margin away). The timer is absolute on the boot clock: a freeze past it wakes the guard at once."""
    if end is None:
        return now + TICK
    return min(now + TICK, end - margin)


def raise_priority(floor: int = RT_PRIORITY, thread: bool = False) -> str:
    """Put this process (or, with ``thread``, only the calling thread) on SCHED_FIFO at ``floor``;
    children do not inherit it. Returns a note for the log; never raises."""
    target = threading.get_native_id() if thread else 0
    try:
        priority = min(floor, os.sched_get_priority_max(os.SCHED_FIFO))
        os.sched_setscheduler(target, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        return f"real-time priority not permitted here ({exc}): the wake guard runs at normal priority"
    return f"real-time priority SCHED_FIFO {priority}"


def outrank(pid: int) -> str | None:
    """If neard (``pid``) itself runs at a real-time priority, raise ours above it."""
    try:
        if os.sched_getscheduler(pid) not in (os.SCHED_FIFO, os.SCHED_RR):
            return None
        theirs = os.sched_getparam(pid).sched_priority
    except OSError:
        return None
    return raise_priority(theirs + 1)


@dataclass
class NeardHandle:
    """neard's process as a pidfd: a signal through it reaches that process or none."""

    pid: int
    pidfd: int

    @classmethod
    def open(cls, pid: int) -> NeardHandle | None:
        try:
            return cls(pid, os.pidfd_open(pid))
        except OSError:  # gone already, or no pidfd on this kernel
            return None

    def kill(self) -> bool:
        """SIGKILL; False if the process had exited already."""
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def exited(self) -> bool:
        """A pidfd polls readable once its process has exited."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        try:
            os.close(self.pidfd)
        except OSError:
            pass


@dataclass(frozen=True)
class WakeKill:
    """What the guard did, for the log written after the kill."""

    pid: int
    killed: bool  # False: it had exited already
    late: float  # seconds past the kill point when it was noticed
    valid_until: float


class WakeGuard:
    """Kills neard once the armed lease's last safe instant has passed and nobody renewed it.

    ``lease_end`` returns the lease's end as last known (None while disarmed): the agent's own
    heartbeat in memory, the watchdog's read of the heartbeat file. The kill point is ``margin``
    before that end: past it, a graceful stop (SIGTERM, then waiting) can no longer finish before
    a standby may take the lease.
    """

    def __init__(self, lease_end: Callable[[], float | None], margin: float) -> None:
        self.lease_end = lease_end
        self.margin = margin
        self.neard: NeardHandle | None = None
        self.kills: list[WakeKill] = []
        self.note = ""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, realtime_thread: bool) -> None:
        """Start the guard's thread; ``realtime_thread`` raises only that thread's priority (the
        agent), otherwise the process's priority is the caller's business (the watchdog)."""
        self._thread = threading.Thread(target=self._run, args=(realtime_thread,), name="wake-guard", daemon=True)
        self._thread.start()

    def hold(self, handle: NeardHandle | None) -> None:
        with self._lock:
            old, self.neard = self.neard, handle
        if old is not None and old is not handle:
            old.close()

    def needs_neard(self) -> bool:
        """No neard held, or the one held has exited (a restart gives neard a new pid)."""
        held = self.neard
        return held is None or held.exited()

    def kill_if_due(self) -> WakeKill | None:
        """SIGKILL neard if the lease's kill point has passed (called by the thread and, first
        thing, by the owner's own loop). The first and only thing it does before the signal is
        to read the lease's end again: a renewal that moved it spares neard."""
        end = self.lease_end()
        if end is None:
            return None
        late = lease_clock() - (end - self.margin)
        if late < 0:
            return None
        with self._lock:
            held = self.neard
            if held is None:
                return None
            done = WakeKill(held.pid, held.kill(), late, end)
            self.kills.append(done)
            self.neard = None
        held.close()
        return done

    def take_kills(self) -> list[WakeKill]:
        with self._lock:
            kills, self.kills = self.kills, []
        return kills

    def _run(self, realtime_thread: bool) -> None:
        if realtime_thread:
            self.note = raise_priority(thread=True)
        while True:
            end = self.lease_end()
            now = lease_clock()
            if end is not None and now >= end - self.margin:
                self.kill_if_due()
                time.sleep(RECHECK)  # no neard held: look again soon, without spinning
                continue
            sleep_until(guard_wake(end, now, self.margin))


def _signs_there(process: ServingProcess) -> bool:
    """A process that listens on the RPC port or holds a file of the home's data open; a cwd in
    data/ alone is an operator's shell as likely as neard, and is never signalled."""
    return any(not why.startswith("cwd ") for why in process.reasons)


async def find_neard(node: NodeOnHost) -> NeardHandle | None:
    """The node's neard on this machine as a pidfd, found by what it serves (its RPC port, its
    open data files), its control's pid first when that is one of them; None when none runs or
    the node is on another host (no pidfd across SSH: the ordinary fence acts there).

    The pidfd is opened before the last check that the process serves the home, so the process
    it holds is the one checked, even if the pid was reused in between."""
    if not isinstance(node.host, LocalHost):
        return None
    ports = await node.rpc_ports()
    scan = await scan_processes(node.host, node.spec.home, ports)
    main = await on_doubt(node.control.main_pid(), None)
    ranked = sorted((p for p in scan.processes if _signs_there(p)), key=lambda p: (p.pid != main, p.pid))
    for candidate in ranked:
        handle = NeardHandle.open(candidate.pid)
        if handle is None:
            continue
        serving = await process_serves(node.host, candidate.pid, node.spec.home, ports)
        if serving is not None and _signs_there(serving):
            return handle
        handle.close()
    return None


async def on_doubt(answer: Awaitable[T], doubt: T) -> T:
    """The answer, or ``doubt`` when the question itself failed (a host or a control that errs)."""
    try:
        return await answer
    except Exception:  # noqa: BLE001 - the caller chose the safe reading of "unknown"
        return doubt
