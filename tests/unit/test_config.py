"""neard/config.py against the nearcore fixtures: loading, tracking rules, role edits, checks, writes."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from near_failover.neard.config import (
    LEGACY_TRACKING_FIELDS,
    MISSING,
    ConfigError,
    Role,
    Tracking,
    as_hot_swap_standby,
    as_rpc_standby,
    as_validator,
    classify_role,
    config_diff,
    dumps_config,
    effective_tracking,
    legacy_fields_present,
    load_config,
    memtries_enabled,
    parse_config_text,
    semantic_errors,
    write_config,
)

POOL = "example-pool.poolv1.near"
MAINNET = "config.neard-init-mainnet.reconstructed.json"
LOCALNET = "config.neard-init-localnet.reconstructed.json"
OPTION1_STANDBY = "config.failover-option1-standby.reconstructed.json"
OPTION1_PROMOTED = "config.failover-option1-promoted.reconstructed.json"
OPTION2_STANDBY = "config.failover-option2-standby.reconstructed.json"
RECONSTRUCTED = [MAINNET, LOCALNET, OPTION1_STANDBY, OPTION1_PROMOTED, OPTION2_STANDBY]
GENUINE = ["nearcore-res-example-config-gc.json", "nearcore-res-example-config-no-gc.json"]
MEMTRIES = "load_mem_tries_for_tracked_shards"

# (edit, tracked_shards_config it must write, memtries it must write)
EDITS = {
    "rpc": (as_rpc_standby, "AllShards", False),
    "hot-swap": (lambda cfg: as_hot_swap_standby(cfg, POOL), {"ShadowValidator": POOL}, True),
    "validator": (as_validator, "NoShards", True),
}


def conflict_message(field: str) -> str:
    return (
        f"config.json semantic issue: 'config.{field}' and 'config.tracked_shards_config' cannot be both set. "
        "Please use 'config.tracked_shards_config' only."
    )


@pytest.fixture(scope="module")
def mainnet(fixtures_dir: Path) -> dict:
    return load_config(fixtures_dir / MAINNET)


def legacy_config(base: dict, **legacy: object) -> dict:
    """`base` without tracked_shards_config and with legacy fields appended, as an operator edits it."""
    cfg = {k: copy.deepcopy(v) for k, v in base.items() if k != "tracked_shards_config"}
    cfg.update(legacy)
    return cfg


# ----------------------------------------------------------------------------- format


@pytest.mark.parametrize("name", RECONSTRUCTED)
def test_reconstructed_fixture_round_trips_byte_for_byte(fixtures_dir: Path, name: str) -> None:
    text = (fixtures_dir / name).read_text(encoding="utf-8")
    assert dumps_config(load_config(fixtures_dir / name)) == text
    assert not text.endswith("\n")


@pytest.mark.parametrize("name", GENUINE)
def test_genuine_example_config_is_rewritten_in_neards_two_space_format(fixtures_dir: Path, name: str) -> None:
    text = (fixtures_dir / name).read_text(encoding="utf-8")
    cfg = load_config(fixtures_dir / name)
    assert cfg == json.loads(text)
    assert list(cfg) == list(json.loads(text))
    dumped = dumps_config(cfg)
    assert dumped == json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    assert '\n  "genesis_file"' in dumped and not dumped.endswith("\n")
    assert parse_config_text(dumped) == cfg


def test_dumps_keeps_non_ascii_and_number_spelling() -> None:
    cfg = parse_config_text('{"name": "nœud ☃", "ratio": 1.50, "tiny": 1e-7, "big": 18446744073709551615}')
    assert dumps_config(cfg) == '{\n  "name": "nœud ☃",\n  "ratio": 1.50,\n  "tiny": 1e-7,\n  "big": 18446744073709551615\n}'
    assert dumps_config({"x": 0.25, "y": 1e-7, "z": 1e22, "e": [], "o": {}}) == (
        '{\n  "x": 0.25,\n  "y": 1e-7,\n  "z": 1e22,\n  "e": [],\n  "o": {}\n}'
    )


# ----------------------------------------------------------------------------- parsing


def test_comments_are_stripped_and_strings_left_alone() -> None:
    text = """// neard config, edited by hand
{
  "genesis_file": "genesis.json", // trailing line comment
  /* a block
     comment over lines */
  "note": "http://x/*not a comment*/ // # neither",
  # shell comment, json_comments strips these too
  "tracked_shards_config": /* inline */ "NoShards"
}
"""
    cfg = parse_config_text(text)
    assert cfg == {
        "genesis_file": "genesis.json",
        "note": "http://x/*not a comment*/ // # neither",
        "tracked_shards_config": "NoShards",
    }
    assert list(cfg) == ["genesis_file", "note", "tracked_shards_config"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{\n  "a": 1,\n  "b": \n}', r"invalid JSON at line 4, column 1: Expecting value"),
        ('{"a": 1,}', r"invalid JSON at line 1, column 9"),
        ('{"a": 1}\n/* never closed', r"invalid JSON at line 2, column 1: unterminated /\* comment"),
        ('{"a": 1, "a": 2}', r'duplicate key "a"'),
        ('{"Ab3xYz9Q": 1, "Ab3xYz9Q": 2}', r"duplicate key \(a 8-character name, not shown\)"),
        ('{"a": ' + "[" * 127 + "]" * 127 + "}", r"invalid JSON at line 1, column 133: recursion limit exceeded"),
        ('{"a": "[[[", "b": ' + "[" * 200_000 + "]" * 200_000 + "}", r"at line 1, column 145: recursion limit exceeded"),
        ('{"a": NaN}', r"NaN is not valid JSON"),
        ('{"a": 1e999}', r"out of range"),
        ('{"a": "\\ud800"}', r"surrogate"),
        ("[1, 2]", r"top level is a JSON array, but neard expects an object"),
        ("", r"invalid JSON at line 1, column 1"),
    ],
)
def test_parse_errors_name_the_file_and_the_problem(text: str, pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="/srv/near/config.json")
    message = str(info.value)
    assert message.startswith("/srv/near/config.json: ")
    assert re.search(pattern, message), message
    assert info.value.__context__ is None


def test_load_config_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'config.json'}: does not exist")):
        load_config(tmp_path / "config.json")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_config(tmp_path / "config.json")


# ----------------------------------------------------------------------------- tracking rules (§1.2)

PRIORITY_CASES = [
    ({}, Tracking("NoShards", None, "default")),
    ({"tracked_shards": []}, Tracking("NoShards", None, "default")),
    ({"tracked_shards": [0]}, Tracking("AllShards", None, "tracked_shards")),
    ({"tracked_shards": [5, 7]}, Tracking("AllShards", None, "tracked_shards")),
    ({"tracked_shards": [], "tracked_shard_schedule": [[0], [1, 2]]}, Tracking("Schedule", [[0], [1, 2]], "tracked_shard_schedule")),
    ({"tracked_shard_schedule": [], "tracked_shadow_validator": "a.near"}, Tracking("ShadowValidator", "a.near", "tracked_shadow_validator")),
    ({"tracked_shadow_validator": "a.near", "tracked_accounts": ["b.near"]}, Tracking("ShadowValidator", "a.near", "tracked_shadow_validator")),
    ({"tracked_accounts": []}, Tracking("Accounts", [], "tracked_accounts")),
    ({"tracked_accounts": ["b.near"], "tracked_shards": [1]}, Tracking("AllShards", None, "tracked_shards")),
    ({"tracked_shards": None, "tracked_accounts": None}, Tracking("NoShards", None, "default")),
    ({"tracked_shards_config": "NoShards", "tracked_shards": [1]}, Tracking("NoShards", None, "tracked_shards_config")),
    ({"tracked_shards_config": None, "tracked_shards": [1]}, Tracking("AllShards", None, "tracked_shards")),
    ({"tracked_shards_config": {"NoShards": None}}, Tracking("NoShards", None, "tracked_shards_config")),
    ({"tracked_shards_config": {"Shards": ["s0.v3", {"version": 3, "shard_id": 2}]}}, Tracking("Shards", ["s0.v3", {"version": 3, "shard_id": 2}], "tracked_shards_config")),
    ({"tracked_shards_config": {"Schedule": [[0], [1, 2]]}}, Tracking("Schedule", [[0], [1, 2]], "tracked_shards_config")),
    ({"tracked_shards_config": {"Accounts": ["a.near", "b.near"]}}, Tracking("Accounts", ["a.near", "b.near"], "tracked_shards_config")),
    ({"tracked_shards_config": {"ShadowValidator": POOL}}, Tracking("ShadowValidator", POOL, "tracked_shards_config")),
]


@pytest.mark.parametrize(("cfg", "expected"), PRIORITY_CASES)
def test_effective_tracking_follows_neards_priority(cfg: dict, expected: Tracking) -> None:
    assert effective_tracking(cfg) == expected


@pytest.mark.parametrize(
    ("tracking", "json_value"),
    [
        (Tracking("AllShards", None, "x"), "AllShards"),
        (Tracking("NoShards", None, "x"), "NoShards"),
        (Tracking("ShadowValidator", POOL, "x"), {"ShadowValidator": POOL}),
        (Tracking("Schedule", [[0], [1]], "x"), {"Schedule": [[0], [1]]}),
        (Tracking("Accounts", [], "x"), {"Accounts": []}),
    ],
)
def test_tracking_to_json_uses_external_tagging(tracking: Tracking, json_value: object) -> None:
    assert tracking.to_json() == json_value
    assert effective_tracking({"tracked_shards_config": tracking.to_json()}).to_json() == json_value


@pytest.mark.parametrize(
    ("cfg", "pattern"),
    [
        ({"tracked_shards_config": "SomeShards"}, r"unknown variant `SomeShards`, expected one of `NoShards`"),
        ({"tracked_shards_config": "ShadowValidator"}, r"`ShadowValidator` needs a value"),
        ({"tracked_shards_config": {"ShadowValidator": 5}}, r"expected an account id string"),
        ({"tracked_shards_config": {"ShadowValidator": "Pool.Near"}}, r"not a NEAR account id"),
        ({"tracked_shards_config": {"AllShards": None, "NoShards": None}}, r"with 2 keys"),
        ({"tracked_shards_config": {"Shards": ["zero"]}}, r"shard uids"),
        ({"tracked_shards_config": {"AllShards": 1}}, r"takes no value"),
        ({"tracked_shards_config": 3}, r"got a JSON number"),
        ({"tracked_shards": "0"}, r"'tracked_shards': expected an array of shard ids"),
        ({"tracked_accounts": ["ok.near", "Not Ok"]}, r"'tracked_accounts'"),
    ],
)
def test_malformed_tracking_is_a_file_issue(cfg: dict, pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        effective_tracking(cfg)
    assert "config.json file issue: " in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert semantic_errors(cfg) == [info.value.problem]


def test_memtries_enabled_reads_store_with_neards_default() -> None:
    assert memtries_enabled({}) is False
    assert memtries_enabled({"store": {"path": None}}) is False
    assert memtries_enabled({"store": {MEMTRIES: True}}) is True
    with pytest.raises(ConfigError, match="must be true or false"):
        memtries_enabled({"store": {MEMTRIES: "yes"}})
    with pytest.raises(ConfigError, match="'store' must be an object"):
        memtries_enabled({"store": []})


@pytest.mark.parametrize(
    ("name", "role"),
    [
        (MAINNET, Role.RPC_STANDBY),
        (OPTION1_STANDBY, Role.RPC_STANDBY),
        (OPTION1_PROMOTED, Role.VALIDATOR),
        (OPTION2_STANDBY, Role.HOT_SWAP_STANDBY),
    ],
)
def test_classify_role_of_fixtures(fixtures_dir: Path, name: str, role: Role) -> None:
    assert classify_role(load_config(fixtures_dir / name)) is role


@pytest.mark.parametrize(
    ("tracking", "memtries"),
    [("AllShards", True), ("NoShards", False), ({"ShadowValidator": POOL}, False), ({"Accounts": []}, True)],
)
def test_mixed_settings_classify_as_other(tracking: object, memtries: bool) -> None:
    assert classify_role({"tracked_shards_config": tracking, "store": {MEMTRIES: memtries}}) is Role.OTHER


# ----------------------------------------------------------------------------- role edits


def test_hot_swap_standby_of_mainnet_init_is_option2_fixture(fixtures_dir: Path, mainnet: dict) -> None:
    edited = as_hot_swap_standby(mainnet, POOL)
    assert edited == load_config(fixtures_dir / OPTION2_STANDBY)
    assert dumps_config(edited) == (fixtures_dir / OPTION2_STANDBY).read_text(encoding="utf-8")


def test_rpc_standby_of_mainnet_init_is_option1_standby_fixture(fixtures_dir: Path, mainnet: dict) -> None:
    edited = as_rpc_standby(mainnet)
    assert edited == load_config(fixtures_dir / OPTION1_STANDBY)
    assert dumps_config(edited) == (fixtures_dir / OPTION1_STANDBY).read_text(encoding="utf-8")


@pytest.mark.parametrize("start", [MAINNET, OPTION1_STANDBY, OPTION2_STANDBY])
def test_validator_of_any_standby_is_option1_promoted_fixture(fixtures_dir: Path, start: str) -> None:
    edited = as_validator(load_config(fixtures_dir / start))
    assert edited == load_config(fixtures_dir / OPTION1_PROMOTED)
    assert dumps_config(edited) == (fixtures_dir / OPTION1_PROMOTED).read_text(encoding="utf-8")


def test_hot_swap_standby_of_promoted_changes_only_the_two_fields(fixtures_dir: Path) -> None:
    promoted = load_config(fixtures_dir / OPTION1_PROMOTED)
    assert config_diff(promoted, as_hot_swap_standby(promoted, "other-pool.poolv1.near")) == [
        ("tracked_shards_config", "NoShards", {"ShadowValidator": "other-pool.poolv1.near"})
    ]


@pytest.mark.parametrize("name", GENUINE)
@pytest.mark.parametrize("edit_name", list(EDITS))
def test_role_edits_on_genuine_examples_change_only_the_guides_fields(
    fixtures_dir: Path, name: str, edit_name: str
) -> None:
    edit, tracking, memtries = EDITS[edit_name]
    original = load_config(fixtures_dir / name)
    snapshot = copy.deepcopy(original)
    edited = edit(original)
    assert original == snapshot  # pure

    guide_fields = {"tracked_shards_config", "store"}  # the example configs have no store section
    assert {k: v for k, v in edited.items() if k not in guide_fields} == {
        k: v for k, v in original.items() if k not in guide_fields
    }
    assert edited["tracked_shards_config"] == tracking
    assert edited["store"] == {MEMTRIES: memtries}
    # Key order kept; store goes where StoreConfig sits in neard's struct (after view_client_threads).
    assert list(edited) == list(original) + ["store"]
    assert [path for path, _, _ in config_diff(original, edited)] == (
        ["store." + MEMTRIES] if tracking == "AllShards" else ["tracked_shards_config", "store." + MEMTRIES]
    )
    assert semantic_errors(edited) == []
    assert parse_config_text(dumps_config(edited)) == edited


@pytest.mark.parametrize("edit_name", list(EDITS))
def test_legacy_tracked_shards_zero_is_all_shards_and_every_edit_removes_it(mainnet: dict, edit_name: str) -> None:
    # What NEAR's common-errors page tells operators to write for a backup node (§1.2 docs note).
    cfg = legacy_config(mainnet, tracked_shards=[0])
    assert effective_tracking(cfg) == Tracking("AllShards", None, "tracked_shards")
    assert classify_role(cfg) is Role.RPC_STANDBY
    assert legacy_fields_present(cfg) == ["tracked_shards"]

    edit, tracking, memtries = EDITS[edit_name]
    edited = edit(cfg)
    assert not set(LEGACY_TRACKING_FIELDS) & set(edited)
    assert legacy_fields_present(edited) == []
    assert effective_tracking(edited).source == "tracked_shards_config"
    assert edited["tracked_shards_config"] == tracking and memtries_enabled(edited) is memtries
    # The new field goes back where neard's struct order puts it: right after `consensus`.
    keys = list(edited)
    assert keys[keys.index("consensus") + 1] == "tracked_shards_config"
    assert semantic_errors(edited) == []


@pytest.mark.parametrize("edit_name", list(EDITS))
def test_every_edit_removes_all_legacy_fields_even_beside_the_new_field(mainnet: dict, edit_name: str) -> None:
    cfg = dict(mainnet)
    cfg.update(tracked_shards=[], tracked_shard_schedule=None, tracked_shadow_validator=POOL, tracked_accounts=[])
    assert legacy_fields_present(cfg) == ["tracked_shards", "tracked_shadow_validator", "tracked_accounts"]
    edited = EDITS[edit_name][0](cfg)
    assert not set(LEGACY_TRACKING_FIELDS) & set(edited)
    assert list(edited) == list(mainnet)


def test_edits_insert_missing_keys_in_struct_order() -> None:
    cfg = {"genesis_file": "genesis.json", "consensus": {}, "archive": False, "epoch_sync": {}}
    edited = as_hot_swap_standby(cfg, POOL)
    assert list(edited) == ["genesis_file", "consensus", "tracked_shards_config", "archive", "store", "epoch_sync"]

    # Nothing before it in struct order: goes before the first key that follows it.
    assert list(as_validator({"archive": False, "store": {}})) == ["tracked_shards_config", "archive", "store"]
    # Only keys neard does not know: appended.
    assert list(as_validator({"x": 1})) == ["x", "tracked_shards_config", "store"]

    store = {"load_mem_tries_for_shards": [], "state_snapshot_config": {"state_snapshot_type": "Enabled"}}
    assert list(as_validator({"store": store})["store"]) == [
        "load_mem_tries_for_shards",
        MEMTRIES,
        "state_snapshot_config",
    ]
    # `"store": null` is replaced in place.
    assert list(as_rpc_standby({"store": None, "epoch_sync": {}})) == ["tracked_shards_config", "store", "epoch_sync"]


def test_edits_are_pure_and_do_not_alias_the_input(mainnet: dict) -> None:
    snapshot = copy.deepcopy(mainnet)
    edited = as_validator(mainnet)
    edited["store"]["path"] = "/elsewhere"
    edited["network"]["boot_nodes"] = "changed"
    assert mainnet == snapshot


@pytest.mark.parametrize("bad_id", ["", "a", "Example.near", "pool..near", "-pool.near", "pool.near\n", "x" * 65, None])
def test_hot_swap_standby_refuses_an_invalid_pool_id(mainnet: dict, bad_id: object) -> None:
    with pytest.raises(ConfigError, match="cannot shadow validator"):
        as_hot_swap_standby(mainnet, bad_id)  # type: ignore[arg-type]


def test_edit_refuses_a_store_that_is_not_an_object() -> None:
    with pytest.raises(ConfigError, match="'store' must be an object"):
        as_validator({"store": [1]})


# ----------------------------------------------------------------------------- semantic checks (§1.4)


@pytest.mark.parametrize("name", RECONSTRUCTED + GENUINE)
def test_fixtures_pass_neards_checks(fixtures_dir: Path, name: str) -> None:
    assert semantic_errors(load_config(fixtures_dir / name)) == []


def test_new_and_legacy_fields_together_get_neards_exact_messages(mainnet: dict) -> None:
    cfg = dict(mainnet)
    cfg["tracked_shards"] = [0]
    assert semantic_errors(cfg) == [conflict_message("tracked_shards")]

    cfg.update(tracked_shard_schedule=[], tracked_shadow_validator=POOL, tracked_accounts=[])
    # Even empty lists count as set; reported in config_validate.rs order.
    assert semantic_errors(cfg) == [
        conflict_message("tracked_shards"),
        conflict_message("tracked_accounts"),
        conflict_message("tracked_shadow_validator"),
        conflict_message("tracked_shard_schedule"),
    ]
    # Legacy alone is accepted by neard.
    assert semantic_errors(legacy_config(mainnet, tracked_shards=[0])) == []


def duration(secs: int, nanos: int = 0) -> dict:
    return {"secs": secs, "nanos": nanos}


def with_consensus(base: dict, **fields: object) -> dict:
    cfg = copy.deepcopy(base)
    cfg["consensus"].update(fields)
    return cfg


def test_block_production_delay_checks(mainnet: dict) -> None:
    cfg = with_consensus(mainnet, min_block_production_delay=duration(3))
    assert semantic_errors(cfg) == [
        "config.json semantic issue: min_block_production_delay: Duration { seconds: 3, nanoseconds: 0 } "
        "is greater than max_block_production_delay: Duration { seconds: 1, nanoseconds: 800000000 }"
    ]
    cfg = with_consensus(mainnet, min_block_production_delay=duration(7, 5))
    assert semantic_errors(cfg) == [
        "config.json semantic issue: min_block_production_delay: Duration { seconds: 7, nanoseconds: 5 } "
        "is greater than max_block_production_delay: Duration { seconds: 1, nanoseconds: 800000000 }",
        "config.json semantic issue: min_block_production_delay: Duration { seconds: 7, nanoseconds: 5 } "
        "is greater than max_block_wait_delay: Duration { seconds: 6, nanoseconds: 0 }",
    ]
    equal = with_consensus(mainnet, min_block_production_delay=duration(1, 800000000))
    assert semantic_errors(equal) == []
    # Absent fields take neard's defaults (max 2 s): 2.5 s alone is already too much.
    assert semantic_errors({"consensus": {"min_block_production_delay": duration(2, 500000000)}}) == [
        "config.json semantic issue: min_block_production_delay: Duration { seconds: 2, nanoseconds: 500000000 } "
        "is greater than max_block_production_delay: Duration { seconds: 2, nanoseconds: 0 }"
    ]
    # serde's std Duration also accepts [secs, nanos] and carries nanos over.
    assert semantic_errors({"consensus": {"min_block_production_delay": [0, 2_500_000_000]}}) == [
        "config.json semantic issue: min_block_production_delay: Duration { seconds: 2, nanoseconds: 500000000 } "
        "is greater than max_block_production_delay: Duration { seconds: 2, nanoseconds: 0 }"
    ]


def test_header_sync_gc_and_tx_routing_checks(mainnet: dict) -> None:
    assert semantic_errors(with_consensus(mainnet, header_sync_expected_height_per_second=0)) == [
        "config.json semantic issue: consensus.header_sync_expected_height_per_second should not be 0"
    ]
    cfg = dict(mainnet, gc_fork_clean_step=0)
    assert semantic_errors(cfg) == [
        "config.json semantic issue: gc config values should all be greater than 0, but gc_blocks_limit is 2, "
        "gc_fork_clean_step is 0, gc_num_epochs_to_keep is 5."
    ]
    assert semantic_errors({"gc_num_epochs_to_keep": 0}) == [
        "config.json semantic issue: gc config values should all be greater than 0, but gc_blocks_limit is 2, "
        "gc_fork_clean_step is 100, gc_num_epochs_to_keep is 0."
    ]
    assert semantic_errors(dict(mainnet, tx_routing_height_horizon=1)) == [
        "config.json semantic issue: 'config.tx_routing_height_horizon' needs to be at least 2, got 1."
    ]
    assert semantic_errors(dict(mainnet, tx_routing_height_horizon=101)) == [
        "config.json semantic issue: 'config.tx_routing_height_horizon' can't be too high to avoid spamming "
        "the network. Keep it below 100. Got 101."
    ]
    assert semantic_errors(dict(mainnet, tx_routing_height_horizon=2)) == []
    assert semantic_errors(dict(mainnet, tx_routing_height_horizon=100)) == []


def test_archive_and_cold_store_checks() -> None:
    assert semantic_errors({"save_trie_changes": False}) == [
        "config.json semantic issue: Configuration with archive = false and save_trie_changes = false is not "
        "supported because non-archival nodes must save trie changes in order to do garbage collection."
    ]
    assert semantic_errors({"cold_store": {}, "split_storage": {}}) == [
        "config.json semantic issue: cold_store is configured, but save_trie_changes is None. Trie changes "
        "should be saved to support cold storage.",
        "config.json semantic issue: `archive` is false, but `cold_store` is configured.",
        "config.json semantic issue: `archive` is false, but `split_storage` is configured.",
    ]
    assert semantic_errors({"archive": True, "cold_store": {}, "save_trie_changes": True}) == []
    assert semantic_errors({"archive": True, "cold_store": {}, "save_trie_changes": False}) == [
        "config.json semantic issue: cold_store is configured, but save_trie_changes is Some(false). Trie "
        "changes should be saved to support cold storage."
    ]


def test_several_problems_are_all_reported_in_neards_order(mainnet: dict) -> None:
    cfg = with_consensus(mainnet, header_sync_expected_height_per_second=0)
    cfg.update(tracked_accounts=[], gc_blocks_limit=0, tx_routing_height_horizon=0)
    assert semantic_errors(cfg) == [
        conflict_message("tracked_accounts"),
        "config.json semantic issue: consensus.header_sync_expected_height_per_second should not be 0",
        "config.json semantic issue: gc config values should all be greater than 0, but gc_blocks_limit is 0, "
        "gc_fork_clean_step is 100, gc_num_epochs_to_keep is 5.",
        "config.json semantic issue: 'config.tx_routing_height_horizon' needs to be at least 2, got 0.",
    ]


@pytest.mark.parametrize(
    "cfg",
    [
        {"consensus": {"min_block_production_delay": 600}},
        {"consensus": {"min_block_production_delay": {"secs": -1, "nanos": 0}}},
        {"consensus": []},
        {"gc_blocks_limit": "2"},
        {"tx_routing_height_horizon": True},
        {"archive": "no"},
        {"store": {MEMTRIES: 1}},
    ],
)
def test_wrong_types_are_one_file_issue(cfg: dict) -> None:
    errors = semantic_errors(cfg)
    assert len(errors) == 1 and errors[0].startswith("config.json file issue: ")


# ----------------------------------------------------------------------------- diff


def test_config_diff_reports_dotted_paths_and_absence(mainnet: dict) -> None:
    assert config_diff(mainnet, copy.deepcopy(mainnet)) == []
    old = {"a": 1, "b": {"c": True, "d": [1, 2]}, "gone": {"x": 1}}
    new = {"a": 1.0, "b": {"c": 1, "d": [1, 2, 3]}, "added": {"y": {"z": None}}}
    assert config_diff(old, new) == [
        ("a", 1, 1.0),
        ("b.c", True, 1),
        ("b.d", [1, 2], [1, 2, 3]),
        ("gone.x", 1, MISSING),
        ("added.y.z", MISSING, None),
    ]
    assert repr(MISSING) == "<absent>"
    # Enum values (serde external tagging) are shown whole, not field by field.
    assert config_diff({"t": {"ShadowValidator": "a.near"}}, {"t": {"ShadowValidator": "b.near"}}) == [
        ("t", {"ShadowValidator": "a.near"}, {"ShadowValidator": "b.near"})
    ]
    assert config_diff({}, {"tracked_shards_config": {"ShadowValidator": POOL}, "store": {MEMTRIES: True}}) == [
        ("tracked_shards_config", MISSING, {"ShadowValidator": POOL}),
        ("store." + MEMTRIES, MISSING, True),
    ]


# ----------------------------------------------------------------------------- writing


def test_write_config_is_atomic_keeps_mode_and_leaves_a_backup(tmp_path: Path, fixtures_dir: Path) -> None:
    old_text = (fixtures_dir / MAINNET).read_text(encoding="utf-8")
    path = tmp_path / "config.json"
    path.write_text(old_text, encoding="utf-8")
    os.chmod(path, 0o640)

    backup = write_config(path, as_hot_swap_standby(load_config(path), POOL))

    assert path.read_text(encoding="utf-8") == (fixtures_dir / OPTION2_STANDBY).read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert backup is not None and backup.parent == tmp_path
    assert re.fullmatch(r"config\.json\.\d{8}T\d{12}Z\.bak", backup.name), backup.name
    assert backup.read_text(encoding="utf-8") == old_text
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["config.json", backup.name])


def test_each_write_keeps_its_own_backup(tmp_path: Path, mainnet: dict) -> None:
    path = tmp_path / "config.json"
    assert write_config(path, mainnet) is None
    assert path.read_text(encoding="utf-8") == dumps_config(mainnet)
    first = write_config(path, as_validator(mainnet))
    second = write_config(path, as_rpc_standby(mainnet))
    assert first is not None and second is not None and first != second
    assert first.read_text(encoding="utf-8") == dumps_config(mainnet)
    assert second.read_text(encoding="utf-8") == dumps_config(as_validator(mainnet))
    assert load_config(path) == as_rpc_standby(mainnet)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_write_config_keeps_the_owner_of_the_old_file(tmp_path: Path, mainnet: dict) -> None:
    path = tmp_path / "config.json"
    path.write_text(dumps_config(mainnet), encoding="utf-8")
    os.chown(path, 65534, 65534)
    backup = write_config(path, as_validator(mainnet))
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)
    assert backup is not None and (backup.stat().st_uid, backup.stat().st_gid) == (65534, 65534)


def test_write_config_through_a_symlink_keeps_the_link(tmp_path: Path, mainnet: dict) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "config.json").write_text(dumps_config(mainnet), encoding="utf-8")
    link = tmp_path / "config.json"
    link.symlink_to(real / "config.json")
    backup = write_config(link, as_validator(mainnet))
    assert link.is_symlink()
    assert load_config(real / "config.json") == as_validator(mainnet)
    assert backup is not None and backup.parent == real


def test_write_config_changes_nothing_when_the_config_cannot_be_serialised(tmp_path: Path, mainnet: dict) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(TypeError):
        write_config(path, {"bad": {1, 2}})
    assert path.read_text(encoding="utf-8") == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_write_config_refuses_to_replace_a_directory(tmp_path: Path, mainnet: dict) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        write_config(tmp_path / "config.json", mainnet)


# ----------------------------------------------------------------------------- properties

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text(alphabet='/*#"\\ab\n', max_size=12),  # comment markers, quotes and escapes inside strings
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
comment_text = st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=12)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(json_objects)
def test_dump_parse_round_trip(cfg: dict) -> None:
    text = dumps_config(cfg)
    parsed = parse_config_text(text)
    assert parsed == cfg
    assert list(parsed) == list(cfg)
    assert dumps_config(parsed) == text


@PROPERTY_SETTINGS
@given(json_objects, st.lists(comment_text, min_size=1, max_size=5), st.lists(comment_text, min_size=1, max_size=5))
def test_comment_stripping_never_changes_string_contents(cfg: dict, line_comments: list, block_comments: list) -> None:
    lines = dumps_config(cfg).split("\n")
    commented = []
    for index, line in enumerate(lines):
        block = block_comments[index % len(block_comments)].replace("*/", "* /")
        commented.append(f"/*{block}*/{line} // {line_comments[index % len(line_comments)]}")
    parsed = parse_config_text("\n".join(commented) + "\n# trailing shell comment")
    assert parsed == cfg
    assert dumps_config(parsed) == dumps_config(cfg)


tracking_values = st.one_of(
    st.none(),
    st.sampled_from(["AllShards", "NoShards"]),
    st.builds(lambda a: {"ShadowValidator": a}, st.sampled_from([POOL, "other.poolv1.near"])),
    st.builds(lambda xs: {"Accounts": xs}, st.lists(st.sampled_from(["a.near", "b.near"]), max_size=2)),
)
legacy_values = st.fixed_dictionaries(
    {},
    optional={
        "tracked_shards": st.lists(st.integers(0, 5), max_size=2),
        "tracked_shard_schedule": st.lists(st.lists(st.integers(0, 5), max_size=2), max_size=2),
        "tracked_shadow_validator": st.sampled_from([POOL, "x.near"]),
        "tracked_accounts": st.lists(st.sampled_from(["a.near", "b.near"]), max_size=2),
    },
)
stores = st.one_of(st.none(), st.fixed_dictionaries({}, optional={MEMTRIES: st.booleans(), "path": st.none()}))


@PROPERTY_SETTINGS
@given(tracking_values, legacy_values, stores, st.sampled_from(list(EDITS)))
def test_role_edits_are_idempotent_and_leave_no_legacy_field(
    tracking: object, legacy: dict, store: dict | None, edit_name: str
) -> None:
    cfg: dict = {"genesis_file": "genesis.json", "consensus": {}}
    if tracking is not None:
        cfg["tracked_shards_config"] = tracking
    if store is not None:
        cfg["store"] = store
    cfg.update(legacy)
    edit, expected_tracking, memtries = EDITS[edit_name]
    once = edit(cfg)
    assert edit(once) == once
    assert list(edit(once)) == list(once)
    assert legacy_fields_present(once) == [] and not set(LEGACY_TRACKING_FIELDS) & set(once)
    assert once["tracked_shards_config"] == expected_tracking and memtries_enabled(once) is memtries
    assert classify_role(once) is {"rpc": Role.RPC_STANDBY, "hot-swap": Role.HOT_SWAP_STANDBY, "validator": Role.VALIDATOR}[edit_name]
    assert semantic_errors(once) == []
    changed = {path for path, _, _ in config_diff(cfg, once)}
    assert changed <= {"tracked_shards_config", "store." + MEMTRIES, "store", *LEGACY_TRACKING_FIELDS}

