"""config.json as neard sees it: loading, effective shard tracking, role edits, checks, atomic writes.

Everything here is pure except `load_config` and `write_config`. Edits work on plain dicts that
keep the file's key order, so a rewrite changes only the fields a role needs and the operator can
diff the result against the original line by line.
"""

from __future__ import annotations

import copy
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeVar

from near_failover.limits import CONFIG_JSON, FileRejected, read_regular_file, read_regular_text
from near_failover.neard import jsonc
from near_failover.neard.account import account_id_problem

CONFIG_FILENAME: Final = "config.json"

# Prefixes of neard's ValidationError Display (utils/config/src/lib.rs; neard-behaviour §1.4).
SEMANTIC_ISSUE: Final = "config.json semantic issue: "
FILE_ISSUE: Final = "config.json file issue: "

# neard-behaviour §1.2: deprecated fields beside `tracked_shards_config`, in neard's priority order.
LEGACY_TRACKING_FIELDS: Final[tuple[str, ...]] = (
    "tracked_shards",
    "tracked_shard_schedule",
    "tracked_shadow_validator",
    "tracked_accounts",
)
# The order in which config_validate.rs reports conflicts (validate_tracked_shards_config).
_CONFLICT_REPORT_ORDER: Final = (
    "tracked_shards",
    "tracked_accounts",
    "tracked_shadow_validator",
    "tracked_shard_schedule",
)

TRACKING_UNIT_MODES: Final = ("NoShards", "AllShards")
TRACKING_DATA_MODES: Final = ("Shards", "ShadowValidator", "Schedule", "Accounts")
TRACKING_MODES: Final = TRACKING_UNIT_MODES + TRACKING_DATA_MODES

# Top-level keys in serde struct order of `Config` (nearcore/src/config.rs; neard-behaviour §1.5 and
# the reconstructed `neard init` fixture). Only used to place a key an edit has to add.
_TOP_LEVEL_ORDER: Final = (
    "genesis_file",
    "genesis_records_file",
    "validator_key_file",
    "node_key_file",
    "rpc",
    "rosetta_rpc",
    "telemetry",
    "network",
    "consensus",
    "tracked_accounts",
    "tracked_shadow_validator",
    "tracked_shards",
    "tracked_shard_schedule",
    "tracked_shards_config",
    "archive",
    "save_trie_changes",
    "save_tx_outcomes",
    "log_summary_style",
    "log_summary_period",
    "enable_multiline_logging",
    "gc_blocks_limit",
    "gc_fork_clean_step",
    "gc_num_epochs_to_keep",
    "gc_step_period",
    "view_client_threads",
    "state_request_throttle_period",
    "state_requests_per_throttle_period",
    "state_request_server_threads",
    "trie_viewer_state_size_limit",
    "max_gas_burnt_view",
    "store",
    "cold_store",
    "split_storage",
    "expected_shutdown",
    "state_sync",
    "epoch_sync",
    "transaction_pool_size_limit",
    "resharding_config",
    "tx_routing_height_horizon",
    "disable_tx_routing",
    "produce_chunk_add_transactions_time_limit",
    "chunk_distribution_network",
    "orphan_state_witness_pool_size",
    "orphan_state_witness_max_size",
    "max_loaded_contracts",
    "contract_cache_max_size",
    "save_latest_witnesses",
    "save_invalid_witnesses",
    "transaction_request_handler_threads",
    "contract_cache_path",
)
# `StoreConfig` field order (core/store/src/config.rs; neard-behaviour §1.3).
_STORE_ORDER: Final = (
    "path",
    "enable_statistics",
    "enable_statistics_export",
    "max_open_files",
    "col_state_cache_size",
    "col_flat_state_cache_size",
    "block_size",
    "trie_cache",
    "view_trie_cache",
    "enable_receipt_prefetching",
    "sweat_prefetch_receivers",
    "sweat_prefetch_senders",
    "claim_sweat_prefetch_config",
    "kaiching_prefetch_config",
    "load_mem_tries_for_shards",
    "load_mem_tries_for_tracked_shards",
    "state_snapshot_config",
)

MEMTRIES_FIELD: Final = "load_mem_tries_for_tracked_shards"

# Defaults neard uses when a field is absent (Config::default(); neard-behaviour §1.4, §1.5).
_NANOS_PER_SEC: Final = 1_000_000_000
_DEFAULT_MIN_BLOCK_PRODUCTION_DELAY_NS: Final = 600_000_000
_DEFAULT_MAX_BLOCK_PRODUCTION_DELAY_NS: Final = 2_000_000_000
_DEFAULT_MAX_BLOCK_WAIT_DELAY_NS: Final = 6_000_000_000
_DEFAULT_HEADER_SYNC_EXPECTED_HEIGHT_PER_SECOND: Final = 10
_DEFAULT_GC: Final = {"gc_blocks_limit": 2, "gc_fork_clean_step": 100, "gc_num_epochs_to_keep": 5}
_DEFAULT_TX_ROUTING_HEIGHT_HORIZON: Final = 4


class ConfigError(Exception):
    """config.json cannot be used as it is; the message names the file, the problem and the fix."""

    def __init__(self, message: str, source: str | os.PathLike[str] = CONFIG_FILENAME) -> None:
        self.source = str(source)
        self.problem = message
        super().__init__(f"{self.source}: {message}")


class _Missing:
    """Marks a field that one side of a diff does not have."""

    _instance: "_Missing | None" = None

    def __new__(cls) -> "_Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> "_Missing":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Missing":
        return self


MISSING: Final = _Missing()
"""Value reported by `config_diff` for a field that is absent on one side (renders as `<absent>`)."""


# --------------------------------------------------------------------------------------------
# Loading and writing


def parse_config_text(text: str, source: str = CONFIG_FILENAME) -> dict:
    """Parse config.json text as neard does: comments stripped, key order kept, object required."""
    problem: str | None = None
    value: object = None
    try:
        value = jsonc.loads(text)
    except jsonc.JsoncError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line is not None else ""
        problem = (
            f"invalid JSON{where}: {exc.problem}. neard refuses to start with this file; fix the "
            "syntax (comments with // or /* */ are allowed, trailing commas are not)."
        )
    if problem is not None:
        raise ConfigError(problem, source)
    if not isinstance(value, dict):
        raise ConfigError(
            f"the top level is a JSON {_json_type(value)}, but neard expects an object "
            '({"genesis_file": ..., ...}); restore the file from a backup or `neard init`.',
            source,
        )
    return value


def validator_key_file(cfg: dict, home: PurePosixPath) -> PurePosixPath:
    """Where neard loads the validator key: ``<home>/<validator_key_file>`` at start and on every
    SIGHUP (nearcore/src/dyn_config.rs, nearcore/src/config.rs); a path join, so an absolute
    ``validator_key_file`` is used as it is."""
    name = cfg.get("validator_key_file")
    return home / (name if isinstance(name, str) and name else "validator_key.json")


def rpc_port(cfg: dict) -> int | None:
    """The port of config.json's ``rpc.addr`` ("0.0.0.0:3030"), or None without an RPC server."""
    rpc = cfg.get("rpc")
    addr = rpc.get("addr") if isinstance(rpc, dict) else None
    if not isinstance(addr, str) or ":" not in addr:
        return None
    port = addr.rsplit(":", 1)[1]
    return int(port) if port.isdigit() else None


def load_config(path: Path) -> dict:
    """Read and parse `path`; every failure is a ConfigError naming the file."""
    path = Path(path)
    problem: str | None = None
    text = ""
    try:
        text = read_regular_text(path, CONFIG_JSON)
    except FileRejected as exc:
        problem = f"{exc.strerror}."
    except FileNotFoundError:
        problem = "does not exist; point --home at neard's home directory (the one with config.json)."
    except IsADirectoryError:
        problem = "is a directory, not a file; point --home at neard's home directory."
    except PermissionError:
        problem = "cannot be read (permission denied); run as the user that runs neard, or fix its mode."
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text (byte {exc.start}); neard cannot read it. Restore it from a backup."
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror}); check the disk and the path."
    if problem is not None:
        raise ConfigError(problem, path)
    return parse_config_text(text, str(path))


def dumps_config(cfg: dict) -> str:
    """neard's format (serde_json pretty): 2-space indent, UTF-8 kept, no trailing newline (§1.5)."""
    return jsonc.dumps(cfg, indent=2)


AnyPath = TypeVar("AnyPath", Path, PurePosixPath)  # a local file, or one on a node's host


def backup_name(path: AnyPath, when: datetime | None = None) -> AnyPath:
    """`config.json.<UTC YYYYmmddTHHMMSSffffffZ>.bak` beside `path`."""
    when = when or datetime.now(timezone.utc)
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return path.with_name(f"{path.name}.{stamp}.bak")


def file_has_comments(path: Path) -> bool:
    """Whether the config file at ``path`` holds comments, which a rewrite in neard's format
    drops; an unreadable file counts as none (its reader reports it)."""
    try:
        return jsonc.has_comments(read_regular_text(path, CONFIG_JSON))
    except (OSError, UnicodeDecodeError):
        return False


def write_config(path: Path, cfg: dict) -> Path | None:
    """Replace `path` atomically with `cfg` in neard's format; return the backup of the old file.

    Order: backup (fsynced) -> temp file in the same directory (fsynced, original mode and owner)
    -> os.replace -> fsync of the directory. A crash at any point leaves either the old or the new
    file, never a torn one, and the old text is already safe in the backup. A symlinked config.json
    is written through to its target so the link survives.
    """
    path = Path(path)
    text = dumps_config(cfg)
    target = Path(os.path.realpath(path))
    directory = target.parent
    try:
        old_stat: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        old_stat = None
    except OSError as exc:
        raise ConfigError(f"cannot be inspected before writing ({exc.strerror}).", path) from None

    backup: Path | None = None
    if old_stat is not None:
        if not stat.S_ISREG(old_stat.st_mode):
            raise ConfigError("is not a regular file; refusing to replace it.", path)
        backup = _write_backup(target, old_stat, path)
    mode = stat.S_IMODE(old_stat.st_mode) if old_stat is not None else 0o644

    tmp = directory / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot create a temporary file in {directory} ({exc.strerror}); the directory must be "
            "writable by this user.",
            path,
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            if old_stat is not None:
                _keep_owner(handle.fileno(), old_stat)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise ConfigError(f"could not be written ({exc.strerror}); the old file is unchanged.", path) from None
    _fsync_dir(directory)
    return backup


def _write_backup(target: Path, old_stat: os.stat_result, shown: Path) -> Path:
    try:
        old_bytes = read_regular_file(target, CONFIG_JSON)
    except OSError as exc:
        raise ConfigError(f"cannot be read for the backup ({exc.strerror}); nothing was changed.", shown) from None
    mode = stat.S_IMODE(old_stat.st_mode)
    when = datetime.now(timezone.utc)
    for _attempt in range(100):
        backup = backup_name(target, when)
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            when = when.replace(microsecond=(when.microsecond + 1) % 1_000_000)
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot create the backup {backup.name} ({exc.strerror}); nothing was changed. "
                f"Run as a user that can write {target.parent} (on a read-only file system, remount "
                "it read-write first).",
                shown,
            ) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(old_bytes)
            handle.flush()
            _keep_owner(handle.fileno(), old_stat)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        _fsync_dir(target.parent)
        return backup
    raise ConfigError("cannot find a free backup name; remove old config.json.*.bak files.", shown)


def _keep_owner(fd: int, old_stat: os.stat_result) -> None:
    if (old_stat.st_uid, old_stat.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(fd, old_stat.st_uid, old_stat.st_gid)
    except PermissionError:
        # Only root may give a file away; an unprivileged editor keeps ownership of what it writes,
        # which is what `cp` + `mv` by the same user would do.
        pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------------------------
# Effective tracking (neard-behaviour §1.1, §1.2)


@dataclass(frozen=True)
class Tracking:
    """What the node tracks after neard resolves `tracked_shards_config` and the legacy fields."""

    mode: str  # "NoShards"|"AllShards"|"Shards"|"ShadowValidator"|"Schedule"|"Accounts"
    value: object | None  # pool id for ShadowValidator, list for Shards/Schedule/Accounts
    source: str  # "tracked_shards_config", a legacy field name, or "default"

    def to_json(self) -> object:
        """serde's external tagging: unit variants as bare strings, others as single-key objects."""
        if self.mode in TRACKING_UNIT_MODES:
            return self.mode
        return {self.mode: copy.deepcopy(self.value)}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _file_issue(message: str) -> ConfigError:
    return ConfigError(FILE_ISSUE + message)


def _account_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected an account id string, got a JSON {_json_type(value)}"
    if "\n" in value:
        return f"{value!r} is not a NEAR account id"
    return account_id_problem(value)


def _is_shard_uid(value: object) -> bool:
    # ShardUId is written "s<shard_id>.v<version>"; the object form is also accepted (§1.1).
    if isinstance(value, str):
        head, _, version = value.partition(".v")
        return head.startswith("s") and head[1:].isdigit() and version.isdigit()
    if isinstance(value, dict):
        return set(value) == {"version", "shard_id"} and all(_is_uint(v) for v in value.values())
    return False


def _parse_tracking_variant(raw: object) -> Tracking:
    field = "tracked_shards_config"
    expected = "expected one of " + ", ".join(f"`{m}`" for m in TRACKING_MODES)
    if isinstance(raw, str):
        if raw in TRACKING_UNIT_MODES:
            return Tracking(raw, None, field)
        if raw in TRACKING_DATA_MODES:
            raise _file_issue(
                f"'{field}': `{raw}` needs a value, e.g. {{\"{raw}\": ...}}; "
                'write "AllShards", "NoShards" or {"ShadowValidator": "<pool id>"}.'
            )
        raise _file_issue(f"'{field}': unknown variant `{raw}`, {expected}.")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise _file_issue(
            f"'{field}' must be a string such as \"AllShards\" or an object with one key such as "
            f'{{"ShadowValidator": "<pool id>"}}, got a JSON {_json_type(raw)}'
            + (f" with {len(raw)} keys" if isinstance(raw, dict) else "")
            + "."
        )
    ((mode, value),) = raw.items()
    if mode in TRACKING_UNIT_MODES:
        if value is not None:
            raise _file_issue(f"'{field}': `{mode}` takes no value; write \"{mode}\".")
        return Tracking(mode, None, field)
    if mode not in TRACKING_DATA_MODES:
        raise _file_issue(f"'{field}': unknown variant `{mode}`, {expected}.")
    problem = _variant_value_problem(mode, value)
    if problem:
        raise _file_issue(f"'{field}.{mode}': {problem}.")
    return Tracking(mode, copy.deepcopy(value), field)


def _variant_value_problem(mode: str, value: object) -> str | None:
    if mode == "ShadowValidator":
        return _account_problem(value)
    if not isinstance(value, list):
        return f"expected an array, got a JSON {_json_type(value)}"
    if mode == "Shards":
        if not all(_is_shard_uid(v) for v in value):
            return 'expected shard uids such as "s0.v3"'
    elif mode == "Schedule":
        if not all(isinstance(row, list) and all(_is_uint(s) for s in row) for row in value):
            return "expected an array of arrays of shard ids, e.g. [[0], [1, 2]]"
    elif mode == "Accounts":
        for account in value:
            problem = _account_problem(account)
            if problem:
                return problem
    return None


def _legacy_value(cfg: dict, field: str) -> object | None:
    """The legacy field's value as neard sees it (`null` is serde's None), type-checked."""
    value = cfg.get(field)
    if value is None:
        return None
    if field == "tracked_shadow_validator":
        problem = _account_problem(value)
    elif field == "tracked_shards":
        problem = None if isinstance(value, list) and all(_is_uint(v) for v in value) else (
            "expected an array of shard ids such as [0]"
        )
    elif field == "tracked_shard_schedule":
        problem = _variant_value_problem("Schedule", value)
    else:
        problem = _variant_value_problem("Accounts", value)
    if problem:
        raise _file_issue(f"'{field}': {problem}; better, replace it with 'tracked_shards_config'.")
    return value


def effective_tracking(cfg: dict) -> Tracking:
    """neard's `Config::tracked_shards_config()` (neard-behaviour §1.2).

    The new field wins; otherwise a non-empty `tracked_shards` means AllShards whatever it lists,
    then a non-empty `tracked_shard_schedule`, `tracked_shadow_validator`, `tracked_accounts`
    (even empty), and finally NoShards.
    """
    raw = cfg.get("tracked_shards_config")
    if raw is not None:
        return _parse_tracking_variant(raw)
    shards = _legacy_value(cfg, "tracked_shards")
    if shards:
        return Tracking("AllShards", None, "tracked_shards")
    schedule = _legacy_value(cfg, "tracked_shard_schedule")
    if schedule:
        return Tracking("Schedule", copy.deepcopy(schedule), "tracked_shard_schedule")
    shadow = _legacy_value(cfg, "tracked_shadow_validator")
    if shadow is not None:
        return Tracking("ShadowValidator", shadow, "tracked_shadow_validator")
    accounts = _legacy_value(cfg, "tracked_accounts")
    if accounts is not None:
        return Tracking("Accounts", copy.deepcopy(accounts), "tracked_accounts")
    return Tracking("NoShards", None, "default")


def memtries_enabled(cfg: dict) -> bool:
    """`store.load_mem_tries_for_tracked_shards`, default false (neard-behaviour §1.3)."""
    store = cfg.get("store")
    if store is None:
        return False
    if not isinstance(store, dict):
        raise _file_issue(f"'store' must be an object, got a JSON {_json_type(store)}.")
    value = store.get(MEMTRIES_FIELD, False)
    if not isinstance(value, bool):
        raise _file_issue(f"'store.{MEMTRIES_FIELD}' must be true or false, got a JSON {_json_type(value)}.")
    return value


def legacy_fields_present(cfg: dict) -> list[str]:
    """Legacy tracking fields neard considers set (present and not null), in LEGACY_TRACKING_FIELDS order."""
    return [field for field in LEGACY_TRACKING_FIELDS if cfg.get(field) is not None]


# --------------------------------------------------------------------------------------------
# Roles (failover guide Option 1 / Option 2; DESIGN.md neard/)


class Role(str, Enum):
    VALIDATOR = "validator"
    RPC_STANDBY = "rpc-standby"
    HOT_SWAP_STANDBY = "hot-swap-standby"
    OTHER = "other"


def classify_role(cfg: dict) -> Role:
    """Which of the guide's settings the file has in effect (tracking as neard resolves it + memtries)."""
    tracking = effective_tracking(cfg)
    memtries = memtries_enabled(cfg)
    if tracking.mode == "NoShards" and memtries:
        return Role.VALIDATOR
    if tracking.mode == "AllShards" and not memtries:
        return Role.RPC_STANDBY
    if tracking.mode == "ShadowValidator" and memtries:
        return Role.HOT_SWAP_STANDBY
    return Role.OTHER


def as_rpc_standby(cfg: dict) -> dict:
    """Option 1 standby: `"AllShards"`, memtries off."""
    return _with_role_settings(cfg, "AllShards", memtries=False)


def as_hot_swap_standby(cfg: dict, validator_id: str) -> dict:
    """Option 2 standby: `{"ShadowValidator": validator_id}`, memtries on."""
    problem = _account_problem(validator_id)
    if problem:
        raise ConfigError(
            f"cannot shadow validator: {problem}. Pass the pool account id, e.g. example-pool.poolv1.near."
        )
    return _with_role_settings(cfg, {"ShadowValidator": validator_id}, memtries=True)


def as_validator(cfg: dict) -> dict:
    """Validator (also Option 1 promotion): `"NoShards"`, memtries on."""
    return _with_role_settings(cfg, "NoShards", memtries=True)


def _with_role_settings(cfg: dict, tracking: object, memtries: bool) -> dict:
    """A deep copy with only the two guide fields set and the legacy fields dropped.

    neard refuses `tracked_shards_config` together with any legacy field (§1.2), so an edit that
    sets the new field must remove them. Keys the edit adds go where neard's struct order puts them.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"expected a JSON object, got a JSON {_json_type(cfg)}.")
    store = cfg.get("store")
    if store is not None and not isinstance(store, dict):
        raise _file_issue(f"'store' must be an object, got a JSON {_json_type(store)}; fix it by hand first.")
    new = {key: copy.deepcopy(value) for key, value in cfg.items() if key not in LEGACY_TRACKING_FIELDS}
    new = _set_ordered(new, "tracked_shards_config", copy.deepcopy(tracking), _TOP_LEVEL_ORDER)
    new_store = _set_ordered(dict(new.get("store") or {}), MEMTRIES_FIELD, memtries, _STORE_ORDER)
    return _set_ordered(new, "store", new_store, _TOP_LEVEL_ORDER)


def _set_ordered(obj: dict, key: str, value: object, order: tuple[str, ...]) -> dict:
    """Set `key` in place if present, else insert it where `order` (serde struct order) puts it."""
    if key in obj:
        result = dict(obj)
        result[key] = value
        return result
    index = order.index(key)
    before, after = set(order[:index]), set(order[index + 1 :])
    keys = list(obj)
    position = len(keys)
    preceding = [i for i, k in enumerate(keys) if k in before]
    if preceding:
        position = preceding[-1] + 1
    else:
        following = [i for i, k in enumerate(keys) if k in after]
        if following:
            position = following[0]
    items = list(obj.items())
    items.insert(position, (key, value))
    return dict(items)


# --------------------------------------------------------------------------------------------
# Semantic checks (nearcore/src/config_validate.rs; neard-behaviour §1.4)


def _duration_nanos(cfg: dict, section: str | None, field: str, default: int) -> int:
    """A `{"secs", "nanos"}` duration (serde std::time::Duration; `[secs, nanos]` also accepted)."""
    container = cfg if section is None else cfg.get(section)
    name = field if section is None else f"{section}.{field}"
    if container is None:
        return default
    if not isinstance(container, dict):
        raise _file_issue(f"'{section}' must be an object, got a JSON {_json_type(container)}.")
    if field not in container:
        return default
    raw = container[field]
    if isinstance(raw, dict) and set(raw) == {"secs", "nanos"}:
        secs, nanos = raw["secs"], raw["nanos"]
    elif isinstance(raw, list) and len(raw) == 2:
        secs, nanos = raw
    else:
        raise _file_issue(f"'{name}' must be a duration like {{\"secs\": 1, \"nanos\": 0}}.")
    if not (_is_uint(secs) and _is_uint(nanos) and nanos < 2**32):
        raise _file_issue(f"'{name}': secs and nanos must be non-negative integers.")
    return secs * _NANOS_PER_SEC + nanos


def _uint(cfg: dict, section: str | None, field: str, default: int) -> int:
    container = cfg if section is None else cfg.get(section)
    name = field if section is None else f"{section}.{field}"
    if not isinstance(container, dict) or field not in container:
        return default
    value = container[field]
    if not _is_uint(value):
        raise _file_issue(f"'{name}' must be a non-negative integer, got a JSON {_json_type(value)}.")
    return value


def format_duration_debug(nanos: int) -> str:
    """Rust `Debug` of a time::Duration, as neard prints it in validation messages."""
    return f"Duration {{ seconds: {nanos // _NANOS_PER_SEC}, nanoseconds: {nanos % _NANOS_PER_SEC} }}"


def _option_bool_debug(value: object) -> str:
    if value is None:
        return "None"
    return f"Some({str(value).lower()})"


def semantic_errors(cfg: dict) -> list[str]:
    """neard's config.json checks, each message exactly as neard prints it.

    Semantic problems come as "config.json semantic issue: ..." in config_validate.rs's order; a
    field with the wrong type, which neard would fail to deserialise, comes as a single
    "config.json file issue: ..." (the semantic checks cannot run on such a file).
    Not mirrored: cloud-archival rules and state-sync dump locations (no failover role uses them).
    """
    try:
        return _semantic_errors(cfg)
    except ConfigError as exc:
        return [exc.problem]


def _semantic_errors(cfg: dict) -> list[str]:
    errors: list[str] = []

    def issue(message: str) -> None:
        errors.append(SEMANTIC_ISSUE + message)

    # validate_cold_store_config
    archive = cfg.get("archive", False)
    if not isinstance(archive, bool):
        raise _file_issue(f"'archive' must be true or false, got a JSON {_json_type(archive)}.")
    save_trie_changes = cfg.get("save_trie_changes")
    if save_trie_changes is not None and not isinstance(save_trie_changes, bool):
        raise _file_issue("'save_trie_changes' must be true, false or null.")
    cold_store = cfg.get("cold_store")
    if cold_store is not None and save_trie_changes is not True:
        issue(
            f"cold_store is configured, but save_trie_changes is {_option_bool_debug(save_trie_changes)}. "
            "Trie changes should be saved to support cold storage."
        )
    if not archive:
        if save_trie_changes is False:
            issue(
                "Configuration with archive = false and save_trie_changes = false is not supported "
                "because non-archival nodes must save trie changes in order to do garbage collection."
            )
        if cold_store is not None:
            issue("`archive` is false, but `cold_store` is configured.")
        if cfg.get("split_storage") is not None:
            issue("`archive` is false, but `split_storage` is configured.")

    # validate_state_sync_config (compression level only)
    state_sync = cfg.get("state_sync")
    if isinstance(state_sync, dict) and "parts_compression_lvl" in state_sync:
        level = state_sync["parts_compression_lvl"]
        if not isinstance(level, int) or isinstance(level, bool):
            raise _file_issue("'state_sync.parts_compression_lvl' must be an integer.")
        if not -22 <= level <= 22:
            issue(f"'config.state_sync.dump.parts_compression_lvl': {level}, should be an integer between -22 and 22.")

    # validate_tracked_shards_config
    if cfg.get("tracked_shards_config") is not None:
        for field in _CONFLICT_REPORT_ORDER:
            if cfg.get(field) is not None:
                issue(
                    f"'config.{field}' and 'config.tracked_shards_config' cannot be both set. "
                    "Please use 'config.tracked_shards_config' only."
                )

    # consensus timing
    min_delay = _duration_nanos(cfg, "consensus", "min_block_production_delay", _DEFAULT_MIN_BLOCK_PRODUCTION_DELAY_NS)
    max_delay = _duration_nanos(cfg, "consensus", "max_block_production_delay", _DEFAULT_MAX_BLOCK_PRODUCTION_DELAY_NS)
    max_wait = _duration_nanos(cfg, "consensus", "max_block_wait_delay", _DEFAULT_MAX_BLOCK_WAIT_DELAY_NS)
    if min_delay > max_delay:
        issue(
            f"min_block_production_delay: {format_duration_debug(min_delay)} is greater than "
            f"max_block_production_delay: {format_duration_debug(max_delay)}"
        )
    if min_delay > max_wait:
        issue(
            f"min_block_production_delay: {format_duration_debug(min_delay)} is greater than "
            f"max_block_wait_delay: {format_duration_debug(max_wait)}"
        )
    height_per_second = _uint(
        cfg, "consensus", "header_sync_expected_height_per_second", _DEFAULT_HEADER_SYNC_EXPECTED_HEIGHT_PER_SECOND
    )
    if height_per_second == 0:
        issue("consensus.header_sync_expected_height_per_second should not be 0")

    # gc (flattened into the top level)
    gc = {field: _uint(cfg, None, field, default) for field, default in _DEFAULT_GC.items()}
    if 0 in gc.values():
        issue(
            "gc config values should all be greater than 0, but "
            f"gc_blocks_limit is {gc['gc_blocks_limit']}, gc_fork_clean_step is {gc['gc_fork_clean_step']}, "
            f"gc_num_epochs_to_keep is {gc['gc_num_epochs_to_keep']}."
        )

    horizon = _uint(cfg, None, "tx_routing_height_horizon", _DEFAULT_TX_ROUTING_HEIGHT_HORIZON)
    if horizon < 2:
        issue(f"'config.tx_routing_height_horizon' needs to be at least 2, got {horizon}.")
    if horizon > 100:
        issue(
            "'config.tx_routing_height_horizon' can't be too high to avoid spamming the network. "
            f"Keep it below 100. Got {horizon}."
        )

    # Tracking values that neard could not deserialise are file issues, as in neard.
    effective_tracking(cfg)
    memtries_enabled(cfg)
    return errors


# --------------------------------------------------------------------------------------------
# Diff


def config_diff(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """Changed leaves as (dotted path, old, new); MISSING stands for an absent field.

    Objects are compared key by key (old's order, then keys only in new); arrays and scalars as
    whole values, because a partial array diff says little about a config setting.
    """
    changes: list[tuple[str, object, object]] = []
    _diff_into(old, new, "", changes)
    return changes


def _is_record(value: object) -> bool:
    """A JSON object to diff field by field; an enum value such as {"ShadowValidator": id} is a leaf."""
    if not isinstance(value, dict) or not value:
        return False
    if len(value) == 1:
        (key,) = value
        return not key[:1].isupper()
    return True


def _diff_into(old: object, new: object, prefix: str, changes: list[tuple[str, object, object]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict) and (_is_record(old) or _is_record(new)):
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else key
            _diff_into(old.get(key, MISSING), new.get(key, MISSING), path, changes)
        return
    if old is MISSING and isinstance(new, dict) and _is_record(new):
        for key, value in new.items():
            _diff_into(MISSING, value, f"{prefix}.{key}" if prefix else key, changes)
        return
    if new is MISSING and isinstance(old, dict) and _is_record(old):
        for key, value in old.items():
            _diff_into(value, MISSING, f"{prefix}.{key}" if prefix else key, changes)
        return
    if not _json_equal(old, new):
        changes.append((prefix, copy.deepcopy(old), copy.deepcopy(new)))


def _json_equal(a: object, b: object) -> bool:
    """Equality as JSON sees it: true is not 1, 1 is not 1.0, key order does not matter."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return isinstance(a, float) == isinstance(b, float) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
