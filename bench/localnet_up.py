"""How heavy is the emulated localnet? Seconds to ready and to down, memory, idle CPU.

Runs `near-failover localnet up` (chain + 3 nodes) at the default 0.6 s blocks, then measures:
- seconds from `up` to every node ready, and for `down`;
- RSS of every process of the localnet, summed, against a bare `python` (the baseline from the
  same run: the interpreter alone) and against one node;
- CPU of the whole localnet while idle (following blocks and signing), over a fixed window;
- a hand-made hot swap (copy key, SIGKILL val-a, SIGHUP val-b): blocks until val-b shows the
  pool's key, and until the ledger has its first signature.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

LOCALNET = [sys.executable, "-m", "near_failover.localnet"]
BLOCK_TIME = 0.6
CPU_WINDOW = 12.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def baseline() -> tuple[float, int]:
    """Seconds for a bare interpreter to start and exit (best of 3), and its RSS."""
    best = min(_timed([sys.executable, "-c", "pass"]) for _ in range(3))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(0.5)
    rss = rss_kib(proc.pid)
    proc.kill()
    proc.wait()
    return best, rss


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    bare_seconds, bare_rss = baseline()
    directory = Path(tempfile.mkdtemp(prefix="near-failover-bench-"))
    net = directory / "net"
    try:
        start = time.perf_counter()
        done = subprocess.run([*LOCALNET, "up", "--dir", str(net), "--block-time", str(BLOCK_TIME), "--memtrie-load", "1.0", "--json"], capture_output=True, text=True, timeout=180)
        up_seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"localnet up failed: {done.stderr}")
        manifest = json.loads((net / "localnet.json").read_text())
        pids = {"chain": int((net / "chain.pid").read_text())}
        pids |= {n["name"]: int((Path(n["home"]) / "neard.pid").read_text()) for n in manifest["nodes"]}
        time.sleep(2 * BLOCK_TIME)
        rss = {name: rss_kib(pid) for name, pid in pids.items()}

        before = {name: cpu_ticks(pid) for name, pid in pids.items()}
        time.sleep(CPU_WINDOW)
        after = {name: cpu_ticks(pid) for name, pid in pids.items()}
        cpu = {name: (after[name] - before[name]) / CLK_TCK / CPU_WINDOW * 100 for name in pids}

        swap = hot_swap(net, manifest, pids)

        start = time.perf_counter()
        subprocess.run([*LOCALNET, "down", "--dir", str(net)], check=True, capture_output=True, timeout=120)
        down_seconds = time.perf_counter() - start
    finally:
        if (net / "localnet.json").exists():
            subprocess.run([*LOCALNET, "down", "--dir", str(net)], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)

    total_rss = sum(rss.values())
    cores = os.cpu_count() or 1
    print(f"localnet: chain + 3 nodes, {BLOCK_TIME} s blocks, {cores} cores")
    print(f"  baseline: bare python start+exit {bare_seconds:.3f} s, RSS {bare_rss / 1024:.1f} MiB")
    print(f"  up to ready: {up_seconds:.2f} s (includes a 1.0 s memtrie load on val-a and val-b)")
    print(f"  down:        {down_seconds:.2f} s")
    for name in rss:
        print(f"  {name:6s} RSS {rss[name] / 1024:6.1f} MiB   idle CPU {cpu[name]:5.2f} % of one core")
    print(f"  whole localnet RSS {total_rss / 1024:.1f} MiB = {total_rss / bare_rss:.1f} x bare python, {total_rss / rss['val-a']:.1f} x one node")
    print(f"  whole localnet idle CPU {sum(cpu.values()):.2f} % of one core = {sum(cpu.values()) / cores:.2f} % of the machine")
    print(f"  hot swap by hand: key shown after {swap['key_blocks']} blocks, first signature after {swap['sign_blocks']} blocks")
    print(json.dumps({
        "up_seconds": round(up_seconds, 3), "down_seconds": round(down_seconds, 3), "bare_python_seconds": round(bare_seconds, 3),
        "rss_mib": {k: round(v / 1024, 1) for k, v in rss.items()}, "rss_total_mib": round(total_rss / 1024, 1), "bare_python_rss_mib": round(bare_rss / 1024, 1),
        "idle_cpu_percent_of_one_core": {k: round(v, 2) for k, v in cpu.items()}, "hot_swap_blocks": swap,
    }))


def hot_swap(net: Path, manifest: dict, pids: dict[str, int]) -> dict:
    nodes = {n["name"]: n for n in manifest["nodes"]}
    chain = manifest["chain"]["url"]
    height = lambda: int(httpx.get(f"{chain}/status", timeout=5).json()["height"])  # noqa: E731
    home_b = Path(nodes["val-b"]["home"])
    fd = os.open(home_b / "validator_key.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(Path(nodes["val-b"]["key_store"]).read_text())
    os.kill(pids["val-a"], signal.SIGKILL)
    os.kill(pids["val-b"], signal.SIGHUP)
    h0 = height()
    key_at = sign_at = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (key_at is None or sign_at is None):
        if key_at is None:
            status = httpx.post(nodes["val-b"]["rpc"], json={"jsonrpc": "2.0", "id": "b", "method": "status"}, timeout=5).json()["result"]
            if status["validator_account_id"] == manifest["pool"]:
                key_at = status["sync_info"]["latest_block_height"]
        if sign_at is None:
            rows = httpx.get(f"{chain}/ledger", timeout=5).json()["signers"].get(manifest["pool"], [])
            mine = [r for r in rows if r["peer_id"] == nodes["val-b"]["peer_id"]]
            if mine:
                sign_at = mine[0]["first_height"]
        time.sleep(0.02)
    return {"key_blocks": None if key_at is None else key_at - h0, "sign_blocks": None if sign_at is None else sign_at - h0}


if __name__ == "__main__":
    main()
