"""The agent's watchdog as its own systemd unit, so that it outlives its agent.

A watchdog the agent spawns runs in the agent's cgroup: with `KillMode=control-group` and
`Restart=always`, systemd kills every process of the unit when the agent crashes, is killed by
its own `WatchdogSec=`, or is restarted, and the watchdog dies exactly when it is needed (a
leader's agent gone with neard still signing). Run by `near-failover-watchdog.service`, a unit
the agent's does not bind (no BindsTo/PartOf), it stays, fences at the lease's end as ever
(watchdog.py), and waits for the next agent instead of exiting.

Light as the agent's child is: `near-failover watchdog` (the unit's command) reads the inventory,
writes the node's `FenceTarget` beside the heartbeat, and replaces itself (exec, same pid for
systemd) with this module's `main`, which loads no inventory, pydantic, HTTP or SSH library.

The agent then must not spawn its own: with NEAR_FAILOVER_WATCHDOG=unit in its environment
(deploy/systemd's agent unit sets it) watchdog.start_watchdog returns an `ExternalWatchdog`,
which the agent polls like the child process, and whose liveness it reads from the watching
marker as it already does.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from near_failover.ha.clock import lease_clock
from near_failover.ha.sdnotify import notify, supervise
from near_failover.ha.watchdog import POLL, WATCHING_EVERY, FenceTarget, Heartbeat, _read_json, run_main, watch
from near_failover.hosts.local import process_alive

if TYPE_CHECKING:
    from near_failover.inventory import Inventory


def heartbeat_path(inventory: Inventory, node: str) -> Path:
    """Where the agent of ``node`` beats (its default state directory: beside the journal)."""
    return Path(inventory.journal.path).parent / f"agent-{inventory.node(node).name}.heartbeat"


def watchdog_reserve(inventory: Inventory) -> float:
    """The agent's own reserve for this inventory (its settings decide it, not a copy here)."""
    from near_failover.ha.agent import AgentSettings

    return AgentSettings.from_inventory(inventory).watchdog_reserve


def nothing_to_guard(beat: dict | None, fenced: dict | None, agent_alive: bool) -> bool:
    """Pure: no agent lives, and the lease its last beat armed (if any) was fenced already (the
    fenced marker names that generation and lease end), so watchdog.watch would only return."""
    if beat is None:
        return True
    if agent_alive:
        return False
    if not beat.get("armed"):
        return True
    return fenced is not None and (fenced.get("generation"), fenced.get("valid_until")) == (beat.get("generation"), beat.get("valid_until"))


async def watch_forever(target: FenceTarget, heartbeat: Heartbeat, reserve: float) -> int:
    """Watch every agent of the node in turn: watchdog.watch while one lives or left a lease
    armed (it fences then returns), and between agents keep the watching marker fresh, so the
    next agent finds its watchdog already there. Returns only when cancelled."""
    heartbeat.path.parent.mkdir(parents=True, exist_ok=True)
    ready = asyncio.Event()

    def marker_at() -> float | None:
        marker = heartbeat.watching()
        return marker["at"] if marker is not None and marker.get("pid") == os.getpid() else None

    # WatchdogSec of this unit: pinged while this process keeps its watching marker fresh.
    pings = asyncio.create_task(supervise(ready, marker_at, lease_clock, stale_after=4 * WATCHING_EVERY))
    try:
        while True:
            beat = heartbeat.read()
            alive = beat is not None and process_alive(int(beat.get("agent_pid") or 0))
            if nothing_to_guard(beat, _read_json(heartbeat.fenced_marker), alive):
                heartbeat.mark_watching(reserve)
                ready.set()
                await asyncio.sleep(min(POLL * 4, WATCHING_EVERY))
                continue
            print(f"watchdog: watching {target.name}'s agent (heartbeat {heartbeat.path})", flush=True)
            ready.set()
            await watch(target, heartbeat, reserve)
            print(f"watchdog: {target.name}'s agent is gone and left nothing signing; waiting for the next one", flush=True)
    finally:
        notify("STOPPING=1")
        pings.cancel()


def main() -> None:
    run_main("near-failover watchdog (its own systemd unit)", watch_forever)


if __name__ == "__main__":
    main()
