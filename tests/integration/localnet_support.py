"""Helpers for tests that run a real localnet: processes, signals, loopback HTTP, bounded waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from near_failover.neard.metrics import Metrics, parse_metrics

POOL = "pool.poolv1.near"
LOCALNET = [sys.executable, "-m", "near_failover.localnet"]
CONSOLE_SCRIPT = [str(Path(sys.executable).with_name("near-failover")), "localnet"]


def localnet_cli(*args: str, timeout: float = 90, console: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(CONSOLE_SCRIPT if console else LOCALNET), *args], capture_output=True, text=True, timeout=timeout)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))


class Net:
    """A running localnet, driven as an operator would: files, signals, HTTP."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.manifest = json.loads((directory / "localnet.json").read_text())
        self.nodes = {n["name"]: n for n in self.manifest["nodes"]}
        self.block_time = float(self.manifest["block_time"])
        self.epoch_length = int(self.manifest["epoch_length"])
        self.children: list[subprocess.Popen] = []

    def home(self, name: str) -> Path:
        return Path(self.nodes[name]["home"])

    def pid(self, name: str) -> int:
        return int((self.home(name) / "neard.pid").read_text())

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.pid(name), sig)

    def alive(self, name: str) -> bool:
        try:
            stat = Path(f"/proc/{self.pid(name)}/stat").read_text()
        except (FileNotFoundError, ValueError):
            return False
        return stat[stat.rindex(")") + 2] != "Z"

    def wait_gone(self, name: str, timeout: float = 15) -> None:
        for child in self.children:
            if child.pid == self.pid(name):
                child.wait(timeout)
        wait_for(lambda: not self.alive(name), timeout, f"{name} to exit")

    def stop(self, name: str) -> None:
        self.signal(name, signal.SIGTERM)
        self.wait_gone(name)

    def start(self, name: str) -> subprocess.Popen:
        """Start a node as the inventory's pid-file control would, as our child (to see its exit code)."""
        home = self.home(name)
        with open(home / "neard.log", "ab") as log:
            proc = subprocess.Popen(
                [*LOCALNET, "node", "--home", str(home)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=home, start_new_session=True
            )
        (home / "neard.pid").write_text(f"{proc.pid}\n")
        self.children.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.home(name) / "neard.log").read_text(errors="replace")

    def rpc(self, name: str, method: str, params: Any = None, request_id: str = "dontcare") -> httpx.Response:
        return httpx.post(self.nodes[name]["rpc"], json={"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, timeout=5)

    def result(self, name: str, method: str, params: Any = None) -> Any:
        body = self.rpc(name, method, params).json()
        assert "result" in body, body
        return body["result"]

    def status(self, name: str) -> dict:
        return self.result(name, "status")

    def metrics(self, name: str) -> Metrics:
        return parse_metrics(httpx.get(self.nodes[name]["rpc"] + "/metrics", timeout=5).text)

    def produced(self, name: str) -> float:
        m = self.metrics(name)
        return (m.value("near_block_produced_total") or 0) + (m.value("near_chunk_produced_total") or 0)

    def chain_height(self) -> int:
        return int(httpx.get(self.manifest["chain"]["url"] + "/status", timeout=5).json()["height"])

    def wait_height(self, height: int, timeout: float | None = None) -> int:
        timeout = timeout or max(10.0, (height - self.chain_height()) * self.block_time * 4 + 5)
        return wait_for(lambda: (h := self.chain_height()) >= height and h, timeout, f"chain height {height}")

    def wait_blocks(self, n: int) -> int:
        return self.wait_height(self.chain_height() + n)

    def ledger(self) -> dict:
        """The ledger as `localnet ledger --json` prints it (same function, no process spawn)."""
        from near_failover.localnet.supervisor import ledger

        return ledger(self.dir)

    def ledger_cli(self) -> dict:
        done = localnet_cli("ledger", "--dir", str(self.dir), "--json", timeout=30)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def signer_stats(self, name: str) -> dict | None:
        peer = self.nodes[name]["peer_id"]
        rows = self.ledger()["signers"].get(POOL, [])
        return next((r for r in rows if r["peer_id"] == peer), None)

    def place_key(self, name: str, text: str | None = None) -> Path:
        """Copy the staged pool key (or `text`) into a node's home, mode 0600."""
        target = self.home(name) / "validator_key.json"
        data = text if text is not None else Path(self.nodes[name]["key_store"]).read_text()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        return target


@contextmanager
def running_localnet(tmp_path: Path, *args: str, console: bool = False) -> Iterator[Net]:
    directory = tmp_path / "net"
    done = localnet_cli("up", "--dir", str(directory), "--json", "--timeout", "40", *args, console=console)
    assert done.returncode == 0, f"localnet up failed:\n{done.stdout}\n{done.stderr}"
    net = Net(directory)
    try:
        yield net
    finally:
        down = localnet_cli("down", "--dir", str(directory), "--json", timeout=60)
        for child in net.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        assert down.returncode == 0, down.stderr
        for name in net.nodes:
            assert not net.alive(name), f"{name} still runs after down"
