"""A promotion's last check before the key is given, against a real sqlite lease store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from near_failover.ha.agent import Agent
from near_failover.ha.lease import open_lease_store
from near_failover.procedures.errors import Refused
from near_failover.procedures.journal import Journal
from tests.unit.test_sqlite_lease import inventory


async def test_no_key_on_a_lease_taken_since_the_keepers_last_renewal(tmp_path: Path) -> None:
    """The keeper renews once a loop; a lease revoked and taken by another member in between,
    while the holder's own estimate still shows most of its ttl, must stop the promotion."""
    inv = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\n')
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
