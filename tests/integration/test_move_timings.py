"""Moves under neard's real timings (scaled): a memtrie load longer than verify, a source still
starting when the fence comes, a duty gap sized from journaled stops, preflight reading the
running process. Each test checks the ledger: zero double signs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.integration.localnet_harness import Localnet, cli, start_localnet, stop_localnet
from tests.integration.test_procedures import _move_with_hook, move


def _timeouts(net: Localnet, **seconds: float) -> None:
    """Set [timeouts] in the localnet's inventory."""
    net.edit_inventory(None, timeouts=seconds)


def _restart(net: Localnet, name: str) -> None:
    """Stop a node (SIGTERM, confirmed gone) and start it again as its pid-file control does."""
    from near_failover.localnet.supervisor import start_node

    pid = net.pid(name)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
        assert time.monotonic() < deadline, f"{name} did not stop"
        time.sleep(0.05)
    start_node(net.directory / name)


def _wait_rpc(net: Localnet, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            net.rpc_status(name)
            return
        except Exception:  # noqa: BLE001 - refused while it loads memtries
            assert time.monotonic() < deadline, f"{name}'s RPC did not answer"
            time.sleep(0.2)


def _history(net: Localnet) -> list[dict]:
    return json.loads(cli("history", "-c", net.inventory, "--json").stdout)


@pytest.fixture
def slow_start_net(tmp_path: Path):
    """Nodes with memtries take 6 s to start (val-a and val-b at `up`, val-c after Option 1)."""
    net = start_localnet(tmp_path / "net", memtrie_load=6.0)
    try:
        yield net
    finally:
        stop_localnet(net)


def test_option1_memtrie_load_longer_than_verify_then_fence_of_a_starting_signer(slow_start_net: Localnet):
    net = slow_start_net
    _timeouts(net, verify=3)  # shorter than the 6 s load: the wait belongs to activation
    done = cli("switchover", "-c", net.inventory, "--to", "val-c", "--mode", "rpc", "--yes", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"val-c: opening the store and loading memtries \(RPC closed\), \d+s of \d+s", done.stderr), done.stderr  # phase, elapsed
    run = _history(net)[0]
    assert run["outcome"] == "ok"
    restart = next(s for s in run["steps"] if s["name"] == "activate")["evidence"]["restart"]
    assert restart["ready_after"] >= 5 and restart["memtries"]  # the load ran inside activation
    assert net.rpc_status("val-c")["validator_account_id"] == net.pool()
    net.wait_height(5)
    net.assert_no_double_sign()

    # val-c, now the signer, restarts (6 s of memtrie load, its RPC closed, the key in its home)
    # and a failover comes: the fence lets it finish starting before it stops it.
    log = net.directory / "val-c" / "neard.log"
    _restart(net, "val-c")
    restarted_at = len(log.read_text())
    report = move(net, "failover", "val-b")
    assert report["ok"] and report["from"] == "val-c", report
    assert "to finish starting before stopping it" in report["_stderr"]
    fence = next(s for s in _history(net)[0]["steps"] if s["name"] == "fence")
    assert fence["evidence"]["finished_starting"] is True
    # neard got SIGTERM only once it was up (a SIGTERM during start-up kills it, neard/src/cli.rs).
    since = log.read_text()[restarted_at:]
    assert "starting http server" in since and since.index("starting http server") < since.index("stopping, this may take")
    assert net.rpc_status("val-b")["validator_account_id"] == net.pool()
    net.wait_height(5)
    net.assert_no_double_sign()


@pytest.mark.slow
def test_issue_scenario_memtrie_load_75_with_default_timeouts(tmp_path: Path):
    """The issue's commands as written: `localnet up --memtrie-load 75`, then an Option 1
    switchover with the default timeouts (about 3 minutes: both loads take 75 s)."""
    directory = tmp_path / "net"
    cli("localnet", "up", "--dir", directory, "--memtrie-load", "75", "--timeout", "240", timeout=300)
    net = Localnet(directory)
    try:
        done = cli("switchover", "-c", net.inventory, "--to", "val-c", "--mode", "rpc", "--yes", check=False, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        assert _history(net)[0]["outcome"] == "ok"
        assert net.rpc_status("val-c")["validator_account_id"] == net.pool()
        net.assert_no_double_sign()
    finally:
        stop_localnet(net)


def test_in_window_gap_from_journaled_stops_and_preflight_of_the_running_node(tmp_path: Path):
    # 1 s blocks: a hot swap (a stop under a second + neard's 1 s reload) fits a 3-block gap,
    # which this schedule offers every few tens of blocks.
    net = start_localnet(tmp_path / "net", block_time=1.0)
    try:
        _preflight_reads_the_running_node(net)
        _in_window_from_journaled_stops(net)
    finally:
        stop_localnet(net)


def _preflight_reads_the_running_node(net: Localnet) -> None:
    # val-b's config.json turns memtries off, but its running neard still holds them: a hot swap
    # is fine now, and the dry run says a restart is pending.
    config = net.directory / "val-b" / "config.json"
    cfg = json.loads(config.read_text())
    cfg["store"]["load_mem_tries_for_tracked_shards"] = False
    config.write_text(json.dumps(cfg, indent=2))
    net.edit_inventory("val-b", timeouts={"verify": 7})
    report = move(net, "switchover", "val-b", "--dry-run")
    assert report["checks"]["target_memtries"]["running"] and report["checks"]["target_memtries"]["config"] is False
    assert any("memtries: config.json has them off" in p for p in report["checks"]["restart_pending"])
    assert report["timeouts"]["verify"] == {"seconds": 7.0, "from": "[node.timeouts] of val-b"}
    text = cli("switchover", "-c", net.inventory, "--to", "val-b", "--dry-run").stdout
    assert "verify 7s ([node.timeouts] of val-b)" in text and "activate_rpc 900s (default)" in text
    # A bad timeout is an input error: exit 2, one line naming the file and the key.
    _timeouts(net, verify=-1)
    bad = cli("switchover", "-c", net.inventory, "--to", "val-b", "--dry-run", check=False)
    assert bad.returncode == 2 and str(net.inventory) in bad.stderr and "timeouts.verify" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # val-c restarted with NoShards: its running process no longer holds the pool's shards.
    config = net.directory / "val-c" / "config.json"
    cfg = json.loads(config.read_text())
    cfg["tracked_shards_config"] = "NoShards"
    config.write_text(json.dumps(cfg, indent=2))
    _restart(net, "val-c")
    _wait_rpc(net, "val-c")
    _timeouts(net)
    refused = move(net, "switchover", "val-c", "--mode", "rpc", "--dry-run", check=False)
    assert refused["_exit"] == 1 and "runs with tracking NoShards" in refused["message"], refused


def _in_window_from_journaled_stops(net: Localnet) -> None:
    _timeouts(net, window_wait=3)
    # No stop of val-a journaled: the conservative default (30 s) finds no gap.
    first = move(net, "switchover", "val-b", "--in-window", check=False)
    assert first["_exit"] == 1 and "default: no stop of val-a journaled" in first["message"], first
    # A run that fences val-a and is rolled back (the staged key breaks after preflight) journals
    # val-a's measured stop.
    store = net.directory / "keys" / "val-b" / "validator_key.json"
    good = store.read_text()
    broken = good.replace('"secret_key": "ed25519:', '"secret_key": "ed25519:0')
    result, _ = asyncio.run(_move_with_hook(net, "val-b", "hot-swap", lambda: store.write_text(broken)))
    assert result.outcome == "rolled-back", result.message
    store.write_text(good)
    _timeouts(net, window_wait=180)
    report = move(net, "switchover", "val-b", "--in-window")
    window = report["checks"]["window"]
    assert window["stops_measured"] == 1 and window["stop_seconds"] < 5 and window["reload_seconds"] == 1.0, window
    assert "longest of its last 1 journaled" in report["_stderr"]
    assert window["window"][0] <= window["head"] + 1 and window["expected_missed"] == 0
    assert report["missed"]["blocks"] + report["missed"]["chunks"] <= 1, report["missed"]
    # Option 2 leaves tracking alone (SIGHUP cannot change it): settle says so and what to run.
    note = next(n for n in report["notes"] if "NoShards was not set" in n)
    assert f"near-failover config promote --home {net.directory / 'val-b'}" in note
    net.wait_height(3)
    net.assert_no_double_sign()
