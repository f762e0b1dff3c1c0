"""The `config`, `keys` and `check` commands, run as a user runs them: the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import base58
import pytest

from near_failover.neard.config import LEGACY_TRACKING_FIELDS

POOL = "example-pool.poolv1.near"
CLI = [str(Path(sys.executable).with_name("near-failover"))]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def make_home(tmp_path: Path, fixtures_dir: Path, config_fixture: str, name: str = "home") -> Path:
    home = tmp_path / name
    home.mkdir()
    shutil.copyfile(fixtures_dir / config_fixture, home / "config.json")
    shutil.copyfile(fixtures_dir / "node-key.reconstructed.json", home / "node_key.json")
    return home


def backups(home: Path) -> list[Path]:
    return sorted(home.glob("config.json.*.bak"))


@pytest.mark.parametrize(
    ("start", "args", "expected"),
    [
        ("config.neard-init-mainnet.reconstructed.json", ["standby", "--mode", "hot-swap", "--validator-id", POOL], "config.failover-option2-standby.reconstructed.json"),
        ("config.failover-option1-promoted.reconstructed.json", ["standby", "--mode", "rpc"], "config.failover-option1-standby.reconstructed.json"),
        ("config.failover-option1-standby.reconstructed.json", ["promote"], "config.failover-option1-promoted.reconstructed.json"),
    ],
)
def test_role_edits_match_the_guide_fixtures_byte_for_byte(tmp_path, fixtures_dir, start, args, expected):
    home = make_home(tmp_path, fixtures_dir, start)
    original = (home / "config.json").read_text()
    result = run("config", *args, "--home", str(home))
    assert result.returncode == 0, result.stderr
    assert (home / "config.json").read_text() == (fixtures_dir / expected).read_text()
    [backup] = backups(home)
    assert backup.read_text() == original
    assert "tracked_shards_config" in result.stdout


@pytest.mark.parametrize("example", ["nearcore-res-example-config-gc.json", "nearcore-res-example-config-no-gc.json"])
@pytest.mark.parametrize(
    ("args", "tracking", "memtries"),
    [
        (["standby", "--mode", "hot-swap", "--validator-id", POOL], {"ShadowValidator": POOL}, True),
        (["standby", "--mode", "rpc"], "AllShards", False),
        (["promote"], "NoShards", True),
    ],
)
def test_role_edits_on_genuine_examples_change_only_the_guide_fields(tmp_path, fixtures_dir, example, args, tracking, memtries):
    home = make_home(tmp_path, fixtures_dir, example)
    before = json.loads((home / "config.json").read_text())
    assert run("config", *args, "--home", str(home)).returncode == 0
    after = json.loads((home / "config.json").read_text())
    assert after["tracked_shards_config"] == tracking
    assert after["store"]["load_mem_tries_for_tracked_shards"] is memtries
    assert [k for k in after if k in before] == list(before)  # key order kept
    for cfg in (before, after):
        cfg.pop("tracked_shards_config", None)
        cfg.get("store", {}).pop("load_mem_tries_for_tracked_shards", None)
        if cfg.get("store") == {}:
            cfg.pop("store")
    assert after == before


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.neard-init-mainnet.reconstructed.json")
    original = (home / "config.json").read_text()
    result = run("config", "standby", "--home", str(home), "--mode", "hot-swap", "--validator-id", POOL, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {c["field"] for c in report["changes"]} == {"tracked_shards_config", "store.load_mem_tries_for_tracked_shards"}
    assert report["written"] is False
    assert (home / "config.json").read_text() == original
    assert backups(home) == []


def test_hot_swap_needs_a_valid_validator_id(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.neard-init-mainnet.reconstructed.json")
    missing = run("config", "standby", "--home", str(home), "--mode", "hot-swap")
    assert missing.returncode == 2 and "--validator-id" in missing.stderr
    bad = run("config", "standby", "--home", str(home), "--mode", "hot-swap", "--validator-id", "Bad Pool")
    assert bad.returncode == 2 and "account id" in bad.stderr
    assert backups(home) == []


def test_legacy_tracked_shards_shows_as_all_shards_and_every_edit_removes_it(tmp_path, fixtures_dir):
    for args in (["standby", "--mode", "rpc"], ["standby", "--mode", "hot-swap", "--validator-id", POOL], ["promote"]):
        home = tmp_path / args[-1].replace(".", "_")
        home.mkdir()
        cfg = json.loads((fixtures_dir / "nearcore-res-example-config-no-gc.json").read_text())
        del cfg["tracked_shards_config"]
        cfg["tracked_shards"] = [0]
        (home / "config.json").write_text(json.dumps(cfg, indent=2))
        shown = json.loads(run("config", "show", "--home", str(home), "--json").stdout)
        assert shown["tracking"] == "AllShards"
        assert shown["tracking_source"] == "tracked_shards"
        assert shown["legacy_fields"] == ["tracked_shards"]
        assert run("config", *args, "--home", str(home)).returncode == 0
        after = json.loads((home / "config.json").read_text())
        assert not set(LEGACY_TRACKING_FIELDS) & set(after)


def test_broken_config_is_an_input_error_naming_the_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text('{"tracked_shards_config": "AllShards",')
    result = run("config", "show", "--home", str(home))
    assert result.returncode == 2
    assert "config.json" in result.stderr


# --- keys inspect -------------------------------------------------------------------------

GENUINE_KEYS = [
    "key-file.example.core-crypto-test.json",
    "key-file.loadtester.pytest-mocknet.json",
    "key-file.reporter.test.near.bounty-localnet.json",
]


@pytest.mark.parametrize("name", GENUINE_KEYS)
def test_keys_inspect_accepts_genuine_key_files_without_showing_the_secret(tmp_path, fixtures_dir, name):
    key = tmp_path / "validator_key.json"
    shutil.copyfile(fixtures_dir / name, key)
    key.chmod(0o600)
    data = json.loads(key.read_text())
    secret = data.get("secret_key") or data["private_key"]
    result = run("keys", "inspect", str(key), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["account_id"] == data["account_id"]
    assert report["public_key"].split(":")[-1] == data["public_key"].split(":")[-1]
    assert secret.split(":")[-1] not in result.stdout + result.stderr


def _variants(data: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Broken copies of a key file: name -> (file text, a word the error must contain)."""
    secret = data["secret_key"]
    raw = base58.b58decode(secret.split(":")[1])
    other_public = "ed25519:" + base58.b58encode(bytes(32)).decode()
    return {
        "mismatched public key": (json.dumps({**data, "public_key": other_public}), "public key"),
        "truncated secret": (json.dumps({**data, "secret_key": "ed25519:" + base58.b58encode(raw[:40]).decode()}), "secret"),
        "non-base58 character": (json.dumps({**data, "secret_key": secret[:-3] + "0OI"}), "base58"),
        "invalid JSON": (json.dumps(data)[:-2], "JSON"),
        "missing field": (json.dumps({k: v for k, v in data.items() if k != "public_key"}), "public_key"),
    }


@pytest.mark.parametrize("case", ["mismatched public key", "truncated secret", "non-base58 character", "invalid JSON", "missing field"])
def test_keys_inspect_rejects_broken_keys_naming_file_and_problem(tmp_path, fixtures_dir, case):
    data = json.loads((fixtures_dir / "key-file.example.core-crypto-test.json").read_text())
    text, word = _variants(data)[case]
    key = tmp_path / "validator_key.json"
    key.write_text(text)
    key.chmod(0o600)
    result = run("keys", "inspect", str(key))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert str(key) in message.replace(" ", "") or key.name in message
    assert word.lower() in message.lower()
    secret_b58 = data["secret_key"].split(":")[1]
    for i in range(0, len(secret_b58) - 8, 4):
        assert secret_b58[i : i + 8] not in result.stdout + result.stderr


# --- check --------------------------------------------------------------------------------


def check(home: Path, role: str, *extra: str) -> tuple[int, list[dict[str, str]]]:
    result = run("check", "--home", str(home), "--role", role, "--json", *extra)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)["findings"]


def errors_about(findings: list[dict[str, str]], *words: str) -> list[dict[str, str]]:
    return [f for f in findings if f["severity"] == "error" and all(w in f["what"] for w in words)]


def test_check_accepts_each_guide_fixture_in_its_role(tmp_path, fixtures_dir):
    for fixture, role in (
        ("config.failover-option2-standby.reconstructed.json", "hot-swap-standby"),
        ("config.failover-option1-standby.reconstructed.json", "rpc-standby"),
    ):
        home = make_home(tmp_path, fixtures_dir, fixture, name=role)
        code, findings = check(home, role, "--validator-id", POOL, "--chain-id", "mainnet")
        assert code == 0, findings
    home = make_home(tmp_path, fixtures_dir, "config.failover-option1-promoted.reconstructed.json", name="validator")
    key = home / "validator_key.json"
    shutil.copyfile(fixtures_dir / "key-file.example.core-crypto-test.json", key)
    key.chmod(0o600)
    code, findings = check(home, "validator", "--chain-id", "mainnet")
    assert code == 0, findings


def test_check_hot_swap_standby_shadowing_another_pool(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option2-standby.reconstructed.json")
    code, findings = check(home, "hot-swap-standby", "--validator-id", "other-pool.poolv1.near")
    assert code == 1
    assert errors_about(findings, "shadows", POOL, "other-pool.poolv1.near")


def test_check_hot_swap_standby_without_memtries(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option2-standby.reconstructed.json")
    cfg = json.loads((home / "config.json").read_text())
    cfg["store"]["load_mem_tries_for_tracked_shards"] = False
    (home / "config.json").write_text(json.dumps(cfg, indent=2))
    code, findings = check(home, "hot-swap-standby", "--validator-id", POOL)
    assert code == 1 and errors_about(findings, "load_mem_tries_for_tracked_shards")


def test_check_rpc_standby_with_memtries(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option1-standby.reconstructed.json")
    cfg = json.loads((home / "config.json").read_text())
    cfg["store"]["load_mem_tries_for_tracked_shards"] = True
    (home / "config.json").write_text(json.dumps(cfg, indent=2))
    code, findings = check(home, "rpc-standby")
    assert code == 1 and errors_about(findings, "load_mem_tries_for_tracked_shards")


def test_check_standby_holding_the_validator_key(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option2-standby.reconstructed.json")
    shutil.copyfile(fixtures_dir / "key-file.example.core-crypto-test.json", home / "validator_key.json")
    (home / "validator_key.json").chmod(0o600)
    code, findings = check(home, "hot-swap-standby", "--validator-id", POOL)
    assert code == 1 and errors_about(findings, "validator key", "validator_key.json")


@pytest.mark.parametrize("chain", ["mainnet", "testnet"])
def test_check_validator_tracking_all_shards_on_public_chains(tmp_path, fixtures_dir, chain):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option1-standby.reconstructed.json")
    shutil.copyfile(fixtures_dir / "key-file.example.core-crypto-test.json", home / "validator_key.json")
    (home / "validator_key.json").chmod(0o600)
    code, findings = check(home, "validator", "--chain-id", chain)
    assert code == 1 and errors_about(findings, "AllShards", chain)
    (home / "genesis.json").write_text(json.dumps({"genesis_time": "2020-07-21T16:55:51Z", "chain_id": chain}))
    code, findings = check(home, "validator")
    assert code == 1 and errors_about(findings, "AllShards", chain)


def test_check_new_and_legacy_tracking_fields_together(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option1-standby.reconstructed.json")
    cfg = json.loads((home / "config.json").read_text())
    cfg["tracked_shards"] = []
    (home / "config.json").write_text(json.dumps(cfg, indent=2))
    code, findings = check(home, "rpc-standby")
    assert code == 1
    assert errors_about(findings, "'config.tracked_shards' and 'config.tracked_shards_config' cannot be both set")


def test_check_world_readable_key_file(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.failover-option1-promoted.reconstructed.json")
    key = home / "validator_key.json"
    shutil.copyfile(fixtures_dir / "key-file.example.core-crypto-test.json", key)
    os.chmod(key, 0o644)
    code, findings = check(home, "validator", "--chain-id", "mainnet")
    assert code == 1
    [finding] = [f for f in findings if f["severity"] == "error"]
    assert "validator_key.json" in finding["what"] and "chmod 600" in finding["fix"]


def test_comments_dropped_on_write_get_a_notice_and_stay_in_the_backup(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "config.neard-init-mainnet.reconstructed.json")
    text = (home / "config.json").read_text()
    commented = "// staged for the failover drill\n" + text
    (home / "config.json").write_text(commented)
    dry = run("config", "standby", "--home", str(home), "--mode", "hot-swap", "--validator-id", POOL, "--dry-run")
    assert dry.returncode == 0 and "has comments" in dry.stderr and "nothing written" in dry.stderr
    result = run("config", "standby", "--home", str(home), "--mode", "hot-swap", "--validator-id", POOL, "--json")
    assert result.returncode == 0, result.stderr
    [backup] = backups(home)
    assert json.loads(result.stdout)["comments_dropped"] is True
    assert "has comments" in result.stderr and str(backup) in result.stderr
    assert backup.read_text() == commented and "failover drill" not in (home / "config.json").read_text()
    again = run("config", "standby", "--home", str(home), "--mode", "rpc")
    assert again.returncode == 0 and "comments" not in again.stderr  # none left to drop


def test_config_show_exits_non_zero_while_reporting_a_neard_error(tmp_path, fixtures_dir):
    home = make_home(tmp_path, fixtures_dir, "nearcore-res-example-config-no-gc.json")
    cfg = json.loads((home / "config.json").read_text())
    cfg["tracked_shards"] = [0]  # beside tracked_shards_config: neard refuses both at once
    (home / "config.json").write_text(json.dumps(cfg, indent=2))
    for args in ([], ["--json"]):
        shown = run("config", "show", "--home", str(home), *args)
        assert shown.returncode == 1, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["semantic_errors"]


def test_check_c_compares_local_homes_and_key_stores_by_real_path(tmp_path):
    """Apart: ok (exit 0). The inventory itself refuses a local key_store symlinked into a home
    when it loads (exit 2 with the resolved path), before any check runs."""
    node = """
[[node]]
name = "{name}"
host = "local"
home = "{name}"
rpc = "http://127.0.0.1:3030"
control = "pidfile:{name}/neard.pid"
start = ["neard", "--home", "{name}", "run"]
key_store = "{store}/validator_key.json"
standby = "hot-swap"
"""
    header = '[validator]\naccount_id = "pool.poolv1.near"\nchain_id = "localnet"\n'
    for name in ("val-a", "val-b"):
        (tmp_path / name).mkdir()
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(header + node.format(name="val-a", store="keys/a") + node.format(name="val-b", store="keys/b"))
    ok = run("check", "-c", str(inventory))
    assert ok.returncode == 0 and "apart, by real path" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "staged").symlink_to(tmp_path / "val-a")
    inventory.write_text(header + node.format(name="val-a", store="keys/a") + node.format(name="val-b", store="staged"))
    refused = run("check", "-c", str(inventory))
    assert refused.returncode == 2 and "inside node val-a's home" in " ".join(refused.stderr.split()), refused.stderr
