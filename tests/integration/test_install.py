"""Install and defaults: the built wheel in a clean venv, the inventory lookup order, `init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from near_failover.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "near_failover"]


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, env=env, cwd=cwd, stdin=subprocess.DEVNULL, check=False)


def test_the_built_wheel_installs_into_a_clean_venv_and_prints_its_version(tmp_path: Path) -> None:
    """What `pipx install dist/*.whl` does: a venv of its own with the wheel in it. The tests have
    no network, so the clean venv reaches the dependencies (not near-failover) through a .pth line
    naming this venv's site-packages; the package, its data and its entry point are the wheel's."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((tmp_path / "dist").glob("near_failover-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=300, env=clean_env, check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # after the install: pip must not take the development copy's metadata for an installed one
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    version = subprocess.run([venv / "bin" / "near-failover", "--version"], capture_output=True, text=True, timeout=60, env=clean_env, cwd=tmp_path, check=False)
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (version.returncode, version.stdout) == (0, f"near-failover {expected}\n"), version.stderr
    where = subprocess.run([venv / "bin" / "python", "-c", "import near_failover.localnet.homes as h; print(h.__file__); print(h.template_text('log_config.json')[:1])"],
                           capture_output=True, text=True, timeout=60, env=clean_env, cwd=tmp_path, check=False)
    assert where.returncode == 0 and where.stdout.startswith(str(site)), where.stdout + where.stderr  # the wheel's copy, templates included


def _inventory(path: Path, account: str) -> Path:
    done = run("init", "-c", path, "--account-id", account, "--chain-id", "localnet", "--node", "val-a=local")
    assert done.returncode == 0, done.stderr
    return path


@pytest.mark.parametrize("place", ["-c", "env"])
def test_the_inventory_comes_from_c_then_the_environment(tmp_path: Path, place: str) -> None:
    by_c = _inventory(tmp_path / "c" / "inventory.toml", "from-c.poolv1.near")
    by_env = _inventory(tmp_path / "env" / "inventory.toml", "from-env.poolv1.near")
    env = {**os.environ, "NEAR_FAILOVER_CONFIG": str(by_env)}
    args = ["check", "--control", "--node", "val-a", "--json"]
    done = run(*args, *(["-c", str(by_c)] if place == "-c" else []), env=env)
    assert json.loads(done.stdout)["node"] == "val-a", done.stderr
    # which file was read shows in an error that names it: an unknown node
    named = run("check", "--control", "--node", "val-z", *(["-c", str(by_c)] if place == "-c" else []), env=env)
    assert named.returncode == 2 and str(by_c if place == "-c" else by_env) in named.stderr, named.stderr


def test_no_inventory_anywhere_names_all_three_places(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NEAR_FAILOVER_CONFIG"}
    if Path("/etc/near-failover/inventory.toml").exists():
        pytest.fail("/etc/near-failover/inventory.toml exists on this machine: the test needs it absent")
    done = run("status", env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    for place in ("-c", "$NEAR_FAILOVER_CONFIG is not set", "/etc/near-failover/inventory.toml does not exist"):
        assert place in done.stderr, done.stderr
    stale = run("status", env={**env, "NEAR_FAILOVER_CONFIG": str(tmp_path / "gone.toml")})
    assert stale.returncode == 2 and f"names {tmp_path / 'gone.toml'}, which does not exist" in stale.stderr, stale.stderr


def test_init_writes_a_loadable_inventory_and_a_private_token_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "inventory.toml"
    done = run("init", "-c", path, "--account-id", "pool.poolv1.near", "--chain-id", "testnet",
               "--node", "val-a=ssh://near@10.0.0.11", "--node", "val-b=ssh://near@10.0.0.12:2222")
    assert done.returncode == 0, done.stderr
    inventory = load_inventory(path)
    assert inventory.names == ["val-a", "val-b"] and inventory.validator.chain_id == "testnet"
    assert [n.privilege for n in inventory.nodes] == ["sudo", "sudo"]  # a non-root login
    assert path.read_text().count("\n#") >= 5  # commented for the operator
    token = path.with_name("api-token")
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) >= 32
    before = (path.read_text(), token.read_text())
    again = run("init", "-c", path, "--account-id", "other.poolv1.near", "--chain-id", "mainnet", "--node", "x=local")
    assert again.returncode == 2 and "never overwrites" in again.stderr, again.stderr
    assert (path.read_text(), token.read_text()) == before


@pytest.mark.parametrize("missing", ["--account-id", "--chain-id", "--node"])
def test_init_without_a_terminal_and_a_value_missing_is_an_input_error(tmp_path: Path, missing: str) -> None:
    values = {"--account-id": "pool.poolv1.near", "--chain-id": "testnet", "--node": "val-a=local"}
    args = [a for option, value in values.items() if option != missing for a in (option, value)]
    done = run("init", "-c", tmp_path / "inventory.toml", *args)
    assert done.returncode == 2 and f"{missing} is missing and there is no terminal" in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())  # nothing written
