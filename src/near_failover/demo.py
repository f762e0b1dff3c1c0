"""`near-failover demo`: watch a switchover and a failover on an emulated localnet.

The localnet is driven as a user drives it, through its own commands; the moves go through the
same procedures as on real nodes. The chain's ledger, not the tool, says whether anyone double
signed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from near_failover.ha.lease import LeaseStoreError, MemberRole
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import StandbyMode, load_inventory
from near_failover.procedures.chain_view import production_of
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import Move, MoveRequest, MoveResult
from near_failover.procedures.nodes import open_nodes
from near_failover.procedures.plan import MoveKind, MoveOptions, MoveSettings
from near_failover.procedures.status import cluster_status

Say = Callable[[str], None]


class DemoStepFailed(RuntimeError):
    """A `near-failover` child process of the demo failed; ``exit_code`` is its exit code (2: the
    demo's own options were wrong, such as an unusable --dir)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _cli(*args: str, timeout: float = 120) -> str:
    """Run a `near-failover` subcommand in a child process (the localnet is its own world)."""
    done = subprocess.run(
        [sys.executable, "-m", "near_failover", *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise DemoStepFailed(f"near-failover {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}", done.returncode)
    return done.stdout


@contextmanager
def localnet(directory: Path, block_time: float, memtrie_load: float | None, say: Say, epoch_length: int = 1000, profile: str = "fast") -> Iterator[Path]:
    """A localnet for the demo and the benchmarks; `memtrie_load=None` keeps the profile's own."""
    say(f"starting a localnet in {directory} (chain + val-a validator, val-b hot-swap standby, val-c rpc standby)")
    memtrie = ["--memtrie-load", str(memtrie_load)] if memtrie_load is not None else []
    _cli("localnet", "up", "--dir", str(directory), "--block-time", str(block_time), *memtrie,
         "--epoch-length", str(epoch_length), "--profile", profile, timeout=600)
    try:
        yield directory / "inventory.toml"
    finally:
        say("stopping the localnet")
        _cli("localnet", "down", "--dir", str(directory), timeout=300)


def ledger(directory: Path) -> dict[str, Any]:
    return json.loads(_cli("localnet", "ledger", "--dir", str(directory), "--json"))


def summarise(result: MoveResult) -> dict[str, Any]:
    s = result.seconds
    return {
        "kind": result.kind,
        "mode": result.mode,
        "from": result.source,
        "to": result.target,
        "ok": result.ok,
        "seconds": {
            "fence": s.get("fence", 0.0),
            "activate": s.get("activate", 0.0),
            "verify": s.get("verify", 0.0),
            "total": round(sum(s.values()), 3),
        },
        "missed": result.missed or {"blocks": 0, "chunks": 0, "endorsements": 0},
    }


async def run_demo(directory: Path | None, block_time: float, memtrie_load: float, say: Say) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="near-failover-demo-") as tmp:
        where = directory or Path(tmp)
        with localnet(where, block_time, memtrie_load, say) as inventory_path:
            inventory = load_inventory(inventory_path)
            settings = MoveSettings(activate_rpc=max(60.0, memtrie_load * 4), verify=60.0, silence_blocks=8)
            moves: list[dict[str, Any]] = []
            async with open_nodes(inventory) as nodes:
                with Journal(Path(inventory.journal.path)) as journal:
                    say("1/2 planned switchover, Option 2 hot swap: val-a -> val-b")
                    first = await Move(inventory, nodes, journal, MoveRequest(
                        MoveKind.SWITCHOVER, MoveOptions("val-b", StandbyMode.HOT_SWAP), settings=settings, progress=say)).run()
                    moves.append(summarise(first))
                    if not first.ok:
                        raise RuntimeError(f"switchover failed: {first.message}")
                    pid = await nodes["val-b"].control.main_pid()
                    say(f"2/2 val-b's neard (pid {pid}) is killed with SIGKILL; failover, Option 1 restart: -> val-c")
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                    time.sleep(block_time * 2)
                    second = await Move(inventory, nodes, journal, MoveRequest(
                        MoveKind.FAILOVER, MoveOptions("val-c", StandbyMode.RPC), settings=settings, progress=say)).run()
                    moves.append(summarise(second))
                    status = await cluster_status(inventory, nodes)
                    history = journal.history(inventory.validator.account_id)
            book = ledger(where)
    return {"moves": moves, "double_signs": book["double_signs"], "status": status, "history": history, "ledger": book}


# --- the automatic mode ---------------------------------------------------------------------

# Timings for agents on one host: the leader steps down after 2 bad checks of 0.5 s and fences
# itself; loop_wait + 2 * retry_timeout = 2.5 s < ttl = 6 s (Patroni's rule).
FAST_LEASE = {"ttl": 6, "loop_wait": 0.5, "retry_timeout": 1.0, "unhealthy_loops": 2}


def add_lease(inventory_path: Path, timings: dict[str, float], standby_mode: dict[str, str] | None = None) -> None:
    """Give a localnet inventory a sqlite lease table (all its nodes are on this host)."""
    import tomllib

    import tomli_w

    data = tomllib.loads(inventory_path.read_text())
    data["lease"] = {"store": "sqlite", "path": "lease.sqlite", **timings}
    for node in data["node"]:
        if standby_mode and node["name"] in standby_mode:
            node["standby"] = standby_mode[node["name"]]
    inventory_path.write_text(tomli_w.dumps(data))


@contextmanager
def agents(inventory_path: Path, names: list[str], inventories: dict[str, Path] | None = None) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One agent per name, each on the inventory (or its own, from ``inventories``)."""
    procs = {}
    try:
        for name in names:
            log = open(inventory_path.parent / f"agent-{name}.log", "ab")  # noqa: SIM115 - owned by the child
            inventory = (inventories or {}).get(name, inventory_path)
            procs[name] = subprocess.Popen([sys.executable, "-m", "near_failover", "agent", "-c", str(inventory), "--node", name],
                                           stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        yield procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def wait_for(predicate: Callable[[], Any], timeout: float, poll: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > end:
            raise TimeoutError("the localnet did not reach the expected state in time")
        await asyncio.sleep(poll)


async def crash_and_measure(inventory_path: Path, standby: str, timeout: float, also: Callable[[], None] | None = None) -> dict[str, Any]:
    """SIGKILL the signer's neard (and do ``also`` at the same moment); time until `standby`
    signs its first duty, and what was missed.

    The clock starts at the fault; "first duty" is the pool's produced counter growing in the
    standby's own chain view after it loaded the key."""
    inventory = load_inventory(inventory_path)
    pool = inventory.validator.account_id
    async with open_nodes(inventory) as nodes:
        new = nodes[standby]

        async def leader_ready() -> bool:
            """val-a's agent holds the lease and the standby's agent has seen it: a crash before
            that finds standbys that never saw a leader, which wait out their start grace (two
            ttls, about 17 s more on a loaded machine, where agents take seconds to start)."""
            if (await nodes["val-a"].status_or_none() or _NoStatus).validator_account_id != pool:
                return False
            try:
                async with open_lease_store(inventory) as store:
                    view = await store.view()
            except LeaseStoreError:
                return False
            record = view.member(standby)
            return view.leader is not None and view.leader.member == "val-a" and record is not None and record.role == MemberRole.STANDBY

        await wait_for(leader_ready, 120, poll=0.5)
        await asyncio.sleep(3 * inventory.lease.loop_wait if inventory.lease else 1)  # the agents settle their roles
        before = await _production(new, pool)
        pid = await nodes["val-a"].control.main_pid()
        fault = time.monotonic()
        if pid:
            os.kill(pid, signal.SIGKILL)
        if also is not None:
            also()

        async def loaded() -> bool:
            status = await new.status_or_none()
            return status is not None and status.validator_account_id == pool

        await wait_for(loaded, timeout)
        key_loaded = time.monotonic() - fault

        async def producing() -> bool:
            snap = await _production(new, pool)
            return snap is not None and snap.produced > before.produced

        await wait_for(producing, timeout)
        first_duty = time.monotonic() - fault
        after = await _production(new, pool)
    with Journal(Path(inventory.journal.path)) as journal:
        def promotions() -> list[Any]:
            return [r for r in journal.runs(pool) if r.kind == "auto-failover"]

        async def promotion_finished() -> bool:
            return any(r.finished for r in promotions())

        await wait_for(promotion_finished, timeout)  # the agent's own verify ends after the first duty
        runs = promotions()
        steps = {s.name: s for s in journal.steps(runs[0].id)}

    def seconds(name: str) -> float:
        step = steps.get(name)
        return round((step.ended - step.started).total_seconds(), 3) if step and step.ended else 0.0

    return {
        "kind": "failover",
        "mode": runs[0].mode if runs else None,
        "from": "val-a",
        "to": standby,
        "ok": bool(runs) and runs[0].outcome == "ok",
        "seconds": {"preflight": seconds("preflight"), "fence": seconds("fence"), "activate": seconds("activate"), "verify": seconds("verify"),
                    "key_loaded": round(key_loaded, 3), "total": round(first_duty, 3)},
        "missed": after.minus(before) if after and before and after.epoch_start_height == before.epoch_start_height else None,
        # The promotion's preflight took its standby's recent readiness checks (issue 13, part 4).
        "readiness_reused": "readiness_reused" in (steps["preflight"].evidence if "preflight" in steps else {}),
    }


class _NoStatus:
    validator_account_id = None


async def _production(node: Any, pool: str) -> Any:
    status = await node.rpc.status()
    return production_of(await node.rpc.validators(), pool, status.sync_info.latest_block_height)


async def run_auto_demo(directory: Path | None, block_time: float, memtrie_load: float, say: Say) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="near-failover-demo-") as tmp:
        where = directory or Path(tmp)
        with localnet(where, block_time, memtrie_load, say) as inventory_path:
            add_lease(inventory_path, FAST_LEASE)
            say("starting an agent beside each node (lease in sqlite; val-a's agent claims it)")
            with agents(inventory_path, ["val-a", "val-b", "val-c"]):
                say("val-a's neard is killed with SIGKILL; the agents take it from here")
                move = await crash_and_measure(inventory_path, "val-b", timeout=60)
                say(f"val-b signs again {move['seconds']['total']:.2f}s after the crash")
                inventory = load_inventory(inventory_path)
                async with open_nodes(inventory) as nodes:
                    status = await cluster_status(inventory, nodes)
                with Journal(Path(inventory.journal.path)) as journal:
                    history = journal.history(inventory.validator.account_id)
            book = ledger(where)
    return {"moves": [move], "double_signs": book["double_signs"], "status": status, "history": history, "ledger": book}
