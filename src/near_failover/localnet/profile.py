"""How long an emulated neard takes for what a failover waits on: the `fast` and `mainnet` profiles.

`fast` keeps tests and the demo quick. `mainnet` uses figures from nearcore and from operators'
reports, each with its source below. Every figure can be overridden (`localnet up --memtrie-load
--stop-time --reload-delay --state-sync --routing-lag`), so tests run the mainnet profile's
behaviour with scaled-down times. `localnet up` writes the result into each home's
emulator.json (what the node reads) and into localnet.json (the routing lag, which the chain
process applies).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

PROFILES = ("fast", "mainnet")


@dataclass(frozen=True)
class Timings:
    """Seconds (or blocks per second) of the emulated neard's slow operations."""

    profile: str
    # Memtrie load at start, per shard the node loads. Shards load in parallel in neard, but they
    # share the disk and the CPU; the issue's model (and operators' restarts) is per shard times
    # the shards loaded. `memtrie_load_total`, when set, replaces it: the whole load per start.
    memtrie_load_per_shard: float
    memtrie_load_total: float | None
    # SIGTERM to exit: neard stops its actors at once, then flushes and closes RocksDB.
    stop_time: float
    # SIGHUP to the new signer in use: the ConfigUpdater is polled on the client actor's loop.
    reload_delay: float
    # Blocks applied per second when the node is behind (after a restart or a pause).
    sync_blocks_per_second: float
    # State sync + catch-up of one shard the node starts to care about.
    state_sync: float
    # After the key moves to another peer, how long before state witnesses reach the new peer
    # (its endorsements are lost meanwhile); applied by the chain process.
    routing_lag: float
    # Share of chunks a validator without memtries misses (it falls behind applying chunks).
    chunk_miss_share_without_memtries: float = 0.5

    def memtrie_load_seconds(self, shards: int) -> float:
        if self.memtrie_load_total is not None:
            return self.memtrie_load_total
        return self.memtrie_load_per_shard * shards

    def state_sync_blocks(self, block_time: float) -> int:
        """The state sync in the chain's blocks (the shard book counts heights)."""
        return max(1, math.ceil(self.state_sync / max(block_time, 1e-3) - 1e-9))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any], default: "Timings") -> "Timings":
        known = {k: v for k, v in data.items() if k in default.to_json()}
        return replace(default, **known)


def fast(block_time: float) -> Timings:
    """Quick enough for tests and the demo; the state sync stays 5 blocks, as it always was."""
    return Timings(
        profile="fast",
        memtrie_load_per_shard=1.0,
        memtrie_load_total=1.0,
        stop_time=0.1,
        reload_delay=0.1,
        sync_blocks_per_second=200.0,
        state_sync=5 * block_time,
        routing_lag=0.0,
    )


def mainnet() -> Timings:
    """Figures for a mainnet validator, with their sources."""
    return Timings(
        profile="mainnet",
        # nearcore docs/architecture/how/dynamic_resharding.md: loading one shard's memtrie takes
        # about 30 s; nearcore issue #11411 measured 24.7 s for s0.v3 with parallel loading, #10877
        # 55 s and 207 s per shard before optimisation; the StoreConfig comment in
        # core/store/src/config.rs says memtries "take several minutes on startup".
        memtrie_load_per_shard=30.0,
        memtrie_load_total=None,
        # neard/src/cli.rs warns "stopping, this may take a few minutes" and waits for RocksDB to
        # shut down gracefully; operators see tens of seconds on a validator's store (inference:
        # flushing memtables of a several-hundred-GB RocksDB).
        stop_time=20.0,
        # chain/client/src/config_updater.rs is polled by ClientActor::check_triggers before every
        # actor message and at least once per second (chain/client/src/client_actor.rs).
        reload_delay=1.0,
        # consensus.header_sync_expected_height_per_second defaults to 10
        # (core/chain-configs/src/client_config.rs): the pace neard expects of header sync;
        # block sync also applies every chunk of the node's shards, so it is slower (inference:
        # half of it).
        sync_blocks_per_second=5.0,
        # State sync downloads a shard's state parts (tens of GB on mainnet) and then catches
        # up (chain/client/src/sync/state/); operators report tens of minutes (inference: 15 min).
        state_sync=900.0,
        # nearcore issue #13766: after a hot swap a chunk validator did not endorse until the next
        # epoch, until peers learned the new peer for the account (TIER1 AccountData,
        # chain/network/src/accounts_data/mod.rs); routes to an account live
        # network.ttl_account_id_router (1 h) in chain/network/src/config_json.rs. 60 s is a
        # conservative middle (inference).
        routing_lag=60.0,
    )


def timings(profile: str, block_time: float, **overrides: float | None) -> Timings:
    """The profile's figures with the given overrides (None means keep the profile's)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    base = fast(block_time) if profile == "fast" else mainnet()
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if value < 0 or (name == "sync_blocks_per_second" and value == 0):
            flag = "--sync-rate" if name == "sync_blocks_per_second" else "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {value}: must be a positive number of seconds (blocks per second for --sync-rate)")
        changes["memtrie_load_total" if name == "memtrie_load" else name] = float(value)
    return replace(base, **changes)
