"""A watchdog outside the agent's process: a hung or dead leader agent cannot leave a signing neard.

Patroni arms the Linux watchdog device so a hung manager resets the machine. Here the agent arms
a separate process (its own session, so a signal to the agent does not reach it): while armed,
the agent rewrites a heartbeat file every loop; if the heartbeat is older than `timeout`, the
watchdog fences neard itself (key out of home, stop, mask), well before the lease can expire
(`timeout` < ttl), so a standby that wins the expired lease never meets a live signer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

POLL = 0.1


@dataclass
class Heartbeat:
    """What the agent writes each loop; `at` is CLOCK_MONOTONIC, shared by every process."""

    path: Path

    def beat(self, armed: bool, generation: int | None) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"armed": armed, "generation": generation, "at": time.monotonic(), "agent_pid": os.getpid()}))
        os.replace(tmp, self.path)

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    @property
    def fenced_marker(self) -> Path:
        return self.path.with_name(self.path.name + ".fenced")


def spawn_watchdog(inventory: Path, node: str, heartbeat: Path, timeout: float) -> subprocess.Popen[bytes]:
    log = open(heartbeat.with_name(heartbeat.name + ".log"), "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [sys.executable, "-m", "near_failover.ha.watchdog", "--inventory", str(inventory), "--node", node,
         "--heartbeat", str(heartbeat), "--timeout", str(timeout)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
        return text[text.rindex(")") + 2] != "Z"
    except (OSError, ValueError):
        return True


async def fence_node(inventory_path: Path, node_name: str) -> dict:
    """Fence this node's neard through its own host and control, as a switchover would."""
    from near_failover.inventory import load_inventory
    from near_failover.procedures.fence import fence_reachable
    from near_failover.procedures.nodes import open_nodes

    inventory = load_inventory(inventory_path)
    async with open_nodes(inventory) as nodes:
        proof = await fence_reachable(nodes[node_name], stop_timeout=5.0)
    return proof.evidence


async def watch(inventory: Path, node: str, heartbeat: Heartbeat, timeout: float) -> int:
    while True:
        beat = heartbeat.read()
        if beat is None:
            await asyncio.sleep(POLL)
            continue
        stale = time.monotonic() - beat["at"]
        if beat["armed"] and stale > timeout:
            print(f"watchdog: agent heartbeat {stale:.1f}s old (> {timeout}s) while leader: fencing {node}", flush=True)
            evidence = await fence_node(inventory, node)
            heartbeat.fenced_marker.write_text(json.dumps({"generation": beat["generation"], "at": time.time(), "evidence": evidence}))
            print(f"watchdog: fenced {node}: {json.dumps(evidence)}", flush=True)
            return 0
        if not beat["armed"] and not _alive(beat["agent_pid"]):
            return 0  # the agent is gone and held nothing: nothing to guard
        await asyncio.sleep(POLL)


def main() -> None:
    parser = argparse.ArgumentParser(description="near-failover agent watchdog")
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--heartbeat", type=Path, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args()
    sys.exit(asyncio.run(watch(args.inventory, args.node, Heartbeat(args.heartbeat), args.timeout)))


if __name__ == "__main__":
    main()
