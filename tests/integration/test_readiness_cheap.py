"""A standby's readiness made cheap without being less true (issue 13, part 3), on a real
localnet: val-b's ``Move.target_readiness()`` as its agent runs it, config.json parsed once per
text, the loop's own status and validators judged instead of asked again. What changes between
two checks is seen by the next one. Zero double signs at the end of each test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from near_failover.inventory import load_inventory
from near_failover.procedures.errors import Refused
from near_failover.procedures.journal import Journal
from near_failover.procedures.move import Move, MoveRequest, NeardAnswers
from near_failover.procedures.nodes import open_nodes
from near_failover.procedures.plan import MoveKind, MoveOptions
from tests.integration.localnet_harness import Localnet

pytestmark = pytest.mark.integration


def _move(net: Localnet, nodes: dict[str, Any], journal: Journal) -> Move:
    return Move(load_inventory(net.inventory), nodes, journal, MoveRequest(MoveKind.FAILOVER, MoveOptions("val-b")))


async def test_a_config_edit_between_two_checks_is_seen_by_the_next_even_with_size_mtime_and_inode_kept(net: Localnet) -> None:
    config = net.directory / "val-b" / "config.json"
    inventory = load_inventory(net.inventory)
    async with open_nodes(inventory) as nodes:
        with Journal(Path(inventory.journal.path)) as journal:
            await _move(net, nodes, journal).target_readiness()
            await _move(net, nodes, journal).target_readiness()  # the same text, its parse kept
            good, before = config.read_text(), os.stat(config)
            with open(config, "r+") as f:  # in place, same size: no longer JSON neard accepts
                f.write(good.replace("{", "[", 1))
            os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
            after = os.stat(config)
            assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
            with pytest.raises(Refused, match="invalid JSON"):
                await _move(net, nodes, journal).target_readiness()
            config.write_text(good)
            os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
            await _move(net, nodes, journal).target_readiness()
    net.assert_no_double_sign()


async def test_a_staged_key_removed_between_two_checks_is_seen_by_the_next(net: Localnet) -> None:
    store = net.directory / "keys" / "val-b" / "validator_key.json"
    inventory = load_inventory(net.inventory)
    async with open_nodes(inventory) as nodes:
        with Journal(Path(inventory.journal.path)) as journal:
            await _move(net, nodes, journal).target_readiness()
            kept = store.with_suffix(".kept")
            os.replace(store, kept)
            try:
                with pytest.raises(Refused, match="no staged key"):
                    await _move(net, nodes, journal).target_readiness()
            finally:
                os.replace(kept, store)
    net.assert_no_double_sign()


async def test_the_loops_own_answers_give_the_checks_asking_neard_gives_and_date_them(net: Localnet) -> None:
    inventory = load_inventory(net.inventory)
    async with open_nodes(inventory) as nodes:
        with Journal(Path(inventory.journal.path)) as journal:
            me = nodes["val-b"]
            at = time.monotonic()
            seen = NeardAnswers(await me.rpc.status(), await me.rpc.validators(), at)
            judged = await _move(net, nodes, journal).target_readiness(seen)
            asked = await _move(net, nodes, journal).target_readiness()
            assert judged.at == at < asked.at  # counted from when the loop asked, not later
            assert judged.public_key == asked.public_key
            assert judged.checks["target_head"] == seen.status.sync_info.latest_block_height
            assert {k: v for k, v in judged.checks.items() if k not in ("target_head", "block_time")} == \
                   {k: v for k, v in asked.checks.items() if k not in ("target_head", "block_time")}
            # What the loop saw is what is judged: val-a's answers (its key loaded) are refused.
            signer = nodes["val-a"]
            theirs = NeardAnswers(await signer.rpc.status(), await signer.rpc.validators(), time.monotonic())
            with pytest.raises(Refused, match="already has a validator key loaded"):
                await _move(net, nodes, journal).target_readiness(theirs)
    net.assert_no_double_sign()
