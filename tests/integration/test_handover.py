"""A planned switchover through the agents' API hands the lease to its target only (issue 14, 4).

Three agents on one localnet; the switchover goes from the leader to the standby with the lowest
priority, while a third member, a better candidate whose agent checks five times as often, is
ready the whole time. The lease store is read every 20 ms during the move: it must show the old
leader, then the target, and never the third member; the third member never promotes, and the ledger shows no double sign.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from near_failover.ha.lease import ClusterView
from near_failover.ha.sqlite_lease import SqliteLeaseStore
from tests.integration.agent_cluster import AgentCluster, start_agent_cluster, stop_agent_cluster
from tests.integration.localnet_support import wait_for

pytestmark = pytest.mark.integration

SOURCE, TARGET, THIRD = "val-a", "val-c", "val-b"  # val-b's priority (90) is better than val-c's (80)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentCluster]:
    running = start_agent_cluster(tmp_path_factory.mktemp("handover"), nodes=(SOURCE, THIRD, TARGET),
                                  lease_variants={THIRD: {"loop_wait": 0.2}})
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
                await asyncio.sleep(0.02)


def test_a_switchover_hands_the_lease_to_its_target_only(cluster: AgentCluster) -> None:
    assert cluster.leader()[0] == SOURCE
    watch = StoreWatch(cluster.lease_file)
    watch.start()
    try:
        moved = cluster.post(SOURCE, "/switchover", json={"to": TARGET}, headers=cluster.auth)
        assert moved.status_code == 202, moved.text
        run_id = moved.json()["run_id"]
        result = wait_for(lambda: cluster.get(SOURCE, f"/runs/{run_id}").json()["result"], 120, "the switchover's result")
        assert result["ok"], result.get("message")
        wait_for(lambda: cluster.leader()[0] == TARGET, 20, f"{TARGET} to hold the lease")
        time.sleep(2)  # the third member's agent has had ten checks since
    finally:
        watch.halt.set()
        watch.join(10)
    leaders = [leader for leader, _ in watch.seen if leader is not None]
    assert THIRD not in leaders, f"{THIRD} took the lease during the switchover: {watch.seen}"
    assert leaders[0] == SOURCE and leaders[-1] == TARGET, watch.seen
    assert "kind=promote" not in cluster.log(THIRD), cluster.log(THIRD)
    runs = cluster.get(SOURCE, "/history?limit=5").json()["runs"]
    assert [r["kind"] for r in runs if r["id"] != run_id and r["kind"] != "self-fence"] == [], runs
    assert cluster.status(THIRD)["role"] == "standby"
    cluster.net.wait_height(4)
    cluster.net.assert_no_double_sign()
