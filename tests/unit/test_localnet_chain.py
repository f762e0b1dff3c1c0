"""The emulated chain's rules without processes: duties, counters, kickout, windows, ledger."""

from __future__ import annotations

from collections import Counter as Tally

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from near_failover.localnet.chain import (
    KIND_BLOCK,
    KIND_CHUNK,
    KIND_ENDORSEMENT,
    ZERO_HASH,
    AccountStats,
    Chain,
    ChainParams,
    Thresholds,
    Validator,
    chunk_producer_shards,
    compute_duties,
    compute_kickouts,
    signing_message,
)
from near_failover.localnet.homes import genesis_document
from near_failover.localnet.ledger import Ledger, Signer
from near_failover.neard.keys import KeyFile, public_key_of

POOL = "pool.poolv1.near"
SIMS = tuple(f"sim-{i}.poolv1.near" for i in range(1, 6))


def params(seed: str = "seed-1", epoch_length: int = 20, pool_stake: int = 200, external: bool = True) -> ChainParams:
    validators = (Validator(POOL, "ed25519:pool", pool_stake),) + tuple(Validator(s, f"ed25519:{s}", 160) for s in SIMS)
    return ChainParams("localnet", seed, epoch_length, 3, validators, frozenset({POOL} if external else ()))


def run(chain: Chain, heights: int, pool_signs: bool) -> None:
    for _ in range(heights):
        h = chain.open_height
        signed = {(POOL, kind, shard) for kind, shard in chain.duties(h).for_account(POOL)} if pool_signs else set()
        chain.close_slot(signed, now_ns=h)


def test_duties_are_deterministic_per_seed_and_cover_every_shard():
    p = params()
    for h in range(1, 60):
        a, b = compute_duties(p, p.validators, h), compute_duties(p, p.validators, h)
        assert a == b
        assert set(a.chunk_producers) == {0, 1, 2}
        assert all(len(e) == 3 and len(set(e)) == 3 for e in a.endorsers.values())
    other = params(seed="seed-2")
    differ = sum(compute_duties(p, p.validators, h).block_producer != compute_duties(other, other.validators, h).block_producer for h in range(1, 200))
    assert differ > 50


def test_block_duties_follow_stake():
    p = params()
    tally = Tally(compute_duties(p, p.validators, h).block_producer for h in range(1, 6001))
    # pool has 200 of 1000 stake; each simulated validator 160
    assert 0.17 < tally[POOL] / 6000 < 0.23
    for sim in SIMS:
        assert 0.13 < tally[sim] / 6000 < 0.19


def test_every_validators_chunk_shard_changes_between_epochs():
    p = params(epoch_length=10)
    for epoch in range(0, 6):
        now, nxt = chunk_producer_shards(3, epoch, p.validators), chunk_producer_shards(3, epoch + 1, p.validators)
        assert all(now[a] != nxt[a] for a in now)
        assert sorted(Tally(now.values()).values()) == [2, 2, 2]


def test_missed_pool_duties_count_as_expected_not_produced_and_skip_its_blocks():
    chain = Chain(params())
    run(chain, 10, pool_signs=True)
    stats = chain.account_stats(0, POOL)
    assert stats.total(KIND_BLOCK).produced == stats.total(KIND_BLOCK).expected
    before = {k: stats.total(k).as_dict() for k in (KIND_BLOCK, KIND_CHUNK, KIND_ENDORSEMENT)}
    skipped = 0
    for _ in range(9):
        h = chain.open_height
        head_before = chain.head.height
        res = chain.close_slot(set(), now_ns=h)
        if chain.duties(h).block_producer == POOL:
            assert res.block is None and chain.head.height == head_before  # NEAR skips the height
            skipped += 1
        else:
            assert res.block is not None and chain.head.height == h
    after = chain.account_stats(0, POOL)
    for kind in (KIND_BLOCK, KIND_CHUNK, KIND_ENDORSEMENT):
        assert after.total(kind).produced == before[kind]["produced"]
    assert after.total(KIND_ENDORSEMENT).expected > before[KIND_ENDORSEMENT]["expected"]
    assert after.total(KIND_BLOCK).expected - before[KIND_BLOCK]["expected"] == skipped
    sim_stats = chain.account_stats(0, SIMS[0])
    for kind in (KIND_BLOCK, KIND_CHUNK, KIND_ENDORSEMENT):
        assert sim_stats.total(kind).produced == sim_stats.total(kind).expected


def test_an_epoch_below_threshold_kicks_the_pool_out_two_epochs_later_and_the_ping_brings_it_back():
    chain = Chain(params(epoch_length=20))
    run(chain, 20, pool_signs=False)  # all of epoch 0 without the pool
    assert chain.tick == 20
    [kick] = chain.kickouts[0]
    assert kick["account_id"] == POOL
    assert "NotEnoughBlocks" in kick["reason"] or "NotEnoughChunks" in kick["reason"]
    view = chain.validators_view(1)
    assert view["prev_epoch_kickout"] == [kick]
    assert POOL in {v["account_id"] for v in view["current_validators"]}  # still in epoch 1
    assert POOL not in {v.account_id for v in chain.sets[2]}
    assert [p["account_id"] for p in view["current_proposals"]] == [POOL]
    run(chain, 20, pool_signs=True)
    assert POOL not in {v.account_id for v in chain.validators_of(2)}
    assert POOL in {v.account_id for v in chain.validators_of(3)}
    run(chain, 20, pool_signs=True)  # epoch 2: no duties for the pool at all
    assert chain.account_stats(2, POOL).total(KIND_BLOCK).expected == 0


def test_kickout_thresholds_and_reasons():
    vals = tuple(Validator(name, "k", 100) for name in "abcdefghij")  # 2 of 10 may leave (<= 30 %)
    stats = {v.account_id: AccountStats() for v in vals}
    for _ in range(10):
        for v in vals:
            stats[v.account_id].record(KIND_BLOCK, None, True)
            stats[v.account_id].record(KIND_CHUNK, 0, True)
    stats["a"].blocks.produced = 7  # 70 % < 80 %
    stats["b"].chunks[0].produced = 8  # exactly 80 %: kept
    kicks = compute_kickouts(stats, vals, Thresholds())
    assert kicks == [{"account_id": "a", "reason": {"NotEnoughBlocks": {"produced": 7, "expected": 10}}}]
    stats["b"].chunks[0].produced = 7
    kicks = compute_kickouts(stats, vals, Thresholds())
    assert {k["account_id"] for k in kicks} == {"a", "b"}
    assert [k["reason"] for k in kicks if k["account_id"] == "b"] == [{"NotEnoughChunks": {"produced": 7, "expected": 10}}]


def test_at_most_thirty_percent_of_stake_is_kicked_out():
    big = (Validator("pool", "k", 400), Validator("s1", "k", 200), Validator("s2", "k", 200), Validator("s3", "k", 200))
    stats = {v.account_id: AccountStats() for v in big}
    for _ in range(10):
        for v in big:
            stats[v.account_id].record(KIND_BLOCK, None, v.account_id != "pool")
    # the pool holds 40 %: the others (60 %) are not enough to keep 70 %, so the pool is exempt
    assert compute_kickouts(stats, big, Thresholds()) == []
    small = (Validator("pool", "k", 200),) + big[1:]
    stats_small = {v.account_id: stats[v.account_id] for v in small}
    assert [k["account_id"] for k in compute_kickouts(stats_small, small, Thresholds())] == ["pool"]


def test_maintenance_windows_are_the_future_heights_without_block_or_chunk_duties():
    chain = Chain(params(epoch_length=40))
    run(chain, 5, pool_signs=True)
    windows = chain.maintenance_windows(POOL)
    head = chain.head.height
    free = {h for s, e in windows for h in range(s, e)}
    for h in range(head + 1, 41):
        assert (h in free) == (not chain.duties(h).has_block_or_chunk(POOL))
    assert all(s < e <= 41 for s, e in windows)
    assert all(windows[i][1] < windows[i + 1][0] for i in range(len(windows) - 1))  # maximal ranges


def test_epoch_ids_follow_nearcore():
    chain = Chain(params(epoch_length=10))
    run(chain, 30, pool_signs=True)
    assert chain.epoch_ids[0] == chain.epoch_ids[1] == ZERO_HASH
    assert chain.epoch_ids[2] == chain.blocks[10].hash
    assert chain.epoch_ids[3] == chain.blocks[20].hash


def test_genesis_document_round_trips_into_params():
    key = KeyFile.generate(POOL)
    genesis = genesis_document("mainnet", "s", 50, key.public_key, 123)
    p = ChainParams.from_genesis(genesis)
    assert p.chain_id == "mainnet" and p.epoch_length == 50 and p.num_shards == 3
    assert p.external_accounts == {POOL}
    assert (p.thresholds.block, p.thresholds.chunk, p.thresholds.endorsement) == (80, 80, 70)
    pool = next(v for v in p.validators if v.account_id == POOL)
    assert pool.public_key == key.public_key and pool.stake * 5 == sum(v.stake for v in p.validators)


def test_signatures_verify_only_with_the_signing_key():
    key, other = KeyFile.generate(POOL), KeyFile.generate(POOL)
    message = signing_message(12, KIND_CHUNK, 1, POOL)
    sig = key.sign(message)
    Ed25519PublicKey.from_public_bytes(public_key_of(key.public_key)).verify(sig, message)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(public_key_of(other.public_key)).verify(sig, message)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(public_key_of(key.public_key)).verify(sig, signing_message(13, KIND_CHUNK, 1, POOL))


def test_ledger_flags_two_nodes_on_one_slot_and_only_that():
    ledger = Ledger()
    a, b, c = (Signer(f"proc-{n}", f"peer-{n}", f"val-{n}", i) for i, n in enumerate("abc"))
    assert ledger.record(POOL, 10, KIND_BLOCK, None, a, 9, True) is None
    assert ledger.record(POOL, 10, KIND_BLOCK, None, a, 10, False) is None  # same process again
    assert ledger.record(POOL, 10, KIND_CHUNK, 0, b, 9, True) is None  # another kind
    assert ledger.record(POOL, 11, KIND_BLOCK, None, b, 10, True) is None  # another height
    event = ledger.record(POOL, 10, KIND_BLOCK, None, b, 10, False)
    assert event is not None and event.peer_ids == ["peer-a", "peer-b"]
    ledger.record(POOL, 10, KIND_BLOCK, None, c, 11, False)
    assert len(ledger.double_signs) == 1 and ledger.double_signs[0].peer_ids == ["peer-a", "peer-b", "peer-c"]

    assert ledger.double_signs[0].as_dict({"peer-a": "val-a"})["nodes"][0] == {"peer_id": "peer-a", "name": "val-a", "pid": 0}
    assert ledger.signed_in_time(10) == {(POOL, KIND_BLOCK, None), (POOL, KIND_CHUNK, 0)}
    ledger.keep_heights = 5
    ledger.prune(100)
    assert ledger.slots == {} and len(ledger.double_signs) == 1  # events are kept


def test_two_processes_sharing_a_node_key_are_two_signers():
    """The ledger tells signers apart by process: one node_key.json copied to two nodes hides nothing."""
    ledger = Ledger()
    first, second = Signer("proc-1", "ed25519:same", "val-a", 100), Signer("proc-2", "ed25519:same", "val-b", 200)
    assert ledger.record(POOL, 10, KIND_BLOCK, None, first, 9, True) is None
    event = ledger.record(POOL, 10, KIND_BLOCK, None, second, 10, True)
    assert event is not None
    assert [n["name"] for n in event.as_dict({})["nodes"]] == ["val-a", "val-b"]
    assert {n["pid"] for n in event.as_dict({})["nodes"]} == {100, 200}
