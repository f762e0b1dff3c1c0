"""A promotion's last check before the key is given, against a real sqlite lease store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from near_failover.ha.agent import Agent
from near_failover.ha.decide import Phase
from near_failover.ha.lease import ClusterView, LeaderInfo, MemberRecord, MemberRole
from near_failover.ha.stores import open_lease_store
from near_failover.procedures.errors import Refused
from near_failover.procedures.journal import Journal
from near_failover.procedures.nodes import open_nodes
from tests.unit.test_sqlite_lease import inventory


async def test_no_key_on_a_lease_taken_since_the_keepers_last_renewal(tmp_path: Path) -> None:
    """The keeper renews once a loop; a lease revoked and taken by another member in between,
    while the holder's own estimate still shows most of its ttl, must stop the promotion."""
    inv = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\npath = "lease.sqlite"\n')
    store, other = open_lease_store(inv), open_lease_store(inv)
    with Journal(tmp_path / "journal.sqlite") as journal:
        agent = Agent(inv, "a", store, journal, state_dir=tmp_path / "state")
        agent.lease = await store.acquire_leader("a", 10)
        assert agent.lease is not None
        await agent._lease_still_ours()
        assert agent.activating  # still ours: the key may be given

        agent.activating = False
        await store.release(dataclasses.replace(agent.lease))  # an operator revokes it; the agent's copy is untouched
        assert await other.acquire_leader("b", 10) is not None
        assert agent.lease.remaining() > 9
        with pytest.raises(Refused, match="lost the lease .* no longer holds it for this node"):
            await agent._lease_still_ours()
        assert not agent.activating
    await store.close()
    await other.close()


async def test_a_leader_wakes_when_its_neard_exits(tmp_path: Path) -> None:
    """The loop's pause ends as soon as the process held for the wake guard exits, not at
    loop_wait: a crash is noticed when it happens."""
    inv = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\npath = "lease.sqlite"\nloop_wait = 30\nttl = 100\nretry_timeout = 20\n')
    store = open_lease_store(inv)
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    pidfd = os.pidfd_open(process.pid)
    try:
        with Journal(tmp_path / "journal.sqlite") as journal:
            agent = Agent(inv, "a", store, journal, state_dir=tmp_path / "state")
            agent._watch_exit(pidfd)
            stop = asyncio.Event()
            began = time.monotonic()
            pause = asyncio.create_task(agent._pause(stop, 30))
            await asyncio.sleep(0.2)
            assert not pause.done()  # still paused while the process lives
            process.kill()
            await asyncio.wait_for(pause, 10)
            assert time.monotonic() - began < 10 and agent.exit_watch is None
    finally:
        os.close(pidfd)
        await process.wait()
        await store.close()


async def test_a_node_that_keeps_fencing_itself_stays_out_and_says_why(tmp_path: Path) -> None:
    """Automatic rejoin's no-ping-pong rule, as the agent acts on it: fenced twice within the
    window, it starts no rejoin, and its record (what `status` shows) and /status say why."""
    inv = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\npath = "lease.sqlite"\n')
    store = open_lease_store(inv)
    with Journal(tmp_path / "journal.sqlite") as journal:
        agent = Agent(inv, "a", store, journal, state_dir=tmp_path / "state")
        async with open_nodes(inv) as nodes:
            agent.nodes = nodes
            agent._move(Phase.FENCED)
            agent.view = ClusterView(LeaderInfo("b", 7), (MemberRecord(name="b", role=MemberRole.LEADER, generation=7),))
            agent.self_fences = [time.time() - 60, time.time() - 5]
            await agent._rejoin_if_due()
            assert agent.rejoining is None
            why = "stays out: it fenced itself 2 times in the last 3600s"
            assert any(why in p for p in agent._record().problems), agent.problems
            assert any(why in p for p in agent.snapshot().problems)

            agent.self_fences = agent.self_fences[1:]  # one fence only: it rejoins
            agent._remember(problems=())
            await agent._rejoin_if_due()
            assert agent.rejoining is not None
            await asyncio.wait({agent.rejoining})
            # Refused here (no home to read): still fenced, and it stays out saying why, no second run.
            assert agent.rejoining is None and not agent.settling and agent.rejoin_refused is not None
            await agent._rejoin_if_due()
            assert agent.rejoining is None and any("stays out: the last rejoin was refused" in p for p in agent.problems)
            assert [run.kind for run in journal.runs(inv.validator.account_id, 5)] == ["rejoin"]
    await store.close()


async def test_the_lease_keeper_ends_with_the_promotion_even_if_its_cancellation_is_lost(tmp_path: Path) -> None:
    """Chaos seed 1069: a keeper still running after its promotion (a cancellation wait_for
    swallowed) must neither renew a leader's lease for it nor die on the lease the leader's
    self-fence dropped ("Task exception was never retrieved")."""
    inv = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\npath = "lease.sqlite"\nloop_wait = 0.1\nttl = 10\nretry_timeout = 1\n')
    store = open_lease_store(inv)
    with Journal(tmp_path / "journal.sqlite") as journal:
        (tmp_path / "state").mkdir()
        agent = Agent(inv, "a", store, journal, state_dir=tmp_path / "state")
        agent._move(Phase.STANDBY)
        agent._move(Phase.PROMOTING)
        lease = agent.lease = await store.acquire_leader("a", 10)
        assert lease is not None
        keeper = asyncio.create_task(agent._keep_lease_during_promotion(lease))
        await asyncio.sleep(0.3)
        assert not keeper.done()  # renewing while the promotion runs
        agent._move(Phase.LEADER)  # the promotion ended; its cancel() of the keeper was lost
        agent.lease = None  # then the leader fenced itself
        await asyncio.wait_for(keeper, 5)  # ends on its own, without an exception
    await store.close()
