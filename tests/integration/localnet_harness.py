"""A localnet per test, driven through the `near-failover` command as a user drives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomli_w

CLI = [sys.executable, "-m", "near_failover"]
# Short blocks keep the suite fast; long epochs keep every test inside one epoch, so the
# production counters compare. A fixed seed makes the duty schedule the same on every run.
BLOCK_TIME = 0.2
EPOCH_LENGTH = 3000
MEMTRIE_LOAD = 1.0


def cli(*args: str | Path, timeout: float = 180, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"near-failover {' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@dataclass
class Localnet:
    directory: Path

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory.toml"

    def status(self) -> dict[str, Any]:
        return json.loads(cli("localnet", "status", "--dir", self.directory, "--json").stdout)

    def ledger(self) -> dict[str, Any]:
        return json.loads(cli("localnet", "ledger", "--dir", self.directory, "--json").stdout)

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.status()["nodes"] if n["name"] == name)

    def rpc_status(self, name: str, timeout: float = 2.0) -> dict[str, Any]:
        return httpx.get(f"{self.node(name)['rpc']}/status", timeout=timeout).json()

    def pid(self, name: str) -> int:
        return int(self.node(name)["pid"])

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.pid(name), sig)

    def wait_height(self, blocks: int) -> None:
        start = self.status()["chain"]["height"]
        deadline = time.monotonic() + blocks * BLOCK_TIME * 10 + 10
        while self.status()["chain"]["height"] < start + blocks:
            assert time.monotonic() < deadline, "the chain stopped"
            time.sleep(BLOCK_TIME)

    def pool(self) -> str:
        for line in self.inventory.read_text().splitlines():
            if line.strip().startswith("account_id"):
                return line.split("=", 1)[1].strip().strip('"')
        raise AssertionError("no account_id in the inventory")

    def edit_inventory(self, node: str | None = None, **fields: Any) -> None:
        """Change fields of one node (or, with node=None, top-level tables) in inventory.toml."""
        data = tomllib.loads(self.inventory.read_text())
        target = next(n for n in data["node"] if n["name"] == node) if node else data
        target.update(fields)
        self.inventory.write_text(tomli_w.dumps(data))

    def assert_no_double_sign(self) -> dict[str, Any]:
        book = self.ledger()
        assert book["double_signs"] == 0, book["double_sign_events"]
        return book


def start_localnet(directory: Path, seed: str = "7", **options: Any) -> Localnet:
    """`localnet up`; `profile=` picks the emulator's timings (with `memtrie_load=None` the
    profile's own load), `timings=` overrides more of them (flag -> seconds)."""
    memtrie = options.get("memtrie_load", MEMTRIE_LOAD)
    args: list[str | Path] = [
        "localnet", "up", "--dir", directory, "--block-time", str(options.get("block_time", BLOCK_TIME)),
        "--epoch-length", str(options.get("epoch_length", EPOCH_LENGTH)), "--seed", seed,
        "--profile", options.get("profile", "fast"), *(["--memtrie-load", str(memtrie)] if memtrie is not None else []),
    ]
    for flag, value in options.get("timings", {}).items():
        args += [flag, str(value)]
    cli(*args, timeout=600)
    return Localnet(directory)


def stop_localnet(net: Localnet) -> None:
    # A test may leave a node SIGSTOPped; wake everything so `down` can stop it gracefully.
    for node in net.status()["nodes"]:
        if node.get("alive"):
            try:
                os.kill(int(node["pid"]), signal.SIGCONT)
            except ProcessLookupError:
                pass
    cli("localnet", "down", "--dir", net.directory)


@contextmanager
def running(directory: Path, **options: Any) -> Iterator[Localnet]:
    """A localnet started with `start_localnet`'s options, stopped afterwards."""
    net = start_localnet(directory, **options)
    try:
        yield net
    finally:
        stop_localnet(net)
