"""The automatic mode end to end: agents on a real etcd beside a localnet (issue 5 acceptance).

Every test runs one `near-failover agent` process per node on a fresh localnet (0.25 s blocks)
and a fresh etcd, breaks something with real signals (or a real network partition), and ends by
reading the chain's ledger: zero double signs, and the pool's missed duties within the bound the
test states. Bounds are in the localnet's duties (about 0.3 blocks, 0.4 chunks and 1.6
endorsements per 0.25 s height for the pool with seed 7) and leave room for a loaded machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from near_failover.ha.lease import MemberRecord, MemberRole, lease_clock
from near_failover.localnet.homes import free_port
from tests.integration.etcd_server import enable_auth, revoke_access, running_etcd, write_password_file
from tests.integration.ha_harness import (
    BLOCK_TIME,
    LEASE_TIMINGS,
    POOL,
    POWER_OFF,
    HaCluster,
    alive,
    assert_missed_within,
    etcd_in_namespace,
    guard,
    running_cluster,
    step,
    wait_for,
)
from tests.integration.localnet_harness import cli, start_localnet, stop_localnet

pytestmark = pytest.mark.integration

# Detection (the leader's next check, within 0.4 s, sees neard gone), self-fence and release, the
# standby's next check and a hot swap: about 1.5 s, 6 heights. The bound is the pool's duties in
# about 20 heights (5 s), for a loaded machine; the watchdog tests share it (its fence comes half a
# retry_timeout before the lease's end, up to 2.4 s after the fault).
CRASH_BOUND = {"blocks": 6, "chunks": 10, "endorsements": 40}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[HaCluster]:
    with running_cluster(tmp_path) as ha:
        yield ha


def test_leader_neard_crash_standby_promotes_on_its_own(cluster: HaCluster) -> None:
    cluster.configure_lease()
    cluster.start_agents()
    old = cluster.wait_ready()
    before = cluster.ledger()
    cluster.signal_neard("val-a", signal.SIGKILL)
    crash_height = cluster.height()

    run = cluster.wait_auto_failover()
    assert run["state"] == "ok" and run["from"] == "val-a" and run["to"] == "val-b", run
    fence = step(run, "fence")["evidence"]
    assert fence["proof"] == "self-fenced", fence  # val-a's agent fenced itself
    assert fence["observed"] == "gone", fence  # and saw its neard gone (RPC silent, port closed, no process)
    self_fence = cluster.runs("self-fence")
    # A crash is no flap: val-a stepped down at its first check, without waiting out unhealthy_loops.
    assert [r["from"] for r in self_fence] == ["val-a"]
    assert step(self_fence[0], "self-fence")["evidence"]["reason"] == "neard is gone: neard RPC does not answer; neard is not running"

    new = cluster.wait_leader("val-b")
    assert new.generation > old.generation
    assert cluster.key_loaded("val-b") == POOL and cluster.key_loaded("val-c") is None
    wait_for(lambda: cluster.signs_after("val-b", crash_height), 15, "val-b to sign for the pool")
    cluster.wait_blocks(4)
    after = cluster.assert_no_double_sign()
    assert cluster.signer_row("val-a", after)["last_height"] <= crash_height + 1  # type: ignore[index]
    assert_missed_within(before, after, CRASH_BOUND)


# The lease (4 s) runs out; the 10 silent blocks (2.5 s) that prove the frozen leader signs
# nothing were counted while it ran, so only 2 more heights past its end are waited for; the
# frozen RPC's 2.5 s timeout in the preflight runs beside the target's checks; then a hot swap
# (before: about 10 s, 40 heights, at most 13 blocks, 18 chunks, 63 endorsements). The bound:
# about 60 heights (15 s).
FREEZE_BOUND = {"blocks": 20, "chunks": 30, "endorsements": 110}


def test_leader_host_freezes_promotion_only_after_lease_expiry_and_chain_silence(cluster: HaCluster) -> None:
    """The silence counts from before the lease ended; with a fence_command (a STONITH that
    powers val-a's machine off: here it SIGKILLs the frozen processes) that machine is off before
    the key is given."""
    pids_file = cluster.net.directory / "val-a-host.pids"
    script = cluster.net.directory / "power-off.py"
    script.write_text(POWER_OFF)
    cluster.net.edit_inventory("val-a", fence_command=[sys.executable, str(script), str(pids_file), "val-a"])
    cluster.configure_lease()
    cluster.start_agents_with_val_a_unreachable()
    old = cluster.wait_ready()
    before = cluster.ledger()
    frozen = cluster.freeze("val-a")
    pids_file.write_text(json.dumps(list(frozen)))
    try:
        freeze_height = cluster.height()
        # Watch the lease: the last moment val-a's generation was still the leader key.
        last_seen_old = time.time()
        while (leader := cluster.leader()) is None or leader.member == "val-a":
            if leader is not None and leader.generation == old.generation:
                last_seen_old = time.time()
            assert time.time() - last_seen_old < 30, f"the lease was not taken over:\n{cluster.logs()}"
            time.sleep(0.05)
        assert leader.member == "val-b" and leader.generation > old.generation

        run = cluster.wait_auto_failover()
        assert run["state"] == "ok" and run["from"] == "val-a" and run["to"] == "val-b", run
        fence = step(run, "fence")["evidence"]
        assert fence["proof"] == "chain-silence", fence  # no record from the frozen agent, no SSH
        # Counted from the standby's own loops while the lease still ran, and reaching past its end.
        assert fence["counted_from"] == "before the old lease ended", fence
        assert fence["to"]["height"] >= fence["head_after_expiry"] + 2 > freeze_height, fence
        assert fence["fence_command"]["exit_code"] == 0 and "powered off val-a" in fence["fence_command"]["output"], fence
        started = datetime.fromisoformat(run["started"]).timestamp()
        assert started > last_seen_old, "the standby promoted while the old leader's lease was alive"
        assert cluster.key_loaded("val-b") == POOL and cluster.key_loaded("val-c") is None
        wait_for(lambda: cluster.signs_after("val-b", freeze_height), 15, "val-b to sign for the pool")
        cluster.wait_blocks(4)
        after = cluster.assert_no_double_sign()
        assert cluster.signer_row("val-a", after)["last_height"] <= freeze_height + 1  # type: ignore[index]
        assert_missed_within(before, after, FREEZE_BOUND)
    finally:
        # val-a's neard still holds the key in memory: it must never wake up.
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen[2], signal.SIGKILL)


def test_a_fence_that_fails_is_never_taken_as_proof(cluster: HaCluster) -> None:
    """val-a's neard hangs (SIGSTOP) under a control whose stop fails: its agent cannot fence it,
    says so, keeps the key out of its home and publishes no fence record; its watchdog's fence at
    the lease's end fails too. The wake guard, which holds the hung neard by a pidfd, SIGKILLs it
    at the lease's kill point (the control gives no other way). The standby never promotes on a
    "self-fenced" record that would be false: it observes val-a itself, gone (RPC silent, port
    closed, no process serving its home), and promotes on that observation."""
    neard = cluster.neard_pid("val-a")
    cluster.net.edit_inventory("val-a", control="command", commands={
        "start": ["true"],
        "stop": ["false"],
        # A killed neard stays a zombie until the localnet reaps it: that is not running.
        "is_active": ["sh", "-c", f"test -e /proc/{neard} && ! grep -q ') Z' /proc/{neard}/stat"],
        "reload": ["kill", "-HUP", str(neard)],
    })
    cluster.configure_lease()
    cluster.start_agents()
    cluster.wait_ready()
    wait_for(lambda: "holding val-a's neard" in cluster.watchdog_log("val-a"), 30, "val-a's watchdog to hold its neard")
    os.kill(neard, signal.SIGSTOP)
    try:
        freeze_height = cluster.height()
        failed = wait_for(lambda: cluster.runs("self-fence-failed"), 20, "val-a's failed fence in the journal")
        evidence = step(failed[-1], "self-fence-failed")["evidence"]  # the first (history is newest first)
        # Unhealthy for unhealthy_loops checks, or at its margin first: with the RPC hung, each
        # check waits out its budget, so whether the third fits before the margin depends on
        # when the freeze lands after a renewal (the same in both cases: a fence that fails).
        assert ("unhealthy" in evidence["reason"] or "lease about to expire" in evidence["reason"]) \
            and "could not stop neard on val-a" in evidence["error"], evidence
        # The key stays out of home: a restart of the hung neard could not load it again.
        assert "its key is parked at" in evidence["error"], evidence
        assert not (cluster.home("val-a") / "validator_key.json").exists()

        run = cluster.wait_auto_failover()
        # val-b by priority, or val-c: once its neard is seen gone, val-a hands its lease to the best
        # standby whose record is fresh in its last view, and on a loaded machine val-b's may not be.
        assert (run["state"], run["from"]) == ("ok", "val-a") and run["to"] in ("val-b", "val-c"), run
        assert "before anything else" in cluster.watchdog_log("val-a") + cluster.agent_log("val-a"), cluster.logs()
        # The proof is val-a seen gone: by the standby itself, or by val-a's agent in a record it
        # wrote only once its next fence found neard dead (never the failed fence's word).
        fence = step(run, "fence")["evidence"]
        assert (fence["proof"], fence.get("verdict") or fence.get("observed")) in (("observed", "gone"), ("self-fenced", "gone")), fence
        for record in cluster.runs("self-fence"):
            assert step(record, "self-fence")["evidence"]["observed"]["verdict"] == "gone", record
        assert not alive(neard)
        wait_for(lambda: cluster.signs_after(run["to"], freeze_height), 15, f"{run['to']} to sign for the pool")
        after = cluster.assert_no_double_sign()
        assert cluster.signer_row("val-a", after)["last_height"] <= freeze_height + 1  # type: ignore[index]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(neard, signal.SIGKILL)  # it may still hold the key in memory: it must never wake up


# Duties are lost from the watchdog's fence (half a retry_timeout before the lease's end) to the
# standby's hot swap after the lease expired: about 2 s, 8 heights (measured: at most 3 blocks,
# 3 chunks, 12 endorsements). The same bound as a crash: about 20 heights.
HUNG_AGENT_BOUND = CRASH_BOUND


def test_leader_agent_hangs_watchdog_fences_before_lease_expiry(cluster: HaCluster) -> None:
    cluster.configure_lease()
    cluster.start_agents()
    old = cluster.wait_ready()
    watchdog = cluster.watchdog_pid("val-a")
    agent = cluster.agent_pid("val-a")
    neard = cluster.neard_pid("val-a")
    before = cluster.ledger()
    os.kill(agent, signal.SIGSTOP)  # the agent hangs; its neard keeps signing, its watchdog runs
    try:
        hang_height = cluster.height()
        marker = wait_for(lambda: cluster.watchdog_marker("val-a"), 15, "val-a's watchdog to fence its neard", interval=0.02)
        last_beat = cluster.heartbeat("val-a")
        leader = cluster.leader()
        # The watchdog's record: the fence was complete before the end of the lease as the hung
        # agent last wrote it, an instant taken before the renewal was sent, so etcd's own
        # expiry is no earlier. Nobody could have promoted yet: the old lease is still the key.
        assert last_beat is not None and last_beat["armed"] and last_beat["generation"] == old.generation
        assert marker["valid_until"] == last_beat["valid_until"] and marker["generation"] == old.generation
        assert marker["fenced_at"] < marker["valid_until"], marker
        assert leader is not None and leader.generation == old.generation, leader
        assert "fencing val-a" in cluster.watchdog_log("val-a")
        assert alive(watchdog)  # its agent lives (if hung): it may lead again, and needs a guard then
        assert not (cluster.home("val-a") / "validator_key.json").exists() and marker["evidence"]["masked"]
        assert cluster.key_loaded("val-a") is None and not alive(neard)

        run = cluster.wait_auto_failover()
        assert run["state"] == "ok" and run["from"] == "val-a" and run["to"] == "val-b", run
        assert datetime.fromisoformat(run["started"]).timestamp() > marker["at"]
        assert cluster.wait_leader("val-b").generation > old.generation
        assert cluster.key_loaded("val-b") == POOL and cluster.key_loaded("val-c") is None
        wait_for(lambda: cluster.signs_after("val-b", hang_height), 15, "val-b to sign for the pool")
        cluster.wait_blocks(4)
        after = cluster.assert_no_double_sign()
        assert_missed_within(before, after, HUNG_AGENT_BOUND)
    finally:
        os.kill(agent, signal.SIGCONT)


# The proof a standby holds when the store comes back: the old leader's own record, or, when the
# standby reaches the store before that record does, a stop through the old leader's control.
AFTER_STORE_OUTAGE = ("self-fenced", "observed", "stopped")

# Timings where a loop that waits on everything in turn (the RPC, then the store's reads, then
# its record: 3 x 2.5 s + 0.5 s) outlasts the 6 s lease; Patroni's rule still holds (5.5 s < 6 s).
SLOW_CALL_TIMINGS = {"ttl": 6.0, "loop_wait": 0.5, "retry_timeout": 2.5, "unhealthy_loops": 3}
# From the freeze: the self-fence 3 s before the 6 s lease's end, etcd thawed, the old lease run
# out on etcd's clock, val-b's promotion: about 12 s, 50 heights (measured: at most 14 blocks,
# 22 chunks, 75 endorsements). The bound: about 80 heights (20 s).
SLOW_CALL_BOUND = {"blocks": 24, "chunks": 32, "endorsements": 130}


def test_leader_fences_itself_at_its_margin_when_its_neard_and_the_store_hang(cluster: HaCluster) -> None:
    """Every call of val-a's loop hangs until its timeout (neard and etcd frozen). Its own check
    must still come at its fence margin (loop_wait + retry_timeout before the lease's end), with
    time to stop neard, not leave the fence to the watchdog's last half second."""
    timings = cluster.configure_lease(**SLOW_CALL_TIMINGS)
    margin = timings["loop_wait"] + timings["retry_timeout"]
    cluster.start_agents()
    old = cluster.wait_ready()
    neard = cluster.neard_pid("val-a")
    before = cluster.ledger()
    assert cluster.etcd is not None
    os.kill(cluster.etcd.process.pid, signal.SIGSTOP)
    os.kill(neard, signal.SIGSTOP)
    try:
        freeze_height = cluster.height()
        cluster.wait_fenced_in_lease("val-a", neard, "did not fence itself before its lease's end")
        fences = wait_for(lambda: cluster.runs("self-fence"), 10, "val-a's self-fence in the journal")
        evidence = step(fences[0], "self-fence")["evidence"]
        assert "lease about to expire" in evidence["reason"] and evidence["generation"] == old.generation, evidence
        # Fenced at its margin; a little later on a loaded machine, never at the watchdog's reserve.
        assert evidence["lease_remaining"] > margin - 0.5, evidence
        # The SIGKILL of the frozen neard comes at the watchdog's reserve: it may look, and finds nothing to stop.
        marker = cluster.watchdog_marker("val-a")
        assert marker is None or not marker["evidence"]["stop"]["was_running"], marker
    finally:
        os.kill(cluster.etcd.process.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):  # killed and reaped already (the wake guard's SIGKILL)
            os.kill(neard, signal.SIGKILL)
    run = cluster.wait_auto_failover()
    assert (run["state"], run["to"]) == ("ok", "val-b") and step(run, "fence")["evidence"]["proof"] in AFTER_STORE_OUTAGE, run
    wait_for(lambda: cluster.signs_after("val-b", freeze_height), 15, "val-b to sign for the pool")
    after = cluster.assert_no_double_sign()
    assert cluster.signer_row("val-a", after)["last_height"] <= freeze_height + 1  # type: ignore[index]
    assert_missed_within(before, after, SLOW_CALL_BOUND)


@pytest.mark.parametrize(("fault", "reason"), [(signal.SIGKILL, "watchdog exited with -9"), (signal.SIGSTOP, "has not run for")],
                         ids=["watchdog-killed", "watchdog-frozen"])
def test_a_leader_whose_watchdog_dies_fences_itself_and_gets_a_new_one(cluster: HaCluster, fault: signal.Signals, reason: str) -> None:
    """Without a running watchdog, a hung agent would leave a signing neard: the leader gives up
    the validator at once, the standby promotes, and the agent replaces the watchdog."""
    cluster.configure_lease()
    cluster.start_agents()
    cluster.wait_ready()
    watchdog = cluster.watchdog_pid("val-a")
    before = cluster.ledger()
    os.kill(watchdog, fault)
    fault_height = cluster.height()

    fences = wait_for(lambda: cluster.runs("self-fence"), 15, "val-a to fence itself without its watchdog")
    fence_height = cluster.height()
    assert reason in step(fences[0], "self-fence")["evidence"]["reason"], fences[0]
    run = cluster.wait_auto_failover()
    assert (run["state"], run["from"], run["to"]) == ("ok", "val-a", "val-b"), run
    assert step(run, "fence")["evidence"]["proof"] == "self-fenced"
    wait_for(lambda: cluster.watchdog_pids("val-a") not in ([], [watchdog]), 15, "val-a's agent to start a new watchdog")
    assert cluster.watchdog_pid("val-a") != watchdog and not alive(watchdog)
    wait_for(lambda: cluster.signs_after("val-b", fault_height), 15, "val-b to sign for the pool")
    cluster.wait_blocks(4)
    after = cluster.assert_no_double_sign()
    assert cluster.signer_row("val-a", after)["last_height"] <= fence_height  # type: ignore[index]
    assert_missed_within(before, after, CRASH_BOUND)


# As a frozen leader (the lease runs out, 10 silent blocks), twice: the first promotion is
# refused at its last step, the next one (by val-b or val-c) proves silence again and swaps.
LOST_LEASE_BOUND = {"blocks": 40, "chunks": 60, "endorsements": 220}


def test_a_standby_that_loses_the_lease_while_promoting_gives_its_neard_no_key(cluster: HaCluster) -> None:
    """val-a freezes; the standby that takes the expired lease proves val-a's silence on the chain
    (val-a's host cannot be reached), and meanwhile its lease is revoked (`etcdctl lease revoke`).
    It must not give its neard the key on a lease it no longer holds."""
    cluster.configure_lease()
    cluster.start_agents_with_val_a_unreachable()
    cluster.wait_ready()
    before = cluster.ledger()
    frozen = cluster.freeze("val-a")
    try:
        freeze_height = cluster.height()
        taken = wait_for(lambda: (leader := cluster.leader()) is not None and leader.member != "val-a" and leader, 30,
                         "a standby to take the expired lease", interval=0.05)
        cluster.revoke_lease(taken.extra["lease"])

        first = wait_for(lambda: [r for r in cluster.runs("auto-failover") if r["to"] == taken.member and r["state"] != "in-progress"],
                         30, f"{taken.member}'s promotion to end", interval=0.5)[-1]
        assert first["state"] == "refused", first
        assert f"lost the lease of generation {taken.generation}" in step(first, "activate")["evidence"]["error"], first
        assert cluster.signer_row(taken.member) is None

        run = wait_for(lambda: [r for r in cluster.runs("auto-failover") if r["state"] == "ok"], 60, "a later promotion", interval=0.5)[0]
        assert cluster.wait_leader(run["to"]).generation > taken.generation
        wait_for(lambda: cluster.signs_after(run["to"], freeze_height), 15, f"{run['to']} to sign for the pool")
        cluster.wait_blocks(4)
        after = cluster.assert_no_double_sign()
        assert cluster.signer_row("val-a", after)["last_height"] <= freeze_height + 1  # type: ignore[index]
        assert_missed_within(before, after, LOST_LEASE_BOUND)
    finally:
        os.kill(frozen[2], signal.SIGKILL)  # val-a's neard holds the key in memory: it must never wake up


# Four freezes of 1.6 s: the pool's duties in about 26 frozen heights, plus catching up
# (measured: at most 9 blocks, 16 chunks, 52 endorsements).
FLAP_BOUND = {"blocks": 14, "chunks": 22, "endorsements": 80}
FLAPS = 4
# Hysteresis of 5 checks of 0.4 s; a check waits at most retry_timeout = 0.5 s for neard's RPC.
FLAP_TIMINGS = {"ttl": 4.0, "loop_wait": 0.4, "retry_timeout": 0.5, "unhealthy_loops": 5}


def test_flapping_health_does_not_move_the_validator(cluster: HaCluster) -> None:
    timings = cluster.configure_lease(**FLAP_TIMINGS)
    cluster.start_agents()
    old = cluster.wait_ready()
    before = cluster.ledger()
    # Shorter than unhealthy_loops checks, so the leader must not step down; several times
    # retry_timeout, so its agent sees the frozen RPC as unhealthy at each freeze.
    freeze = 0.8 * timings["unhealthy_loops"] * timings["loop_wait"]
    assert freeze > 3 * timings["retry_timeout"]
    flaps_seen = 0
    for _ in range(FLAPS):
        cluster.signal_neard("val-a", signal.SIGSTOP)
        seen = False
        try:
            end = time.monotonic() + freeze
            while time.monotonic() < end:
                record = cluster.members().get("val-a")
                seen = seen or (record is not None and not record.healthy)
                time.sleep(0.05)
        finally:
            cluster.signal_neard("val-a", signal.SIGCONT)
        flaps_seen += seen
        wait_for(lambda: (r := cluster.members().get("val-a")) is not None and r.healthy, 10, "val-a's agent to see it healthy again")
        time.sleep(0.5)
    assert flaps_seen == FLAPS, f"the leader's agent saw its neard unhealthy in {flaps_seen} of {FLAPS} freezes"
    cluster.wait_blocks(8)
    leader = cluster.leader()
    assert leader is not None and leader.member == "val-a" and leader.generation == old.generation, leader
    assert cluster.runs("auto-failover") == [] and cluster.runs("self-fence") == []
    assert cluster.key_loaded("val-a") == POOL and cluster.key_loaded("val-b") is None and cluster.key_loaded("val-c") is None
    mark = cluster.height()
    wait_for(lambda: cluster.signs_after("val-a", mark), 15, "val-a to keep signing")
    after = cluster.assert_no_double_sign()
    assert cluster.signer_row("val-b", after) is None and cluster.signer_row("val-c", after) is None
    assert_missed_within(before, after, FLAP_BOUND)


# Nothing moves and nobody may double sign: at most the odd duty a loaded machine delays.
STEADY_BOUND = {"blocks": 1, "chunks": 2, "endorsements": 6}


def test_boot_guard_refuses_the_key_on_a_node_without_the_lease(cluster: HaCluster) -> None:
    cluster.configure_lease()
    cluster.start_agents(("val-a",))
    leader = cluster.wait_leader("val-a")
    before = cluster.ledger()

    allowed = guard(cluster.inventory, "val-a")  # the leader, key in its home
    assert allowed.returncode == 0, allowed.stderr
    assert f"val-a holds the lease (generation {leader.generation})" in allowed.stdout

    allowed = guard(cluster.inventory, "val-b")  # no key in its home: neard starts as a non-validator
    assert allowed.returncode == 0, allowed.stderr
    assert "is absent" in allowed.stdout

    # An operator copies the key into val-b's home (a restored backup, a wrong runbook step).
    key = cluster.home("val-b") / "validator_key.json"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write((cluster.net.directory / "keys" / "val-b" / "validator_key.json").read_text())
    try:
        refused = guard(cluster.inventory, "val-b")
        assert refused.returncode == 1, refused.stdout
        message = " ".join(refused.stderr.split())
        assert f"refused: {key} is present but val-a holds the lease" in message, message
        assert "two signers" in message and "Move the key out of the home" in message
        assert "secret" not in refused.stderr.lower() and "ed25519:" not in refused.stderr
    finally:
        key.unlink()

    # The store cannot be asked: on doubt, even the leader's neard is not started with the key.
    unreachable = cluster.inventory_variant("store-down", {})
    text = unreachable.read_text().replace(cluster.endpoints[0], f"http://127.0.0.1:{free_port()}")
    unreachable.write_text(text)
    refused = guard(unreachable, "val-a")
    assert refused.returncode == 1 and "lease store cannot be read" in " ".join(refused.stderr.split()), refused.stderr
    shown = " ".join(cli("status", "-c", unreachable, check=False).stdout.split())  # status still shows the nodes, and says why not the lease
    assert "lease (etcd): cannot be read: lease store unavailable" in shown and "val-a" in shown, shown

    assert cluster.key_loaded("val-a") == POOL and cluster.key_loaded("val-b") is None
    mark = cluster.height()
    wait_for(lambda: cluster.signs_after("val-a", mark), 15, "val-a to keep signing")
    after = cluster.assert_no_double_sign()
    assert_missed_within(before, after, STEADY_BOUND)


# From etcd back (a restart takes about a second) through the old lease's full ttl (4 s) to
# val-b's hot swap: about 6 s, 24 heights (measured: at most 4 blocks, 10 chunks, 34
# endorsements; fewer after a freeze). The bound: about 40 heights (10 s).
RECOVERY_BOUND = {"blocks": 14, "chunks": 20, "endorsements": 75}


@pytest.mark.parametrize("frozen_store", [False, True], ids=["etcd-stopped", "etcd-frozen"])
def test_etcd_down_leader_signs_only_under_failsafe_confirmation(cluster: HaCluster, frozen_store: bool) -> None:
    timings = cluster.configure_lease()
    cluster.enable_api()
    cluster.start_agents()
    leader = cluster.wait_ready()
    cluster.wait_apis()
    for standby in ("val-b", "val-c"):  # a member confirms only the leader it knew before the outage
        wait_for(lambda: (s := cluster.api_status(standby))["leader"] == "val-a" and s["generation"] == leader.generation, 15,
                 f"{standby}'s agent to know val-a as the leader")
    before = cluster.ledger()
    assert cluster.etcd is not None
    if frozen_store:
        os.kill(cluster.etcd.process.pid, signal.SIGSTOP)  # requests hang instead of being refused
    else:
        cluster.etcd.stop()
    down_height = cluster.height()

    # Every member confirms the leader over its API: val-a keeps signing past its lease, and
    # nobody can (or tries to) take over.
    notes = wait_for(lambda: [p for p in cluster.api_status("val-a")["problems"] if "failsafe confirmation" in p], 15,
                     "val-a's agent to keep its neard under the failsafe confirmation")
    assert "lease store unavailable ()" not in notes[0], notes  # a hung store is named as such, too
    hold_until = time.monotonic() + 1.5 * timings["ttl"]  # past the lease it held when the store went down
    while time.monotonic() < hold_until:
        assert cluster.key_loaded("val-b") is None and cluster.key_loaded("val-c") is None
        assert cluster.heartbeat("val-a")["armed"], cluster.logs()  # type: ignore[index]
        time.sleep(0.2)
    beyond_lease = down_height + int(timings["ttl"] / BLOCK_TIME) + 4
    wait_for(lambda: cluster.signs_after("val-a", beyond_lease), 15, "val-a to sign beyond its lease's ttl")
    assert cluster.key_loaded("val-a") == POOL
    assert cluster.runs("auto-failover") == [] and cluster.runs("self-fence") == []
    assert_missed_within(before, cluster.assert_no_double_sign(), STEADY_BOUND)

    # One member stops confirming (its agent is stopped): the leader must fence itself before
    # the lease it holds by the last confirmation runs out.
    neard = cluster.neard_pid("val-a")
    cluster.agents["val-c"].terminate()  # its API goes away at once; its clean stop may take a while
    cluster.wait_fenced_in_lease("val-a", neard, "kept signing without confirmation")
    assert cluster.agents["val-c"].wait(20) == 0
    fences = wait_for(lambda: cluster.runs("self-fence"), 10, "val-a's self-fence in the journal")
    assert fences[0]["from"] == "val-a" and "lease about to expire" in step(fences[0], "self-fence")["evidence"]["reason"]
    assert cluster.watchdog_marker("val-a") is None  # the agent itself, not its watchdog
    assert not (cluster.home("val-a") / "validator_key.json").exists()
    fence_height = cluster.height()
    cluster.wait_blocks(8)
    # Still no store: nobody was promoted, so nobody signs (missed duties, never a double sign).
    assert cluster.key_loaded("val-b") is None and cluster.runs("auto-failover") == []
    after = cluster.assert_no_double_sign()
    assert cluster.signer_row("val-a", after)["last_height"] <= fence_height  # type: ignore[index]
    assert cluster.signer_row("val-b", after) is None and cluster.signer_row("val-c", after) is None

    # The store comes back: the old lease runs out (a restarted etcd gives leases their full ttl
    # again), val-a's record says it fenced itself at that generation, and val-b promotes on it.
    if frozen_store:
        os.kill(cluster.etcd.process.pid, signal.SIGCONT)
    else:
        cluster.etcd.start()
    back_height, back = cluster.height(), cluster.ledger()
    run = cluster.wait_auto_failover()
    assert (run["state"], run["from"], run["to"]) == ("ok", "val-a", "val-b"), run
    assert step(run, "fence")["evidence"]["proof"] in AFTER_STORE_OUTAGE, run
    assert cluster.wait_leader("val-b").generation > leader.generation
    wait_for(lambda: cluster.signs_after("val-b", back_height), 15, "val-b to sign for the pool")
    wait_for(lambda: cluster.api_status("val-a")["leader"] == "val-b", 10, "the fenced val-a to name the new leader")
    after = cluster.assert_no_double_sign()
    assert cluster.signer_row("val-a", after)["last_height"] <= fence_height  # type: ignore[index]
    assert_missed_within(back, after, RECOVERY_BOUND)


# From `resume` to val-b's first duty: the agents' next check, a hot swap on val-a's own fence
# record (it fenced while paused): like a crash failover without the detection (measured: 0
# blocks, 1 chunk, 2 endorsements).
RESUME_BOUND = CRASH_BOUND


def test_paused_cluster_does_not_promote_until_resumed(cluster: HaCluster) -> None:
    cluster.configure_lease()
    cluster.enable_api()
    cluster.start_agents()
    old = cluster.wait_ready()
    cluster.wait_apis()
    cluster.pause()
    shown = cli("status", "-c", cluster.inventory, check=False)  # paused: exit 3
    text = " ".join(shown.stdout.split())
    assert f"lease (etcd): val-a holds it (generation {old.generation}); automatic decisions paused" in text, shown.stdout
    assert "agent val-b: standby, healthy" in text, shown.stdout

    # The leader's neard crashes: its agent still fences itself, but nobody takes over, and
    # the standbys say that no one leads (not the fenced node they last knew).
    cluster.signal_neard("val-a", signal.SIGKILL)
    wait_for(lambda: cluster.runs("self-fence"), 15, "val-a's self-fence")
    wait_for(lambda: cluster.leader() is None, 15, "val-a's lease to be gone")
    wait_for(lambda: all(cluster.api_status(n)["leader"] is None for n in ("val-b", "val-c")), 10, "the standbys to see no leader")
    cluster.wait_blocks(int(2 * LEASE_TIMINGS["ttl"] / BLOCK_TIME))
    assert cluster.runs("auto-failover") == [] and cluster.key_loaded("val-b") is None and cluster.key_loaded("val-c") is None
    lease = json.loads(cli("status", "-c", cluster.inventory, "--json", check=False).stdout)["lease"]
    assert (lease["store"], lease["leader"], lease["paused"]) == ("etcd", None, True), lease
    assert {m["name"]: m["role"] for m in lease["members"]}["val-a"] == "fenced", lease

    cli("resume", "-c", cluster.inventory)
    resumed = cluster.ledger()
    run = cluster.wait_auto_failover()
    assert (run["state"], run["from"], run["to"]) == ("ok", "val-a", "val-b"), run
    assert cluster.wait_leader("val-b").generation > old.generation
    mark = cluster.height()
    wait_for(lambda: cluster.signs_after("val-b", mark), 15, "val-b to sign for the pool")
    assert_missed_within(resumed, cluster.assert_no_double_sign(), RESUME_BOUND)


# Until its fence the leader signs on a lease that is still valid: nothing but the odd duty
# around the moment neard stops.
REFUSED_BOUND = {"blocks": 2, "chunks": 3, "endorsements": 10}


def test_a_store_that_refuses_the_leader_makes_it_fence_itself_in_time(tmp_path: Path) -> None:
    """etcd with authentication on answers, but no longer lets the leader's user renew (its role
    revoked): no failsafe applies to a refusal, and the leader fences itself before its lease ends."""
    user, password = "near-failover", "password-for-the-agents"
    with running_etcd(tmp_path / "etcd") as etcd:
        enable_auth(etcd, user, password)
        net = start_localnet(tmp_path / "net", block_time=BLOCK_TIME)
        cluster = HaCluster(net, [etcd.url], etcd, credentials=(user, password))
        try:
            cluster.configure_lease(username=user, password_file=str(write_password_file(tmp_path / "etcd-password", password)))
            cluster.start_agents(("val-a",))
            leader = cluster.wait_leader("val-a")
            neard = cluster.neard_pid("val-a")
            before = cluster.ledger()

            revoke_access(etcd, user)
            last_armed = cluster.wait_fenced_in_lease("val-a", neard, "kept signing on a lease it could not renew")
            assert last_armed["generation"] == leader.generation, last_armed
            fence_height, at_fence = cluster.height(), cluster.ledger()
            fences = wait_for(lambda: cluster.runs("self-fence"), 10, "val-a's self-fence in the journal")
            reason = step(fences[0], "self-fence")["evidence"]["reason"]
            assert "lease about to expire" in reason and "the lease store refuses the renewal" in reason and "permission denied" in reason, reason
            assert password not in json.dumps(fences)
            assert cluster.watchdog_marker("val-a") is None  # the agent itself, not its watchdog
            # Up to its fence the leader signed as usual; after it nobody signs (no standby here).
            assert_missed_within(before, at_fence, REFUSED_BOUND)
            cluster.wait_blocks(4)
            after = cluster.assert_no_double_sign()
            assert cluster.signer_row("val-a", after)["last_height"] <= fence_height + 1  # type: ignore[index]  # a chunk for the next height
        finally:
            cluster.close()
            stop_localnet(net)


def test_a_partition_cuts_both_ways(tmp_path: Path) -> None:
    """A request sent from a cut-off address never reaches etcd, even on a connection opened before
    the cut: with only etcd's answers dropped, a renewal the leader believes lost would still
    extend its lease, and every partition figure would be a renewal too long."""
    def encoded(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    with etcd_in_namespace(tmp_path / "etcd-ns", sources=2) as space:
        cut, other = space.source_address(0), space.source_address(1)
        with httpx.Client(transport=httpx.HTTPTransport(local_address=cut), timeout=2) as client, \
                httpx.Client(transport=httpx.HTTPTransport(local_address=other), timeout=5) as witness:
            client.post(f"{space.url}/v3/kv/range", json={"key": encoded("probe")}).raise_for_status()  # opens the connection
            space.cut_off(cut)
            with pytest.raises(httpx.TransportError):
                client.post(f"{space.url}/v3/kv/put", json={"key": encoded("probe"), "value": encoded("sent while cut off")})
            assert "kvs" not in witness.post(f"{space.url}/v3/kv/range", json={"key": encoded("probe")}).json()
            space.heal(cut)
            client.post(f"{space.url}/v3/kv/put", json={"key": encoded("probe"), "value": encoded("healed")}).raise_for_status()
            assert "kvs" in witness.post(f"{space.url}/v3/kv/range", json={"key": encoded("probe")}).json()


# From the leader's own fence (at its first unanswered renewal, loop_wait + retry_timeout after
# its last renewal: about 2.6 s before its lease's end, where it was 1.4 s before renewal-isolated)
# to the standby's hot swap after the lease expired and 2 more heights of silence: about 4 s, 16
# heights. The bound is the pool's duties in about 28 heights (7 s) for a loaded machine: the
# crash bound's 20 heights plus the 1.2 s the fence now comes earlier, and a loaded etcd's expiry.
PARTITION_BOUND = {"blocks": 9, "chunks": 14, "endorsements": 56}


def test_leader_cut_off_from_etcd_fences_itself_and_standby_promotes(tmp_path: Path) -> None:
    """etcd runs in a network namespace of its own behind a veth link; every agent's etcd client
    leaves from its own address (lease_source_address), and blackhole rules inside the
    namespace cut off only the leader's, both ways. Needs root (CAP_NET_ADMIN): fails, never skips."""
    with etcd_in_namespace(tmp_path / "etcd-ns", sources=3) as space:
        net = start_localnet(tmp_path / "net", block_time=BLOCK_TIME)
        cluster = HaCluster(net, [space.url])
        try:
            timings = cluster.configure_lease()
            token = cluster.enable_api()
            sources = {name: space.source_address(i) for i, name in enumerate(("val-a", "val-b", "val-c"))}
            for name, address in sources.items():
                net.edit_inventory(name, lease_source_address=address)
            cluster.start_agents()
            old = cluster.wait_ready()
            cluster.wait_apis()
            for standby in ("val-b", "val-c"):  # so a refusal below is about the store, not an unknown leader
                wait_for(lambda: (s := cluster.api_status(standby))["leader"] == "val-a" and s["generation"] == old.generation, 15,
                         f"{standby}'s agent to know val-a as the leader")
            before = cluster.ledger()
            neard = cluster.neard_pid("val-a")

            space.cut_off(sources["val-a"])  # only val-a's agent loses etcd; val-b and val-c still reach it
            cut_height = cluster.height()
            asked: dict[str, dict] = {}

            def no_failsafe() -> None:
                # The others still reach etcd, so they refuse to confirm it: no failsafe.
                assert not any("failsafe" in p for p in cluster.api_status("val-a")["problems"])
                if not asked:
                    asked.update({n: cluster.ask_failsafe(n, token, "val-a", old.generation) for n in ("val-b", "val-c")})

            # Fenced before the end of its lease as it last knew it (etcd's own expiry is later).
            last_armed = cluster.wait_fenced_in_lease("val-a", neard, "kept signing while cut off from etcd", each=no_failsafe)
            assert asked == {"val-b": {"confirmed": False}, "val-c": {"confirmed": False}}, asked
            assert last_armed["generation"] == old.generation, last_armed
            assert cluster.watchdog_marker("val-a") is None  # the agent itself, not its watchdog

            run = cluster.wait_auto_failover()
            assert run["state"] == "ok" and run["from"] == "val-a" and run["to"] == "val-b", run
            assert cluster.wait_leader("val-b").generation > old.generation
            fences = wait_for(lambda: cluster.runs("self-fence"), 15, "val-a's self-fence in the journal")
            assert [r["from"] for r in fences] == ["val-a"], fences
            # Nobody confirmed it: fenced at its first unanswered renewal (renewal-isolated), not at
            # its fence margin, so its silence is complete by the time the lease expires.
            evidence = step(fences[0], "self-fence")["evidence"]
            assert "no member confirmed" in evidence["reason"], evidence
            assert evidence["lease_remaining"] > timings["loop_wait"] + timings["retry_timeout"], evidence
            assert "renewal-isolated" in cluster.agent_log("val-a")  # the decision's log line names its rule
            assert cluster.key_loaded("val-b") == POOL and cluster.key_loaded("val-c") is None
            wait_for(lambda: cluster.signs_after("val-b", cut_height), 15, "val-b to sign for the pool")
            cluster.wait_blocks(4)
            after = cluster.assert_no_double_sign()
            assert cluster.signer_row("val-a", after)["last_height"] <= cut_height + int(timings["ttl"] / BLOCK_TIME)  # type: ignore[index]
            assert_missed_within(before, after, PARTITION_BOUND)
        finally:
            cluster.close()
            stop_localnet(net)


def test_a_fence_record_without_the_leaders_observation_is_not_a_proof(cluster: HaCluster) -> None:
    """A standby promotes on an old leader's fence record only if the record carries the leader's
    own observation that its neard does not sign (issue 11, part 2).

    val-a signs and leads; its agent and watchdog die (SIGKILL) and it is cut off from the others
    (they reach neither its host nor its RPC), while its neard keeps signing. A record saying
    "val-a fenced itself for its generation", as an older agent or one that believed a lying
    control would publish, appears in the store. The standby that takes the expired lease must not
    take that record as proof: it cannot observe val-a itself, so it falls back to the chain's
    silence, which shows val-a still signing, and refuses. On the old code it promoted on the
    record and the pool double signed."""
    cluster.configure_lease()
    cut_off = cluster.inventory_variant("val-a-cut-off", {"val-a": {"host": f"ssh://near@127.0.0.1:{free_port()}",
                                                                     "rpc": f"http://127.0.0.1:{free_port()}"}})
    cluster.start_agents(inventories={"val-b": cut_off, "val-c": cut_off})
    old = cluster.wait_ready()
    for pid in (cluster.agent_pid("val-a"), cluster.watchdog_pid("val-a")):
        os.kill(pid, signal.SIGKILL)  # no self-fence, no watchdog: val-a's neard signs on
    forged = MemberRecord(name="val-a", role=MemberRole.FENCED, fenced_generation=old.generation, priority=100)

    async def publish() -> None:
        async with cluster._store() as store:
            await store.put_member(forged, None)

    asyncio.run(publish())
    start = cluster.height()

    refused = wait_for(lambda: [r for r in cluster.runs("auto-failover") if r["state"] != "in-progress"], 60,
                       "a standby's promotion to end", interval=0.5)[0]
    assert refused["state"] == "refused", refused
    fence = step(refused, "fence")
    assert "still signing" in fence["evidence"]["error"], fence  # the chain's silence, not the record
    assert all(r["state"] != "ok" for r in cluster.runs("auto-failover"))
    assert cluster.key_loaded("val-b") is None and cluster.key_loaded("val-c") is None
    assert cluster.signs_after("val-a", start) and cluster.key_loaded("val-a") == POOL
    cluster.assert_no_double_sign()


def test_a_second_agent_for_the_same_node_is_refused_and_names_the_running_one(cluster: HaCluster) -> None:
    """One agent per node (issue 14, part 6): a second agent for val-a, from another inventory
    with another API address, exits 1 with one line naming the running agent's pid and API,
    before it touches the heartbeat, the watchdog or the lease."""
    cluster.configure_lease()
    cluster.enable_api()
    cluster.start_agents()
    old = cluster.wait_ready()
    watchdog = cluster.watchdog_pid("val-a")
    beat = cluster.heartbeat("val-a")
    other = cluster.inventory_variant("second", {"val-a": {"api": f"http://127.0.0.1:{free_port()}"}})
    second = cli("agent", "-c", other, "--node", "val-a", timeout=60, check=False)
    assert second.returncode == 1, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {cluster.agent_pid('val-a')}" in lines[0] and cluster.api_url("val-a") in lines[0], lines[0]
    assert "Traceback" not in second.stderr + second.stdout
    assert cluster.watchdog_pids("val-a") == [watchdog]  # no second watchdog beside the first
    now = cluster.heartbeat("val-a")
    assert now is not None and now["armed"] and now["agent_pid"] == cluster.agent_pid("val-a"), (beat, now)
    assert cluster.leader() == old and cluster.agents["val-a"].poll() is None
    cluster.wait_blocks(4)
    cluster.assert_no_double_sign()


def test_a_leaders_agent_killed_and_restarted_within_its_lease_keeps_one_armed_watchdog(cluster: HaCluster) -> None:
    """A leader's agent SIGKILLed and restarted at once (issue 14, part 6), with etcd frozen so
    that it cannot resume the lease (test_ha_rejoin.py: it does when it can): the new agent adopts
    the watchdog still running (no second one beside it) and never writes armed=False while the
    old lease may be live; the watchdog fences val-a at that lease's end, a standby takes over,
    and nothing double signs. On the old code the new agent disarmed the old watchdog at start
    and started a second watchdog."""
    cluster.configure_lease()
    cluster.start_agents()
    old = cluster.wait_ready()
    watchdog = cluster.watchdog_pid("val-a")
    before = cluster.ledger()
    last = cluster.kill_agent("val-a", old.generation)
    assert cluster.etcd is not None
    os.kill(cluster.etcd.process.pid, signal.SIGSTOP)
    cluster.start_agent("val-a")
    watchdogs: set[int] = set()
    # Armed until the lease's end, or until the watchdog's fence of that very lease (its marker).
    while lease_clock() < last["valid_until"]:
        beat = cluster.heartbeat("val-a")
        if (fenced := cluster.watchdog_marker("val-a")) and fenced["valid_until"] == last["valid_until"]:
            break
        assert beat is not None and beat["armed"], f"the old lease was disarmed while live: {beat}\n{cluster.logs()}"
        watchdogs.update(cluster.watchdog_pids("val-a"))
        time.sleep(0.01)
    # The restarted agent, up long before the lease's end, beats with its own pid (still armed).
    wait_for(lambda: (cluster.heartbeat("val-a") or {}).get("agent_pid") == cluster.agent_pid("val-a"), 30, "the new agent's beat")
    os.kill(cluster.etcd.process.pid, signal.SIGCONT)
    # The standby that saw the store come back first (both were the store's outage's).
    new = wait_for(lambda: (leader := cluster.leader()) is not None and leader.member != "val-a" and leader, 40, "a standby to lead")
    assert new.generation > old.generation
    # One watchdog while the old lease was live (after its fence, one stuck on the frozen store may be replaced).
    assert watchdogs == {watchdog}, f"watchdogs of val-a: {watchdogs}, the first was {watchdog}\n{cluster.logs()}"
    fenced = cluster.watchdog_marker("val-a")
    assert fenced is not None and fenced["generation"] == old.generation, fenced  # the old watchdog fenced the old lease
    assert "FileNotFoundError" not in cluster.watchdog_log("val-a")
    assert cluster.agents["val-a"].poll() is None and cluster.key_loaded("val-a") is None
    wait_for(lambda: cluster.key_loaded(new.member) == POOL, 20, f"{new.member} to sign")
    cluster.wait_blocks(4)
    assert_missed_within(before, cluster.assert_no_double_sign(), FREEZE_BOUND)
