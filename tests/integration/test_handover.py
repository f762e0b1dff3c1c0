"""A planned switchover through the agents' API hands the lease to its target only (issue 14, 4).

Three agents on one localnet; the switchover goes from the leader to the standby with the lowest
priority, while a third member, a better candidate whose agent checks every 0.2 s, is ready the
whole time. The target's agent is slow to claim the lease (frozen during the move and after it:
a loaded host), and once the switchover has answered, the operator restarts the old leader's
agent (an upgrade, the usual reason for a switchover): the new agent's member record no longer
names the target, and only the store's own handover still says whose the lease is (for a ttl,
20 s here, longer than the freeze). The lease store is read every 50 ms: it must show the old
leader, then the target, and never the third member; the third member never promotes, and the
ledger shows no double sign.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from near_failover.ha.lease import ClusterView
from near_failover.ha.sqlite_lease import SqliteLeaseStore
from tests.integration.agent_cluster import AGENT, AgentCluster, start_agent_cluster, stop_agent_cluster
from tests.integration.ha_harness import holds_write_lock
from tests.integration.localnet_support import wait_for

pytestmark = pytest.mark.integration

SOURCE, TARGET, THIRD = "val-a", "val-c", "val-b"  # val-b's priority (90) is better than val-c's (80)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path_factory.mktemp("handover"), nodes=(SOURCE, THIRD, TARGET),
                                  lease={"ttl": 20.0}, lease_variants={THIRD: {"loop_wait": 0.2}})
    try:
        yield running
    finally:
        stop_agent_cluster(running)


class StoreWatch(threading.Thread):
    """Reads the lease store's view every 20 ms until stopped: who held or was handed the lease."""

    def __init__(self, lease_file: Path) -> None:
        super().__init__(daemon=True)
        self.lease_file = lease_file
        self.seen: list[tuple[str | None, str | None]] = []  # (leader, handed over to), each change
        self.halt = threading.Event()

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        async with SqliteLeaseStore(self.lease_file) as store:
            while not self.halt.is_set():
                view: ClusterView = await store.view()
                handover = getattr(view, "handover", None)  # none before the stores could hand over
                now = (view.leader.member if view.leader else None, handover.to if handover else None)
                if not self.seen or self.seen[-1] != now:
                    self.seen.append(now)
                await asyncio.sleep(0.05)


def freeze_outside_store_writes(pid: int) -> None:
    """SIGSTOP, never while the agent holds the sqlite store's write lock (it would stop every
    other agent's reads and writes)."""
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        if not holds_write_lock(pid):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"agent {pid} always held the store's write lock")


def restart_agent(cluster: AgentCluster, node: str) -> subprocess.Popen[bytes]:
    with open(cluster.net.directory / f"agent-{node}.log", "ab") as log:
        return subprocess.Popen([*AGENT, "-c", str(cluster.net.inventory), "--node", node], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def record_of(cluster: AgentCluster, node: str, since: float) -> bool:
    """Whether ``node``'s member record was published after ``since`` (unix time)."""
    async def read() -> bool:
        async with SqliteLeaseStore(cluster.lease_file) as store:
            record = (await store.view()).member(node)
            return record is not None and record.updated_at > since
    return asyncio.run(read())


def test_a_switchover_hands_the_lease_to_its_target_only(cluster: AgentCluster) -> None:
    assert cluster.leader()[0] == SOURCE
    watch = StoreWatch(cluster.lease_file)
    watch.start()
    slow = cluster.agents[TARGET].pid
    freeze_outside_store_writes(slow)
    try:
        moved = cluster.post(SOURCE, "/switchover", json={"to": TARGET}, headers=cluster.auth)
        assert moved.status_code == 202, moved.text
        run_id = moved.json()["run_id"]
        result = wait_for(lambda: cluster.get(SOURCE, f"/runs/{run_id}").json()["result"], 120, "the switchover's result")
        assert result["ok"], result.get("message")
        stopping = cluster.agents[SOURCE]
        stopping.send_signal(signal.SIGTERM)  # as `systemctl restart` does
        stopping.wait(20)
        restarted = time.time()
        cluster.agents[SOURCE] = restart_agent(cluster, SOURCE)
        wait_for(lambda: record_of(cluster, SOURCE, since=restarted), 30, f"{SOURCE}'s restarted agent's record")
        time.sleep(1)  # the third member's agent checks 5 times
        os.kill(slow, signal.SIGCONT)
        wait_for(lambda: watch.seen[-1][0] not in (None, SOURCE), 20, "a new leader in the lease store")
        time.sleep(2)  # the third member's agent has had ten checks since
    finally:
        os.kill(slow, signal.SIGCONT)
        watch.halt.set()
        watch.join(10)
    leaders = [leader for leader, _ in watch.seen if leader is not None]
    assert THIRD not in leaders, f"{THIRD} took the lease during the switchover: {watch.seen}"
    assert leaders[0] == SOURCE and leaders[-1] == TARGET, watch.seen
    assert "kind=promote" not in cluster.log(THIRD), cluster.log(THIRD)
    runs = cluster.get(TARGET, "/history?limit=5").json()["runs"]
    assert [r["kind"] for r in runs if r["id"] != run_id and r["kind"] != "self-fence"] == [], runs
    assert cluster.status(THIRD)["role"] == "standby"
    cluster.net.wait_height(4)
    cluster.net.assert_no_double_sign()
