"""neard's start-up rules on the emulated localnet: public-chain panics and the memtrie load."""

from __future__ import annotations

import json
import signal
import socket
from urllib.parse import urlsplit

from .localnet_support import running_localnet, wait_for

ALL_SHARDS_PANIC = (
    "The `chain_id` field specified in genesis is among mainnet/testnet, so validator must not track all shards. "
    'Please set `tracked_shards_config` field in `config.json` to "NoShards".'
)


def test_mainnet_validator_key_with_all_shards_exits_at_hot_load_and_at_start(tmp_path):
    with running_localnet(tmp_path, "--chain-id", "mainnet", "--block-time", "0.1", "--epoch-length", "100", "--memtrie-load", "0.1") as net:
        assert net.status("val-a")["chain_id"] == "mainnet"  # a NoShards validator is fine on mainnet
        net.stop("val-a")  # no second signer while val-c loads the key
        net.stop("val-c")
        proc = net.start("val-c")
        wait_for(lambda: not net.status("val-c")["sync_info"]["syncing"], 20, "val-c synced")
        net.place_key("val-c")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(15) == -signal.SIGABRT  # release neard aborts on panic
        assert ALL_SHARDS_PANIC in net.log("val-c")
        assert "hot loading validator key" in net.log("val-c")

        # at start: the same panic, before the RPC port opens
        before = net.log("val-c").count(ALL_SHARDS_PANIC)
        proc = net.start("val-c")
        assert proc.wait(20) == -signal.SIGABRT
        log = net.log("val-c")
        assert log.count(ALL_SHARDS_PANIC) == before + 1
        assert log.rindex("starting http server") < log.rindex("starting the emulated neard")
        assert net.ledger()["double_signs"] == 0


def test_testnet_key_of_a_non_validator_only_warns(tmp_path):
    with running_localnet(tmp_path, "--chain-id", "testnet", "--block-time", "0.1", "--epoch-length", "100", "--memtrie-load", "0.1") as net:
        from near_failover.neard.keys import KeyFile

        other = KeyFile.generate("somebody.poolv1.near")
        net.place_key("val-c", other.to_json_text())
        net.signal("val-c", signal.SIGHUP)
        wait_for(lambda: net.status("val-c")["validator_account_id"] == "somebody.poolv1.near", 10, "the key to load")
        assert "not a current validator, this node won't be validating in the current epoch" in net.log("val-c")
        assert net.alive("val-c")
        assert net.ledger()["double_signs"] == 0


def test_rpc_port_refuses_connections_during_the_memtrie_load(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.1", "--epoch-length", "100", "--memtrie-load", "0.1") as net:
        net.stop("val-b")
        emulator = net.home("val-b") / "emulator.json"
        settings = json.loads(emulator.read_text())
        settings["memtrie_load_total"] = 2.0
        emulator.write_text(json.dumps(settings))
        addr = urlsplit(net.nodes["val-b"]["rpc"])
        proc = net.start("val-b")
        wait_for(lambda: "loading tries to memory for shards" in net.log("val-b").split("memtries loading complete")[-1], 15, "the memtrie load to begin")
        refusals = 0
        while "memtries loading complete" not in net.log("val-b").rsplit("starting the emulated neard", 1)[-1]:
            with socket.socket() as sock:
                sock.settimeout(2)
                try:
                    sock.connect((addr.hostname, addr.port))
                except ConnectionRefusedError:
                    refusals += 1
                else:
                    if "memtries loading complete" not in net.log("val-b").rsplit("starting the emulated neard", 1)[-1]:
                        raise AssertionError("val-b's RPC port accepted a connection during the memtrie load")
            assert proc.poll() is None
            if refusals > 400:
                break
        assert refusals > 0
        status = wait_for(lambda: net.status("val-b"), 15, "val-b's RPC after the load")
        assert status["node_public_key"] == net.nodes["val-b"]["peer_id"]
        # the start-up load is not a background load: neard sets no background status for it
        assert net.metrics("val-b").value("near_memtrie_background_load_status", shard_uid="s0.v3") is None
        assert net.ledger()["double_signs"] == 0


def test_a_validator_without_memtries_misses_its_chunks(tmp_path):
    from near_failover.neard.config import dumps_config, load_config

    from .localnet_support import POOL

    with running_localnet(tmp_path, "--block-time", "0.1", "--epoch-length", "300", "--memtrie-load", "0.1") as net:
        net.stop("val-a")
        config_path = net.home("val-a") / "config.json"
        cfg = load_config(config_path)
        cfg["store"]["load_mem_tries_for_tracked_shards"] = False
        config_path.write_text(dumps_config(cfg))
        emulator = net.home("val-a") / "emulator.json"
        emulator.write_text(json.dumps({**json.loads(emulator.read_text()), "chunk_miss_share_without_memtries": 1.0}))
        net.start("val-a")
        wait_for(lambda: net.status("val-a")["validator_account_id"] == POOL and not net.status("val-a")["sync_info"]["syncing"], 20, "val-a back")
        assert "loading tries to memory" not in net.log("val-a").rsplit("starting the emulated neard", 1)[-1]

        def pool() -> dict:
            return next(v for v in net.result("val-c", "validators", [None])["current_validators"] if v["account_id"] == POOL)

        first = pool()
        wait_for(lambda: pool()["num_expected_chunks"] >= first["num_expected_chunks"] + 3, 20, "three more chunk duties for the pool")
        later = pool()
        assert later["num_produced_chunks"] == first["num_produced_chunks"]
        assert later["num_produced_endorsements"] > first["num_produced_endorsements"]
        assert net.metrics("val-a").value("near_chunk_produced_total") == 0
        assert net.ledger()["double_signs"] == 0
