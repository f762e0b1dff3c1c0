"""`localnet up | status | ledger | down`: start the chain and three nodes, look at them, stop them.

Processes are started detached (own session) with their output appended to a log, and their
pids written to files in DIR, exactly like the inventory's pid-file control starts neard, so
procedures can take over a node and `down` still finds it. `down` stops only processes whose
pid files it reads *and* whose command line is this localnet's (a reused pid is left alone).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import httpx
import tomli_w

from near_failover.localnet.homes import MANIFEST, NUM_SHARDS, create_localnet
from near_failover.localnet.profile import Timings, fast
from near_failover.localnet.util import process_cmdline, read_json

CHAIN_LOG = "chain.log"
CHAIN_PID = "chain.pid"
NODE_LOG = "neard.log"
NODE_PID = "neard.pid"
INVENTORY = "inventory.toml"

Progress = Callable[[str], None]


class LocalnetError(Exception):
    """A localnet command failed; the message says which part, why, and what to do."""


def node_argv(home: Path) -> list[str]:
    """The argv that runs one emulated neard in the foreground (the inventory's `start`).

    `python -m near_failover.localnet` keeps the node process small (no top-level CLI import)
    and does not depend on PATH.
    """
    return [sys.executable, "-m", "near_failover.localnet", "node", "--home", str(home)]


def chain_argv(directory: Path) -> list[str]:
    return [sys.executable, "-m", "near_failover.localnet", "chain", "--dir", str(directory)]


def spawn_detached(argv: list[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session with stdout+stderr appended to `log_path`.

    The caller keeps the `Popen`: whether a process it just started is still alive is its exit
    status, not its /proc cmdline, which reads empty for a moment after exec (the kernel closes
    close-on-exec fds, and so lets `Popen` return, before it lays out the new argv).
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True, close_fds=True)


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _reap(pid: int) -> None:
    """Collect our own exited child (when `up` ran in this process) so it is not a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _ours(pid: int | None, *markers: str) -> bool:
    """Is `pid` alive and running this localnet's command (all markers in its argv)?"""
    if pid is None:
        return False
    _reap(pid)
    argv = process_cmdline(pid)
    if argv is None:
        return False
    ours = any("near_failover.localnet" in a or a.endswith("near-failover") or a.endswith("near_failover") for a in argv)
    return ours and "localnet" in " ".join(argv) and all(m in argv for m in markers)


def load_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.exists():
        raise LocalnetError(f"{directory} holds no localnet ({MANIFEST} is missing); start one with `near-failover localnet up --dir {directory}`")
    return read_json(path)


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n    ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _chain_info(directory: Path) -> dict | None:
    try:
        return read_json(directory / "chain.json")
    except (FileNotFoundError, ValueError):
        return None


def start_node(home: Path) -> subprocess.Popen[bytes]:
    proc = spawn_detached(node_argv(home), home / NODE_LOG, home)
    _write_pid(home / NODE_PID, proc.pid)
    return proc


def _reset(directory: Path, manifest: dict) -> None:
    """Remove what a previous `up` created here (only those paths)."""
    for node in manifest.get("nodes", []):
        shutil.rmtree(node["home"], ignore_errors=True)
    shutil.rmtree(directory / "keys", ignore_errors=True)
    for name in (MANIFEST, "genesis.json", "chain.json", CHAIN_PID, CHAIN_LOG, INVENTORY):
        (directory / name).unlink(missing_ok=True)


def _running_parts(directory: Path, manifest: dict) -> list[str]:
    running = []
    chain_pid = _read_pid(directory / CHAIN_PID)
    if _ours(chain_pid, "chain", str(directory)):
        running.append(f"chain (pid {chain_pid})")
    for node in manifest.get("nodes", []):
        pid = _read_pid(Path(node["home"]) / NODE_PID)
        if _ours(pid, "node", node["home"]):
            running.append(f"{node['name']} (pid {pid})")
    return running


def write_inventory(directory: Path, manifest: dict) -> Path:
    """DIR/inventory.toml in the agreed format (host `local`, control by pid file)."""
    inventory = {
        "validator": {"account_id": manifest["pool"], "chain_id": manifest["chain_id"]},
        "journal": {"path": str(directory / "journal.sqlite")},
        "node": [
            {
                "name": n["name"],
                "host": "local",
                "home": n["home"],
                "rpc": n["rpc"],
                "control": f"pidfile:{Path(n['home']) / NODE_PID}",
                "start": node_argv(Path(n["home"])),
                "key_store": n["key_store"],
                "standby": n["standby"],
                "priority": n["priority"],
            }
            for n in manifest["nodes"]
        ],
    }
    path = directory / INVENTORY
    tmp = path.with_name(f".{INVENTORY}.tmp")
    tmp.write_text(tomli_w.dumps(inventory))
    os.replace(tmp, path)
    return path


def _get(url: str, timeout: float = 2.0) -> httpx.Response:
    return httpx.get(url, timeout=timeout)


def up(
    directory: Path,
    block_time: float = 0.6,
    chain_id: str = "localnet",
    timings: Timings | None = None,
    epoch_length: int = 300,
    seed: str | None = None,
    timeout: float = 60.0,
    reset: bool = False,
    progress: Progress = lambda msg: None,
    thresholds: tuple[int, int, int] = (80, 80, 70),
) -> dict:
    """Create and start the localnet; return `status()` once every node is ready."""
    directory = directory.resolve()
    if block_time < 0.05:
        raise LocalnetError(f"--block-time {block_time} is below the emulator's 0.05 s minimum")
    if epoch_length < 5:
        raise LocalnetError(f"--epoch-length {epoch_length} is too short; use 5 or more blocks")
    if (directory / MANIFEST).exists():
        old = load_manifest(directory)
        running = _running_parts(directory, old)
        if running:
            raise LocalnetError(f"a localnet already runs in {directory}: {', '.join(running)}; stop it with `near-failover localnet down --dir {directory}`")
        if not reset:
            raise LocalnetError(f"{directory} already holds a (stopped) localnet; use another --dir, or --reset to delete it and start a new one")
        _reset(directory, old)
    progress(f"creating homes in {directory}")
    if not all(0 <= t <= 100 for t in thresholds):
        raise LocalnetError(f"kickout thresholds {thresholds} must be percentages (0-100)")
    timings = timings or fast(block_time)
    manifest = create_localnet(directory, chain_id, block_time, epoch_length, timings, seed, thresholds)
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        chain = spawn_detached(chain_argv(directory), directory / CHAIN_LOG, directory)
        _write_pid(directory / CHAIN_PID, chain.pid)
        started["chain"] = chain
        progress(f"chain started (pid {chain.pid}), waiting for it to listen")
        _wait_chain(directory, chain, timeout)
        for node in manifest["nodes"]:
            started[node["name"]] = start_node(Path(node["home"]))
            progress(f"{node['name']} started (pid {started[node['name']].pid})")
        _wait_nodes_ready(manifest, started, timeout + timings.memtrie_load_seconds(NUM_SHARDS))
        _release_genesis(manifest)
    except BaseException:  # a failed or interrupted start leaves nothing running
        _stop_started(started.values())
        raise
    write_inventory(directory, manifest)
    progress("all nodes ready")
    return status(directory)


def _stop_started(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
    """Stop what a failed `up` started, by the processes it holds (never by pid file)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_chain(directory: Path, chain: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chain.poll() is not None:
            raise LocalnetError(f"the chain process exited at start (status {chain.returncode}); last lines of {directory / CHAIN_LOG}:\n    {_log_tail(directory / CHAIN_LOG)}")
        info = _chain_info(directory)
        if info:
            try:
                if _get(f"{info['url']}/status").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise LocalnetError(f"the chain did not answer within {timeout:g}s; see {directory / CHAIN_LOG}")


def _release_genesis(manifest: dict) -> None:
    """Start the block clock: every validator is online from the first block, as in a localnet."""
    try:
        resp = httpx.post(f"{manifest['chain']['url']}/start", timeout=5)
    except httpx.HTTPError as exc:
        raise LocalnetError(f"the chain did not take the start signal ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise LocalnetError(f"the chain answered HTTP {resp.status_code} to the start signal")


def _node_ready(rpc: str, chain_height: int) -> tuple[bool, str]:
    try:
        resp = httpx.post(rpc, json={"jsonrpc": "2.0", "id": "up", "method": "status", "params": []}, timeout=2)
    except httpx.HTTPError as exc:
        return False, f"RPC not answering ({type(exc).__name__})"
    sync = resp.json().get("result", {}).get("sync_info", {})
    if sync.get("syncing", True):
        return False, f"syncing at height {sync.get('latest_block_height')}"
    if int(sync.get("latest_block_height", -1)) < chain_height - 3:
        return False, f"at height {sync.get('latest_block_height')}, network at {chain_height}"
    return True, "ready"


def _wait_nodes_ready(manifest: dict, procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    chain_url = manifest["chain"]["url"]
    pending = {n["name"]: n for n in manifest["nodes"]}
    why: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        try:
            height = int(_get(f"{chain_url}/status").json()["height"])
        except (httpx.HTTPError, ValueError, KeyError):
            height = 0
        for name, node in list(pending.items()):
            home = Path(node["home"])
            if procs[name].poll() is not None:
                raise LocalnetError(f"node {name} exited at start (status {procs[name].returncode}); last lines of {home / NODE_LOG}:\n    {_log_tail(home / NODE_LOG)}")
            ready, why[name] = _node_ready(node["rpc"], height)
            if ready:
                del pending[name]
        time.sleep(0.1)
    if pending:
        details = "; ".join(f"{n}: {why.get(n, 'unknown')} (log {Path(pending[n]['home']) / NODE_LOG})" for n in pending)
        raise LocalnetError(f"nodes not ready after {timeout:g}s: {details}")


def _stop(pid: int, timeout: float, signalled: bool = False) -> str:
    if not signalled:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "already gone"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if process_cmdline(pid) is None:
            return "stopped"
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    for _ in range(250):
        _reap(pid)
        if process_cmdline(pid) is None:
            return "killed"
        time.sleep(0.02)
    raise LocalnetError(f"pid {pid} survives SIGKILL (uninterruptible I/O?); check `ps -o pid,stat,cmd -p {pid}`")


def down(directory: Path, timeout: float = 30.0) -> dict:
    """Stop the nodes, then the chain: only processes from this localnet's pid files."""
    directory = directory.resolve()
    manifest = load_manifest(directory)
    report: dict[str, dict] = {}
    for node in manifest["nodes"]:
        home = Path(node["home"])
        pid = _read_pid(home / NODE_PID)
        if pid is None:
            report[node["name"]] = {"pid": None, "result": "not running"}
        elif not _ours(pid, "node", node["home"]):
            report[node["name"]] = {"pid": pid, "result": "not running (pid file is stale or names another process; left alone)"}
        else:
            report[node["name"]] = {"pid": pid, "result": "stopping"}
    # SIGTERM to every node first: each one's store shutdown (the profile's stop time) runs
    # beside the others', then each gets `timeout` from then before SIGKILL.
    for entry in report.values():
        if entry["result"] == "stopping":
            try:
                os.kill(entry["pid"], signal.SIGTERM)
            except ProcessLookupError:
                entry["result"] = "already gone"
    for entry in report.values():
        if entry["result"] == "stopping":
            entry["result"] = _stop(entry["pid"], timeout, signalled=True)
    chain_pid = _read_pid(directory / CHAIN_PID)
    if _ours(chain_pid, "chain", str(directory)):
        assert chain_pid is not None
        report["chain"] = {"pid": chain_pid, "result": _stop(chain_pid, timeout)}
    else:
        report["chain"] = {"pid": chain_pid, "result": "not running"}
    return report


def status(directory: Path) -> dict:
    directory = directory.resolve()
    manifest = load_manifest(directory)
    info = _chain_info(directory) or {}
    chain_pid = _read_pid(directory / CHAIN_PID)
    height = None
    url = info.get("url") or manifest["chain"]["url"]
    if _ours(chain_pid, "chain", str(directory)):
        try:
            height = int(_get(f"{url}/status").json()["height"])
        except (httpx.HTTPError, ValueError, KeyError):
            height = None
    else:
        chain_pid = info.get("pid", chain_pid) if info else chain_pid
    nodes = []
    for n in manifest["nodes"]:
        pid = _read_pid(Path(n["home"]) / NODE_PID)
        nodes.append({"name": n["name"], "home": n["home"], "rpc": n["rpc"], "pid": pid, "alive": _ours(pid, "node", n["home"])})
    return {"chain": {"url": url, "pid": chain_pid, "height": height, "alive": _ours(chain_pid, "chain", str(directory))}, "nodes": nodes}


def ledger(directory: Path, epoch: int | None = None) -> dict:
    directory = directory.resolve()
    manifest = load_manifest(directory)
    url = (_chain_info(directory) or {}).get("url") or manifest["chain"]["url"]
    try:
        resp = _get(f"{url}/ledger" + (f"?epoch={epoch}" if epoch is not None else ""), timeout=5)
    except httpx.HTTPError as exc:
        raise LocalnetError(f"the chain at {url} does not answer ({type(exc).__name__}); is the localnet up? (`near-failover localnet status --dir {directory}`)") from None
    if resp.status_code != 200:
        raise LocalnetError(f"the chain at {url} answered HTTP {resp.status_code} for its ledger")
    return resp.json()
