"""Fuzzing the parsers of files an operator (or an attacker with write access to one) hands us:
config.json (JSON with comments), key files, the inventory. Each answers with the tool's own error
(ConfigError, KeyFileError, InventoryError) or a valid result; never another exception, within the
time and memory bound."""

from __future__ import annotations

import json
from pathlib import Path

import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from near_failover.inventory import Inventory, InventoryError, parse_inventory
from near_failover.neard import config as neard_config
from near_failover.neard.config import ConfigError, parse_config_text
from near_failover.neard.keys import KeyFile, KeyFileError, parse_key_file
from tests.conftest import FIXTURES, REPO_ROOT
from tests.fuzz.bounds import FUZZ, dumps, json_values, mutated_json, mutated_text, within_memory

CONFIG_SEEDS = [
    (FIXTURES / name).read_text()
    for name in ("config.neard-init-mainnet.reconstructed.json", "config.failover-option2-standby.reconstructed.json",
                 "nearcore-res-example-config-no-gc.json")
]
KEY_SEEDS = [(FIXTURES / name).read_text() for name in ("key-file.example.core-crypto-test.json", "node-key.reconstructed.json")]
INVENTORY_SEED = (REPO_ROOT / "deploy" / "inventory.example.toml").read_text()

COMMENTS = st.sampled_from(["// note\n", "/* block */", "# hash\n", "/* open", "//", "\n"])


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    seed = draw(st.sampled_from(CONFIG_SEEDS))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(mutated_text(seed))
    if kind == 1:
        text = dumps(draw(mutated_json(json.loads(seed))))
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(COMMENTS) + text[at:]
    if kind == 2:
        return dumps(draw(json_values))
    return draw(st.text(max_size=200))


@given(config_texts())
@FUZZ
def test_config_json_is_a_config_error_or_a_config(text: str) -> None:
    def parse() -> None:
        try:
            cfg = parse_config_text(text, "config.json")
        except ConfigError as exc:
            assert "config.json" in str(exc)
            return
        assert isinstance(cfg, dict)
        # What `config show` and `check` compute from a loaded config must hold too.
        try:
            neard_config.effective_tracking(cfg)
            neard_config.memtries_enabled(cfg)
            neard_config.classify_role(cfg)
            neard_config.semantic_errors(cfg)
            neard_config.dumps_config(neard_config.as_validator(cfg))
        except ConfigError:
            pass

    within_memory(parse)


@st.composite
def key_texts(draw: st.DrawFn) -> str:
    seed = draw(st.sampled_from(KEY_SEEDS))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(mutated_text(seed))
    if kind == 1:
        return dumps(draw(mutated_json(json.loads(seed))))
    fields = st.fixed_dictionaries({}, optional={
        "account_id": json_values | st.text(max_size=70), "public_key": json_values | st.text(max_size=100).map(lambda t: "ed25519:" + t),
        "secret_key": json_values | st.text(max_size=100).map(lambda t: "ed25519:" + t), "private_key": json_values,
    })
    return dumps(draw(fields))


@given(key_texts())
@FUZZ
def test_a_key_file_is_a_key_error_or_a_valid_key(text: str) -> None:
    def parse() -> None:
        try:
            key = parse_key_file(text, "validator_key.json")
        except KeyFileError as exc:
            assert "validator_key.json" in str(exc)
            return
        assert isinstance(key, KeyFile) and key.public_key.startswith("ed25519:")

    within_memory(parse)


_toml_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20)
_INVENTORY_KEYS = st.sampled_from([
    "name", "host", "home", "rpc", "control", "key_store", "standby", "priority", "api", "start", "store",
    "endpoints", "ttl", "loop_wait", "retry_timeout", "account_id", "chain_id", "path", "kind", "url",
])


@st.composite
def inventory_texts(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(mutated_text(INVENTORY_SEED))
    if kind == 1:
        # The example's tables with some values retyped or dropped, written back as TOML.
        import tomllib

        data = draw(mutated_json(tomllib.loads(INVENTORY_SEED)))
        try:
            return tomli_w.dumps(data if isinstance(data, dict) else {"value": data})
        except (TypeError, ValueError):
            return str(data)
    table = st.dictionaries(_INVENTORY_KEYS, _toml_scalars | st.lists(_toml_scalars.filter(lambda v: v is not None), max_size=3), max_size=8)
    data = {
        "validator": draw(table), "node": draw(st.lists(table, max_size=3)),
        **({"lease": draw(table)} if draw(st.booleans()) else {}),
    }
    try:
        return tomli_w.dumps(_drop_none(data))
    except (TypeError, ValueError):
        return ""


def _drop_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


@given(inventory_texts())
@FUZZ
def test_an_inventory_is_an_inventory_error_or_an_inventory(tmp_path_factory, text: str) -> None:
    source = Path(tmp_path_factory.getbasetemp()) / "fuzz" / "inventory.toml"

    def parse() -> None:
        try:
            inventory = parse_inventory(text, source)
        except InventoryError as exc:
            assert str(source) in str(exc)
            return
        assert isinstance(inventory, Inventory) and inventory.nodes

    within_memory(parse)
