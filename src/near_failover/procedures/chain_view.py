"""What the chain says about the pool: production counters, and the chain-silence fence proof.

Pure logic over snapshots of the `validators` RPC, so the rules can be tested without a chain.
The chain is the only witness that cannot lie about an unreachable primary: if the pool's
produced counters stand still while its expected counters grow, nobody is signing for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# neard-behaviour §5: kickout below 80 % blocks, 80 % chunks, 70 % endorsements (chunk-validator
# only); rewards zero below 90 % online, full from 99 %.
KICKOUT_THRESHOLDS = {"blocks": 80, "chunks": 80, "endorsements": 70}
REWARD_MIN, REWARD_FULL = 90, 99


@dataclass(frozen=True)
class Production:
    """The pool's epoch counters as one node sees them at one head height."""

    height: int
    epoch_start_height: int
    blocks_produced: int
    blocks_expected: int
    chunks_produced: int
    chunks_expected: int
    endorsements_produced: int
    endorsements_expected: int

    @property
    def produced(self) -> int:
        return self.blocks_produced + self.chunks_produced + self.endorsements_produced

    @property
    def expected(self) -> int:
        return self.blocks_expected + self.chunks_expected + self.endorsements_expected

    def missed(self) -> dict[str, int]:
        return {
            kind: getattr(self, f"{kind}_expected") - getattr(self, f"{kind}_produced")
            for kind in ("blocks", "chunks", "endorsements")
        }

    def minus(self, earlier: "Production") -> dict[str, int]:
        """Duties missed between two snapshots of one epoch (kind -> count)."""
        now, then = self.missed(), earlier.missed()
        return {kind: now[kind] - then[kind] for kind in now}

    def percentages(self) -> dict[str, float | None]:
        return {
            kind: (100.0 * getattr(self, f"{kind}_produced") / expected if (expected := getattr(self, f"{kind}_expected")) else None)
            for kind in ("blocks", "chunks", "endorsements")
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def production_of(validators: Any, account_id: str, height: int) -> Production | None:
    """The pool's counters from a `validators` response, or None if it is not a current validator."""
    for v in validators.current_validators:
        if v.account_id == account_id:
            return Production(
                height=height,
                epoch_start_height=validators.epoch_start_height,
                blocks_produced=v.num_produced_blocks,
                blocks_expected=v.num_expected_blocks,
                chunks_produced=v.num_produced_chunks,
                chunks_expected=v.num_expected_chunks,
                endorsements_produced=v.num_produced_endorsements,
                endorsements_expected=v.num_expected_endorsements,
            )
    return None


def on_chain_public_key(validators: Any, account_id: str) -> str | None:
    """The key the chain expects the pool to sign with (current, else next epoch)."""
    for group in (validators.current_validators, validators.next_validators):
        for v in group:
            if v.account_id == account_id:
                return v.public_key
    return None


@dataclass
class SilenceWatch:
    """Accumulates snapshots until they prove silence, or show the pool still signing.

    Silence is proven when, within one epoch, the head advanced at least `blocks` heights past
    the first snapshot, the pool's expected duties grew (it had work to do), and its produced
    counters did not move. An epoch change restarts the watch (counters reset at epoch start).
    """

    blocks: int
    first: Production | None = None
    last: Production | None = None

    def add(self, snap: Production) -> str:
        """Returns "signing", "silent" or "waiting"."""
        if self.first is None or snap.epoch_start_height != self.first.epoch_start_height:
            self.first = snap
        self.last = snap
        if snap.produced > self.first.produced:
            return "signing"
        if snap.height - self.first.height >= self.blocks and snap.expected > self.first.expected:
            return "silent"
        return "waiting"

    def evidence(self) -> dict[str, Any]:
        return {
            "from": self.first.to_json() if self.first else None,
            "to": self.last.to_json() if self.last else None,
            "blocks_required": self.blocks,
        }
