"""Deadlines from the inventory, the duty gap from journaled stops, and the pure checks behind
"a restart is pending" and the recovery commands (no SIGHUP before start-up ends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from near_failover.inventory import InventoryError, load_inventory
from near_failover.neard.metrics import memtrie_shards, parse_metrics
from near_failover.procedures import recovery
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import _restart_pending
from near_failover.procedures.plan import MoveSettings
from near_failover.procedures.startup import Phase, StartWatch
from near_failover.procedures.window import DEFAULT_STOP_SECONDS, RELOAD_SECONDS, gap_need

INVENTORY = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "mainnet"
{timeouts}
[[node]]
name = "val-a"
home = "/home/near/.near"
rpc = "http://127.0.0.1:3030"
control = "systemd:neard.service"
key_store = "/etc/near-failover/validator_key.json"
standby = "hot-swap"
{a_timeouts}
[[node]]
name = "val-b"
host = "ssh://near@10.0.0.12"
home = "/home/near/.near"
rpc = "http://127.0.0.1:3031"
control = "systemd:neard.service"
key_store = "/etc/near-failover/validator_key.json"
standby = "rpc"
{b_timeouts}
"""


def inventory(tmp_path: Path, timeouts: str = "", a: str = "", b: str = ""):
    path = tmp_path / "inventory.toml"
    path.write_text(INVENTORY.format(timeouts=timeouts, a_timeouts=a, b_timeouts=b))
    return load_inventory(path)


def error(tmp_path: Path, **tables: str) -> str:
    with pytest.raises(InventoryError) as err:
        inventory(tmp_path, **tables)
    message = str(err.value)
    assert str(tmp_path / "inventory.toml") in message and "\n" not in message
    return message


def test_defaults_are_sized_for_mainnet_and_printed_with_their_origin(tmp_path: Path):
    settings, deadlines = MoveSettings.for_move(inventory(tmp_path), "val-a", "val-b")
    assert settings == MoveSettings()
    assert settings.activate_rpc >= 600 and settings.fence >= 60  # memtrie loads of minutes, slow stops
    assert [d.name for d in deadlines] == ["preflight", "stage", "fence", "activate_hot_swap", "activate_rpc", "verify", "settle", "window_wait"]
    assert {d.origin for d in deadlines} == {"default"}


def test_node_timeouts_apply_to_their_own_role_in_the_move(tmp_path: Path):
    inv = inventory(
        tmp_path,
        timeouts="[timeouts]\nverify = 30\npreflight = 10\nfence = 50\n",
        a="[node.timeouts]\nfence = 200\nverify = 5\n",
        b="[node.timeouts]\nactivate_rpc = 1800\n",
    )
    settings, deadlines = MoveSettings.for_move(inv, "val-a", "val-b")
    origin = {d.name: d.origin for d in deadlines}
    assert settings.fence == 200 and origin["fence"] == "[node.timeouts] of val-a"  # the source's stop
    assert settings.activate_rpc == 1800 and origin["activate_rpc"] == "[node.timeouts] of val-b"  # the target's restart
    assert settings.verify == 30 and origin["verify"] == "[timeouts]"  # val-a's verify is not about this move
    assert settings.preflight == 10 and settings.window_wait == MoveSettings().window_wait
    back, _ = MoveSettings.for_move(inv, "val-b", "val-a")
    assert back.verify == 5 and back.fence == 50


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ({"timeouts": "[timeouts]\nverifiy = 3\n"}, "timeouts: verifiy: unknown timeout (a typo?)"),
        ({"timeouts": "[timeouts]\nverify = -1\n"}, "timeouts.verify: expected a number of seconds greater than 0"),
        ({"timeouts": '[timeouts]\nfence = "60s"\n'}, "timeouts.fence: expected a number of seconds"),
        ({"timeouts": "[timeouts]\nstage = true\n"}, "timeouts.stage: expected a number of seconds"),
        ({"b": "[node.timeouts]\npreflight = 5\n"}, 'node[1].timeouts (node "val-b"): preflight: set it for the whole move in [timeouts]'),
        ({"a": "[node.timeouts]\nactivate_rpc = 0\n"}, "node[0].timeouts.activate_rpc (node \"val-a\"): expected a number of seconds"),
    ],
)
def test_bad_timeouts_are_named_with_file_and_key(tmp_path: Path, tables: dict[str, str], expected: str):
    assert expected in error(tmp_path, **tables)


def test_gap_from_the_longest_recent_stop_or_the_default():
    measured = gap_need("val-a", [0.4, 2.5, 0.3, 0.2, 0.2, 9.0], block_time=0.6)
    assert measured.stop_seconds == 2.5 and measured.stops_measured == 5  # the 9 s stop is older than the last five
    assert measured.blocks == 7  # ceil((2.5 + 1.0) / 0.6) + 1
    assert "longest of its last 5 journaled" in measured.describe()
    default = gap_need("val-a", [], block_time=0.6)
    assert default.stop_seconds == DEFAULT_STOP_SECONDS and default.reload_seconds == RELOAD_SECONDS
    assert "default: no stop of val-a journaled" in default.describe()


def test_journal_stop_times_of_a_node(tmp_path: Path):
    with Journal(tmp_path / "journal.sqlite") as journal:
        for node, seconds, was_running in (("val-a", 1.5, True), ("val-b", 7.0, True), ("val-a", 0.5, True), ("val-a", 0.0, False)):
            run = journal.start_run("pool.poolv1.near", "switchover", "hot-swap", node, "val-c")
            with journal.step(run, "fence") as rec:
                rec.add(proof="stopped", node=node, stop={"pid": 1, "was_running": was_running, "killed": False, "seconds": seconds})
            journal.finish_run(run, "ok")
        run = journal.start_run("pool.poolv1.near", "switchover", "hot-swap", "val-a", "val-c")
        with pytest.raises(RuntimeError), journal.step(run, "fence") as rec:
            rec.add(node="val-a", stop={"was_running": True, "seconds": 99.0})
            raise RuntimeError("the step failed")
        journal.finish_run(run, "stopped")
        assert journal.stop_times("val-a") == [0.5, 1.5]
        assert journal.stop_times("val-b") == [7.0]
        assert journal.stop_times("val-c") == []


def test_recovery_waits_for_the_rpc_before_sighup(tmp_path: Path):
    inv = inventory(tmp_path)
    key_paths = {"val-a": "/home/near/.near/validator_key.json", "val-b": "/home/near/.near/validator_key.json"}
    revert = recovery.commands_after_activate("inv.toml", inv.node("val-a"), inv.node("val-b"), None, key_paths, 900)["revert"]
    wait = next(i for i, c in enumerate(revert) if "curl" in c)
    hup = next(i for i, c in enumerate(revert) if "kill -s HUP" in c)
    assert wait < hup and "timeout 900" in revert[wait] and "http://127.0.0.1:3031/status" in revert[wait]


def test_restart_pending_when_file_and_process_disagree():
    assert _restart_pending("AllShards", "AllShards", False, []) == []
    pending = _restart_pending("NoShards", "AllShards", True, [])
    assert len(pending) == 2 and "tracking" in pending[0] and "memtries: config.json has them on, neard holds none" in pending[1]
    assert _restart_pending({"ShadowValidator": "p"}, {"ShadowValidator": "p"}, False, ["s0.v3"]) == ["memtries: config.json has them off, neard holds s0.v3"]
    assert _restart_pending("AllShards", "AllShards", True, None) == []  # metrics unreadable: nothing claimed


def test_memtrie_shards_from_the_arena_metric():
    text = (
        "# TYPE near_memtrie_arena_memory_usage_bytes gauge\n"
        'near_memtrie_arena_memory_usage_bytes{shard_uid="s2.v3"} 1.2e10\n'
        'near_memtrie_arena_memory_usage_bytes{shard_uid="s0.v3"} 0\n'
        "# TYPE near_mem_trie_arena_memory_usage_bytes gauge\n"
        'near_mem_trie_arena_memory_usage_bytes{shard_uid="s1.v3"} 5\n'
    )
    assert memtrie_shards(parse_metrics(text)) == ["s1.v3", "s2.v3"]
    assert memtrie_shards(parse_metrics("# TYPE near_block_height_head gauge\nnear_block_height_head 5\n")) == []


def test_start_watch_times_each_phase():
    watch = StartWatch()
    assert watch.enter(Phase.LOADING, 0.0) and not watch.enter(Phase.LOADING, 3.0)
    assert watch.enter(Phase.SYNCING, 70.0) and watch.enter(Phase.READY, 72.5)
    assert watch.seconds == {Phase.LOADING.value: 70.0, Phase.SYNCING.value: 2.5}
