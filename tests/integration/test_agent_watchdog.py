"""An agent never leads without its watchdog: if the watchdog process cannot start, the agent
stops with an error naming the watchdog's log, before it takes any lease."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from near_failover.ha.agent import Agent, AgentError
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import load_inventory
from near_failover.procedures.journal import Journal
from tests.integration.localnet_harness import Localnet

pytestmark = pytest.mark.integration


async def test_an_agent_whose_watchdog_cannot_start_takes_no_lease(net: Localnet, tmp_path: Path) -> None:
    net.edit_inventory(None, lease={"store": "sqlite", "path": str(tmp_path / "lease.sqlite"), "ttl": 4.0, "loop_wait": 0.5, "retry_timeout": 1.0})
    inventory = load_inventory(net.inventory)
    # The watchdog is its own process and reads the inventory itself: a file broken after the
    # agent read it (an operator's edit in progress) makes it exit at once.
    net.inventory.write_text("[validator\n")
    store = open_lease_store(inventory)
    with Journal(inventory.journal.path) as journal:
        agent = Agent(inventory, "val-a", store, journal, state_dir=tmp_path / "state")
        with pytest.raises(AgentError) as refused:
            await asyncio.wait_for(agent.run(asyncio.Event()), 90)
    message = str(refused.value)
    assert "val-a: the agent's watchdog exited with 2" in message and "without it this agent must not lead" in message
    log = Path(message.split("(see ")[1].split(")")[0])
    assert "watchdog: cannot start:" in log.read_text() and "not valid TOML" in log.read_text(), log.read_text()
    assert "Traceback" not in log.read_text()
    assert await store.leader() is None  # it never claimed the lease although its neard signs
    assert agent.heartbeat.read() is not None and agent.heartbeat.read()["armed"] is False
    assert net.rpc_status("val-a")["validator_account_id"] == "pool.poolv1.near"  # its neard was left alone
