"""A promotion's fence proof for an unreachable old leader, from the chain's silence counted
before the old lease ended (decide.quiet_since, decide.proof_from_silence): the standby's own
loops saw the pool stop producing while the lease still ran, so once it holds the new lease it
only waits for the chain to pass the lease's end, not for a whole new window of silence.

Only for an old leader whose host does not answer: a reachable one is observed and, unless
that proves it, fenced through its control, which also takes the key out of its home (silence
alone says nothing of a neard that would load it on a restart). None whenever the proof does
not hold (the host answers, the run of silence is too short, the pool produces again, this
node's RPC does not answer): the promotion then goes the usual way, its silence counted from
the lease's end.
"""

from __future__ import annotations

import asyncio
import time

from near_failover.ha.decide import proof_from_silence, quiet_since
from near_failover.hosts import HostError
from near_failover.neard.rpc import RpcError
from near_failover.procedures.chain_view import Production, production_of
from near_failover.procedures.fence import FenceProof
from near_failover.procedures.nodes import NodeAccess

POLL = 0.1  # seconds between two reads of the chain (blocks are 0.6 s at the fastest)


async def proof_for_lost_leader(me: NodeAccess, old: NodeAccess, pool: str, since: Production | None,
                                timeout: float, wait: float) -> FenceProof | None:
    """The silence proof (prove_silence_since) if ``old``'s host does not answer within
    ``timeout`` (asked as the move asks it); the chain is read meanwhile."""
    silence = asyncio.ensure_future(prove_silence_since(me, pool, since, timeout, wait))
    try:
        if not await _host_lost(old, timeout):
            return None
        return await silence
    finally:
        silence.cancel()


async def _host_lost(node: NodeAccess, timeout: float) -> bool:
    try:
        await asyncio.wait_for(node.host.exists(node.spec.home), timeout)
    except (HostError, TimeoutError, OSError):
        return True
    return False


async def prove_silence_since(node: NodeAccess, pool: str, since: Production | None, timeout: float, wait: float) -> FenceProof | None:
    """Read the chain through ``node`` (this standby) until the silence that began at ``since``
    proves the old leader fenced: at most ``wait`` seconds, each read within ``timeout``."""
    if since is None:
        return None
    expired_head: int | None = None
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            status = await asyncio.wait_for(node.rpc.status(), timeout)
            snap = production_of(await asyncio.wait_for(node.rpc.validators(), timeout), pool, status.sync_info.latest_block_height)
        except (RpcError, TimeoutError):
            return None
        if snap is None or quiet_since(since, snap) is not since:
            return None  # not a validator in this view, an epoch began or the pool produced: no shortcut
        expired_head = snap.height if expired_head is None else expired_head
        proof = proof_from_silence(since, expired_head, snap)
        if proof is not None:
            return proof
        await asyncio.sleep(POLL)
    return None
