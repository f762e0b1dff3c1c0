"""Fail back and restart without an outage (issue 20, parts 2 and 3), end to end: agents on a real
etcd beside a localnet, real signals, and the chain's ledger read at the end of every test (zero
double signs).

- Automatic rejoin: a node whose neard crashed while it signed fences itself, then comes back as a
  ready standby on its own (procedures/rejoin.py) once another node leads and its neard has been
  healthy for the settling time; after two crashes in a row a third one is survived.
- Agent stops: paused, SIGTERM to the leader's agent leaves its neard signing and keeps its lease,
  which the restarted agent resumes (same generation); not paused, a stop hands the validator to
  the best ready standby through a switchover. A leader's agent killed and restarted within its
  lease keeps it: no fence, no missed block.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from near_failover.ha.lease import LeaderInfo, lease_clock
from tests.integration.ha_harness import (
    POOL,
    HaCluster,
    assert_missed_within,
    running_cluster,
    wait_for,
)

pytestmark = pytest.mark.integration

# A ready standby again this long after its rejoin's neard is healthy (the tests' short timing;
# the default is 60 s).
SETTLE = 2.0
# Each crash: detection, self-fence and a hot swap, about 6 heights (test_ha.py's CRASH_BOUND),
# three times over, for a loaded machine.
THREE_CRASHES_BOUND = {"blocks": 18, "chunks": 30, "endorsements": 120}
# A crash (about 6 heights), two ttls with no lease (about 13 heights of 0.6 s), a rejoin and a
# promotion: room for a loaded machine.
ALL_DOWN_BOUND = {"blocks": 40, "chunks": 80, "endorsements": 250}
NO_MISSED_BLOCK = {"blocks": 0, "chunks": 2, "endorsements": 8}  # neard never stopped: the odd late chunk or endorsement


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[HaCluster]:
    with running_cluster(tmp_path) as ha:
        yield ha


def wait_or_logs(cluster: HaCluster, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """wait_for, with the agents' logs as they are when it gives up."""
    try:
        return wait_for(predicate, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.members()}\n{cluster.logs()}") from None


def ready_standby(cluster: HaCluster, node: str) -> bool:
    record = cluster.members().get(node)
    return record is not None and record.role == "standby" and record.healthy


def crash_signer(cluster: HaCluster, others: tuple[str, ...]) -> LeaderInfo:
    """SIGKILL the leader's neard; the next leader, once it signs."""
    old = cluster.leader()
    assert old is not None
    cluster.signal_neard(old.member, signal.SIGKILL)
    mark = cluster.height()
    new = wait_or_logs(cluster, lambda: (leader := cluster.leader()) is not None and leader.member in others and leader, 60,
                       f"one of {others} to take the lease from {old.member}")
    wait_or_logs(cluster, lambda: cluster.signs_after(new.member, mark), 30, f"{new.member} to sign for the pool")
    return new


def test_after_two_crashes_in_a_row_the_crashed_nodes_rejoin_and_a_third_crash_is_survived(cluster: HaCluster) -> None:
    """On the old code val-a stayed fenced and masked after its crash, so after val-b's crash one
    node was left, and the third crash left nobody signing."""
    cluster.configure_lease(auto_rejoin=True, rejoin_settle=SETTLE)
    cluster.start_agents()
    cluster.wait_ready()
    before = cluster.ledger()

    second = crash_signer(cluster, ("val-b", "val-c"))
    wait_or_logs(cluster, lambda: ready_standby(cluster, "val-a"), 90, "val-a to rejoin as a ready standby on its own")
    rejoins = cluster.runs("rejoin")
    assert [(r["from"], r["state"]) for r in rejoins] == [("val-a", "ok")], rejoins
    assert cluster.key_loaded("val-a") is None

    third = crash_signer(cluster, tuple(n for n in ("val-a", "val-b", "val-c") if n != second.member))
    wait_or_logs(cluster, lambda: ready_standby(cluster, second.member), 90, f"{second.member} to rejoin on its own")

    last = crash_signer(cluster, tuple(n for n in ("val-a", "val-b", "val-c") if n != third.member))
    assert last.generation > third.generation > second.generation
    assert len(cluster.runs("self-fence")) == 3
    cluster.wait_blocks(4)
    assert_missed_within(before, cluster.assert_no_double_sign(), THREE_CRASHES_BOUND)


def resumed(cluster: HaCluster, times: int) -> None:
    """Wait for val-a's agent to have resumed its lease ``times`` times (the journal's events)."""
    wait_or_logs(cluster, lambda: len([r for r in cluster.runs("lease-resumed") if r["from"] == "val-a"]) >= times, 30,
                 "val-a's agent to resume its lease")


def test_a_leaders_agent_restarted_keeps_its_lease_and_a_planned_stop_hands_over(cluster: HaCluster) -> None:
    """Three stops of val-a's agent, on one cluster.

    SIGKILL, restarted at once: the new agent adopts the running watchdog and resumes the lease
    (same generation) before the watchdog's turn; neard never stops (on the old code the watchdog
    fenced val-a at the lease's end and a standby took over). Paused, SIGTERM: neard keeps signing
    (on the old code it was fenced and nobody signed until resume) and the restarted agent resumes
    the lease again. Resumed, SIGTERM: a switchover to val-b, which leads."""
    cluster.configure_lease(ttl=20.0)  # each restart, on a loaded machine (a stop and a start: 15 s seen), within the lease
    cluster.enable_api()
    cluster.start_agents()
    old = cluster.wait_ready()
    cluster.wait_apis()
    watchdog = cluster.watchdog_pid("val-a")
    neard = cluster.neard_pid("val-a")
    before = cluster.ledger()

    last = cluster.kill_agent("val-a", old.generation)
    cluster.start_agent("val-a")
    resumed(cluster, 1)
    mark = cluster.height()
    # Up to a whole ttl (20 s) after the kill: a wait bounded by the time left, not by a guess.
    wait_for(lambda: lease_clock() > last["valid_until"] + 1, last["valid_until"] + 5 - lease_clock(),
             "the killed agent's lease to pass its end")
    leader = cluster.leader()
    assert leader is not None and (leader.member, leader.generation) == ("val-a", old.generation), leader
    wait_for(lambda: cluster.signs_after("val-a", mark), 10, "val-a to sign on")
    assert cluster.neard_pid("val-a") == neard and cluster.key_loaded("val-a") == POOL
    assert cluster.watchdog_pids("val-a") == [watchdog] and cluster.watchdog_marker("val-a") is None

    cluster.pause()
    agent = cluster.agents["val-a"]
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0, cluster.agent_log("val-a")[-3000:]
    beat = cluster.heartbeat("val-a")
    assert beat is not None and not beat["armed"] and beat["generation"] == old.generation, beat
    mark = cluster.height()
    cluster.start_agent("val-a")
    resumed(cluster, 2)
    wait_for(lambda: cluster.signs_after("val-a", mark), 10, "val-a to sign on")
    leader = cluster.leader()
    assert leader is not None and (leader.member, leader.generation) == ("val-a", old.generation), leader
    assert cluster.neard_pid("val-a") == neard
    assert cluster.runs("self-fence") == [] and cluster.runs("auto-failover") == []
    assert_missed_within(before, cluster.assert_no_double_sign(), NO_MISSED_BLOCK)

    cluster.pause(False)
    wait_for(lambda: ready_standby(cluster, "val-b"), 20, "val-b ready")
    agent = cluster.agents["val-a"]
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(60) == 0, cluster.agent_log("val-a")[-3000:]
    assert "switchover from val-a to val-b" in cluster.agent_log("val-a")
    switchovers = cluster.runs("switchover")
    assert [(r["from"], r["to"], r["state"]) for r in switchovers] == [("val-a", "val-b", "ok")], switchovers
    assert cluster.wait_leader("val-b").generation > old.generation
    mark = cluster.height()
    wait_for(lambda: cluster.signs_after("val-b", mark), 20, "val-b to sign")
    assert cluster.key_loaded("val-a") is None and cluster.runs("self-fence") == []
    cluster.assert_no_double_sign()


def test_a_node_that_fenced_itself_too_often_stays_out_across_an_agent_restart(cluster: HaCluster) -> None:
    """No ping-pong, even after `systemctl restart` of the agent: with one self-fence allowed, the
    crashed val-a stays fenced and says why; its restarted agent finds neard masked and the
    self-fence in the journal, so it stays fenced and out. On the old code the restarted agent
    took the masked node for a standby whose neard was down, and forgot the count."""
    cluster.configure_lease(auto_rejoin=True, rejoin_settle=SETTLE, max_self_fences=1)
    cluster.start_agents()
    cluster.wait_ready()
    before = cluster.ledger()
    crash_signer(cluster, ("val-b", "val-c"))

    def stays_out() -> bool:
        record = cluster.members().get("val-a")
        return (record is not None and record.role == "fenced"
                and any("stays out: it fenced itself 1 times" in p for p in record.problems))

    wait_or_logs(cluster, stays_out, 30, "val-a to say it stays out")
    agent = cluster.agents["val-a"]
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0, cluster.agent_log("val-a")[-3000:]
    restarted = cluster.members()["val-a"].updated_at
    cluster.start_agent("val-a")
    wait_or_logs(cluster, lambda: stays_out() and cluster.members()["val-a"].updated_at > restarted, 30,
                 "val-a's restarted agent to say it stays out")
    cluster.wait_blocks(int(SETTLE / 0.6) + 4)  # past the settling time a rejoin would have waited
    assert stays_out() and cluster.runs("rejoin") == [] and cluster.key_loaded("val-a") is None
    assert "starting: neard is masked" in cluster.agent_log("val-a")
    assert_missed_within(before, cluster.assert_no_double_sign(), THREE_CRASHES_BOUND)


def test_with_every_other_node_down_the_crashed_leader_rejoins_and_signs_again(cluster: HaCluster) -> None:
    """Both standbys' neards down, then the leader's neard crashes (the shape of chaos seeds 4015
    and 4037, where a second crash came before the first node had rejoined): no node can lead, so
    on the old code the fenced val-a stayed out ("no other node holds the lease yet") and nobody
    signed again; now, nobody having held the lease for two ttls, it rejoins without a settling
    time and, the only ready standby, promotes itself back."""
    cluster.configure_lease(auto_rejoin=True, rejoin_settle=60.0)  # skipped: nobody to hand back to
    cluster.start_agents()
    cluster.wait_ready()
    before = cluster.ledger()
    for standby in ("val-b", "val-c"):
        cluster.signal_neard(standby, signal.SIGKILL)
    wait_or_logs(cluster, lambda: not any(cluster.members()[n].healthy for n in ("val-b", "val-c")), 30, "the standbys to be unhealthy")
    cluster.signal_neard("val-a", signal.SIGKILL)
    wait_or_logs(cluster, lambda: cluster.members()["val-a"].role == "fenced", 30, "val-a to fence itself")
    mark = cluster.wait_blocks(2)  # past the duties its killed neard had done (a chunk is made a height ahead)
    wait_or_logs(cluster, lambda: cluster.signs_after("val-a", mark), 90, "val-a to rejoin and sign again")
    rejoins = cluster.runs("rejoin")
    assert [(r["from"], r["state"]) for r in rejoins] == [("val-a", "ok")], rejoins
    assert [r["from"] for r in cluster.runs("self-fence")] == ["val-a"]
    cluster.wait_blocks(4)
    assert_missed_within(before, cluster.assert_no_double_sign(), ALL_DOWN_BOUND)
