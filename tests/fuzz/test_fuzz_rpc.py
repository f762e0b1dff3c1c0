"""Fuzzing every RPC answer neard's client parses, through the real client and a real HTTP server on
loopback: each call returns its model or raises an RpcError naming the node; never another
exception, within the time and memory bound. Answers are nearcore's fixtures mutated (fields
dropped, retyped), random JSON, JSON-RPC errors and raw bytes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from near_failover.neard.rpc import NeardRpc, RpcError
from tests.conftest import FIXTURES
from tests.fuzz.bounds import (
    FUZZ,
    AnswerServer,
    LoopRunner,
    dumps,
    json_values,
    mutated_json,
    mutated_text,
    within_memory,
)

NODE = "val-fuzz"


def _result(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text())
    return data.get("result", data)


SEEDS = {
    "status": _result("rpc-status-response.validator-node.current-shape.reconstructed.json"),
    "validators": _result("rpc-validators-response.testnet-2.4.0.near-docs.json"),
    "network_info": _result("rpc-network-info-response.near-docs.json"),
    "block": _result("rpc-block-response.testnet-protocol-73.near-docs.json"),
    "client_config": {"chain_id": "testnet", "archive": False, "tracked_shards_config": "AllShards"},
    "maintenance_windows": [{"start": 10, "end": 20}, {"start": 30, "end": 31}],
    "health": None,
}
METRICS_SEED = (FIXTURES / "metrics.validator-node.reconstructed.prom").read_text()
ERROR_SEEDS = [json.loads((FIXTURES / n).read_text()) for n in (
    "rpc-health-error.node-is-syncing.reconstructed.json", "rpc-error.method-not-found.reconstructed.json",
    "rpc-health-error.no-new-blocks.reconstructed.json", "rpc-error.status-internal-error.reconstructed.json",
)]


@pytest.fixture(scope="module")
def neard() -> Iterator[tuple[AnswerServer, LoopRunner, NeardRpc]]:
    runner = LoopRunner()
    with AnswerServer() as server:
        rpc = NeardRpc(server.url, NODE, timeout=10)
        yield server, runner, rpc
        runner.run(rpc.aclose())
    runner.close()


CALLS: dict[str, Callable[[NeardRpc], Awaitable[Any]]] = {
    "status": lambda rpc: rpc.status(),
    "validators": lambda rpc: rpc.validators(),
    "network_info": lambda rpc: rpc.network_info(),
    "block": lambda rpc: rpc.block(),
    "client_config": lambda rpc: rpc.client_config(),
    "maintenance_windows": lambda rpc: rpc.maintenance_windows("pool.poolv1.near"),
    "health": lambda rpc: rpc.health(),
    "status_http": lambda rpc: rpc.status_http(),
    "network_info_http": lambda rpc: rpc.network_info_http(),
    "metrics": lambda rpc: rpc.metrics(),
}


def _use(model: Any) -> None:
    """What callers read from a model: derived values must not raise on what validation let in."""
    for name in ("latest_block_time_ns", "timestamp_ns", "raw"):
        for obj in (model, getattr(model, "sync_info", None), getattr(model, "header", None)):
            if obj is not None and hasattr(type(obj), name):
                getattr(obj, name)
    for validator in getattr(model, "current_validators", []) + getattr(model, "next_validators", []):
        validator.stake_yocto
    for kickout in getattr(model, "prev_epoch_kickout", []):
        kickout.reason_name, kickout.reason_info


@st.composite
def answer(draw: st.DrawFn) -> tuple[str, int, bytes]:
    call = draw(st.sampled_from(sorted(CALLS)))
    method = call.removesuffix("_http")
    kind = draw(st.integers(0, 5))
    status = draw(st.sampled_from([200, 200, 200, 400, 408, 500, 503]))
    if call == "metrics":
        text = draw(mutated_text(METRICS_SEED)) if kind < 4 else draw(st.text(max_size=200))
        return call, status, text.encode("utf-8", "surrogatepass")
    seed = SEEDS[method]
    if kind <= 2:
        result: Any = draw(mutated_json(seed))
    elif kind == 3:
        result = draw(json_values)
    elif kind == 4:
        return call, status, dumps(draw(mutated_json(draw(st.sampled_from(ERROR_SEEDS))))).encode()
    else:
        return call, status, draw(st.binary(max_size=120))
    body = result if call.endswith("_http") else {"jsonrpc": "2.0", "id": "x", "result": result}
    return call, status, dumps(body).encode()


@given(answer())
@FUZZ
def test_every_rpc_answer_is_a_model_or_an_rpc_error(neard: tuple[AnswerServer, LoopRunner, NeardRpc], example: tuple[str, int, bytes]) -> None:
    server, runner, rpc = neard
    call, status, body = example
    server.set([(status, body)])

    async def ask() -> None:
        try:
            model = await CALLS[call](rpc)
        except RpcError as exc:
            assert NODE in str(exc)
            return
        _use(model)

    within_memory(lambda: runner.run(ask()))
