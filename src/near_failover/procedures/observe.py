"""Whether a node can still sign, observed independently of the control that acted on it.

A control reports what it did (a pid file's process, a unit, a command's exit code), and any of
these can be wrong while neard keeps signing. The fence's proof is therefore what can be seen
from outside: neard's own RPC answering without the pool's key, or its RPC port closed and no
process on its host serving its home (hosts/processes.py reads that from /proc).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Any

from near_failover.hosts import HostError
from near_failover.hosts.processes import ProcessScan, scan_processes
from near_failover.neard.keys import KeyFileError, parse_key_file
from near_failover.neard.rpc import RpcError, StatusResponse
from near_failover.procedures.nodes import STATUS_TIMEOUT, NodeAccess

# How long a fence keeps looking when its first observation does not prove the old signer
# silent: a stop whose command returns before neard has exited gets this long to finish.
SETTLE_SECONDS = 3.0
POLL_SECONDS = 0.2


class SignerVerdict(str, Enum):
    SIGNING = "signing"  # its RPC answers with the pool's key loaded
    NO_KEY = "no-key"  # its RPC answers, and no key for the pool is loaded
    GONE = "gone"  # its RPC does not answer, its port is closed, no process serves its home
    UNPROVEN = "unproven"  # neither can be shown: RPC silent but a process serves the home, host unreachable, RPC of another node


@dataclass(frozen=True)
class SignerObservation:
    """One look at a node: the verdict, and the evidence the journal keeps as the fence's proof."""

    node: str
    verdict: SignerVerdict
    reason: str  # one line, for people
    rpc_answered: bool
    loaded_account: str | None = None
    loaded_public_key: str | None = None
    scan: ProcessScan | None = None

    @property
    def not_signing(self) -> bool:
        return self.verdict in (SignerVerdict.NO_KEY, SignerVerdict.GONE)

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.node,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "rpc_answered": self.rpc_answered,
            "loaded_account": self.loaded_account,
            "loaded_public_key": self.loaded_public_key,
        }
        if self.scan is not None:
            out["processes"] = self.scan.evidence()
        return out


async def _status(node: NodeAccess, timeout: float) -> tuple[StatusResponse | None, str]:
    try:
        return await asyncio.wait_for(node.rpc.status(), timeout), ""
    except RpcError as exc:
        return None, str(exc)
    except asyncio.TimeoutError:
        return None, f"no answer within {timeout:g}s"


async def _home_node_key(node: NodeAccess) -> str | None:
    """The public key of the home's node_key.json, to tell this home's neard from another."""
    cfg = await node.home_config()
    configured = cfg.get("node_key_file")
    name = configured if isinstance(configured, str) else "node_key.json"
    try:
        return parse_key_file(await node.host.read_text(node.spec.home / name), source=name).public_key
    except (HostError, KeyFileError):
        return None


async def observe_signer(node: NodeAccess, pool: str, rpc_timeout: float = STATUS_TIMEOUT) -> SignerObservation:
    """Whether ``node`` can still sign for ``pool``, from its RPC and its host's /proc.

    SIGNING and NO_KEY come from neard's own answer (checked to be this home's neard by its
    node key); GONE needs the RPC silent, its port closed and no process serving the home;
    anything else is UNPROVEN, which a fence must never take as proof."""
    status, rpc_error = await _status(node, rpc_timeout)
    if status is not None:
        loaded = (status.validator_account_id, status.validator_public_key)
        if status.validator_account_id == pool:
            return SignerObservation(node.name, SignerVerdict.SIGNING, f"{node.name}'s RPC shows the pool's key loaded", True, *loaded)
        home_key = await _home_node_key(node)
        if home_key and status.node_public_key and home_key != status.node_public_key:
            return SignerObservation(
                node.name,
                SignerVerdict.UNPROVEN,
                f"the RPC at {node.spec.rpc} answers for node key {status.node_public_key}, but {node.spec.home}/node_key.json "
                f"is {home_key}: that RPC is not {node.name}'s neard; fix `rpc` for {node.name}",
                True,
                *loaded,
            )
        what = f"a key for {status.validator_account_id}" if status.validator_account_id else "no validator key"
        return SignerObservation(node.name, SignerVerdict.NO_KEY, f"{node.name}'s RPC answers with {what} loaded", True, *loaded)
    try:
        scan = await scan_processes(node.host, node.spec.home, await node.rpc_ports())
    except HostError as exc:
        return SignerObservation(node.name, SignerVerdict.UNPROVEN, f"{node.name}'s RPC: {rpc_error}; its host: {exc}", False)
    if scan.serving:
        who = ", ".join(f"pid {p.pid} ({'; '.join(p.reasons)})" for p in scan.processes) or f"a socket on port {scan.ports[0]} (owner unreadable)"
        return SignerObservation(
            node.name, SignerVerdict.UNPROVEN, f"{node.name}'s RPC does not answer ({rpc_error}) but {who} still serves {node.spec.home}", False, scan=scan
        )
    return SignerObservation(
        node.name,
        SignerVerdict.GONE,
        f"{node.name}'s RPC does not answer, port {scan.ports[0]} is closed and no process serves {node.spec.home}",
        False,
        scan=scan,
    )


async def observe_until_silent(node: NodeAccess, pool: str, settle: float = SETTLE_SECONDS) -> SignerObservation:
    """Observe until the node is shown not to sign, or ``settle`` seconds pass; the last look."""
    loop = asyncio.get_running_loop()
    end = loop.time() + settle
    while True:
        seen = await observe_signer(node, pool)
        if seen.not_signing or loop.time() >= end:
            return seen
        await asyncio.sleep(POLL_SECONDS)


__all__ = ["SignerObservation", "SignerVerdict", "observe_signer", "observe_until_silent"]
