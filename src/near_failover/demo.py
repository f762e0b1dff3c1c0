"""`near-failover demo`: watch a switchover and a failover on an emulated localnet.

The localnet is driven as a user drives it, through its own commands; the moves go through the
same procedures as on real nodes. The chain's ledger, not the tool, says whether anyone double
signed.
"""

from __future__ import annotations

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

from near_failover.inventory import load_inventory
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import Move, MoveResult
from near_failover.procedures.nodes import open_nodes
from near_failover.procedures.plan import MoveSettings
from near_failover.procedures.status import cluster_status

Say = Callable[[str], None]


def _cli(*args: str, timeout: float = 120) -> str:
    """Run a `near-failover` subcommand in a child process (the localnet is its own world)."""
    done = subprocess.run(
        [sys.executable, "-m", "near_failover", *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"near-failover {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


@contextmanager
def localnet(directory: Path, block_time: float, memtrie_load: float, say: Say) -> Iterator[Path]:
    say(f"starting a localnet in {directory} (chain + val-a validator, val-b hot-swap standby, val-c rpc standby)")
    _cli("localnet", "up", "--dir", str(directory), "--block-time", str(block_time), "--memtrie-load", str(memtrie_load))
    try:
        yield directory / "inventory.toml"
    finally:
        say("stopping the localnet")
        _cli("localnet", "down", "--dir", str(directory))


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
                    first = await Move(inventory, nodes, "switchover", "hot-swap", "val-b", journal, settings, progress=say).run()
                    moves.append(summarise(first))
                    if not first.ok:
                        raise RuntimeError(f"switchover failed: {first.message}")
                    pid = await nodes["val-b"].control.main_pid()
                    say(f"2/2 val-b's neard (pid {pid}) is killed with SIGKILL; failover, Option 1 restart: -> val-c")
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                    time.sleep(block_time * 2)
                    second = await Move(inventory, nodes, "failover", "rpc", "val-c", journal, settings, progress=say).run()
                    moves.append(summarise(second))
                    status = await cluster_status(inventory, nodes)
                    history = [
                        {**run.to_json(), "steps": [s.to_json() for s in journal.steps(run.id)]}
                        for run in journal.runs(inventory.validator.account_id)
                    ]
            book = ledger(where)
    return {"moves": moves, "double_signs": book["double_signs"], "status": status, "history": history, "ledger": book}
