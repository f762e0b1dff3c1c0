"""Lint a neard home (and optionally its running process) against a failover role.

Each rule says what is wrong, why (the failover guide or neard's own behaviour) and how to fix
it, so an operator can act on a finding at 3 a.m. without reading nearcore. The rules are pure
functions of what was read; reading is done by `read_home` and by the caller's RPC client.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from near_failover.limits import GENESIS_PREFIX, read_regular_file
from near_failover.neard.config import (
    ConfigError,
    Role,
    Tracking,
    effective_tracking,
    legacy_fields_present,
    load_config,
    memtries_enabled,
    semantic_errors,
)
from near_failover.neard.keys import KeyFile, KeyFileError, load_key_file, permission_problems

# The AllShards panic applies only to these chain ids (nearcore/src/config_validate.rs).
PUBLIC_CHAINS = ("mainnet", "testnet")


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    what: str
    why: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(self).items()}


@dataclass
class HomeFacts:
    """What was read from a neard home: the inputs of every home rule."""

    home: Path
    config: dict[str, Any] | None = None
    config_error: str | None = None
    key_path: Path | None = None
    key: KeyFile | None = None
    key_error: str | None = None
    key_permission_problems: list[str] = field(default_factory=list)
    node_key_present: bool = True
    chain_id: str | None = None


def read_home(home: Path, chain_id: str | None = None) -> HomeFacts:
    """Read config.json, the validator key and genesis chain id; errors become facts, not raises."""
    facts = HomeFacts(home=home, chain_id=chain_id)
    config_path = home / "config.json"
    try:
        facts.config = load_config(config_path)
    except ConfigError as exc:
        facts.config_error = str(exc)
        return facts
    key_name = facts.config.get("validator_key_file") or "validator_key.json"
    node_key_name = facts.config.get("node_key_file") or "node_key.json"
    facts.key_path = home / key_name
    facts.node_key_present = (home / node_key_name).exists()
    if facts.key_path.exists():
        facts.key_permission_problems = permission_problems(facts.key_path)
        try:
            facts.key = load_key_file(facts.key_path)
        except KeyFileError as exc:
            facts.key_error = str(exc)
    if facts.chain_id is None:
        facts.chain_id = _genesis_chain_id(home / (facts.config.get("genesis_file") or "genesis.json"))
    return facts


def _genesis_chain_id(path: Path) -> str | None:
    try:
        # genesis.json can be gigabytes; chain_id sits near the top, so a prefix scan is enough.
        head = read_regular_file(path, GENESIS_PREFIX, prefix=True)
        marker = b'"chain_id"'
        i = head.find(marker)
        if i < 0:
            return None
        rest = head[i + len(marker) :].lstrip().lstrip(b":").lstrip()
        return json.JSONDecoder().raw_decode(rest.decode("utf-8", "replace"))[0]
    except (OSError, ValueError):
        return None


def check_home(facts: HomeFacts, role: Role, validator_id: str | None = None) -> list[Finding]:
    """The rules for a home on disk; `role` is what the operator wants this node to be."""
    cfg_file = facts.home / "config.json"
    if facts.config is None:
        return [
            Finding(
                Severity.ERROR,
                f"{cfg_file} cannot be read: {facts.config_error}",
                "neard refuses to start without a valid config.json (nearcore: nearcore/src/config_validate.rs).",
                "Fix the file, or restore the latest config.json.*.bak beside it.",
            )
        ]
    cfg = facts.config
    found: list[Finding] = []
    for err in semantic_errors(cfg):
        found.append(
            Finding(
                Severity.ERROR,
                f"{cfg_file}: {err}",
                "neard runs this check at start and on SIGHUP: it refuses to start, and a SIGHUP "
                "reload fails as a whole, so a hot swap would not load the key (nearcore: nearcore/src/config_validate.rs and nearcore/src/dyn_config.rs).",
                "Fix the field as the message says.",
            )
        )
    tracking = effective_tracking(cfg)
    legacy = legacy_fields_present(cfg)
    if legacy and "tracked_shards_config" not in cfg:
        found.append(
            Finding(
                Severity.WARNING,
                f"{cfg_file} uses the deprecated field(s) {', '.join(legacy)} (effective: {_show(tracking)})",
                "neard still honours them (nearcore: nearcore/src/config.rs), but the failover guide uses tracked_shards_config "
                "and setting both makes neard refuse to start.",
                f"Run `near-failover config {_edit_command(role)} --home {facts.home}`, which "
                "writes tracked_shards_config and removes the legacy fields.",
            )
        )
    found += _key_rules(facts, role, validator_id)
    found += _role_rules(facts, cfg, tracking, role, validator_id)
    if not facts.node_key_present:
        found.append(
            Finding(
                Severity.WARNING,
                f"{facts.home} has no node_key.json",
                "node_key.json is the node's network identity; neard creates a new one at start, "
                "and peers then see a new node (guide: do not swap node_key.json).",
                "Keep this node's own node_key.json; never copy the primary's.",
            )
        )
    return found


def _show(t: Tracking) -> str:
    return json.dumps(t.to_json())


def _edit_command(role: Role) -> str:
    return {
        Role.VALIDATOR: "promote",
        Role.RPC_STANDBY: "standby --mode rpc",
        Role.HOT_SWAP_STANDBY: "standby --mode hot-swap --validator-id <pool id>",
    }.get(role, "show")


def _key_rules(facts: HomeFacts, role: Role, validator_id: str | None) -> list[Finding]:
    found: list[Finding] = []
    key_path = facts.key_path
    present = key_path is not None and key_path.exists()
    if present and role in (Role.RPC_STANDBY, Role.HOT_SWAP_STANDBY):
        found.append(
            Finding(
                Severity.ERROR,
                f"standby home holds a validator key: {key_path}",
                "neard loads validator_key.json at start and on every SIGHUP (nearcore: core/chain-configs/src/updatable_config.rs): this standby "
                "would sign beside the primary: two signers for one account produce conflicting blocks and chunks.",
                "Move it out of the home (e.g. `near-failover keys stage`), then keep it only in "
                "the node's key_store outside the home.",
            )
        )
    if role == Role.VALIDATOR and not present:
        found.append(
            Finding(
                Severity.ERROR,
                f"validator home has no key file: {key_path}",
                "Without validator_key.json neard runs as a non-validator and signs nothing (nearcore: core/crypto/src/key_file.rs).",
                "Put the pool's validator_key.json in the home (mode 0600), or run a switchover to this node.",
            )
        )
    if facts.key_error:
        found.append(
            Finding(
                Severity.ERROR,
                facts.key_error,
                "neard refuses to start with an invalid key file, and a SIGHUP reload fails as a "
                "whole, keeping the old signer (nearcore: core/chain-configs/src/updatable_config.rs and core/crypto/src/key_file.rs).",
                "Replace it with a valid copy of the pool's key.",
            )
        )
    if facts.key_permission_problems:
        found.append(
            Finding(
                Severity.ERROR,
                "; ".join(facts.key_permission_problems),
                "The validator key lets anyone who reads it sign for the pool; neard writes it with mode 0600 (nearcore: core/crypto/src/key_file.rs).",
                f"chmod 600 {key_path}",
            )
        )
    if facts.key and validator_id and facts.key.account_id != validator_id:
        found.append(
            Finding(
                Severity.ERROR,
                f"{key_path} holds a key for {facts.key.account_id}, not {validator_id}",
                "neard does not check the account at load; a key for another account makes the "
                "node a non-validator, or panic at the epoch key check (nearcore: nearcore/src/config_validate.rs and core/crypto/src/key_file.rs).",
                f"Use the key of {validator_id}.",
            )
        )
    return found


def _role_rules(
    facts: HomeFacts, cfg: dict[str, Any], tracking: Tracking, role: Role, validator_id: str | None
) -> list[Finding]:
    found: list[Finding] = []
    memtries = memtries_enabled(cfg)
    cfg_file = facts.home / "config.json"
    fix_cmd = f"near-failover config {_edit_command(role)} --home {facts.home}"
    if role == Role.HOT_SWAP_STANDBY:
        if tracking.mode != "ShadowValidator":
            found.append(
                Finding(
                    Severity.ERROR,
                    f"{cfg_file} tracks {_show(tracking)}, not a ShadowValidator",
                    "Option 2 needs {\"ShadowValidator\": \"<pool id>\"} so the standby already holds "
                    "the pool's shards when SIGHUP loads the key (guide, Option 2).",
                    fix_cmd.replace("<pool id>", validator_id or "<pool id>"),
                )
            )
        elif validator_id and tracking.value != validator_id:
            found.append(
                Finding(
                    Severity.ERROR,
                    f"{cfg_file} shadows {tracking.value}, not {validator_id}",
                    "The standby follows the shards of the shadowed account; after a hot swap it "
                    "would lack the pool's shard state and miss chunks (nearcore: core/chain-configs/src/client_config.rs).",
                    fix_cmd.replace("<pool id>", validator_id),
                )
            )
        if not memtries:
            found.append(
                Finding(
                    Severity.ERROR,
                    f"{cfg_file}: store.load_mem_tries_for_tracked_shards is false on a hot-swap standby",
                    "Memtries load only at start (nearcore: nearcore/src/dyn_config.rs and core/store/src/trie/shard_tries.rs): without them the promoted node falls "
                    "behind on chunks until a restart, which Option 2 exists to avoid.",
                    fix_cmd.replace("<pool id>", validator_id or "<pool id>"),
                )
            )
    elif role == Role.RPC_STANDBY:
        if tracking.mode != "AllShards":
            found.append(
                Finding(
                    Severity.ERROR,
                    f"{cfg_file} tracks {_show(tracking)}, not AllShards",
                    "Option 1's standby tracks all shards so it can become the validator for "
                    "whichever shards the pool is assigned (guide, Option 1).",
                    fix_cmd,
                )
            )
        if memtries:
            found.append(
                Finding(
                    Severity.ERROR,
                    f"{cfg_file}: store.load_mem_tries_for_tracked_shards is true on an rpc standby",
                    "Memtries for every shard need several hundred GB of RAM; the guide sets them "
                    "off on an AllShards standby (nearcore: core/store/src/trie/shard_tries.rs).",
                    fix_cmd,
                )
            )
    elif role == Role.VALIDATOR:
        if tracking.mode == "AllShards" and facts.chain_id in PUBLIC_CHAINS:
            found.append(
                Finding(
                    Severity.ERROR,
                    f"{cfg_file} tracks AllShards on {facts.chain_id}",
                    "neard panics at start and on key hot-load: \"validator must not track all "
                    "shards. Please set `tracked_shards_config` field in `config.json` to "
                    "\\\"NoShards\\\".\" (nearcore: nearcore/src/config_validate.rs)",
                    fix_cmd,
                )
            )
        elif tracking.mode != "NoShards":
            found.append(
                Finding(
                    Severity.WARNING,
                    f"{cfg_file} tracks {_show(tracking)} on a validator",
                    "A validator tracks its own shards anyway; extra shards cost memory and sync "
                    "time (nearcore: core/chain-configs/src/client_config.rs). The guide sets NoShards.",
                    fix_cmd,
                )
            )
        if not memtries:
            found.append(
                Finding(
                    Severity.WARNING,
                    f"{cfg_file}: store.load_mem_tries_for_tracked_shards is false on a validator",
                    "Validators without memtries fall behind on chunks (node-docs: \"Always Kicked "
                    "Issue\"; nearcore: core/store/src/config.rs).",
                    fix_cmd,
                )
            )
    return found


def check_running(
    facts: HomeFacts,
    role: Role,
    validator_id: str | None,
    status: Any,
    client_config: Any | None,
) -> list[Finding]:
    """Rules that compare the running process (its `status` and `client_config`) with the home."""
    found: list[Finding] = []
    node = status.rpc_addr or str(facts.home)
    if facts.chain_id and status.chain_id != facts.chain_id:
        found.append(
            Finding(
                Severity.ERROR,
                f"node at {node} runs chain {status.chain_id}, expected {facts.chain_id}",
                "A node on another chain cannot take over this validator.",
                "Point --rpc at the node of this home, or pass the right --chain-id.",
            )
        )
    if status.sync_info.syncing:
        found.append(
            Finding(
                Severity.ERROR,
                f"node at {node} is syncing (head {status.sync_info.latest_block_height})",
                "A syncing node cannot sign; a failover to it would miss every duty until it "
                "catches up (nearcore issue #12030; core/store/src/trie/shard_tries.rs).",
                "Wait until `syncing` is false before relying on this node.",
            )
        )
    loaded = status.validator_account_id
    if role in (Role.RPC_STANDBY, Role.HOT_SWAP_STANDBY) and loaded:
        found.append(
            Finding(
                Severity.ERROR,
                f"standby at {node} has a validator key loaded ({loaded})",
                "Two nodes with the pool's key sign conflicting blocks and chunks (nearcore: chain/client/src/client.rs).",
                "Remove validator_key.json from its home and send SIGHUP (nearcore: core/chain-configs/src/updatable_config.rs).",
            )
        )
    if role == Role.VALIDATOR:
        if not loaded:
            found.append(
                Finding(
                    Severity.ERROR,
                    f"validator at {node} has no validator key loaded",
                    "status.validator_account_id is null: the node signs nothing (nearcore: core/primitives/src/views.rs).",
                    "Check validator_key.json in its home and send SIGHUP, or restart neard.",
                )
            )
        elif validator_id and loaded != validator_id:
            found.append(
                Finding(
                    Severity.ERROR,
                    f"validator at {node} signs as {loaded}, not {validator_id}",
                    "The loaded key belongs to another account (nearcore: core/crypto/src/key_file.rs).",
                    f"Load the key of {validator_id}.",
                )
            )
    if client_config is not None and facts.config is not None:
        running = _tracking_json(client_config)
        on_disk = effective_tracking(facts.config).to_json()
        if running is not None and running != on_disk:
            found.append(
                Finding(
                    Severity.WARNING,
                    f"node at {node} runs with tracking {json.dumps(running)}, config.json says {json.dumps(on_disk)}",
                    "Shard tracking is read only at start; SIGHUP does not apply it (nearcore: nearcore/src/dyn_config.rs).",
                    "Restart neard when you mean the file's setting to apply.",
                )
            )
    return found


def _tracking_json(client_config: Any) -> Any:
    if isinstance(client_config, dict):
        return client_config.get("tracked_shards_config")
    return getattr(client_config, "tracked_shards_config", None)
