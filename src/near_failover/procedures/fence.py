"""Fence the old signer, and prove it, before any node is given the key.

Two proofs (DESIGN, procedures step 3):
- reachable primary: its key is out of its home, its neard is masked so nothing restarts it
  with the key, and it is *observed* not to sign (procedures/observe.py: its RPC answers without
  the pool's key, or its port is closed and no process serves its home), whatever its control
  reported: a wrong pid file or unit, or a stop command that does nothing, must not pass;
- unreachable primary: the target's own chain view shows the pool produced no block, chunk or
  endorsement for N consecutive blocks while duties were expected; then, when the node has a
  ``fence_command`` (STONITH: power off, cut the network), that command must succeed, since a
  silent machine may be a paused one that wakes later with the key in memory.
neard-behaviour §7: nothing in neard stops a second node from signing, so this is the only guard.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from near_failover.control.base import ControlError, StopOutcome
from near_failover.hosts import HostError
from near_failover.hosts.base import CommandTimeout
from near_failover.hosts.local import LocalHost
from near_failover.limits import KEY_FILE
from near_failover.procedures.chain_view import SilenceWatch, production_of
from near_failover.procedures.errors import Refused, StepFailed
from near_failover.procedures.nodes import NodeAccess, NodeOnHost

# The watchdog fences through fence_reachable without a pool to observe: what only a move
# needs (the RPC client, the inventory, the key parser) loads where it is used.
if TYPE_CHECKING:
    from near_failover.inventory import Node
    from near_failover.neard.check import Finding
    from near_failover.procedures.observe import SignerObservation


class ProofKind(StrEnum):
    """What proves the old signer cannot sign: the reason a move may give the target the key."""

    STOPPED = "stopped"  # reached: stopped, masked, key out of its home, observed not signing
    CHAIN_SILENCE = "chain-silence"  # unreachable: the pool silent on the chain while duties were due
    FORCED = "forced"  # the operator skipped the proof (failover --force, confirmed by the pool id)
    SELF_FENCED = "self-fenced"  # automatic mode: the old leader's record that it fenced itself
    OBSERVED = "observed"  # automatic mode: the old leader's neard observed not signing


@dataclass
class FenceProof:
    kind: ProofKind
    evidence: dict[str, Any] = field(default_factory=dict)
    # Where the old primary's key copy now lives, so a rollback can put it back.
    parked_key: str | None = None


async def park_key(node: NodeOnHost) -> str | None:
    """Take the key out of neard's home without ever deleting the last copy.

    The home copy is removed only when an identical copy already sits in the node's key_store;
    otherwise it is moved there (or beside it, if the key_store holds a different key).
    Returns where a copy of the key now is, or None if the home held no key.
    """
    home_key = await node.validator_key_path()
    if not await node.host.exists(home_key):
        return None
    store = node.spec.key_store
    data = await node.host.read_bytes(home_key, KEY_FILE)
    if await node.host.exists(store):
        if await node.host.read_bytes(store, KEY_FILE) == data:
            await node.host.remove(home_key)
            return str(store)
        store = store.with_name(f"{store.name}.parked-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    else:
        await node.host.mkdir(store.parent)
    await node.host.move(home_key, store)
    return str(store)


async def _undo_key_out(source: NodeOnHost, parked: str | None, restore: bool) -> str:
    """Put a parked key back in home (a move that stops leaves its primary as it was); says where it is."""
    if parked and restore:
        await source.host.write_atomic(await source.validator_key_path(), await source.host.read_bytes(parked, KEY_FILE), 0o600)
        return "its key is back in its home"
    return f"its key is parked at {parked}" if parked else "its key is out of its home"


def contradiction(source: NodeOnHost, stopped: StopOutcome, seen: SignerObservation) -> str:
    """What the control claimed against what was observed, naming what to fix."""
    from near_failover.procedures.observe import SignerVerdict

    claim = "names no running neard" if not stopped.was_running else f"reported neard (pid {stopped.pid}) stopped"
    said = f"{source.control.describe()} {claim}"
    if seen.verdict is SignerVerdict.SIGNING:
        return f"{said}, but {source.name} still signs ({seen.reason}): fix `control` for {source.name}"
    return f"{said}, but {source.name} cannot be shown not to sign ({seen.reason}): find what runs its neard and fix `control` for {source.name}"


async def fence_reachable(
    source: NodeOnHost, stop_timeout: float, restore_key_on_failure: bool = True, pool: str | None = None
) -> FenceProof:
    """Key out of home first (a restart can then never load it), then stop, mask, and, given
    the ``pool``, observe that the node no longer signs: that observation is the proof.

    When the stop fails or is contradicted by what is observed, a move puts the key back so
    nothing changed (its primary keeps signing, unmasked); a self-fence keeps it out, so that
    at least no restart can load it again."""
    parked = await park_key(source)
    try:
        stopped = await source.control.stop(timeout=stop_timeout)
    except ControlError as exc:
        where = await _undo_key_out(source, parked, restore_key_on_failure)
        raise Refused(f"could not stop neard on {source.name}: {exc}; {where}") from exc
    masked = False
    if source.control.supports_mask:
        await source.control.mask()
        masked = True
    seen = await _observe(source, pool) if pool is not None else None
    if seen is not None and not seen.not_signing:
        if restore_key_on_failure and masked:
            await source.control.unmask()
        where = await _undo_key_out(source, parked, restore_key_on_failure)
        raise Refused(f"{contradiction(source, stopped, seen)}; {where}, nothing was activated")
    if await source.control.is_active():
        raise StepFailed(f"{source.name}: neard is active again after stop and mask", known=False)
    if await source.key_in_home():
        raise StepFailed(f"{source.name}: a validator key reappeared in {source.spec.home}", known=False)
    return FenceProof(
        ProofKind.STOPPED,
        {
            "node": source.name,
            "stop": stopped.evidence(),
            "key_in_home": False,
            "masked": masked,
            "key_parked_at": parked,
            "observed": seen.evidence() if seen else None,
        },
        parked_key=parked,
    )


async def _observe(source: NodeOnHost, pool: str) -> SignerObservation:
    """Observed through the node's RPC: only a handle opened with one (a move's) can be."""
    from near_failover.procedures.observe import observe_until_silent

    if not isinstance(source, NodeAccess):
        raise TypeError(f"{source.name}: observing a node's signing needs its RPC (a NodeAccess)")
    return await observe_until_silent(source, pool)


async def prove_chain_silence(target: NodeAccess, account_id: str, blocks: int, deadline: float, block_time: float) -> FenceProof:
    """Watch the pool's counters through the target's RPC until they prove silence or signing."""
    from near_failover.neard.rpc import RpcError

    watch = SilenceWatch(blocks)
    poll = max(0.05, block_time / 2)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while loop.time() < end:
        try:
            status = await target.rpc.status()
            snap = production_of(await target.rpc.validators(), account_id, status.sync_info.latest_block_height)
        except RpcError as exc:
            raise Refused(f"cannot read the chain through {target.name} to prove the old signer is silent: {exc}") from exc
        if snap is None:
            raise Refused(f"{account_id} is not a current validator in {target.name}'s view: no duties, so silence proves nothing")
        verdict = watch.add(snap)
        if verdict == "signing":
            raise Refused(
                f"{account_id} is still signing (produced {watch.first.produced} -> {snap.produced} "  # type: ignore[union-attr]
                f"between heights {watch.first.height} and {snap.height}): the old primary is alive "  # type: ignore[union-attr]
                "somewhere. Fence it (stop neard, remove its key) before failing over."
            )
        if verdict == "silent":
            return FenceProof(ProofKind.CHAIN_SILENCE, watch.evidence())
        await asyncio.sleep(poll)
    raise Refused(
        f"no proof of silence within {deadline:.0f}s: the pool had no duties long enough, or the chain did "
        f"not advance {blocks} blocks in {target.name}'s view"
    )


FENCE_OUTPUT_CHARS = 2000  # the tail of a fence_command's output that the journal keeps


async def run_fence_command(node: Node, timeout: float) -> dict[str, Any]:
    """Run ``node``'s fence_command on this machine (the promoting one: the fenced machine may be
    gone); its evidence for the journal, or Refused unless it exits 0 in time. Only the program's
    name and the output's tail are kept (the journal scrubs key material from it too): a
    command's arguments may carry a token, and belong in a file it reads instead."""
    assert node.fence_command is not None
    program = node.fence_command[0]
    began = time.monotonic()
    try:
        done = await LocalHost("this machine").run(node.fence_command, timeout=timeout)
    except CommandTimeout:
        raise Refused(f"{node.name}'s fence_command ({program}) did not finish within {timeout:g}s and was killed: "
                      f"{node.name} may wake and sign, so no key is given; fence it by hand (power it off) and run again") from None
    output = (done.stdout + done.stderr).strip()
    evidence = {"program": program, "exit_code": done.exit_code, "seconds": round(time.monotonic() - began, 3),
                "output": output[-FENCE_OUTPUT_CHARS:]}
    if done.exit_code != 0:
        last = output.splitlines()[-1][:200] if output else "no output"
        raise Refused(f"{node.name}'s fence_command ({program}) exited {done.exit_code} ({last}): {node.name} may wake and "
                      "sign, so no key is given; fix the command (near-failover check --control) or fence the machine by hand")
    return evidence


def fence_command_findings(node: Node) -> list[Finding]:
    """``check --control``: is the node's fence_command set, and can this machine run it? It is
    never run here (it would power the machine off); it runs where a promotion runs."""
    import shutil

    from near_failover.neard.check import Finding, Severity

    where = "it runs on the machine that promotes another node (each other node's agent, and wherever you run `failover`)"
    if not node.fence_command:
        return [Finding(
            Severity.WARNING,
            f"{node.name} has no fence_command",
            f"a promotion that proves {node.name} fenced only by the chain's silence cannot power it off: if its machine was "
            "only paused, it may wake with the key in memory and sign before its watchdog kills neard (README, residual risk)",
            f'set fence_command = ["/usr/local/bin/your-stonith", "{node.name}"] in its [[node]] table: a command that powers '
            f"its machine off through the cloud's or hypervisor's API or cuts its network, and exits 0 only when done; {where}",
        )]
    program = node.fence_command[0]
    if shutil.which(program) is None:
        return [Finding(
            Severity.ERROR,
            f"{node.name}'s fence_command {program} is not an executable file on this machine",
            "a promotion on the chain's silence needs it to succeed before any key is given, so it would be refused",
            f"install it, or give its absolute path, and make it executable (chmod +x); {where}",
        )]
    return []


async def confirm_no_other_signer(nodes: dict[str, NodeAccess], account_id: str, exclude: set[str]) -> dict[str, Any]:
    """Every other reachable node: no key loaded for the pool. Unreachable ones are reported."""
    seen: dict[str, Any] = {}
    for name, node in nodes.items():
        if name in exclude:
            continue
        status = await node.status_or_none()
        if status is None:
            seen[name] = "rpc unreachable"
            continue
        if status.validator_account_id == account_id:
            raise Refused(f"{name} also has the pool's key loaded: fence it first")
        seen[name] = "no key loaded"
    return seen


__all__ = ["FenceProof", "HostError", "confirm_no_other_signer", "fence_reachable", "park_key", "prove_chain_silence", "fence_command_findings", "run_fence_command"]
