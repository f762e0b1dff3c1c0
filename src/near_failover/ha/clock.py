"""The lease clock, alone in a module of the standard library: every process on a host reads it,
the watchdog among them, which must not load the lease stores (pydantic) to tell the time."""

from __future__ import annotations

import time

__all__ = ["lease_clock"]


def lease_clock() -> float:
    """The clock of every lease deadline here: seconds since boot, suspend included
    (CLOCK_BOOTTIME), one clock for every process on the host. CLOCK_MONOTONIC stops while the
    host is suspended (a paused VM, a laptop lid): a leader woken after its lease ended on the
    store (etcd on another host) would believe it still had time, and sign."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)
