"""The sqlite lease store: the contract every store keeps, plus real OS processes racing for it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from near_failover.ha.lease import (
    LeaseConfigError,
    LeaseStoreUnavailable,
)
from near_failover.ha.sqlite_lease import SqliteLeaseStore
from near_failover.ha.stores import open_lease_store
from near_failover.inventory import InventoryError, parse_inventory
from tests.unit import lease_contract as contract

T = TypeVar("T")


@pytest.fixture
def lease_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "lease.sqlite"


def opener(path: Path) -> contract.OpenStore:
    return lambda: SqliteLeaseStore(path)


async def test_only_one_of_concurrent_acquirers_wins(lease_file: Path) -> None:
    await contract.only_one_of_concurrent_acquirers_wins(opener(lease_file))


async def test_agents_creating_the_file_at_once_are_never_told_it_is_locked(tmp_path: Path) -> None:
    """Five stores on a new file at once: sqlite answers "locked" without waiting in that case
    (about 1 round in 40 here before the store retried it), which is no outage."""
    for round_ in range(200):
        path = tmp_path / f"round-{round_}" / "lease.sqlite"
        stores = [SqliteLeaseStore(path) for _ in range(5)]
        try:
            results = await asyncio.gather(*(s.acquire_leader(f"node-{i}", 5) for i, s in enumerate(stores)))
            assert sum(r is not None for r in results) == 1, (round_, results)
        finally:
            for s in stores:
                await s.close()


class CountingStore(SqliteLeaseStore):
    """Notes each transaction: view() must be one."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.round_trips: list[str] = []

    def _transaction(self, body: Callable[[sqlite3.Connection, float], T]) -> T:
        self.round_trips.append(getattr(body, "__name__", "body"))
        return super()._transaction(body)


async def test_one_view_is_one_transaction(lease_file: Path) -> None:
    await contract.one_view_shows_leader_members_and_pause(lambda: CountingStore(lease_file), lambda s: s.round_trips)  # type: ignore[attr-defined]


async def test_generation_grows_across_leaders(lease_file: Path) -> None:
    await contract.generation_grows_across_leaders(opener(lease_file))


async def test_unrenewed_lease_expires_then_another_acquires(lease_file: Path) -> None:
    await contract.unrenewed_lease_expires_then_another_acquires(opener(lease_file), ttl=0.5)


async def test_handed_over_lease_goes_to_its_target_only(lease_file: Path) -> None:
    await contract.handed_over_lease_goes_to_its_target_only(opener(lease_file), ttl=0.5)


async def test_renew_checks_the_key_not_only_the_lease(lease_file: Path) -> None:
    async def delete_leader() -> None:
        with sqlite3.connect(lease_file) as conn:
            conn.execute("DELETE FROM leader")

    await contract.renew_checks_the_key_not_only_the_lease(opener(lease_file), delete_leader)


async def test_member_records_expire(lease_file: Path) -> None:
    await contract.member_records_expire_with_their_lease(opener(lease_file), ttl=0.5)


async def test_a_restarted_holder_resumes_its_lease(lease_file: Path) -> None:
    await contract.a_restarted_holder_resumes_its_lease(opener(lease_file))


async def test_pause_flag(lease_file: Path) -> None:
    await contract.pause_flag(opener(lease_file))


async def test_generation_survives_reopening_the_file(lease_file: Path) -> None:
    store = SqliteLeaseStore(lease_file)
    first = await store.acquire_leader("a", 5)
    assert first is not None
    await store.release(first)
    await store.close()
    reopened = SqliteLeaseStore(lease_file)
    second = await reopened.acquire_leader("b", 5)
    await reopened.close()
    assert second is not None and second.generation == first.generation + 1


async def test_leases_of_an_earlier_boot_have_expired(lease_file: Path) -> None:
    """The boot clock restarts at zero: a lease from before a reboot must not look long-lived."""
    before = SqliteLeaseStore(lease_file, boot_id=lambda: "boot-1", clock=lambda: 1e9)
    held = await before.acquire_leader("a", 30)
    assert held is not None
    await before.put_member(contract.MemberRecord(name="a"), 30)
    await before.put_member(contract.MemberRecord(name="static"), None)
    await before.close()
    after = SqliteLeaseStore(lease_file, boot_id=lambda: "boot-2")
    assert await after.leader() is None
    assert [m.name for m in await after.members()] == ["static"]
    taken = await after.acquire_leader("b", 30)
    assert taken is not None and taken.generation > held.generation
    await after.close()


async def test_a_file_locked_too_long_is_unavailable_not_lost(lease_file: Path) -> None:
    store = SqliteLeaseStore(lease_file, busy_timeout=0.2)
    assert not await store.paused()  # creates the file
    blocker = sqlite3.connect(lease_file, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LeaseStoreUnavailable) as caught:
            await store.acquire_leader("a", 5)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert str(lease_file) in str(caught.value) and "another process" in str(caught.value)
    assert caught.value.endpoints == (str(lease_file),)
    assert await store.acquire_leader("a", 5) is not None
    await store.close()


async def test_an_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = SqliteLeaseStore(tmp_path / "file" / "lease.sqlite")
    with pytest.raises(LeaseStoreUnavailable) as caught:
        await store.leader()
    assert str(tmp_path / "file" / "lease.sqlite") in str(caught.value)
    await store.close()


# --- real processes ------------------------------------------------------------------------------

RACER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    from near_failover.ha.lease import lease_clock
    from near_failover.ha.sqlite_lease import SqliteLeaseStore

    async def main(path, name, go, duration, ttl):
        store = SqliteLeaseStore(path, busy_timeout=5)
        await store.paused()  # the file is open before the start signal
        deadline = time.monotonic() + 20
        while not Path(go).exists():
            if time.monotonic() > deadline:
                sys.exit("no start signal")
            time.sleep(0.001)
        held, refused = [], 0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            lease = await store.acquire_leader(name, ttl)
            if lease is None:
                refused += 1
                await asyncio.sleep(0.005)
                continue
            got_at = lease_clock()
            for _ in range(2):
                await asyncio.sleep(ttl / 4)
                if not await store.renew(lease):
                    sys.exit(f"{name} lost generation {lease.generation} while renewing in time")
            held.append({"generation": lease.generation, "got_at": got_at,
                         "valid_until": lease.valid_until, "name": name})
            # Stop renewing: the lease must expire before anyone else gets it.
            await asyncio.sleep(max(0.0, lease.remaining()) + 0.02)
            if await store.renew(lease):
                sys.exit(f"{name} renewed generation {lease.generation} after it expired")
        await store.close()
        print(json.dumps({"held": held, "refused": refused}))

    asyncio.run(main(*sys.argv[1:4], float(sys.argv[4]), float(sys.argv[5])))
    """
)


def test_os_processes_racing_never_overlap(lease_file: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    ttl, duration = 0.2, 1.5
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(lease_file), f"racer-{i}", str(go), str(duration), str(ttl)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    time.sleep(0.3)
    go.touch()
    held, refused = [], 0
    for racer in racers:
        out, err = racer.communicate(timeout=30)
        assert racer.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        held += report["held"]
        refused += report["refused"]
    held.sort(key=lambda h: h["generation"])
    generations = [h["generation"] for h in held]
    assert len(held) >= 2 and refused > 0, "the processes never contended"
    assert generations == list(range(generations[0], generations[0] + len(held))), generations
    # All processes run on one host, so the lease clock is one clock for all of them: each new
    # holder got the lease only after the previous holder's own deadline had passed.
    for previous, current in zip(held, held[1:]):
        assert current["got_at"] >= previous["valid_until"], (previous, current)


# --- configuration -------------------------------------------------------------------------------

INVENTORY = """
[validator]
account_id = "pool.poolv1.near"
chain_id = "localnet"
{lease}
[[node]]
name = "a"
host = "{host_a}"
home = "/srv/a/home"
rpc = "http://127.0.0.1:3030"
control = "systemd:neard"
key_store = "/srv/a/keys"
standby = "hot-swap"

[[node]]
name = "b"
host = "{host_b}"
home = "/srv/b/home"
rpc = "http://127.0.0.1:3031"
control = "systemd:neard"
key_store = "/srv/b/keys"
standby = "rpc"
"""


def inventory(tmp_path: Path, host_a: str = "local", host_b: str = "local", lease: str = ""):  # type: ignore[no-untyped-def]
    source = tmp_path / "inventory.toml"
    text = INVENTORY.format(host_a=host_a, host_b=host_b, lease=lease)
    source.write_text(text)
    return parse_inventory(text, source)


def test_sqlite_refuses_nodes_on_several_hosts(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "local", "ssh://admin@10.0.0.7", '[lease]\nstore = "sqlite"\n')
    with pytest.raises(LeaseConfigError) as caught:
        open_lease_store(inv)
    message = str(caught.value)
    assert "inventory.toml" in message and "2 hosts" in message
    assert "a (local)" in message and "b (ssh://admin@10.0.0.7:22)" in message
    assert 'store = "etcd"' in message


def test_sqlite_accepts_one_host_however_it_is_written(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "local", "ssh://127.0.0.1:2222",
                    '[lease]\nstore = "sqlite"\npath = "run/lease.sqlite"\n')
    store = open_lease_store(inv)
    assert isinstance(store, SqliteLeaseStore) and store.path == tmp_path / "run" / "lease.sqlite"
    same_remote = inventory(tmp_path, "ssh://h1", "ssh://root@h1:2200")
    assert isinstance(open_lease_store(same_remote), SqliteLeaseStore)


def test_without_lease_table_the_embedded_store_is_used(tmp_path: Path) -> None:
    store = open_lease_store(inventory(tmp_path))
    assert isinstance(store, SqliteLeaseStore)
    assert store.path.name == "lease-pool.poolv1.near.sqlite"


def test_lease_timings_must_let_a_leader_fence_before_expiry(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        inventory(tmp_path, lease='[lease]\nstore = "sqlite"\nttl = 5\nloop_wait = 1\nretry_timeout = 2\n')
    assert "lease: loop_wait + 2 * retry_timeout must be less than ttl" in str(caught.value)
    assert "inventory.toml" in str(caught.value)
    ok = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\nttl = 5.5\nloop_wait = 1\nretry_timeout = 2\n')
    assert ok.lease is not None and (ok.lease.loop_wait, ok.lease.retry_timeout) == (1, 2)
    with pytest.raises(InventoryError) as caught:
        inventory(tmp_path, lease='[lease]\nstore = "etcd"\nendpoints = ["http://e:2379"]\n'
                  "ttl = 1.5\nloop_wait = 0.2\nretry_timeout = 0.3\n")
    assert "etcd's minimum lease TTL" in str(caught.value)


async def test_a_host_that_slept_finds_its_lease_ended_as_the_store_does(lease_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A suspend (a paused VM) moves CLOCK_BOOTTIME and not CLOCK_MONOTONIC; this machine cannot
    suspend in a test, so the kernel clock's answer is shifted by the 30 s it slept. The holder's
    own estimate must end with the store's: a leader that wakes believing it still has time
    would sign on a lease someone else may hold."""
    store = SqliteLeaseStore(lease_file)
    held = await store.acquire_leader("a", 10)
    assert held is not None and held.remaining() > 9
    real = time.clock_gettime
    monkeypatch.setattr(time, "clock_gettime", lambda clock: real(clock) + (30.0 if clock == time.CLOCK_BOOTTIME else 0.0))
    assert held.remaining() < 0
    assert not await store.renew(held)
    assert await store.leader() is None
    await store.close()


async def test_the_lease_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    """The lease decides who may sign: created 0600 (with its -wal and -shm) under a 022 umask."""
    path = tmp_path / "lease.sqlite"
    old_umask = os.umask(0o022)
    try:
        store = SqliteLeaseStore(path)
        try:
            await store.set_paused(True)
            made = [p for p in tmp_path.iterdir() if p.name.startswith("lease.sqlite")]
            modes = {p.name: p.stat().st_mode & 0o777 for p in made}  # while open: -wal and -shm exist
        finally:
            await store.close()
    finally:
        os.umask(old_umask)
    assert {"lease.sqlite", "lease.sqlite-wal"} <= set(modes)
    assert modes == {name: 0o600 for name in modes}
