"""The ledger of every signature our nodes send, and the double-sign detector.

A double sign is two different signing processes signing one account's duty at one height,
kind and shard: the conflicting blocks, chunks and approvals of neard-behaviour §7. Signers are
told apart by the process that signed, not by node_key.json: two nodes sharing a node key (a
copy-paste the failover guide warns about) are two signers with one peer id, and their
conflicting signatures are double signs all the same. A neard process never signs a slot twice
(it stores what it signs first), so one process is one honest signer. neard does not slash for it today, but maintainers call it malicious and
may slash later, so the localnet treats it as the one outcome a failover must never cause.

Pure bookkeeping: verification of the ed25519 signature happens in the chain process before
`record` is called, with the account's on-chain key.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

SlotKey = tuple[str, int, str, "int | None"]  # account, height, kind, shard


@dataclass(frozen=True)
class Signer:
    """One signing process: its random process id, its node's peer id and name, its pid."""

    process: str
    peer_id: str
    name: str
    pid: int | None = None


@dataclass
class DoubleSign:
    account_id: str
    height: int
    kind: str
    shard: int | None
    signers: list[Signer]
    detected_at: int  # the chain's height when the second process's signature arrived

    @property
    def peer_ids(self) -> list[str]:
        return [s.peer_id for s in self.signers]

    def as_dict(self, names: dict[str, str]) -> dict:
        return {
            "account_id": self.account_id,
            "height": self.height,
            "kind": self.kind,
            "shard": self.shard,
            "detected_at": self.detected_at,
            "nodes": [{"peer_id": s.peer_id, "name": s.name or names.get(s.peer_id, s.peer_id), "pid": s.pid} for s in self.signers],
        }


@dataclass
class SignerStats:
    signed: int = 0
    in_time: int = 0
    late: int = 0
    first_height: int | None = None
    last_height: int | None = None


@dataclass
class Ledger:
    """Signatures per slot (recent window), double signs (kept), rejections (counted)."""

    keep_heights: int = 4000
    slots: dict[SlotKey, dict[str, Signer]] = field(default_factory=dict)  # -> process -> signer
    in_time: dict[int, set[tuple[str, str, int | None]]] = field(default_factory=lambda: defaultdict(set))
    double_signs: list[DoubleSign] = field(default_factory=list)
    _double_by_slot: dict[SlotKey, DoubleSign] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    signers: dict[str, dict[str, SignerStats]] = field(default_factory=lambda: defaultdict(dict))
    total: int = 0

    def reject(self, account_id: str, reason: str) -> None:
        self.rejected[account_id][reason] += 1

    def record(self, account_id: str, height: int, kind: str, shard: int | None, signer: Signer, tick: int, in_time: bool) -> DoubleSign | None:
        """Record a verified signature; return the double sign it creates or extends, if any."""
        self.total += 1
        key: SlotKey = (account_id, height, kind, shard)
        processes = self.slots.setdefault(key, {})
        processes.setdefault(signer.process, signer)
        stats = self.signers[account_id].setdefault(signer.peer_id, SignerStats())
        stats.signed += 1
        stats.in_time += int(in_time)
        stats.late += int(not in_time)
        stats.first_height = height if stats.first_height is None else min(stats.first_height, height)
        stats.last_height = height if stats.last_height is None else max(stats.last_height, height)
        if in_time:
            self.in_time[height].add((account_id, kind, shard))
        if len(processes) < 2:
            return None
        event = self._double_by_slot.get(key)
        if event is None:
            event = DoubleSign(account_id, height, kind, shard, list(processes.values()), tick)
            self._double_by_slot[key] = event
            self.double_signs.append(event)
        elif signer not in event.signers:
            event.signers.append(signer)
        return event

    def signed_in_time(self, height: int) -> set[tuple[str, str, int | None]]:
        return self.in_time.get(height, set())

    def prune(self, current_height: int) -> None:
        """Forget slots far behind the head: a late signature that old is not accepted anyway."""
        floor = current_height - self.keep_heights
        if floor <= 0:
            return
        for key in [k for k in self.slots if k[1] < floor]:
            del self.slots[key]
            self._double_by_slot.pop(key, None)
        for h in [h for h in self.in_time if h < floor]:
            del self.in_time[h]

    def oldest_height(self) -> int | None:
        return min((k[1] for k in self.slots), default=None)
