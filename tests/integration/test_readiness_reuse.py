"""An automatic promotion's preflight that reuses its standby's recent readiness checks (issue 13,
part 4): on a real localnet, what rests on observation after the lease is still observed.

The readiness is ``Move.target_readiness()`` of val-b, as its agent runs it; the preflight is a
failover's dry run to val-b given that readiness (``AutomaticMove.ready``), as ``_promote`` gives
it. Zero double signs at the end of each test.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from near_failover.inventory import load_inventory
from near_failover.neard.keys import KeyFile, write_key_file
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import AutomaticMove, Move, MoveRequest, MoveResult, TargetReady
from near_failover.procedures.nodes import open_nodes
from near_failover.procedures.plan import MoveKind, MoveOptions
from tests.integration.localnet_harness import Localnet

pytestmark = pytest.mark.integration


def _move(net: Localnet, nodes: dict[str, Any], journal: Journal, source: str | None, ready: TargetReady | None) -> Move:
    inventory = load_inventory(net.inventory)
    return Move(inventory, nodes, journal, MoveRequest(MoveKind.FAILOVER, MoveOptions("val-b"), source=source,
                                                       automatic=AutomaticMove(ready=ready)))


async def _readiness_then_preflight(net: Localnet, source: str | None, between: Callable[[], None] | None = None) -> tuple[TargetReady, MoveResult]:
    """val-b's readiness, then (after ``between``, if callable) a failover's preflight reusing it."""
    inventory = load_inventory(net.inventory)
    async with open_nodes(inventory) as nodes:
        with Journal(Path(inventory.journal.path)) as journal:
            ready = await _move(net, nodes, journal, source, None).target_readiness()
            if between is not None:
                between()
            return ready, await _move(net, nodes, journal, source, ready).run(dry_run=True)


async def test_a_reused_readiness_does_not_skip_the_check_that_no_other_node_signs(net: Localnet) -> None:
    # val-a signs; the failover names val-c as the old signer, so val-a is one of the "other nodes".
    _ready, result = await _readiness_then_preflight(net, source="val-c")
    assert not result.ok and result.message == "val-a also has the pool's key loaded: fence it first", result.message
    assert net.rpc_status("val-b")["validator_account_id"] is None
    net.assert_no_double_sign()


async def test_a_reused_readiness_refuses_a_staged_key_changed_since_its_checks(net: Localnet) -> None:
    net.signal("val-a", signal.SIGKILL)
    store = net.directory / "keys" / "val-b" / "validator_key.json"
    ready, result = await _readiness_then_preflight(net, source=None)
    # Reused: the target's checks are the readiness's, the head and the other nodes' are new.
    assert result.ok, result.message
    assert result.checks["readiness_reused"]["age_s"] >= 0
    assert result.checks["staged_key"]["public_key"] == ready.public_key
    assert result.checks["other_nodes"] == {"val-c": "no key loaded"}
    assert result.checks["source"]["node"] == "val-a"

    _ready, result = await _readiness_then_preflight(net, None, lambda: write_key_file(store, KeyFile.generate(net.pool())))
    assert not result.ok and "changed since its checks" in result.message, result.message
    assert net.rpc_status("val-b")["validator_account_id"] is None
    net.assert_no_double_sign()
