"""What automatic mode costs a node: CPU and memory of each agent and each watchdog, idle and
during a failover, beside a baseline from the same run.

A localnet (fast profile) with three agents on a sqlite lease and the inventory's default timings
(ttl 10 s, loop 1 s, retry 2 s). Idle: every process's CPU over ``--idle`` seconds once the agents
settled. Failover: the same from the SIGKILL of the signer's neard until ``--failover`` seconds
later (the standby promotes within that). CPU is % of one core from /proc/<pid>/stat (utime +
stime), RSS the largest /proc/<pid>/status VmRSS seen in the window. Baseline, measured in the same
run: each node's emulated neard, and a bare `python -c` sleeping (the interpreter's own floor).
Target (issue 13): agent + watchdog per node under 1 % of a core and 100 MB RSS idle, the
watchdog alone under 25 MB. Prints figures; asserts nothing.

With ``--api`` every agent also serves its API (uvicorn in the agent's loop), as deployed.

Usage: python bench/agent_overhead.py [--idle 60] [--failover 20] [--block-time 0.6] [--api]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from near_failover.demo import add_lease, agents, localnet
from near_failover.inventory import load_inventory
from near_failover.procedures.nodes import open_nodes

OURS: dict[str, float] = {"ttl": 10, "loop_wait": 1, "retry_timeout": 2, "unhealthy_loops": 3}
NODES = ["val-a", "val-b", "val-c"]
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_percent: float  # of one core, over the window
    rss_mb: float  # the most seen in the window


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def measure(pids: dict[str, int], seconds: float) -> dict[str, Usage]:
    """CPU and peak RSS of each process over ``seconds`` (a process that exits is dropped)."""
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    began = time.monotonic()
    peak: dict[str, float] = {}
    while time.monotonic() - began < seconds:
        for name, pid in pids.items():
            peak[name] = max(peak.get(name, 0.0), rss_mb(pid) or 0.0)
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - began
    usage = {}
    for name, pid in pids.items():
        end, first = cpu_seconds(pid), start[name]
        if end is not None and first is not None:
            usage[name] = Usage(round(100 * (end - first) / elapsed, 2), round(peak.get(name, 0.0), 1))
    return usage


def watchdog_pid(state: Path, node: str) -> int | None:
    try:
        return int(json.loads((state / f"agent-{node}.heartbeat.watching").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def add_api(inventory_path: Path) -> None:
    """Every node an agent API on a loopback port and a shared token, as a deployment has them
    (the page, /metrics, the failsafe's confirmations): the API server runs in the agent."""
    token = inventory_path.parent / "api-token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(os.urandom(16).hex() + "\n")
    data = tomllib.loads(inventory_path.read_text())
    for node in data["node"]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            node["api"] = f"http://127.0.0.1:{probe.getsockname()[1]}"
    data["lease"]["api_token_file"] = str(token)
    inventory_path.write_text(tomli_w.dumps(data))


async def run(block_time: float, idle: float, failover: float, api: bool) -> dict[str, dict[str, Usage]]:
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        directory = Path(tmp) / "net"
        with localnet(directory, block_time, 3.0, say=lambda _m: None, epoch_length=5000) as inventory_path:
            add_lease(inventory_path, OURS)
            if api:
                add_api(inventory_path)
            inventory = load_inventory(inventory_path)
            state = Path(inventory.journal.path).parent
            floor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # noqa: ASYNC220 - started once, never awaited
            try:
                with agents(inventory_path, NODES) as procs:
                    async with open_nodes(inventory) as nodes:
                        neards = {n: await nodes[n].control.main_pid() for n in NODES}
                        deadline = time.monotonic() + 120
                        while any(watchdog_pid(state, n) is None for n in NODES) and time.monotonic() < deadline:
                            await asyncio.sleep(0.5)
                        await asyncio.sleep(3 * OURS["ttl"])  # a leader claimed, the standbys settled
                        pids = {f"agent {n}": procs[n].pid for n in NODES}
                        pids |= {f"watchdog {n}": pid for n in NODES if (pid := watchdog_pid(state, n))}
                        pids |= {f"neard {n}": pid for n, pid in neards.items() if pid}
                        pids["bare python"] = floor.pid
                        quiet = await measure(pids, idle)
                        signer = neards["val-a"]
                        if signer:
                            os.kill(signer, signal.SIGKILL)
                        pids.pop("neard val-a", None)
                        busy = await measure(pids, failover)
            finally:
                floor.kill()
                floor.wait()
    return {"idle": quiet, "failover": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--failover", type=float, default=20.0)
    parser.add_argument("--block-time", type=float, default=0.6)
    parser.add_argument("--api", action="store_true", help="give every agent its API (as deployed), not only the loop")
    args = parser.parse_args()
    results = asyncio.run(run(args.block_time, args.idle, args.failover, args.api))
    idle, busy = results["idle"], results["failover"]
    print(f"three agents on sqlite{' with their API' if args.api else ''}, {args.block_time} s blocks; idle over {args.idle:g} s, failover (SIGKILL of val-a's neard) "
          f"over the next {args.failover:g} s; CPU in % of one core, RSS peak in MB")
    print(f"{'process':<18} {'idle CPU %':>10} {'idle RSS':>9} {'failover CPU %':>15} {'failover RSS':>13}")
    for name in idle:
        after = busy.get(name)
        print(f"{name:<18} {idle[name].cpu_percent:>10.2f} {idle[name].rss_mb:>9.1f} "
              f"{(f'{after.cpu_percent:.2f}' if after else '-'):>15} {(f'{after.rss_mb:.1f}' if after else '-'):>13}")
    print("per node, agent + watchdog (idle):")
    for n in NODES:
        agent, dog = idle.get(f"agent {n}"), idle.get(f"watchdog {n}")
        if agent and dog:
            print(f"  {n}: {agent.cpu_percent + dog.cpu_percent:.2f} % of a core, {agent.rss_mb + dog.rss_mb:.1f} MB "
                  f"(target: under 1 % and 100 MB; watchdog alone under 25 MB: {dog.rss_mb:.1f} MB)")


if __name__ == "__main__":
    main()
