"""Every emulator response, as the whole JSON-RPC envelope, against nearcore's OpenAPI spec.

The spec (`jsonrpc-openapi.json`, nearcore chain/jsonrpc/openapi) is OpenAPI 3.0 with `nullable`,
so responses are checked with OAS30Validator. Result objects are also checked strictly: a
field that the spec does not declare fails the test, so a misspelt field cannot hide behind the
spec's open objects.
"""

from __future__ import annotations

import copy
import json
import os
import signal

import httpx
import pytest
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from near_failover.neard.config import dumps_config, load_config

from .localnet_support import POOL, running_localnet, wait_for

SPEC_URI = "urn:nearcore-jsonrpc-openapi"
# Result schemas that must not carry undeclared fields (envelopes and errors stay open: neard
# adds the legacy code/message/data beside the declared name/cause).
CLOSED = (
    "RpcStatusResponse",
    "StatusSyncInfo",
    "Version",
    "ValidatorInfo",
    "RpcValidatorResponse",
    "CurrentEpochValidatorInfo",
    "NextEpochValidatorInfo",
    "ValidatorKickoutView",
    "RpcNetworkInfoResponse",
    "RpcPeerInfo",
    "RpcKnownProducer",
    "RpcClientConfigResponse",
    "Range_of_uint64",
    "GCConfig",
    "EpochSyncConfig",
)
STATUS = "JsonRpcResponse_for_RpcStatusResponse_and_RpcStatusError"
HEALTH = "JsonRpcResponse_for_Nullable_RpcHealthResponse_and_RpcStatusError"
VALIDATORS = "JsonRpcResponse_for_RpcValidatorResponse_and_RpcValidatorError"
NETWORK_INFO = "JsonRpcResponse_for_RpcNetworkInfoResponse_and_RpcNetworkInfoError"
CLIENT_CONFIG = "JsonRpcResponse_for_RpcClientConfigResponse_and_RpcClientConfigError"
WINDOWS = "JsonRpcResponse_for_Array_of_Range_of_uint64_and_RpcMaintenanceWindowsError"


@pytest.fixture(scope="module")
def spec(fixtures_dir):
    raw = json.loads((fixtures_dir / "jsonrpc-openapi.json").read_text())
    strict = copy.deepcopy(raw)
    for name in CLOSED:
        strict["components"]["schemas"][name]["additionalProperties"] = False
    return Registry().with_resource(SPEC_URI, Resource.from_contents(strict, default_specification=DRAFT4))


def conforms(registry, schema: str, instance: object) -> None:
    validator = OAS30Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema}"}, registry=registry)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    details = []
    for e in errors:
        details.append(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}")
        for sub in (e.context or [])[:6]:
            details.append(f"    {'/'.join(map(str, sub.absolute_path))}: {sub.message[:200]}")
    assert not errors, f"{schema}:\n" + "\n".join(details)


def test_the_strict_validator_rejects_what_neard_would_not_send(spec, fixtures_dir):
    genuine = json.loads((fixtures_dir / "rpc-status-response.validator-node.current-shape.reconstructed.json").read_text())
    conforms(spec, STATUS, genuine)
    broken = copy.deepcopy(genuine)
    broken["result"]["sync_info"]["synching"] = False
    with pytest.raises(AssertionError):
        conforms(spec, STATUS, broken)
    del genuine["result"]["genesis_hash"]
    with pytest.raises(AssertionError):
        conforms(spec, STATUS, genuine)


def test_every_rpc_response_conforms_to_nearcores_openapi(tmp_path, spec):
    with running_localnet(tmp_path, "--block-time", "0.1", "--epoch-length", "12", "--memtrie-load", "0.1") as net:
        net.wait_height(14)  # into the second epoch, so there is a previous epoch and an epoch id
        for name in net.nodes:
            conforms(spec, STATUS, net.rpc(name, "status").json())
            conforms(spec, "RpcStatusResponse", httpx.get(net.nodes[name]["rpc"] + "/status", timeout=5).json())
            conforms(spec, HEALTH, net.rpc(name, "health").json())
            conforms(spec, NETWORK_INFO, net.rpc(name, "network_info").json())
            conforms(spec, "RpcNetworkInfoResponse", httpx.get(net.nodes[name]["rpc"] + "/network_info", timeout=5).json())
            conforms(spec, CLIENT_CONFIG, net.rpc(name, "client_config").json())
            assert httpx.get(net.nodes[name]["rpc"] + "/health", timeout=5).status_code == 200
        trackings = {name: net.result(name, "client_config")["tracked_shards_config"] for name in net.nodes}
        assert trackings == {"val-a": "NoShards", "val-b": {"ShadowValidator": POOL}, "val-c": "AllShards"}

        status = net.status("val-a")
        height = status["sync_info"]["latest_block_height"]
        epoch_id = status["sync_info"]["epoch_id"]
        for params in ([None], None, [height], {"block_id": height}, {"epoch_id": epoch_id}, [status["sync_info"]["latest_block_hash"]]):
            body = net.rpc("val-a", "validators", params).json()
            conforms(spec, VALIDATORS, body)
            if params not in ([None], None):  # "latest" may have moved on to the next epoch
                assert body["result"]["epoch_start_height"] == status["sync_info"]["epoch_start_height"], params
        view = net.result("val-a", "validators", [None])
        assert {v["account_id"] for v in view["current_validators"]} >= {POOL}
        unknown = net.rpc("val-a", "validators", [height + 10_000])
        conforms(spec, VALIDATORS, unknown.json())
        assert unknown.status_code == 200 and unknown.json()["error"]["cause"]["name"] == "UNKNOWN_EPOCH"
        assert unknown.json()["error"]["data"] == "Unknown Epoch"

        for method in ("maintenance_windows", "EXPERIMENTAL_maintenance_windows"):
            body = net.rpc("val-a", method, {"account_id": POOL}).json()
            conforms(spec, WINDOWS, body)
            assert all(w["start"] < w["end"] for w in body["result"])

        missing = net.rpc("val-a", "no_such_method")
        assert missing.status_code == 400
        conforms(spec, STATUS, missing.json())
        assert missing.json()["error"]["cause"] == {"name": "METHOD_NOT_FOUND", "info": {"method_name": "no_such_method"}}
        garbage = httpx.post(net.nodes["val-a"]["rpc"], content=b"{not json", timeout=5)
        assert garbage.status_code == 400 and garbage.json()["error"]["cause"]["name"] == "PARSE_ERROR"
        # An unparsable request has no id: neard answers `"id": null`, which the spec's string
        # `id` does not allow, so only the error object is checked here.
        assert garbage.json()["id"] is None
        conforms(spec, "ErrorWrapper_for_RpcStatusError", garbage.json()["error"])

        # NODE_IS_SYNCING: val-c restarted far behind, syncing slowly
        net.stop("val-c")
        emulator = net.home("val-c") / "emulator.json"
        emulator.write_text(json.dumps({**json.loads(emulator.read_text()), "sync_blocks_per_second": 2}))
        net.wait_blocks(25)
        net.start("val-c")
        syncing = wait_for(lambda: (s := net.rpc("val-c", "status").json())["result"]["sync_info"]["syncing"] and s, 20, "val-c syncing")
        conforms(spec, STATUS, syncing)
        health = net.rpc("val-c", "health").json()
        conforms(spec, HEALTH, health)
        assert health["error"]["cause"] == {"name": "NODE_IS_SYNCING"} and health["error"]["name"] == "HANDLER_ERROR"
        assert httpx.get(net.nodes["val-c"]["rpc"] + "/health", timeout=5).status_code == 503
        conforms(spec, NETWORK_INFO, net.rpc("val-c", "network_info").json())
        conforms(spec, CLIENT_CONFIG, net.rpc("val-c", "client_config").json())

        # NO_NEW_BLOCKS: shorten max_block_production_delay with SIGHUP (a hot field), then freeze the chain
        config_path = net.home("val-a") / "config.json"
        cfg = load_config(config_path)
        cfg["consensus"]["min_block_production_delay"] = {"secs": 0, "nanos": 50_000_000}
        cfg["consensus"]["max_block_production_delay"] = {"secs": 0, "nanos": 100_000_000}
        cfg["tracked_shards_config"] = "AllShards"  # not hot: must not change before a restart
        config_path.write_text(dumps_config(cfg))
        net.signal("val-a", signal.SIGHUP)
        wait_for(lambda: net.result("val-a", "client_config")["max_block_production_delay"] == "[0,100000000]", 10, "the hot delay to apply")
        assert net.result("val-a", "client_config")["tracked_shards_config"] == "NoShards"
        chain_pid = int((net.dir / "chain.pid").read_text())
        os.kill(chain_pid, signal.SIGSTOP)
        try:
            stale = wait_for(lambda: "error" in (b := net.rpc("val-a", "health").json()) and b, 10, "NO_NEW_BLOCKS")
        finally:
            os.kill(chain_pid, signal.SIGCONT)
        conforms(spec, HEALTH, stale)
        assert stale["error"]["cause"]["name"] == "NO_NEW_BLOCKS"
        assert stale["error"]["cause"]["info"]["elapsed"][0] >= 1
        wait_for(lambda: "result" in net.rpc("val-a", "health").json(), 10, "health to recover")
        assert net.ledger()["double_signs"] == 0
