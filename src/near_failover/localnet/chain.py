"""The emulated network's rules: epochs, duties, counters, kickouts, maintenance windows.

Pure logic, no I/O: the chain process (chain_server.py) drives it with a clock and the ledger,
and unit tests drive it directly. Everything is deterministic from a seed so a test run can be
replayed: the same seed, validator set and heights give the same duties.

Model (see neard-behaviour §5 for the rules it follows):
- heights start at genesis 0; epoch e holds heights [e*L+1, (e+1)*L] (genesis is in epoch 0);
- every validator is a block producer; one block producer per height, chosen by stake;
- each validator produces chunks for one shard per epoch, rotating every epoch, so a pool's
  shards change between epochs (what ShadowValidator tracking exists for, §1.1);
- per height and shard one chunk producer (by stake among that shard's producers) and a few
  chunk validators (by stake among all) that endorse;
- a missed block leaves its height empty (NEAR skips heights), the head stays on the last block;
- kickout at an epoch's end with the 80/80/70 thresholds, the 30 % stake exemption and the
  "keep someone" rule (§5), removal two epochs later, and the pool's ping bringing it back
  the epoch after that.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import base58

KIND_BLOCK = "block"
KIND_CHUNK = "chunk"
KIND_ENDORSEMENT = "endorsement"
KINDS = (KIND_BLOCK, KIND_CHUNK, KIND_ENDORSEMENT)

SHARD_LAYOUT_VERSION = 3
PROTOCOL_VERSION = 86
ZERO_HASH = base58.b58encode(bytes(32)).decode()
YOCTO = 10**24


def shard_uid(shard: int) -> str:
    """neard's string form of a ShardUId (neard-behaviour §1.1)."""
    return f"s{shard}.v{SHARD_LAYOUT_VERSION}"


def signing_message(height: int, kind: str, shard: int | None, account_id: str) -> bytes:
    """What a node signs for one duty; the chain verifies it against the on-chain key."""
    return f"near-failover-localnet|{height}|{kind}|{'-' if shard is None else shard}|{account_id}".encode()


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def _draw(*parts: object) -> int:
    """A uniform 256-bit draw: far larger than any total stake in yoctoNEAR (~1e30)."""
    return int.from_bytes(_digest(*parts), "big")


def hash_text(*parts: object) -> str:
    """A deterministic base58 CryptoHash for blocks, state roots and epoch ids."""
    return base58.b58encode(_digest(*parts)).decode()


@dataclass(frozen=True)
class Validator:
    account_id: str
    public_key: str
    stake: int  # yoctoNEAR


@dataclass(frozen=True)
class Thresholds:
    block: int = 80
    chunk: int = 80
    endorsement: int = 70
    max_kickout_stake_perc: int = 30


@dataclass(frozen=True)
class ChainParams:
    chain_id: str
    seed: str
    epoch_length: int
    num_shards: int
    validators: tuple[Validator, ...]
    external_accounts: frozenset[str]  # signed by our nodes; every other validator is simulated
    thresholds: Thresholds = Thresholds()
    endorsers_per_chunk: int = 3
    genesis_time_ns: int = 0

    def __post_init__(self) -> None:
        if self.epoch_length < 3:
            raise ValueError(f"epoch_length must be at least 3, got {self.epoch_length}")
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {self.num_shards}")
        if not self.validators:
            raise ValueError("a chain needs at least one validator")
        names = [v.account_id for v in self.validators]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate validator accounts in {names}")

    @property
    def shards(self) -> range:
        return range(self.num_shards)

    @staticmethod
    def from_genesis(genesis: dict) -> "ChainParams":
        """Read the chain's rules from the localnet's genesis.json (written by homes.py)."""
        emu = genesis.get("localnet", {})
        return ChainParams(
            chain_id=genesis["chain_id"],
            seed=emu["seed"],
            epoch_length=int(genesis["epoch_length"]),
            num_shards=len(genesis["shard_layout"]["V2"]["shard_ids"]),
            validators=tuple(Validator(v["account_id"], v["public_key"], int(v["amount"])) for v in genesis["validators"]),
            external_accounts=frozenset(emu.get("external_accounts", [])),
            thresholds=Thresholds(
                block=int(genesis["block_producer_kickout_threshold"]),
                chunk=int(genesis["chunk_producer_kickout_threshold"]),
                endorsement=int(genesis["chunk_validator_only_kickout_threshold"]),
                max_kickout_stake_perc=int(genesis.get("validator_max_kickout_stake_perc", 30)),
            ),
            endorsers_per_chunk=int(emu.get("endorsers_per_chunk", 3)),
            genesis_time_ns=int(emu.get("genesis_time_ns", 0)),
        )

    def epoch_of(self, height: int) -> int:
        return 0 if height <= 0 else (height - 1) // self.epoch_length

    def epoch_start(self, epoch: int) -> int:
        return epoch * self.epoch_length + 1

    def epoch_last(self, epoch: int) -> int:
        return (epoch + 1) * self.epoch_length


# --- duties -------------------------------------------------------------------------------


def _weighted_pick(seed: str, salt: tuple[object, ...], candidates: list[Validator]) -> Validator:
    total = sum(v.stake for v in candidates)
    point = _draw(seed, *salt) % total
    for v in candidates:
        if point < v.stake:
            return v
        point -= v.stake
    return candidates[-1]  # unreachable: point < total


def chunk_producer_shards(num_shards: int, epoch: int, validators: Iterable[Validator]) -> dict[str, int]:
    """Each validator's chunk-producer shard in an epoch: a rotation, so it moves every epoch."""
    ordered = sorted(v.account_id for v in validators)
    return {account: (i + epoch) % num_shards for i, account in enumerate(ordered)}


@dataclass(frozen=True)
class HeightDuties:
    height: int
    epoch: int
    block_producer: str
    chunk_producers: dict[int, str]
    endorsers: dict[int, tuple[str, ...]]

    def all(self) -> list[tuple[str, str, int | None]]:
        """(account, kind, shard) for every duty at this height."""
        out: list[tuple[str, str, int | None]] = [(self.block_producer, KIND_BLOCK, None)]
        out += [(a, KIND_CHUNK, s) for s, a in self.chunk_producers.items()]
        out += [(a, KIND_ENDORSEMENT, s) for s, accounts in self.endorsers.items() for a in accounts]
        return out

    def for_account(self, account_id: str) -> list[tuple[str, int | None]]:
        return [(kind, shard) for a, kind, shard in self.all() if a == account_id]

    def has_block_or_chunk(self, account_id: str) -> bool:
        return self.block_producer == account_id or account_id in self.chunk_producers.values()


def compute_duties(params: ChainParams, validators: tuple[Validator, ...], height: int) -> HeightDuties:
    """Deterministic duties for one height, weighted by stake (seeded hash of epoch and height)."""
    epoch = params.epoch_of(height)
    pool = sorted(validators, key=lambda v: v.account_id)
    block = _weighted_pick(params.seed, ("block", epoch, height), pool).account_id
    assignment = chunk_producer_shards(params.num_shards, epoch, pool)
    chunk: dict[int, str] = {}
    endorse: dict[int, tuple[str, ...]] = {}
    for shard in params.shards:
        producers = [v for v in pool if assignment[v.account_id] == shard]
        if producers:
            chunk[shard] = _weighted_pick(params.seed, ("chunk", epoch, height, shard), producers).account_id
        remaining = list(pool)
        chosen: list[str] = []
        for i in range(min(params.endorsers_per_chunk, len(pool))):
            v = _weighted_pick(params.seed, ("endorse", epoch, height, shard, i), remaining)
            remaining.remove(v)
            chosen.append(v.account_id)
        endorse[shard] = tuple(sorted(chosen))
    return HeightDuties(height, epoch, block, chunk, endorse)


# --- counters and kickout -----------------------------------------------------------------


@dataclass
class Counter:
    produced: int = 0
    expected: int = 0

    def add(self, produced: bool) -> None:
        self.expected += 1
        self.produced += int(produced)

    def as_dict(self) -> dict[str, int]:
        return {"produced": self.produced, "expected": self.expected}


@dataclass
class AccountStats:
    blocks: Counter = field(default_factory=Counter)
    chunks: dict[int, Counter] = field(default_factory=dict)
    endorsements: dict[int, Counter] = field(default_factory=dict)

    def total(self, kind: str) -> Counter:
        if kind == KIND_BLOCK:
            return Counter(self.blocks.produced, self.blocks.expected)
        per_shard = self.chunks if kind == KIND_CHUNK else self.endorsements
        return Counter(sum(c.produced for c in per_shard.values()), sum(c.expected for c in per_shard.values()))

    def record(self, kind: str, shard: int | None, produced: bool) -> None:
        if kind == KIND_BLOCK:
            self.blocks.add(produced)
        else:
            per_shard = self.chunks if kind == KIND_CHUNK else self.endorsements
            per_shard.setdefault(shard or 0, Counter()).add(produced)

    def online_ratio(self) -> float:
        """Average of the production ratios that apply (reward_calculator, neard-behaviour §5)."""
        ratios = [c.produced / c.expected for c in (self.total(k) for k in KINDS) if c.expected]
        return sum(ratios) / len(ratios) if ratios else 0.0


def _below(counter: Counter, threshold: int) -> bool:
    return counter.expected > 0 and counter.produced * 100 < threshold * counter.expected


def compute_kickouts(
    stats: dict[str, AccountStats], validators: tuple[Validator, ...], thresholds: Thresholds
) -> list[dict]:
    """`prev_epoch_kickout` entries for an epoch (compute_validators_to_reward_and_kickout, §5)."""
    reasons: dict[str, dict] = {}
    for v in validators:
        s = stats.get(v.account_id, AccountStats())
        blocks, chunks, endorsements = (s.total(k) for k in KINDS)
        if _below(blocks, thresholds.block):
            reasons[v.account_id] = {"NotEnoughBlocks": blocks.as_dict()}
        elif _below(chunks, thresholds.chunk):
            reasons[v.account_id] = {"NotEnoughChunks": chunks.as_dict()}
        elif blocks.expected == 0 and chunks.expected == 0 and _below(endorsements, thresholds.endorsement):
            reasons[v.account_id] = {"NotEnoughChunkEndorsements": endorsements.as_dict()}
    if not reasons:
        return []
    total_stake = sum(v.stake for v in validators)
    # The best validators by online ratio holding at least (100 - max_kickout_stake_perc) % of
    # the stake are exempt, so at most that share of stake leaves per epoch.
    keep_stake = total_stake * (100 - thresholds.max_kickout_stake_perc) // 100
    ranked = sorted(validators, key=lambda v: (-stats.get(v.account_id, AccountStats()).online_ratio(), -v.stake, v.account_id))
    exempt: set[str] = set()
    kept = 0
    for v in ranked:
        if kept >= keep_stake:
            break
        exempt.add(v.account_id)
        kept += v.stake
    kicked = {a: r for a, r in reasons.items() if a not in exempt}
    if len(kicked) == len(validators):  # everyone out: keep the top block producer
        top = max(validators, key=lambda v: (stats.get(v.account_id, AccountStats()).blocks.produced, v.stake))
        kicked.pop(top.account_id)
    return [{"account_id": a, "reason": kicked[a]} for a in sorted(kicked)]


# --- the chain ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    height: int
    hash: str
    prev_hash: str
    timestamp_ns: int
    author: str | None
    chunk_mask: tuple[bool, ...]

    def as_dict(self) -> dict:
        return {
            "height": self.height,
            "hash": self.hash,
            "prev_hash": self.prev_hash,
            "timestamp_ns": self.timestamp_ns,
            "author": self.author,
            "chunk_mask": list(self.chunk_mask),
        }


@dataclass(frozen=True)
class SlotResult:
    """What closing one height did: the block (None if its producer missed) and epoch news."""

    height: int
    block: Block | None
    epoch_ended: int | None
    kickouts: list[dict]


class Chain:
    """The network's state: heights, blocks, validator sets, counters per epoch.

    `close_slot` is the only thing that moves it: the chain process calls it once per block
    time with the external signatures that arrived in time for the open height.
    """

    KEEP_EPOCHS = 12

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        genesis = Block(0, hash_text(params.seed, "genesis"), ZERO_HASH, params.genesis_time_ns, None, (True,) * params.num_shards)
        self.genesis = genesis
        self.head = genesis
        self.tick = 0
        self.blocks: dict[int, Block] = {0: genesis}
        self.sets: dict[int, tuple[Validator, ...]] = {0: params.validators, 1: params.validators}
        self.stats: dict[int, dict[str, AccountStats]] = {0: {}}
        self.kickouts: dict[int, list[dict]] = {}
        self.epoch_ids: dict[int, str] = {0: ZERO_HASH, 1: ZERO_HASH}
        self._duties_cache: dict[int, HeightDuties] = {}

    # queries -------------------------------------------------------------------------------

    @property
    def open_height(self) -> int:
        return self.tick + 1

    @property
    def epoch(self) -> int:
        """The epoch of the last closed height (nodes name theirs by their head block)."""
        return self.params.epoch_of(self.tick)

    def validators_of(self, epoch: int) -> tuple[Validator, ...] | None:
        return self.sets.get(epoch)

    def validator(self, epoch: int, account_id: str) -> Validator | None:
        return next((v for v in self.sets.get(epoch, ()) if v.account_id == account_id), None)

    def duties(self, height: int) -> HeightDuties:
        cached = self._duties_cache.get(height)
        if cached is None:
            cached = compute_duties(self.params, self.sets[self.params.epoch_of(height)], height)
            if len(self._duties_cache) > 4 * self.params.epoch_length + 64:
                self._duties_cache.clear()
            self._duties_cache[height] = cached
        return cached

    def shard_assignment(self, epoch: int) -> dict[str, int]:
        return chunk_producer_shards(self.params.num_shards, epoch, self.sets.get(epoch, ()))

    def epoch_id_of(self, epoch: int) -> str | None:
        return self.epoch_ids.get(epoch)

    def epoch_by_id(self, epoch_id: str) -> int | None:
        """The newest epoch with this id (epochs 0 and 1 share the zero id, as in nearcore)."""
        found = [e for e, i in self.epoch_ids.items() if i == epoch_id and e in self.stats]
        return max(found) if found else None

    def maintenance_windows(self, account_id: str, after_height: int | None = None) -> list[tuple[int, int]]:
        """Future height ranges [start, end) of the head's epoch without block or chunk duties.

        Mirrors RPC `maintenance_windows` ("future windows for maintenance in current epoch").
        """
        head_height = self.head.height if after_height is None else after_height
        epoch = self.params.epoch_of(max(head_height, 1))
        last = self.params.epoch_last(epoch)
        windows: list[tuple[int, int]] = []
        start: int | None = None
        for h in range(head_height + 1, last + 1):
            busy = self.duties(h).has_block_or_chunk(account_id)
            if busy and start is not None:
                windows.append((start, h))
                start = None
            elif not busy and start is None:
                start = h
        if start is not None:
            windows.append((start, last + 1))
        return windows

    def account_stats(self, epoch: int, account_id: str) -> AccountStats:
        return self.stats.get(epoch, {}).get(account_id, AccountStats())

    # the only mutation ---------------------------------------------------------------------

    def close_slot(self, signed_in_time: set[tuple[str, str, int | None]], now_ns: int) -> SlotResult:
        """Close the open height: count every duty, make the block if its producer signed."""
        height = self.open_height
        epoch = self.params.epoch_of(height)
        duties = self.duties(height)
        stats = self.stats.setdefault(epoch, {})

        def did(account: str, kind: str, shard: int | None) -> bool:
            return account not in self.params.external_accounts or (account, kind, shard) in signed_in_time

        for account, kind, shard in duties.all():
            stats.setdefault(account, AccountStats()).record(kind, shard, did(account, kind, shard))
        block: Block | None = None
        if did(duties.block_producer, KIND_BLOCK, None):
            mask = tuple(did(duties.chunk_producers[s], KIND_CHUNK, s) if s in duties.chunk_producers else False for s in self.params.shards)
            block = Block(height, hash_text(self.params.seed, "block", height), self.head.hash, now_ns, duties.block_producer, mask)
            self.head = block
            self.blocks[height] = block
        self.tick = height
        ended: int | None = None
        kickouts: list[dict] = []
        if height == self.params.epoch_last(epoch):
            ended = epoch
            kickouts = self._end_epoch(epoch)
        self._prune()
        return SlotResult(height, block, ended, kickouts)

    def _end_epoch(self, epoch: int) -> list[dict]:
        kickouts = compute_kickouts(self.stats.get(epoch, {}), self.sets[epoch], self.params.thresholds)
        self.kickouts[epoch] = kickouts
        kicked = {k["account_id"] for k in kickouts}
        # Kicked in epoch e: out of the set of e+2; the pool's ping (a proposal every epoch,
        # as node-docs recommends) brings it back in e+3 (neard-behaviour §5).
        self.sets[epoch + 2] = tuple(v for v in self.params.validators if v.account_id not in kicked)
        # EpochId of epoch T is the hash of the last block of T-2.
        self.epoch_ids[epoch + 2] = self.head.hash
        self.stats.setdefault(epoch + 1, {})
        return kickouts

    def _prune(self) -> None:
        oldest_epoch = self.epoch - self.KEEP_EPOCHS
        if oldest_epoch <= 0:
            return
        for table in (self.sets, self.stats, self.kickouts, self.epoch_ids):
            for e in [e for e in table if e < oldest_epoch]:
                del table[e]
        first_kept = self.params.epoch_start(oldest_epoch)
        for h in [h for h in self.blocks if 0 < h < first_kept]:
            del self.blocks[h]

    def proposals(self, epoch: int) -> list[Validator]:
        """Pings of validators kicked out last epoch (they re-propose to come back)."""
        kicked = {k["account_id"] for k in self.kickouts.get(epoch - 1, [])}
        return [v for v in self.params.validators if v.account_id in kicked]

    # neard-shaped views --------------------------------------------------------------------

    def validators_view(self, epoch: int) -> dict | None:
        """RPC `validators` result (EpochValidatorInfo, neard-behaviour §4.4) for a known epoch."""
        current = self.sets.get(epoch)
        if current is None or epoch not in self.stats:
            return None
        assignment = self.shard_assignment(epoch)
        current_view = []
        for v in sorted(current, key=lambda v: (-v.stake, v.account_id)):
            s = self.account_stats(epoch, v.account_id)
            blocks, chunks, endorsements = (s.total(k) for k in KINDS)
            shards = [assignment[v.account_id]]
            endorsed = sorted(s.endorsements) or list(self.params.shards)
            current_view.append(
                {
                    "account_id": v.account_id,
                    "public_key": v.public_key,
                    "is_slashed": False,  # "currently there is no slashing" (§7)
                    "stake": str(v.stake),
                    "shards": shards,
                    "num_produced_blocks": blocks.produced,
                    "num_expected_blocks": blocks.expected,
                    "num_produced_chunks": chunks.produced,
                    "num_expected_chunks": chunks.expected,
                    "num_produced_chunks_per_shard": [s.chunks.get(sh, Counter()).produced for sh in shards],
                    "num_expected_chunks_per_shard": [s.chunks.get(sh, Counter()).expected for sh in shards],
                    "num_produced_endorsements": endorsements.produced,
                    "num_expected_endorsements": endorsements.expected,
                    "num_produced_endorsements_per_shard": [s.endorsements.get(sh, Counter()).produced for sh in endorsed],
                    "num_expected_endorsements_per_shard": [s.endorsements.get(sh, Counter()).expected for sh in endorsed],
                    "shards_endorsed": endorsed,
                }
            )
        nxt = self.sets.get(epoch + 1, ())
        next_assignment = self.shard_assignment(epoch + 1)
        return {
            "current_validators": current_view,
            "next_validators": [
                {"account_id": v.account_id, "public_key": v.public_key, "stake": str(v.stake), "shards": [next_assignment[v.account_id]]}
                for v in sorted(nxt, key=lambda v: (-v.stake, v.account_id))
            ],
            "current_fishermen": [],
            "next_fishermen": [],
            "current_proposals": [
                {"account_id": v.account_id, "public_key": v.public_key, "stake": str(v.stake), "validator_stake_struct_version": "V1"}
                for v in self.proposals(epoch)
            ],
            "prev_epoch_kickout": list(self.kickouts.get(epoch - 1, [])),
            "epoch_start_height": self.params.epoch_start(epoch),
            "epoch_height": epoch + 1,
            "validator_reward_paid_prev_epoch": {},
        }

    def epoch_summary(self, epoch: int) -> dict | None:
        """What a node needs about an epoch: id, bounds, validator keys and shard assignment."""
        current = self.sets.get(epoch)
        if current is None:
            return None
        assignment = self.shard_assignment(epoch)
        nxt = self.sets.get(epoch + 1)
        next_assignment = self.shard_assignment(epoch + 1) if nxt is not None else {}
        return {
            "epoch": epoch,
            "epoch_id": self.epoch_ids.get(epoch),
            "epoch_height": epoch + 1,
            "start_height": self.params.epoch_start(epoch),
            "last_height": self.params.epoch_last(epoch),
            "validators": [
                {"account_id": v.account_id, "public_key": v.public_key, "stake": str(v.stake), "shards": [assignment[v.account_id]]}
                for v in current
            ],
            "next_validators": None
            if nxt is None
            else [{"account_id": v.account_id, "public_key": v.public_key, "stake": str(v.stake), "shards": [next_assignment[v.account_id]]} for v in nxt],
        }
