"""The wake guard (ha/wake.py) on real processes: a process held by its pidfd is SIGKILLed once
the lease's kill point has passed (a stopped one too: a frozen host), and never before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from near_failover.ha.lease import lease_clock
from near_failover.ha.wake import TICK, NeardHandle, WakeGuard, guard_wake, sleep_until


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


def test_an_armed_guard_sleeps_to_the_kill_point_a_disarmed_one_a_tick() -> None:
    now = 1000.0
    assert guard_wake(None, now, margin=0.5) == now + TICK  # disarmed: looks again to see arming
    assert guard_wake(now + 60, now, margin=0.5) == now + TICK  # far: a deadline that moved is seen within a tick
    assert guard_wake(now + 0.8, now, margin=0.5) == now + 0.3  # near: the kill point itself, not a tick past it
    assert guard_wake(now + 0.2, now, margin=0.5) == now - 0.3  # past: at once


@contextmanager
def guarded(end: list[float | None]) -> Iterator[subprocess.Popen[bytes]]:
    """A process held by a running guard thread whose lease ends at ``end[0]`` (kill margin 0.1 s)."""
    proc = sleeper()
    try:
        guard = WakeGuard(lambda: end[0], margin=0.1)
        guard.hold(NeardHandle.open(proc.pid))
        guard.start(realtime_thread=False)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_renewed_lease_spares_neard_and_the_guard_kills_at_the_last_renewals_kill_point() -> None:
    """The guard sleeps to the known kill point; a renewal moves the end later, and the guard,
    woken at the old point, reads it again and sleeps on: neard lives through every renewal and
    dies at the kill point of the last one, not before."""
    end: list[float | None] = [lease_clock() + 0.6]
    with guarded(end) as proc:
        for _ in range(6):  # renewed every 0.2 s for 1.2 s, twice the first lease
            time.sleep(0.2)
            last = end[0] = lease_clock() + 0.6
            assert proc.poll() is None
        assert proc.wait(10) == -signal.SIGKILL
        assert lease_clock() >= last - 0.1  # not before the last renewal's kill point


def test_a_guard_armed_after_it_started_disarmed_kills_on_time() -> None:
    end: list[float | None] = [None]
    with guarded(end) as proc:
        time.sleep(0.3)
        assert proc.poll() is None  # disarmed: nothing killed
        armed = lease_clock() + 1.5
        end[0] = armed
        assert proc.wait(10) == -signal.SIGKILL
        assert lease_clock() >= armed - 0.1


def test_an_armed_guard_does_not_poll_its_deadline() -> None:
    """Each look at the deadline is a wake-up beside every neard (issue 13: under 1 % of a core
    for agent and watchdog): with a far lease end the guard looks about once a TICK, not four
    times a second."""
    looks = [0]

    def lease_end() -> float:
        looks[0] += 1
        return lease_clock() + 60.0

    guard = WakeGuard(lease_end, margin=0.5)
    guard.start(realtime_thread=False)
    time.sleep(2.2)
    assert 1 <= looks[0] <= 4  # at 0, 1 and 2 s; the old 0.25 s poll looked 9 times
