"""The fence's proof: whether a node can still sign, observed from its RPC and its host's /proc,
independently of any control. Real emulated neard processes on a localnet."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from near_failover.inventory import load_inventory
from near_failover.procedures.nodes import open_nodes
from near_failover.procedures.observe import SignerVerdict, observe_signer
from tests.integration.localnet_harness import Localnet


async def observe(net: Localnet, name: str):
    async with open_nodes(load_inventory(net.inventory)) as nodes:
        return await observe_signer(nodes[name], net.pool())


async def test_signer_standby_frozen_and_gone_are_told_apart(net: Localnet):
    signing = await observe(net, "val-a")
    assert signing.verdict is SignerVerdict.SIGNING and signing.loaded_account == net.pool()
    standby = await observe(net, "val-b")
    assert standby.verdict is SignerVerdict.NO_KEY and standby.not_signing

    # A frozen neard answers nothing, but it still listens and holds its home: not proven silent.
    pid = net.pid("val-a")
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = await observe(net, "val-a")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert frozen.verdict is SignerVerdict.UNPROVEN and not frozen.not_signing
    assert frozen.scan is not None and pid in frozen.scan.pids and frozen.scan.listening
    reasons = next(p.reasons for p in frozen.scan.processes if p.pid == pid)
    assert "listens on the RPC port" in reasons and any(r.endswith("/data/LOCK open") for r in reasons)

    # Killed: RPC closed, port closed, no process serving the home.
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (gone := await observe(net, "val-a")).verdict is not SignerVerdict.GONE:
        assert time.monotonic() < deadline, gone
        time.sleep(0.1)
    assert gone.not_signing and gone.scan is not None and gone.scan.pids == ()


async def test_a_process_found_by_its_open_files_without_home_on_its_command_line(net: Localnet):
    """A process holding a file under data/ open (as neard holds RocksDB's LOCK) serves the home,
    whatever its command line; found even when the RPC port is closed."""
    os.kill(net.pid("val-c"), signal.SIGKILL)
    home = net.directory / "val-c"
    (home / "data" / "LOCK-test").touch()
    holder = subprocess.Popen(["sh", "-c", "exec 3<data/LOCK-test; exec sleep 60"], cwd=home, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while (seen := await observe(net, "val-c")).verdict is not SignerVerdict.UNPROVEN:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert seen.scan is not None and holder.pid in seen.scan.pids
    finally:
        holder.kill()
        holder.wait()
