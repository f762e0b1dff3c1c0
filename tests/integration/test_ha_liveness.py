"""Automatic mode always finds a signer (issue 14) end to end: agents on a real etcd beside a
localnet, a promotion broken in the middle by a real signal, then the chain's ledger.

The promotions here take their time on purpose, and deterministically: the emulated neard applies
a SIGHUP's new key `--reload-delay` seconds later (nearcore's ConfigUpdater hands the reloaded
signer to the client on its next check, chain/client/src/config_updater.rs; a busy client is
slower), so a hot-swap promotion sits in its verify step for that long. The test waits for the
journal to show the verify step started, then kills what it kills: no sleep decides the timing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from near_failover.inventory import load_inventory
from near_failover.procedures.journal import Journal, Run
from tests.integration.ha_harness import POOL, HaCluster, assert_missed_within, running_cluster, wait_for

pytestmark = pytest.mark.integration

RELOAD_DELAY = 3.0  # from a SIGHUP to the new key in use: the verify step's length
# val-a's crash, val-b's promotion up to its verify (about 1.5 s), the fault in it, then val-c's
# promotion (behind val-b's lease of 4 s when its agent was killed) and its own verify of
# RELOAD_DELAY: about 12 s, 50 heights. The bound: about 100 heights (25 s) for a loaded machine.
BOUND = {"blocks": 35, "chunks": 50, "endorsements": 180}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[HaCluster]:
    with running_cluster(tmp_path, timings={"--reload-delay": RELOAD_DELAY}) as ha:
        yield ha


def journal_of(cluster: HaCluster) -> Journal:
    return Journal(Path(load_inventory(cluster.inventory).journal.path))


def promotion_to(journal: Journal, node: str) -> Run | None:
    runs = [r for r in journal.runs(POOL, kinds=["auto-failover"]) if r.to_node == node]
    return runs[0] if runs else None


def verifying(journal: Journal, node: str) -> Run | None:
    """`node`'s promotion once its verify step started (the key given, its neard not yet using it)."""
    run = promotion_to(journal, node)
    if run is None or run.state != "in-progress":
        return None
    return run if any(s.name == "verify" for s in journal.steps(run.id)) else None


def crash_leader_and_wait_for_verify(cluster: HaCluster, journal: Journal) -> tuple[dict[str, Any], int, Run]:
    cluster.configure_lease()
    cluster.start_agents()
    cluster.wait_ready()
    before = cluster.ledger()
    cluster.signal_neard("val-a", signal.SIGKILL)
    crash_height = cluster.height()
    run = wait_for(lambda: verifying(journal, "val-b"), 30, "val-b's promotion to reach its verify step", interval=0.05)
    return before, crash_height, run


def assert_val_c_signs(cluster: HaCluster, journal: Journal, before: dict[str, Any], crash_height: int) -> dict[str, Any]:
    """val-c promoted (ok), signs, nobody double-signed; the missed duties within BOUND."""
    done = wait_for(lambda: (run := promotion_to(journal, "val-c")) is not None and run.state == "ok" and run, 60,
                    "val-c's promotion to succeed", interval=0.25)
    wait_for(lambda: cluster.signs_after("val-c", crash_height), 20, "val-c to sign for the pool")
    cluster.wait_blocks(4)
    after = cluster.assert_no_double_sign()
    lost = assert_missed_within(before, after, BOUND)
    print(f"val-c's promotion: run {done.id}; missed since the crash: {lost}")
    return after


def test_a_promotion_whose_target_dies_in_verify_gives_up_and_the_next_candidate_signs(cluster: HaCluster) -> None:
    """Part 5: val-b's neard is SIGKILLed while its promotion verifies. The promotion stops at
    once with the reason (not at its verify deadline), val-b fences itself, which releases the
    lease, and val-c, next by priority, promotes and signs."""
    journal = journal_of(cluster)
    before, crash_height, run = crash_leader_and_wait_for_verify(cluster, journal)
    cluster.signal_neard("val-b", signal.SIGKILL)
    killed = time.monotonic()

    ended = wait_for(lambda: (r := journal.run(run.id)).state != "in-progress" and r, 20, "val-b's promotion to give up", interval=0.1)
    gave_up_after = time.monotonic() - killed
    assert ended.state == "stopped", ended
    assert "val-b is gone (neard not running) during verify: the promotion gives up" in ended.detail["message"], ended
    wait_for(lambda: [r for r in journal.runs(POOL, kinds=["self-fence"]) if r.from_node == "val-b"], 20, "val-b to fence itself")
    after = assert_val_c_signs(cluster, journal, before, crash_height)
    assert cluster.signer_row("val-b", after) is None  # killed before its neard used the key
    print(f"val-b's promotion gave up {gave_up_after:.1f}s after its neard died")


def test_an_agent_killed_mid_promotion_is_taken_over_and_the_next_candidate_signs(cluster: HaCluster) -> None:
    """Part 2: val-b's agent is SIGKILLed while its promotion verifies (the key is in val-b's
    home, its neard loads it RELOAD_DELAY after the SIGHUP). Its run stays interrupted; val-c, holding a newer lease,
    proves val-b fenced (its watchdog fences it at the lease's end), closes the run as
    taken-over with that proof, then promotes and signs."""
    journal = journal_of(cluster)
    before, crash_height, run = crash_leader_and_wait_for_verify(cluster, journal)
    os.kill(cluster.agent_pid("val-b"), signal.SIGKILL)
    cluster.agents["val-b"].wait(10)
    assert journal.run(run.id).state == "interrupted"

    after = assert_val_c_signs(cluster, journal, before, crash_height)
    # val-b's neard may have used the key (RELOAD_DELAY after the SIGHUP) until its watchdog fenced
    # it at its lease's end: never at a height val-c signed (no double sign, above).
    print(f"val-b signed: {cluster.signer_row('val-b', after)}")
    taken = journal.run(run.id)
    assert taken.state == "taken-over", taken
    assert taken.detail["taken_over_by"] == "val-c" and taken.detail["taken_over_generation"] > taken.detail["lease_generation"], taken
    assert taken.detail["target_fenced"]["proof"] in ("observed", "self-fenced", "chain-silence"), taken
