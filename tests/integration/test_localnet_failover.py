"""Failover on the emulated localnet, by hand, with real processes and signals (issue 3 acceptance).

Every test ends by reading the chain's ledger for double signs.
"""

from __future__ import annotations

import json
import signal

import pytest

from near_failover.neard.config import as_rpc_standby, as_validator, dumps_config, load_config
from near_failover.neard.keys import KeyFile

from .localnet_harness import Localnet
from .localnet_support import POOL, running_localnet, wait_for


def test_hot_swap_as_in_nearcores_validator_switch_key_quick(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.3", "--epoch-length", "200", "--memtrie-load", "0.2") as net:
        net.wait_blocks(3)
        assert net.status("val-b")["validator_account_id"] is None
        pool_key = net.status("val-a")["validator_public_key"]
        net.place_key("val-b")
        net.signal("val-a", signal.SIGKILL)
        net.wait_gone("val-a")
        net.signal("val-b", signal.SIGHUP)
        sighup_height = net.chain_height()
        status = wait_for(lambda: (s := net.status("val-b"))["validator_account_id"] == POOL and s, 10, "val-b to show the pool's key", interval=0.02)
        assert status["validator_public_key"] == pool_key
        assert status["sync_info"]["latest_block_height"] <= sighup_height + 2  # within two blocks
        assert not status["sync_info"]["syncing"]
        metrics = net.metrics("val-b")
        assert metrics.value("near_config_reloads_total") == 2 and metrics.value("near_config_correct") == 1
        assert "hot loading validator key" in net.log("val-b") and "updated validator key" in net.log("val-b")

        # the pool's duties are signed again, by val-b
        row = wait_for(lambda: (r := net.signer_stats("val-b")) and r["last_height"] > sighup_height and r, 15, "val-b to sign for the pool")
        assert row["in_time"] > 0
        before = net.result("val-c", "validators", [None])
        mine = next(v for v in before["current_validators"] if v["account_id"] == POOL)
        net.wait_blocks(8)
        after = next(v for v in net.result("val-c", "validators", [None])["current_validators"] if v["account_id"] == POOL)
        assert after["num_produced_endorsements"] > mine["num_produced_endorsements"]
        known = {p["account_id"]: p["peer_id"] for p in net.result("val-c", "network_info")["known_producers"]}
        assert known[POOL] == net.nodes["val-b"]["peer_id"]
        assert net.ledger()["double_signs"] == 0


def test_key_in_two_running_nodes_is_a_double_sign_naming_both(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.15", "--epoch-length", "200", "--memtrie-load", "0.2") as net:
        net.wait_blocks(2)
        produced_a = net.produced("val-a")
        net.place_key("val-b")
        net.signal("val-b", signal.SIGHUP)
        book = wait_for(lambda: (b := net.ledger())["double_signs"] > 0 and b, 15, "the ledger to see a double sign")
        event = book["double_sign_events"][0]
        assert event["account_id"] == POOL
        assert {n["name"] for n in event["nodes"]} == {"val-a", "val-b"}
        assert {n["peer_id"] for n in event["nodes"]} == {net.nodes["val-a"]["peer_id"], net.nodes["val-b"]["peer_id"]}
        # both processes report production: the sign an operator can see without the ledger (§7)
        wait_for(lambda: net.produced("val-a") > produced_a and net.produced("val-b") > 0, 15, "both nodes' produced counters to rise")
        assert "DOUBLE SIGN" in (net.dir / "chain.log").read_text()
        # The check every end-to-end test ends with (through `localnet ledger`) fires on it too.
        with pytest.raises(AssertionError, match="val-b"):
            Localnet(net.dir).assert_no_double_sign()


def test_sighup_with_corrupt_key_keeps_signer_and_removing_the_key_stops_signing(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.15", "--epoch-length", "300", "--memtrie-load", "0.2") as net:
        net.wait_blocks(2)
        key_path = net.home("val-a") / "validator_key.json"
        good = key_path.read_text()
        key_path.write_text(good[: len(good) // 2])  # a torn write
        net.signal("val-a", signal.SIGHUP)
        wait_for(lambda: net.metrics("val-a").value("near_config_correct") == 0, 10, "near_config_correct to drop to 0")
        assert net.metrics("val-a").value("near_config_reloads_total") == 1  # the failed reload is not counted
        assert net.status("val-a")["validator_account_id"] == POOL  # old signer kept
        log = net.log("val-a")
        assert "dynamically updatable configs are not valid, please fix this asap otherwise the node will be unable to restart" in log
        assert "Failed initializing validator signer from" in log
        assert good.split('"secret_key"')[1][5:25] not in log  # no secret in the log
        mark = net.chain_height()
        wait_for(lambda: net.signer_stats("val-a")["last_height"] > mark, 10, "val-a to keep signing")

        key_path.unlink()
        net.signal("val-a", signal.SIGHUP)
        wait_for(lambda: net.status("val-a")["validator_account_id"] is None, 10, "val-a to drop its signer")
        metrics = net.metrics("val-a")
        assert metrics.value("near_config_correct") == 1 and metrics.value("near_config_reloads_total") == 2
        assert metrics.value("near_is_validator") == 0
        assert "no validator key" in net.log("val-a")
        stopped_at = net.chain_height()
        produced = net.produced("val-a")
        net.wait_blocks(8)
        assert net.signer_stats("val-a")["last_height"] <= stopped_at + 1
        assert net.produced("val-a") == produced

        # all or nothing: a broken log_config.json blocks the valid key from loading too
        log_config = net.home("val-a") / "log_config.json"
        log_config.write_text("{ not json")
        key_path.write_text(good)
        key_path.chmod(0o600)
        net.signal("val-a", signal.SIGHUP)
        wait_for(lambda: net.metrics("val-a").value("near_config_correct") == 0, 10, "the failed reload")
        assert net.status("val-a")["validator_account_id"] is None
        log_config.write_text('{"rust_log": null, "verbose_module": null, "opentelemetry": null, "expensive_metrics": null}')
        net.signal("val-a", signal.SIGHUP)
        wait_for(lambda: net.status("val-a")["validator_account_id"] == POOL, 10, "the key to load with a valid log_config.json")
        assert net.metrics("val-a").value("near_config_reloads_total") == 3
        assert "updated the logging layer according to log_config.json" in net.log("val-a")
        assert net.ledger()["double_signs"] == 0


def test_without_any_key_holder_the_pool_misses_and_is_kicked_out(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.1", "--epoch-length", "60", "--memtrie-load", "0.1", "--seed", "kick") as net:
        net.wait_blocks(2)
        net.signal("val-a", signal.SIGKILL)
        net.wait_gone("val-a")
        net.wait_blocks(2)

        def pool_row() -> dict:
            answer = net.result("val-c", "validators", [None])
            return {"epoch_start_height": answer["epoch_start_height"],
                    **next(v for v in answer["current_validators"] if v["account_id"] == POOL)}

        # look inside one epoch: start right after a boundary if too few heights are left for
        # four samples (each CLI call takes seconds on a loaded machine: 40 heights are 4 s)
        book = net.ledger()
        if book["epoch_start_height"] + net.epoch_length - book["height"] < 40:
            net.wait_height(book["epoch_start_height"] + net.epoch_length + 1)
        first, first_book = pool_row(), net.ledger_cli()
        net.wait_blocks(4)
        second, second_book = pool_row(), net.ledger_cli()
        assert second_book["epoch_height"] == first_book["epoch_height"]
        assert second["epoch_start_height"] == first["epoch_start_height"]
        for kind in ("blocks", "chunks", "endorsements"):
            assert first[f"num_produced_{kind}"] == second[f"num_produced_{kind}"]
            assert second_book["accounts"][POOL][kind]["produced"] == first_book["accounts"][POOL][kind]["produced"]
        assert second["num_expected_endorsements"] > first["num_expected_endorsements"]
        assert second_book["accounts"][POOL]["endorsements"]["expected"] > first_book["accounts"][POOL]["endorsements"]["expected"]
        metrics = net.metrics("val-c")
        assert metrics.value("near_validators_blocks_expected", account_id=POOL) is not None

        def kicked() -> dict | None:
            view = net.result("val-c", "validators", [None])
            return next((k for k in view["prev_epoch_kickout"] if k["account_id"] == POOL), None)

        kick = wait_for(kicked, 15, "a kickout of the pool")
        reason, counts = next(iter(kick["reason"].items()))
        assert reason in ("NotEnoughBlocks", "NotEnoughChunks")
        assert counts["produced"] * 100 < 80 * counts["expected"]
        assert net.ledger()["double_signs"] == 0


def test_option1_restart_promotes_the_rpc_standby_and_it_can_never_track_all_shards_again(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.1", "--epoch-length", "12", "--memtrie-load", "0.3") as net:
        net.wait_blocks(2)
        net.signal("val-a", signal.SIGKILL)
        net.wait_gone("val-a")
        # Option 1: stop the standby, NoShards + memtries, the key, restart
        net.stop("val-c")
        config_path = net.home("val-c") / "config.json"
        cfg = as_validator(load_config(config_path))
        cfg["gc_num_epochs_to_keep"] = 1  # garbage collection within the test's time
        config_path.write_text("// promoted to validator (Option 1)\n" + dumps_config(cfg))
        net.place_key("val-c")
        net.start("val-c")
        wait_for(lambda: net.status("val-c")["validator_account_id"] == POOL, 20, "val-c to run as the validator")
        mark = net.chain_height()
        wait_for(lambda: (r := net.signer_stats("val-c")) and r["last_height"] > mark, 15, "val-c to sign for the pool")
        assert net.result("val-c", "client_config")["tracked_shards_config"] == "NoShards"

        # two epoch changes later the shards it stopped tracking are garbage collected
        state_path = net.home("val-c") / "data" / "localnet-node.json"
        wait_for(lambda: json.loads(state_path.read_text())["shards"]["gc"], 20, "garbage collection of untracked shards")

        # back to an rpc standby (legacy field, as node-docs' troubleshooting page suggests)
        net.stop("val-c")
        (net.home("val-c") / "validator_key.json").unlink()
        cfg = as_rpc_standby(load_config(config_path))
        del cfg["tracked_shards_config"]
        cfg["tracked_shards"] = [0]
        config_path.write_text(dumps_config(cfg))
        net.start("val-c")
        wait_for(lambda: "state of a tracked shard was garbage collected" in net.log("val-c"), 20, "val-c to find its shards gone")
        assert net.result("val-c", "client_config")["tracked_shards_config"] == "AllShards"
        stuck_at = net.status("val-c")["sync_info"]["latest_block_height"]
        net.wait_blocks(10)
        status = net.status("val-c")
        assert status["sync_info"]["syncing"] is True
        assert status["sync_info"]["latest_block_height"] == stuck_at
        health = net.rpc("val-c", "health").json()
        assert health["error"]["cause"]["name"] == "NODE_IS_SYNCING"
        assert net.metrics("val-c").value("near_sync_status") == 5
        assert net.ledger()["double_signs"] == 0


def test_a_key_that_is_not_the_on_chain_key_is_rejected_and_the_epoch_check_panics(tmp_path):
    with running_localnet(tmp_path, "--block-time", "0.1", "--epoch-length", "30", "--memtrie-load", "0.1") as net:
        net.wait_blocks(2)
        net.stop("val-a")
        proc = net.start("val-a")  # our child, so its exit code can be read
        wait_for(lambda: net.status("val-a")["validator_account_id"] == POOL, 20, "val-a back")
        wait_for(lambda: (r := net.signer_stats("val-a")) and r["last_height"] > net.chain_height() - 3, 10, "val-a signing")
        rogue = KeyFile.generate(POOL)
        book = net.ledger()  # swap early in an epoch, so signing happens before the next check
        if book["epoch_start_height"] + net.epoch_length - book["height"] < 15:
            net.wait_height(book["epoch_start_height"] + net.epoch_length + 2)
        net.place_key("val-a", rogue.to_json_text())
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: net.status("val-a")["validator_public_key"] == rogue.public_key, 10, "the rogue key to load")
        rejected = wait_for(lambda: net.ledger()["rejected"].get(POOL, {}).get("key_mismatch", 0), 15, "key_mismatch rejections")
        assert rejected > 0
        # the marker was set this epoch, so the mismatch panics at the next epoch's first head
        assert proc.wait(20) == -signal.SIGABRT  # release neard aborts on panic
        log = net.log("val-a")
        assert f"validator key mismatch for {POOL}: local key {rogue.public_key} does not match on-chain key" in log
        assert "Update validator_key.json or rotate the key on-chain." in log
        assert net.ledger()["double_signs"] == 0
