"""A fence is proven by what is observed, never by what a control reports (issue: never two
signers). Each control below is wrong in a way an operator's typo makes it wrong; each move must
stop before activation, leave the old primary signing with its key in its home, name the
contradiction, and leave the ledger without a double sign."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.fake_systemd import define_unit, install_fake_systemctl
from tests.integration.localnet_harness import BLOCK_TIME, Localnet, cli, start_localnet, stop_localnet
from tests.integration.test_procedures import move

WATCH_BLOCKS = 10


@pytest.fixture(scope="module")
def shared_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    """One localnet for the module: every test here leaves val-a signing as it found it."""
    net = start_localnet(tmp_path_factory.mktemp("fence-proof") / "net")
    try:
        yield net
    finally:
        stop_localnet(net)


@pytest.fixture
def net(shared_net: Localnet) -> Iterator[Localnet]:
    """The shared localnet with val-a's control as `localnet up` wrote it, restored after."""
    original = shared_net.inventory.read_text()
    try:
        yield shared_net
    finally:
        shared_net.inventory.write_text(original)


def assert_refused_and_primary_untouched(net: Localnet, report: dict, *needles: str, misreporting: str = "val-a") -> None:
    assert report["_exit"] != 0 and report["outcome"] == "refused", report
    for needle in needles:
        assert needle in report["message"], report["message"]
    assert f"fix `control` for {misreporting}" in report["message"]
    urls = {n["name"]: n["rpc"] for n in net.status()["nodes"]}
    time.sleep(WATCH_BLOCKS * BLOCK_TIME)  # a second signer would double-sign within a few blocks
    assert httpx.get(f"{urls['val-a']}/status", timeout=5).json()["validator_account_id"] == net.pool()
    assert httpx.get(f"{urls['val-b']}/status", timeout=5).json()["validator_account_id"] is None
    assert (net.directory / "val-a" / "validator_key.json").exists()
    assert not (net.directory / "val-b" / "validator_key.json").exists()
    net.assert_no_double_sign()


@pytest.mark.parametrize("mode", ["hot-swap", "rpc"])
def test_wrong_pid_file_is_a_contradiction_not_a_fence(net: Localnet, mode: str):
    """The issue's reproduction: a pid file naming no process used to be taken as 'stopped'."""
    wrong = net.directory / "val-a" / "WRONG.pid"
    net.edit_inventory("val-a", control=f"pidfile:{wrong}")
    report = move(net, "switchover", "val-b", "--mode", mode, check=False)
    assert_refused_and_primary_untouched(net, report, f"pid file {wrong} names no running neard", "val-a still signs")
    # The control it could not trust was not left masked: the operator's fix is the pid file.
    assert not wrong.with_name("WRONG.pid.masked").exists()


@pytest.mark.parametrize("mode", ["hot-swap", "rpc"])
def test_target_whose_pid_file_names_another_nodes_neard_is_refused_before_the_fence(net: Localnet, mode: str):
    """The target's control would SIGHUP or restart the wrong process (chaos seed 6093: an Option 1
    "restart" found val-b's old neard answering at once, without the key, and verify waited two
    minutes while nobody signed). Its readiness refuses it before the primary is touched."""
    pidfile = net.directory / "val-b" / "WRONG.pid"
    pidfile.write_text((net.directory / "val-c" / "neard.pid").read_text())
    net.edit_inventory("val-b", control=f"pidfile:{pidfile}")
    report = move(net, "switchover", "val-b", "--mode", mode, check=False)
    action = "SIGHUP" if mode == "hot-swap" else "restart"
    assert_refused_and_primary_untouched(net, report, f"pid file {pidfile}", "does not find it running", f"the {action} goes through that control", misreporting="val-b")


def test_check_control_finds_a_control_that_misses_the_running_neard(net: Localnet):
    """What a move's readiness refuses above, `check --control` tells before any move; with the
    control `localnet up` wrote, it finds the neard that answers."""
    def errors() -> list[dict]:
        checked = cli("check", "-c", net.inventory, "--node", "val-b", "--control", "--json", check=False)
        found = [f for f in json.loads(checked.stdout)["findings"] if f["severity"] == "error"]
        assert checked.returncode == (1 if found else 0), checked.stdout
        return found

    assert errors() == []
    pidfile = net.directory / "val-b" / "WRONG.pid"
    pidfile.write_text((net.directory / "val-c" / "neard.pid").read_text())
    net.edit_inventory("val-b", control=f"pidfile:{pidfile}")
    [error] = errors()
    assert f"pid file {pidfile}" in error["what"] and "does not find it running" in error["what"], error
    assert "fix `control` for val-b" in error["fix"], error


def test_pid_file_naming_an_unrelated_process_never_signals_it(net: Localnet, tmp_path: Path):
    unrelated = subprocess.Popen(["sleep", "600"], cwd=tmp_path, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        pidfile = tmp_path / "neard.pid"
        pidfile.write_text(f"{unrelated.pid}\n")
        net.edit_inventory("val-a", control=f"pidfile:{pidfile}")
        report = move(net, "switchover", "val-b", check=False)
        assert unrelated.poll() is None, "the unrelated process was signalled"
        assert_refused_and_primary_untouched(net, report, f"pid file {pidfile} names no running neard")
    finally:
        unrelated.kill()
        unrelated.wait()


def test_stop_command_that_exits_0_and_does_nothing(net: Localnet):
    home = net.directory / "val-a"
    net.edit_inventory(
        "val-a",
        control="command",
        commands={"start": ["true"], "stop": ["true"], "is_active": ["false"], "reload": ["true"]},
    )
    report = move(net, "switchover", "val-b", check=False)
    assert_refused_and_primary_untouched(net, report, "the `stop` command (true)", "val-a still signs")
    assert home.exists()


def test_systemd_unit_that_is_not_the_one_running_neard(net: Localnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir, state = install_fake_systemctl(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_DIR", str(state))
    # The unit runs something, but neard was started outside systemd: stopping the unit stops
    # only its own process, and systemctl reports the unit inactive.
    define_unit(state, "neard.service", [sys.executable, "-c", "import time; time.sleep(600)"])
    subprocess.run(["systemctl", "start", "neard.service"], check=True, env={**os.environ})
    net.edit_inventory("val-a", control="systemd:neard.service")
    try:
        report = move(net, "switchover", "val-b", check=False)
        assert_refused_and_primary_untouched(net, report, "systemd unit neard.service", "val-a still signs")
        assert "masked" not in subprocess.run(["systemctl", "show", "-p", "LoadState", "--value", "neard.service"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["systemctl", "stop", "neard.service"], env={**os.environ})


def test_failover_onto_a_frozen_primary_behind_a_wrong_pid_file(net: Localnet):
    """A failover: val-a's neard hangs (RPC silent) and its pid file is wrong. Its control says
    nothing runs, but /proc shows a process serving its home: not proven, nothing activated."""
    wrong = net.directory / "val-a" / "WRONG.pid"
    net.edit_inventory("val-a", control=f"pidfile:{wrong}")
    net.signal("val-a", signal.SIGSTOP)
    try:
        report = move(net, "failover", "val-b", check=False)
    finally:
        net.signal("val-a", signal.SIGCONT)
    assert_refused_and_primary_untouched(net, report, "cannot be shown not to sign", "serves")
