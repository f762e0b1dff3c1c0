"""A non-default `validator_key_file` in config.json is where every reader and writer of the key
looks: fence, activation, preflight, recovery, status, the boot guard (neard loads
<home>/<validator_key_file>, nearcore/src/dyn_config.rs). Before, the tool looked only at
validator_key.json: it 'fenced' val-a without touching the key it signs with."""

from __future__ import annotations

import json
import signal
import time

from near_failover.neard.config import dumps_config, parse_config_text
from tests.integration.localnet_harness import Localnet, cli
from tests.integration.test_procedures import assert_signer, move

KEY_FILE = "keys/pool.json"


def use_key_file(net: Localnet) -> None:
    """Every home's config.json names keys/pool.json; val-a's key moves there; SIGHUP reloads."""
    for name in ("val-a", "val-b", "val-c"):
        home = net.directory / name
        config = home / "config.json"
        cfg = parse_config_text(config.read_text())
        cfg["validator_key_file"] = KEY_FILE
        config.write_text(dumps_config(cfg))
        (home / "keys").mkdir(mode=0o700)
        net.signal(name, signal.SIGHUP)
    home = net.directory / "val-a"
    (home / "validator_key.json").rename(home / KEY_FILE)
    net.signal("val-a", signal.SIGHUP)
    time.sleep(1.0)
    assert_signer(net, "val-a")


def key_files(net: Localnet) -> dict[str, tuple[bool, bool]]:
    return {n: ((net.directory / n / KEY_FILE).exists(), (net.directory / n / "validator_key.json").exists()) for n in ("val-a", "val-b", "val-c")}


def test_switchover_failover_and_guard_with_a_non_default_key_file(net: Localnet):
    use_key_file(net)

    report = move(net, "switchover", "val-b")
    assert report["ok"], report
    assert_signer(net, "val-b")
    assert key_files(net) == {"val-a": (False, False), "val-b": (True, False), "val-c": (False, False)}

    status = json.loads(cli("status", "-c", net.inventory, "--json", check=False).stdout)
    in_home = {n["name"]: n["key_in_home"] for n in status["nodes"]}
    assert in_home == {"val-a": False, "val-b": True, "val-c": False}, status

    # val-b's neard dies; a failover onto the Option 1 standby restarts it with the key.
    net.signal("val-b", signal.SIGKILL)
    report = move(net, "failover", "val-c", "--mode", "rpc")
    assert report["ok"], report
    assert_signer(net, "val-c")
    assert key_files(net) == {"val-a": (False, False), "val-b": (False, False), "val-c": (True, False)}
    net.assert_no_double_sign()

    # The boot guard looks at the same path: a key restored there on a node without the lease.
    net.edit_inventory(None, lease={"store": "sqlite", "path": str(net.directory / "lease.sqlite")})
    absent = cli("guard", "-c", net.inventory, "--node", "val-b", check=False)
    assert absent.returncode == 0 and "is absent" in absent.stdout, absent
    staged = net.directory / "keys" / "val-b" / "validator_key.json"
    (net.directory / "val-b" / KEY_FILE).write_text(staged.read_text())
    (net.directory / "val-b" / KEY_FILE).chmod(0o600)
    refused = cli("guard", "-c", net.inventory, "--node", "val-b", check=False)
    assert refused.returncode == 1, refused
    assert f"{net.directory / 'val-b' / KEY_FILE} is present but nobody holds the lease" in refused.stderr
