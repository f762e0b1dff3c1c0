"""The watchdog in its own unit outlives its agent: systemd's control-group kill of a crashed
agent (the agent and every process it spawned, its own child watchdog too) leaves the unit's
watchdog running, and it fences the leader's neard before the lease can expire. Both processes
say READY and WATCHDOG over a NOTIFY_SOCKET the test creates, as systemd would see them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from near_failover.ha.lease import lease_clock
from tests.integration.ha_harness import HaCluster, alive, pids_with_argv
from tests.integration.localnet_harness import CLI, Localnet
from tests.integration.localnet_support import wait_for

pytestmark = pytest.mark.integration


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; collects what was said."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.said: list[str] = []

    def received(self) -> list[str]:
        while True:
            try:
                self.said.append(self.sock.recv(256).decode())
            except BlockingIOError:
                return self.said

    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": "2000000"}


@pytest.fixture
def cluster(net: Localnet, tmp_path: Path) -> Iterator[HaCluster]:
    ha = HaCluster(net, [])
    ha.configure_lease(store="sqlite", path=str(tmp_path / "lease.sqlite"))
    try:
        yield ha
    finally:
        ha.close()


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def test_unit_watchdog_fences_after_its_agent_is_killed(cluster: HaCluster, tmp_path: Path) -> None:
    unit_notify, agent_notify = NotifySocket(tmp_path / "watchdog.notify"), NotifySocket(tmp_path / "agent.notify")
    unit_log = tmp_path / "watchdog-unit.log"
    unit = _spawn([*CLI, "watchdog", "-c", str(cluster.inventory), "--node", "val-a"], unit_log, unit_notify.env())
    try:
        wait_for(lambda: "READY=1" in unit_notify.received(), 30, "the unit watchdog's READY=1")
        # The CLI became the light watchdog (same pid, as systemd's NotifyAccess=main needs).
        assert "near_failover.ha.watchdog_unit" in Path(f"/proc/{unit.pid}/cmdline").read_bytes().decode()
        agent = _spawn([*CLI, "agent", "-c", str(cluster.inventory), "--node", "val-a"], cluster.agent_log_path("val-a"), agent_notify.env())
        cluster.agents["val-a"] = agent
        wait_for(lambda: (cluster.heartbeat("val-a") or {}).get("armed"), 40, "val-a's agent to lead")
        wait_for(lambda: "READY=1" in agent_notify.received() and "WATCHDOG=1" in agent_notify.received(), 15, "the agent's READY and pings")
        neard = cluster.neard_pid("val-a")
        before = cluster.ledger()

        # systemd's control-group kill: the agent and its own child watchdog, all at once.
        children = set(pids_with_argv("near_failover.ha.watchdog", str(cluster.heartbeat_path("val-a")))) - {unit.pid}
        for pid in [agent.pid, *children]:
            os.kill(pid, signal.SIGKILL)
        agent.wait(10)
        last = cluster.heartbeat("val-a")
        assert last is not None and last["armed"]

        try:
            marker = wait_for(lambda: cluster.watchdog_marker("val-a"), 15, "the unit watchdog to fence val-a", interval=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{unit_log.read_text()}\n{cluster.logs()}") from None
        assert marker["generation"] == last["generation"] and marker["fenced_at"] < marker["valid_until"], marker
        assert not alive(neard) and not (cluster.home("val-a") / "validator_key.json").exists() and marker["evidence"]["masked"]
        assert "fencing val-a" in unit_log.read_text()
        # It stays, for the next agent: alive, still saying it watches, still pinging systemd.
        pings = unit_notify.received().count("WATCHDOG=1")
        wait_for(lambda: "waiting for the next one" in unit_log.read_text(), 15, "the unit watchdog to wait for the next agent")
        wait_for(lambda: unit_notify.received().count("WATCHDOG=1") > pings, 10, "the unit watchdog's pings")
        watching = cluster.heartbeat_path("val-a").with_name("agent-val-a.heartbeat.watching")
        wait_for(lambda: lease_clock() - json.loads(watching.read_text())["at"] < 1.0, 5, "a fresh watching marker")
        assert unit.poll() is None
        cluster.net.wait_height(4)
        after = cluster.assert_no_double_sign()
        assert after["double_signs"] == before["double_signs"] == 0
    finally:
        unit.kill()
        unit.wait(10)


def test_a_watchdog_unit_that_cannot_write_its_state_exits_2_naming_the_file(tmp_path: Path) -> None:
    """Bad input, not a traceback: the journal's folder (where the heartbeat and the node to fence
    live) is under a regular file, so nothing can be written there."""
    inventory = tmp_path / "inventory.toml"
    subprocess.run([*CLI, "init", "-c", str(inventory), "--account-id", "pool.poolv1.near", "--chain-id", "testnet",
                    "--node", "val-a=local"], check=True, capture_output=True)
    (tmp_path / "blocker").write_text("a file, not a folder")
    text = tomllib.loads(inventory.read_text())
    text["journal"] = {"path": str(tmp_path / "blocker" / "journal.sqlite")}
    inventory.write_text(tomli_w.dumps(text))
    done = subprocess.run([*CLI, "watchdog", "-c", str(inventory), "--node", "val-a"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "blocker" in done.stderr and "must be writable" in done.stderr, done.stderr
