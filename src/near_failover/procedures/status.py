"""The cluster at a glance: who signs, how each node is, and the pool's kickout risk this epoch."""

from __future__ import annotations

import asyncio
from typing import Any

from near_failover.hosts import HostError
from near_failover.inventory import Inventory
from near_failover.neard.config import ConfigError, effective_tracking, memtries_enabled, parse_config_text
from near_failover.neard.rpc import RpcError
from near_failover.procedures.chain_view import KICKOUT_THRESHOLDS, REWARD_FULL, REWARD_MIN, production_of
from near_failover.procedures.nodes import NodeAccess


async def node_view(node: NodeAccess, pool: str) -> dict[str, Any]:
    view: dict[str, Any] = {"name": node.name, "host": node.spec.host, "rpc": node.spec.rpc}
    status = await node.status_or_none()
    view["reachable"] = status is not None
    if status is not None:
        view.update(
            key_loaded=status.validator_account_id,
            public_key=status.validator_public_key,
            head=status.sync_info.latest_block_height,
            syncing=status.sync_info.syncing,
            version=status.version.version if status.version else None,
            chain_id=status.chain_id,
        )
        try:
            view["tracking"] = (await node.rpc.client_config()).get("tracked_shards_config")
        except RpcError:
            view["tracking"] = None
    try:
        cfg = parse_config_text(await node.host.read_text(node.spec.config_path), source=f"{node.name}:{node.spec.config_path}")
        view["memtries"] = memtries_enabled(cfg)
        view.setdefault("tracking", None)
        view["tracking_in_file"] = effective_tracking(cfg).to_json()
        view["key_in_home"] = await node.key_in_home()
        view["key_staged"] = await node.host.exists(node.spec.key_store)
    except (HostError, ConfigError) as exc:
        view["host_error"] = str(exc)
    loaded = view.get("key_loaded")
    view["role"] = "signer" if loaded == pool else ("down" if not view["reachable"] else ("wrong key" if loaded else f"{node.spec.standby} standby"))
    return view


async def cluster_status(inventory: Inventory, nodes: dict[str, NodeAccess]) -> dict[str, Any]:
    pool = inventory.validator.account_id
    views = list(await asyncio.gather(*(node_view(n, pool) for n in nodes.values())))
    heads = [v["head"] for v in views if v.get("head") is not None]
    top = max(heads) if heads else None
    for v in views:
        v["lag"] = (top - v["head"]) if top is not None and v.get("head") is not None else None
    signers = [v["name"] for v in views if v["role"] == "signer"]
    # A key file in the home of a node that does not sign while another does: it signs beside
    # the signer as soon as that neard restarts or is sent SIGHUP (an old primary fenced only
    # by chain silence, a restored backup).
    keys_left = [v["name"] for v in views if signers and v.get("key_in_home") and v["name"] not in signers]
    production = None
    for v in sorted(views, key=lambda v: -(v.get("head") or -1)):
        if not v["reachable"]:
            continue
        try:
            snap = production_of(await nodes[v["name"]].rpc.validators(), pool, v["head"])
        except RpcError:
            continue
        if snap is not None:
            production = _production_view(snap)
        break
    return {"validator": pool, "chain_id": inventory.validator.chain_id, "signers": signers, "double_signer_risk": len(signers) > 1, "keys_left_in_home": keys_left, "nodes": views, "production": production}


def _production_view(snap: Any) -> dict[str, Any]:
    pct = snap.percentages()
    kinds = {}
    for kind, threshold in KICKOUT_THRESHOLDS.items():
        p = pct[kind]
        kinds[kind] = {
            "produced": getattr(snap, f"{kind}_produced"),
            "expected": getattr(snap, f"{kind}_expected"),
            "percent": round(p, 2) if p is not None else None,
            "kickout_threshold": threshold,
            "at_risk": p is not None and p < threshold,
        }
    online = [p for p in pct.values() if p is not None]
    ratio = sum(online) / len(online) if online else None
    return {
        "height": snap.height,
        "epoch_start_height": snap.epoch_start_height,
        **kinds,
        "online_percent": round(ratio, 2) if ratio is not None else None,
        "reward_thresholds": {"zero_below": REWARD_MIN, "full_from": REWARD_FULL},
    }
