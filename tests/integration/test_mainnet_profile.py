"""Moves and an automatic failover on the emulator's mainnet profile (issue 18).

`make test` runs them with the mainnet profile's behaviour at scaled timings (a memtrie load of
seconds, a store shutdown of seconds, a SIGHUP applied half a second later, a routing lag, a
catch-up three times the chain's pace as on mainnet). `make mainnet` runs the same tests with the
profile's own figures (NEAR_FAILOVER_MAINNET_FULL=1, 0.6 s blocks): minutes per test.
Every test checks the ledger: zero double signs.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.etcd_server import running_etcd
from tests.integration.ha_harness import POOL, HaCluster, step, wait_for
from tests.integration.localnet_harness import Localnet, running, start_localnet, stop_localnet
from tests.integration.test_procedures import assert_signer, move

pytestmark = [pytest.mark.integration, pytest.mark.mainnet_profile]

FULL = os.environ.get("NEAR_FAILOVER_MAINNET_FULL") == "1"
BLOCK_TIME = 0.6 if FULL else 0.25
# The mainnet profile scaled down: every figure shorter, their order and effects the same. The
# catch-up rate stays three times the chain's pace, as 5 blocks/s is against 0.6 s blocks.
SCALED = {
    "--memtrie-load": 2.0,
    "--stop-time": 1.5,
    "--reload-delay": 0.5,
    "--state-sync": 2.0,
    "--routing-lag": 2.0,
    "--sync-rate": round(3 / BLOCK_TIME, 1),
}


MAINNET = {"block_time": BLOCK_TIME, "profile": "mainnet", "memtrie_load": None, "timings": {} if FULL else SCALED}


@pytest.fixture
def mainnet_net(tmp_path: Path) -> Iterator[Localnet]:
    with running(tmp_path / "net", **MAINNET) as net:
        yield net


@pytest.mark.parametrize("first, second", [("hot-swap", "rpc"), ("rpc", "hot-swap")])
def test_switchover_then_failover_on_mainnet_timings(mainnet_net: Localnet, first: str, second: str) -> None:
    """A switchover in one mode to one standby, then a failover in the other mode to the other."""
    assert '"profile": "mainnet"' in (mainnet_net.directory / "localnet.json").read_text()
    standby = {"hot-swap": "val-b", "rpc": "val-c"}
    report = move(mainnet_net, "switchover", standby[first], "--mode", first)
    assert report["ok"] and report["from"] == "val-a", report
    assert_signer(mainnet_net, standby[first])
    assert not (mainnet_net.directory / "val-a" / "validator_key.json").exists()
    mainnet_net.wait_height(5)
    mainnet_net.assert_no_double_sign()

    mainnet_net.signal(standby[first], signal.SIGKILL)
    report = move(mainnet_net, "failover", standby[second], "--mode", second)
    assert report["ok"] and report["from"] == standby[first], report
    assert_signer(mainnet_net, standby[second])
    mainnet_net.wait_height(5)
    mainnet_net.assert_no_double_sign()


def test_automatic_failover_on_mainnet_timings(tmp_path: Path) -> None:
    with running_etcd(tmp_path / "etcd") as etcd:
        net = start_localnet(tmp_path / "net", **MAINNET)
        cluster = HaCluster(net, [etcd.url], etcd)
        try:
            cluster.configure_lease()
            cluster.start_agents()
            cluster.wait_ready(timeout=120 if FULL else 40)
            cluster.signal_neard("val-a", signal.SIGKILL)
            crash_height = cluster.height()
            run = cluster.wait_auto_failover(timeout=300 if FULL else 60)
            assert run["state"] == "ok" and run["from"] == "val-a" and run["to"] == "val-b", run
            assert step(run, "fence")["evidence"]["proof"] == "self-fenced"
            cluster.wait_leader("val-b")
            wait_for(lambda: cluster.signs_after("val-b", crash_height), 60, "val-b to sign for the pool")
            assert cluster.key_loaded("val-b") == POOL and cluster.key_loaded("val-c") is None
            cluster.assert_no_double_sign()
        finally:
            cluster.close()
            stop_localnet(net)
            if etcd.process.poll() is None:
                os.kill(etcd.process.pid, signal.SIGCONT)
