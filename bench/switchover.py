"""Our hot-swap switchover against the guide's bare manual sequence, on one localnet in one run.

Three moves of the pool between val-a and val-b (both Option 2 standbys when not signing):
1. ours: `switchover --mode hot-swap` (preflight, fence with proof, activate, verify, settle);
2. bare: the guide by hand, no checks: copy the key into the standby's home, SIGTERM the
   primary, SIGHUP the standby;
3. ours with `--in-window`: the same as 1, placed in a gap of the pool's duties long enough for
   val-a's stop as move 1 journaled it plus neard's reload (or refused when none comes).
Between moves the old primary is prepared again as a hot-swap standby (untimed).

Each move's time by phase and missed duties (the chain's produced/expected counters from before
the move until the new signer has produced) are printed side by side, and the ledger's double
signs at the end. Targets (issue 4): ours misses no more than bare and adds at most one block
time; in-window misses no block or chunk. Prints figures; asserts nothing.

`--profile both` (the default) runs the three moves on a localnet with the emulator's fast
profile and again on one with its mainnet profile (store shutdown, SIGHUP applied later,
memtrie loads when a standby is prepared again), and prints them side by side; each ratio to
bare is measured within one localnet's run.

Usage: python bench/switchover.py [--block-time 0.6] [--profile fast|mainnet|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from near_failover.inventory import Inventory, StandbyMode, load_inventory
from near_failover.neard.config import as_hot_swap_standby, dumps_config, load_config
from near_failover.neard.rpc import NeardRpc
from near_failover.procedures.chain_view import Production, production_of
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import Move, MoveRequest
from near_failover.procedures.nodes import open_nodes
from near_failover.procedures.plan import MoveKind, MoveOptions, MoveSettings

CLI = [sys.executable, "-m", "near_failover"]


def cli(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"near-failover {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


async def production(rpc: NeardRpc, pool: str) -> Production:
    status = await rpc.status()
    snap = production_of(await rpc.validators(), pool, status.sync_info.latest_block_height)
    assert snap is not None
    return snap


WINDOW_WAIT = 60.0  # seconds --in-window may wait for a long enough gap


async def until(predicate: Any, timeout: float = 60.0, poll: float = 0.02) -> None:
    end = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > end:
            raise TimeoutError("benchmark move did not complete")
        await asyncio.sleep(poll)


async def bare_sequence(inv: Inventory, source: str, target: str) -> dict[str, Any]:
    """The guide, typed by an operator who checks nothing."""
    pool = inv.validator.account_id
    src, dst = inv.node(source), inv.node(target)
    async with NeardRpc(dst.rpc, timeout=2) as rpc:
        before = await production(rpc, pool)
        t0 = time.monotonic()
        shutil.copyfile(dst.key_store, dst.validator_key_path)  # copy validator_key.json
        os.chmod(dst.validator_key_path, 0o600)
        t1 = time.monotonic()
        os.kill(int(Path(str(src.control_spec.pidfile)).read_text()), signal.SIGTERM)  # stop the primary
        os.kill(int(Path(str(dst.control_spec.pidfile)).read_text()), signal.SIGHUP)  # SIGHUP the standby
        t2 = time.monotonic()

        async def loaded() -> bool:
            return (await rpc.status()).validator_account_id == pool

        await until(loaded)
        t3 = time.monotonic()

        async def producing() -> bool:
            return (await production(rpc, pool)).produced > before.produced

        await until(producing)
        t4 = time.monotonic()
        after = await production(rpc, pool)
    os.remove(src.validator_key_path)  # the bare sequence leaves the old key behind; tidy for the next move
    return {
        "seconds": {"fence": t2 - t1, "activate": t3 - t2, "verify": t4 - t3, "total": t4 - t0},
        "missed": after.minus(before),
    }


async def our_switchover(inv: Inventory, target: str, in_window: bool) -> dict[str, Any]:
    async with open_nodes(inv) as nodes:
        with Journal(Path(inv.journal.path)) as journal:
            started = time.monotonic()
            # The gap --in-window needs comes from the source's journaled stop (the "ours" move
            # fenced it): on the mainnet profile's 20 s stop none may come, so the wait is bounded.
            settings = MoveSettings(window_wait=WINDOW_WAIT) if in_window else None
            request = MoveRequest(MoveKind.SWITCHOVER, MoveOptions(target, StandbyMode.HOT_SWAP, in_window=in_window), settings=settings)
            result = await Move(inv, nodes, journal, request).run()
            total = time.monotonic() - started
    if in_window and result.outcome == "refused":
        return {"refused": result.message}
    if not result.ok:
        raise RuntimeError(result.message)
    waited = 0.0
    if in_window:  # time spent waiting for the gap is scheduling, not switchover time
        waited = result.seconds.get("preflight", 0.0)
    s = result.seconds
    return {
        "seconds": {"fence": s["fence"], "activate": s["activate"], "verify": s["verify"], "total": total - waited},
        "missed": result.missed,
    }


async def prepare_standby(inv: Inventory, name: str, wait_ready: float = 600.0) -> None:
    """Make a fenced old primary a hot-swap standby again: ShadowValidator config, no key, unmask, start."""
    node = inv.node(name)
    cfg = as_hot_swap_standby(load_config(Path(str(node.config_path))), inv.validator.account_id)
    Path(str(node.config_path)).write_text(dumps_config(cfg))
    Path(str(node.validator_key_path)).unlink(missing_ok=True)
    async with open_nodes(inv) as nodes:
        control = nodes[name].control
        await control.unmask()
        await control.stop(timeout=120)  # the bare sequence's SIGTERM may still be in neard's store shutdown
        await control.start()

        async def ready() -> bool:
            status = await nodes[name].status_or_none()
            return status is not None and not status.sync_info.syncing

        await until(ready, wait_ready, 0.2)


BARE = "bare (guide by hand)"


def cells(m: dict[str, Any]) -> str:
    if "refused" in m:
        return "refused: " + m["refused"].split(" in ")[0]
    if "error" in m:
        return f"failed: {m['error'][:60]}"
    s, x = m["seconds"], m["missed"]
    return (f"{s['fence']:>7.2f} {s['activate']:>8.2f} {s['verify']:>7.2f} {s['total']:>7.2f}"
            f" {x['blocks']:>4}/{x['chunks']}/{x['endorsements']:<5}")


async def one_profile(block_time: float, profile: str) -> dict[str, Any]:
    """The three moves on one localnet of `profile`; the ledger's double signs at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-switchover-") as tmp:
        directory = Path(tmp) / "net"
        cli("localnet", "up", "--dir", str(directory), "--block-time", str(block_time), "--epoch-length", "5000", "--seed", "11", "--profile", profile)
        try:
            inv = load_inventory(directory / "inventory.toml")
            results: dict[str, Any] = {}
            results["ours"] = await our_switchover(inv, "val-b", in_window=False)
            await prepare_standby(inv, "val-a")
            results[BARE] = await bare_sequence(inv, "val-b", "val-a")
            await prepare_standby(inv, "val-b")
            try:
                results["ours --in-window"] = await our_switchover(inv, "val-b", in_window=True)
            except RuntimeError as exc:  # a refused or stopped move is a figure too
                results["ours --in-window"] = {"error": str(exc)}
            results["double_signs"] = json.loads(cli("localnet", "ledger", "--dir", str(directory), "--json"))["double_signs"]
        finally:
            cli("localnet", "down", "--dir", str(directory))
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-time", type=float, default=0.6)
    parser.add_argument("--profile", choices=("fast", "mainnet", "both"), default="both")
    args = parser.parse_args()
    profiles = ("fast", "mainnet") if args.profile == "both" else (args.profile,)
    runs = {p: await one_profile(args.block_time, p) for p in profiles}
    head = f"{'fence s':>7} {'activate':>8} {'verify':>7} {'total s':>7} {'missed b/c/e':<12}"
    print(f"hot-swap switchover on the localnet, {args.block_time} s blocks; one localnet run per profile")
    print(f"{'move':<22} " + "   ".join(f"{p + ' profile':^44}" for p in profiles))
    print(f"{'':<22} " + "   ".join(head for _ in profiles))
    for name in (BARE, "ours", "ours --in-window"):
        print(f"{name:<22} " + "   ".join(f"{cells(runs[p][name]):<44}" for p in profiles))
    extras = []
    for p in profiles:
        extra = runs[p]["ours"]["seconds"]["total"] - runs[p][BARE]["seconds"]["total"]
        extras.append(f"{p}: {extra:+.2f} s ({extra / args.block_time:+.2f} block times)")
    print("ours - bare total, same run: " + "; ".join(extras))
    print("double signs in the ledger: " + "; ".join(f"{p}: {runs[p]['double_signs']}" for p in profiles))


if __name__ == "__main__":
    asyncio.run(main())
