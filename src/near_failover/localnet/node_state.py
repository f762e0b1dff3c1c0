"""What an emulated neard keeps on disk, and how its shard state follows the chain.

Pure logic: node.py feeds it heights and the shards the node cares about; tests drive it
directly. The rules come from neard-behaviour:
- a node cares about the shards of its tracking config plus its own validator shards, for the
  current and the next epoch (§1.1);
- a shard needed next epoch that the node lacks is fetched during the current epoch (state
  sync + catch-up), which is how a ShadowValidator standby follows its pool's reassignments;
  a validator that lacks one of its current shards catches up the same way before it can
  produce chunks for it (§1.1, §6);
- garbage collection deletes the state of shards the node no longer cares about once they
  fall out of the GC window (`gc_num_epochs_to_keep` epochs, §6);
- a shard the node's config tracks in the current epoch whose state was garbage collected has
  no way back: neard has no "sync missing shards" (#14207), so such a node (a former validator
  restarted with AllShards) never finishes syncing (§6, failover guide's first note);
- memtries load at start for every cared-about shard held, and after catch-up (§6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

DATA_FORMAT = 1


@dataclass
class ShardBook:
    """State of each shard on this node: the height it is applied to, or garbage collected."""

    num_shards: int
    applied_to: dict[int, int] = field(default_factory=dict)  # shard -> height of its state
    gc: set[int] = field(default_factory=set)  # shards whose state GC deleted
    catching_up: dict[int, int] = field(default_factory=dict)  # shard -> height it completes at
    syncing_shards: set[int] = field(default_factory=set)  # catch-ups that count as "syncing"
    missing: set[int] = field(default_factory=set)  # needed now, unrecoverable: stuck

    @staticmethod
    def at_genesis(num_shards: int) -> "ShardBook":
        """A fresh home holds every shard's genesis state (neard init writes it)."""
        return ShardBook(num_shards, {s: 0 for s in range(num_shards)})

    def held(self, shard: int, head: int) -> bool:
        return self.applied_to.get(shard) == head and shard not in self.catching_up

    def held_shards(self, head: int) -> set[int]:
        return {s for s in range(self.num_shards) if self.held(s, head)}

    @property
    def stuck(self) -> bool:
        return bool(self.missing)

    def advance(
        self,
        prev_head: int,
        new_head: int,
        needed_now: set[int],
        needed_next: set[int],
        may_catch_up_now: set[int],
        catchup_blocks: int,
        epoch_of: Callable[[int], int],
        gc_epochs: int,
    ) -> list[tuple[str, int]]:
        """Move from `prev_head` to `new_head` (both in one epoch); return (event, shard) pairs.

        `may_catch_up_now`: current-epoch shards the node may fetch (its validator shards and a
        ShadowValidator's shards); other current-epoch shards it lacks are a sync problem.
        """
        events: list[tuple[str, int]] = []
        needed = needed_now | needed_next
        for s in range(self.num_shards):
            if s in self.catching_up:
                if new_head >= self.catching_up[s]:
                    del self.catching_up[s]
                    self.syncing_shards.discard(s)
                    self.applied_to[s] = new_head
                    self.gc.discard(s)
                    events.append(("caught_up", s))
                elif s not in needed:
                    del self.catching_up[s]
                    self.syncing_shards.discard(s)
                continue
            if self.applied_to.get(s) == prev_head and s in needed:
                self.applied_to[s] = new_head
                continue
            if s not in needed:
                continue
            # Needed but not held at prev_head.
            if s in needed_next and s not in needed_now or s in may_catch_up_now:
                self.catching_up[s] = new_head + catchup_blocks
                events.append(("catchup_started", s))
            elif s in self.gc or s not in self.applied_to:
                if s not in self.missing:
                    self.missing.add(s)
                    events.append(("missing", s))
            else:  # stale but still on disk: block-sync it forward, as syncing
                self.catching_up[s] = new_head + catchup_blocks
                self.syncing_shards.add(s)
                events.append(("stale_sync_started", s))
        new_epoch = epoch_of(new_head)
        for s, height in list(self.applied_to.items()):
            if s not in needed and s not in self.catching_up and new_epoch - epoch_of(height) >= gc_epochs:
                del self.applied_to[s]
                self.gc.add(s)
                events.append(("garbage_collected", s))
        return events

    def to_json(self) -> dict:
        return {
            "applied_to": {str(s): h for s, h in sorted(self.applied_to.items())},
            "gc": sorted(self.gc),
        }

    @staticmethod
    def from_json(num_shards: int, data: dict) -> "ShardBook":
        return ShardBook(
            num_shards,
            {int(s): int(h) for s, h in data.get("applied_to", {}).items()},
            {int(s) for s in data.get("gc", [])},
        )


def split_by_epoch(start: int, end: int, epoch_of: Callable[[int], int], epoch_last: Callable[[int], int]) -> Iterable[tuple[int, int]]:
    """(from, to) steps from `start` to `end`, never crossing an epoch boundary inside a step."""
    cur = start
    while cur < end:
        stop = min(end, epoch_last(epoch_of(cur + 1)))
        yield cur, stop
        cur = stop


def shard_of_account(account_id: str, num_shards: int) -> int:
    """Which shard holds an account (for `Accounts` tracking); a fixed hash layout here."""
    import hashlib

    return int.from_bytes(hashlib.sha256(account_id.encode()).digest()[:4], "big") % num_shards


def tracked_shards_for_epoch(
    mode: str,
    value: object,
    epoch: int,
    num_shards: int,
    assignment: dict[str, int],
) -> set[int]:
    """Shards a tracking config asks for in one epoch (§1.1), without the validator's own."""
    if mode == "AllShards":
        return set(range(num_shards))
    if mode == "NoShards":
        return set()
    if mode == "ShadowValidator":
        return {assignment[value]} if isinstance(value, str) and value in assignment else set()
    if mode == "Schedule":
        # schedule[epoch_height % len] (chain/epoch-manager/src/shard_tracker.rs); the epoch
        # height of epoch index e is e + 1 (the first epoch after genesis has height 1). An empty
        # schedule never gets here: neard asserts it is not empty, the node panics at start.
        schedule = value if isinstance(value, list) else []
        return {int(s) for s in schedule[(epoch + 1) % len(schedule)] if int(s) < num_shards} if schedule else set()
    if mode == "Shards":
        out = set()
        for uid in value if isinstance(value, list) else []:
            shard = uid.get("shard_id") if isinstance(uid, dict) else int(str(uid)[1:].split(".")[0])
            if shard is not None and int(shard) < num_shards:
                out.add(int(shard))
        return out
    if mode == "Accounts":
        return {shard_of_account(a, num_shards) for a in value} if isinstance(value, list) else set()
    return set()
