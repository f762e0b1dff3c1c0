"""The behaviour every lease store must have; run against sqlite (unit) and a real etcd (integration).

``open_store()`` returns a new store object on the same backend and pool each time, standing for
another agent; ``delete_leader()`` removes the leader key behind the stores' backs, as an
operator (``etcdctl del``) or a bug could.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from near_failover.ha.lease import LeaderLease, LeaseStore, MemberRecord, MemberRole, lease_clock

OpenStore = Callable[[], LeaseStore]
DeleteLeader = Callable[[], Awaitable[None]]


async def poll_until(check: Callable[[], Awaitable[object]], timeout: float) -> object:
    """The first truthy result of ``check`` within ``timeout`` seconds (None if none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    return None


async def only_one_of_concurrent_acquirers_wins(open_store: OpenStore, contenders: int = 5) -> None:
    stores = [open_store() for _ in range(contenders)]
    try:
        results = await asyncio.gather(
            *(s.acquire_leader(f"node-{i}", 5) for i, s in enumerate(stores))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        winner = winners[0]
        info = await stores[0].leader()
        assert info is not None
        assert (info.member, info.generation) == (winner.member, winner.generation)
        assert info.ttl_left is not None and 0 < info.ttl_left <= 5
        # Asking again while it is held changes nothing.
        assert await stores[1].acquire_leader("node-1", 5) is None
        other_view = await stores[2].leader()
        assert other_view is not None and other_view.generation == winner.generation
    finally:
        for s in stores:
            await s.close()


async def generation_grows_across_leaders(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    try:
        first = await a.acquire_leader("a", 5)
        assert first is not None
        await a.release(first)
        assert await a.leader() is None
        assert not await a.renew(first), "a released lease must not renew"
        second = await b.acquire_leader("b", 5)
        assert second is not None and second.generation > first.generation
        await b.release(second)
        third = await a.acquire_leader("a", 5)
        assert third is not None and third.generation > second.generation
        await a.release(third)
    finally:
        await a.close()
        await b.close()


async def unrenewed_lease_expires_then_another_acquires(open_store: OpenStore, ttl: float) -> None:
    a, b = open_store(), open_store()
    try:
        held = await a.acquire_leader("a", ttl)
        assert held is not None
        assert await b.acquire_leader("b", ttl) is None
        taken = await poll_until(lambda: b.acquire_leader("b", ttl), timeout=ttl + 10)
        got_at = lease_clock()
        assert isinstance(taken, LeaderLease), f"the lease did not expire within {ttl + 10}s"
        # Safety, not speed: the store never handed the lease over while a could still believe in it.
        assert got_at >= held.valid_until
        assert taken.generation > held.generation
        assert not await a.renew(held)
        info = await a.leader()
        assert info is not None and info.member == "b"
        await b.release(taken)
    finally:
        await a.close()
        await b.close()


async def renew_checks_the_key_not_only_the_lease(
    open_store: OpenStore, delete_leader: DeleteLeader
) -> None:
    a, b = open_store(), open_store()
    try:
        held = await a.acquire_leader("a", 5)
        assert held is not None
        before = held.valid_until
        await asyncio.sleep(0.05)
        assert await a.renew(held)
        assert held.valid_until > before
        await delete_leader()
        assert not await a.renew(held), "renew succeeded although the leader key was deleted"
        taken = await b.acquire_leader("b", 5)
        assert taken is not None and taken.generation > held.generation
        assert not await a.renew(held), "renew succeeded although b holds the key"
        # A stale holder's release must not delete the new leader's key.
        await a.release(held)
        info = await b.leader()
        assert info is not None and (info.member, info.generation) == ("b", taken.generation)
        assert await b.renew(taken)

        # Taken over while the old lease is still alive (no renew failure in between).
        await delete_leader()
        again = await a.acquire_leader("a", 5)
        assert again is not None and again.generation > taken.generation
        assert not await b.renew(taken)
        await a.release(again)
    finally:
        await a.close()
        await b.close()


async def member_records_expire_with_their_lease(open_store: OpenStore, ttl: float) -> None:
    a, b = open_store(), open_store()
    try:
        await a.put_member(MemberRecord(name="a", role=MemberRole.LEADER, healthy=True,
                                        generation=7, problems=[]), ttl)
        await b.put_member(MemberRecord(name="b", healthy=False, problems=["syncing"],
                                        priority=50), None)
        seen = {r.name: r for r in await a.members()}
        assert set(seen) == {"a", "b"}
        assert seen["a"].role == "leader" and seen["a"].generation == 7 and seen["a"].healthy
        assert seen["b"].problems == ["syncing"] and seen["b"].priority == 50
        # A put refreshes the record and its lease.
        await a.put_member(MemberRecord(name="a", role=MemberRole.FENCED, fenced_generation=7), ttl)
        seen = {r.name: r for r in await b.members()}
        assert seen["a"].role == "fenced" and seen["a"].fenced_generation == 7

        async def a_gone() -> bool:
            return "a" not in {r.name for r in await b.members()}

        assert await poll_until(a_gone, timeout=ttl + 10), "a's record outlived its lease"
        assert [r.name for r in await b.members()] == ["b"], "a record without ttl must stay"
        await b.delete_member("b")
        assert await b.members() == []
    finally:
        await a.close()
        await b.close()


async def pause_flag(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    try:
        assert not await b.paused()
        await a.set_paused(True)
        assert await b.paused()
        await a.set_paused(True)
        assert await b.paused()
        await b.set_paused(False)
        assert not await a.paused()
    finally:
        await a.close()
        await b.close()


async def one_view_shows_leader_members_and_pause(open_store: OpenStore, reads: Callable[[LeaseStore], list[str]]) -> None:
    """view(): the leader, every member's record and the pause flag, from one read of the store
    (``reads(store)`` lists the store's round trips since it opened)."""
    a, b = open_store(), open_store()
    try:
        empty = await b.view()
        assert (empty.leader, empty.members, empty.paused, empty.generation) == (None, (), False, None)
        lease = await a.acquire_leader("a", 5)
        assert lease is not None
        await a.put_member(MemberRecord(name="b", role=MemberRole.STANDBY, priority=10), 5)
        await a.put_member(MemberRecord(name="a", role=MemberRole.LEADER, generation=lease.generation), 5)
        await a.set_paused(True)
        before = len(reads(b))
        view = await b.view()
        assert len(reads(b)) - before == 1, reads(b)[before:]
        assert view.leader is not None and (view.leader.member, view.generation) == ("a", lease.generation)
        assert [(m.name, m.role) for m in view.members] == [("a", MemberRole.LEADER), ("b", MemberRole.STANDBY)]
        assert view.paused and view.member("b") is not None and view.member("c") is None
        timed = await b.view(with_ttl=True)
        assert timed.leader is not None and timed.leader.ttl_left is not None and 0 < timed.leader.ttl_left <= 5
        await a.release(lease)
        await a.set_paused(False)
        after = await b.view()
        assert (after.leader, after.paused, len(after.members)) == (None, False, 2)
    finally:
        await a.close()
        await b.close()


async def a_restarted_holder_resumes_its_lease(open_store: OpenStore) -> None:
    """A restarted agent (another store object) takes up the lease its node holds: same member,
    same generation, renewed; the old handle and the new one are one lease. Once released, none."""
    first, restarted = open_store(), open_store()
    try:
        held = await first.acquire_leader("a", 5)
        assert held is not None
        info = await restarted.leader()
        assert info is not None
        resumed = await restarted.resume(info)
        assert resumed is not None and (resumed.member, resumed.generation) == ("a", held.generation)
        assert resumed.remaining() > 4 and await restarted.renew(resumed)
        await restarted.release(resumed)
        assert await first.leader() is None and not await first.renew(held)
        assert await restarted.resume(info) is None
    finally:
        await first.close()
        await restarted.close()
async def handed_over_lease_goes_to_its_target_only(open_store: OpenStore, ttl: float) -> None:
    """hand_over(): in one transaction the holder's key is gone and the lease reserved for one
    member: a third member cannot take it in between, the target can at once, and a reservation
    its target never takes ends with the handed lease's ttl (the lease is then anyone's)."""
    a, b, c = open_store(), open_store(), open_store()
    try:
        held = await a.acquire_leader("a", ttl)
        assert held is not None
        assert await a.hand_over(held, "b")
        view = await c.view()
        assert view.leader is None and view.handover is not None
        assert (view.handover.to, view.handover.source, view.handover.generation) == ("b", "a", held.generation)
        assert await c.acquire_leader("c", ttl) is None, "a third member took a lease handed over to another"
        assert await a.acquire_leader("a", ttl) is None, "the source took back the lease it handed over"
        assert not await a.renew(held), "a handed-over lease must not renew"
        assert not await a.hand_over(held, "c"), "a lease no longer held cannot be handed over again"
        taken = await b.acquire_leader("b", ttl)
        assert taken is not None and taken.generation > held.generation
        after = await c.view()
        assert after.handover is None and after.leader is not None and after.leader.member == "b"
        # The target never comes: the reservation ends with the ttl, then anyone may take the lease.
        assert await b.hand_over(taken, "gone")
        assert await c.acquire_leader("c", ttl) is None
        late = await poll_until(lambda: c.acquire_leader("c", ttl), timeout=ttl + 10)
        assert isinstance(late, LeaderLease), f"the reservation did not end within {ttl + 10}s"
        assert late.generation > taken.generation and (await a.view()).handover is None
        await c.release(late)
    finally:
        for s in (a, b, c):
            await s.close()
