"""docs/operations.md is run, not only read: every command in its `sh` blocks runs in order on a
localnet and must succeed; every other block is marked `sh real-machines` (packages, users,
systemd, etcd), so no command of the runbook is left untried by accident."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.localnet_harness import Localnet

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUN, REAL = "sh", "sh real-machines"


def runbook_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(info string, commands) per fenced block; a command continued with a backslash is one."""
    blocks = []
    for info, body in FENCE.findall(text):
        commands = [c.strip() for c in body.replace("\\\n", " ").splitlines()]
        blocks.append((info.strip(), [c for c in commands if c and not c.startswith("#")]))
    return blocks


def test_every_runbook_block_is_run_or_marked_for_real_machines() -> None:
    text = RUNBOOK.read_text()
    blocks = runbook_blocks(text)
    assert {info for info, _ in blocks} == {RUN, REAL}, [info for info, _ in blocks]
    assert sum(len(c) for i, c in blocks if i == RUN) >= 10
    assert "\n### Upgrade cycle\n" in text  # issue 20 fills it with `rejoin`
    for heading in ("Users and privileges", "SSH and known_hosts", "etcd placement", "Ports", "Daily checks", "Planned maintenance", "After an automatic failover", "Troubleshooting by symptom"):
        assert heading in text, heading


def test_runbook_commands_succeed_on_the_localnet(net: Localnet) -> None:
    env = {
        **os.environ,
        "NEAR_FAILOVER_CONFIG": str(net.inventory),
        "NEAR_HOME": str(net.directory / "val-b"),
        "POOL": net.pool(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    ran = []
    for info, commands in runbook_blocks(RUNBOOK.read_text()):
        if info != RUN:
            continue
        for command in commands:
            done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            ran.append(command)
    assert any(c.startswith("near-failover switchover --to val-b --yes") for c in ran)
    assert net.rpc_status("val-b")["validator_account_id"] == net.pool()
    net.wait_height(5)
    net.assert_no_double_sign()
