"""The emulator's profiles: mainnet figures per shard, overrides in seconds, fast as it was."""

from __future__ import annotations

import pytest

from near_failover.localnet.profile import Timings, fast, mainnet, timings


def test_mainnet_memtrie_load_is_per_shard_unless_a_total_is_given() -> None:
    m = timings("mainnet", 0.6)
    assert m.memtrie_load_seconds(1) == 30.0 and m.memtrie_load_seconds(2) == 60.0
    assert timings("mainnet", 0.6, memtrie_load=4.0).memtrie_load_seconds(3) == 4.0  # --memtrie-load: total per start
    assert timings("fast", 0.2).memtrie_load_seconds(3) == 1.0


def test_every_figure_can_be_overridden_and_the_rest_stays() -> None:
    t = timings("mainnet", 0.6, stop_time=2, reload_delay=0.5, state_sync=3, routing_lag=1, sync_blocks_per_second=15, memtrie_load=None)
    assert (t.stop_time, t.reload_delay, t.state_sync, t.routing_lag, t.sync_blocks_per_second) == (2.0, 0.5, 3.0, 1.0, 15.0)
    assert t.profile == "mainnet" and t.memtrie_load_per_shard == mainnet().memtrie_load_per_shard
    with pytest.raises(ValueError, match="--stop-time"):
        timings("mainnet", 0.6, stop_time=-1)
    with pytest.raises(ValueError, match="unknown profile"):
        timings("slow", 0.6)


def test_state_sync_in_blocks_and_the_json_round_trip() -> None:
    assert fast(0.2).state_sync_blocks(0.2) == 5  # what the emulator always did
    assert mainnet().state_sync_blocks(0.6) == 1500
    t = timings("mainnet", 0.6, routing_lag=2)
    assert Timings.from_json({**t.to_json(), "unknown": 1}, fast(0.2)) == t
    assert Timings.from_json({}, fast(0.2)) == fast(0.2)
