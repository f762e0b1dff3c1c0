"""systemd's notify protocol (sd_notify(3)) with the standard library: READY, WATCHDOG, STOPPING.

With `Type=notify` systemd counts the agent started only once it says READY=1 (its watchdog
watches, so it may lead), and with `WatchdogSec=` it kills and restarts an agent that stops
sending WATCHDOG=1. The pings are tied to the agent's own loop (its heartbeat), not to a timer
of the event loop, so a loop stuck in one check is seen as hung even though asyncio still runs.
The datagram goes to $NOTIFY_SOCKET, a path or, with a leading '@', an abstract socket; without
it (not under systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def notify_address(environ: Mapping[str, str] | None = None) -> str | None:
    """Where systemd listens, as socket.sendto takes it (abstract names start with a NUL)."""
    raw = (environ if environ is not None else os.environ).get(NOTIFY_SOCKET)
    if not raw or raw[0] not in "/@":
        return None  # unset, or a vsock address this module does not speak
    return "\0" + raw[1:] if raw[0] == "@" else raw


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one state line ("READY=1", "WATCHDOG=1"...); False when there is no systemd to tell
    or the datagram could not be sent (never an exception: the agent's work goes first)."""
    address = notify_address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never wait: a reader that falls behind fills its queue (net.unix.max_dgram_qlen,
            # 10 by default), and a blocking send would then stop the watchdog's or the agent's
            # whole event loop, fence included. A ping lost that way is one systemd did not read.
            sock.sendto(state.encode(), socket.MSG_DONTWAIT, address)
    except OSError:
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec, as sd_watchdog_enabled(3)
    advises), or None when systemd expects none from this process."""
    env = environ if environ is not None else os.environ
    usec, owner = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if owner and owner.isdigit() and int(owner) != (pid if pid is not None else os.getpid()):
        return None  # set for another process (a parent that did not clear it)
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1e6 / 2


def beat_is_fresh(last_beat: float | None, now: float, stale_after: float) -> bool:
    """Pure: whether the agent's loop wrote its heartbeat recently enough to be called alive."""
    return last_beat is not None and now - last_beat <= stale_after


async def supervise(ready: asyncio.Event, last_beat: Callable[[], float | None], clock: Callable[[], float],
                    stale_after: float, environ: Mapping[str, str] | None = None) -> None:
    """READY=1 once ``ready`` is set, then WATCHDOG=1 at half of WatchdogSec while the loop's
    last heartbeat (``last_beat``, on ``clock``) is younger than ``stale_after``: a hung loop stops
    the pings and systemd restarts the agent (its watchdog, in its own unit, fences meanwhile)."""
    await ready.wait()
    notify("READY=1", environ)
    interval = watchdog_interval(environ)
    if interval is None:
        return
    while True:
        if beat_is_fresh(last_beat(), clock(), stale_after):
            notify("WATCHDOG=1", environ)
        await asyncio.sleep(interval)
