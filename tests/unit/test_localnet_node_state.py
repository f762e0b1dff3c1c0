"""Shard state of an emulated neard: tracking, catch-up, garbage collection, the stuck AllShards case."""

from __future__ import annotations

from near_failover.localnet.node_state import ShardBook, split_by_epoch, tracked_shards_for_epoch

L = 10


def epoch_of(h: int) -> int:
    return 0 if h <= 0 else (h - 1) // L


def epoch_last(e: int) -> int:
    return (e + 1) * L


def walk(book: ShardBook, start: int, end: int, needs, catchup_blocks: int = 3, gc_epochs: int = 1) -> list[tuple[str, int]]:
    """Advance block by block; `needs(epoch)` gives (now, next, may_catch_up_now)."""
    events = []
    for h in range(start, end):
        now, nxt, cu = needs(epoch_of(h + 1))
        events += book.advance(h, h + 1, now, nxt, cu, catchup_blocks, epoch_of, gc_epochs)
        if book.stuck:
            break
    return events


def test_all_shards_node_keeps_every_shard():
    book = ShardBook.at_genesis(3)
    walk(book, 0, 50, lambda e: ({0, 1, 2}, {0, 1, 2}, set()))
    assert book.held_shards(50) == {0, 1, 2} and not book.gc and not book.stuck


def test_subset_tracking_garbage_collects_the_rest_and_allshards_then_never_syncs():
    book = ShardBook.at_genesis(3)
    # a NoShards validator whose shard is 0 in every epoch
    events = walk(book, 0, 30, lambda e: ({0}, {0}, {0}), gc_epochs=1)
    assert ("garbage_collected", 1) in events and ("garbage_collected", 2) in events
    assert book.held_shards(30) == {0} and book.gc == {1, 2}
    # restarted with AllShards: the GC'd shards cannot come back
    events = walk(book, 30, 35, lambda e: ({0, 1, 2}, {0, 1, 2}, set()))
    assert book.stuck and {s for ev, s in events if ev == "missing"} == {1, 2}


def test_stale_but_not_collected_shards_sync_back():
    book = ShardBook.at_genesis(3)
    walk(book, 0, 12, lambda e: ({0}, {0}, {0}), gc_epochs=5)
    assert book.gc == set()
    events = walk(book, 12, 13, lambda e: ({0, 1, 2}, {0, 1, 2}, set()))
    assert {s for ev, s in events if ev == "stale_sync_started"} == {1, 2}
    assert book.syncing_shards == {1, 2} and not book.stuck
    walk(book, 13, 20, lambda e: ({0, 1, 2}, {0, 1, 2}, set()))
    assert book.held_shards(20) == {0, 1, 2} and not book.syncing_shards


def test_shadow_standby_catches_up_next_epochs_shard_before_the_epoch_starts():
    book = ShardBook.at_genesis(3)
    pool_shard = lambda e: e % 3  # noqa: E731 - the pool rotates
    needs = lambda e: ({pool_shard(e)}, {pool_shard(e + 1)}, {pool_shard(e)})  # noqa: E731
    events = []
    for epoch in range(0, 5):
        first = epoch * L + 1
        events += walk(book, max(0, first - 1), first, needs, catchup_blocks=3, gc_epochs=1)
        assert book.held(pool_shard(epoch), first)  # ready when the epoch starts
        events += walk(book, first, epoch_last(epoch), needs, catchup_blocks=3, gc_epochs=1)
    assert ("garbage_collected", 0) in events
    assert ("catchup_started", 0) in events  # shard 0 again for epoch 3, after it was GC'd


def test_validator_without_its_shard_must_catch_up_first():
    book = ShardBook(3, {0: 10}, {1, 2})  # holds shard 0 only
    events = book.advance(10, 11, {2}, {2}, {2}, 4, epoch_of, 5)  # now assigned shard 2
    assert ("catchup_started", 2) in events and not book.held(2, 11)
    for h in range(11, 14):
        book.advance(h, h + 1, {2}, {2}, {2}, 4, epoch_of, 5)
        assert not book.held(2, h + 1)
    assert ("caught_up", 2) in book.advance(14, 15, {2}, {2}, {2}, 4, epoch_of, 5)
    assert book.held(2, 15)


def test_persisted_form_round_trips():
    book = ShardBook(3, {0: 44}, {1})
    again = ShardBook.from_json(3, book.to_json())
    assert again.applied_to == {0: 44} and again.gc == {1}


def test_tracking_modes():
    assign = {"pool": 2, "x": 0}
    assert tracked_shards_for_epoch("AllShards", None, 0, 3, assign) == {0, 1, 2}
    assert tracked_shards_for_epoch("NoShards", None, 0, 3, assign) == set()
    assert tracked_shards_for_epoch("ShadowValidator", "pool", 0, 3, assign) == {2}
    assert tracked_shards_for_epoch("ShadowValidator", "gone", 0, 3, assign) == set()
    assert tracked_shards_for_epoch("Shards", ["s1.v3", {"shard_id": 2, "version": 3}], 0, 3, assign) == {1, 2}
    # schedule[epoch_height % len], and epoch index e has epoch height e + 1 (shard_tracker.rs)
    assert tracked_shards_for_epoch("Schedule", [[0], [1, 2]], 0, 3, assign) == {1, 2}
    assert tracked_shards_for_epoch("Schedule", [[0], [1, 2]], 3, 3, assign) == {0}
    assert tracked_shards_for_epoch("Schedule", [[0], [1], [2]], 1, 3, assign) == {2}
    assert len(tracked_shards_for_epoch("Accounts", ["a.near", "b.near"], 0, 3, assign)) in (1, 2)


def test_split_by_epoch_never_crosses_a_boundary():
    steps = list(split_by_epoch(5, 32, epoch_of, epoch_last))
    assert steps == [(5, 10), (10, 20), (20, 30), (30, 32)]
    assert list(split_by_epoch(7, 7, epoch_of, epoch_last)) == []
