"""neard's config.json rules as the emulator applies them, written from nearcore's source.

The emulator is the oracle the tool is tested against, so it does not import the tool's own
reading of these rules (`near_failover.neard.config`): a mistake there would be copied here and
no test could see it. Only the low-level JSON-with-comments reader is shared. The tests run both
implementations over the same fixtures, so a disagreement fails a test.

Rules and where they live in nearcore:
- effective tracking: `Config::tracked_shards_config()` in nearcore/src/config.rs, through
  `TrackedShardsConfig::from_deprecated_config_values` (core/chain-configs/src/client_config.rs);
- semantic checks: nearcore/src/config_validate.rs, messages prefixed as in
  utils/config/src/lib.rs (`config.json semantic issue: `);
- memtrie flags: `StoreConfig` in core/store/src/config.rs;
- unknown keys, warned about at any depth: `Config::from_file` in nearcore/src/config.rs
  (serde_ignored collects the path of every unrecognised field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from near_failover.neard import jsonc

SEMANTIC_PREFIX = "config.json semantic issue: "
FILE_PREFIX = "config.json file issue: "

# TrackedShardsConfig's variants in declaration order (core/chain-configs/src/client_config.rs);
# serde's external tagging writes the first two as bare strings.
UNIT_VARIANTS = ("NoShards", "AllShards")
DATA_VARIANTS = ("Shards", "ShadowValidator", "Schedule", "Accounts")
# The deprecated fields beside `tracked_shards_config` (nearcore/src/config.rs, `Config`), in the
# order validate_tracked_shards_config reports a conflict with the new field.
DEPRECATED_IN_REPORT_ORDER = ("tracked_shards", "tracked_accounts", "tracked_shadow_validator", "tracked_shard_schedule")

# Defaults of the fields the checks read (Config::default(), ClientConfig defaults).
_SECOND = 1_000_000_000
_DEFAULT_NS = {"min_block_production_delay": 600_000_000, "max_block_production_delay": 2 * _SECOND, "max_block_wait_delay": 6 * _SECOND}

# Optional `Config` fields that `neard init` omits while unset (serde skip_serializing_if), so
# the reconstructed init config below does not list them; they are still known keys.
_OPTIONAL_TOP = (
    "archive", "expected_shutdown", "state_sync", "state_sync_enabled", "cold_store", "split_storage",
    "save_trie_changes", "save_tx_outcomes", "save_state_changes", "save_receipt_to_tx", "max_gas_burnt_view",
    "chunk_validation_threads", "rosetta_rpc", "chunk_distribution_network", "cloud_archival",
    "cloud_archival_writer", "view_client_throttle_period", "view_client_num_state_requests_per_throttle_period",
    "tracked_shards", "tracked_shard_schedule", "tracked_shadow_validator", "tracked_accounts",
)
# StoreConfig fields omitted while at their defaults (core/store/src/config.rs).
_OPTIONAL_NESTED = {"store": ("migration_snapshot", "rocksdb")}
DEPRECATED_KEYS = ("view_client_throttle_period", "view_client_num_state_requests_per_throttle_period")


class ConfigFileIssue(Exception):
    """config.json that neard could not deserialise (or not read): it refuses to start."""


@dataclass(frozen=True)
class TrackedShards:
    """The TrackedShardsConfig value neard runs with."""

    mode: str  # the variant's name
    value: Any = None

    def to_json(self) -> Any:
        return self.mode if self.mode in UNIT_VARIANTS else {self.mode: self.value}


def parse(text: str, source: str) -> dict:
    """config.json text as neard reads it: comments stripped, an object required."""
    try:
        value = jsonc.loads(text)
    except jsonc.JsoncError as exc:
        raise ConfigFileIssue(f"{FILE_PREFIX}{source}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigFileIssue(f"{FILE_PREFIX}{source}: invalid type, expected struct Config")
    return value


def read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileIssue(f"{FILE_PREFIX}Failed to read config from {path}: {exc}") from None
    return parse(text, str(path))


# --- serde-level shape checks ------------------------------------------------------------------


def _u64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shard_uid(value: Any) -> bool:
    """`s<id>.v<version>` or `{"version", "shard_id"}` (core/primitives/src/shard_layout/mod.rs)."""
    if isinstance(value, dict):
        return set(value) == {"version", "shard_id"} and all(_u64(v) for v in value.values())
    if not isinstance(value, str) or not value.startswith("s") or ".v" not in value:
        return False
    shard, _, version = value[1:].partition(".v")
    return shard.isdigit() and version.isdigit()


def _account(value: Any) -> bool:
    """AccountId's parse rules (core/account-id): 2-64 chars of [a-z0-9._-], parts not empty."""
    if not isinstance(value, str) or not 2 <= len(value) <= 64:
        return False
    if any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-_." for c in value):
        return False
    for part in value.split("."):
        if not part or part[0] in "-_" or part[-1] in "-_" or "--" in part or "__" in part or "-_" in part or "_-" in part:
            return False
    return True


def _variant_data_ok(variant: str, value: Any) -> bool:
    if variant == "ShadowValidator":
        return _account(value)
    if not isinstance(value, list):
        return False
    if variant == "Shards":
        return all(_shard_uid(v) for v in value)
    if variant == "Schedule":
        return all(isinstance(row, list) and all(_u64(s) for s in row) for row in value)
    return all(_account(v) for v in value)  # Accounts


def _deserialize_variant(raw: Any) -> TrackedShards:
    expected = "expected one of " + ", ".join(f"`{v}`" for v in UNIT_VARIANTS + DATA_VARIANTS)
    if isinstance(raw, str):
        if raw in UNIT_VARIANTS:
            return TrackedShards(raw)
        kind = "invalid type: unit variant, expected newtype variant" if raw in DATA_VARIANTS else f"unknown variant `{raw}`, {expected}"
        raise ConfigFileIssue(f"{FILE_PREFIX}tracked_shards_config: {kind}")
    if isinstance(raw, dict) and len(raw) == 1:
        ((variant, value),) = raw.items()
        if variant in UNIT_VARIANTS and value is None:
            return TrackedShards(variant)
        if variant in DATA_VARIANTS and _variant_data_ok(variant, value):
            return TrackedShards(variant, value)
        if variant not in UNIT_VARIANTS + DATA_VARIANTS:
            raise ConfigFileIssue(f"{FILE_PREFIX}tracked_shards_config: unknown variant `{variant}`, {expected}")
        raise ConfigFileIssue(f"{FILE_PREFIX}tracked_shards_config.{variant}: invalid value {json.dumps(value)}")
    raise ConfigFileIssue(f"{FILE_PREFIX}tracked_shards_config: invalid type, expected enum TrackedShardsConfig")


def _deprecated(cfg: dict, name: str) -> Any:
    """A deprecated tracking field as serde reads it: null is None; a wrong type fails the load."""
    value = cfg.get(name)
    if value is None:
        return None
    ok = {
        "tracked_shards": lambda v: isinstance(v, list) and all(_u64(s) for s in v),
        "tracked_shard_schedule": lambda v: _variant_data_ok("Schedule", v),
        "tracked_shadow_validator": _account,
        "tracked_accounts": lambda v: _variant_data_ok("Accounts", v),
    }[name](value)
    if not ok:
        raise ConfigFileIssue(f"{FILE_PREFIX}{name}: invalid value {json.dumps(value)}")
    return value


def tracked_shards(cfg: dict) -> TrackedShards:
    """`Config::tracked_shards_config()`: the new field if set, else the deprecated ones.

    from_deprecated_config_values: a non-empty `tracked_shards` means AllShards whatever it
    lists; then a non-empty `tracked_shard_schedule`, then `tracked_shadow_validator`, then
    `tracked_accounts` (even empty); nothing set means NoShards (`new_empty`).
    """
    if cfg.get("tracked_shards_config") is not None:
        return _deserialize_variant(cfg["tracked_shards_config"])
    legacy = {name: _deprecated(cfg, name) for name in DEPRECATED_IN_REPORT_ORDER}
    if legacy["tracked_shards"]:
        return TrackedShards("AllShards")
    if legacy["tracked_shard_schedule"]:
        return TrackedShards("Schedule", legacy["tracked_shard_schedule"])
    if legacy["tracked_shadow_validator"] is not None:
        return TrackedShards("ShadowValidator", legacy["tracked_shadow_validator"])
    if legacy["tracked_accounts"] is not None:
        return TrackedShards("Accounts", legacy["tracked_accounts"])
    return TrackedShards("NoShards")


def memtries_for_tracked_shards(cfg: dict) -> bool:
    """`store.load_mem_tries_for_tracked_shards`, default false (core/store/src/config.rs)."""
    store = cfg.get("store") or {}
    if not isinstance(store, dict):
        raise ConfigFileIssue(f"{FILE_PREFIX}store: invalid type, expected struct StoreConfig")
    value = store.get("load_mem_tries_for_tracked_shards", False)
    if not isinstance(value, bool):
        raise ConfigFileIssue(f"{FILE_PREFIX}store.load_mem_tries_for_tracked_shards: invalid type, expected a boolean")
    return value


def memtrie_shard_uids(cfg: dict) -> list[str]:
    """`store.load_mem_tries_for_shards`: explicit ShardUIds, default empty."""
    listed = (cfg.get("store") or {}).get("load_mem_tries_for_shards") or []
    if not isinstance(listed, list) or not all(_shard_uid(v) for v in listed):
        raise ConfigFileIssue(f"{FILE_PREFIX}store.load_mem_tries_for_shards: invalid value {json.dumps(listed)}")
    return listed


# --- config_validate.rs ------------------------------------------------------------------------


def _duration_ns(cfg: dict, name: str) -> int:
    raw = (cfg.get("consensus") or {}).get(name)
    if raw is None:
        return _DEFAULT_NS[name]
    if isinstance(raw, dict) and set(raw) == {"secs", "nanos"} and _u64(raw["secs"]) and _u64(raw["nanos"]):
        return raw["secs"] * _SECOND + raw["nanos"]
    if isinstance(raw, list) and len(raw) == 2 and all(_u64(x) for x in raw):
        return raw[0] * _SECOND + raw[1]
    raise ConfigFileIssue(f"{FILE_PREFIX}consensus.{name}: invalid type, expected struct Duration")


def _debug_duration(ns: int) -> str:
    """Rust's `{:?}` of a time::Duration, as config_validate.rs formats it."""
    return f"Duration {{ seconds: {ns // _SECOND}, nanoseconds: {ns % _SECOND} }}"


def _number(cfg: dict, section: str | None, name: str, default: int) -> int:
    holder = cfg if section is None else (cfg.get(section) or {})
    value = holder.get(name, default) if isinstance(holder, dict) else default
    if not _u64(value):
        raise ConfigFileIssue(f"{FILE_PREFIX}{name}: invalid type, expected u64")
    return value


def _semantic_problems(cfg: dict) -> list[str]:
    """config_validate.rs's ConfigValidator, in its order (validate_all_conditions)."""
    out: list[str] = []
    archive = cfg.get("archive", False)
    save_trie_changes = cfg.get("save_trie_changes")
    if not isinstance(archive, bool) or not (save_trie_changes is None or isinstance(save_trie_changes, bool)):
        raise ConfigFileIssue(f"{FILE_PREFIX}archive/save_trie_changes: invalid type, expected a boolean")
    # validate_cloud_archival_config: only its first rule (no cloud archival section set).
    if cfg.get("cloud_archival") is None and cfg.get("cloud_archival_writer") is not None:
        out.append("`cloud_archival_writer` is enabled, but `cloud_archival` is disabled.")
    # validate_cold_store_config
    if cfg.get("cold_store") is not None and save_trie_changes is not True:
        shown = "None" if save_trie_changes is None else f"Some({str(save_trie_changes).lower()})"
        out.append(f"cold_store is configured, but save_trie_changes is {shown}. Trie changes should be saved to support cold storage.")
    if not archive:
        if save_trie_changes is False:
            out.append(
                "Configuration with archive = false and save_trie_changes = false is not supported because "
                "non-archival nodes must save trie changes in order to do garbage collection."
            )
        if cfg.get("cold_store") is not None:
            out.append("`archive` is false, but `cold_store` is configured.")
        if cfg.get("split_storage") is not None:
            out.append("`archive` is false, but `split_storage` is configured.")
    # validate_state_sync_config: the compression level (dump locations are not emulated).
    state_sync = cfg.get("state_sync")
    if isinstance(state_sync, dict) and "parts_compression_lvl" in state_sync:
        level = state_sync["parts_compression_lvl"]
        if not isinstance(level, int) or isinstance(level, bool):
            raise ConfigFileIssue(f"{FILE_PREFIX}state_sync.parts_compression_lvl: invalid type, expected i32")
        if level < -22 or level > 22:
            out.append(f"'config.state_sync.dump.parts_compression_lvl': {level}, should be an integer between -22 and 22.")
    # validate_tracked_shards_config: `is_some()`, so an empty list conflicts too; null does not.
    if cfg.get("tracked_shards_config") is not None:
        for name in DEPRECATED_IN_REPORT_ORDER:
            if cfg.get(name) is not None:
                out.append(f"'config.{name}' and 'config.tracked_shards_config' cannot be both set. Please use 'config.tracked_shards_config' only.")
    low = _duration_ns(cfg, "min_block_production_delay")
    for upper in ("max_block_production_delay", "max_block_wait_delay"):
        high = _duration_ns(cfg, upper)
        if low > high:
            out.append(f"min_block_production_delay: {_debug_duration(low)} is greater than {upper}: {_debug_duration(high)}")
    if _number(cfg, "consensus", "header_sync_expected_height_per_second", 10) == 0:
        out.append("consensus.header_sync_expected_height_per_second should not be 0")
    limit, step, keep = (_number(cfg, None, n, d) for n, d in (("gc_blocks_limit", 2), ("gc_fork_clean_step", 100), ("gc_num_epochs_to_keep", 5)))
    if 0 in (limit, step, keep):
        out.append(f"gc config values should all be greater than 0, but gc_blocks_limit is {limit}, gc_fork_clean_step is {step}, gc_num_epochs_to_keep is {keep}.")
    horizon = _number(cfg, None, "tx_routing_height_horizon", 4)
    if horizon < 2:
        out.append(f"'config.tx_routing_height_horizon' needs to be at least 2, got {horizon}.")
    if horizon > 100:
        out.append(f"'config.tx_routing_height_horizon' can't be too high to avoid spamming the network. Keep it below 100. Got {horizon}.")
    return out


def validation_errors(cfg: dict) -> list[str]:
    """What `neard run` (and SIGHUP's reload) refuses the file for: [] when it would start.

    A field neard could not deserialise is one "config.json file issue" (the semantic checks
    never run on such a file); otherwise every semantic problem, each with its prefix.
    """
    try:
        tracked_shards(cfg)
        memtries_for_tracked_shards(cfg)
        memtrie_shard_uids(cfg)
        return [SEMANTIC_PREFIX + p for p in _semantic_problems(cfg)]
    except ConfigFileIssue as exc:
        return [str(exc)]


# --- unknown keys ------------------------------------------------------------------------------


def _known_shape() -> dict:
    """The struct shapes neard knows: the reconstructed `neard init` config (every field written)."""
    text = resources.files("near_failover.localnet").joinpath("templates/config.localnet.json").read_text()
    return json.loads(text)


def unknown_field_paths(cfg: dict, shape: dict | None = None) -> list[str]:
    """Dotted paths of keys neard would warn "encountered unrecognized fields" about, at any depth.

    A struct in the shape is checked key by key; an empty object in the shape is a map (such
    as `trie_cache.per_shard_max_bytes`) whose keys are data, so it is not looked into.
    """
    shape = _known_shape() if shape is None else shape
    found: list[str] = []

    def walk(value: dict, known: dict, path: str, optional: tuple[str, ...]) -> None:
        for key, sub in value.items():
            where = f"{path}.{key}" if path else key
            if key not in known:
                if key not in optional:
                    found.append(where)
                continue
            if isinstance(sub, dict) and isinstance(known[key], dict) and known[key]:
                walk(sub, known[key], where, _OPTIONAL_NESTED.get(where, ()))

    walk(cfg, shape, "", _OPTIONAL_TOP)
    return found


# --- role edits (for the homes `localnet up` writes) -------------------------------------------


def with_role(cfg: dict, tracking: Any, memtries: bool) -> dict:
    """The failover guide's two fields set, the deprecated tracking fields dropped (they would
    conflict with `tracked_shards_config`), every other key kept in place."""
    out = {k: v for k, v in cfg.items() if k not in DEPRECATED_IN_REPORT_ORDER}
    out["tracked_shards_config"] = tracking
    out["store"] = {**(out.get("store") or {}), "load_mem_tries_for_tracked_shards": memtries}
    return out


def dumps(cfg: dict) -> str:
    """serde_json's pretty format, as neard writes config.json."""
    return jsonc.dumps(cfg, indent=2)
