"""Two small pieces the automatic mode's acceptance tests needed: journal events that are not moves,
and the per-node source address of an agent's etcd requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import InventoryError, parse_inventory
from near_failover.procedures.journal import Journal, RunInProgress

POOL = "pool.poolv1.near"


def test_event_is_recorded_while_a_move_runs_and_does_not_block_the_next(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        move = journal.start_run(POOL, "auto-failover", "hot-swap", "val-a", "val-b")
        event = journal.record_event(POOL, "self-fence", "val-a", {"reason": "lease about to expire", "secret_key": "x"})
        journal.finish_run(move, "ok")
        recorded = journal.run(event)
        assert (recorded.kind, recorded.from_node, recorded.outcome, recorded.state) == ("self-fence", "val-a", "ok", "ok")
        (step,) = journal.steps(event)
        assert step.name == "self-fence" and step.outcome == "ok" and step.ended is not None
        assert step.evidence["reason"] == "lease about to expire" and step.evidence["secret_key"] != "x"
        # A finished event holds no lock: the next move starts; an unfinished move still blocks moves.
        nxt = journal.start_run(POOL, "switchover", "hot-swap", "val-b", "val-a")
        with pytest.raises(RunInProgress):
            journal.start_run(POOL, "failover", "hot-swap", "val-b", "val-c")
        journal.finish_run(nxt, "ok")


INVENTORY = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"

[lease]
store = "etcd"
endpoints = ["http://10.231.7.2:2379"]
ttl = 4
loop_wait = 0.4
retry_timeout = 1.0

[[node]]
name = "val-a"
home = "val-a"
rpc = "http://127.0.0.1:3030"
control = "pidfile:val-a/neard.pid"
start = ["neard"]
key_store = "keys/val-a/validator_key.json"
standby = "hot-swap"
lease_source_address = "{address}"
"""


async def test_lease_source_address_is_the_agents_etcd_source(tmp_path: Path) -> None:
    """A stand-in for etcd's gateway on 127.0.0.1 notes where each request came from."""
    peers: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
        await reader.readexactly(length)
        body = json.dumps({"header": {}, "kvs": []}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    text = INVENTORY.format(address="127.0.0.2").replace("http://10.231.7.2:2379", f"http://127.0.0.1:{port}")
    inventory = parse_inventory(text, tmp_path / "inventory.toml")
    assert inventory.node("val-a").lease_source_address == "127.0.0.2"
    try:
        async with open_lease_store(inventory, "val-a") as store:
            assert isinstance(store, EtcdLeaseStore)
            assert await store.leader() is None
        async with open_lease_store(inventory) as store:  # not for a node: the system's choice
            assert await store.leader() is None
    finally:
        server.close()
        await server.wait_closed()
    assert peers == ["127.0.0.2", "127.0.0.1"]


def test_lease_source_address_must_be_an_ip_address(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(INVENTORY.format(address="etcd-client.local"), tmp_path / "inventory.toml")
    message = str(caught.value)
    assert "inventory.toml" in message and "lease_source_address" in message and 'such as "10.0.0.11"' in message
