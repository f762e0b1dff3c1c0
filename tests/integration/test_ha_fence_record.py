"""A standby promotes on an old leader's fence record only if the record carries the leader's
own observation that its neard does not sign (issue 11, part 2).

val-a signs and leads; its agent and watchdog die (SIGKILL) and it is cut off from the others
(they reach neither its host nor its RPC), while its neard keeps signing. A record saying
"val-a fenced itself for its generation", as an older agent or one that believed a lying
control would publish, appears in the store. The standby that takes the expired lease must not
take that record as proof: it cannot observe val-a itself, so it falls back to the chain's
silence, which shows val-a still signing, and refuses. On the old code it promoted on the
record and the pool double signed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from near_failover.ha.lease import MemberRecord, MemberRole
from near_failover.localnet.homes import free_port
from tests.integration.etcd_server import running_etcd
from tests.integration.ha_harness import BLOCK_TIME, POOL, HaCluster, step, wait_for
from tests.integration.localnet_harness import start_localnet, stop_localnet

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[HaCluster]:
    with running_etcd(tmp_path / "etcd") as etcd:
        net = start_localnet(tmp_path / "net", block_time=BLOCK_TIME)
        ha = HaCluster(net, [etcd.url], etcd)
        try:
            yield ha
        finally:
            ha.close()
            stop_localnet(net)


def test_a_fence_record_without_the_leaders_observation_is_not_a_proof(cluster: HaCluster) -> None:
    cluster.configure_lease()
    cut_off = cluster.inventory_variant("val-a-cut-off", {"val-a": {"host": f"ssh://near@127.0.0.1:{free_port()}",
                                                                     "rpc": f"http://127.0.0.1:{free_port()}"}})
    cluster.start_agents(inventories={"val-b": cut_off, "val-c": cut_off})
    old = cluster.wait_ready()
    for pid in (cluster.agent_pid("val-a"), cluster.watchdog_pid("val-a")):
        os.kill(pid, signal.SIGKILL)  # no self-fence, no watchdog: val-a's neard signs on
    forged = MemberRecord(name="val-a", role=MemberRole.FENCED, fenced_generation=old.generation, priority=100)

    async def publish() -> None:
        async with cluster._store() as store:
            await store.put_member(forged, None)

    asyncio.run(publish())
    start = cluster.height()

    refused = wait_for(lambda: [r for r in cluster.runs("auto-failover") if r["state"] != "in-progress"], 60,
                       "a standby's promotion to end", interval=0.5)[0]
    assert refused["state"] == "refused", refused
    fence = step(refused, "fence")
    assert "still signing" in fence["evidence"]["error"], fence  # the chain's silence, not the record
    assert all(r["state"] != "ok" for r in cluster.runs("auto-failover"))
    assert cluster.key_loaded("val-b") is None and cluster.key_loaded("val-c") is None
    assert cluster.signs_after("val-a", start) and cluster.key_loaded("val-a") == POOL
    cluster.assert_no_double_sign()
