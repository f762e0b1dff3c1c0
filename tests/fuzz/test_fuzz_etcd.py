"""Fuzzing the etcd gateway's answers: the real EtcdLeaseStore against a real HTTP server on
loopback that answers each request with mutated etcd answers (ranges, grants, keepalives, txns,
errors), random JSON or raw bytes. Every operation returns its value or raises LeaseStoreError,
never another exception, within the time and memory bound."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from near_failover.ha.etcd import EtcdLeaseStore
from near_failover.ha.lease import LeaderLease, LeaseStoreError, MemberRecord
from tests.fuzz.bounds import FUZZ, AnswerServer, LoopRunner, dumps, json_values, mutated_json, within_memory

POOL = "pool.poolv1.near"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


LEADER_KV = {
    "key": _b64(f"/near-failover/{POOL}/leader"), "create_revision": "7", "mod_revision": "7", "version": "1",
    "value": _b64(json.dumps({"member": "a", "ttl": 5, "acquired_at": 1.0})), "lease": "694d77aa9e38260f",
}
MEMBER_KV = {
    "key": _b64(f"/near-failover/{POOL}/members/a"), "create_revision": "9", "mod_revision": "9", "version": "1",
    "value": _b64(json.dumps({"name": "a", "role": "leader", "generation": 7, "healthy": True})),
}
HEADER = {"cluster_id": "14841639068965178418", "member_id": "10276657743932975437", "revision": "9", "raft_term": "2"}
SEEDS: list[Any] = [
    {"header": HEADER, "kvs": [LEADER_KV], "count": "1"},
    {"header": HEADER, "kvs": [MEMBER_KV, MEMBER_KV], "count": "2"},
    {"header": HEADER, "ID": "694d77aa9e38260f", "TTL": "5"},
    {"result": {"header": HEADER, "ID": "694d77aa9e38260f", "TTL": "5"}},
    {"header": HEADER, "succeeded": True, "responses": [{"response_put": {"header": HEADER}}, {"response_range": {"header": HEADER, "kvs": [LEADER_KV], "count": "1"}}]},
    {"header": HEADER, "succeeded": False, "responses": [{"response_range": {"header": HEADER, "kvs": [LEADER_KV], "count": "1"}}]},
    {"error": "etcdserver: requested lease not found", "code": 5, "message": "etcdserver: requested lease not found"},
    {"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: leader changed", "http_status": "Service Unavailable"}},
]

OPERATIONS: dict[str, Callable[[EtcdLeaseStore], Awaitable[Any]]] = {
    "leader": lambda s: s.leader(),
    "members": lambda s: s.members(),
    "paused": lambda s: s.paused(),
    "view": lambda s: s.view(with_ttl=True),
    "acquire_leader": lambda s: s.acquire_leader("a", 5),
    "renew": lambda s: s.renew(LeaderLease("a", 7, 5.0, 0.0, "694d77aa9e38260f")),
    "release": lambda s: s.release(LeaderLease("a", 7, 5.0, 0.0, "694d77aa9e38260f")),
    "put_member": lambda s: s.put_member(MemberRecord(name="a", role="leader"), 5),
    "delete_member": lambda s: s.delete_member("a"),
    "set_paused": lambda s: s.set_paused(True),
}


@st.composite
def etcd_answer(draw: st.DrawFn) -> tuple[int, bytes]:
    kind = draw(st.integers(0, 5))
    status = draw(st.sampled_from([200, 200, 200, 400, 401, 404, 500, 503]))
    if kind <= 2:
        return status, dumps(draw(mutated_json(draw(st.sampled_from(SEEDS))))).encode()
    if kind == 3:
        return status, dumps(draw(json_values)).encode()
    if kind == 4:
        return status, draw(st.binary(max_size=80))
    return status, (dumps(draw(st.sampled_from(SEEDS))) + "\n" + dumps(draw(json_values))).encode()


@pytest.fixture(scope="module")
def etcd() -> Iterator[tuple[AnswerServer, LoopRunner, EtcdLeaseStore]]:
    runner = LoopRunner()
    with AnswerServer() as server:
        store = EtcdLeaseStore([server.url], POOL, operation_timeout=5)
        yield server, runner, store
        runner.run(store.close())
    runner.close()


@given(operation=st.sampled_from(sorted(OPERATIONS)), answers=st.lists(etcd_answer(), min_size=1, max_size=5))
@FUZZ
def test_every_etcd_answer_is_a_value_or_a_lease_store_error(etcd: tuple[AnswerServer, LoopRunner, EtcdLeaseStore], operation: str, answers: list[tuple[int, bytes]]) -> None:
    server, runner, store = etcd
    server.set(answers)

    async def run() -> None:
        try:
            await OPERATIONS[operation](store)
        except LeaseStoreError:
            pass

    within_memory(lambda: runner.run(run()))
