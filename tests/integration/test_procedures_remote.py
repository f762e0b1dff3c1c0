"""Procedures through the other ways of reaching a node: a real OpenSSH server on loopback, and
systemd (a fake `systemctl` on PATH that drives the real emulated neard)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.integration.fake_systemd import define_unit, install_fake_systemctl
from tests.integration.localnet_harness import Localnet, cli
from tests.integration.sshd_server import running_sshd


def test_switchover_with_every_node_reached_over_ssh(net: Localnet, tmp_path: Path):
    with running_sshd(tmp_path / "sshd") as sshd:
        for name in ("val-a", "val-b", "val-c"):
            net.edit_inventory(name, host=sshd.url)
        net.edit_inventory(ssh={"known_hosts": str(sshd.known_hosts), "identity": [str(sshd.user_key)]})
        done = cli("switchover", "-c", net.inventory, "--to", "val-b", "--yes", "--json")
        report = json.loads(done.stdout)
        assert report["ok"] and report["from"] == "val-a"
        assert "Accepted publickey" in sshd.log()
    # The fence's proof was observed over SSH: val-a's RPC closed, no process serving its home.
    history = json.loads(cli("history", "-c", net.inventory, "--json").stdout)
    observed = next(s for s in history[0]["steps"] if s["name"] == "fence")["evidence"]["observed"]
    assert observed["verdict"] == "gone" and observed["processes"]["pids"] == {}, observed
    assert net.rpc_status("val-b")["validator_account_id"] == net.pool()
    assert not (net.directory / "val-a" / "validator_key.json").exists()
    assert (net.directory / "val-a" / "neard.pid.masked").exists()
    net.wait_height(5)
    net.assert_no_double_sign()


def test_ssh_host_key_mismatch_refuses_before_anything_changes(net: Localnet, tmp_path: Path):
    with running_sshd(tmp_path / "sshd") as sshd:
        other = tmp_path / "other_known_hosts"
        other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
        for name in ("val-a", "val-b"):
            net.edit_inventory(name, host=sshd.url)
        net.edit_inventory(ssh={"known_hosts": str(other), "identity": [str(sshd.user_key)]})
        done = cli("switchover", "-c", net.inventory, "--to", "val-b", "--yes", "--json", check=False)
    assert done.returncode == 1
    assert "host key" in (done.stdout + done.stderr).lower()
    assert net.rpc_status("val-a")["validator_account_id"] == net.pool()
    assert net.rpc_status("val-b")["validator_account_id"] is None


def test_systemd_controlled_primary_is_stopped_and_masked(net: Localnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir, state = install_fake_systemctl(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_DIR", str(state))
    # Hand val-a over to "systemd": stop the localnet's process, run the same argv as a unit.
    val_a = net.node("val-a")
    argv = next(n for n in tomllib.loads(net.inventory.read_text())["node"] if n["name"] == "val-a")["start"]
    os.kill(int(val_a["pid"]), signal.SIGTERM)
    wait_until(lambda: not net.node("val-a")["alive"])
    define_unit(state, "neard-val-a.service", argv)
    net.edit_inventory("val-a", control="systemd:neard-val-a.service")
    subprocess.run(["systemctl", "start", "neard-val-a.service"], check=True, timeout=30)
    try:
        wait_until(lambda: _status(val_a["rpc"]).get("validator_account_id") == net.pool())
        report = json.loads(cli("switchover", "-c", net.inventory, "--to", "val-b", "--yes", "--json").stdout)
        assert report["ok"] and report["from"] == "val-a"
        calls = (state / "calls.log").read_text()
        assert "stop --no-block neard-val-a.service" in calls and "mask neard-val-a.service" in calls
        assert (state / "neard-val-a.service.masked").exists()
        assert net.rpc_status("val-b")["validator_account_id"] == net.pool()
        net.wait_height(5)
        net.assert_no_double_sign()
    finally:
        subprocess.run(["systemctl", "stop", "neard-val-a.service"], check=False, timeout=30)


def _status(rpc: str) -> dict:
    try:
        return httpx.get(f"{rpc}/status", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return {}


def wait_until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)
