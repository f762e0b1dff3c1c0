"""NeardRpc against real sockets on 127.0.0.1.

A threaded http.server answers like neard (neard-behaviour §4.1: JSON-RPC on POST / with 200
for results and handler errors, 400 request-validation errors, 408 timeouts, 500 internal
errors; GET /status, /health (503 when unhealthy), /network_info, /metrics) from the nearcore
fixtures. Raw socket servers play the broken nodes: silent, trickling, hanging up, not HTTP.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator

from near_failover.neard.metrics import AmbiguousMetric
from near_failover.neard.rpc import (
    CallTarget,
    ClientConfig,
    MalformedResponse,
    MethodNotFound,
    NeardRpc,
    NodeSyncing,
    NodeUnreachable,
    NoNewBlocks,
    RpcError,
    RpcHandlerError,
    RpcHttpError,
    RpcTimeout,
    interpret_rpc_body,
    parse_rfc3339_ns,
)

STATUS_FIXTURES = [
    "rpc-status-response.testnet-2.4.0-rc.1.near-docs.json",
    "rpc-status-response.validator-node.current-shape.reconstructed.json",
    "rpc-status-response.standby-no-key.current-shape.reconstructed.json",
]
SHORT_TIMEOUT = 0.3
NODE = "val-a"

# --------------------------------------------------------------------------------------------
# A neard-like HTTP server
# --------------------------------------------------------------------------------------------

Answer = tuple[int, bytes]
RpcRoute = Answer | Callable[[Any], Answer]


class FakeNeardHttp:
    """Real HTTP on a free loopback port; routes are set per test."""

    def __init__(self, method_not_found_body: bytes) -> None:
        self.rpc_routes: dict[str, RpcRoute] = {}
        self.get_routes: dict[str, tuple[int, bytes, str]] = {}
        self.rpc_requests: list[dict[str, Any]] = []
        self._method_not_found = json.loads(method_not_found_body)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between header and body

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length))
                owner.rpc_requests.append(request)
                route = owner.rpc_routes.get(request["method"])
                if route is None:
                    self._send(400, owner.method_not_found(request["method"]))
                    return
                status, body = route(request["params"]) if callable(route) else route
                self._send(status, body)

            def do_GET(self) -> None:
                status, body, ctype = owner.get_routes.get(self.path, (404, b"", "text/plain"))
                self._send(status, body, ctype)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def method_not_found(self, method: str) -> bytes:
        """neard's METHOD_NOT_FOUND answer (fixture) naming the method actually asked for."""
        body = json.loads(json.dumps(self._method_not_found))
        body["error"]["cause"]["info"]["method_name"] = method
        body["error"]["data"] = method
        return json.dumps(body).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fixture_bytes(fixtures_dir: Path) -> Callable[[str], bytes]:
    return lambda name: (fixtures_dir / name).read_bytes()


@pytest.fixture
def neard(fixture_bytes: Callable[[str], bytes]) -> Iterator[FakeNeardHttp]:
    server = FakeNeardHttp(fixture_bytes("rpc-error.method-not-found.reconstructed.json"))
    yield server
    server.close()


@pytest.fixture
def openapi(fixtures_dir: Path) -> Callable[[str, Any], None]:
    """Validate a body we made up against nearcore's own OpenAPI schema of that answer."""
    spec = json.loads((fixtures_dir / "jsonrpc-openapi.json").read_text())

    def validate(schema_name: str, instance: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
        OAS30Validator(schema).validate(instance)

    return validate


def result_of(raw: bytes) -> Any:
    return json.loads(raw)["result"]


def assert_names_node(exc: RpcError, url: str) -> None:
    text = str(exc)
    assert exc.node == NODE and NODE in text and url in text, text
    assert "Hint:" in text, text


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", STATUS_FIXTURES)
async def test_status_parses_every_status_fixture(neard, fixture_bytes, fixture):
    raw = fixture_bytes(fixture)
    expected = result_of(raw)
    neard.rpc_routes["status"] = (200, raw)
    neard.get_routes["/status"] = (200, json.dumps(expected).encode(), "application/json")

    async with NeardRpc(neard.url, NODE, timeout=2) as rpc:
        for status in (await rpc.status(), await rpc.status_http()):
            assert status.chain_id == expected["chain_id"]
            assert status.genesis_hash == expected["genesis_hash"]
            sync = expected["sync_info"]
            assert status.sync_info.latest_block_height == sync["latest_block_height"]
            assert status.sync_info.syncing is sync["syncing"] is False
            assert status.sync_info.epoch_id == sync["epoch_id"]
            assert status.sync_info.epoch_start_height == sync["epoch_start_height"]
            assert status.validator_account_id == expected["validator_account_id"]
            assert status.validator_public_key == expected["validator_public_key"]
            assert status.node_public_key == expected["node_public_key"]
            assert status.uptime_sec == expected["uptime_sec"]
            assert [v.account_id for v in status.validators] == [
                v["account_id"] for v in expected["validators"]
            ]
            assert status.version.version == expected["version"]["version"]
            # version-dependent fields: old nodes have is_slashed and no commit (§4.2)
            assert status.version.commit == expected["version"].get("commit")
            assert [v.is_slashed for v in status.validators] == [
                v.get("is_slashed") for v in expected["validators"]
            ]
            # the nanoseconds of "…10.530341781Z" survive
            assert status.sync_info.latest_block_time_ns % 1_000_000_000 == 530_341_781
    assert neard.rpc_requests[0]["method"] == "status"
    assert neard.rpc_requests[0]["jsonrpc"] == "2.0"


async def test_status_old_and_new_shapes_differ_where_neard_changed(neard, fixture_bytes):
    old = fixture_bytes(STATUS_FIXTURES[0])
    new = fixture_bytes(STATUS_FIXTURES[1])
    async with NeardRpc(neard.url, NODE) as rpc:
        neard.rpc_routes["status"] = (200, old)
        old_status = await rpc.status()
        neard.rpc_routes["status"] = (200, new)
        new_status = await rpc.status()
    assert old_status.version.commit is None and new_status.version.commit is not None
    assert all(v.is_slashed is False for v in old_status.validators)
    assert all(v.is_slashed is None for v in new_status.validators)
    assert old_status.validator_account_id is None
    assert new_status.validator_account_id == "example"


# --------------------------------------------------------------------------------------------
# validators
# --------------------------------------------------------------------------------------------


async def test_validators_fixture_parses_with_version_defaults(neard, fixture_bytes):
    raw = fixture_bytes("rpc-validators-response.testnet-2.4.0.near-docs.json")
    expected = result_of(raw)
    neard.rpc_routes["validators"] = (200, raw)
    async with NeardRpc(neard.url, NODE) as rpc:
        vals = await rpc.validators()

    assert neard.rpc_requests[-1]["params"] == [None]
    assert vals.epoch_height == expected["epoch_height"]
    assert vals.epoch_start_height == expected["epoch_start_height"]
    assert len(vals.current_validators) == len(expected["current_validators"])
    assert len(vals.next_validators) == len(expected["next_validators"])
    assert len(vals.current_proposals) == len(expected["current_proposals"])
    for model, src in zip(vals.current_validators, expected["current_validators"], strict=True):
        assert model.account_id == src["account_id"]
        assert model.stake_yocto == int(src["stake"])
        for field in ("num_produced_blocks", "num_expected_blocks", "num_produced_chunks",
                      "num_expected_chunks", "num_produced_endorsements",
                      "num_expected_endorsements"):
            assert getattr(model, field) == src.get(field, 0), field
        for field in ("num_produced_endorsements_per_shard", "num_expected_endorsements_per_shard"):
            assert getattr(model, field) == src.get(field, []), field
        assert model.shards_endorsed == []  # added in 2026, absent from this 2.4 answer
    missing = [v for v in expected["current_validators"]
               if "num_expected_endorsements_per_shard" not in v]
    assert missing, "fixture should contain entries without per-shard endorsement lists"
    assert vals.validator_reward_paid_prev_epoch == {}  # #15617, absent here

    kicked = vals.find_kickout("smcvalidator.pool.f863973.m0")
    assert kicked is not None
    assert kicked.reason_name == "NotEnoughChunkEndorsements"
    assert kicked.reason_info == {"expected": 43196, "produced": 0}
    first = expected["current_validators"][0]
    assert vals.find_current(first["account_id"]).public_key == first["public_key"]
    assert vals.find_current("nobody.near") is None


async def test_validators_params_and_unknown_epoch_error(neard, fixture_bytes):
    ok = fixture_bytes("rpc-validators-response.testnet-2.4.0.near-docs.json")
    unknown_epoch = fixture_bytes("rpc-validators-error.unknown-epoch.reconstructed.json")
    neard.rpc_routes["validators"] = lambda params: (
        (200, unknown_epoch) if isinstance(params, dict) and "epoch_id" in params else (200, ok)
    )
    async with NeardRpc(neard.url, NODE) as rpc:
        await rpc.validators(187443633)
        await rpc.validators("EfL8Rc1EH13UxgbJB4skt8xSF8vojNQPcAX1opf6RFab")
        with pytest.raises(RpcHandlerError) as caught:
            await rpc.validators(epoch_id="94jeudySZcxGBSVgKXn3xPT3P5iFF6YcnxC43F15QtkQ")
        with pytest.raises(ValueError):
            await rpc.validators(1, epoch_id="x")
    assert [r["params"] for r in neard.rpc_requests] == [
        [187443633],
        {"block_id": "EfL8Rc1EH13UxgbJB4skt8xSF8vojNQPcAX1opf6RFab"},
        {"epoch_id": "94jeudySZcxGBSVgKXn3xPT3P5iFF6YcnxC43F15QtkQ"},
    ]
    err = caught.value
    assert err.name == "HANDLER_ERROR" and err.cause_name == "UNKNOWN_EPOCH"
    assert err.data == "Unknown Epoch" and err.http_status == 200
    assert NODE in str(err) and "UNKNOWN_EPOCH" in str(err) and "validators" in str(err)


# --------------------------------------------------------------------------------------------
# network_info, block, client_config, maintenance_windows
# --------------------------------------------------------------------------------------------


async def test_network_info_fixture_over_rpc_and_get(neard, fixture_bytes):
    raw = fixture_bytes("rpc-network-info-response.near-docs.json")
    expected = result_of(raw)
    neard.rpc_routes["network_info"] = (200, raw)
    neard.get_routes["/network_info"] = (200, json.dumps(expected).encode(), "application/json")
    async with NeardRpc(neard.url, NODE) as rpc:
        for info in (await rpc.network_info(), await rpc.network_info_http()):
            assert info.num_active_peers == expected["num_active_peers"] == 34
            assert [p.id for p in info.active_peers] == [p["id"] for p in expected["active_peers"]]
            assert info.active_peers[0].account_id is None
            assert [(k.account_id, k.addr, k.peer_id) for k in info.known_producers] == [
                (k["account_id"], k["addr"], k["peer_id"]) for k in expected["known_producers"]
            ]


@pytest.mark.parametrize("finality", ["final", "optimistic"])
async def test_block_fixture(neard, fixture_bytes, finality):
    raw = fixture_bytes("rpc-block-response.testnet-protocol-73.near-docs.json")
    expected = result_of(raw)
    neard.rpc_routes["block"] = (200, raw)
    async with NeardRpc(neard.url, NODE) as rpc:
        block = await rpc.block(finality)
        with pytest.raises(ValueError):
            await rpc.block("soonish")
    assert neard.rpc_requests[-1]["params"] == {"finality": finality}
    assert block.author == expected["author"]
    assert block.header.height == expected["header"]["height"]
    assert block.header.epoch_id == expected["header"]["epoch_id"]
    assert block.header.timestamp_ns == int(expected["header"]["timestamp_nanosec"])
    assert block.header.chunk_mask == expected["header"]["chunk_mask"]
    assert [c.shard_id for c in block.chunks] == [c["shard_id"] for c in expected["chunks"]]


async def test_client_config_keeps_every_field(neard, fixtures_dir, openapi):
    # No genuine client_config answer exists in the fixtures; this one is built from the
    # Option 2 standby config and checked against nearcore's OpenAPI schema of the answer.
    standby = json.loads(
        (fixtures_dir / "config.failover-option2-standby.reconstructed.json").read_text()
    )
    result = {
        "version": {"version": "2.13.0", "build": "2.13.0", "commit": "0" * 40,
                    "rustc_version": "1.93.0"},
        "chain_id": "mainnet",
        "rpc_addr": standby["rpc"]["addr"],
        "archive": standby.get("archive", False),  # absent from the file: neard's default
        "tracked_shards_config": standby["tracked_shards_config"],
        "min_num_peers": standby["consensus"]["min_num_peers"],
        "epoch_length": 43200,
        "view_client_threads": standby["view_client_threads"],
        "transaction_pool_size_limit": standby["transaction_pool_size_limit"],
    }
    envelope = {"jsonrpc": "2.0", "result": result, "id": "dontcare"}
    openapi("JsonRpcResponse_for_RpcClientConfigResponse_and_RpcClientConfigError", envelope)
    neard.rpc_routes["client_config"] = (200, json.dumps(envelope).encode())

    async with NeardRpc(neard.url, NODE) as rpc:
        cfg = await rpc.client_config()
    assert isinstance(cfg, ClientConfig)
    assert cfg.tracked_shards_config == {"ShadowValidator": "example-pool.poolv1.near"}
    assert cfg.raw == result and cfg.keys() == list(result)
    assert cfg["view_client_threads"] == standby["view_client_threads"]
    assert cfg.get("no_such_field", "dflt") == "dflt" and "epoch_length" in cfg
    assert cfg.chain_id == "mainnet" and cfg.archive is False
    assert neard.rpc_requests[-1]["method"] == "client_config"


async def test_maintenance_windows_and_experimental_fallback(neard, openapi):
    ranges = [{"start": 187443633, "end": 187443640}, {"start": 187443700, "end": 187443710}]
    envelope = {"jsonrpc": "2.0", "result": ranges, "id": "dontcare"}
    openapi("JsonRpcResponse_for_Array_of_Range_of_uint64_and_RpcMaintenanceWindowsError",
            envelope)
    body = json.dumps(envelope).encode()
    expected = [(r["start"], r["end"]) for r in ranges]

    neard.rpc_routes["maintenance_windows"] = (200, body)
    async with NeardRpc(neard.url, NODE) as rpc:
        assert await rpc.maintenance_windows("example-pool.poolv1.near") == expected
        # an older node that only knows the EXPERIMENTAL_ name (400 METHOD_NOT_FOUND first)
        del neard.rpc_routes["maintenance_windows"]
        neard.rpc_routes["EXPERIMENTAL_maintenance_windows"] = (200, body)
        assert await rpc.maintenance_windows("example-pool.poolv1.near") == expected
    assert [(r["method"], r["params"]) for r in neard.rpc_requests] == [
        ("maintenance_windows", {"account_id": "example-pool.poolv1.near"}),
        ("maintenance_windows", {"account_id": "example-pool.poolv1.near"}),
        ("EXPERIMENTAL_maintenance_windows", {"account_id": "example-pool.poolv1.near"}),
    ]


async def test_maintenance_windows_rejects_pairs(neard, openapi):
    pairs = {"jsonrpc": "2.0", "result": [[1, 5]], "id": "x"}
    with pytest.raises(Exception):  # noqa: B017 (the spec itself rejects this shape)
        openapi("JsonRpcResponse_for_Array_of_Range_of_uint64_and_RpcMaintenanceWindowsError",
                pairs)
    neard.rpc_routes["maintenance_windows"] = (200, json.dumps(pairs).encode())
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(MalformedResponse) as caught:
            await rpc.maintenance_windows("a.near")
    assert_names_node(caught.value, neard.url)
    assert "MaintenanceWindows: 0: Input should be" in str(caught.value)


# --------------------------------------------------------------------------------------------
# health and neard's error answers
# --------------------------------------------------------------------------------------------


async def test_health_ok_over_rpc_and_get(neard, fixture_bytes):
    neard.rpc_routes["health"] = (200, fixture_bytes("rpc-health-response.ok.reconstructed.json"))
    neard.get_routes["/health"] = (200, b"null", "application/json")
    async with NeardRpc(neard.url, NODE) as rpc:
        assert await rpc.health() is None
        assert await rpc.health_http() is None


async def test_syncing_node(neard, fixture_bytes):
    syncing = fixture_bytes("rpc-health-error.node-is-syncing.reconstructed.json")
    neard.rpc_routes["health"] = (200, syncing)  # handler errors come with HTTP 200 (§4.1)
    neard.rpc_routes["status"] = (200, syncing)
    neard.get_routes["/health"] = (503, b"", "text/plain")
    async with NeardRpc(neard.url, NODE) as rpc:
        for call in (rpc.health, rpc.status):
            with pytest.raises(NodeSyncing) as caught:
                await call()
            err = caught.value
            assert err.cause_name == "NODE_IS_SYNCING" and err.name == "HANDLER_ERROR"
            assert err.http_status == 200
            assert_names_node(err, neard.url)
            assert "syncing" in str(err)
        with pytest.raises(RpcHttpError) as http_caught:
            await rpc.health_http()
    assert http_caught.value.status == 503
    assert_names_node(http_caught.value, neard.url)
    assert "GET /health" in str(http_caught.value) and "syncing" in str(http_caught.value)


async def test_no_new_blocks_reports_elapsed_seconds(neard, fixture_bytes):
    neard.rpc_routes["health"] = (
        200, fixture_bytes("rpc-health-error.no-new-blocks.reconstructed.json")
    )
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(NoNewBlocks) as caught:
            await rpc.health()
    err = caught.value
    assert err.elapsed_seconds == pytest.approx(25.713)
    assert err.info == {"elapsed": [25, 713000000]}
    assert "25.7 s" in str(err)
    assert_names_node(err, neard.url)


async def test_method_not_found_is_http_400(neard):
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(MethodNotFound) as caught:
            await rpc.call("no_such_method", [])
    err = caught.value
    assert err.http_status == 400 and err.code == -32601
    assert err.name == "REQUEST_VALIDATION_ERROR" and err.cause_name == "METHOD_NOT_FOUND"
    assert "no_such_method" in str(err)
    assert_names_node(err, neard.url)


async def test_internal_error_is_http_500(neard, fixture_bytes):
    neard.rpc_routes["status"] = (
        500, fixture_bytes("rpc-error.status-internal-error.reconstructed.json")
    )
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(RpcHandlerError) as caught:
            await rpc.status()
    err = caught.value
    assert type(err) is RpcHandlerError
    assert err.http_status == 500 and err.name == "INTERNAL_ERROR"
    assert err.info == {"error_message": "Timeout"}
    assert "INTERNAL_ERROR" in str(err) and "Timeout" in str(err)
    assert_names_node(err, neard.url)


async def test_neard_timeout_error_is_http_408(neard, openapi):
    # neard maps a TIMEOUT_ERROR handler error to HTTP 408 (§4.1); built by hand, no fixture.
    body = {"jsonrpc": "2.0", "id": "dontcare", "error": {
        "name": "HANDLER_ERROR", "cause": {"name": "TIMEOUT_ERROR"},
        "code": -32000, "message": "Server error", "data": "Timeout"}}
    neard.rpc_routes["status"] = (408, json.dumps(body).encode())
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(RpcTimeout) as caught:
            await rpc.status()
    assert "408" in str(caught.value) and "TIMEOUT_ERROR" in str(caught.value)
    assert_names_node(caught.value, neard.url)


# --------------------------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------------------------


async def test_metrics_fixture(neard, fixture_bytes):
    prom = fixture_bytes("metrics.validator-node.reconstructed.prom")
    neard.get_routes["/metrics"] = (200, prom, "text/plain; version=0.0.4")
    async with NeardRpc(neard.url, NODE) as rpc:
        metrics = await rpc.metrics()

    # every sample line of the file is reachable with its own name and labels
    lines = [ln for ln in prom.decode().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == sum(len(metrics.samples(n)) for n in metrics.names())
    for line in lines:
        head, value = line.rsplit(" ", 1)
        name, _, label_text = head.partition("{")
        labels = dict(
            (k, v.strip('"')) for k, v in
            (pair.split("=", 1) for pair in label_text.rstrip("}").split(",") if pair)
        )
        assert metrics.value(name, **labels) == float(value), line

    assert metrics.value("near_block_produced_total") == metrics.value("near_block_produced")
    assert metrics.value("near_build_info", release="2.13.0") == 1.0  # parser adds _total
    assert metrics.value("near_is_chunk_producer_for_shard", shard_id=0) == 1.0
    assert metrics.value("near_validators_blocks_produced", account_id="nobody") is None
    assert metrics.value("near_no_such_metric") is None
    assert len(metrics.samples("near_client_tracked_shards")) == 2
    with pytest.raises(AmbiguousMetric):
        metrics.value("near_client_tracked_shards")
    assert metrics.types["near_block_produced"] == "counter"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b"<html><body>Welcome to nginx!</body></html>", MalformedResponse),
        (200, b"near_sync_status{shard=\"0\" 1\n", MalformedResponse),
        (200, b"\xff\xfe\x00garbage", MalformedResponse),
        (404, b"Not Found", RpcHttpError),
        (503, b"", RpcHttpError),
    ],
)
async def test_metrics_bad_answers(neard, status, body, error):
    neard.get_routes["/metrics"] = (status, body, "text/plain")
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(error) as caught:
            await rpc.metrics()
    assert_names_node(caught.value, neard.url)
    assert "GET /metrics" in str(caught.value)
    if error is RpcHttpError:
        assert caught.value.status == status


# --------------------------------------------------------------------------------------------
# Garbage from something that speaks HTTP
# --------------------------------------------------------------------------------------------

_BAD_STATUS_RESULT = {"chain_id": "testnet", "version": {"version": "2.13.0"}}  # no sync_info


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>502 Bad Gateway</html>", "not valid JSON"),
        (b'{"jsonrpc": "2.0", "result": {"chain_id": ', "not valid JSON"),
        (b"\xff\xfe\xfd", "not UTF-8"),
        (b"[1, 2, 3]", "not a JSON-RPC object"),
        (b'{"jsonrpc": "2.0", "id": "x"}', "neither `result` nor `error`"),
        (json.dumps({"jsonrpc": "2.0", "result": _BAD_STATUS_RESULT}).encode(), "sync_info"),
        (b'{"jsonrpc": "2.0", "result": "ok"}', "StatusResponse"),
        (b"", "not valid JSON"),
    ],
)
async def test_status_garbage_is_malformed_response(neard, body, words):
    neard.rpc_routes["status"] = (200, body)
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(MalformedResponse) as caught:
            await rpc.status()
    assert words in str(caught.value)
    assert "pydantic" not in str(caught.value).lower()
    assert caught.value.__cause__ is None  # no json/pydantic traceback attached
    assert_names_node(caught.value, neard.url)


async def test_bad_field_values_are_malformed(neard, fixture_bytes):
    status = result_of(fixture_bytes(STATUS_FIXTURES[1]))
    status["sync_info"]["latest_block_time"] = "yesterday"
    vals = result_of(fixture_bytes("rpc-validators-response.testnet-2.4.0.near-docs.json"))
    vals["current_validators"][3]["stake"] = "12 NEAR"
    neard.rpc_routes["status"] = (200, json.dumps({"result": status}).encode())
    neard.rpc_routes["validators"] = (200, json.dumps({"result": vals}).encode())
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(MalformedResponse, match="latest_block_time"):
            await rpc.status()
        with pytest.raises(MalformedResponse, match=r"current_validators\.3\.stake"):
            await rpc.validators()


@pytest.mark.parametrize(
    ("route", "status", "body", "error"),
    [
        ("/status", 503, b"", RpcHttpError),
        ("/status", 200, b"null", MalformedResponse),
        ("/status", 200, b"<html></html>", MalformedResponse),
        ("/health", 500, b"oops", RpcHttpError),
    ],
)
async def test_get_routes_bad_answers(neard, route, status, body, error):
    neard.get_routes[route] = (status, body, "text/plain")
    async with NeardRpc(neard.url, NODE) as rpc:
        call = rpc.status_http if route == "/status" else rpc.health_http
        with pytest.raises(error) as caught:
            await call()
    assert f"GET {route}" in str(caught.value)
    assert_names_node(caught.value, neard.url)


async def test_proxy_error_page_on_post_is_http_error(neard):
    neard.rpc_routes["status"] = (502, b"<html><h1>502 Bad Gateway</h1></html>")
    async with NeardRpc(neard.url, NODE) as rpc:
        with pytest.raises(RpcHttpError) as caught:
            await rpc.status()
    assert caught.value.status == 502 and "502 Bad Gateway" in str(caught.value)
    assert_names_node(caught.value, neard.url)


# --------------------------------------------------------------------------------------------
# Broken nodes at the socket level
# --------------------------------------------------------------------------------------------


class RawServer:
    """A loopback TCP server that runs `behave(conn, stop)` for every connection."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._behave = behave
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        # OSError: the client gave up first, as expected when it times out
        with conn, contextlib.suppress(OSError):
            self._behave(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(behave: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _read_request(conn: socket.socket) -> None:
    """Read one whole request (headers and body), so that closing sends FIN, not RST."""
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < min(length, 65536):
        chunk = conn.recv(4096)
        if not chunk:
            return
        body += chunk


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    stop.wait(10)  # never answers; released at teardown


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 400\r\n\r\n")
    for _ in range(300):  # a byte every 20 ms: each read is quick, the whole is not
        if stop.wait(0.02):
            return
        conn.sendall(b" ")


def _hang_up(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)


def _reset(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST


def _not_http(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\r\n")


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    return port


async def test_connection_refused():
    url = f"http://127.0.0.1:{_closed_port()}"
    async with NeardRpc(url, NODE, timeout=2) as rpc:
        for call in (rpc.status, rpc.health_http, rpc.metrics):
            with pytest.raises(NodeUnreachable) as caught:
                await call()
            text = str(caught.value)
            assert "connection refused" in text
            assert "is neard running? is rpc.addr right?" in text
            assert_names_node(caught.value, url)


async def test_unnamed_node_is_named_by_url():
    url = f"http://127.0.0.1:{_closed_port()}"
    async with NeardRpc(url, timeout=2) as rpc:
        with pytest.raises(NodeUnreachable) as caught:
            await rpc.health()
    assert caught.value.node == url and str(caught.value).startswith(f"node at {url}:")


@pytest.mark.parametrize("call_name", ["status", "health_http", "metrics", "maintenance_windows"])
async def test_silent_node_times_out(raw_server, call_name):
    server = raw_server(_silent)
    async with NeardRpc(server.url, NODE, timeout=SHORT_TIMEOUT) as rpc:
        call = getattr(rpc, call_name)
        args = ("a.near",) if call_name == "maintenance_windows" else ()
        with pytest.raises(RpcTimeout) as caught:
            await call(*args)
    err = caught.value
    assert err.timeout == SHORT_TIMEOUT and "0.3 s" in str(err)
    assert_names_node(err, server.url)


async def test_trickling_node_hits_the_overall_deadline(raw_server):
    server = raw_server(_trickle)
    async with NeardRpc(server.url, NODE, timeout=SHORT_TIMEOUT) as rpc:
        with pytest.raises(RpcTimeout) as caught:
            await rpc.status()
    # each read was quick, so only the whole-call deadline (asyncio's TimeoutError) can fire
    assert "TimeoutError" in str(caught.value) and "ReadTimeout" not in str(caught.value)
    assert_names_node(caught.value, server.url)


@pytest.mark.parametrize("behave", [_hang_up, _reset], ids=["close", "reset"])
async def test_node_that_hangs_up(raw_server, behave):
    server = raw_server(behave)
    async with NeardRpc(server.url, NODE, timeout=2) as rpc:
        with pytest.raises(NodeUnreachable) as caught:
            await rpc.status()
    assert "closed without an answer" in str(caught.value)
    assert_names_node(caught.value, server.url)


async def test_service_that_is_not_http(raw_server):
    server = raw_server(_not_http)
    async with NeardRpc(server.url, NODE, timeout=2) as rpc:
        with pytest.raises(MalformedResponse) as caught:
            await rpc.status()
    assert "not valid HTTP" in str(caught.value)
    assert_names_node(caught.value, server.url)


# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "timeout"),
    [("127.0.0.1:3030", 5), ("ftp://127.0.0.1:3030", 5), ("http://", 5),
     ("http://127.0.0.1:3030", 0), ("http://127.0.0.1:3030", -1)],
)
def test_constructor_rejects_bad_input(url, timeout):
    with pytest.raises(ValueError, match="val-a"):
        NeardRpc(url, NODE, timeout=timeout)


_TARGET = CallTarget(node=NODE, url="http://127.0.0.1:3030", what="JSON-RPC `status`", timeout=1.0)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=20,
)
_error_like = st.fixed_dictionaries(
    {"error": st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["HANDLER_ERROR", "INTERNAL_ERROR", "REQUEST_VALIDATION_ERROR"])
        | _json_values,
        "cause": st.fixed_dictionaries({}, optional={
            "name": st.sampled_from(["NODE_IS_SYNCING", "NO_NEW_BLOCKS", "METHOD_NOT_FOUND",
                                     "TIMEOUT_ERROR", "UNKNOWN_EPOCH"]) | _json_values,
            "info": _json_values}) | _json_values,
        "code": _json_values, "data": _json_values, "message": _json_values}) | _json_values}
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 400, 408, 500, 502, 503]),
    body=st.one_of(
        st.binary(max_size=64),
        _json_values.map(lambda v: json.dumps(v).encode()),
        _error_like.map(lambda v: json.dumps(v).encode()),
    ),
)
def test_any_answer_is_a_result_or_an_rpc_error(status, body):
    try:
        interpret_rpc_body(_TARGET, status, body)
    except RpcError as exc:
        assert NODE in str(exc)


@given(st.datetimes(timezones=st.just(UTC)))
def test_rfc3339_ns_agrees_with_datetime(moment):
    text = moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_rfc3339_ns(text) == (moment - epoch) // timedelta(microseconds=1) * 1000


def test_rfc3339_ns_offsets_and_rejects():
    assert parse_rfc3339_ns("2025-02-12T23:10:10.000000001+01:00") == parse_rfc3339_ns(
        "2025-02-12T22:10:10.000000001Z"
    )
    for bad in ("2025-02-12 22:10", "2025-13-01T00:00:00Z", "yesterday", "2025-02-12T22:10:10"):
        with pytest.raises(ValueError):
            parse_rfc3339_ns(bad)
