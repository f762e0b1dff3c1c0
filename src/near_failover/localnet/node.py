"""One emulated neard: `near-failover localnet node --home DIR`.

It reads its home the way neard does (config.json with comments and legacy tracking fields,
node_key.json, validator_key.json if present, log_config.json, genesis.json), follows the
chain process, keeps its shard state in <home>/data/, signs the pool's duties when neard
would, and serves neard's RPC (node_rpc.py). The rules it reads the home by are its own
(config_rules.py), not the tool's. Its timings come from emulator.json (profile.py).

Signals as in neard (neard/src/cli.rs): the SIGHUP/SIGTERM/SIGINT handlers are installed only
once start-up is done (store open, memtrie load, RPC started), so a signal before then takes the
default action and kills the process. After that SIGHUP reloads the dynamic configs all or
nothing (neard-behaviour §2), applied by the client's config updater `reload_delay` later;
SIGTERM/SIGINT stop signing and close RPC at once, then the store's shutdown takes `stop_time`.

Where neard would panic (bad config at start, validator key + AllShards on mainnet/testnet,
key mismatch at the epoch check) it prints a Rust-style panic to stderr and aborts (SIGABRT):
release builds set `panic = 'abort'` (nearcore's Cargo.toml).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

from near_failover.localnet import config_rules
from near_failover.localnet.chain import KIND_BLOCK, KIND_CHUNK, hash_text, shard_uid, signing_message
from near_failover.localnet.config_rules import ConfigFileIssue, TrackedShards
from near_failover.localnet.http import Handler, HttpClient, HttpError, start_server
from near_failover.localnet.node_state import DATA_FORMAT, ShardBook, split_by_epoch, tracked_shards_for_epoch
from near_failover.localnet.profile import Timings, fast
from near_failover.localnet.util import Log, read_json, write_json_atomic
from near_failover.neard.keys import KeyFile, KeyFileError, load_key_file

EARLY_FATAL_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
DATA_FILE = "localnet-node.json"
EMULATOR_FILE = "emulator.json"
PUBLIC_CHAINS = ("mainnet", "testnet")
ALL_SHARDS_PANIC = (
    "The `chain_id` field specified in genesis is among mainnet/testnet, so validator must not track all shards. "
    'Please set `tracked_shards_config` field in `config.json` to "NoShards".'
)
# The fields SIGHUP applies from config.json (UpdatableClientConfig, neard-behaviour §2.1).
HOT_CONSENSUS_FIELDS = (
    "block_production_tracking_delay",
    "min_block_production_delay",
    "max_block_production_delay",
    "max_block_wait_delay",
    "chunk_wait_mult",
    "doomslug_step_period",
)
HOT_TOP_FIELDS = ("expected_shutdown", "resharding_config", "produce_chunk_add_transactions_time_limit")
class NodeExit(Exception):
    """Stop the process with a code after a message has been logged."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def duration_ns(cfg: dict, section: str | None, name: str, default_ns: int) -> int:
    """A config duration (`{"secs","nanos"}` or `[secs, nanos]`); validation_errors checked it."""
    container = cfg.get(section, {}) if section else cfg
    raw = container.get(name) if isinstance(container, dict) else None
    if isinstance(raw, dict) and "secs" in raw:
        return int(raw["secs"]) * 1_000_000_000 + int(raw.get("nanos", 0))
    if isinstance(raw, list) and len(raw) == 2:
        return int(raw[0]) * 1_000_000_000 + int(raw[1])
    return default_ns


def signer_debug(key: KeyFile | None) -> str:
    """Debug form of a MutableValidatorSigner value (neard-behaviour §2.2)."""
    if key is None:
        return "None"
    return (
        f"Some(InMemory(InMemoryValidatorSigner {{ account_id: {key.account_id}, signer: InMemory(InMemorySigner("
        f"account_id: {key.account_id}, public_key: {key.public_key})) }}))"
    )


def parse_addr(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{what} {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def chain_address(cfg: dict) -> tuple[str, int]:
    """The network to join: the first of `network.boot_nodes` ("<peer id>@HOST:PORT,...")."""
    boot = str(cfg.get("network", {}).get("boot_nodes", ""))
    first = boot.split(",")[0].strip()
    if "@" not in first:
        raise ValueError("config.json network.boot_nodes has no peer (expected \"ed25519:<peer id>@127.0.0.1:PORT\"); the node has no network to join")
    return parse_addr(first.split("@", 1)[1], "network.boot_nodes entry")


@dataclass
class Metrics:
    boot_time: float = field(default_factory=time.time)
    config_correct: int = 1
    config_reloads_total: int = 0
    config_reload_timestamp: float = 0.0
    block_produced_total: int = 0
    chunk_produced_total: int = 0
    mutable_fields: list[tuple[str, int, str, int]] = field(default_factory=list)  # name, ts, value, 0/1


class Node:
    def __init__(self, home: Path, log: Log, rpc_handler: Callable[[Node], Handler]) -> None:
        self.home = home
        self.log = log
        self.rpc_handler = rpc_handler  # node_rpc.NodeRpc's, given by node_main (no import loop)
        self.metrics = Metrics()
        self.signer: KeyFile | None = None
        self.hot: dict[str, Any] = {}
        self.dyn_config_errors: list[str] = []
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.head = 0
        self.head_hash = ""
        self.head_time_ns = 0
        self.network: dict | None = None
        self.epochs: dict[int, dict] = {}
        self.key_checked_epoch: int | None = None
        self.memtries_loaded: set[int] = set()
        self.rpc_server: asyncio.AbstractServer | None = None
        self.started_monotonic = time.monotonic()
        self._sync_wakeup = asyncio.Event()
        self._last_persist = 0.0
        self._last_chain_warning = 0.0
        self._tasks: list[asyncio.Task] = []
        self._pending_update: tuple[dict[str, Any], KeyFile | None] | None = None
        self._updater: asyncio.Future | None = None
        self.process_id = secrets.token_hex(8)
        self.background_load_status: dict[int, int] = {}
        self.block_time = 0.6
        self.ready = False

    # --- start-up: read the home like neard -------------------------------------------------

    def panic(self, message: str, location: str = "nearcore/src/lib.rs:0:0") -> NoReturn:
        """A neard panic: Rust's message on stderr, then abort (SIGABRT), at once, from any task.

        Release neard is built with `panic = 'abort'` (nearcore's Cargo.toml, profile.release),
        so a panic ends in SIGABRT (status 134 from a shell), not exit code 101."""
        try:
            self.persist(force=True)
        except OSError:
            pass
        sys.stderr.write(f"\nthread 'main' panicked at {location}:\n{message}\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
        sys.stderr.flush()
        signal.signal(signal.SIGABRT, signal.SIG_DFL)
        resource_no_core()
        os.abort()

    def load_home(self) -> None:
        home = self.home
        config_path = home / "config.json"
        try:
            cfg = config_rules.read(config_path)
        except ConfigFileIssue as exc:
            self.panic(f"Error loading config: {exc}", "neard/src/cli.rs:0:0")
        errors = config_rules.validation_errors(cfg)
        if errors:
            self.panic(
                "Error loading config: The following config checks failed:\n"
                + "\n".join(errors)
                + "\nPlease fix the config json files and validate again!",
                "neard/src/cli.rs:0:0",
            )
        self.cfg = cfg
        self.tracking: TrackedShards = config_rules.tracked_shards(cfg)
        self.memtries = config_rules.memtries_for_tracked_shards(cfg)
        if self.tracking.mode == "Schedule" and not self.tracking.value:
            # ShardTracker asserts a non-empty schedule (chain/epoch-manager/src/shard_tracker.rs).
            self.panic("assertion failed: !schedule.is_empty()", "chain/epoch-manager/src/shard_tracker.rs:0:0")
        self._warn_unknown_fields(cfg)
        self.hot = self._hot_fields(cfg)
        self.gc_epochs = int(cfg.get("gc_num_epochs_to_keep", 5))
        self.sync_threshold = int(cfg.get("consensus", {}).get("sync_height_threshold", 1))
        self.rpc_addr = str(cfg.get("rpc", {}).get("addr", "0.0.0.0:3030"))
        self.net_addr = str(cfg.get("network", {}).get("addr", "0.0.0.0:24567"))
        try:
            self.chain_host, self.chain_port = chain_address(cfg)
        except ValueError as exc:
            self.panic(f"Error loading config: {exc}", "neard/src/cli.rs:0:0")
        genesis_path = home / str(cfg.get("genesis_file", "genesis.json"))
        try:
            self.genesis = read_json(genesis_path)
            self.chain_id = str(self.genesis["chain_id"])
            self.num_shards = len(self.genesis["shard_layout"]["V2"]["shard_ids"])
            self.epoch_length = int(self.genesis["epoch_length"])
            self.seed = str(self.genesis.get("localnet", {}).get("seed", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.panic(f"Error loading config: genesis.json file issue: {genesis_path}: {exc}", "neard/src/cli.rs:0:0")
        node_key_path = home / str(cfg.get("node_key_file", "node_key.json"))
        try:
            self.node_key = load_key_file(node_key_path)
        except KeyFileError as exc:
            self.panic(f"Error loading config: node_key.json file issue: {exc}", "neard/src/cli.rs:0:0")
        self.peer_id = self.node_key.public_key
        key_path = self.validator_key_path(cfg)
        if key_path.exists():
            try:
                self.signer = load_key_file(key_path)
            except KeyFileError as exc:
                self.panic(
                    f"Error loading config: validator_key.json file issue: Failed initializing validator signer from {key_path}: {exc.problem}",
                    "neard/src/cli.rs:0:0",
                )
        try:
            self._apply_log_config(self._read_log_config())
        except (OSError, ValueError) as exc:
            self.panic(f"Error reading dynamic configs: {exc}", "neard/src/cli.rs:0:0")
        self.timings = self._read_timings()
        self.metrics.config_reloads_total = 1  # "the counter is 1 right after start" (§4.7)
        self.metrics.config_reload_timestamp = time.time()
        self.metrics.mutable_fields = [("validator_signer", int(time.time()), signer_debug(self.signer), 1)]
        self._load_data()

    def validator_key_path(self, cfg: dict) -> Path:
        return self.home / str(cfg.get("validator_key_file", "validator_key.json"))

    def _warn_unknown_fields(self, cfg: dict) -> None:
        """Config::from_file warns about unknown keys at any depth (nearcore/src/config.rs)."""
        unknown = config_rules.unknown_field_paths(cfg)
        if unknown:
            self.log.warn("neard", "encountered unrecognized fields", fields=",".join(unknown))
        for old in config_rules.DEPRECATED_KEYS:
            if old in cfg:
                self.log.warn("neard", "deprecated config key detected – please migrate", key=old)

    def _hot_fields(self, cfg: dict) -> dict[str, Any]:
        consensus = cfg.get("consensus", {}) if isinstance(cfg.get("consensus"), dict) else {}
        hot: dict[str, Any] = {name: cfg.get(name) for name in HOT_TOP_FIELDS}
        hot.update({name: consensus.get(name) for name in HOT_CONSENSUS_FIELDS})
        hot["max_block_production_delay_ns"] = duration_ns(cfg, "consensus", "max_block_production_delay", 2_000_000_000)
        return hot

    def _read_log_config(self) -> dict | None:
        """log_config.json as neard reads it: None when absent, an error when not an object."""
        path = self.home / "log_config.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return data

    def _apply_log_config(self, data: dict | None) -> None:
        rust_log = (data or {}).get("rust_log")
        if isinstance(rust_log, str) and rust_log.strip():
            level = rust_log.split(",")[0].split("=")[-1].strip().upper()
            self.log.level = {"TRACE": 4, "DEBUG": 4, "INFO": 3, "WARN": 2, "ERROR": 1}.get(level, 3)
        else:
            self.log.level = 3

    def _read_timings(self) -> Timings:
        """emulator.json (written by `localnet up` from its profile); the fast profile without it."""
        default = fast(0.2)
        path = self.home / EMULATOR_FILE
        if not path.exists():
            return default
        try:
            data = read_json(path)
            return Timings.from_json(data if isinstance(data, dict) else {}, default)
        except (OSError, ValueError, TypeError) as exc:
            self.log.warn("localnet", "ignoring unreadable emulator settings", file=str(path), error=str(exc))
            return default

    # --- data/ ------------------------------------------------------------------------------

    @property
    def data_path(self) -> Path:
        return self.home / "data" / DATA_FILE

    def _load_data(self) -> None:
        (self.home / "data").mkdir(mode=0o700, exist_ok=True)
        # RocksDB keeps <home>/data/LOCK open for as long as neard runs (core/store/src/db/rocksdb.rs
        # opens the store at start); that open file is how a fence finds a neard by its home.
        self._db_lock = open(self.home / "data" / "LOCK", "a")
        self.genesis_hash = hash_text(self.seed, "genesis")
        self.last_signed: dict[str, int] = {}
        if self.data_path.exists():
            data = read_json(self.data_path)
            if data.get("genesis_hash") != self.genesis_hash:
                self.panic(
                    f"{self.data_path} belongs to another chain (genesis {data.get('genesis_hash')}, this home's genesis {self.genesis_hash}); "
                    "remove data/ to sync this node from scratch",
                )
            self.head = int(data["head"])
            self.book = ShardBook.from_json(self.num_shards, data.get("shards", {}))
            self.last_signed = {str(k): int(v) for k, v in data.get("last_signed", {}).items()}
            stored_time = data.get("head_time_ns")
        else:
            stored_time = None
            self.head = 0
            self.book = ShardBook.at_genesis(self.num_shards)
            self.persist(force=True)
        self.head_hash = self.genesis_hash if self.head == 0 else hash_text(self.seed, "block", self.head)
        # The head block's timestamp, from the store: a restarted node's head is as old as it is.
        self.head_time_ns = int(stored_time if stored_time is not None else self.genesis.get("localnet", {}).get("genesis_time_ns", time.time_ns()))

    def persist(self, force: bool = False) -> None:
        """Save what neard's DB would hold; called often, written at most twice a second."""
        if not hasattr(self, "book"):
            return
        now = time.monotonic()
        if not force and now - self._last_persist < 0.5:
            return
        self._last_persist = now
        write_json_atomic(
            self.data_path,
            {
                "format": DATA_FORMAT,
                "genesis_hash": self.genesis_hash,
                "head": self.head,
                "head_time_ns": self.head_time_ns,
                "shards": self.book.to_json(),
                "last_signed": self.last_signed,
            },
            fsync=False,
        )

    # --- the chain's facts ------------------------------------------------------------------

    def epoch_of(self, height: int) -> int:
        return 0 if height <= 0 else (height - 1) // self.epoch_length

    def epoch_last(self, epoch: int) -> int:
        return (epoch + 1) * self.epoch_length

    async def epoch_summary(self, epoch: int) -> dict | None:
        cached = self.epochs.get(epoch)
        if cached is not None and cached.get("next_validators") is not None:
            return cached
        try:
            summary = await self.rpc_client.get_json(f"/epoch?epoch={epoch}", timeout=5)
        except HttpError:
            return cached
        self.epochs[epoch] = summary
        for old in [e for e in self.epochs if e < epoch - 3]:
            del self.epochs[old]
        return summary

    def assignment(self, epoch: int, next_epoch: bool = False) -> dict[str, int]:
        summary = self.epochs.get(epoch)
        if summary is None:
            return {}
        rows = summary.get("next_validators") if next_epoch else summary.get("validators")
        return {v["account_id"]: v["shards"][0] for v in rows or []}

    def on_chain_key(self, epoch: int, account_id: str) -> str | None:
        summary = self.epochs.get(epoch)
        for v in (summary or {}).get("validators", []):
            if v["account_id"] == account_id:
                return v["public_key"]
        return None

    def current_validators(self) -> list[str]:
        summary = self.epochs.get(self.epoch_of(self.head)) or {}
        return [v["account_id"] for v in summary.get("validators", [])]

    def is_current_validator(self) -> bool:
        return self.signer is not None and self.signer.account_id in self.current_validators()

    def needed_shards(self, epoch: int) -> tuple[set[int], set[int], set[int]]:
        """(now, next, may catch up now): tracking config plus own validator shards (§1.1)."""
        now_assign, next_assign = self.assignment(epoch), self.assignment(epoch, next_epoch=True)
        mode, value = self.tracking.mode, self.tracking.value
        now = tracked_shards_for_epoch(mode, value, epoch, self.num_shards, now_assign)
        nxt = tracked_shards_for_epoch(mode, value, epoch + 1, self.num_shards, next_assign)
        catch_up = set(now) if mode == "ShadowValidator" else set()
        if self.signer is not None:
            mine_now = {now_assign[self.signer.account_id]} if self.signer.account_id in now_assign else set()
            mine_next = {next_assign[self.signer.account_id]} if self.signer.account_id in next_assign else set()
            now |= mine_now
            nxt |= mine_next
            catch_up |= mine_now
        return now, nxt, catch_up

    @property
    def network_head(self) -> int:
        return int(self.network["head"]["height"]) if self.network else self.head

    @property
    def syncing(self) -> bool:
        if self.network is None or self.book.stuck or self.book.syncing_shards:
            return True
        return self.network_head - self.head > self.sync_threshold

    @property
    def sync_status_code(self) -> int:
        """near_sync_status: 0 no sync, 1 awaiting peers, 5 state sync, 7 block sync (§4.7)."""
        if self.network is None:
            return 1
        if self.book.stuck or self.book.syncing_shards:
            return 5
        return 7 if self.syncing else 0

    # --- following the chain ----------------------------------------------------------------

    async def apply_to(self, target: int, block: dict | None = None) -> None:
        """Advance the head to `target`, updating shard state epoch by epoch."""
        for start, stop in split_by_epoch(self.head, target, self.epoch_of, self.epoch_last):
            epoch = self.epoch_of(stop)
            await self.epoch_summary(epoch)
            now, nxt, catch_up = self.needed_shards(epoch)
            events = self.book.advance(start, stop, now, nxt, catch_up, self.timings.state_sync_blocks(self.block_time), self.epoch_of, self.gc_epochs)
            self._on_shard_events(events, now | nxt)
            if self.book.stuck:
                self.persist(force=True)
                return
            self.head = stop
            self.head_hash = hash_text(self.seed, "block", stop)
        if block is not None and int(block["height"]) == self.head:
            self.head_hash = block["hash"]
            self.head_time_ns = int(block["timestamp_ns"])
        elif self.network is not None:
            # A block synced on the way: its timestamp is about one block time per height before
            # the network's head (a syncing node's head is old, hence NO_NEW_BLOCKS first).
            net_head = self.network["head"]
            behind = int(net_head["height"]) - self.head
            self.head_time_ns = max(self.head_time_ns, int(net_head["timestamp_ns"]) - int(behind * self.block_time * 1e9))
        self.memtries_loaded &= self.book.held_shards(self.head) | set(self.book.catching_up)
        self.persist()

    def _on_shard_events(self, events: list[tuple[str, int]], cared: set[int]) -> None:
        for event, shard in events:
            uid = shard_uid(shard)
            if event == "catchup_started":
                self.log.info("sync", "state sync started for a shard the node will care about", shard_uid=uid)
            elif event == "stale_sync_started":
                self.log.info("sync", "catching up a shard whose state is behind the head", shard_uid=uid)
            elif event == "caught_up":
                self.log.info("sync", "catchup done", shard_uid=uid)
                if self.memtries and shard in cared:
                    self.memtries_loaded.add(shard)
                    # A load after catch-up goes through the background loader: its gauge ends at
                    # 4 = Done (core/store/src/trie/mem/metrics.rs, MemtrieBackgroundLoadStatus).
                    self.background_load_status[shard] = 4
                    self.log.info("memtrie", "done loading trie from flat state", shard_uid=uid)
            elif event == "garbage_collected":
                self.log.info("garbage collection", "deleted the state of a shard this node no longer tracks", shard_uid=uid)
            elif event == "missing":
                self.log.warn(
                    "sync",
                    "cannot sync: the state of a tracked shard was garbage collected and neard has no way to sync a single missing shard; "
                    "re-sync this node (epoch sync or snapshot) before it can track all shards again",
                    shard_uid=uid,
                    tracked_shards_config=json.dumps(self.tracking.to_json()),
                )

    async def follow(self) -> None:
        after = -1
        name = self.home.name
        while not self.stopping.is_set():
            try:
                payload = await self.poll_client.get_json(
                    f"/head?after={after}&timeout=5&peer_id={self.peer_id}&addr={self.net_addr}&name={name}", timeout=10
                )
            except HttpError as exc:
                if time.monotonic() - self._last_chain_warning > 10:
                    self._last_chain_warning = time.monotonic()
                    self.log.warn("network", "no connection to the network's boot node", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            after = int(payload["tick"])
            self.network = payload
            try:
                await self.on_network(payload)
            except HttpError as exc:
                self.log.warn("client", "network request failed", error=str(exc))

    async def on_network(self, payload: dict) -> None:
        if self.book.stuck:
            return
        block = payload["head"]
        height = int(block["height"])
        if height > self.head:
            if block["prev_hash"] == self.head_hash or height - self.head <= self.sync_threshold:
                await self.apply_to(height, block)
            else:
                self._sync_wakeup.set()
                return
        if self.syncing:
            return
        await self.on_new_head()
        if not self.stopping.is_set():
            await self.sign_open_slot(payload)

    async def sync_loop(self) -> None:
        """Block sync: catch the head up with the network at sync_blocks_per_second."""
        step_s = 0.05
        while not self.stopping.is_set():
            await self._sync_wakeup.wait()
            self._sync_wakeup.clear()
            for _ in range(1_000_000):
                if self.stopping.is_set() or self.book.stuck or self.network is None:
                    break
                target = self.network_head
                if self.head >= target and not self.book.syncing_shards:
                    break
                step = max(1, int(self.timings.sync_blocks_per_second * step_s))
                nxt = min(target, self.head + step) if self.head < target else self.head
                await self.apply_to(nxt, self.network["head"] if nxt == target else None)
                await asyncio.sleep(step_s)
                if self.book.syncing_shards and self.head >= target:
                    break  # stale-shard catch-up progresses with new heads

    async def on_new_head(self) -> None:
        epoch = self.epoch_of(self.head)
        await self.epoch_summary(epoch)
        # Key consistency check once per epoch (2.12, #15417; neard-behaviour §1.4).
        if self.signer is not None and self.key_checked_epoch != epoch:
            self.key_checked_epoch = epoch
            on_chain = self.on_chain_key(epoch, self.signer.account_id)
            if on_chain is not None and on_chain != self.signer.public_key:
                self.panic(
                    f"validator key mismatch for {self.signer.account_id}: local key {self.signer.public_key} does not match "
                    f"on-chain key {on_chain}. Update validator_key.json or rotate the key on-chain.",
                    "chain/client/src/client.rs:0:0",
                )
        shutdown_at = self.hot.get("expected_shutdown")
        if isinstance(shutdown_at, int) and not isinstance(shutdown_at, bool) and self.head >= shutdown_at:
            self.log.info("client", "expected shutdown triggered", head=self.head, expected_shutdown=shutdown_at)
            self.request_stop()

    def _chunk_miss_without_memtries(self, height: int, shard: int) -> bool:
        share = self.timings.chunk_miss_share_without_memtries
        draw = int.from_bytes(hashlib.sha256(f"{self.peer_id}|{height}|{shard}".encode()).digest()[:4], "big")
        return draw / 2**32 < share

    async def sign_open_slot(self, payload: dict) -> None:
        signer = self.signer
        if signer is None:
            return
        duties = payload.get("duties", {}).get(signer.account_id, [])
        if not duties:
            return
        height = int(payload["open_height"])
        epoch = int(payload["open_epoch"])
        await self.epoch_summary(epoch)
        on_chain = self.on_chain_key(epoch, signer.account_id)
        signatures = []
        produced_blocks = produced_chunks = 0
        for kind, shard in duties:
            slot = f"{kind}:{'-' if shard is None else shard}"
            if height <= self.last_signed.get(slot, -1):
                continue  # never sign a height twice (can_produce_block, §7)
            if kind == KIND_BLOCK and on_chain != signer.public_key:
                self.log.debug("client", "local validator key does not match expected validator key", height=height)
                continue
            if kind == KIND_CHUNK:
                if not self.book.held(shard, self.head):
                    continue  # no state for the shard (yet): cannot produce its chunk
                if shard not in self.memtries_loaded and self._chunk_miss_without_memtries(height, shard):
                    continue  # without memtries the node falls behind and misses chunks
            self.last_signed[slot] = height
            signatures.append(
                {
                    "height": height,
                    "kind": kind,
                    "shard": shard,
                    "account_id": signer.account_id,
                    "public_key": signer.public_key,
                    "signature": signer.sign(signing_message(height, kind, shard, signer.account_id)).hex(),
                }
            )
            produced_blocks += kind == KIND_BLOCK
            produced_chunks += kind == KIND_CHUNK
        if not signatures:
            return
        # An honest validator stores what it signs before sending it (§7).
        self.persist(force=True)
        self.metrics.block_produced_total += produced_blocks
        self.metrics.chunk_produced_total += produced_chunks
        try:
            await self.rpc_client.post_json("/sign", {**self.identity, "signatures": signatures}, timeout=2)
        except HttpError as exc:
            self.log.warn("client", "could not send signatures to the network", error=str(exc))

    # --- SIGHUP: dynamic configs (neard-behaviour §2) ---------------------------------------

    @property
    def identity(self) -> dict:
        """Who signs: the network identity and this very process (the ledger tells signers apart
        by process, so two nodes sharing one node_key.json still show as two signers)."""
        return {"peer_id": self.peer_id, "addr": self.net_addr, "name": self.home.name, "process": self.process_id, "pid": os.getpid()}

    def reload(self) -> None:
        """SIGHUP: read_updatable_configs at once (metrics, logging), the client applies it later.

        nearcore/src/dyn_config.rs reads and publishes the configs in the signal loop; the
        ConfigUpdater (chain/client/src/config_updater.rs) hands them to the client on its next
        check_triggers, within about a second: the new signer is used `reload_delay` later.
        A later SIGHUP before then replaces what is pending (the latest value wins).
        """
        errors: list[str] = []
        log_config: dict | None = None
        cfg: dict | None = None
        new_signer: KeyFile | None = None
        try:
            log_config = self._read_log_config()
        except (OSError, ValueError) as exc:
            errors.append(f"LogConfigError({exc})")
        try:
            cfg = config_rules.read(self.home / "config.json")
            errors += [f"ConfigError({e})" for e in config_rules.validation_errors(cfg)]
        except ConfigFileIssue as exc:
            errors.append(f"ConfigError({exc})")
            cfg = None
        if cfg is not None:
            key_path = self.validator_key_path(cfg)
            if key_path.exists():
                try:
                    new_signer = load_key_file(key_path)
                except KeyFileError as exc:
                    errors.append(f"ValidatorKeyFileError(Failed initializing validator signer from {key_path}: {exc.problem})")
        if errors:
            self.metrics.config_correct = 0
            self.dyn_config_errors = errors
            self.log.warn("neard", "dynamically updatable configs are not valid, please fix this asap otherwise the node will be unable to restart", errors=repr(errors))
            return
        assert cfg is not None
        self._apply_log_config(log_config)
        if log_config is None:
            self.log.info("neard", "config file does not exist → resetting to defaults", file="log_config.json")
        else:
            self.log.info("neard", "updated the logging layer according to log_config.json")
        self.dyn_config_errors = []
        self.metrics.config_correct = 1
        self.metrics.config_reloads_total += 1
        self.metrics.config_reload_timestamp = time.time()
        self.log.info("neard", "hot loading validator key" if new_signer is not None else "no validator key")
        self._pending_update = (self._hot_fields(cfg), new_signer)
        if self._updater is None or self._updater.done():
            self._updater = asyncio.ensure_future(self._apply_pending_after(self.timings.reload_delay))

    async def _apply_pending_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        pending, self._pending_update = self._pending_update, None
        if pending is not None and not self.stopping.is_set():
            self.apply_update(*pending)

    def apply_update(self, new_hot: dict[str, Any], new_signer: KeyFile | None) -> None:
        """The ConfigUpdater's effect: client config fields and the validator signer."""
        for name, value in new_hot.items():
            if value != self.hot.get(name) and not name.endswith("_ns"):
                self.log.info("config", "updated config field", field_name=name, old_value=json.dumps(self.hot.get(name)), new_value=json.dumps(value))
        self.hot = new_hot
        self.log.info("config", "updated client config")
        old = self.signer
        changed = (old is None) != (new_signer is None) or (old is not None and new_signer is not None and (old.account_id, old.public_key, old.secret_key_text()) != (new_signer.account_id, new_signer.public_key, new_signer.secret_key_text()))
        if changed:
            self.log.info("config", "updated config field", field_name="validator_signer", old_value=signer_debug(old), new_value=signer_debug(new_signer))
            now = int(time.time())
            self.metrics.mutable_fields = [(n, t, v, 0) for n, t, v, _ in self.metrics.mutable_fields[-8:]] + [("validator_signer", now, signer_debug(new_signer), 1)]
            self.signer = new_signer
        else:
            self.log.info("config", "mutable config field remains the same", field_name="validator_signer")
        self.log.info("client", "updated validator key")
        if changed:
            self.check_validator_tracked_shards()
            self._tasks.append(asyncio.ensure_future(self.advertise()))

    def check_validator_tracked_shards(self) -> None:
        """Mainnet/testnet: a current validator must not track all shards (§1.4)."""
        if self.chain_id not in PUBLIC_CHAINS or self.signer is None:
            return
        if not self.is_current_validator():
            self.log.warn("client", "not a current validator, this node won't be validating in the current epoch", validator_account_id=self.signer.account_id)
            return
        if self.tracking.mode == "AllShards":
            self.panic(ALL_SHARDS_PANIC, "chain/client/src/client_actor.rs:0:0")

    async def advertise(self) -> None:
        """Re-advertise TIER1 proxies after a signer change (§2.2)."""
        try:
            await self.rpc_client.post_json(
                "/advertise",
                {"peer_id": self.peer_id, "addr": self.net_addr, "name": self.home.name, "account_id": self.signer.account_id if self.signer else None},
                timeout=2,
            )
        except HttpError as exc:
            self.log.warn("network", "could not advertise to the network", error=str(exc))

    # --- periodic stats line ----------------------------------------------------------------

    async def stats_loop(self) -> None:
        period = max(0.5, duration_ns(self.cfg, None, "log_summary_period", 10_000_000_000) / 1e9)
        last_head, last_t = self.head, time.monotonic()
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), period)
                return
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            bps = (self.head - last_head) / max(now - last_t, 1e-6)
            last_head, last_t = self.head, now
            try:
                net = await self.rpc_client.get_json(f"/network?peer_id={self.peer_id}", timeout=3)
                self.peer_count = len(net["active_peers"])
            except HttpError:
                pass
            role = "Validator | " if self.is_current_validator() else ""
            rss_mb = _rss_mb()
            self.log.info(
                "stats",
                f"#{self.head} {self.head_hash} {role}{len(self.current_validators())} validators {self.peer_count} peers ⬇ 0 B/s ⬆ 0 B/s {bps:.2f} bps 0 gas/s CPU: 0%, Mem: {rss_mb:.1f} MB",
            )
            if self.dyn_config_errors:
                self.log.warn(
                    "stats",
                    "dynamically updated configs are not valid, please fix this ASAP otherwise the node will probably crash after restart",
                    errors="One or multiple dynamic config files reload errors " + repr(self.dyn_config_errors),
                )

    peer_count: int = 0

    # --- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            self.log.warn("neard", "stopping, this may take a few minutes")
            self.stopping.set()

    async def connect_chain(self) -> None:
        """Join the network (retry until it answers, as neard waits for peers)."""
        self.rpc_client = HttpClient(self.chain_host, self.chain_port, timeout=5)
        self.poll_client = HttpClient(self.chain_host, self.chain_port, timeout=10)
        for attempt in range(10**9):
            if self.stopping.is_set():
                raise NodeExit(0)
            try:
                genesis = await self.rpc_client.get_json("/genesis", timeout=3)
                break
            except HttpError as exc:
                if attempt % 20 == 0:
                    self.log.info("network", "waiting for peers", boot_node=f"{self.chain_host}:{self.chain_port}", error=str(exc))
                await asyncio.sleep(0.25)
        if genesis["genesis_hash"] != self.genesis_hash or genesis["chain_id"] != self.chain_id:
            self.panic(
                f"genesis mismatch: this home's genesis is {self.chain_id}/{self.genesis_hash}, the network at "
                f"{self.chain_host}:{self.chain_port} runs {genesis['chain_id']}/{genesis['genesis_hash']}"
            )
        self.block_time = float(genesis["block_time"])
        for epoch in (self.epoch_of(self.head), self.epoch_of(self.head) + 1):
            await self.epoch_summary(epoch)
        if self.epoch_of(self.head) not in self.epochs:  # too old for the chain's memory
            status = await self.rpc_client.get_json("/status", timeout=3)
            await self.epoch_summary(self.epoch_of(int(status["head"]["height"])))

    async def load_memtries(self) -> None:
        """Chain::new loads memtries before the RPC server starts (§6): the port stays closed."""
        epoch = self.epoch_of(self.head)
        now, nxt, _ = self.needed_shards(epoch)
        held = self.book.held_shards(self.head)
        shards: set[int] = set()
        if self.memtries:
            shards = (now | nxt) & held
        listed = config_rules.memtrie_shard_uids(self.cfg)
        shards |= tracked_shards_for_epoch("Shards", listed, epoch, self.num_shards, {}) & held
        if not shards:
            return
        uids = [shard_uid(s) for s in sorted(shards)]
        self.log.info("memtrie", "loading tries to memory for shards", shard_uids=",".join(uids))
        for uid in uids:
            self.log.info("memtrie", "loading trie from flat state", shard_uid=uid)
        seconds = self.timings.memtrie_load_seconds(len(shards))
        await asyncio.sleep(seconds)  # no signal handler yet: SIGTERM or SIGHUP now kills the process
        for uid in uids:
            self.log.info("memtrie", "done loading trie from flat state", shard_uid=uid, duration=f"{seconds:.3f}s")
        self.log.info("memtrie", "memtries loading complete for shards", shard_uids=",".join(uids))
        self.memtries_loaded = shards

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        pending_reload = asyncio.Event()
        self.log.info("neard", "starting the emulated neard", home=str(self.home), chain_id=self.chain_id, tracked_shards_config=json.dumps(self.tracking.to_json()), memtries=self.memtries)
        if self.signer is None:
            self.log.info("neard", "no validator key", path=str(self.validator_key_path(self.cfg)))
        handlers = ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop), (signal.SIGHUP, pending_reload.set))

        def handle_signals(on: bool) -> None:
            for sig, callback in handlers:
                if on:
                    loop.add_signal_handler(sig, callback)
                else:
                    loop.remove_signal_handler(sig)
                    signal.signal(sig, signal.SIG_DFL)

        try:
            # The emulator needs the network before its memtrie load (to know the node's shards);
            # neard waits for peers only after start-up, with its handlers installed, so here too.
            handle_signals(True)
            await self.connect_chain()
            handle_signals(False)
            await self.load_memtries()
            self.check_validator_tracked_shards()
            host, port = parse_addr(self.rpc_addr, "rpc.addr")
            try:
                self.rpc_server = await start_server(self.rpc_handler(self), host, port, on_error=lambda e: self.log.error("jsonrpc", "handler failed", error=repr(e)))
            except OSError as exc:
                self.panic(f"failed to start the JSON-RPC server on {self.rpc_addr}: {exc}", "chain/jsonrpc/src/lib.rs:0:0")
            self.log.info("neard", "starting http server", addr=self.rpc_addr)
            # neard/src/cli.rs installs its signal handlers only once start_with_config has
            # returned (store open, memtries loaded, HTTP started); until here a signal killed us.
            handle_signals(True)
            self.ready = True
            if self.signer is not None:
                await self.advertise()

            async def reloads() -> None:
                while not self.stopping.is_set():
                    await pending_reload.wait()
                    pending_reload.clear()
                    self.reload()

            self._tasks += [asyncio.ensure_future(t) for t in (self.follow(), self.sync_loop(), self.stats_loop(), reloads())]
            await self.stopping.wait()
            # The actors stop at once (no more signing, RPC closed); closing the store takes time.
            self._stop_serving()
            self.log.info("db", "waiting for rocksdb to gracefully shutdown")
            self.persist(force=True)
            await asyncio.sleep(self.timings.stop_time)
        except NodeExit as exc:
            self.exit_code = exc.code
        finally:
            self._stop_serving()
            self.persist(force=True)
        return self.exit_code

    def _stop_serving(self) -> None:
        for task in [*self._tasks, *([self._updater] if self._updater else [])]:
            task.cancel()
        if self.rpc_server is not None:
            self.rpc_server.close()
            self.rpc_server = None


def resource_no_core() -> None:
    """An abort should not leave a core file of the emulator in the home."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0
