"""The least-privilege deployment, for real: a non-root user that neard runs as and that the tool
logs in as over the real sshd, Debian's real sudo with the shipped deploy/sudoers file, and the
fake systemctl bound over /usr/bin/systemctl inside a mount namespace (sudo's secure_path finds
that path, never $PATH). The validator moves both ways with zero double signs; `check --control`
names the rule a sudoers file lacks. The user and its sudoers file are removed afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from near_failover.control.privilege import SYSTEMCTL_PATH
from tests.integration.fake_systemd import define_unit, install_fake_systemctl
from tests.integration.localnet_harness import Localnet, cli, running
from tests.integration.sshd_server import running_sshd
from tests.integration.test_procedures_remote import _status, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SRC = Path(__file__).resolve().parents[2] / "src"
MOVED = ("val-a", "val-b")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates a user and a sudoers file: run as root (make test does)")


def _unit(name: str) -> str:
    return f"neard-{name}.service"


def shipped_sudoers(user: str, unit: str, drop: str | None = None) -> str:
    """deploy/sudoers/near-failover for ``user`` and ``unit`` (the names an operator edits), with
    the rule for ``systemctl <drop>`` left out."""
    alias = "NEAR_FAILOVER_" + unit.replace("-", "_").replace(".", "_").upper()
    text = (DEPLOY / "sudoers" / "near-failover").read_text()
    text = text.replace("NEAR_FAILOVER_NEARD_SERVICE", alias).replace("neard.service", unit).replace("\nnear ALL=", f"\n{user} ALL=")
    if drop is not None:
        line = f"    {SYSTEMCTL_PATH} {drop} {unit}, \\\n"
        assert line in text
        text = text.replace(line, "")
    return text


@contextmanager
def throwaway_user() -> Iterator[str]:
    """A non-root user with a home and a shell; removed (with its processes' files) afterwards."""
    name = f"nfo{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, timeout=30)
    # No password, but not locked ("!"): sshd without PAM refuses locked accounts even with a key.
    subprocess.run(["usermod", "--password", "*", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "--force", "--remove", name], check=False, timeout=30, capture_output=True)
        assert name not in {u.pw_name for u in pwd.getpwall()}


@contextmanager
def sudoers_installed(name: str, text: str) -> Iterator[Path]:
    """``text`` in /etc/sudoers.d, once sudo's own parser accepts it; removed afterwards."""
    path = Path("/etc/sudoers.d") / name
    draft = Path(tempfile.mkdtemp()) / name
    draft.write_text(text)
    checked = subprocess.run(["visudo", "-cf", str(draft)], check=False, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    draft.chmod(0o440)
    shutil.move(draft, path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        shutil.rmtree(draft.parent, ignore_errors=True)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder the throwaway user can traverse (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="nf-privilege-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _hand_to_systemd(net: Localnet, user: str, state: Path, systemctl: list[str]) -> None:
    """Stop the localnet's processes of the moved nodes and run the same argv as units with
    User=user, their homes and key stores owned by that user (neard's own user)."""
    nodes = [n for n in _inventory(net)["node"] if n["name"] in MOVED]
    for name in MOVED:
        os.kill(net.pid(name), signal.SIGTERM)
    wait_until(lambda: not any(n["alive"] for n in net.status()["nodes"] if n["name"] in MOVED))
    for node in nodes:
        for path in (Path(node["home"]), Path(node["key_store"]).parent):
            subprocess.run(["chown", "-R", user, str(path)], check=True, timeout=30)
        define_unit(state, _unit(node["name"]), node["start"], user=user)
        subprocess.run([*systemctl, "start", _unit(node["name"])], check=True, timeout=30)


def _inventory(net: Localnet) -> dict:
    import tomllib

    return tomllib.loads(net.inventory.read_text())


def _bound_systemctl(directory: Path, state: Path, fake: Path) -> Path:
    """What gets bound over /usr/bin/systemctl: the fake with its state folder and our tree, which
    sudo's env_reset would drop from the environment."""
    wrapper = directory / "systemctl-bound"
    wrapper.write_text(f'#!/bin/sh\nexport FAKE_SYSTEMD_DIR={state} PYTHONPATH={SRC}\nexec {fake} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _namespace(directory: Path, systemctl: Path) -> list[str]:
    """The argv prefix that runs sshd in its own mount namespace, where /usr/bin/systemctl is the
    fake and neard's user can run this Python, its venv and our tree: a folder on their way that
    only root may enter (pyenv under /root, CI's mktemp folder) shows there only the parts on
    those paths."""
    wanted = (Path(sys.executable), Path(sys.executable).resolve(), SRC)
    shown: dict[Path, set[str]] = {}
    for path in wanted:
        for folder in path.parents:
            if folder != Path("/") and not folder.stat().st_mode & 0o001:
                shown.setdefault(folder, set()).add(path.relative_to(folder).parts[0])
    binds = []
    for i, (folder, children) in enumerate(shown.items()):
        view = directory / f"view-{i}"
        view.mkdir(mode=0o755)
        view.chmod(0o755)
        for child in sorted(children):
            (view / child).mkdir()
            binds.append(f"mount --bind {folder / child} {view / child}")
        binds.append(f"mount --rbind {view} {folder}")
    script = " && ".join([*binds, f"mount --bind {systemctl} {SYSTEMCTL_PATH}", 'exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def _rejoin_as_standby(net: Localnet, name: str, systemctl: list[str]) -> None:
    """A fenced old signer made an Option 2 standby again: its config shadows the pool, then
    unmasked and started without the key (what the runbook has the operator do)."""
    cli("config", "standby", "--home", net.directory / name, "--mode", "hot-swap", "--validator-id", net.pool())
    for verb in ("unmask", "start"):
        subprocess.run([*systemctl, verb, _unit(name)], check=True, timeout=30)
    wait_until(lambda: _status(net.node(name)["rpc"]).get("sync_info", {}).get("syncing") is False)


def test_sudo_deployment_moves_the_validator_both_ways(open_dir: Path) -> None:
    with throwaway_user() as user, running(open_dir / "net") as net:
        uid = pwd.getpwnam(user).pw_uid
        bin_dir, state = install_fake_systemctl(open_dir)
        state.chmod(0o755)
        (state / "calls.log").touch()
        (state / "calls.log").chmod(0o666)
        bound = _bound_systemctl(open_dir, state, bin_dir / "systemctl")
        subprocess.run(["chown", user, str(net.directory / "keys")], check=True, timeout=30)
        during_moves: list[str] = []
        with running_sshd(open_dir / "sshd", user=user, wrap=_namespace(open_dir, bound)) as sshd:
            # the test's own systemctl calls (as root, in sshd's namespace, where neard's user can run Python)
            systemctl = ["nsenter", f"--target={sshd.process.pid}", "--mount", SYSTEMCTL_PATH]
            try:
                _hand_to_systemd(net, user, state, systemctl)
                for name in MOVED:
                    net.edit_inventory(name, host=sshd.url, control=f"systemd:{_unit(name)}", privilege="sudo")
                net.edit_inventory(ssh={"known_hosts": str(sshd.known_hosts), "identity": [str(sshd.user_key)]})
                _check_control_names_a_missing_rule(net, user)
                rules = "".join(shipped_sudoers(user, _unit(name)) for name in MOVED)
                with sudoers_installed(f"nf-test-{user}", rules):
                    checked = cli("check", "-c", net.inventory, "--node", "val-a", "--control", "--json", check=False)
                    findings = json.loads(checked.stdout)["findings"]
                    assert not [f for f in findings if f["severity"] == "error"], findings
                    wait_until(lambda: _status(net.node("val-a")["rpc"]).get("validator_account_id") == net.pool())
                    for source, target in (("val-a", "val-b"), ("val-b", "val-a")):
                        if target == "val-a":
                            _rejoin_as_standby(net, "val-a", systemctl)
                        before = len((state / "calls.log").read_text().splitlines())
                        report = json.loads(cli("switchover", "-c", net.inventory, "--to", target, "--yes", "--json").stdout)
                        during_moves += (state / "calls.log").read_text().splitlines()[before:]
                        assert report["ok"] and report["from"] == source, report
                        assert net.rpc_status(target)["validator_account_id"] == net.pool()
                        assert not (net.directory / source / "validator_key.json").exists()
                        assert (state / f"{_unit(source)}.masked").exists()
                net.wait_height(5)
                net.assert_no_double_sign()
            finally:
                for name in MOVED:
                    subprocess.run([*systemctl, "stop", _unit(name)], check=False, timeout=60)
    calls = [line.rsplit("\tuid=", 1) for line in during_moves]
    through_sudo = {c for c, who in calls if who == "0" and not c.startswith("__")}
    as_user = {c.split()[0] for c, who in calls if who == str(uid)}
    for name in MOVED:
        assert f"stop --no-block {_unit(name)}" in through_sudo and f"mask {_unit(name)}" in through_sudo, through_sudo
    assert {f"kill -s HUP {_unit(name)}" for name in MOVED} <= through_sudo, through_sudo
    assert as_user == {"show", "is-active"}, as_user  # the reads need no privilege


def _check_control_names_a_missing_rule(net: Localnet, user: str) -> None:
    """With the shipped file lacking one rule, `check --control` fails naming that rule alone;
    with privilege = "root" for a non-root login, it says to use sudo."""
    with sudoers_installed(f"nf-test-{user}", shipped_sudoers(user, _unit("val-b"), drop="mask")):
        checked = cli("check", "-c", net.inventory, "--node", "val-b", "--control", check=False)
    text = " ".join((checked.stdout + checked.stderr).split())
    assert checked.returncode == 1, text
    assert f"{user} ALL=(root) NOPASSWD: {SYSTEMCTL_PATH} mask {_unit('val-b')}" in text, text
    assert text.count("sudo does not allow") == 1, text  # every other rule is there
    net.edit_inventory("val-b", privilege="root")
    unprivileged = cli("check", "-c", net.inventory, "--node", "val-b", "--control", check=False)
    net.edit_inventory("val-b", privilege="sudo")
    assert unprivileged.returncode == 1
    assert 'privilege = "sudo"' in " ".join((unprivileged.stdout + unprivileged.stderr).split())
