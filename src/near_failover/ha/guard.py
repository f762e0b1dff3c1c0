"""The boot guard, for systemd's ExecStartPre: neard may start with the key only on the leader.

Patroni's lesson and the Solana tools' top complaint: an old primary that restarts with the
staked key. neard loads <home>/<validator_key_file> at start (neard-behaviour §3), so before it
starts, the key must be absent, or this node must hold the lease. On doubt (store unreachable),
it refuses: a neard that does not start misses duties; one that starts wrongly double signs.
"""

from __future__ import annotations

from dataclasses import dataclass

from near_failover.ha.lease import LeaseStore, LeaseStoreError
from near_failover.inventory import Inventory
from near_failover.procedures.nodes import open_nodes


@dataclass(frozen=True)
class GuardVerdict:
    allowed: bool
    reason: str


async def boot_guard(inventory: Inventory, node: str, store: LeaseStore) -> GuardVerdict:
    spec = inventory.node(node)
    async with open_nodes(inventory) as nodes:
        key_path = await nodes[spec.name].validator_key_path()  # config.json's validator_key_file
        key_in_home = await nodes[spec.name].host.exists(key_path)
    if not key_in_home:
        return GuardVerdict(True, f"{key_path} is absent: neard starts as a non-validator")
    try:
        leader = await store.leader()
    except LeaseStoreError as exc:
        return GuardVerdict(False, f"{key_path} is present and the lease store cannot be read ({exc}): refusing to start neard with the key")
    if leader is not None and leader.member == spec.name:
        return GuardVerdict(True, f"{spec.name} holds the lease (generation {leader.generation}): neard may start with the key")
    holder = f"{leader.member} holds the lease" if leader else "nobody holds the lease"
    return GuardVerdict(
        False,
        f"{key_path} is present but {holder}: starting neard would risk two signers. "
        f"Move the key out of the home (keep it in {spec.key_store}); the agent loads it when this node is promoted",
    )
