"""The wake guard (ha/wake.py) on real processes: a process held by its pidfd is SIGKILLed once
the lease's kill point has passed (a stopped one too: a frozen host), and never before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from near_failover.ha.lease import lease_clock
from near_failover.ha.wake import NeardHandle, WakeGuard, sleep_until


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def test_a_stopped_process_is_killed_once_the_kill_point_has_passed() -> None:
    proc = sleeper()
    try:
        os.kill(proc.pid, signal.SIGSTOP)  # a frozen neard, as a paused host leaves it
        end = [lease_clock() + 60.0]
        guard = WakeGuard(lambda: end[0], margin=0.5)
        guard.hold(NeardHandle.open(proc.pid))
        assert guard.kill_if_due() is None and proc.poll() is None  # the lease is still good
        end[0] = lease_clock() + 0.2  # within the margin: a graceful stop no longer fits
        kill = guard.kill_if_due()
        assert kill is not None and kill.killed and kill.pid == proc.pid and kill.late > 0
        assert proc.wait(5) == -signal.SIGKILL
        assert guard.neard is None and guard.kill_if_due() is None  # nothing held any more
    finally:
        proc.kill()
        proc.wait()


def test_the_guard_thread_kills_on_its_own_when_the_lease_runs_out() -> None:
    proc = sleeper()
    try:
        end = lease_clock() + 0.6
        guard = WakeGuard(lambda: end, margin=0.1)
        guard.hold(NeardHandle.open(proc.pid))
        guard.start(realtime_thread=True)
        assert proc.wait(10) == -signal.SIGKILL
        assert lease_clock() >= end - 0.1  # not before the kill point
        assert [k.pid for k in guard.take_kills()] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_a_disarmed_guard_kills_nothing() -> None:
    proc = sleeper()
    try:
        guard = WakeGuard(lambda: None, margin=0.1)
        guard.hold(NeardHandle.open(proc.pid))
        assert guard.kill_if_due() is None and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_handle_to_an_exited_process_signals_nothing() -> None:
    proc = sleeper()
    handle = NeardHandle.open(proc.pid)
    assert handle is not None and not handle.exited()
    proc.kill()
    proc.wait()  # reaped: its pid may now be reused, the pidfd still names the dead process
    assert handle.exited() and handle.kill() is False
    handle.close()


def test_sleep_until_an_instant_already_past_returns_at_once() -> None:
    began = time.monotonic()
    sleep_until(lease_clock() - 5)
    sleep_until(lease_clock() + 0.05)
    assert time.monotonic() - began < 5  # the past instant did not turn into a 5 s wait


def test_raise_priority_says_what_it_got() -> None:
    note = subprocess.run(
        [sys.executable, "-c", "from near_failover.ha.wake import raise_priority; print(raise_priority())"],
        capture_output=True, text=True, check=True, env={**os.environ},
    ).stdout
    assert note.startswith("real-time priority SCHED_FIFO") or "not permitted" in note
