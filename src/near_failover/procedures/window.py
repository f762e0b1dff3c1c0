"""How long a duty gap --in-window needs: the old signer's stop plus neard applying the SIGHUP.

Pure: the stop times come from the journal (earlier fences of that node), so the figure is the
node's own, not a guess; with none journaled a conservative default stands in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# neard applies a SIGHUP'd key within about a second: the ConfigUpdater is polled on the client
# actor's loop at least once per second (chain/client/src/client_actor.rs, config_updater.rs).
RELOAD_SECONDS = 1.0
# No stop of the node journaled yet: neard's graceful stop flushes and closes RocksDB and warns
# that it "may take a few minutes" (neard/src/cli.rs); operators see tens of seconds.
DEFAULT_STOP_SECONDS = 30.0
# How many of the node's latest journaled stops count; the longest of them is used.
STOP_HISTORY = 5


@dataclass(frozen=True)
class GapNeed:
    """The duty gap a hot swap needs, with the figures it is made of."""

    node: str
    stop_seconds: float
    stops_measured: int  # 0: the default stands in
    reload_seconds: float
    block_time: float

    @property
    def blocks(self) -> int:
        """Blocks from the fence's start until the new signer signs, plus one of margin."""
        return math.ceil((self.stop_seconds + self.reload_seconds) / self.block_time) + 1

    def describe(self) -> str:
        stop = (
            f"{self.node}'s stop {self.stop_seconds:.1f}s (longest of its last {self.stops_measured} journaled)"
            if self.stops_measured
            else f"{self.node}'s stop {self.stop_seconds:.0f}s (default: no stop of {self.node} journaled yet)"
        )
        return f"{self.blocks} blocks = {stop} + reload {self.reload_seconds:.1f}s, at {self.block_time:.2f}s per block, + 1"

    def to_json(self) -> dict[str, object]:
        return {
            "blocks_needed": self.blocks,
            "stop_seconds": round(self.stop_seconds, 3),
            "stops_measured": self.stops_measured,
            "reload_seconds": self.reload_seconds,
            "block_time": round(self.block_time, 3),
        }


def gap_need(node: str, stop_times: list[float], block_time: float) -> GapNeed:
    """The gap for a hot swap away from `node`, from its journaled stop times (latest first)."""
    recent = stop_times[:STOP_HISTORY]
    stop = max(recent) if recent else DEFAULT_STOP_SECONDS
    return GapNeed(node, stop, len(recent), RELOAD_SECONDS, block_time)
