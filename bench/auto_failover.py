"""Unplanned failover after a neard crash: our agent against a kuutamod-like policy, one run.

Each scenario runs on a fresh localnet with agents on a sqlite lease, kills the signer's neard
(SIGKILL) and measures, from the fault, the time until the new node has the key loaded and until
it signs its first duty, plus the pool's missed duties and the ledger's double signs:
- ours, hot-swap (Option 2): the inventory's default timings (ttl 10 s, loop 1 s, retry 2 s);
  the leader's agent sees its neard gone, fences itself and hands the lease over;
- ours, rpc (Option 1): the same, promotion by config edit + restart;
- kuutamod-like: what kuutamod documents (reference/anchors.md): a lease of 30 s renewed every
  10 s, fencing by timers only, promotion by restart. Its leader's supervisor neither releases
  the lease nor proves a fence (it restarts neard in place), so in this harness the leader's
  agent (ttl 30 s, loop 10 s) dies with its neard and the lease ends by expiry; the standby's
  agent checks every second (as kuutamod's blocking Consul query would), then fences the old
  node and restarts its own neard with the key.
Target (issue 5): ours hot-swap under 5 s at 0.6 s blocks, at least 5 times faster than the
kuutamod-like policy, zero double signs. Prints figures; asserts nothing.

`--profile both` (the default) runs the three scenarios on the emulator's fast profile and on
its mainnet profile and prints them side by side; each ratio is between scenarios of the same
profile. On the mainnet profile every restart pays neard's memtrie load (30 s per shard): the
kuutamod-like promotion and ours rpc restart neard, ours hot-swap does not.

`--runs N` repeats each scenario N times on fresh localnets and prints the median and the maximum
of each figure (missed duties and double signs: the maximum).

Usage: python bench/auto_failover.py [--block-time 0.6] [--profile fast|mainnet|both] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import statistics
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from near_failover.demo import add_lease, agents, crash_and_measure, ledger, localnet

OURS: dict[str, float] = {"ttl": 10, "loop_wait": 1, "retry_timeout": 2, "unhealthy_loops": 3}
# The kuutamod-like policy (see the docstring): the leader's lease of 30 s renewed every 10 s; a
# standby that checks every second and promotes by restarting neard (Option 1). Shared with
# bench/host_loss.py, which runs the same policy against a lost host.
KUUTAMOD_LEADER = {"ttl": 30, "loop_wait": 10, "retry_timeout": 5, "unhealthy_loops": 3}
KUUTAMOD_STANDBY = {"ttl": 30, "loop_wait": 1, "retry_timeout": 2, "unhealthy_loops": 3}
KUUTAMOD_MODE = "rpc"


@dataclass(frozen=True)
class Scenario:
    name: str
    standby: str
    timings: dict[str, float] = field(default_factory=lambda: OURS)
    standby_mode: str | None = None  # the inventory's, unless set
    standby_timings: dict[str, float] | None = None  # the standby agent's own, if not the leader's
    timers_only: bool = False  # the leader's agent dies with its neard: the lease ends by expiry


SCENARIOS = [
    Scenario("ours hot-swap", "val-b"),
    Scenario("ours rpc", "val-c"),
    Scenario("kuutamod-like", "val-b", KUUTAMOD_LEADER, KUUTAMOD_MODE, KUUTAMOD_STANDBY, timers_only=True),
]


def variant(inventory: Path, name: str, timings: dict[str, float]) -> Path:
    """The inventory with other [lease] timings, beside it (so relative paths are the same)."""
    data = tomllib.loads(inventory.read_text())
    data["lease"].update(timings)
    path = inventory.with_name(f"inventory-{name}.toml")
    path.write_text(tomli_w.dumps(data))
    return path


def with_agent_apis(inventory: Path) -> None:
    """An agent API per node on loopback, as a deployment has (the failsafe needs them): a
    leader that hands its lease over tells the target's agent through it at once."""
    data = tomllib.loads(inventory.read_text())
    for node in data["node"]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            node["api"] = f"http://127.0.0.1:{probe.getsockname()[1]}"
    token = inventory.with_name("api-token")
    token.write_text(secrets.token_hex(16) + "\n")
    token.chmod(0o600)
    data["lease"]["api_token_file"] = str(token)
    inventory.write_text(tomli_w.dumps(data))


async def scenario(block_time: float, s: Scenario, profile: str) -> dict[str, Any]:
    # fast: a 3 s memtrie load per restart; mainnet: the profile's own (30 s per shard loaded).
    memtrie_load = 3.0 if profile == "fast" else None
    with tempfile.TemporaryDirectory(prefix="bench-auto-") as tmp:
        directory = Path(tmp) / "net"
        with localnet(directory, block_time, memtrie_load, say=lambda _m: None, epoch_length=5000, profile=profile) as inventory:
            add_lease(inventory, s.timings, {s.standby: s.standby_mode} if s.standby_mode else {})
            with_agent_apis(inventory)
            own = {s.standby: variant(inventory, s.standby, s.standby_timings)} if s.standby_timings else {}
            with agents(inventory, ["val-a", s.standby], own) as procs:
                also = procs["val-a"].kill if s.timers_only else None
                move = await crash_and_measure(inventory, s.standby, timeout=900, also=also)
            move["double_signs"] = ledger(directory)["double_signs"]
    return move


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's runs as one: medians of the seconds (the maxima beside them), the worst
    missed duties and double signs, ok only if every run was."""
    first = runs[0]
    missed = [r["missed"] for r in runs if r["missed"]]
    return {
        **first,
        "ok": all(r["ok"] for r in runs),
        "runs": len(runs),
        "seconds": {k: statistics.median(r["seconds"][k] for r in runs) for k in first["seconds"]},
        "max_seconds": {k: max(r["seconds"][k] for r in runs) for k in first["seconds"]},
        "missed": {k: max(m[k] for m in missed) for k in missed[0]} if missed else None,
        "double_signs": max(r["double_signs"] for r in runs),
        "each": [r["seconds"] for r in runs],
        "readiness_reused": [r.get("readiness_reused", False) for r in runs],
    }


def spread(m: dict[str, Any], key: str) -> str:
    median, most = m["seconds"][key], m["max_seconds"][key]
    return f"{median:.2f}" if m["runs"] == 1 else f"{median:.2f} ({most:.2f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-time", type=float, default=0.6)
    parser.add_argument("--profile", choices=("fast", "mainnet", "both"), default="both")
    parser.add_argument("--runs", type=int, default=1, help="runs per scenario: median and maximum are printed")
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS], help="only these (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    profiles = ("fast", "mainnet") if args.profile == "both" else (args.profile,)
    results: dict[str, dict[str, Any]] = {p: {} for p in profiles}
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    for p in profiles:
        for s in chosen:
            results[p][s.name] = combined([await scenario(args.block_time, s, p) for _ in range(args.runs)])
    if args.json:
        print(json.dumps(results, indent=2))
        return
    runs = f"median (max) of {args.runs} runs" if args.runs > 1 else "one run"
    print(f"unplanned failover after SIGKILL of the signer's neard, {args.block_time} s blocks; each profile's scenarios in one run; {runs}")
    print(f"{'policy':<16} {'to':<6} " + "   ".join(f"{p + ' profile':^46}" for p in profiles))
    print(f"{'':<23}" + "   ".join(f"{'ok':<5} {'key loaded s':>12} {'first duty s':>12} {'missed b/c/e':<10} {'2x':>2}" for _ in profiles))
    for s in chosen:
        row = []
        for p in profiles:
            m = results[p][s.name]
            x = m["missed"] or {"blocks": "?", "chunks": "?", "endorsements": "?"}
            row.append(f"{str(m['ok']):<5} {spread(m, 'key_loaded'):>12} {spread(m, 'total'):>12} "
                       f"{str(x['blocks']) + '/' + str(x['chunks']) + '/' + str(x['endorsements']):<10} {m['double_signs']:>2}")
        print(f"{s.name:<16} {s.standby:<6} " + "   ".join(row))
    ratios = []
    for p in profiles if {"ours hot-swap", "kuutamod-like"} <= {s.name for s in chosen} else ():
        ours, kuutamod = results[p]["ours hot-swap"]["seconds"]["total"], results[p]["kuutamod-like"]["seconds"]["total"]
        ratios.append(f"{p}: {kuutamod / ours:.1f}x")
    print("kuutamod-like / ours hot-swap (first duty), same profile's run: " + "; ".join(ratios))
    print("2x: double signs in the ledger")


if __name__ == "__main__":
    asyncio.run(main())
