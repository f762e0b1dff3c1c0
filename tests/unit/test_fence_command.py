"""A node's fence_command (STONITH): parsed as an argv, run on this machine, needed to exit 0,
journaled by program name and output tail only; and `check --control`, which tests that it is
set and runnable without running it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from near_failover.inventory import InventoryError, load_inventory
from near_failover.neard.check import Severity
from near_failover.procedures.errors import Refused
from near_failover.procedures.fence import fence_command_findings, run_fence_command

RPC = "http://127.0.0.1:9"  # nothing listens on the discard port: no neard answers

INVENTORY = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[[node]]
name = "val-a"
home = "val-a"
rpc = "{rpc}"
control = "pidfile:val-a/neard.pid"
start = ["neard", "run"]
key_store = "keys/val-a/validator_key.json"
standby = "hot-swap"
{extra}
"""


def inventory(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(INVENTORY.format(extra=extra, rpc=RPC))
    return path


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "stonith"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_fence_command_is_an_argv_from_a_list_or_a_string(tmp_path: Path) -> None:
    node = load_inventory(inventory(tmp_path, 'fence_command = "/usr/local/bin/stonith --machine \'val a\'"')).node("val-a")
    assert node.fence_command == ["/usr/local/bin/stonith", "--machine", "val a"]
    assert load_inventory(inventory(tmp_path)).node("val-a").fence_command is None
    with pytest.raises(InventoryError) as bad:
        load_inventory(inventory(tmp_path, "fence_command = []"))
    assert 'node[0].fence_command (node "val-a"): fence_command: expected a non-empty command' in str(bad.value)


async def test_a_fence_command_that_succeeds_is_journaled_by_program_and_output(tmp_path: Path) -> None:
    stonith = script(tmp_path, 'echo "powering off $1"; echo "done" >&2')
    node = load_inventory(inventory(tmp_path, f'fence_command = ["{stonith}", "vm-123", "--token-file", "/etc/t"]')).node("val-a")
    evidence = await run_fence_command(node, timeout=10)
    assert evidence["program"] == str(stonith) and evidence["exit_code"] == 0
    assert "powering off vm-123" in evidence["output"] and "done" in evidence["output"]
    assert "--token-file" not in json.dumps(evidence)  # the arguments are not journaled


async def test_a_fence_command_that_fails_or_hangs_refuses_the_key(tmp_path: Path) -> None:
    failing = script(tmp_path, 'echo "API: machine not found"; exit 3')
    node = load_inventory(inventory(tmp_path, f'fence_command = ["{failing}"]')).node("val-a")
    with pytest.raises(Refused) as refused:
        await run_fence_command(node, timeout=10)
    assert "val-a's fence_command" in str(refused.value) and "exited 3 (API: machine not found)" in str(refused.value)
    assert "no key is given" in str(refused.value)
    hanging = script(tmp_path, "exec sleep 30")
    node = load_inventory(inventory(tmp_path, f'fence_command = ["{hanging}"]')).node("val-a")
    with pytest.raises(Refused) as timed_out:
        await run_fence_command(node, timeout=0.5)
    assert "did not finish within 0.5s" in str(timed_out.value)
    missing = load_inventory(inventory(tmp_path, f'fence_command = ["{tmp_path}/nowhere"]')).node("val-a")
    with pytest.raises(Refused):
        await run_fence_command(missing, timeout=5)


def test_check_control_findings(tmp_path: Path) -> None:
    unset = fence_command_findings(load_inventory(inventory(tmp_path)).node("val-a"))
    assert [f.severity for f in unset] == [Severity.WARNING] and "no fence_command" in unset[0].what
    missing = fence_command_findings(load_inventory(inventory(tmp_path, f'fence_command = ["{tmp_path}/nowhere"]')).node("val-a"))
    assert [f.severity for f in missing] == [Severity.ERROR] and "not an executable file" in missing[0].what
    stonith = script(tmp_path, "exit 0")
    assert fence_command_findings(load_inventory(inventory(tmp_path, f'fence_command = ["{stonith}"]')).node("val-a")) == []


def check_control(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "near_failover", "check", "--control", "-c", str(path), *extra],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def test_check_control_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    stonith = script(tmp_path, f"touch {marker}")
    good = check_control(inventory(tmp_path, f'fence_command = ["{stonith}"]'), "--node", "val-a", "--json")
    # No neard answers here, so its control is not checked against it: a warning, not an error.
    assert good.returncode == 0 and [f["what"] for f in json.loads(good.stdout)["findings"]] == [
        f"val-a's neard does not answer on {RPC}: its control was not checked against it"]
    assert not marker.exists()  # tested, never run: it would power the machine off
    bad = check_control(inventory(tmp_path, f'fence_command = ["{tmp_path}/nowhere"]'), "--node", "val-a", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False
    unknown = check_control(inventory(tmp_path), "--node", "val-z")
    assert unknown.returncode == 2 and "no node named 'val-z'" in unknown.stderr and "Traceback" not in unknown.stderr
    no_node = check_control(inventory(tmp_path))
    assert no_node.returncode == 2 and "--control needs -c INVENTORY and --node NODE" in no_node.stderr
