"""Fuzzing the agent API's request bodies: a real Agent (its loop not running, a real sqlite lease
store and journal) behind the real app, called over ASGI with the token. Whatever the body (bytes,
JSON of any shape, huge), the answer is a JSON error or success the API means, never a 500, within
the time and memory bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from near_failover.api.app import create_app
from near_failover.ha.agent import Agent
from near_failover.ha.stores import open_lease_store
from near_failover.limits import API_BODY_BYTES
from near_failover.procedures.journal import Journal
from tests.fuzz.bounds import FUZZ, dumps, json_values, within_memory
from tests.unit.test_sqlite_lease import inventory

TOKEN = "fuzz-token-0123456789abcdef"
ROUTES = ["/switchover", "/failsafe", "/pause", "/resume"]
# 400: not JSON at all; 409: the agent refused (not the leader, unknown node); 413: too large; 422: invalid.
MEANT = {200, 400, 409, 413, 422}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp_path = tmp_path_factory.mktemp("api-fuzz")
    inv = inventory(tmp_path, lease='[lease]\nstore = "sqlite"\n')
    store = open_lease_store(inv)
    with Journal(tmp_path / "journal.sqlite") as journal:
        agent = Agent(inv, "a", store, journal, state_dir=tmp_path / "state")
        yield create_app(agent, TOKEN)
    asyncio.run(store.close())


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return dumps(draw(json_values)).encode()
    if kind == 2:
        fields = {"to": json_values | st.sampled_from(["a", "b", "", "nobody"]), "mode": json_values | st.sampled_from(["rpc", "hot-swap"]),
                  "leader": json_values | st.sampled_from(["a", "b"]), "generation": json_values | st.integers(-5, 2**70)}
        return dumps(draw(st.fixed_dictionaries({}, optional=fields))).encode()
    if kind == 3:
        return b'{"to": "' + b"b" * draw(st.integers(API_BODY_BYTES - 20, API_BODY_BYTES + 20)) + b'"}'
    return b"[" * draw(st.integers(1, 5000)) + b"]" * draw(st.integers(0, 5000))  # nesting


@given(route=st.sampled_from(ROUTES), body=bodies(), content_type=st.sampled_from(["application/json", "text/plain", ""]))
@FUZZ
def test_any_request_body_gets_an_answer_the_api_means(app: Any, route: str, body: bytes, content_type: str) -> None:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            headers = {"Authorization": f"Bearer {TOKEN}", **({"Content-Type": content_type} if content_type else {})}
            return await client.post(route, content=body, headers=headers)

    answer = within_memory(lambda: asyncio.run(post()))
    assert answer.status_code in MEANT, answer.text
    data = answer.json()
    assert isinstance(data, dict)
    if answer.status_code != 200:
        assert set(data) >= {"error", "message"}, data
    if len(body) > API_BODY_BYTES:
        assert answer.status_code == 413
    if route == "/pause" and answer.status_code == 200:
        asyncio.run(_resume(app))


async def _resume(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as client:
        await client.post("/resume", headers={"Authorization": f"Bearer {TOKEN}"})


def test_the_fuzzed_agent_is_not_the_leader(app: Any) -> None:
    """The switchover examples are refused (409) by a real agent that holds no lease, not run."""
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as client:
            return await client.post("/switchover", json={"to": "b"}, headers={"Authorization": f"Bearer {TOKEN}"})

    answer = asyncio.run(post())
    assert answer.status_code == 409 and "not the leader" in json.loads(answer.text)["message"]
