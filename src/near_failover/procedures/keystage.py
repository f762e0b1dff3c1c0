"""Stage the pool key on a node, outside neard's home, ahead of need.

A failover must work when the primary is gone, so its key cannot be fetched then: it is staged
beforehand in each standby's key_store (0600), where neard never looks (it loads only
<home>/<validator_key_file>, neard-behaviour §2.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from near_failover.hosts import HostError
from near_failover.inventory import Inventory
from near_failover.neard.keys import KeyFile, KeyFileError, load_key_file, parse_key_file
from near_failover.neard.rpc import RpcError
from near_failover.procedures.chain_view import on_chain_public_key
from near_failover.procedures.errors import Refused
from near_failover.procedures.nodes import NodeAccess


async def _find_key(nodes: dict[str, NodeAccess], exclude: str) -> tuple[KeyFile, str]:
    """The pool key from another node's key_store or home, read through its host."""
    for node in nodes.values():
        if node.name == exclude:
            continue
        try:
            paths = (node.spec.key_store, await node.validator_key_path())
        except HostError:
            continue
        for path in paths:
            try:
                if await node.host.exists(path):
                    where = f"{node.name}:{path}"
                    return parse_key_file(await node.host.read_text(path), source=where), where
            except HostError:
                break
    raise Refused("no copy of the pool key found on any other node: pass --from FILE")


async def stage_key(inventory: Inventory, nodes: dict[str, NodeAccess], to: str, from_file: Path | None) -> dict[str, Any]:
    pool = inventory.validator.account_id
    target = nodes[inventory.node(to).name]
    try:
        key, where = (load_key_file(from_file), str(from_file)) if from_file else await _find_key(nodes, target.name)
    except KeyFileError as exc:
        raise Refused(str(exc)) from exc
    if key.account_id != pool:
        raise Refused(f"{where} holds a key for {key.account_id}, not the inventory's validator {pool}")
    on_chain = None
    for node in [target, *nodes.values()]:
        try:
            on_chain = on_chain_public_key(await node.rpc.validators(), pool)
            break
        except RpcError:
            continue
    if on_chain is None:
        raise Refused(f"cannot read {pool}'s on-chain key from any node's RPC; the key is not staged unchecked")
    if on_chain != key.public_key:
        raise Refused(f"{where} has public key {key.public_key}, but the chain expects {on_chain} for {pool}")
    await target.host.mkdir(target.spec.key_store.parent)
    await target.host.write_atomic(target.spec.key_store, key.to_json_text(), 0o600)
    return {"node": target.name, "key_store": str(target.spec.key_store), "from": where, "public_key": key.public_key, "matches_on_chain": True}
