"""The emulator's reading of config.json (an oracle written from nearcore) against the tool's.

Both implementations run over the same fixtures and variants of them: the effective tracking,
the memtrie flag and the validation errors must agree, so a mistake in either fails here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from near_failover.localnet import config_rules
from near_failover.neard import config as tool

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nearcore"
CONFIG_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json") if p.name.startswith(("config.", "nearcore-res-example-config")))
MAINNET = json.loads((FIXTURES / "config.neard-init-mainnet.reconstructed.json").read_text())


def variant(**changes: object) -> dict:
    """The mainnet init config with top-level keys set (None deletes) or dotted keys set."""
    cfg = copy.deepcopy(MAINNET)
    for key, value in changes.items():
        *path, last = key.split("__")
        holder = cfg
        for part in path:
            holder = holder.setdefault(part, {})
        if value is None:
            holder.pop(last, None)
        else:
            holder[last] = value
    return cfg


VARIANTS = {
    "legacy tracked_shards [0] means AllShards": variant(tracked_shards_config=None, tracked_shards=[0]),
    "legacy tracked_shards [] falls through": variant(tracked_shards_config=None, tracked_shards=[]),
    "legacy empty shards then schedule": variant(tracked_shards_config=None, tracked_shards=[], tracked_shard_schedule=[[0], [1]]),
    "legacy empty schedule falls through": variant(tracked_shards_config=None, tracked_shard_schedule=[], tracked_shadow_validator="pool.poolv1.near"),
    "legacy shadow before accounts": variant(tracked_shards_config=None, tracked_shadow_validator="pool.poolv1.near", tracked_accounts=["a.near"]),
    "legacy empty accounts still Accounts": variant(tracked_shards_config=None, tracked_accounts=[]),
    "nothing set means NoShards": variant(tracked_shards_config=None),
    "null legacy fields are unset": variant(tracked_shards=None, tracked_accounts=None),
    "new field wins but conflicts with every legacy field": variant(tracked_shards=[], tracked_accounts=[], tracked_shadow_validator="x.near", tracked_shard_schedule=[[0]]),
    "ShadowValidator": variant(tracked_shards_config={"ShadowValidator": "pool.poolv1.near"}),
    "Shards, both spellings": variant(tracked_shards_config={"Shards": ["s0.v3", {"version": 3, "shard_id": 2}]}),
    "Schedule": variant(tracked_shards_config={"Schedule": [[0], [1, 2]]}),
    "Accounts": variant(tracked_shards_config={"Accounts": ["a.near", "b.near"]}),
    "unit variant as an object": variant(tracked_shards_config={"NoShards": None}),
    "unknown variant": variant(tracked_shards_config="SomeShards"),
    "data variant without data": variant(tracked_shards_config="ShadowValidator"),
    "Schedule of the wrong shape": variant(tracked_shards_config={"Schedule": [0, 1]}),
    "bad account": variant(tracked_shards_config={"ShadowValidator": "Not An Account"}),
    "memtries on": variant(store__load_mem_tries_for_tracked_shards=True),
    "memtries not a bool": variant(store__load_mem_tries_for_tracked_shards="yes"),
    "gc zero": variant(gc_num_epochs_to_keep=0),
    "tx routing horizon low": variant(tx_routing_height_horizon=1),
    "tx routing horizon high": variant(tx_routing_height_horizon=101),
    "min delay above max": variant(consensus__min_block_production_delay={"secs": 3, "nanos": 0}),
    "min delay above wait": variant(consensus__min_block_production_delay={"secs": 7, "nanos": 5}),
    "header sync 0": variant(consensus__header_sync_expected_height_per_second=0),
    "no trie changes off archive": variant(save_trie_changes=False),
    "cold store without archive": variant(cold_store={"path": "cold"}),
    "cold store with trie changes": variant(cold_store={"path": "cold"}, save_trie_changes=True, archive=True),
    "split storage without archive": variant(split_storage={}),
    "compression level": variant(state_sync={"parts_compression_lvl": 30}),
    "many problems at once": variant(save_trie_changes=False, gc_blocks_limit=0, tracked_shards=[0], tx_routing_height_horizon=0),
    "a duration of the wrong type": variant(consensus__max_block_wait_delay="6s"),
}


def view(cfg: dict, tracking_of, memtries_of, errors_of, file_issue: type[Exception]) -> tuple[object, object, list[str]]:
    """(effective tracking, memtries, validation errors) as one implementation reads `cfg`."""
    found: list[object] = []
    for read in (lambda: tracking_of(cfg).to_json(), lambda: memtries_of(cfg)):
        try:
            found.append(read())
        except file_issue:
            found.append("file issue")
    return found[0], found[1], errors_of(cfg)


def tool_view(cfg: dict) -> tuple[object, object, list[str]]:
    return view(cfg, tool.effective_tracking, tool.memtries_enabled, tool.semantic_errors, tool.ConfigError)


def oracle_view(cfg: dict) -> tuple[object, object, list[str]]:
    return view(cfg, config_rules.tracked_shards, config_rules.memtries_for_tracked_shards, config_rules.validation_errors, config_rules.ConfigFileIssue)


def comparable(errors: list[str]) -> list[str]:
    """Semantic messages exactly; a file issue (serde's wording differs in each) as its kind."""
    if any(e.startswith(config_rules.FILE_PREFIX) for e in errors):
        return ["file issue"]
    return errors


def assert_agree(cfg: dict) -> None:
    (t_tracking, t_memtries, t_errors), (o_tracking, o_memtries, o_errors) = tool_view(cfg), oracle_view(cfg)
    assert t_tracking == o_tracking
    assert t_memtries == o_memtries
    assert comparable(t_errors) == comparable(o_errors)


@pytest.mark.parametrize("name", CONFIG_FIXTURES)
def test_the_tool_and_the_emulator_read_every_fixture_alike(name: str) -> None:
    cfg = config_rules.parse((FIXTURES / name).read_text(), name)
    assert_agree(cfg)
    assert config_rules.validation_errors(cfg) == []  # every fixture is a config neard starts with


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_tool_and_the_emulator_agree_on_each_variant(name: str) -> None:
    assert_agree(VARIANTS[name])


def test_the_variants_cover_what_neard_refuses_and_accepts() -> None:
    """The comparison is only worth something if the variants reach every outcome."""
    views = [oracle_view(cfg) for cfg in VARIANTS.values()]
    modes = {json.dumps(v[0]) for v in views}
    assert {'"AllShards"', '"NoShards"', '"file issue"'} <= modes and any("Schedule" in m for m in modes)
    assert any(len(v[2]) >= 3 for v in views)  # several semantic issues reported together
    assert config_rules.validation_errors(VARIANTS["many problems at once"]) == [
        config_rules.SEMANTIC_PREFIX + "Configuration with archive = false and save_trie_changes = false is not supported because non-archival nodes must save trie changes in order to do garbage collection.",
        config_rules.SEMANTIC_PREFIX + "'config.tracked_shards' and 'config.tracked_shards_config' cannot be both set. Please use 'config.tracked_shards_config' only.",
        config_rules.SEMANTIC_PREFIX + "gc config values should all be greater than 0, but gc_blocks_limit is 0, gc_fork_clean_step is 100, gc_num_epochs_to_keep is 5.",
        config_rules.SEMANTIC_PREFIX + "'config.tx_routing_height_horizon' needs to be at least 2, got 0.",
    ]


@pytest.mark.xfail(strict=True, reason="the tool does not mirror config_validate.rs's cloud-archival rules (its semantic_errors says so)")
def test_cloud_archival_writer_without_cloud_archival_is_refused_by_both() -> None:
    cfg = variant(cloud_archival_writer={"archive_block_data": True})
    assert config_rules.validation_errors(cfg) == [config_rules.SEMANTIC_PREFIX + "`cloud_archival_writer` is enabled, but `cloud_archival` is disabled."]
    assert_agree(cfg)


def test_unknown_keys_are_found_at_any_depth() -> None:
    cfg = variant(surprise=1, store__surprise=2, network__tier1__surprise=3, consensus__min_block_production_delay={"secs": 1, "nanos": 0, "x": 1})
    cfg["store"]["trie_cache"]["per_shard_max_bytes"] = {"s0.v3": 1}  # a map: its keys are data
    cfg["store"]["migration_snapshot"] = "x"  # a StoreConfig field init omits at its default
    cfg["archive"] = False  # a Config field init omits while unset
    assert config_rules.unknown_field_paths(cfg) == ["network.tier1.surprise", "consensus.min_block_production_delay.x", "store.surprise", "surprise"]
    for name in CONFIG_FIXTURES:
        assert config_rules.unknown_field_paths(config_rules.parse((FIXTURES / name).read_text(), name)) == [], name


def test_role_edits_give_the_guides_settings() -> None:
    for tracking, memtries in (("NoShards", True), ({"ShadowValidator": "pool.poolv1.near"}, True), ("AllShards", False)):
        cfg = config_rules.with_role(variant(tracked_shards=[0]), tracking, memtries)
        assert config_rules.validation_errors(cfg) == []
        assert config_rules.tracked_shards(cfg).to_json() == tracking
        assert config_rules.memtries_for_tracked_shards(cfg) is memtries
        assert list(cfg)[:4] == list(MAINNET)[:4]  # the other keys stay where they were
