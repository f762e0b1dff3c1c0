"""neard's RPC surface for one emulated node (neard-behaviour §4).

`POST /` JSON-RPC 2.0 (status, health, validators, network_info, client_config, block,
maintenance_windows, EXPERIMENTAL_maintenance_windows), `GET|HEAD /status`, `/health`,
`GET /network_info`, `GET /metrics`. Shapes follow nearcore's OpenAPI spec (the conformance test
checks them) and the reconstructed fixtures; HTTP codes follow `rpc_handler` (§4.1).
"""

from __future__ import annotations

import json
import time
from typing import Any

from near_failover.localnet.chain import PROTOCOL_VERSION, hash_text, shard_uid
from near_failover.localnet.http import HttpError, Request, Response
from near_failover.localnet.node import Node
from near_failover.localnet.util import rfc3339_nanos

MEMTRIE_ARENA_BYTES = 4 * 2**30  # emulated size of one shard's memtrie arena
# What the emulated neard answers as its build (status.version, near_build_info).
NEARD_VERSION = {"version": "2.13.0", "build": "near-failover-localnet", "commit": "0" * 40, "rustc_version": "emulated"}


class RpcFailure(Exception):
    """A JSON-RPC error: the `error` object and the HTTP status neard would use."""

    def __init__(self, error: dict, http_status: int = 200) -> None:
        super().__init__(error.get("cause", {}).get("name", "error"))
        self.error = error
        self.http_status = http_status


def handler_error(cause: str, info: dict | None = None, data: Any = "__same__") -> RpcFailure:
    """HANDLER_ERROR with legacy code -32000 (§4.6): HTTP 200, as neard answers it."""
    body: dict[str, Any] = {"name": cause}
    if info is not None:
        body["info"] = info
    return RpcFailure(
        {"name": "HANDLER_ERROR", "cause": body, "code": -32000, "message": "Server error", "data": body if data == "__same__" else data}
    )


def internal_error(message: str) -> RpcFailure:
    body = {"name": "INTERNAL_ERROR", "info": {"error_message": message}}
    return RpcFailure({"name": "INTERNAL_ERROR", "cause": body, "code": -32000, "message": "Server error", "data": body}, 500)


def method_not_found(method: str) -> RpcFailure:
    return RpcFailure(
        {
            "name": "REQUEST_VALIDATION_ERROR",
            "cause": {"name": "METHOD_NOT_FOUND", "info": {"method_name": method}},
            "code": -32601,
            "message": "Method not found",
            "data": method,
        },
        400,
    )


def parse_error(message: str) -> RpcFailure:
    return RpcFailure(
        {
            "name": "REQUEST_VALIDATION_ERROR",
            "cause": {"name": "PARSE_ERROR", "info": {"error_message": message}},
            "code": -32700,
            "message": "Parse error",
            "data": message,
        },
        400,
    )


def _pair(ns: int) -> list[int]:
    return [ns // 1_000_000_000, ns % 1_000_000_000]


def _mutable(value: Any) -> str:
    """MutableConfigValue serialises as the JSON text of its value (updatable_config.rs)."""
    return json.dumps(value, separators=(",", ":"))


def _duration_value(raw: Any, default_ns: int) -> list[int]:
    if isinstance(raw, dict) and "secs" in raw:
        return [int(raw["secs"]), int(raw.get("nanos", 0))]
    if isinstance(raw, list) and len(raw) == 2:
        return [int(raw[0]), int(raw[1])]
    return _pair(default_ns)


class NodeRpc:
    def __init__(self, node: Node) -> None:
        self.node = node

    # --- HTTP routes ------------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        if req.method == "POST" and req.path == "/":
            return await self.json_rpc(req)
        if req.method in ("GET", "HEAD"):
            if req.path == "/status":
                try:
                    return Response.json(await self.status())
                except RpcFailure:
                    return Response(503)
            if req.path == "/health":
                try:
                    self.health()
                    return Response.json(None)
                except RpcFailure:
                    return Response(503)
            if req.path == "/network_info":
                return Response.json(await self.network_info())
            if req.path == "/metrics":
                return Response.text(await self.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")
        return Response(404)

    async def json_rpc(self, req: Request) -> Response:
        request_id: Any = None
        try:
            try:
                message = req.json()
            except (ValueError, UnicodeDecodeError) as exc:
                raise parse_error(f"Failed to parse request: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("method"), str):
                raise parse_error("Failed to parse request: expected a JSON-RPC 2.0 request object with a method")
            request_id = message.get("id")
            result = await self.dispatch(message["method"], message.get("params"))
            return Response.json({"jsonrpc": "2.0", "result": result, "id": request_id})
        except RpcFailure as failure:
            return Response.json({"jsonrpc": "2.0", "error": failure.error, "id": request_id}, failure.http_status)

    async def dispatch(self, method: str, params: Any) -> Any:
        if method == "status":
            return await self.status()
        if method == "health":
            self.health()
            return None
        if method == "validators":
            return await self.validators(params)
        if method == "network_info":
            return await self.network_info()
        if method == "client_config":
            return self.client_config()
        if method == "block":
            return await self.block(params)
        if method in ("maintenance_windows", "EXPERIMENTAL_maintenance_windows"):
            return await self.maintenance_windows(params)
        raise method_not_found(method)

    # --- methods ----------------------------------------------------------------------------

    async def status(self) -> dict:
        node = self.node
        epoch = node.epoch_of(node.head)
        summary = await node.epoch_summary(epoch) or {}
        signer = node.signer
        earliest = max(0, node.head - node.gc_epochs * node.epoch_length)
        earliest = 0 if earliest <= 0 else (node.epoch_of(earliest) * node.epoch_length + 1)
        block_time_ns = int(getattr(node, "block_time", 0.6) * 1e9)
        genesis_ns = int(node.genesis.get("localnet", {}).get("genesis_time_ns", 0))
        return {
            "version": dict(NEARD_VERSION),
            "chain_id": node.chain_id,
            "protocol_version": PROTOCOL_VERSION,
            "latest_protocol_version": PROTOCOL_VERSION,
            "rpc_addr": node.rpc_addr,
            "validators": [{"account_id": v["account_id"]} for v in summary.get("validators", [])],
            "sync_info": {
                "latest_block_hash": node.head_hash,
                "latest_block_height": node.head,
                "latest_state_root": hash_text(node.seed, "state", node.head),
                "latest_block_time": rfc3339_nanos(node.head_time_ns),
                "syncing": node.syncing,
                "earliest_block_hash": node.genesis_hash if earliest == 0 else hash_text(node.seed, "block", earliest),
                "earliest_block_height": earliest,
                "earliest_block_time": rfc3339_nanos(genesis_ns + earliest * block_time_ns),
                "epoch_id": summary.get("epoch_id") or hash_text(node.seed, "epoch", epoch),
                "epoch_start_height": epoch * node.epoch_length + 1,
            },
            "validator_account_id": signer.account_id if signer else None,
            "validator_public_key": signer.public_key if signer else None,
            "node_public_key": node.peer_id,
            "node_key": signer.public_key if signer else None,
            "uptime_sec": int(time.monotonic() - node.started_monotonic),
            "genesis_hash": node.genesis_hash,
        }

    def health(self) -> None:
        """`health` (§4.3): NO_NEW_BLOCKS past 10 × max_block_production_delay, then
        NODE_IS_SYNCING, in that order (chain/client/src/client_actor.rs, the status handler)."""
        node = self.node
        elapsed = time.time_ns() - node.head_time_ns
        if elapsed > 10 * int(node.hot.get("max_block_production_delay_ns", 2_000_000_000)):
            raise handler_error("NO_NEW_BLOCKS", {"elapsed": _pair(elapsed)})
        if node.syncing:
            raise handler_error("NODE_IS_SYNCING")

    async def validators(self, params: Any) -> dict:
        node = self.node
        query = f"epoch={node.epoch_of(node.head)}"
        arg = params
        if isinstance(params, list):
            arg = params[0] if params else None
        if isinstance(arg, dict):
            if "epoch_id" in arg:
                query = f"epoch_id={arg['epoch_id']}"
                arg = None
            elif "block_id" in arg:
                arg = arg["block_id"]
            elif "latest" in arg:
                arg = None
            else:
                raise parse_error(f"Failed parsing args: unknown validators parameter {json.dumps(arg)}")
        if arg == "latest":
            arg = None
        if isinstance(arg, bool):
            raise parse_error("Failed parsing args: block id must be a height or a hash")
        if isinstance(arg, int):
            if arg > node.head:
                raise handler_error("UNKNOWN_EPOCH", data="Unknown Epoch")
            query = f"height={arg}"
        elif isinstance(arg, str):
            query = f"block_hash={arg}"
        elif arg is not None:
            raise parse_error("Failed parsing args: block id must be a height or a hash")
        try:
            status, body = await node.rpc_client.request("GET", f"/validators?{query}", timeout=5)
        except HttpError as exc:
            raise internal_error(str(exc)) from None
        if status == 404:
            raise handler_error("UNKNOWN_EPOCH", data="Unknown Epoch")
        if status != 200:
            raise internal_error(f"validators: network answered HTTP {status}")
        return json.loads(body)

    async def _network(self) -> dict:
        node = self.node
        try:
            net = await node.rpc_client.get_json(f"/network?peer_id={node.peer_id}", timeout=3)
        except HttpError:
            net = {"active_peers": [], "known_producers": []}
        node.peer_count = len(net["active_peers"])
        return net

    async def network_info(self) -> dict:
        net = await self._network()
        peers = net["active_peers"]
        return {
            "active_peers": peers,
            "num_active_peers": len(peers),
            "peer_max_count": int(self.node.cfg.get("network", {}).get("max_num_peers", 40)),
            "sent_bytes_per_sec": 0,
            "received_bytes_per_sec": 0,
            "known_producers": net["known_producers"],
        }

    def client_config(self) -> dict:
        """The running ClientConfig (§4.5): startup tracking, memtries; hot fields as reloaded."""
        node = self.node
        cfg = node.cfg
        consensus = cfg.get("consensus", {})
        hot = node.hot

        def dur(section: dict, name: str, default_ns: int) -> list[int]:
            return _duration_value(section.get(name), default_ns)

        def hot_dur(name: str, default_ns: int) -> str:
            return _mutable(_duration_value(hot.get(name), default_ns))

        return {
            "version": dict(NEARD_VERSION),
            "chain_id": node.chain_id,
            "rpc_addr": node.rpc_addr,
            "expected_shutdown": _mutable(hot.get("expected_shutdown")),
            "block_production_tracking_delay": hot_dur("block_production_tracking_delay", 10_000_000),
            "min_block_production_delay": hot_dur("min_block_production_delay", 600_000_000),
            "max_block_production_delay": hot_dur("max_block_production_delay", 2_000_000_000),
            "max_block_wait_delay": hot_dur("max_block_wait_delay", 6_000_000_000),
            "chunk_wait_mult": _mutable(hot.get("chunk_wait_mult") or [1, 3]),
            "doomslug_step_period": hot_dur("doomslug_step_period", 10_000_000),
            "resharding_config": _mutable(hot.get("resharding_config")),
            "produce_chunk_add_transactions_time_limit": _mutable(_duration_value(hot.get("produce_chunk_add_transactions_time_limit"), 200_000_000)),
            "skip_sync_wait": bool(cfg.get("network", {}).get("skip_sync_wait", False)),
            "sync_check_period": dur(consensus, "sync_check_period", 10_000_000_000),
            "sync_step_period": dur(consensus, "sync_step_period", 10_000_000),
            "sync_height_threshold": node.sync_threshold,
            "sync_max_block_requests": int(consensus.get("sync_max_block_requests", 10)),
            "header_sync_initial_timeout": dur(consensus, "header_sync_initial_timeout", 10_000_000_000),
            "header_sync_progress_timeout": dur(consensus, "header_sync_progress_timeout", 2_000_000_000),
            "header_sync_stall_ban_timeout": dur(consensus, "header_sync_stall_ban_timeout", 120_000_000_000),
            "state_sync_external_timeout": dur(consensus, "state_sync_external_timeout", 60_000_000_000),
            "state_sync_p2p_timeout": dur(consensus, "state_sync_p2p_timeout", 10_000_000_000),
            "state_sync_retry_backoff": dur(consensus, "state_sync_retry_backoff", 1_000_000_000),
            "state_sync_external_backoff": dur(consensus, "state_sync_external_backoff", 60_000_000_000),
            "header_sync_expected_height_per_second": int(consensus.get("header_sync_expected_height_per_second", 10)),
            "min_num_peers": int(consensus.get("min_num_peers", 3)),
            "produce_empty_blocks": bool(consensus.get("produce_empty_blocks", True)),
            "block_header_fetch_horizon": int(consensus.get("block_header_fetch_horizon", 50)),
            "catchup_step_period": dur(consensus, "catchup_step_period", 100_000_000),
            "chunk_request_retry_period": dur(consensus, "chunk_request_retry_period", 400_000_000),
            "epoch_length": node.epoch_length,
            "num_block_producer_seats": int(node.genesis.get("num_block_producer_seats", 100)),
            "ttl_account_id_router": _duration_value(cfg.get("network", {}).get("ttl_account_id_router"), 3_600_000_000_000),
            "archive": bool(cfg.get("archive", False)),
            "save_trie_changes": bool(cfg.get("save_trie_changes", True) if cfg.get("save_trie_changes") is not None else True),
            "save_tx_outcomes": bool(cfg.get("save_tx_outcomes") if cfg.get("save_tx_outcomes") is not None else node.tracking.mode not in ("NoShards", "ShadowValidator")),
            "log_summary_style": cfg.get("log_summary_style", "colored"),
            "log_summary_period": _duration_value(cfg.get("log_summary_period"), 10_000_000_000),
            "enable_multiline_logging": bool(cfg.get("enable_multiline_logging", True)),
            "gc": {
                "gc_blocks_limit": int(cfg.get("gc_blocks_limit", 2)),
                "gc_fork_clean_step": int(cfg.get("gc_fork_clean_step", 100)),
                "gc_num_epochs_to_keep": node.gc_epochs,
                "gc_step_period": cfg.get("gc_step_period", {"secs": 0, "nanos": 500_000_000}),
            },
            "tracked_shards_config": node.tracking.to_json(),
            "view_client_threads": int(cfg.get("view_client_threads", 4)),
            "state_request_throttle_period": _duration_value(cfg.get("state_request_throttle_period"), 30_000_000_000),
            "state_requests_per_throttle_period": int(cfg.get("state_requests_per_throttle_period", 30)),
            "state_request_server_threads": int(cfg.get("state_request_server_threads", 4)),
            "trie_viewer_state_size_limit": cfg.get("trie_viewer_state_size_limit", 50000),
            "enable_statistics_export": bool(cfg.get("store", {}).get("enable_statistics_export", True)),
            "transaction_pool_size_limit": cfg.get("transaction_pool_size_limit", 100000000),
            "tx_routing_height_horizon": int(cfg.get("tx_routing_height_horizon", 4)),
            "disable_tx_routing": bool(cfg.get("disable_tx_routing", False)),
            "epoch_sync": cfg.get("epoch_sync", {"epoch_sync_horizon_num_epochs": 2, "timeout_for_epoch_sync": {"secs": 60, "nanos": 0}}),
            "orphan_state_witness_pool_size": int(cfg.get("orphan_state_witness_pool_size", 25)),
            "orphan_state_witness_max_size": int(cfg.get("orphan_state_witness_max_size", 40000000)),
            "save_latest_witnesses": bool(cfg.get("save_latest_witnesses", False)),
            "save_invalid_witnesses": bool(cfg.get("save_invalid_witnesses", False)),
            "transaction_request_handler_threads": int(cfg.get("transaction_request_handler_threads", 4)),
            "chunk_distribution_network": cfg.get("chunk_distribution_network"),
        }

    async def block(self, params: Any) -> dict:
        node = self.node
        height = node.head
        if isinstance(params, dict) and "block_id" in params:
            block_id = params["block_id"]
            if isinstance(block_id, int) and not isinstance(block_id, bool):
                height = block_id
            else:
                raise handler_error("UNKNOWN_BLOCK", data="DB Not Found Error: block by hash (the emulator looks blocks up by height)")
        elif isinstance(params, dict) and params.get("finality") == "final":
            height = max(0, node.head - 2)  # doomslug finality trails the head by two blocks
        elif not (isinstance(params, dict) and params.get("finality") in ("optimistic", "near-final")):
            raise parse_error("Failed parsing args: expected {\"finality\": ...} or {\"block_id\": ...}")
        if height > node.head:
            raise handler_error("UNKNOWN_BLOCK", data=f"DB Not Found Error: BLOCK HEIGHT: {height}")
        for candidate in range(height, max(-1, height - 64), -1):
            try:
                status, body = await node.rpc_client.request("GET", f"/block?height={candidate}", timeout=5)
            except HttpError as exc:
                raise internal_error(str(exc)) from None
            if status == 200:
                b = json.loads(body)
                break
            if "block_id" in (params or {}):
                raise handler_error("UNKNOWN_BLOCK", data=f"DB Not Found Error: BLOCK HEIGHT: {height}")
        else:
            raise handler_error("UNKNOWN_BLOCK", data=f"DB Not Found Error: BLOCK HEIGHT: {height}")
        prev_final = max(0, b["height"] - 2)
        return {
            "author": b["author"] or "",
            "header": {
                "height": b["height"],
                "epoch_id": b["epoch_id"],
                "hash": b["hash"],
                "prev_hash": b["prev_hash"],
                "prev_state_root": hash_text(node.seed, "state", b["height"] - 1),
                "timestamp": b["timestamp_ns"],
                "timestamp_nanosec": str(b["timestamp_ns"]),
                "last_final_block": node.genesis_hash if prev_final == 0 else hash_text(node.seed, "block", prev_final),
                "chunks_included": sum(b["chunk_mask"]),
                "chunk_mask": b["chunk_mask"],
                "latest_protocol_version": PROTOCOL_VERSION,
                "approvals": [],
            },
            "chunks": [
                {"shard_id": s, "height_created": b["height"], "height_included": b["height"] if included else 0}
                for s, included in enumerate(b["chunk_mask"])
            ],
        }

    async def maintenance_windows(self, params: Any) -> list[dict]:
        node = self.node
        account = params.get("account_id") if isinstance(params, dict) else (params[0] if isinstance(params, list) and params else None)
        if not isinstance(account, str):
            raise parse_error("Failed parsing args: expected {\"account_id\": \"<account>\"}")
        try:
            windows = await node.rpc_client.get_json(f"/maintenance_windows?account_id={account}&height={node.head}", timeout=5)
        except HttpError as exc:
            raise internal_error(str(exc)) from None
        return [{"start": start, "end": end} for start, end in windows]

    # --- metrics (§4.7; names, HELP and types from nearcore) ----------------------------------

    async def metrics(self) -> str:
        node = self.node
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{label_text}}} {_num(value)}" if label_text else f"{name} {_num(value)}")

        def one(name: str, kind: str, help_text: str, value: float) -> None:
            family(name, kind, help_text, [({}, value)])

        await self._network()
        epoch = node.epoch_of(node.head)
        summary = node.epochs.get(epoch) or {}
        assignment = {v["account_id"]: v["shards"] for v in summary.get("validators", [])}
        signer = node.signer
        my_shards = assignment.get(signer.account_id, []) if signer else []
        one("near_block_height_head", "gauge", "Height of the current head of the blockchain", node.head)
        one("near_header_head_height", "gauge", "Height of the header head", node.network_head)
        one("near_final_block_height", "gauge", "Last block that has full BFT finality", max(0, node.head - 2))
        one("near_head_lag_seconds", "gauge", "Seconds between wall clock and the latest block timestamp", max(0.0, (time.time_ns() - node.head_time_ns) / 1e9))
        one("near_sync_status", "gauge", "Node sync status", node.sync_status_code)
        one("near_epoch_height", "gauge", "Height of the epoch at the head of the blockchain", epoch + 1)
        one("near_is_validator", "gauge", "Bool to denote if it is validating in the current epoch", int(node.is_current_validator()))
        one("near_is_block_producer", "gauge", "Bool to denote if the node is a block producer in the current epoch", int(node.is_current_validator()))
        family(
            "near_is_chunk_producer_for_shard",
            "gauge",
            "Bool to denote if the node is a chunk producer for a shard in the current epoch",
            [({"shard_id": str(s)}, int(s in my_shards)) for s in range(node.num_shards)],
        )
        one("near_block_produced_total", "counter", "Total number of blocks produced since starting this node", node.metrics.block_produced_total)
        one("near_chunk_produced_total", "counter", "Total number of chunks produced since starting this node", node.metrics.chunk_produced_total)
        if not node.syncing:  # "not exported while syncing" (§4.7)
            await self._validator_families(family, epoch)
        one("near_peer_connections_total", "gauge", "Number of connected peers", node.peer_count)
        held = node.book.held_shards(node.head)
        family("near_client_tracked_shards", "gauge", "Tracked shards", [({"shard_id": str(s)}, int(s in held)) for s in range(node.num_shards)])
        one("near_current_protocol_version", "gauge", "Protocol version of the current epoch", PROTOCOL_VERSION)
        one("near_node_protocol_version", "gauge", "Max protocol version supported by the node", PROTOCOL_VERSION)
        one("near_boot_time_seconds", "gauge", "Unix timestamp in seconds of the moment the client was started", int(node.metrics.boot_time))
        one("near_config_correct", "gauge", "Are the current dynamically loadable configs correct", node.metrics.config_correct)
        one("near_config_reloads_total", "counter", "Number of times the configs were reloaded during the current run of the process", node.metrics.config_reloads_total)
        one("near_config_reload_timestamp_seconds", "gauge", "Timestamp of the last reload of the config", int(node.metrics.config_reload_timestamp))
        family(
            "near_config_mutable_field",
            "gauge",
            "Timestamp and value of a mutable config field",
            [({"field_name": n, "timestamp": str(t), "value": v}, on) for n, t, v, on in node.metrics.mutable_fields],
        )
        # Only shards a background load touched have a sample; the start-up load is not one
        # (core/store/src/trie/mem/metrics.rs).
        family(
            "near_memtrie_background_load_status",
            "gauge",
            "Status of background memtrie loading: 0 - none, 1 - loading, 2 - awaiting finalization, "
            "3 - applying delta catch-up, 4 - done, 5 - already loaded (preload no-op)",
            [({"shard_uid": shard_uid(s)}, status) for s, status in sorted(node.background_load_status.items())],
        )
        if node.memtries_loaded:  # a vec gauge without samples is not exported at all
            # One sample per loaded memtrie (core/store/src/trie/mem/arena/metrics.rs); the bytes
            # are a stand-in for the arena's size.
            family(
                "near_memtrie_arena_memory_usage_bytes",
                "gauge",
                "Memory usage of the in-memory trie arena",
                [({"shard_uid": shard_uid(s)}, MEMTRIE_ARENA_BYTES) for s in sorted(node.memtries_loaded)],
            )
        family(
            "near_build_info",
            "counter",
            "Metric whose labels indicate node’s version; see <https://www.robustperception.io/exposing-the-software-version-to-prometheus>.",
            [({"build": NEARD_VERSION["build"], "release": NEARD_VERSION["version"], "rustc_version": NEARD_VERSION["rustc_version"]}, 1)],
        )
        return "\n".join(out) + "\n"

    async def _validator_families(self, family: Any, epoch: int) -> None:
        try:
            view = await self.node.rpc_client.get_json(f"/validators?epoch={epoch}", timeout=3)
        except HttpError:
            return
        rows = view.get("current_validators", [])
        for name, help_text, key in (
            ("near_validators_blocks_produced", "Number of blocks produced by a validator", "num_produced_blocks"),
            ("near_validators_blocks_expected", "Number of blocks expected to be produced by a validator", "num_expected_blocks"),
            ("near_validators_chunks_produced", "Number of chunks produced by a validator", "num_produced_chunks"),
            ("near_validators_chunks_expected", "Number of chunks expected to be produced by a validator", "num_expected_chunks"),
        ):
            family(name, "gauge", help_text, [({"account_id": r["account_id"]}, r[key]) for r in rows])
        for name, key in (
            ("near_validators_chunk_endorsements_produced_by_shard", "num_produced_endorsements_per_shard"),
            ("near_validators_chunk_endorsements_expected_by_shard", "num_expected_endorsements_per_shard"),
        ):
            verb = "produced" if "produced" in name else "expected to be produced"
            family(
                name,
                "gauge",
                f"Number of chunk endorsements {verb} by a chunk validator (currently calculated solely based on chunk production)",
                [({"account_id": r["account_id"], "shard_id": str(s)}, v) for r in rows for s, v in zip(r.get("shards_endorsed", []), r.get(key, []))],
            )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))

