"""The etcd lease store against a real etcd server (Debian's etcd-server) on loopback."""

from __future__ import annotations

import base64
import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.lease import LeaseStoreUnavailable, MemberRecord
from tests.integration.etcd_server import EtcdServer, free_port, running_etcd
from tests.unit import lease_contract as contract

pytestmark = pytest.mark.integration

_accounts = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def account() -> str:
    """A pool of its own per test, so tests sharing the server never see each other's keys."""
    return f"pool{next(_accounts)}.poolv1.near"


def opener(etcd: EtcdServer, account: str) -> contract.OpenStore:
    return lambda: EtcdLeaseStore([etcd.url], account, operation_timeout=2.0)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def raw(etcd: EtcdServer, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(etcd.url + path, json=body, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


class CountingStore(EtcdLeaseStore):
    """Notes each request to etcd: view() must be one."""

    def __init__(self, endpoints: list[str], account_id: str) -> None:
        super().__init__(endpoints, account_id, operation_timeout=2.0)
        self.round_trips: list[str] = []

    async def _request(self, path: str, body: dict) -> dict:  # type: ignore[type-arg]
        self.round_trips.append(path)
        return await super()._request(path, body)


async def test_one_view_is_one_range(etcd: EtcdServer, account: str) -> None:
    await contract.one_view_shows_leader_members_and_pause(lambda: CountingStore([etcd.url], account), lambda s: s.round_trips)  # type: ignore[attr-defined]


async def test_only_one_of_concurrent_acquirers_wins(etcd: EtcdServer, account: str) -> None:
    await contract.only_one_of_concurrent_acquirers_wins(opener(etcd, account))


async def test_generation_grows_across_leaders(etcd: EtcdServer, account: str) -> None:
    await contract.generation_grows_across_leaders(opener(etcd, account))


async def test_unrenewed_lease_expires_then_another_acquires(etcd: EtcdServer, account: str) -> None:
    await contract.unrenewed_lease_expires_then_another_acquires(opener(etcd, account), ttl=2)


async def test_handed_over_lease_goes_to_its_target_only(etcd: EtcdServer, account: str) -> None:
    await contract.handed_over_lease_goes_to_its_target_only(opener(etcd, account), ttl=2)


async def test_renew_checks_the_key_not_only_the_lease(etcd: EtcdServer, account: str) -> None:
    async def delete_leader() -> None:
        await raw(etcd, "/v3/kv/deleterange", {"key": b64(f"/near-failover/{account}/leader")})

    await contract.renew_checks_the_key_not_only_the_lease(opener(etcd, account), delete_leader)


async def test_member_records_expire_with_their_lease(etcd: EtcdServer, account: str) -> None:
    await contract.member_records_expire_with_their_lease(opener(etcd, account), ttl=2)


async def test_a_restarted_holder_resumes_its_lease(etcd: EtcdServer, account: str) -> None:
    await contract.a_restarted_holder_resumes_its_lease(opener(etcd, account))


async def test_pause_flag(etcd: EtcdServer, account: str) -> None:
    await contract.pause_flag(opener(etcd, account))


async def test_keys_and_fencing_generation_as_stored_in_etcd(etcd: EtcdServer, account: str) -> None:
    """What another tool (etcdctl, an operator) sees: the layout documented in ha/etcd.py."""
    async with EtcdLeaseStore([etcd.url], account) as store:
        lease = await store.acquire_leader("node-a", 3)
        assert lease is not None
        await store.put_member(MemberRecord(name="node-a", healthy=True), 3)
        await store.set_paused(True)
        answer = await raw(etcd, "/v3/kv/range", {
            "key": b64(f"/near-failover/{account}/"), "range_end": b64(f"/near-failover/{account}0"),
        })
        kvs = {base64.b64decode(kv["key"]).decode(): kv for kv in answer["kvs"]}
        prefix = f"/near-failover/{account}/"
        assert set(kvs) == {prefix + "leader", prefix + "members/node-a", prefix + "pause"}
        leader = kvs[prefix + "leader"]
        assert int(leader["create_revision"]) == lease.generation
        assert leader["lease"] == lease.token
        assert json.loads(base64.b64decode(leader["value"]))["member"] == "node-a"
        member = kvs[prefix + "members/node-a"]
        assert member["lease"] not in (None, lease.token), "a member record needs a lease of its own"
        assert "lease" not in kvs[prefix + "pause"], "the pause flag must not expire"
        # Renewing rewrites nothing: the generation is the key's create revision, fixed for life.
        assert await store.renew(lease)
        info = await store.leader()
        assert info is not None and info.generation == lease.generation and info.member == "node-a"
        assert info.ttl_left is not None and 0 < info.ttl_left <= 3
        await store.release(lease)
        await store.set_paused(False)


async def test_fractional_ttl_is_rounded_up_never_down(etcd: EtcdServer, account: str) -> None:
    async with EtcdLeaseStore([etcd.url], account) as store:
        lease = await store.acquire_leader("a", 2.2)
        assert lease is not None and lease.ttl == 3
        await store.release(lease)


async def test_endpoints_are_tried_in_order(etcd: EtcdServer, account: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hanging = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with EtcdLeaseStore([dead, hanging, etcd.url], account, operation_timeout=2.0) as store:
            lease = await store.acquire_leader("a", 3)
            assert lease is not None
            assert await store.renew(lease)
            await store.release(lease)
        async with EtcdLeaseStore([hanging], account, operation_timeout=0.5) as store:
            with pytest.raises(LeaseStoreUnavailable) as caught:
                await store.leader()
        assert hanging in str(caught.value) and "no answer within" in str(caught.value)


async def test_etcd_down_is_unavailable_not_lost(tmp_path: Path) -> None:
    with running_etcd(tmp_path / "etcd") as server:
        store = EtcdLeaseStore([server.url], "down.poolv1.near", operation_timeout=1.0)
        lease = await store.acquire_leader("a", 5)
        assert lease is not None
        await store.put_member(MemberRecord(name="a"), 5)
        server.stop()
        calls = {
            "renew": lambda: store.renew(lease),
            "acquire": lambda: store.acquire_leader("b", 5),
            "leader": store.leader,
            "members": store.members,
            "put_member": lambda: store.put_member(MemberRecord(name="a"), 5),
            "paused": store.paused,
            "release": lambda: store.release(lease),
        }
        for name, call in calls.items():
            with pytest.raises(LeaseStoreUnavailable) as caught:
                await call()
            assert caught.value.endpoints == (server.url,), name
            assert server.url in str(caught.value) and "refused" in str(caught.value).lower(), name
        await store.close()
