"""`near-failover drill` on the localnet: the whole safe sequence, and a report with every figure."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.localnet_harness import Localnet, cli

FIGURES = ("stop_seconds", "restart_seconds", "memtrie_load_seconds", "sighup_to_first_duty_seconds")


def test_drill_yes_moves_there_and_back_and_reports_every_figure(net: Localnet, tmp_path: Path) -> None:
    report_path = tmp_path / "drill.json"
    done = cli("drill", "-c", net.inventory, "--yes", "--report", report_path, timeout=600)
    assert "drill done" in done.stdout, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["stopped_at"] == "", report["stopped_at"]
    assert set(report["nodes"]) == {"val-a", "val-b"}
    for name, figures in report["nodes"].items():
        for figure in FIGURES:
            assert isinstance(figures[figure], (int, float)) and figures[figure] > 0, (name, figure, figures)
        assert set(figures["missed"]) == {"blocks", "chunks", "endorsements"}, figures
    assert figures["restart_seconds"] >= figures["memtrie_load_seconds"]
    assert set(report["suggested_timeouts"]) == {"fence", "activate_rpc", "activate_hot_swap", "verify"}
    outcomes = [(m["outcome"], m["from"], m["to"]) for m in report["moves"]]
    assert outcomes == [("dry-run", "val-a", "val-b"), ("ok", "val-a", "val-b"), ("ok", "val-b", "val-a")], outcomes
    # back where it started, the other node a standby again, nothing signed twice
    assert net.rpc_status("val-a")["validator_account_id"] == net.pool()
    assert net.rpc_status("val-b")["validator_account_id"] is None and net.rpc_status("val-b")["sync_info"]["syncing"] is False
    net.wait_height(5)
    net.assert_no_double_sign()


def test_drill_without_yes_and_without_a_terminal_is_refused_before_any_node_is_reached(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.toml"
    cli("init", "-c", inventory, "--account-id", "pool.poolv1.near", "--chain-id", "testnet", "--node", "val-a=ssh://near@192.0.2.1", "--node", "val-b=ssh://near@192.0.2.2")
    done = cli("drill", "-c", inventory, "--report", tmp_path / "drill.json", check=False)
    assert done.returncode == 2 and "pass --yes" in done.stderr, done.stderr
    assert not (tmp_path / "drill.json").exists()
