"""`near-failover localnet up/status/ledger/down` as a user runs them, with real processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import tomllib
from pathlib import Path

from near_failover.localnet.homes import create_localnet
from near_failover.neard.config import effective_tracking, load_config, memtries_enabled
from near_failover.neard.keys import load_key_file

from .localnet_support import LOCALNET, POOL, Net, localnet_cli, wait_for


def test_up_status_ledger_down_and_down_stops_only_its_own(tmp_path):
    directory = tmp_path / "net"
    up = localnet_cli("up", "--dir", str(directory), "--block-time", "0.1", "--epoch-length", "30", "--memtrie-load", "0.3", "--json", console=True)
    assert up.returncode == 0, up.stderr
    net = Net(directory)
    foreign = None
    try:
        report = json.loads(up.stdout)
        assert {n["name"] for n in report["nodes"]} == {"val-a", "val-b", "val-c"}
        assert all(n["alive"] for n in report["nodes"]) and report["chain"]["pid"]

        # homes as the failover guide sets them up, read back with neard's rules
        roles = {}
        for name in net.nodes:
            cfg = load_config(net.home(name) / "config.json")
            roles[name] = (effective_tracking(cfg).to_json(), memtries_enabled(cfg), (net.home(name) / "validator_key.json").exists())
            assert cfg["rpc"]["addr"].startswith("127.0.0.1:")
        assert roles == {
            "val-a": ("NoShards", True, True),
            "val-b": ({"ShadowValidator": POOL}, True, False),
            "val-c": ("AllShards", False, False),
        }

        # inventory and staged keys
        inventory = tomllib.loads((directory / "inventory.toml").read_text())
        assert inventory["validator"] == {"account_id": POOL, "chain_id": "localnet"}
        by_name = {n["name"]: n for n in inventory["node"]}
        for name, node in by_name.items():
            assert node["host"] == "local" and node["control"] == f"pidfile:{net.home(name) / 'neard.pid'}"
            assert node["start"][-2:] == ["--home", str(net.home(name))]
            staged = Path(node["key_store"])
            assert not staged.is_relative_to(net.home(name))
            assert stat.S_IMODE(staged.stat().st_mode) == 0o600
            assert load_key_file(staged).public_key == load_key_file(net.home("val-a") / "validator_key.json").public_key
        assert (by_name["val-b"]["standby"], by_name["val-c"]["standby"]) == ("hot-swap", "rpc")
        assert stat.S_IMODE((net.home("val-a") / "validator_key.json").stat().st_mode) == 0o600

        # a second `up` on a running localnet is refused
        again = localnet_cli("up", "--dir", str(directory))
        assert again.returncode != 0 and "already runs" in again.stderr

        status = json.loads(localnet_cli("status", "--dir", str(directory), "--json", console=True).stdout)
        assert set(status) == {"chain", "nodes"} and {"url", "pid", "height"} <= set(status["chain"])
        assert [set(n) >= {"name", "home", "rpc", "pid", "alive"} for n in status["nodes"]] == [True] * 3

        net.wait_height(12)
        book = json.loads(localnet_cli("ledger", "--dir", str(directory), "--json", console=True).stdout)
        assert {"height", "double_signs", "double_sign_events", "accounts"} <= set(book)
        pool = book["accounts"][POOL]
        assert set(pool) >= {"blocks", "chunks", "endorsements"}
        assert pool["endorsements"]["produced"] > 0 and pool["endorsements"]["expected"] >= pool["endorsements"]["produced"]
        assert net.signer_stats("val-a")["signed"] > 0
        assert book["double_signs"] == 0

        # `down` must leave a foreign process alone even if a pid file names it
        net.stop("val-c")
        foreign = subprocess.Popen(["sleep", "60"])
        (net.home("val-c") / "neard.pid").write_text(f"{foreign.pid}\n")
        down = localnet_cli("down", "--dir", str(directory), "--json", console=True)
        assert down.returncode == 0, down.stderr
        stopped = json.loads(down.stdout)
        assert stopped["val-a"]["result"] == stopped["val-b"]["result"] == stopped["chain"]["result"] == "stopped"
        assert "left alone" in stopped["val-c"]["result"]
        assert foreign.poll() is None
        for name in ("val-a", "val-b"):
            assert not net.alive(name)
        after = json.loads(localnet_cli("status", "--dir", str(directory), "--json").stdout)
        assert after["chain"]["height"] is None and not any(n["alive"] for n in after["nodes"] if n["name"] != "val-c")
    finally:
        localnet_cli("down", "--dir", str(directory))
        if foreign is not None:
            foreign.kill()
            foreign.wait()
    # a stopped localnet is not overwritten by accident
    refused = localnet_cli("up", "--dir", str(directory))
    assert refused.returncode != 0 and "--reset" in refused.stderr


def test_node_refuses_bad_homes_with_neards_messages(tmp_path):
    """Start-up checks that need no network: config semantics, key files, comments, unknown keys."""
    directory = tmp_path / "net"
    create_localnet(directory, epoch_length=20)
    home = directory / "val-c"
    original = (home / "config.json").read_text()
    argv = [*LOCALNET, "node", "--home", str(home)]

    cfg = json.loads(original)
    cfg["tracked_shards"] = [0]
    (home / "config.json").write_text(json.dumps(cfg, indent=2))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGABRT  # a panic aborts (release neard: panic = 'abort')
    assert "Error loading config: The following config checks failed" in done.stderr
    assert "'config.tracked_shards' and 'config.tracked_shards_config' cannot be both set" in done.stderr

    # an empty Schedule: ShardTracker asserts it is not empty (chain/epoch-manager/src/shard_tracker.rs)
    cfg = json.loads(original)
    cfg["tracked_shards_config"] = {"Schedule": []}
    (home / "config.json").write_text(json.dumps(cfg, indent=2))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGABRT
    assert "assertion failed: !schedule.is_empty()" in done.stderr

    (home / "config.json").write_text(original)
    key = home / "validator_key.json"
    key.write_text('{"account_id": "pool.poolv1.near", "public_key": "ed25519:1", "secret_key": "ed25519:1"}')
    os.chmod(key, 0o600)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGABRT
    assert f"validator_key.json file issue: Failed initializing validator signer from {key}" in done.stderr
    key.unlink()

    # comments are fine, unknown keys only warn; with no network the node waits for peers,
    # its RPC port stays closed, and SIGTERM stops it gracefully
    with_comment = original.replace('"genesis_file"', '// a comment, as neard allows\n  "surprise_field": 1,\n  "genesis_file"', 1)
    with_comment = with_comment.replace('"store": {', '"store": {\n    "nested_surprise": true,', 1)
    (home / "config.json").write_text(with_comment)
    log_path = home / "neard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "waiting for peers" in log_path.read_text(), 20, "the node to wait for peers")
        assert "encountered unrecognized fields fields=surprise_field,store.nested_surprise" in log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
