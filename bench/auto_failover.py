"""Unplanned failover after a neard crash: our agent against a kuutamod-like policy, one run.

Each scenario runs on a fresh localnet with agents on a sqlite lease, kills the signer's neard
(SIGKILL) and measures, from the fault, the time until the new node has the key loaded and until
it signs its first duty, plus the pool's missed duties and the ledger's double signs:
- ours, hot-swap (Option 2): the inventory's default timings (ttl 10 s, loop 1 s, retry 2 s,
  3 bad checks before stepping down);
- ours, rpc (Option 1): the same timings, promotion by config edit + restart;
- kuutamod-like: lease TTL 30 s renewed every 10 s (3 bad checks of 10 s before stepping
  down), promotion by restart; the policy kuutamod documents, in the same harness.
Target (issue 5): ours hot-swap under 5 s at 0.6 s blocks, at least 5 times faster than the
kuutamod-like policy, zero double signs. Prints figures; asserts nothing.

Usage: python bench/auto_failover.py [--block-time 0.6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from near_failover.demo import add_lease, agents, crash_and_measure, ledger, localnet

SCENARIOS: list[tuple[str, dict[str, float], str, dict[str, str]]] = [
    ("ours hot-swap", {"ttl": 10, "loop_wait": 1, "retry_timeout": 2, "unhealthy_loops": 3}, "val-b", {}),
    ("ours rpc", {"ttl": 10, "loop_wait": 1, "retry_timeout": 2, "unhealthy_loops": 3}, "val-c", {}),
    ("kuutamod-like", {"ttl": 30, "loop_wait": 10, "retry_timeout": 5, "unhealthy_loops": 3}, "val-b", {"val-b": "rpc"}),
]


async def scenario(block_time: float, timings: dict[str, float], standby: str, modes: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-auto-") as tmp:
        directory = Path(tmp) / "net"
        with localnet(directory, block_time, memtrie_load=3.0, say=lambda _m: None, epoch_length=5000) as inventory:
            add_lease(inventory, timings, modes)
            with agents(inventory, ["val-a", standby]):
                move = await crash_and_measure(inventory, standby, timeout=180)
            move["double_signs"] = ledger(directory)["double_signs"]
    return move


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-time", type=float, default=0.6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, timings, standby, modes in SCENARIOS:
        results[name] = await scenario(args.block_time, timings, standby, modes)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"unplanned failover after SIGKILL of the signer's neard, {args.block_time} s blocks (one run)")
    print(f"{'policy':<16} {'to':<6} {'ok':<5} {'key loaded s':>12} {'first duty s':>12}   {'missed blocks':>6} {'chunks':>6} {'endorsements':>12}  {'double signs':>12}")
    for name, m in results.items():
        x = m["missed"] or {"blocks": "?", "chunks": "?", "endorsements": "?"}
        print(f"{name:<16} {m['to']:<6} {str(m['ok']):<5} {m['seconds']['key_loaded']:>12.2f} {m['seconds']['total']:>12.2f}"
              f"   {x['blocks']:>6} {x['chunks']:>6} {x['endorsements']:>12}  {m['double_signs']:>12}")
    ours, kuutamod = results["ours hot-swap"]["seconds"]["total"], results["kuutamod-like"]["seconds"]["total"]
    print(f"kuutamod-like / ours hot-swap: {kuutamod / ours:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
