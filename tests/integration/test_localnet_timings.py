"""The emulated neard's timings and start-up signals as in neard (issue 18), with real processes.

Each test starts a localnet with the figure under test made long (scaled, as tests run the
mainnet profile) and looks at the order of events, never at wall-clock durations.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
from urllib.parse import urlsplit

import httpx

from .localnet_support import POOL, running_localnet, wait_for

FAST = ("--block-time", "0.1", "--epoch-length", "300", "--memtrie-load", "0.1")


def _in_memtrie_load(net, name: str) -> bool:
    tail = net.log(name).rsplit("starting the emulated neard", 1)[-1]
    return "loading tries to memory for shards" in tail and "memtries loading complete" not in tail


def test_a_signal_during_the_memtrie_load_kills_the_node(tmp_path):
    """neard installs its SIGHUP/SIGTERM handlers after start-up (neard/src/cli.rs): before, they kill it."""
    with running_localnet(tmp_path, *FAST) as net:
        for sig in (signal.SIGHUP, signal.SIGTERM):
            if net.alive("val-b"):
                net.stop("val-b")
            settings = json.loads((net.home("val-b") / "emulator.json").read_text())
            (net.home("val-b") / "emulator.json").write_text(json.dumps({**settings, "memtrie_load_total": 30.0}))
            proc = net.start("val-b")
            wait_for(lambda: _in_memtrie_load(net, "val-b"), 20, "val-b's memtrie load")
            proc.send_signal(sig)
            assert proc.wait(10) == -sig  # killed by the signal, not a graceful stop
            tail = net.log("val-b").rsplit("starting the emulated neard", 1)[-1]
            assert "stopping, this may take a few minutes" not in tail and "starting http server" not in tail

        # once its RPC answers, the same signals are handled: SIGHUP reloads, SIGTERM stops cleanly
        settings["memtrie_load_total"] = 0.1
        (net.home("val-b") / "emulator.json").write_text(json.dumps(settings))
        proc = net.start("val-b")
        wait_for(lambda: net.status("val-b"), 20, "val-b's RPC")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: net.metrics("val-b").value("near_config_reloads_total") == 2, 10, "the reload")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert net.ledger()["double_signs"] == 0


def test_two_nodes_sharing_a_node_key_are_caught_double_signing(tmp_path):
    """The guide warns against copying node_key.json; the ledger tells signers apart by process."""
    with running_localnet(tmp_path, *FAST) as net:
        net.stop("val-b")
        shutil.copyfile(net.home("val-a") / "node_key.json", net.home("val-b") / "node_key.json")
        net.place_key("val-b")
        net.start("val-b")
        wait_for(lambda: net.status("val-b")["validator_account_id"] == POOL, 20, "val-b with the pool key")
        assert net.status("val-b")["node_public_key"] == net.status("val-a")["node_public_key"]
        book = wait_for(lambda: (b := net.ledger())["double_signs"] > 0 and b, 20, "the ledger to see a double sign")
        event = book["double_sign_events"][0]
        assert {n["name"] for n in event["nodes"]} == {"val-a", "val-b"}
        assert len({n["peer_id"] for n in event["nodes"]}) == 1  # one peer id, two signers
        assert {n["pid"] for n in event["nodes"]} == {net.pid("val-a"), net.pid("val-b")}


def test_a_key_move_on_slow_timings_stop_time_reload_delay_and_routing_lag(tmp_path):
    """One hot swap with each figure long: the old signer's store shutdown (neard/src/cli.rs), the
    SIGHUP applied later by the client's config updater, and the new peer's endorsements lost
    until the network routes witnesses to it (nearcore #13766)."""
    with running_localnet(tmp_path, *FAST, "--stop-time", "4", "--reload-delay", "3", "--routing-lag", "4") as net:
        net.wait_blocks(3)
        assert net.ledger()["rejected"].get(POOL, {}).get("not_routed", 0) == 0  # the first peer is routed at once

        # SIGTERM: signing and RPC stop at once, the process lives on through the store shutdown
        pid = net.pid("val-a")
        addr = urlsplit(net.nodes["val-a"]["rpc"])
        net.signal("val-a", signal.SIGTERM)
        wait_for(lambda: "waiting for rocksdb to gracefully shutdown" in net.log("val-a"), 10, "the store shutdown to begin")
        stopped_at = net.chain_height()
        assert net.alive("val-a") and net.pid("val-a") == pid  # still running: a fence must wait for it
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((addr.hostname, addr.port)) != 0  # RPC closed at once
        net.wait_blocks(5)
        assert net.alive("val-a")
        assert net.signer_stats("val-a")["last_height"] <= stopped_at + 1  # signs nothing while stopping
        net.wait_gone("val-a", timeout=20)

        # SIGHUP: the configs are read at once, the signer is used only after the reload delay
        net.place_key("val-b")
        net.signal("val-b", signal.SIGHUP)
        wait_for(lambda: net.metrics("val-b").value("near_config_reloads_total") == 2, 5, "the configs to be read")
        assert net.status("val-b")["validator_account_id"] is None  # read, not yet applied
        assert "hot loading validator key" in net.log("val-b") and "updated validator key" not in net.log("val-b")
        wait_for(lambda: net.status("val-b")["validator_account_id"] == POOL, 15, "the key to be applied")
        assert "updated validator key" in net.log("val-b")

        # the routing lag: the new peer's endorsements are lost, its blocks and chunks are not
        wait_for(lambda: net.ledger()["rejected"].get(POOL, {}).get("not_routed", 0) > 0, 15, "endorsements lost to the routing lag")
        lost = net.ledger()["rejected"][POOL]["not_routed"]
        mark = net.chain_height()
        wait_for(lambda: (r := net.signer_stats("val-b")) and r["last_height"] > mark, 15, "val-b producing")

        def settled() -> bool:
            before = net.ledger()["rejected"][POOL]["not_routed"]
            net.wait_blocks(15)
            return net.ledger()["rejected"][POOL]["not_routed"] == before

        wait_for(settled, 40, "the routing lag to pass")
        assert net.ledger()["rejected"][POOL]["not_routed"] >= lost
        endorsements = net.ledger()["accounts"][POOL]["endorsements"]["produced"]
        wait_for(lambda: net.ledger()["accounts"][POOL]["endorsements"]["produced"] > endorsements, 15, "endorsements counted again")
        assert net.ledger()["double_signs"] == 0


def test_health_reports_no_new_blocks_before_syncing(tmp_path):
    """client_actor.rs checks the head's age before the sync status."""
    with running_localnet(tmp_path, *FAST) as net:
        net.stop("val-c")
        config = net.home("val-c") / "config.json"
        cfg = json.loads(config.read_text())
        cfg["consensus"]["min_block_production_delay"] = {"secs": 0, "nanos": 50_000_000}
        cfg["consensus"]["max_block_production_delay"] = {"secs": 0, "nanos": 100_000_000}
        config.write_text(json.dumps(cfg, indent=2))
        # syncing for long: a block sync of 1 block/s against a chain of 10 blocks/s
        emulator = net.home("val-c") / "emulator.json"
        emulator.write_text(json.dumps({**json.loads(emulator.read_text()), "sync_blocks_per_second": 1.0}))
        net.wait_blocks(30)
        net.start("val-c")
        wait_for(lambda: net.status("val-c")["sync_info"]["syncing"], 20, "val-c syncing")
        body = net.rpc("val-c", "health").json()
        assert body["error"]["cause"]["name"] == "NO_NEW_BLOCKS", body  # its head is seconds old: checked first
        assert httpx.get(net.nodes["val-c"]["rpc"] + "/health", timeout=5).status_code == 503
